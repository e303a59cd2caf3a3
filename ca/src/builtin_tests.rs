use super::*;
use crate::authority::FixedClock;
use crate::csr::CsrError;
use signet_spiffe::{SpiffeId, WorkloadKey};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};

fn td() -> TrustDomain {
    TrustDomain::new("acme.internal").unwrap()
}

fn cart() -> SpiffeId {
    td().service_account("shop", "cart").unwrap()
}

fn open(dir: &Path) -> BuiltinAuthority {
    BuiltinAuthority::open(dir, &td(), BuiltinOptions::default()).unwrap()
}

fn sign(
    ca: &BuiltinAuthority,
    id: &SpiffeId,
    ttl: Option<Duration>,
) -> Result<X509Svid, AuthorityError> {
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr(id).unwrap();
    ca.issue(SignRequest { csr: &csr, id, ttl })
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn first_open_creates_a_ca_with_private_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let _ca = open(&dir);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("root.key")), 0o600);
    assert_eq!(mode(&dir.join("intermediate.key")), 0o600);
    assert_eq!(
        fs::read_to_string(dir.join("trust-domain")).unwrap(),
        "acme.internal\n"
    );

    let root = read_cert(&dir.join("root.crt")).unwrap();
    let (_, root) = X509Certificate::from_der(root.as_ref()).unwrap();
    assert!(root.is_ca());
    let int = read_cert(&dir.join("intermediate.crt")).unwrap();
    let (_, int) = X509Certificate::from_der(int.as_ref()).unwrap();
    let bc = int.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    assert_eq!(int.issuer(), root.subject());
}

#[test]
fn reopening_reloads_the_same_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let first = open(tmp.path());
    let svid = sign(&first, &cart(), None).unwrap();
    drop(first);

    let second = open(tmp.path());
    assert_eq!(second.bundle(), open(tmp.path()).bundle());
    let again = sign(&second, &cart(), None).unwrap();
    assert_eq!(again.chain()[1], svid.chain()[1], "same intermediate");
    // The old SVID still verifies under the reloaded bundle.
    crate::validate::validate_issued(
        svid.chain().to_vec(),
        crate::validate::Expected {
            id: &cart(),
            public_key: &X509Certificate::from_der(svid.leaf().as_ref())
                .unwrap()
                .1
                .public_key()
                .subject_public_key
                .data,
            not_after: svid.not_after(),
            bundle: &second.bundle(),
            issuer: None,
            now: SystemTime::now(),
        },
    )
    .unwrap();
}

#[test]
fn issued_svids_follow_the_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open(tmp.path());
    let svid = sign(&ca, &cart(), Some(Duration::from_secs(600))).unwrap();
    assert_eq!(svid.id(), &cart());
    let life = svid.not_after().duration_since(svid.not_before()).unwrap();
    assert_eq!(
        life,
        Duration::from_secs(610),
        "10 minutes plus 10 s backdating"
    );

    let (_, leaf) = X509Certificate::from_der(svid.leaf().as_ref()).unwrap();
    assert!(!leaf.is_ca());
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let sans = &leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert_eq!(sans.as_slice(), [GeneralName::URI(cart().as_str())]);
    assert_eq!(svid.serial().as_bytes().len(), 16);

    let other = sign(&ca, &cart(), None).unwrap();
    assert_ne!(
        other.serial(),
        svid.serial(),
        "serials are random, not key hashes"
    );

    let long = sign(&ca, &cart(), Some(Duration::from_secs(10 * 365 * 86400))).unwrap();
    assert!(long.not_after() <= ca.intermediate_not_after());
    let life = long.not_after().duration_since(SystemTime::now()).unwrap();
    assert!(
        life <= Duration::from_secs(30 * 86400),
        "clamped to the profile's max"
    );
}

#[test]
fn a_csr_for_another_identity_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open(tmp.path());
    let key = WorkloadKey::generate().unwrap();
    let payments = td().service_account("shop", "payments").unwrap();
    let csr = key.csr(&payments).unwrap();
    let err = ca
        .issue(SignRequest {
            csr: &csr,
            id: &cart(),
            ttl: None,
        })
        .unwrap_err();
    assert!(
        matches!(err, AuthorityError::Csr(CsrError::OtherIdentity { .. })),
        "{err}"
    );
}

#[test]
fn an_identity_of_another_trust_domain_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open(tmp.path());
    let foreign: SpiffeId = "spiffe://evil.example/ns/shop/sa/cart".parse().unwrap();
    assert!(matches!(
        sign(&ca, &foreign, None),
        Err(AuthorityError::ForeignId { .. })
    ));
}

#[test]
fn an_id_without_a_path_is_never_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open(tmp.path());
    let bare: SpiffeId = "spiffe://acme.internal".parse().unwrap();
    assert!(matches!(
        sign(&ca, &bare, None),
        Err(AuthorityError::NoPath(_))
    ));
}

#[test]
fn a_ca_dir_for_another_trust_domain_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = open(tmp.path());
    let other = TrustDomain::new("other.internal").unwrap();
    let err = BuiltinAuthority::open(tmp.path(), &other, BuiltinOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("holds a CA for trust domain `acme.internal`"),
        "{err}"
    );
}

#[test]
fn world_readable_keys_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = open(tmp.path());
    let key = tmp.path().join("intermediate.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let err = BuiltinAuthority::open(tmp.path(), &td(), BuiltinOptions::default()).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = open(tmp.path());
    let stray = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    write_file(
        &tmp.path().join("intermediate.key"),
        stray.serialize_pem().as_bytes(),
        0o600,
    )
    .unwrap();
    let err = BuiltinAuthority::open(tmp.path(), &td(), BuiltinOptions::default()).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn a_half_created_dir_is_created_again() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = open(tmp.path());
    fs::remove_file(tmp.path().join("trust-domain")).unwrap();
    let old_root = fs::read(tmp.path().join("root.crt")).unwrap();
    let _ = open(tmp.path());
    assert_ne!(fs::read(tmp.path().join("root.crt")).unwrap(), old_root);
}

#[test]
fn the_intermediate_is_reissued_before_it_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let first = open(tmp.path());
    let root = first.bundle();
    let old_int = first.intermediate().clone();

    // Eleven months on, less than 30 days remain.
    let later = SystemTime::now() + Duration::from_secs(340 * 86400);
    let options = BuiltinOptions {
        clock: Arc::new(FixedClock(later)),
        ..BuiltinOptions::default()
    };
    let reopened = BuiltinAuthority::open(tmp.path(), &td(), options).unwrap();
    assert_ne!(reopened.intermediate(), &old_int);
    assert_eq!(reopened.bundle(), root, "same root");
    assert!(reopened.intermediate_not_after() > later + Duration::from_secs(300 * 86400));
    let svid = sign(&reopened, &cart(), None).unwrap();
    assert_eq!(svid.chain()[1], *reopened.intermediate());
}

#[test]
fn material_opens_without_files_and_returns_a_reissued_intermediate() {
    let material = BuiltinMaterial::generate(&td(), &BuiltinOptions::default()).unwrap();
    let (ca, renewed) =
        BuiltinAuthority::from_material(&material, &td(), BuiltinOptions::default()).unwrap();
    assert!(renewed.is_none(), "a fresh intermediate is kept");
    let svid = sign(&ca, &cart(), None).unwrap();
    assert_eq!(
        svid.chain()[1],
        CertificateDer::from_pem_slice(material.intermediate_cert.as_bytes()).unwrap()
    );

    let later = SystemTime::now() + Duration::from_secs(340 * 86400);
    let options = BuiltinOptions {
        clock: Arc::new(FixedClock(later)),
        ..BuiltinOptions::default()
    };
    let (reopened, renewed) = BuiltinAuthority::from_material(&material, &td(), options).unwrap();
    let renewed = renewed.expect("a new intermediate to keep");
    assert_eq!(renewed.root_key, material.root_key, "same root");
    assert_ne!(renewed.intermediate_key, material.intermediate_key);
    assert_eq!(reopened.bundle(), ca.bundle());

    let other = TrustDomain::new("other.internal").unwrap();
    let refused = BuiltinAuthority::from_material(&material, &other, BuiltinOptions::default());
    assert!(matches!(refused, Err(AuthorityError::Storage(m)) if m.contains("acme.internal")));
    assert!(
        !format!("{material:?}").contains("PRIVATE KEY"),
        "keys stay out of logs"
    );
}

#[test]
fn svids_issued_in_the_past_are_expired_now() {
    let tmp = tempfile::tempdir().unwrap();
    let past = SystemTime::now() - Duration::from_secs(3600);
    let options = BuiltinOptions {
        clock: Arc::new(FixedClock(past)),
        ..BuiltinOptions::default()
    };
    let ca = BuiltinAuthority::open(tmp.path(), &td(), options).unwrap();
    let svid = sign(&ca, &cart(), Some(Duration::from_secs(60))).unwrap();
    assert!(matches!(
        X509Svid::parse(svid.chain().to_vec(), &td(), SystemTime::now()),
        Err(signet_spiffe::SvidError::Expired { index: 0, .. })
    ));
}

#[tokio::test]
async fn the_trait_signs_like_issue() {
    let tmp = tempfile::tempdir().unwrap();
    let ca: Arc<dyn Authority> = Arc::new(open(tmp.path()));
    assert_eq!(ca.kind(), "builtin");
    let key = WorkloadKey::generate().unwrap();
    let id = cart();
    let csr = key.csr(&id).unwrap();
    let svid = ca
        .sign(SignRequest {
            csr: &csr,
            id: &id,
            ttl: None,
        })
        .await
        .unwrap();
    assert_eq!(svid.id(), &id);
    assert_eq!(ca.bundle().roots().len(), 1);
}

#[test]
fn an_intermediate_from_another_root_is_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let _ = open(a.path());
    let _ = open(b.path());
    for f in ["intermediate.crt", "intermediate.key"] {
        fs::copy(b.path().join(f), a.path().join(f)).unwrap();
    }
    let err = BuiltinAuthority::open(a.path(), &td(), BuiltinOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not signed by the root"), "{err}");
}

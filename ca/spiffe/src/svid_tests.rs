use super::*;
use crate::test_pki::{LeafSpec, TestCa};

const ID: &str = "spiffe://acme.internal/ns/shop/sa/cart";

fn td() -> TrustDomain {
    TrustDomain::new("acme.internal").unwrap()
}

#[test]
fn a_good_svid_exposes_its_fields() {
    let ca = TestCa::new("acme.internal");
    let spec = LeafSpec::for_id(ID);
    let (chain, _) = ca.issue(&spec);
    let svid = X509Svid::parse(chain.clone(), &td(), SystemTime::now()).unwrap();
    assert_eq!(svid.id().as_str(), ID);
    assert_eq!(svid.serial().as_bytes().len(), 16);
    assert_eq!(
        svid.not_before()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        spec.not_before
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    );
    assert_eq!(svid.chain(), chain.as_slice());
    assert_eq!(svid.leaf(), &chain[0]);

    let pem = svid.to_pem();
    let again = X509Svid::from_pem(&pem, &td(), SystemTime::now()).unwrap();
    assert_eq!(again.serial(), svid.serial());
    assert_eq!(
        Serial::from_hex(&svid.serial().to_string()).unwrap(),
        *svid.serial()
    );
}

#[test]
fn leaf_must_name_exactly_one_spiffe_uri() {
    let ca = TestCa::new("acme.internal");
    let now = SystemTime::now();

    let mut none = LeafSpec::for_id(ID);
    none.uris.clear();
    none.dns = vec!["cart.shop.svc".into()];
    let (chain, _) = ca.issue(&none);
    assert_eq!(
        X509Svid::parse(chain, &td(), now).unwrap_err(),
        SvidError::NoUriSan
    );

    let mut two = LeafSpec::for_id(ID);
    two.uris.push("spiffe://acme.internal/other".into());
    let (chain, _) = ca.issue(&two);
    assert_eq!(
        X509Svid::parse(chain, &td(), now).unwrap_err(),
        SvidError::ManyUriSans(2)
    );

    let mut http = LeafSpec::for_id(ID);
    http.uris = vec!["https://acme.internal/x".into()];
    let (chain, _) = ca.issue(&http);
    assert!(matches!(
        X509Svid::parse(chain, &td(), now).unwrap_err(),
        SvidError::BadSpiffeId {
            reason: IdError::WrongScheme,
            ..
        }
    ));
}

#[test]
fn leaf_must_not_be_a_ca() {
    let ca = TestCa::new("acme.internal");
    let mut spec = LeafSpec::for_id(ID);
    spec.is_ca = true;
    let (chain, _) = ca.issue(&spec);
    assert_eq!(
        X509Svid::parse(chain, &td(), SystemTime::now()).unwrap_err(),
        SvidError::LeafIsCa
    );
}

#[test]
fn wrong_trust_domain_is_refused() {
    let ca = TestCa::new("evil.example");
    let (chain, _) = ca.svid("spiffe://evil.example/ns/shop/sa/cart");
    let err = X509Svid::parse(chain, &td(), SystemTime::now()).unwrap_err();
    assert!(matches!(err, SvidError::WrongTrustDomain { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "SPIFFE ID `spiffe://evil.example/ns/shop/sa/cart` is not in trust domain `acme.internal`"
    );
}

#[test]
fn validity_window_is_enforced_for_every_certificate() {
    let ca = TestCa::new("acme.internal");
    let now = SystemTime::now();
    let mut expired = LeafSpec::for_id(ID);
    expired.not_before = now - Duration::from_secs(7200);
    expired.not_after = now - Duration::from_secs(3600);
    let (chain, _) = ca.issue(&expired);
    assert!(matches!(
        X509Svid::parse(chain, &td(), now).unwrap_err(),
        SvidError::Expired { index: 0, .. }
    ));

    let mut future = LeafSpec::for_id(ID);
    future.not_before = now + Duration::from_secs(3600);
    future.not_after = now + Duration::from_secs(7200);
    let (chain, _) = ca.issue(&future);
    assert!(matches!(
        X509Svid::parse(chain, &td(), now).unwrap_err(),
        SvidError::NotYetValid { index: 0, .. }
    ));

    // The intermediate is valid for a day: two days on, the leaf is fine (long-lived here)
    // but the intermediate is not.
    let mut long = LeafSpec::for_id(ID);
    long.not_after = now + Duration::from_secs(10 * 86400);
    let (chain, _) = ca.issue(&long);
    assert!(matches!(
        X509Svid::parse(chain, &td(), now + Duration::from_secs(2 * 86400)).unwrap_err(),
        SvidError::Expired { index: 1, .. }
    ));
}

#[test]
fn chain_errors() {
    assert_eq!(
        X509Svid::parse(vec![], &td(), SystemTime::now()).unwrap_err(),
        SvidError::EmptyChain
    );
    assert!(matches!(
        X509Svid::parse(
            vec![CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])],
            &td(),
            SystemTime::now()
        )
        .unwrap_err(),
        SvidError::Malformed { index: 0, .. }
    ));
    let ca = TestCa::new("acme.internal");
    let (a, _) = ca.svid(ID);
    let (b, _) = ca.svid(ID);
    let err =
        X509Svid::parse(vec![a[0].clone(), b[0].clone()], &td(), SystemTime::now()).unwrap_err();
    assert_eq!(err, SvidError::IntermediateNotCa { index: 1 });
}

#[test]
fn refresh_is_half_life_with_bounded_jitter() {
    let ca = TestCa::new("acme.internal");
    let now = SystemTime::now();
    let mut spec = LeafSpec::for_id(ID);
    spec.not_before = now - Duration::from_secs(10);
    spec.not_after = spec.not_before + Duration::from_secs(1000);
    let (chain, _) = ca.issue(&spec);
    let svid = X509Svid::parse(chain, &td(), now).unwrap();
    let start = svid.not_before();
    let secs = |t: SystemTime| t.duration_since(start).unwrap().as_secs_f64();
    assert_eq!(secs(svid.refresh_at_with(0.0)), 500.0);
    assert_eq!(secs(svid.refresh_at_with(1.0)), 600.0);
    assert_eq!(secs(svid.refresh_at_with(-1.0)), 400.0);
    assert_eq!(secs(svid.refresh_at_with(7.0)), 600.0, "jitter is clamped");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let r = secs(svid.refresh_at());
        assert!((400.0..=600.0).contains(&r), "refresh at {r}s");
        seen.insert(r as u64);
    }
    assert!(seen.len() > 10, "jitter spreads refreshes: {seen:?}");
}

#[test]
fn serial_hex_rejects_garbage() {
    assert_eq!(Serial::from_hex(""), None);
    assert_eq!(Serial::from_hex("abc"), None);
    assert_eq!(Serial::from_hex("zz"), None);
    assert_eq!(Serial::from_hex("0aff").unwrap().as_bytes(), &[0x0a, 0xff]);
}

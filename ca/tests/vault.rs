//! The Vault backends against a real OpenBao server (started per test on a free port).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failure is the test failing"
)]

use std::sync::Arc;
use std::time::Duration;

use signet_ca::vault::{VaultAuth, VaultMode, VaultSession, VaultSettings, preflight};
use signet_ca::{Authority, AuthorityError, SignRequest, SvidProfile, SystemClock};
use signet_spiffe::{TrustDomain, WorkloadKey};
use signet_tests::openbao::OpenBao;

const TD: &str = "acme.internal";

fn td() -> TrustDomain {
    TrustDomain::new(TD).unwrap()
}

fn settings(bao: &OpenBao, mode: VaultMode, auth: VaultAuth) -> VaultSettings {
    VaultSettings {
        address: bao.address.clone(),
        ca_cert: bao.ca_cert.clone(),
        auth,
        mount: "pki".to_owned(),
        role: Some("signet".to_owned()),
        mode,
        intermediate_ttl_secs: 30 * 24 * 3600,
    }
}

fn root(bao: &OpenBao) -> VaultAuth {
    VaultAuth::Token {
        token: bao.root_token.clone(),
    }
}

async fn open(settings: VaultSettings, dir: &std::path::Path) -> Arc<dyn Authority> {
    let checked = preflight(
        settings,
        &td(),
        SvidProfile::default(),
        Arc::new(SystemClock),
        dir.to_path_buf(),
    )
    .await;
    assert!(
        checked.checks.iter().all(|c| c.ok),
        "checks: {:#?}",
        checked.checks
    );
    checked
        .authority
        .expect("an authority after passing checks")
}

async fn issue(ca: &dyn Authority, path: &str) -> Result<signet_spiffe::X509Svid, AuthorityError> {
    let id = td().workload(path).unwrap();
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr(&id).unwrap();
    ca.sign(SignRequest {
        csr: &csr,
        id: &id,
        ttl: Some(Duration::from_secs(600)),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_sign_mode_issues_svids_signed_by_the_mount() {
    let bao = OpenBao::start_dev();
    bao.setup_pki("pki", TD);
    let dir = tempfile::tempdir().unwrap();
    let ca = open(settings(&bao, VaultMode::Sign, root(&bao)), dir.path()).await;
    assert_eq!(ca.kind(), "vault-sign");
    let svid = issue(&*ca, "/ns/shop/sa/cart").await.unwrap();
    assert_eq!(svid.id().as_str(), "spiffe://acme.internal/ns/shop/sa/cart");
    // Vault issued it: the mount lists its serial.
    let serials = bao.run(&["list", "-format=json", "pki/certs"]);
    let hex = svid.serial().to_string().replace(':', "").to_lowercase();
    assert!(
        serials
            .replace([':', '-'], "")
            .to_lowercase()
            .contains(&hex),
        "{hex} not in {serials}"
    );
    assert_eq!(ca.bundle().roots().len(), 1);
    assert!(
        dir.path().read_dir().unwrap().next().is_none(),
        "no key kept in sign mode"
    );
    let status = ca.status();
    assert_eq!(status.backend, "vault-sign");
    assert_eq!(
        status.vault.as_ref().unwrap().role.as_deref(),
        Some("signet")
    );
    // A foreign identity is refused before Vault is asked.
    let other = TrustDomain::new("other.internal").unwrap();
    let id = other.workload("/x").unwrap();
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr(&id).unwrap();
    let err = ca
        .sign(SignRequest {
            csr: &csr,
            id: &id,
            ttl: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, AuthorityError::ForeignId { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_intermediate_mode_over_https_with_approle() {
    let bao = OpenBao::start_dev_tls();
    bao.setup_pki("pki", TD);
    let (role_id, secret_id) = bao.approle("signet", "pki", "1h", "24h");
    let dir = tempfile::tempdir().unwrap();
    let auth = VaultAuth::AppRole {
        role_id,
        secret_id,
        mount: "approle".to_owned(),
    };
    let ca = open(
        settings(&bao, VaultMode::Intermediate, auth.clone()),
        dir.path(),
    )
    .await;
    assert_eq!(ca.kind(), "vault-intermediate");
    let svid = issue(&*ca, "/ns/shop/sa/cart").await.unwrap();
    // Leaf, Signet's intermediate; the root (Vault's) is the bundle.
    assert_eq!(svid.chain().len(), 2);
    let status = ca.status();
    assert_eq!(status.chain.len(), 2, "{status:?}");
    assert_eq!(status.chain[0].role, "intermediate");
    assert!(status.chain[1].subject.contains("Test root"), "{status:?}");
    assert_eq!(status.vault.as_ref().unwrap().auth, "approle");
    assert_eq!(status.vault.as_ref().unwrap().logins, 1);
    // The intermediate is kept: opening again reuses it instead of asking Vault.
    let kept = std::fs::read(dir.path().join("intermediate.crt")).unwrap();
    let again = open(settings(&bao, VaultMode::Intermediate, auth), dir.path()).await;
    assert_eq!(
        std::fs::read(dir.path().join("intermediate.crt")).unwrap(),
        kept
    );
    issue(&*again, "/ns/shop/sa/web").await.unwrap();
    // Without the CA file, Vault's certificate is not trusted.
    let mut untrusted = settings(&bao, VaultMode::Intermediate, root(&bao));
    untrusted.ca_cert = None;
    let checked = preflight(
        untrusted,
        &td(),
        SvidProfile::default(),
        Arc::new(SystemClock),
        dir.path().join("x"),
    )
    .await;
    let last = checked.checks.last().unwrap();
    assert_eq!(last.name, "reachable");
    assert!(
        !last.ok && last.detail.contains("cannot reach Vault"),
        "{last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_names_what_is_wrong() {
    let bao = OpenBao::start_dev();
    bao.setup_pki("pki", TD);
    // A role for another trust domain.
    bao.run(&[
        "write",
        "pki/roles/elsewhere",
        "allowed_uri_sans=spiffe://other.internal/*",
        "require_cn=false",
        "key_usage=DigitalSignature",
    ]);
    // A role with Vault's default key usages.
    bao.run(&[
        "write",
        "pki/roles/defaults",
        "allowed_uri_sans=spiffe://acme.internal/*",
        "require_cn=false",
    ]);
    bao.run(&["secrets", "enable", "-path=kv", "kv"]);
    let dir = tempfile::tempdir().unwrap();
    let failing = |name: &str, detail: &str, s: VaultSettings| {
        let (name, detail, dir) = (name.to_owned(), detail.to_owned(), dir.path().to_owned());
        async move {
            let checked =
                preflight(s, &td(), SvidProfile::default(), Arc::new(SystemClock), dir).await;
            assert!(checked.authority.is_none());
            let last = checked.checks.last().unwrap();
            assert_eq!(last.name, name, "{:#?}", checked.checks);
            assert!(!last.ok);
            assert!(last.detail.contains(&detail), "{last:?}");
            assert!(
                checked.checks[..checked.checks.len() - 1]
                    .iter()
                    .all(|c| c.ok)
            );
        }
    };
    let mut s = settings(&bao, VaultMode::Sign, root(&bao));
    s.role = Some("elsewhere".to_owned());
    failing("role", "does not allow `spiffe://acme.internal/…`", s).await;
    let mut s = settings(&bao, VaultMode::Sign, root(&bao));
    s.role = Some("defaults".to_owned());
    failing("role", "exactly DigitalSignature", s).await;
    let mut s = settings(&bao, VaultMode::Sign, root(&bao));
    s.role = Some("missing".to_owned());
    failing("role", "refused reading the role", s).await;
    let mut s = settings(&bao, VaultMode::Sign, root(&bao));
    s.mount = "kv".to_owned();
    failing("mount", "not `pki`", s).await;
    let s = settings(
        &bao,
        VaultMode::Sign,
        VaultAuth::Token {
            token: "not-a-token".to_owned(),
        },
    );
    failing("auth", "403", s).await;
    let mut s = settings(&bao, VaultMode::Sign, root(&bao));
    s.address = "http://vault.example:8200".to_owned();
    failing("settings", "use https", s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_token_is_renewed_then_replaced_by_logging_in_again() {
    let bao = OpenBao::start_dev();
    bao.setup_pki("pki", TD);
    // Tokens live 4 s, renewable up to 9 s in all: renewed twice or so, then a new login.
    let (role_id, secret_id) = bao.approle("short", "pki", "4s", "9s");
    let session = VaultSession::connect(settings(
        &bao,
        VaultMode::Sign,
        VaultAuth::AppRole {
            role_id,
            secret_id,
            mount: "approle".to_owned(),
        },
    ))
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(16);
    while tokio::time::Instant::now() < deadline {
        let next = session.maintain().await.unwrap();
        assert!(
            next >= Duration::from_secs(1),
            "never a tight loop: {next:?}"
        );
        tokio::time::sleep(next).await;
    }
    let (status, error) = session.status(None);
    assert!(status.renewals >= 1, "{status:?}");
    assert!(status.logins >= 2, "{status:?}");
    assert_eq!(error, None);
    // The token in use works.
    let ca = signet_ca::vault::VaultSignAuthority::open(
        Arc::new(session),
        &td(),
        SvidProfile::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    issue(&ca, "/ns/a/sa/b").await.unwrap();

    // A token that cannot be renewed and no AppRole: an error that says so.
    let token = bao.run(&[
        "token",
        "create",
        "-field=token",
        "-ttl=3s",
        "-renewable=false",
        "-policy=short",
    ]);
    let session = VaultSession::connect(settings(
        &bao,
        VaultMode::Sign,
        VaultAuth::Token {
            token: token.trim().to_owned(),
        },
    ))
    .await
    .unwrap();
    // Fine while more than half its life remains, then an error that says what to do.
    let err = loop {
        match session.maintain().await {
            Ok(next) => tokio::time::sleep(next).await,
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("cannot be renewed"), "{err}");
    assert!(
        session
            .status(None)
            .1
            .unwrap()
            .contains("cannot be renewed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_down_then_back() {
    let mut bao = OpenBao::start_persistent();
    bao.setup_pki("pki", TD);
    let dir = tempfile::tempdir().unwrap();
    let sign = open(settings(&bao, VaultMode::Sign, root(&bao)), dir.path()).await;
    let local = open(
        settings(&bao, VaultMode::Intermediate, root(&bao)),
        &dir.path().join("intermediate"),
    )
    .await;
    issue(&*sign, "/ns/a/sa/b").await.unwrap();

    bao.stop();
    let err = issue(&*sign, "/ns/a/sa/b").await.unwrap_err();
    assert!(matches!(err, AuthorityError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("cannot reach Vault"), "{err}");
    assert!(sign.status().last_error.is_some());
    // The intermediate mode signs locally: Vault being down does not stop issuance.
    issue(&*local, "/ns/a/sa/b").await.unwrap();
    assert!(local.maintain().await.is_err());

    bao.restart();
    issue(&*sign, "/ns/a/sa/b").await.unwrap();
    assert_eq!(sign.status().last_error, None);
    local.maintain().await.unwrap();
}

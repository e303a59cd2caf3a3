//! End to end against a real OpenBao: `meshctl ca setup` in both Vault modes with proxies
//! accepting the SVIDs, a bad role caught before anything changes, a CA rotation from the
//! built-in CA to a Vault intermediate under continuous traffic with no failed request, and
//! Vault going away and coming back.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is the test failing"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;
use signet_tests::mesh::{Mesh, TD};
use signet_tests::openbao::OpenBao;
use signet_tests::process::ProxyProcess;
use x509_parser::prelude::{FromDer as _, X509Certificate};

const VAULT_ROOT_CN: &str = "Test root for mesh.test";

fn ca_status(mesh: &Mesh) -> Value {
    serde_json::from_str(&mesh.cp.meshctl_ok(&["ca", "status", "-o", "json"])).unwrap()
}

/// The issuer names of the SVID a proxy keeps in its state directory: the leaf's issuer,
/// then each upper certificate's.
fn kept_chain_issuers(mesh: &Mesh, service: &str) -> Vec<String> {
    let file = mesh
        .dir
        .path()
        .join(format!("{service}-state"))
        .join("svid.pem");
    CertificateDer::pem_file_iter(&file)
        .unwrap()
        .map(|c| {
            let c = c.unwrap();
            let (_, x) = X509Certificate::from_der(c.as_ref()).unwrap();
            x.issuer().to_string()
        })
        .collect()
}

/// Waits until the cart's kept SVID was signed by Vault's root itself (`vault-sign`).
async fn cart_on_a_vault_signed_svid(mesh: &Mesh) {
    eventually(
        "the cart on a Vault-signed SVID",
        Duration::from_secs(20),
        || {
            kept_chain_issuers(mesh, "cart")
                .first()
                .is_some_and(|i| i.contains(VAULT_ROOT_CN))
        },
    )
    .await;
}

/// Waits until `check` holds; panics with `what` after `within`.
async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let begun = Instant::now();
    while !check() {
        assert!(
            begun.elapsed() < within,
            "still not {what} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Requests from the frontend to the cart every 20 ms until stopped: (sent, failed).
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Traffic {
    fn start(mesh: &Mesh) -> Self {
        let port = mesh.cart_port();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, n, f) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&failed));
        let task = tokio::spawn(async move {
            let mut failures = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let attempt = async {
                    let mut http = signet_tests::client::Http::h1(port).await;
                    http.get("cart", "/api/items", &[]).await.status.as_u16()
                };
                let status = tokio::time::timeout(Duration::from_secs(5), attempt)
                    .await
                    .unwrap_or(0);
                n.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    f.fetch_add(1, Ordering::Relaxed);
                    failures.push(format!("status {status}"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failures
        });
        Self {
            stop,
            sent,
            failed,
            task,
        }
    }

    async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.task.await.unwrap();
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            failures,
        )
    }
}

fn setup_args<'a>(bao: &'a OpenBao, mode: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "ca",
        "setup",
        "--vault-addr",
        bao.address.as_str(),
        "--vault-mount",
        "pki",
        "--mode",
        mode,
    ];
    if let Some(ca) = &bao.ca_cert {
        args.extend(["--vault-ca-cert", ca.to_str().unwrap()]);
    }
    args
}

async fn renewed_serial(proxy: &ProxyProcess, old: &str, within: Duration) -> String {
    let begun = Instant::now();
    loop {
        let serial = signet_tests::mesh::identity_serial(proxy).await;
        if serial != old {
            return serial;
        }
        assert!(begun.elapsed() < within, "no new SVID within {within:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_from_the_builtin_ca_to_a_vault_intermediate_fails_no_request() {
    let bao = OpenBao::start_dev_tls();
    bao.setup_pki("pki", TD);
    let mesh = Mesh::start(&["--svid-ttl", "8s"]).await;
    let before = ca_status(&mesh);
    assert_eq!(before["backend"], "builtin");
    let builtin_root = before["roots"][0]["sha256"].as_str().unwrap().to_owned();
    let traffic = Traffic::start(&mesh);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut args = setup_args(&bao, "intermediate");
    args.extend(["--vault-token", bao.root_token.as_str(), "--wait"]);
    let out = mesh.cp.meshctl_ok(&args);
    for check in ["reachable", "auth", "mount", "root", "trial issuance"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with("ok") && l.contains(check)),
            "{check} not reported ok:\n{out}"
        );
    }
    assert!(out.contains("promoted"), "{out}");
    let promoted = ca_status(&mesh);
    assert_eq!(promoted["backend"], "vault-intermediate");
    // Both roots are trusted until the built-in CA's last SVID expires.
    let states: Vec<(String, String)> = promoted["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["sha256"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&(builtin_root.clone(), "retiring".to_owned())),
        "{states:?}"
    );
    // Proxies renew from the new CA at half-life: their chains end at Vault's root.
    eventually(
        "every proxy on the Vault CA",
        Duration::from_secs(30),
        || {
            ["cart", "frontend"].iter().all(|s| {
                kept_chain_issuers(&mesh, s)
                    .last()
                    .is_some_and(|i| i.contains(VAULT_ROOT_CN))
            })
        },
    )
    .await;
    // Then the built-in root leaves the bundle.
    eventually("the built-in root retired", Duration::from_secs(60), || {
        let roots = ca_status(&mesh)["roots"].clone();
        roots.as_array().unwrap().len() == 1 && roots[0]["state"] == "active"
    })
    .await;
    // Traffic keeps flowing on the new root alone for a few more renewals.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (sent, failed, failures) = traffic.finish().await;
    assert!(sent > 200, "only {sent} requests");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed: {failures:?}"
    );
    // meshctl trusts the control plane through the rewritten bundle file.
    let status = mesh.cp.meshctl_ok(&["ca", "status"]);
    assert!(status.contains("vault-intermediate"), "{status}");
    assert!(
        status.contains("rotation       none in progress"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_sign_mode_with_approle_and_a_role_that_forbids_the_trust_domain() {
    let bao = OpenBao::start_dev();
    bao.setup_pki("pki", TD);
    bao.run(&[
        "write",
        "pki/roles/elsewhere",
        "allowed_uri_sans=spiffe://other.test/*",
        "require_cn=false",
        "key_usage=DigitalSignature",
    ]);
    let (role_id, secret_id) = bao.approle("signet", "pki", "1h", "24h");
    let mut mesh = Mesh::start(&["--svid-ttl", "6s"]).await;

    // A role that cannot sign this trust domain is caught, and nothing changes.
    let mut args = setup_args(&bao, "sign");
    args.extend([
        "--vault-role",
        "elsewhere",
        "--vault-role-id",
        role_id.as_str(),
        "--vault-secret-id",
        secret_id.as_str(),
    ]);
    let out = mesh.cp.meshctl(&args);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("FAILED role"), "{stdout}");
    assert!(
        stderr.contains("does not allow `spiffe://mesh.test/"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
    assert_eq!(ca_status(&mesh)["backend"], "builtin");
    assert!(ca_status(&mesh)["rotation"].is_null());

    // The right role, with AppRole.
    let mut args = setup_args(&bao, "sign");
    args.extend([
        "--vault-role",
        "signet",
        "--vault-role-id",
        role_id.as_str(),
        "--vault-secret-id",
        secret_id.as_str(),
        "--wait",
    ]);
    mesh.cp.meshctl_ok(&args);
    let status = ca_status(&mesh);
    assert_eq!(status["backend"], "vault-sign");
    assert_eq!(status["vault"]["auth"], "approle");
    assert_eq!(status["vault"]["role"], "signet");
    // Proxies renew into Vault-signed SVIDs (leaf issued by Vault's root) and keep serving.
    cart_on_a_vault_signed_svid(&mesh).await;
    let (status, _) = mesh.call("/api/items").await;
    assert_eq!(status, 200);
    // A rotation in sign mode reads the mount again.
    mesh.cp.meshctl_ok(&["ca", "rotate", "--wait"]);
    assert_eq!(ca_status(&mesh)["backend"], "vault-sign");
    // The choice survives a restart of the control plane (AppRole logs in again).
    mesh.cp.stop();
    mesh.cp.restart();
    let status = ca_status(&mesh);
    assert_eq!(status["backend"], "vault-sign");
    assert_eq!(status["vault"]["logins"], 1);
    let serial = signet_tests::mesh::identity_serial(&mesh.cart).await;
    renewed_serial(&mesh.cart, &serial, Duration::from_secs(20)).await;
    assert_eq!(mesh.call("/api/items").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_builtin_ca_replaces_its_root_without_a_failed_request() {
    let mesh = Mesh::start(&["--svid-ttl", "6s"]).await;
    let old = ca_status(&mesh)["roots"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let traffic = Traffic::start(&mesh);
    let out = mesh.cp.meshctl_ok(&["ca", "rotate", "--wait"]);
    assert!(out.contains("promoted"), "{out}");
    eventually("the old root retired", Duration::from_secs(60), || {
        let roots = ca_status(&mesh)["roots"].clone();
        let roots = roots.as_array().unwrap();
        roots.len() == 1 && roots[0]["sha256"] != old.as_str()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (sent, failed, failures) = traffic.finish().await;
    assert!(sent > 100, "only {sent} requests");
    assert_eq!(failed, 0, "{failed} of {sent} failed: {failures:?}");
    assert_eq!(ca_status(&mesh)["backend"], "builtin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_down_reports_errors_keeps_traffic_and_recovers() {
    let mut bao = OpenBao::start_persistent();
    bao.setup_pki("pki", TD);
    let mesh = Mesh::start(&["--svid-ttl", "12s"]).await;
    let mut args = setup_args(&bao, "sign");
    args.extend([
        "--vault-role",
        "signet",
        "--vault-token",
        bao.root_token.as_str(),
        "--wait",
    ]);
    mesh.cp.meshctl_ok(&args);
    cart_on_a_vault_signed_svid(&mesh).await;

    let traffic = Traffic::start(&mesh);
    bao.stop();
    // Renewals fail while Vault is away; the proxies keep their current SVIDs and serve.
    mesh.cart
        .metric_reaching("signet_proxy_control_plane_errors_total{call=\"renew\"}", 1)
        .await;
    let status = ca_status(&mesh);
    let error = status["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("cannot reach Vault"), "{status}");
    assert!(
        status["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("cannot reach Vault")),
        "{status}"
    );

    // Away for a while longer: past the next renewal attempts, not past the SVIDs' expiry.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let serial = signet_tests::mesh::identity_serial(&mesh.cart).await;
    bao.restart();
    // Back: renewal succeeds again.
    renewed_serial(&mesh.cart, &serial, Duration::from_secs(30)).await;
    let (sent, failed, failures) = traffic.finish().await;
    assert!(sent > 50, "only {sent} requests");
    assert_eq!(failed, 0, "{failed} of {sent} failed: {failures:?}");
    eventually("the error cleared", Duration::from_secs(70), || {
        ca_status(&mesh)["last_error"].is_null()
    })
    .await;
}

//! Two Signet meshes with their own trust domains and CAs, federated through their bundle
//! endpoints (`https_spiffe`): real control planes, real proxies, real mTLS. A call from
//! one mesh's frontend to the other's ledger is refused before the federation, refused after
//! it while no policy names the caller (not even by an unconstrained permit), allowed by a
//! policy naming the foreign SPIFFE ID, and refused again, its live connection cut, after
//! `meshctl federation remove`. A JWT-SVID of one mesh is validated by the other's
//! Workload API.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is the test failing"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use signet_cp::api::workload as w;
use signet_tests::app::EchoApp;
use signet_tests::client::Http;
use signet_tests::control::{ControlPlane, workspace_binary};
use signet_tests::process::ProxyProcess;
use signet_tests::workload::{uid, with_header};

const ALPHA: &str = "alpha.test";
const BETA: &str = "beta.test";
const FRONTEND: &str = "spiffe://alpha.test/ns/shop/sa/frontend";
const LEDGER: &str = "spiffe://beta.test/ns/fin/sa/ledger";

fn control_plane(dir: &Path, td: &str) -> ControlPlane {
    ControlPlane::start(
        &dir.join(td),
        &[
            "--trust-domain",
            td,
            "--heartbeat-interval",
            "1s",
            "--bundle-endpoint-listen",
            "127.0.0.1:0",
            "--bundle-refresh-hint",
            "2s",
        ],
    )
}

/// A proxy of `cp`'s mesh for `id` (`spiffe://td/ns/NS/sa/SERVICE`), its Workload API open to
/// this test's process, with `extra` TOML appended.
fn proxy(dir: &Path, cp: &ControlPlane, id: &str, app: SocketAddr, extra: &str) -> ProxyProcess {
    let parsed: signet_spiffe::SpiffeId = id.parse().unwrap();
    let (ns, service) = parsed.namespace_and_account().unwrap();
    let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    let toml = format!(
        "[service]\nname = \"{service}\"\nnamespace = \"{ns}\"\n\n\
         [control_plane]\naddress = \"{}\"\nca = \"{}\"\ntrust_domain = \"{}\"\n\
         state_dir = \"{service}-state\"\njoin_token = \"{}\"\n\n\
         [inbound]\nlisten = \"127.0.0.1:0\"\napp = \"{app}\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [workload_api]\nsocket = \"{}\"\nselectors = [\"unix:uid:{}\", \"unix:path:{}\"]\n{extra}",
        cp.grpc,
        cp.setting("SIGNET_CA"),
        cp.trust_domain,
        cp.token(id),
        dir.join(format!("{service}.sock")).display(),
        uid(),
        exe.display(),
    );
    ProxyProcess::start(&workspace_binary("signet-proxy"), dir, service, &toml)
}

/// `meshctl federation add` on `cp` for `other`'s mesh, trusting its `bundle.pem` first.
fn federate(cp: &ControlPlane, other: &ControlPlane, endpoint_id: &str) -> std::process::Output {
    let endpoint = format!("https://{}/", other.bundle_endpoint.unwrap());
    cp.meshctl(&[
        "federation",
        "add",
        "--trust-domain",
        &other.trust_domain,
        "--endpoint",
        &endpoint,
        "--profile",
        "https_spiffe",
        "--endpoint-spiffe-id",
        endpoint_id,
        "--bootstrap-bundle",
        &other.setting("SIGNET_CA"),
    ])
}

fn control_plane_id(td: &str) -> String {
    format!("spiffe://{td}/signet/control-plane")
}

/// One GET from the frontend's app to the ledger through the frontend's proxy: status, and
/// the identity the ledger's app was told the caller has.
async fn call(frontend: &ProxyProcess, path: &str) -> (u16, Option<String>) {
    let attempt = async {
        let mut http = Http::h1(frontend.outbound["ledger"]).await;
        let reply = http.get("ledger", path, &[]).await;
        (
            reply.status.as_u16(),
            reply.echoed_header("x-signet-peer-id").into_iter().next(),
        )
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .unwrap_or((0, None))
}

async fn eventually(frontend: &ProxyProcess, path: &str, want: u16) -> (u16, Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = call(frontend, path).await;
        if got.0 == want {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: still {got:?}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn apply(cp: &ControlPlane, dir: &Path, name: &str, text: &str) {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    cp.meshctl_ok(&[
        "authz",
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--allow-widening",
    ]);
}

/// Its own workloads, and (too broadly) anyone: neither names the other mesh.
const LEDGER_OWN: &str = r#"
@id("fin-internal")
permit (principal in Mesh::Namespace::"fin", action, resource in Mesh::Namespace::"fin");
@id("anyone-connects")
permit (principal, action == Mesh::Action::"connect", resource == Mesh::Service::"ledger");
@id("anyone-reads-health")
permit (principal, action in Mesh::Action::"read", resource == Mesh::Service::"ledger")
when { context.path == "/health" };
"#;

const LEDGER_NAMES_ALPHA: &str = r#"
@id("alpha-frontend-connects")
permit (principal == Mesh::Workload::"spiffe://alpha.test/ns/shop/sa/frontend",
        action == Mesh::Action::"connect", resource == Mesh::Service::"ledger");
@id("alpha-reads-api")
permit (principal, action in Mesh::Action::"read", resource == Mesh::Service::"ledger")
when { principal.trust_domain == "alpha.test" && context.path like "/api/*" };
"#;

async fn workload_api(
    socket: &Path,
) -> w::spiffe_workload_api_client::SpiffeWorkloadApiClient<tonic::transport::Channel> {
    w::spiffe_workload_api_client::SpiffeWorkloadApiClient::new(
        signet_tests::workload::channel(socket).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_meshes_trust_each_other_through_bundle_endpoints_under_cedar_policies() {
    let dir = tempfile::tempdir().unwrap();
    let alpha = control_plane(dir.path(), ALPHA);
    let beta = control_plane(dir.path(), BETA);
    apply(&beta, dir.path(), "ledger.cedar", LEDGER_OWN);
    let app = EchoApp::start().await;
    let ledger = proxy(dir.path(), &beta, LEDGER, app.addr, "");
    let frontend = proxy(
        dir.path(),
        &alpha,
        FRONTEND,
        app.addr,
        &format!(
            "\n[[outbound]]\nservice = \"ledger\"\nlisten = \"127.0.0.1:0\"\n\
             trust_domain = \"{BETA}\"\nendpoints = [\"{}\"]\nidentities = [\"{LEDGER}\"]\n",
            ledger.inbound
        ),
    );

    // Before: the meshes share no root; the handshake fails.
    let (status, _) = call(&frontend, "/api/balance").await;
    assert_ne!(status, 200, "no federation yet");

    // Bad requests: one line each, nothing kept.
    for (args, why) in [
        (vec!["--trust-domain", ALPHA], "own trust domain"),
        (vec!["--trust-domain", BETA, "--profile", "ftp"], "profile"),
        (vec!["--trust-domain", BETA], "bootstrap bundle"),
    ] {
        let mut all = vec![
            "federation",
            "add",
            "--endpoint",
            "https://127.0.0.1:1/",
            "--endpoint-spiffe-id",
            "spiffe://beta.test/signet/control-plane",
        ];
        all.extend(args);
        let out = alpha.meshctl(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why}");
        assert!(stderr.contains(why), "{why}: {stderr}");
    }
    // The wrong endpoint identity: kept on its bootstrap bundle, the fetch's failure shown.
    let out = federate(&alpha, &beta, "spiffe://beta.test/not-the-control-plane");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("the first fetch failed"), "{stdout}");
    let again = federate(&alpha, &beta, &control_plane_id(BETA));
    assert!(!again.status.success(), "a second add is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already federated"));
    alpha.meshctl_ok(&["federation", "remove", BETA]);
    let gone = alpha.meshctl(&["federation", "remove", BETA]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("not federated"));

    // Federated both ways, each endpoint authenticated by the bootstrap bundle.
    let out = federate(&alpha, &beta, &control_plane_id(BETA));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("federated with beta.test"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = federate(&beta, &alpha, &control_plane_id(ALPHA));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value =
        serde_json::from_str(&beta.meshctl_ok(&["federation", "list", "-o", "json"])).unwrap();
    let f = &listed["federations"][0];
    assert_eq!(f["trust_domain"], ALPHA, "{listed}");
    assert!(
        f["refreshed_at"].is_i64(),
        "fetched from the endpoint: {listed}"
    );
    assert!(f["last_error"].is_null(), "{listed}");
    assert_eq!(f["jwt_keys"].as_array().unwrap().len(), 1, "{listed}");
    let inspected = beta.meshctl_ok(&["identity", "inspect", LEDGER]);
    assert!(
        inspected.contains("federated, alpha.test (1 roots, 1 JWT keys"),
        "{inspected}"
    );

    // Trusted, but no policy names alpha: refused, whatever the unconstrained permits say.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = call(&frontend, "/health").await;
    assert_ne!(status, 200, "an unconstrained permit let another mesh in");
    // The handshake passed (alpha's roots are trusted); Cedar refused the connection.
    let denied = ledger
        .metric_reaching(
            "signet_proxy_authz_decisions_total{action=\"connect\",decision=\"deny\",policy=\"default-deny\"}",
            1,
        )
        .await;
    assert!(denied >= 1, "refused by policy, not by the handshake");

    // A policy naming the foreign identity (and one its trust domain) lets it in, as it is.
    apply(
        &beta,
        dir.path(),
        "ledger.cedar",
        &format!("{LEDGER_OWN}{LEDGER_NAMES_ALPHA}"),
    );
    let (_, peer) = eventually(&frontend, "/api/balance", 200).await;
    assert_eq!(peer.as_deref(), Some(FRONTEND));
    let (status, _) = call(&frontend, "/health").await;
    assert_eq!(status, 403, "`anyone-reads-health` does not name alpha");

    // Beta rotates its CA: alpha's copy of beta's bundle follows within the refresh hint.
    let before: serde_json::Value =
        serde_json::from_str(&alpha.meshctl_ok(&["federation", "list", "-o", "json"])).unwrap();
    let sequence = before["federations"][0]["sequence"].as_u64().unwrap();
    beta.meshctl_ok(&["ca", "rotate"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now: serde_json::Value =
            serde_json::from_str(&alpha.meshctl_ok(&["federation", "list", "-o", "json"])).unwrap();
        let f = &now["federations"][0];
        if f["sequence"].as_u64().unwrap() > sequence && f["roots"] == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "beta's rotation never reached alpha: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Promoted only after two refresh hints: beta's endpoint, now presenting an SVID of the
    // new CA, is still authenticated by what alpha holds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let promoted_at = loop {
        let ca: serde_json::Value =
            serde_json::from_str(&beta.meshctl_ok(&["ca", "status", "-o", "json"])).unwrap();
        if ca["rotation"].is_null() {
            break std::time::SystemTime::now();
        }
        assert!(
            Instant::now() < deadline,
            "beta's rotation was never promoted: {ca}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let promoted_ms = i64::try_from(
        promoted_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now: serde_json::Value =
            serde_json::from_str(&alpha.meshctl_ok(&["federation", "list", "-o", "json"])).unwrap();
        let f = &now["federations"][0];
        if f["refreshed_at"].as_i64().unwrap_or(0) > promoted_ms + 500 {
            assert!(f["last_error"].is_null(), "{now}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no fetch after the promotion: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = call(&frontend, "/api/balance").await;
    assert_eq!(status, 200, "calls go on through the rotation");

    // A JWT-SVID of alpha's frontend, validated by beta's Workload API.
    let mut alpha_api = workload_api(&dir.path().join("frontend.sock")).await;
    let token = alpha_api
        .fetch_jwtsvid(with_header(w::JwtsvidRequest {
            audience: vec!["ledger".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .svids
        .remove(0)
        .svid;
    let mut beta_api = workload_api(&dir.path().join("ledger.sock")).await;
    let validate = |api: &mut w::spiffe_workload_api_client::SpiffeWorkloadApiClient<_>| {
        let mut api = api.clone();
        let token = token.clone();
        async move {
            api.validate_jwtsvid(with_header(w::ValidateJwtsvidRequest {
                audience: "ledger".into(),
                svid: token,
            }))
            .await
        }
    };
    let validated = validate(&mut beta_api).await.unwrap().into_inner();
    assert_eq!(validated.spiffe_id, FRONTEND);
    let bundles = beta_api
        .fetch_x509_bundles(with_header(w::X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let mut domains: Vec<&String> = bundles.bundles.keys().collect();
    domains.sort();
    assert_eq!(domains, ["spiffe://alpha.test", "spiffe://beta.test"]);

    // Removed: trust stops at once; the pooled connection from alpha is cut.
    let cut_before = ledger
        .metric(
            "signet_proxy_connections_refused_total{direction=\"inbound\",reason=\"trust-domain\"}",
        )
        .await;
    beta.meshctl_ok(&["federation", "remove", ALPHA]);
    let (status, _) = call(&frontend, "/api/balance").await;
    assert_ne!(status, 200, "trust outlived the federation");
    let cut = ledger
        .metric_reaching(
            "signet_proxy_connections_refused_total{direction=\"inbound\",reason=\"trust-domain\"}",
            cut_before + 1,
        )
        .await;
    assert!(cut > cut_before);
    let refused = validate(&mut beta_api).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    drop(frontend);
}

/// A CA and a server certificate for 127.0.0.1 under it, as PEM files in `dir`: what a
/// WebPKI-fronted bundle endpoint presents.
fn web_pki(dir: &Path) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Test Web CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    (
        write("web-ca.pem", ca.pem()),
        write("web.pem", cert.pem()),
        write("web.key", key.serialize_pem()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_endpoint_behind_a_webpki_certificate_is_fetched_under_https_web() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = web_pki(dir.path());
    let alpha = control_plane(dir.path(), ALPHA);
    let beta = ControlPlane::start(
        &dir.path().join(BETA),
        &[
            "--trust-domain",
            BETA,
            "--bundle-endpoint-listen",
            "127.0.0.1:0",
            "--bundle-endpoint-cert",
            &cert,
            "--bundle-endpoint-key",
            &key,
        ],
    );
    let endpoint = format!("https://{}/", beta.bundle_endpoint.unwrap());
    let add = |ca_file: &str| {
        alpha.meshctl(&[
            "federation",
            "add",
            "--trust-domain",
            BETA,
            "--endpoint",
            &endpoint,
            "--profile",
            "https_web",
            "--endpoint-ca",
            ca_file,
        ])
    };
    // Another CA's certificate: nothing fetched, and with no bootstrap bundle nothing kept.
    let out = add(&alpha.setting("SIGNET_CA"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing to trust"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let listed = alpha.meshctl_ok(&["federation", "list"]);
    assert!(listed.contains("federates with no other"), "{listed}");

    let out = add(&ca);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value =
        serde_json::from_str(&alpha.meshctl_ok(&["federation", "list", "-o", "json"])).unwrap();
    let f = &listed["federations"][0];
    assert_eq!(f["profile"], "https_web", "{listed}");
    assert_eq!(f["roots"], 1, "{listed}");
    assert!(f["refreshed_at"].is_i64(), "{listed}");
    // The bundle as served: the SPIFFE bundle format with its sequence and refresh hint.
    let served = reqwest_free_get(&beta, &ca).await;
    assert!(served["spiffe_sequence"].is_u64(), "{served}");
    assert_eq!(served["spiffe_refresh_hint"], 300, "{served}");
    let uses: Vec<&str> = served["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["use"].as_str().unwrap())
        .collect();
    assert!(
        uses.contains(&"x509-svid") && uses.contains(&"jwt-svid"),
        "{served}"
    );
}

/// GETs `cp`'s bundle endpoint over TLS 1.3, trusting `ca_file`.
async fn reqwest_free_get(cp: &ControlPlane, ca_file: &str) -> serde_json::Value {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(signet_spiffe::tls::provider())
        .with_protocol_versions(signet_spiffe::tls::PROTOCOL_VERSIONS)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let addr = cp.bundle_endpoint.unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    tls.write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    serde_json::from_str(body).unwrap()
}

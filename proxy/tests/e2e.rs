//! `signet-proxy` end to end: real proxy processes, an echo app, real mTLS on 127.0.0.1.

#![expect(clippy::unwrap_used, reason = "tests: a failure is the test failing")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use signet_spiffe::test_pki::LeafSpec;
use signet_tests::app::EchoApp;
use signet_tests::client::{self, Http};
use signet_tests::pki::{IdentityFiles, Pki};
use signet_tests::process::ProxyProcess;

const FRONTEND: &str = "spiffe://acme.internal/ns/shop/sa/frontend";
const CART: &str = "spiffe://acme.internal/ns/shop/sa/cart";
const BLOG: &str = "spiffe://acme.internal/ns/blog/sa/web";

const CART_POLICIES: &str = r#"
@id("shop-connect")
permit (principal in Mesh::Namespace::"shop", action == Mesh::Action::"connect",
        resource in Mesh::Namespace::"shop");

@id("frontend-reads-cart-api")
permit (principal == Mesh::Workload::"spiffe://acme.internal/ns/shop/sa/frontend",
        action in Mesh::Action::"read", resource == Mesh::Service::"cart")
when { context.path like "/api/*" };

@id("frontend-gets-carts-over-grpc")
permit (principal == Mesh::Workload::"spiffe://acme.internal/ns/shop/sa/frontend",
        action == Mesh::Action::"POST", resource == Mesh::Service::"cart")
when { context has grpc_service && context.grpc_service == "shop.Cart" &&
       context has grpc_method && context.grpc_method == "Get" };

@id("frontend-uploads")
permit (principal == Mesh::Workload::"spiffe://acme.internal/ns/shop/sa/frontend",
        action == Mesh::Action::"POST", resource == Mesh::Service::"cart")
when { context.path == "/api/upload" };

@id("no-debug-header")
forbid (principal, action in [Mesh::Action::"read", Mesh::Action::"write"], resource)
when { context.headers.hasTag("x-debug") };

@id("no-admin-paths")
forbid (principal, action in [Mesh::Action::"read", Mesh::Action::"write"], resource)
when { context.path like "/admin*" };
"#;

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_signet-proxy"))
}

fn policies(dir: &Path, text: &str) -> PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("policies.cedar"), text).unwrap();
    policies
}

/// The TOML of a proxy for `service` in namespace `shop`.
fn config(
    service: &str,
    id: &IdentityFiles,
    policy_dir: &Path,
    app: std::net::SocketAddr,
    app_protocol: &str,
    outbound: &str,
) -> String {
    format!(
        r#"
[service]
name = "{service}"
namespace = "shop"
labels = {{ env = "prod" }}

[identity]
cert = "{cert}"
key = "{key}"
bundle = "{bundle}"

[policy]
dir = "{policy_dir}"

[inbound]
listen = "127.0.0.1:0"
app = "{app}"
app_protocol = "{app_protocol}"

[admin]
listen = "127.0.0.1:0"

[limits]
reload_interval = "100ms"
drain_timeout = "2s"
{outbound}
"#,
        cert = id.cert.display(),
        key = id.key.display(),
        bundle = id.bundle.display(),
        policy_dir = policy_dir.display(),
    )
}

fn outbound_to(service: &str, endpoint: std::net::SocketAddr, identity: &str) -> String {
    format!(
        r#"
[[outbound]]
service = "{service}"
listen = "127.0.0.1:0"
endpoints = ["{endpoint}"]
identities = ["{identity}"]
"#
    )
}

/// A cart proxy in front of an echo app, and a frontend proxy whose outbound port reaches it.
struct Mesh {
    pki: Pki,
    dir: tempfile::TempDir,
    app: EchoApp,
    cart: ProxyProcess,
    frontend: ProxyProcess,
    cart_policies: PathBuf,
}

impl Mesh {
    async fn start() -> Self {
        Self::start_with("http1").await
    }

    /// With the cart app speaking `app_protocol` (`http1`, or `http2` as gRPC servers do).
    async fn start_with(app_protocol: &str) -> Self {
        Self::start_limited(app_protocol, "").await
    }

    /// With extra `[limits]` lines for the cart proxy.
    async fn start_limited(app_protocol: &str, limits: &str) -> Self {
        let protocol = format!("app_protocol = \"{app_protocol}\"");
        let limits = format!("[limits]\n{limits}");
        Self::start_custom(
            |cart, _| {
                cart.replace("app_protocol = \"http1\"", &protocol)
                    .replace("[limits]", &limits)
            },
            "",
        )
        .await
    }

    /// With the cart proxy's configuration passed through `cart` (which also gets the cart's
    /// directory, to put files there) and `outbound` appended to the frontend's `[[outbound]]`.
    async fn start_custom(cart: impl FnOnce(String, &Path) -> String, outbound: &str) -> Self {
        let pki = Pki::new("acme.internal");
        let dir = tempfile::tempdir().unwrap();
        let app = EchoApp::start().await;
        let cart_dir = dir.path().join("cart");
        let cart_id = pki.identity(&cart_dir, "cart", CART);
        let cart_policies = policies(&cart_dir, CART_POLICIES);
        let cart_config = cart(
            config("cart", &cart_id, &cart_policies, app.addr, "http1", ""),
            &cart_dir,
        );
        let cart = ProxyProcess::start(&binary(), dir.path(), "cart", &cart_config);
        let frontend_dir = dir.path().join("frontend");
        let frontend_id = pki.identity(&frontend_dir, "frontend", FRONTEND);
        let frontend_policies = policies(&frontend_dir, "");
        let frontend = ProxyProcess::start(
            &binary(),
            dir.path(),
            "frontend",
            &config(
                "frontend",
                &frontend_id,
                &frontend_policies,
                app.addr,
                "http1",
                &format!("{}{outbound}", outbound_to("cart", cart.inbound, CART)),
            ),
        );
        Self {
            pki,
            dir,
            app,
            cart,
            frontend,
            cart_policies,
        }
    }

    fn to_cart(&self) -> std::net::SocketAddr {
        self.frontend.outbound["cart"]
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http1_and_http2_requests_cross_the_mesh_with_the_peer_identity() {
    let mesh = Mesh::start().await;
    for mut http in [
        Http::h1(mesh.to_cart()).await,
        Http::h2(mesh.to_cart()).await,
    ] {
        // The app's own attempt to claim an identity is overwritten.
        let reply = http
            .get("cart", "/api/items?page=2", &[("x-signet-peer-id", BLOG)])
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.echoed_header("x-signet-peer-id"), [FRONTEND]);
        assert_eq!(reply.json()["path"], "/api/items");
        assert_eq!(reply.json()["query"], "page=2");
        // A second request reuses the connections on both hops.
        let reply = http.get("cart", "/api/items/7", &[]).await;
        assert_eq!(reply.status, 200);
    }
    assert!(mesh.app.requests.load(std::sync::atomic::Ordering::Relaxed) >= 4);
    // Between the proxies each request kept the protocol the app used.
    let inbound = |protocol: &str| {
        format!(
            "signet_proxy_requests_total{{direction=\"inbound\",protocol=\"{protocol}\",class=\"2xx\"}}"
        )
    };
    assert_eq!(mesh.cart.metric(&inbound("http/1.1")).await, 2);
    assert_eq!(mesh.cart.metric(&inbound("h2")).await, 2);
    assert_eq!(
        mesh.cart
            .metric("signet_proxy_authz_decisions_total{action=\"request\",decision=\"allow\",policy=\"frontend-reads-cart-api\"}")
            .await,
        4
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_request_names_the_policy_that_denied_it() {
    let mesh = Mesh::start().await;
    let mut http = Http::h1(mesh.to_cart()).await;
    let reply = http.get("cart", "/admin/users", &[]).await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.header("x-signet-denied-by").as_deref(),
        Some("no-admin-paths")
    );
    assert_eq!(reply.body, Bytes::from("denied by no-admin-paths\n"));

    // A header a policy forbids cannot be hidden behind bytes that are not UTF-8.
    let mut sneaky = client::request("GET", "cart", "/api/items", &[], Bytes::new());
    sneaky.headers_mut().insert(
        "x-debug",
        http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
    );
    let reply = http.send(sneaky).await.unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.header("x-signet-denied-by").as_deref(),
        Some("no-debug-header")
    );

    // Paths are decided as the app will resolve them.
    for sneaky in [
        "/api/../admin/x",
        "//admin/x",
        "/api/%2e%2e/admin",
        "/%61dmin",
    ] {
        let reply = http.get("cart", sneaky, &[]).await;
        assert_eq!(reply.status, 403, "{sneaky}");
        assert_eq!(
            reply.header("x-signet-denied-by").as_deref(),
            Some("no-admin-paths"),
            "{sneaky}"
        );
    }
    let reply = http.get("cart", "/api/items%2F..%2Fadmin", &[]).await;
    assert_eq!(reply.status, 400);
    let reply = http.get("cart", "/api//items/./7?x=1", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["path"],
        "/api/items/7",
        "the app sees the authorized path"
    );
    assert_eq!(reply.json()["query"], "x=1");

    let reply = http.get("cart", "/internal", &[]).await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.header("x-signet-denied-by").as_deref(),
        Some("default-deny")
    );
    // Same connection, still usable.
    assert_eq!(http.get("cart", "/api/x", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_calls_are_authorized_by_service_and_method() {
    let mesh = Mesh::start_with("http2").await;
    let mut http = Http::h2(mesh.to_cart()).await;
    let call = |method: &str| {
        client::request(
            "POST",
            "cart",
            &format!("/shop.Cart/{method}"),
            &[("content-type", "application/grpc"), ("te", "trailers")],
            Bytes::from_static(&[0, 0, 0, 0, 0]),
        )
    };
    let reply = http.send(call("Get")).await.unwrap();
    assert_eq!(reply.status, 200);
    let trailers = reply.trailers.unwrap();
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");

    let reply = http.send(call("Delete")).await.unwrap();
    assert_eq!(reply.status, 200, "gRPC errors travel as 200 + grpc-status");
    assert_eq!(reply.header("grpc-status").as_deref(), Some("7"));
    assert_eq!(
        reply.header("x-signet-denied-by").as_deref(),
        Some("default-deny")
    );
    assert!(reply.header("grpc-message").unwrap().contains("denied by"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_peers_are_refused_at_the_handshake() {
    let mesh = Mesh::start().await;
    let cart = mesh.cart.inbound;
    let bundle = mesh.pki.ca.bundle();
    let pkcs8 = |key: &signet_spiffe::WorkloadKey| key.private_key_der().clone_key();
    // Control: a good certificate from this trust domain gets an answer (a 403 from policy).
    let (chain, key) = mesh.pki.ca.issue(&LeafSpec::for_id(FRONTEND));
    let good = client::raw_tls_get(cart, chain, pkcs8(&key), bundle.clone()).await;
    assert!(
        good.as_deref().is_ok_and(|r| r.starts_with("HTTP/1.1 403")),
        "{good:?}"
    );

    let foreign = Pki::new("evil.example");
    let (chain, key) = foreign.ca.issue(&LeafSpec::for_id(
        "spiffe://evil.example/ns/shop/sa/frontend",
    ));
    let refused = client::raw_tls_get(cart, chain, pkcs8(&key), bundle.clone()).await;
    assert!(refused.is_err(), "foreign trust domain: {refused:?}");

    let mut expired = LeafSpec::for_id(FRONTEND);
    expired.not_before = std::time::SystemTime::now() - Duration::from_secs(7200);
    expired.not_after = std::time::SystemTime::now() - Duration::from_secs(3600);
    let (chain, key) = mesh.pki.ca.issue(&expired);
    let refused = client::raw_tls_get(cart, chain, pkcs8(&key), bundle.clone()).await;
    assert!(refused.is_err(), "expired: {refused:?}");

    let mut no_uri = LeafSpec::for_id(FRONTEND);
    no_uri.uris.clear();
    no_uri.dns = vec!["frontend.shop".to_owned()];
    let (chain, key) = mesh.pki.ca.issue(&no_uri);
    let refused = client::raw_tls_get(cart, chain, pkcs8(&key), bundle.clone()).await;
    assert!(refused.is_err(), "no URI SAN: {refused:?}");

    // Outside the X509-SVID profile: a leaf that may sign certificates, one without key
    // usage, one naming the trust domain itself.
    let mut signer = LeafSpec::for_id(FRONTEND);
    signer.ku = vec![
        signet_spiffe::test_pki::KeyUsagePurpose::DigitalSignature,
        signet_spiffe::test_pki::KeyUsagePurpose::KeyCertSign,
    ];
    let mut no_usage = LeafSpec::for_id(FRONTEND);
    no_usage.without_key_usage = true;
    for spec in [signer, no_usage, LeafSpec::for_id("spiffe://acme.internal")] {
        let (chain, key) = mesh.pki.ca.issue(&spec);
        let refused = client::raw_tls_get(cart, chain, pkcs8(&key), bundle.clone()).await;
        assert!(refused.is_err(), "{spec:?}: {refused:?}");
    }

    let answer = client::plain_text_get(cart).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain text got an HTTP answer"
    );

    // A client sees the refusal (the alert, the close) before the proxy counts it, so the
    // last one may land a moment after the client returns.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, metrics) = mesh.cart.admin_get("/metrics").await;
        let failures: u64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("signet_proxy_handshake_failures_total{direction=\"inbound\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if failures >= 4 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_denied_connect_is_closed_after_the_handshake() {
    let mesh = Mesh::start().await;
    let (chain, key) = mesh.pki.ca.issue(&LeafSpec::for_id(BLOG));
    let key = key.private_key_der().clone_key();
    let refused = client::raw_tls_get(mesh.cart.inbound, chain, key, mesh.pki.ca.bundle()).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        mesh.cart
            .metric(
                "signet_proxy_connections_refused_total{direction=\"inbound\",reason=\"authz\"}"
            )
            .await,
        1
    );
    assert_eq!(
        mesh.cart
            .metric("signet_proxy_authz_decisions_total{action=\"connect\",decision=\"deny\",policy=\"default-deny\"}")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_change_applies_to_new_requests_without_dropping_connections() {
    let mesh = Mesh::start().await;
    let mut http = Http::h2(mesh.to_cart()).await;
    assert_eq!(http.get("cart", "/api/items", &[]).await.status, 200);

    // Forbid what was allowed; the proxy picks the change up within its reload interval.
    let tightened = format!(
        "{CART_POLICIES}\n@id(\"freeze\")\nforbid (principal, action in Mesh::Action::\"read\", resource);\n"
    );
    std::fs::write(mesh.cart_policies.join("policies.cedar"), tightened).unwrap();
    let mut denied = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reply = http.get("cart", "/api/items", &[]).await;
        if reply.status == 403 {
            denied = Some(reply);
            break;
        }
        assert_eq!(reply.status, 200);
    }
    let denied = denied.unwrap_or_else(|| panic!("the new policy never took effect"));
    assert_eq!(
        denied.header("x-signet-denied-by").as_deref(),
        Some("freeze")
    );
    assert!(!http.is_closed());

    // An invalid bundle is refused; the last good one stays.
    std::fs::write(
        mesh.cart_policies.join("policies.cedar"),
        "permit (principal, action, resource);",
    )
    .unwrap();
    let failures = "signet_proxy_reload_failures_total{source=\"policy\"}";
    assert_eq!(mesh.cart.metric_reaching(failures, 1).await, 1);
    let reply = http.get("cart", "/api/items", &[]).await;
    assert_eq!(
        reply.header("x-signet-denied-by").as_deref(),
        Some("freeze")
    );
    assert_eq!(
        mesh.cart
            .metric("signet_proxy_reload_failures_total{source=\"policy\"}")
            .await,
        1
    );
    assert_eq!(mesh.cart.metric("signet_proxy_policy_version").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_report_identity_policy_and_health() {
    let mesh = Mesh::start().await;
    let cart = &mesh.cart;
    assert_eq!(cart.admin_get("/live").await, (200, "live\n".to_owned()));
    assert_eq!(cart.admin_get("/ready").await, (200, "ready\n".to_owned()));
    let (code, identity) = cart.admin_get("/identity").await;
    assert_eq!(code, 200);
    let identity: serde_json::Value = serde_json::from_str(&identity).unwrap();
    assert_eq!(identity["spiffe_id"], CART);
    assert!(identity["expires_in_seconds"].as_i64().unwrap() > 3000);
    let (_, config) = cart.admin_get("/config").await;
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["config"]["service"]["name"], "cart");
    // Port 0 in the file; the effective configuration names the port bound.
    assert_eq!(
        config["config"]["inbound"]["listen"],
        cart.inbound.to_string()
    );
    assert_eq!(config["policy"]["version"], 1);
    assert_eq!(config["policy"]["hash"].as_str().unwrap().len(), 64);
    let (_, metrics) = cart.admin_get("/metrics").await;
    assert!(metrics.contains("# TYPE signet_proxy_svid_expiry_seconds gauge"));
    assert_eq!(cart.admin_get("/nope").await.0, 404);
    let _ = &mesh.dir;
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_rotation_under_traffic_loses_no_request() {
    let mesh = Mesh::start().await;
    let (_, before) = mesh.cart.admin_get("/identity").await;
    let serial =
        |json: &str| serde_json::from_str::<serde_json::Value>(json).unwrap()["serial"].clone();
    let to_cart = mesh.to_cart();
    let traffic = tokio::spawn(async move {
        let mut ok = 0;
        let mut failed = Vec::new();
        for n in 0..150 {
            // New connections too, so new handshakes happen during the rotation.
            let mut http = if n % 10 == 0 {
                Http::h1(to_cart).await
            } else {
                Http::h2(to_cart).await
            };
            let reply = http.get("cart", "/api/items", &[]).await;
            if reply.status == 200 {
                ok += 1
            } else {
                failed.push(reply.status)
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (ok, failed)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    mesh.pki
        .identity(&mesh.dir.path().join("cart"), "cart", CART);
    mesh.pki
        .identity(&mesh.dir.path().join("frontend"), "frontend", FRONTEND);
    let (ok, failed) = traffic.await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(ok, 150);
    let (_, after) = mesh.cart.admin_get("/identity").await;
    assert_ne!(serial(&before), serial(&after), "the new SVID is in use");
    assert!(
        mesh.cart
            .metric("signet_proxy_reloads_total{source=\"identity\"}")
            .await
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_on_sigterm_exits_cleanly() {
    let mesh = Mesh::start().await;
    let Mesh { cart, .. } = mesh;
    assert_eq!(cart.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_list_update_closes_live_connections_of_that_peer() {
    // The cart proxy reads a deny-list file, empty at first.
    let mesh = Mesh::start_custom(
        |cart, dir| {
            let deny = dir.join("deny.json");
            std::fs::write(&deny, "{\"ids\": []}").unwrap();
            cart.replace(
                "[policy]",
                &format!("deny_list = \"{}\"\n\n[policy]", deny.display()),
            )
        },
        "",
    )
    .await;
    let deny = mesh.dir.path().join("cart").join("deny.json");
    let cart = &mesh.cart;
    let mut http = Http::h2(mesh.to_cart()).await;
    assert_eq!(http.get("cart", "/api/items", &[]).await.status, 200);
    let mut http = Http::h2(mesh.to_cart()).await;
    assert_eq!(http.get("cart", "/api/items", &[]).await.status, 200);
    std::fs::write(&deny, format!("{{\"ids\": [\"{FRONTEND}\"]}}")).unwrap();
    let refused = cart
        .metric_reaching(
            "signet_proxy_connections_refused_total{direction=\"inbound\",reason=\"deny-list\"}",
            1,
        )
        .await
        >= 1;
    assert!(refused, "the live connection was closed");
    // New connections from the frontend are refused at the handshake.
    let reply = http.get("cart", "/api/items", &[]).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(reply.header("x-signet-error").is_some(), "{reply:?}");
    // The proxy counts the refusal just after sending its alert: allow it a moment.
    let series = "signet_proxy_handshake_failures_total{direction=\"inbound\",reason=\"refused\"}";
    assert!(cart.metric_reaching(series, 1).await >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn opaque_tcp_is_authorized_per_connection() {
    let mesh = Mesh::start_custom(
        |cart, _| cart.replace("app_protocol = \"http1\"", "protocol = \"tcp\""),
        "protocol = \"tcp\"\n",
    )
    .await;
    let (cart, frontend) = (&mesh.cart, &mesh.frontend);
    // Bytes pass untouched: the app sees the app's own headers, no identity header, and no
    // per-request decision (an /admin path goes through).
    let mut http = Http::h1(frontend.outbound["cart"]).await;
    let reply = http
        .get("cart", "/admin/x", &[("x-signet-peer-id", BLOG)])
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echoed_header("x-signet-peer-id"), [BLOG]);
    assert_eq!(
        cart.metric("signet_proxy_authz_decisions_total{action=\"connect\",decision=\"allow\",policy=\"shop-connect\"}")
            .await,
        1
    );
}

/// Runs the proxy with `config` and returns its exit code and stderr.
fn run_with(dir: &Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(binary())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configuration_is_one_clear_line_and_exit_1() {
    let pki = Pki::new("acme.internal");
    let dir = tempfile::tempdir().unwrap();
    let id = pki.identity(dir.path(), "cart", CART);
    let good_policies = policies(dir.path(), CART_POLICIES);
    let app: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let good = config("cart", &id, &good_policies, app, "http1", "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap();
    let broken_policies = dir.path().join("broken");
    std::fs::create_dir_all(&broken_policies).unwrap();
    std::fs::write(
        broken_policies.join("a.cedar"),
        "permit (principal, action, resource);",
    )
    .unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            good.replace(&id.cert.display().to_string(), "/nonexistent.crt"),
            "identity.cert: `/nonexistent.crt` is not a readable file",
        ),
        (
            good.replacen(
                "listen = \"127.0.0.1:0\"",
                "listen = \"127.0.0.1:99999\"",
                1,
            ),
            "invalid socket address",
        ),
        (
            good.replace(
                "[admin]\nlisten = \"127.0.0.1:0\"",
                "[admin]\nlisten = \"127.0.0.1:15999\"",
            )
            .replacen(
                "listen = \"127.0.0.1:0\"",
                "listen = \"127.0.0.1:15999\"",
                1,
            ),
            "already used by another listener",
        ),
        (
            good.replacen(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{taken}\""),
                1,
            ),
            "inbound.listen: cannot listen on",
        ),
        (
            good.replace(
                &good_policies.display().to_string(),
                &broken_policies.display().to_string(),
            ),
            "policy.dir: ",
        ),
        (
            good.replace("[limits]", "[limits]\nfrobs = 1"),
            "unknown field `frobs`",
        ),
        (
            good.replace("reload_interval = \"100ms\"", "reload_interval = \"soon\""),
            "is not a duration like 250ms, 10s, 5m or 1h",
        ),
        (
            good.replace(
                &id.key.display().to_string(),
                &id.bundle.display().to_string(),
            ),
            "identity.key",
        ),
    ];
    for (text, expected) in cases {
        let (code, stderr) = run_with(dir.path(), &text);
        assert_eq!(code, Some(1), "{expected}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{expected}: {stderr}");
        assert!(stderr.starts_with("signet-proxy: error: "), "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected `{expected}` in: {stderr}"
        );
    }
    let _ = taken;
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_and_idle_connections_are_cut() {
    let mesh =
        Mesh::start_limited("http1", "max_body_bytes = 1024\nidle_timeout = \"300ms\"").await;
    let mut http = Http::h1(mesh.to_cart()).await;
    let upload = |size: usize| {
        client::request(
            "POST",
            "cart",
            "/api/upload",
            &[],
            Bytes::from(vec![b'x'; size]),
        )
    };
    assert_eq!(http.send(upload(1000)).await.unwrap().status, 200);
    let reply = http.send(upload(5000)).await.unwrap();
    assert_eq!(reply.status, 413, "{reply:?}");
    // The frontend's pooled connection to the cart goes quiet and the cart closes it...
    let open = "signet_proxy_inbound_open_connections";
    let mut closed = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if mesh.cart.metric(open).await == 0 {
            closed = true;
            break;
        }
    }
    assert!(closed, "idle connection still open");
    // ...and the next request simply opens a new one.
    assert_eq!(http.get("cart", "/api/items", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_http2_multiplexes_http1_requests_between_the_proxies() {
    let mesh = Mesh::start_custom(|cart, _| cart, "upstream_http = \"http2\"\n").await;
    let (cart, frontend) = (&mesh.cart, &mesh.frontend);
    for _ in 0..3 {
        let mut http = Http::h1(frontend.outbound["cart"]).await;
        assert_eq!(http.get("cart", "/api/items", &[]).await.status, 200);
    }
    let series = "signet_proxy_requests_total{direction=\"inbound\",protocol=\"h2\",class=\"2xx\"}";
    assert_eq!(cart.metric(series).await, 3);
    // Three client connections, one connection between the proxies.
    assert_eq!(
        cart.metric("signet_proxy_connections_total{direction=\"inbound\"}")
            .await,
        1
    );
}

/// The names of the request headers the echo app saw.
fn echoed_names(body: &serde_json::Value) -> Vec<String> {
    body["headers"]
        .as_array()
        .map(|headers| {
            headers
                .iter()
                .filter_map(|h| h[0].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a header name reads as one of the mesh's own (`x-signet-…`) to a CGI/WSGI-style
/// server, which maps `_`, `.` and `-` alike.
fn reads_as_mesh_header(name: &str) -> bool {
    name.to_ascii_lowercase()
        .replace(['_', '.'], "-")
        .starts_with("x-signet-")
}

#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_the_identity_header_and_no_connection_trick_reaches_the_app() {
    let mesh = Mesh::start().await;
    let forged = [
        ("x_signet_peer_id", BLOG),
        ("x-signet-peer_id", BLOG),
        ("x.signet.peer.id", BLOG),
        ("x-signet-trusted", "yes"),
        ("x_debug", "1"),
    ];
    // Through the frontend's outbound port, over HTTP/1.1 and HTTP/2 between the proxies.
    for mut http in [
        Http::h1(mesh.to_cart()).await,
        Http::h2(mesh.to_cart()).await,
    ] {
        let reply = http.get("cart", "/api/items", &forged).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.echoed_header("x-signet-peer-id"), [FRONTEND]);
        let names = echoed_names(&reply.json());
        let mesh_names: Vec<&String> = names.iter().filter(|n| reads_as_mesh_header(n)).collect();
        assert_eq!(mesh_names, ["x-signet-peer-id"], "{names:?}");
        assert!(!names.iter().any(|n| n.contains('_')), "{names:?}");
    }
    // A workload speaking mTLS to the cart's proxy itself, with its own valid SVID, tries to
    // make the proxy remove its identity header (and `host`) through `Connection`.
    let (chain, key) = mesh.pki.ca.issue(&LeafSpec::for_id(FRONTEND));
    let raw = client::tls_request(
        mesh.cart.inbound,
        Some((chain, key.private_key_der().clone_key())),
        mesh.pki.ca.bundle(),
        "/api/items",
        &[
            ("connection", "x-signet-peer-id, host"),
            ("x_signet_peer_id", BLOG),
            ("x-signet-peer-id", BLOG),
        ],
    )
    .await
    .unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let body: serde_json::Value =
        serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let identity: Vec<&serde_json::Value> = body["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| reads_as_mesh_header(h[0].as_str().unwrap()))
        .collect();
    assert_eq!(
        identity,
        [&serde_json::json!(["x-signet-peer-id", FRONTEND])],
        "{body}"
    );
    let host: Vec<&serde_json::Value> = body["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "host")
        .collect();
    assert_eq!(host, [&serde_json::json!(["host", "x"])], "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn path_parameters_cannot_walk_around_a_path_policy() {
    let mesh = Mesh::start().await;
    let mut http = Http::h1(mesh.to_cart()).await;
    // `/api/..;/admin` is `/admin` to a servlet container; by default it is refused.
    let reply = http.get("cart", "/api/..;/admin/users", &[]).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(
        mesh.app.requests.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    drop(mesh);
    // Stripped as such a container strips it, the policy sees `/admin/users` and forbids it.
    let mesh = Mesh::start_custom(
        |cart, _| cart.replace("[inbound]", "[inbound]\npath_parameters = \"strip\""),
        "",
    )
    .await;
    let mut http = Http::h1(mesh.to_cart()).await;
    let reply = http.get("cart", "/api/..;/admin/users", &[]).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(
        reply.header("x-signet-denied-by").as_deref(),
        Some("no-admin-paths")
    );
    let reply = http.get("cart", "/api;v=2/items;x", &[]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["path"], "/api/items");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_that_never_finish_a_handshake_do_not_lock_out_the_mesh() {
    // Few connection slots and a long handshake timeout: what the flood would need to hold
    // every slot, were handshakes to hold them.
    let mesh = Mesh::start_limited(
        "http1",
        "max_connections = 50\nmax_handshakes_per_source = 8\nhandshake_timeout = \"20s\"",
    )
    .await;
    // 120 plain TCP connections from another loopback address, that never speak TLS.
    let mut flood = Vec::new();
    for _ in 0..120 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        flood.push(socket.connect(mesh.cart.inbound).await.unwrap());
    }
    let refused = "signet_proxy_connections_refused_total{direction=\"inbound\",reason=\"source-handshake-limit\"}";
    assert!(mesh.cart.metric_reaching(refused, 112).await >= 112);
    // The mesh's own traffic (from 127.0.0.1) still gets through at once, many times over.
    for _ in 0..5 {
        let mut http = Http::h1(mesh.to_cart()).await;
        let reply =
            tokio::time::timeout(Duration::from_secs(5), http.get("cart", "/api/items", &[]))
                .await
                .unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    drop(flood);
}

/// The text of the cart proxy's audit spool (`<cart>/audit`) once `ready` says it holds what
/// a test waits for (or after five seconds).
async fn cart_spool_once(mesh: &Mesh, ready: impl Fn(&str) -> bool) -> String {
    let audit = mesh.dir.path().join("cart").join("audit");
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_dir(&audit)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|f| std::fs::read_to_string(f.path()).ok())
            .collect();
        if ready(&text) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_directory_is_decided_beside_the_policies_without_acting() {
    let mesh = Mesh::start_custom(
        |cart, dir| {
            let shadow = dir.join("shadow");
            std::fs::create_dir_all(&shadow).unwrap();
            // The candidate forbids every read: it would deny what is allowed now.
            std::fs::write(
                shadow.join("candidate.cedar"),
                format!(
                    "{CART_POLICIES}\n@id(\"freeze\")\nforbid (principal, action in Mesh::Action::\"read\", resource);\n"
                ),
            )
            .unwrap();
            cart.replace(
                "[policy]\n",
                &format!(
                    "[policy]\nshadow_dir = \"{}\"\n",
                    shadow.display()
                ),
            )
            .replace("[inbound]", &format!("[audit]\ndir = \"{}\"\n\n[inbound]", dir.join("audit").display()))
        },
        "",
    )
    .await;
    let mut http = Http::h1(mesh.to_cart()).await;
    for _ in 0..3 {
        assert_eq!(http.get("cart", "/api/items", &[]).await.status, 200);
    }
    let series = "signet_proxy_authz_shadow_disagreements_total{service=\"cart\",would=\"deny\"}";
    assert_eq!(mesh.cart.metric_reaching(series, 3).await, 3);
    assert_eq!(mesh.cart.metric("signet_proxy_shadow_version").await, 1);

    // The audit trail holds each disagreement with both decisions' policies.
    let text = cart_spool_once(&mesh, |t| t.matches("\"type\":\"shadow\"").count() >= 3).await;
    let shadows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"type\":\"shadow\""))
        .collect();
    assert_eq!(shadows.len(), 3, "{shadows:?}");
    let record: serde_json::Value = serde_json::from_str(shadows[0]).unwrap();
    assert_eq!(record["event"]["would"], "deny");
    assert_eq!(
        record["event"]["candidate_policies"],
        serde_json::json!(["freeze"])
    );
    assert_eq!(record["event"]["enforced"]["decision"], "allow");
    assert_eq!(
        record["event"]["enforced"]["policies"],
        serde_json::json!(["frontend-reads-cart-api"])
    );

    // Emptying the directory ends shadow mode.
    let shadow = mesh.dir.path().join("cart").join("shadow");
    std::fs::remove_file(shadow.join("candidate.cedar")).unwrap();
    for _ in 0..50 {
        if mesh.cart.metric("signet_proxy_shadow_version").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mesh.cart.metric("signet_proxy_shadow_version").await, 0);
    assert_eq!(http.get("cart", "/api/items", &[]).await.status, 200);
    assert_eq!(mesh.cart.metric(series).await, 3);
}

/// GET `path` on the cart with `token` as the bearer token.
async fn with_token(http: &mut Http, path: &str, token: &str) -> client::Reply {
    http.get(
        "cart",
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
}

/// Tokens minted by PyJWT, with the JWKS written into `dir`.
fn mint_tokens(dir: &Path) -> serde_json::Value {
    signet_tests::jwt::mint(dir, "https://idp.acme.test", "shop")
}

const USER_POLICIES: &str = r#"
@id("acme-admins-read-reports")
permit (principal == Mesh::Workload::"spiffe://acme.internal/ns/shop/sa/frontend",
        action in Mesh::Action::"read", resource == Mesh::Service::"cart")
when { context.path like "/reports/*" && context has user &&
       context.user.groups.contains("admins") &&
       context.user.hasTag("tenant") && context.user.getTag("tenant") == "acme" };
"#;

#[tokio::test(flavor = "multi_thread")]
async fn end_user_jwts_are_verified_and_fill_context_user() {
    let minted = std::sync::Mutex::new(serde_json::Value::Null);
    let mesh = Mesh::start_custom(
        |cart, dir| {
            std::fs::create_dir_all(dir).unwrap();
            *minted.lock().unwrap() = mint_tokens(dir);
            std::fs::write(dir.join("policies").join("users.cedar"), USER_POLICIES).unwrap();
            format!(
                "{}\n[authn]\n\n[[authn.providers]]\nname = \"acme\"\nissuer = \"https://idp.acme.test\"\naudiences = [\"shop\"]\njwks_file = \"{}\"\n",
                cart.replace(
                    "[inbound]",
                    &format!("[audit]\ndir = \"{}\"\n\n[inbound]", dir.join("audit").display())
                ),
                dir.join("jwks.json").display()
            )
        },
        "",
    )
    .await;
    let tokens = minted.lock().unwrap().clone();
    let token = |name: &str| tokens[name].as_str().unwrap().to_owned();
    let mut http = Http::h1(mesh.to_cart()).await;

    // No token: optional here, so the policies decide without a user.
    let reply = http.get("cart", "/reports/q3", &[]).await;
    assert_eq!(reply.status, 403);
    assert_eq!(http.get("cart", "/api/items", &[]).await.status, 200);

    // Each algorithm verifies; the claims reach the policies (groups, tags).
    let reply = with_token(&mut http, "/reports/q3", &token("es256")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let lower = format!("bearer {}", token("es256"));
    let reply = http
        .get("cart", "/reports/q3", &[("authorization", &lower)])
        .await;
    assert_eq!(reply.status, 200, "the scheme is case-insensitive");
    for (name, status) in [("rs256", 403), ("eddsa", 403)] {
        let reply = with_token(&mut http, "/reports/q3", &token(name)).await;
        assert_eq!(reply.status, status, "{name}: valid, but not an acme admin");
        let reply = with_token(&mut http, "/api/items", &token(name)).await;
        assert_eq!(reply.status, 200, "{name} verifies");
    }
    assert_eq!(
        mesh.cart
            .metric("signet_proxy_authn_verified_total{service=\"cart\"}")
            .await,
        6
    );

    // Every bad token: 401 with the RFC 6750 challenge, counted by reason.
    for (name, reason) in [
        ("expired", "expired"),
        ("not_yet_valid", "not-yet-valid"),
        ("wrong_issuer", "wrong-issuer"),
        ("wrong_audience", "wrong-audience"),
        ("alg_none", "malformed"),
        ("hmac_public_key", "algorithm-not-allowed"),
        ("unknown_kid", "unknown-kid"),
        ("bad_signature", "bad-signature"),
        ("oversized", "oversized"),
        ("rs256_key_as_es256", "algorithm-not-allowed"),
    ] {
        let reply = with_token(&mut http, "/api/items", &token(name)).await;
        assert_eq!(reply.status, 401, "{name}: {reply:?}");
        assert_eq!(
            reply.header("www-authenticate").as_deref(),
            Some("Bearer realm=\"signet\", error=\"invalid_token\""),
            "{name}"
        );
        assert_eq!(
            reply.body,
            Bytes::from(format!("end-user token refused: {reason}\n")),
            "{name}"
        );
        assert!(
            mesh.cart
                .metric(&format!(
                    "signet_proxy_authn_refusals_total{{reason=\"{reason}\"}}"
                ))
                .await
                >= 1,
            "{name}"
        );
    }

    // Audited as denials by `authn-<reason>`; no token ever reaches the audit trail.
    let text = cart_spool_once(&mesh, |t| t.contains("authn-bad-signature")).await;
    assert!(text.contains("\"policies\":[\"authn-expired\"]"), "{text}");
    for name in ["es256", "expired", "bad_signature"] {
        let t = token(name);
        let signature = t.rsplit('.').next().unwrap();
        assert!(
            !text.contains(signature),
            "{name}'s token is in the audit trail"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_required_token_is_refused_when_missing_and_bad_providers_stop_the_start() {
    let mesh = Mesh::start_custom(
        |cart, dir| {
            std::fs::create_dir_all(dir).unwrap();
            mint_tokens(dir);
            format!(
                "{cart}\n[authn]\nrequired = true\n\n[[authn.providers]]\nname = \"acme\"\nissuer = \"https://idp.acme.test\"\naudiences = [\"shop\"]\njwks_file = \"{}\"\nalgorithms = [\"ES256\"]\n",
                dir.join("jwks.json").display()
            )
        },
        "",
    )
    .await;
    let mut http = Http::h1(mesh.to_cart()).await;
    let reply = http.get("cart", "/api/items", &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"signet\"")
    );

    // A provider configuration that cannot be used is one line and exit 1.
    let dir = mesh.dir.path().join("cart");
    let config = std::fs::read_to_string(&mesh.cart.config).unwrap();
    for (broken, expected) in [
        (
            config.replace("algorithms = [\"ES256\"]", "algorithms = [\"HS256\"]"),
            "algorithm `HS256` is not allowed",
        ),
        (config.replace("jwks.json", "missing.json"), "jwks_file"),
    ] {
        let (code, stderr) = run_with(&dir, &broken);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn opaque_tcp_connections_are_spans_and_golden_metrics() {
    let receiver = signet_tests::otlp::Receiver::start();
    let tracing = format!(
        "\n[tracing]\notlp_endpoint = \"{}\"\nsample_ratio = 1.0\nflush_interval = \"100ms\"\n",
        receiver.grpc
    );
    let cart_tracing = tracing.clone();
    let mesh = Mesh::start_custom(
        move |cart, _| {
            cart.replace("app_protocol = \"http1\"", "protocol = \"tcp\"") + &cart_tracing
        },
        &format!("protocol = \"tcp\"\n{tracing}"),
    )
    .await;
    {
        let mut http = Http::h1(mesh.frontend.outbound["cart"]).await;
        assert_eq!(http.get("cart", "/api/items", &[]).await.status, 200);
    }
    // Each side's span once the connection closed: no trace context crosses raw TCP, so each
    // is a root of its own.
    let started = std::time::Instant::now();
    let spans = loop {
        let tcp: Vec<serde_json::Value> = receiver
            .spans()
            .into_iter()
            .filter(|s| s["name"] == "tcp")
            .collect();
        if tcp.len() >= 2 {
            break tcp;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:#?}",
            receiver.spans()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let client = spans
        .iter()
        .find(|s| s["kind"] == 3)
        .expect("a client span");
    let server = spans
        .iter()
        .find(|s| s["kind"] == 2)
        .expect("a server span");
    assert_eq!(client["resource"]["service.name"], "frontend");
    assert_eq!(client["attributes"]["signet.peer.spiffe_id"], CART);
    assert_eq!(client["attributes"]["network.transport"], "tcp");
    assert!(client["attributes"]["signet.tcp.received_bytes"].as_i64() > Some(0));
    assert!(client["attributes"]["signet.tcp.sent_bytes"].as_i64() > Some(0));
    assert_eq!(server["resource"]["service.name"], "cart");
    assert_eq!(server["attributes"]["signet.peer.spiffe_id"], FRONTEND);
    assert_eq!(server["attributes"]["signet.authz.decision"], "allow");
    assert_eq!(
        server["attributes"]["signet.authz.policies"],
        serde_json::json!(["shop-connect"])
    );
    assert_eq!(server["parent_span_id"], "");
    let count =
        "signet_proxy_tcp_connection_duration_seconds_count{direction=\"outbound\",peer=\"cart\"}";
    assert_eq!(mesh.frontend.metric(count).await, 1);
}

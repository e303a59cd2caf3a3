//! The outbound traffic stack with real processes: a frontend proxy calling three cart
//! endpoints (each a `signet-proxy` in front of its own app) under a traffic document read
//! from a file, while the apps fail, slow down, hang or die.

#![expect(clippy::unwrap_used, reason = "tests: a failure is the test failing")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use signet_tests::client::{self, Http};
use signet_tests::faulty::{Behaviour, FaultyApp};
use signet_tests::fleet::{CART, Fleet, proxy_toml};
use signet_tests::pki::Pki;
use signet_tests::process::ProxyProcess;

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_signet-proxy"))
}

async fn start(traffic: &str) -> Fleet {
    Fleet::start(&binary(), traffic).await
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_that_dies_under_traffic_fails_no_request() {
    // Round robin, so the dead endpoint is certain to be tried again: P2C-EWMA may rightly
    // pass it over for seconds if its last answer before dying was a slow one.
    let mut fleet = start(
        "services:\n  - service: cart\n    balancer: round-robin\n    retry:\n      max_retries: 2\n      on: [connect-failure, refused-stream, reset, gateway-error]\n",
    )
    .await;
    let load = {
        let addr = fleet.to_cart();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(3);
            let mut http = Http::h1(addr).await;
            while Instant::now() < deadline {
                let reply = http.call("GET", "cart", "/items").await.unwrap();
                statuses.push(reply.status.as_u16());
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = fleet.apps[1].requests();
    assert!(before > 0, "the endpoint had traffic before it died");
    // SIGKILL: connections reset, the port refuses from now on.
    drop(fleet.carts[1].take());
    let statuses = load.await.unwrap();
    assert!(statuses.len() > 100, "{} requests", statuses.len());
    assert_eq!(
        count(&statuses, 200),
        statuses.len(),
        "every request answered 200"
    );
    // Connect failures were retried on the others, and the dead endpoint was ejected.
    assert!(
        fleet
            .metric("signet_proxy_upstream_retries_total{service=\"cart\",result=\"sent\"}")
            .await
            > 0
    );
    assert_eq!(
        fleet
            .metric(&format!(
                "signet_proxy_upstream_endpoint_ejected{{service=\"cart\",endpoint=\"{}\"}}",
                fleet.frontend_endpoint(1)
            ))
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_default_retry_policy_a_request_that_never_left_is_sent_elsewhere() {
    // The defaults retry only what never left, and keep no copy of the request for it: the
    // pool hands the unsent request back. Round robin sends every third one to the dead
    // endpoint until outlier detection ejects it.
    let mut fleet = start("services:\n  - service: cart\n    balancer: round-robin\n").await;
    drop(fleet.carts[1].take());
    let mut http = Http::h1(fleet.to_cart()).await;
    for i in 0..30 {
        let reply = http.call("GET", "cart", "/items").await.unwrap();
        assert_eq!(reply.status.as_u16(), 200, "request {i}");
    }
    let sent = fleet
        .metric("signet_proxy_upstream_retries_total{service=\"cart\",result=\"sent\"}")
        .await;
    assert!(sent > 0, "connect failures were retried");
    assert_eq!(fleet.apps[1].requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_retry_budget_caps_attempts_when_every_endpoint_fails() {
    let fleet = start(
        "services:\n  - service: cart\n    retry:\n      max_retries: 3\n      on: [gateway-error]\n      backoff_base: 1ms\n      backoff_max: 2ms\n    retry_budget:\n      ratio: 0.2\n      min_per_second: 1\n      window: 10s\n    outlier:\n      consecutive_5xx: 0\n      consecutive_gateway_errors: 0\n",
    )
    .await;
    for app in &fleet.apps {
        app.set(Behaviour::Status(503));
    }
    let statuses = fleet.load(1000, 8, "/items").await;
    assert_eq!(count(&statuses, 503), 1000);
    let attempts = fleet.attempts();
    // Without a budget: 4,000 attempts. With it: 1,000 first tries, 20 % of them as retries,
    // and the floor of 1 a second over the 10 s window.
    assert!(attempts >= 1000, "{attempts}");
    assert!(attempts <= 1000 + 200 + 10 + 5, "{attempts} attempts");
    assert!(
        fleet
            .metric("signet_proxy_upstream_retries_total{service=\"cart\",result=\"budget\"}")
            .await
            >= 700,
    );
    assert_eq!(
        fleet.metric("signet_proxy_upstream_requests_total{service=\"cart\",route=\"default\",outcome=\"5xx\"}").await,
        1000
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_endpoint_times_out_and_the_per_try_timeout_moves_on() {
    let fleet = start(
        "services:\n  - service: cart\n    balancer: round-robin\n    timeout: 3s\n    retry:\n      on: [connect-failure, reset]\n      per_try_timeout: 200ms\n      backoff_base: 1ms\n    outlier:\n      consecutive_gateway_errors: 0\n      consecutive_5xx: 0\n    routes:\n      - name: once\n        match: {path: {prefix: /once}}\n        timeout: 500ms\n        retry: {max_retries: 0}\n",
    )
    .await;
    fleet.apps[0].set(Behaviour::Hang);
    // Round robin sends every third request to the hanging one: each moves on after 200 ms.
    for _ in 0..6 {
        let started = Instant::now();
        let reply = fleet.get("/items").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert!(fleet.metric("signet_proxy_upstream_attempts_total{service=\"cart\",route=\"default\",outcome=\"timeout\"}").await >= 2);
    // Without retries the route's own timeout answers: 504, said by the proxy.
    let mut timed_out = 0;
    for _ in 0..3 {
        let reply = fleet.get("/once").await;
        if reply.status == 504 {
            assert_eq!(reply.header("x-signet-error").as_deref(), Some("timeout"));
            timed_out += 1;
        } else {
            assert_eq!(reply.status, 200);
        }
    }
    assert_eq!(timed_out, 1, "one of three went to the hanging endpoint");
    // A gRPC caller's own deadline is honoured (and answered in gRPC's terms).
    let mut http = Http::h2(fleet.to_cart()).await;
    let mut deadline_hit = false;
    for _ in 0..3 {
        let request = client::request(
            "POST",
            "cart",
            "/shop.Cart/Get",
            &[
                ("content-type", "application/grpc"),
                ("grpc-timeout", "100m"),
                ("te", "trailers"),
            ],
            Bytes::from_static(&[0, 0, 0, 0, 0]),
        );
        let started = Instant::now();
        let reply = http.send(request).await.unwrap();
        if reply.header("grpc-status").as_deref() == Some("4") {
            // Well before the route's 3 s timeout.
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
            deadline_hit = true;
        }
    }
    assert!(
        deadline_hit,
        "the call to the hanging endpoint ended at the caller's deadline"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flapping_endpoint_is_ejected_and_readmitted() {
    let fleet = start(
        "services:\n  - service: cart\n    balancer: round-robin\n    retry: {max_retries: 0}\n    outlier:\n      consecutive_gateway_errors: 3\n      base_ejection: 1s\n      max_ejection: 10s\n",
    )
    .await;
    fleet.apps[2].set(Behaviour::Status(503));
    let statuses = fleet.load(30, 1, "/items").await;
    assert_eq!(count(&statuses, 503), 3, "three failures, then ejected");
    let seen = fleet.apps[2].requests();
    assert_eq!(seen, 3);
    let ejected = format!(
        "signet_proxy_upstream_ejections_total{{service=\"cart\",endpoint=\"{}\"}}",
        fleet.frontend_endpoint(2)
    );
    assert_eq!(fleet.metric(&ejected).await, 1);
    // It recovers; once its ejection ends it gets its share again.
    fleet.apps[2].set(Behaviour::Ok);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let statuses = fleet.load(30, 1, "/items").await;
    assert_eq!(count(&statuses, 200), 30);
    assert!(fleet.apps[2].requests() >= seen + 9, "readmitted");
    // It flaps again: on probation, one failure ejects it, for twice as long.
    fleet.apps[2].set(Behaviour::Status(503));
    let statuses = fleet.load(30, 1, "/items").await;
    assert!(
        count(&statuses, 503) >= 1 && count(&statuses, 503) <= 3,
        "{statuses:?}"
    );
    assert_eq!(fleet.metric(&ejected).await, 2);
    let (_, endpoints) = fleet.frontend.admin_get("/endpoints").await;
    let endpoints: serde_json::Value = serde_json::from_str(&endpoints).unwrap();
    let e = &endpoints["upstreams"][0]["endpoints"][2];
    assert_eq!(e["ejected"], true, "{endpoints}");
    assert_eq!(e["ejections"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_breaker_fails_fast_when_full_and_recovers() {
    let fleet = start("services:\n  - service: cart\n    breaker:\n      max_requests: 2\n").await;
    for app in &fleet.apps {
        app.set(Behaviour::Slow(Duration::from_millis(500)));
    }
    let statuses = fleet.load(6, 6, "/items").await;
    assert_eq!(count(&statuses, 200), 2, "{statuses:?}");
    assert_eq!(count(&statuses, 503), 4, "{statuses:?}");
    assert_eq!(
        fleet
            .metric("signet_proxy_upstream_overflows_total{service=\"cart\",limit=\"requests\"}")
            .await,
        4
    );
    let reply = {
        for app in &fleet.apps {
            app.set(Behaviour::Ok);
        }
        fleet.get("/items").await
    };
    assert_eq!(reply.status, 200, "room again once the slow ones finished");
    let over = {
        for app in &fleet.apps {
            app.set(Behaviour::Slow(Duration::from_millis(300)));
        }
        let a = fleet.get("/a");
        let b = fleet.get("/b");
        let c = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            fleet.get("/c").await
        };
        tokio::join!(a, b, c).2
    };
    assert_eq!(over.status, 503);
    assert_eq!(over.header("x-signet-error").as_deref(), Some("overflow"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_is_never_sent_twice_but_one_that_never_left_is_retried() {
    let mut fleet = start(
        "services:\n  - service: cart\n    retry:\n      max_retries: 2\n      on: [connect-failure, gateway-error]\n      backoff_base: 1ms\n    outlier: {consecutive_gateway_errors: 0, consecutive_5xx: 0}\n",
    )
    .await;
    for app in &fleet.apps {
        app.set(Behaviour::Status(503));
    }
    let mut http = Http::h1(fleet.to_cart()).await;
    for _ in 0..10 {
        let reply = http
            .send(client::request(
                "POST",
                "cart",
                "/orders",
                &[],
                Bytes::from_static(b"{\"n\":1}"),
            ))
            .await
            .unwrap();
        assert_eq!(reply.status, 503);
    }
    let posts: u64 = fleet.apps.iter().map(FaultyApp::posts).sum();
    assert_eq!(posts, 10, "each POST reached an app once");
    // A GET is retried.
    let before = fleet.attempts();
    assert_eq!(fleet.get("/items").await.status, 503);
    assert_eq!(fleet.attempts() - before, 3);
    // A POST whose connection failed never left: it goes to another endpoint.
    for app in &fleet.apps {
        app.set(Behaviour::Ok);
    }
    drop(fleet.carts[0].take());
    for _ in 0..10 {
        let reply = http
            .send(client::request(
                "POST",
                "cart",
                "/orders",
                &[],
                Bytes::from_static(b"{\"n\":2}"),
            ))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn p2c_ewma_sends_little_to_a_slow_endpoint_and_round_robin_does_not() {
    let fleet = start("services:\n  - service: cart\n").await;
    fleet.apps[1].set(Behaviour::Slow(Duration::from_millis(50)));
    let statuses = fleet.load(300, 4, "/items").await;
    assert_eq!(count(&statuses, 200), 300);
    let slow = fleet.apps[1].requests();
    assert!(
        slow < 30,
        "the slow endpoint got {slow} of 300 under P2C-EWMA"
    );
    // The same fleet under round robin: a third each. The document is re-read live.
    std::fs::write(
        &fleet.traffic,
        "services:\n  - service: cart\n    balancer: round-robin\n",
    )
    .unwrap();
    fleet
        .frontend
        .metric_reaching("signet_proxy_traffic_version", 2)
        .await;
    let before = fleet.apps[1].requests();
    let statuses = fleet.load(90, 3, "/items").await;
    assert_eq!(count(&statuses, 200), 90);
    assert_eq!(fleet.apps[1].requests() - before, 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_traffic_document_stops_the_start_and_a_bad_change_is_refused() {
    let fleet = start("services:\n  - service: cart\n    timeout: 2s\n").await;
    // A bad change: refused, counted, the previous settings stay.
    std::fs::write(
        &fleet.traffic,
        "services:\n  - service: cart\n    timeout: 2s\n    retry: {max_retries: 99}\n",
    )
    .unwrap();
    assert_eq!(
        fleet
            .frontend
            .metric_reaching("signet_proxy_reload_failures_total{source=\"traffic\"}", 1)
            .await,
        1
    );
    let (_, config) = fleet.frontend.admin_get("/config").await;
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["traffic"]["version"], 1);
    assert_eq!(config["traffic"]["services"][0]["timeout"], "2s");
    assert_eq!(config["traffic"]["services"][0]["retry"]["max_retries"], 2);
    // At start: one line naming the file and line, exit 1.
    let toml = std::fs::read_to_string(&fleet.frontend.config).unwrap();
    let bad = fleet.dir.path().join("bad-start.toml");
    std::fs::write(&bad, &toml).unwrap();
    let out = std::process::Command::new(binary())
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("traffic.file:")
            && last.contains("traffic.yaml:4: service cart: retry.max_retries is at most 10"),
        "{stderr}"
    );
}

/// A real gRPC server (Python's grpcio) with the standard health service; its status is set
/// by a line on its stdin.
struct GrpcHealthServer {
    child: std::process::Child,
    port: u16,
}

impl GrpcHealthServer {
    fn start() -> Self {
        use std::io::BufRead;
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/grpc_health/server.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap();
        Self { child, port }
    }

    fn set(&mut self, status: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{status}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for GrpcHealthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ready(proxy: &ProxyProcess) -> (u16, String) {
    proxy.admin_get("/ready").await
}

async fn wait_ready(proxy: &ProxyProcess, status: u16) -> String {
    let started = Instant::now();
    loop {
        let (got, body) = ready(proxy).await;
        if got == status {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "/ready still {got}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_and_http_health_checks_decide_readiness() {
    let pki = Pki::new("acme.internal");
    let dir = tempfile::tempdir().unwrap();
    // gRPC: the standard health service of a real gRPC server.
    let mut server = GrpcHealthServer::start();
    let traffic = dir.path().join("traffic.yaml");
    std::fs::write(
        &traffic,
        "services:\n  - service: cart\n    health_check: {grpc: {}, interval: 100ms, timeout: 90ms, unhealthy_threshold: 2}\n",
    )
    .unwrap();
    let app: std::net::SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let extra = format!("\n[traffic]\nfile = \"{}\"\n", traffic.display());
    let toml = proxy_toml("cart", dir.path(), &pki, CART, app, &extra)
        .replace("app = ", "app_protocol = \"http2\"\napp = ");
    let cart = ProxyProcess::start(&binary(), dir.path(), "cart", &toml);
    wait_ready(&cart, 200).await;
    server.set("NOT_SERVING");
    let why = wait_ready(&cart, 503).await;
    assert!(
        why.contains("the app fails its health check (grpc ``): health status 2 (not SERVING)"),
        "{why}"
    );
    assert_eq!(cart.metric("signet_proxy_app_health").await, 2);
    server.set("SERVING");
    wait_ready(&cart, 200).await;
    assert!(
        cart.metric("signet_proxy_health_probes_total{result=\"fail\"}")
            .await
            >= 2
    );

    // HTTP: the path's status.
    let web = FaultyApp::start("web").await;
    let http_dir = dir.path().join("http");
    std::fs::create_dir_all(&http_dir).unwrap();
    let traffic = http_dir.join("traffic.yaml");
    std::fs::write(
        &traffic,
        "services:\n  - service: cart\n    health_check: {http: {path: /healthz}, interval: 100ms, timeout: 90ms}\n",
    )
    .unwrap();
    let extra = format!("\n[traffic]\nfile = \"{}\"\n", traffic.display());
    let toml = proxy_toml("cart", &http_dir, &pki, CART, web.addr, &extra);
    let cart = ProxyProcess::start(&binary(), dir.path(), "cart-http", &toml);
    wait_ready(&cart, 200).await;
    web.set(Behaviour::Status(500));
    let why = wait_ready(&cart, 503).await;
    assert!(why.contains("GET /healthz: 500"), "{why}");
    // The check is configuration: removing it stops it, and readiness no longer depends on it.
    std::fs::write(&traffic, "services: []\n").unwrap();
    wait_ready(&cart, 200).await;
}

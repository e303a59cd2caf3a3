//! Traffic settings through the control plane as an operator applies them: `meshctl traffic
//! apply|diff|get|history|rollback|schema` against a real `signet-cp`, the settings reaching
//! the real proxies (their route table decides the next request), versions surviving a
//! restart, and bad documents refused whole, by meshctl and by the control plane itself.
#![expect(clippy::unwrap_used, reason = "tests: a failure is the test failing")]

use signet_tests::mesh::Mesh;

fn write(mesh: &Mesh, name: &str, text: &str) -> String {
    let file = mesh.dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    file.display().to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const V1: &str = "services:
  - service: cart
    timeout: 5s
    routes:
      - name: slow-api
        match:
          path: {prefix: /api/slow}
        timeout: 2s
";

async fn traffic_version(mesh: &Mesh) -> u64 {
    mesh.frontend.metric("signet_proxy_traffic_version").await
}

async fn frontend_traffic(mesh: &Mesh) -> serde_json::Value {
    let (_, config) = mesh.frontend.admin_get("/config").await;
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    config["traffic"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn traffic_settings_are_applied_versioned_and_rolled_back_through_meshctl() {
    let mut mesh = Mesh::start(&[]).await;
    let schema: serde_json::Value =
        serde_json::from_str(&mesh.cp.meshctl_ok(&["traffic", "schema"])).unwrap();
    assert_eq!(schema["title"], "Signet traffic document");
    assert!(
        mesh.cp
            .meshctl_ok(&["traffic", "get"])
            .contains("no traffic settings applied")
    );

    // A bad document: every problem at its line, nothing sent, nothing stored.
    let bad = write(
        &mesh,
        "bad.yaml",
        "services:\n  - service: cart\n    timeout: 2s\n    retry: {max_retries: 99}\n    routes:\n      - name: a\n        match: {methods: [get]}\n",
    );
    let out = mesh.cp.meshctl(&["traffic", "apply", "-f", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("bad.yaml:4: service cart: retry.max_retries is at most 10"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml:7: service cart, route a: match.methods: `get`"),
        "{err}"
    );
    assert!(err.contains("nothing was sent"), "{err}");
    // The control plane checks for itself: a client that skips meshctl gets 422.
    let body = serde_json::json!({ "document": "services:\n  - service: cart\n    timeout: soon\n", "file": "raw.yaml" });
    let reply = mesh
        .cp
        .rest(
            "POST",
            "/v1/traffic",
            None,
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(reply.status, 422, "{:?}", reply.json);
    assert_eq!(
        reply.json["problems"][0],
        "raw.yaml:3: services[0].timeout: `soon` is not a duration like 250ms, 10s, 5m or 1h"
    );
    assert!(
        mesh.cp
            .meshctl_ok(&["traffic", "history"])
            .contains("no traffic settings applied")
    );

    // A good one: what changed, then every proxy applies it.
    let v1 = write(&mesh, "v1.yaml", V1);
    let out = mesh.cp.meshctl_ok(&["traffic", "apply", "-f", &v1]);
    assert!(out.contains("~ cart.timeout: \"30s\" -> \"5s\""), "{out}");
    assert!(
        out.contains("+ cart.routes[slow-api].timeout: \"2s\""),
        "{out}"
    );
    assert!(out.contains("applied traffic version 1"), "{out}");
    assert!(out.contains("enforced by 2 of 2 proxies"), "{out}");
    assert_eq!(traffic_version(&mesh).await, 1);
    let pushed = frontend_traffic(&mesh).await;
    assert_eq!(pushed["services"][0]["routes"][0]["name"], "slow-api");
    assert_eq!(pushed["services"][0]["timeout"], "5s");
    // The frontend's route table now decides its requests.
    let (status, _) = mesh.call("/api/slow/1").await;
    assert_eq!(status, 200);
    assert_eq!(
        mesh.frontend
            .metric("signet_proxy_upstream_requests_total{service=\"cart\",route=\"slow-api\",outcome=\"success\"}")
            .await,
        1
    );
    // The same document again changes nothing and stores nothing.
    let out = mesh.cp.meshctl_ok(&["traffic", "diff", "-f", &v1]);
    assert_eq!(out.trim(), "no change");
    let out = mesh.cp.meshctl_ok(&["traffic", "apply", "-f", &v1]);
    assert!(out.contains("traffic version 1 stays in force"), "{out}");

    // Version 2, then back to 1 as version 3.
    let v2 = write(
        &mesh,
        "v2.yaml",
        &V1.replace("timeout: 2s", "timeout: 1s").replace("5s", "7s"),
    );
    let out = mesh.cp.meshctl_ok(&["traffic", "diff", "-f", &v2]);
    assert!(
        out.contains("~ cart.routes[slow-api].timeout: \"2s\" -> \"1s\""),
        "{out}"
    );
    assert_eq!(traffic_version(&mesh).await, 1, "a diff applies nothing");
    mesh.cp.meshctl_ok(&["traffic", "apply", "-f", &v2]);
    assert_eq!(
        frontend_traffic(&mesh).await["services"][0]["timeout"],
        "7s"
    );
    let old = mesh.cp.meshctl_ok(&["traffic", "get", "--version", "1"]);
    assert!(old.contains("# traffic version 1"), "{old}");
    assert!(old.contains("timeout: 5s"), "{old}");
    let out = mesh.cp.meshctl_ok(&["traffic", "rollback", "1"]);
    assert!(
        out.contains("rolled back to version 1: applied traffic version 3"),
        "{out}"
    );
    assert_eq!(
        frontend_traffic(&mesh).await["services"][0]["timeout"],
        "5s"
    );
    let history: serde_json::Value =
        serde_json::from_str(&mesh.cp.meshctl_ok(&["traffic", "history", "-o", "json"])).unwrap();
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[0]["rollback_of"], 1);
    assert_eq!(versions[0]["changes"], 2);

    // Every change was an authorized operator action.
    let actions = mesh
        .cp
        .rest("GET", "/v1/operator-actions", None, None)
        .await;
    let traffic_actions = actions.json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "traffic.apply" && a["allowed"] == true)
        .count();
    assert!(traffic_actions >= 3, "{}", actions.json);

    // Stored: a restarted control plane serves and pushes the same version.
    mesh.cp.stop();
    mesh.cp.restart();
    let now = mesh.cp.meshctl_ok(&["traffic", "get", "-o", "json"]);
    let now: serde_json::Value = serde_json::from_str(&now).unwrap();
    assert_eq!(now["version"], 3);
    assert_eq!(now["document"]["services"][0]["timeout"], "5s");
}

async fn endpoints_of_cart(mesh: &Mesh) -> Vec<String> {
    let (_, body) = mesh.frontend.admin_get("/endpoints").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["upstreams"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap().to_owned())
        .collect()
}

/// Starts one more cart proxy, `name`, in front of the app at `app`, with `control_plane`
/// settings added to its `[control_plane]` table.
fn extra_cart(
    mesh: &Mesh,
    name: &str,
    app: std::net::SocketAddr,
    control_plane: &str,
) -> signet_tests::process::ProxyProcess {
    let toml = signet_tests::mesh::proxy_toml(
        &mesh.cp,
        "cart",
        Some(&mesh.cp.token(signet_tests::mesh::CART)),
        app,
        &[],
    )
    .replace("cart-state", &format!("{name}-state"));
    assert!(toml.contains("[control_plane]\n"));
    let toml = toml.replace(
        "[control_plane]\n",
        &format!("[control_plane]\n{control_plane}"),
    );
    signet_tests::process::ProxyProcess::start(
        &signet_tests::control::workspace_binary("signet-proxy"),
        mesh.dir.path(),
        name,
        &toml,
    )
}

/// A demo mesh with `traffic` applied and a second cart endpoint (its own app, its proxy's
/// `[control_plane]` given `control_plane` too), once the frontend sees both.
async fn second_cart(
    traffic: &str,
    control_plane: &str,
) -> (
    Mesh,
    signet_tests::faulty::FaultyApp,
    signet_tests::process::ProxyProcess,
) {
    let mesh = Mesh::start(&[]).await;
    let doc = write(&mesh, "traffic.yaml", traffic);
    mesh.cp.meshctl_ok(&["traffic", "apply", "-f", &doc]);
    let app = signet_tests::faulty::FaultyApp::start("cart-2").await;
    let cart2 = extra_cart(&mesh, "cart-2", app.addr, control_plane);
    wait_endpoints(&mesh, 2).await;
    (mesh, app, cart2)
}

/// Applies the document at `path`, which must be refused: its stderr.
fn apply_refused(mesh: &Mesh, path: &str) -> String {
    let out = mesh.cp.meshctl(&["traffic", "apply", "-f", path]);
    assert!(!out.status.success());
    stderr(&out)
}

/// Waits until the frontend's cart balancer is `kind`.
async fn wait_balancer(mesh: &Mesh, kind: &str) {
    let started = std::time::Instant::now();
    while frontend_traffic(mesh).await["services"][0]["balancer"] != kind {
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Makes `n` successful calls through the frontend; how many reached `app`.
async fn calls_reaching(mesh: &Mesh, app: &signet_tests::faulty::FaultyApp, n: usize) -> u64 {
    let before = app.calls();
    for _ in 0..n {
        assert_eq!(mesh.call("/api/items").await.0, 200);
    }
    app.calls() - before
}

async fn wait_endpoints(mesh: &Mesh, n: usize) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        let now = endpoints_of_cart(mesh).await;
        if now.len() == n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "still {now:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unhealthy_app_leaves_every_callers_endpoint_set_and_rejoins() {
    use signet_tests::faulty::Behaviour;
    // A second cart endpoint, its app under the test's control.
    let (mesh, app, _cart2) = second_cart(
        "services:\n  - service: cart\n    health_check: {http: {path: /healthz}, interval: 200ms, timeout: 150ms, unhealthy_threshold: 2}\n",
        "",
    )
    .await;
    // Both apps pass their checks, as the control plane hears from their proxies.
    let started = std::time::Instant::now();
    loop {
        let listed = mesh.cp.meshctl_ok(&["proxies", "endpoints", "cart"]);
        if listed.matches(" healthy ").count() == 2 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{listed}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Its app fails: within two probe intervals (plus a heartbeat and a push) the frontend
    // no longer sends it anything.
    app.set(Behaviour::Status(503));
    let gone = wait_endpoints(&mesh, 1).await;
    eprintln!("left the endpoint set {gone:?} after the app failed");
    let before = app.calls();
    for _ in 0..20 {
        assert_eq!(mesh.call("/api/items").await.0, 200);
    }
    assert_eq!(app.calls(), before, "only health probes reach it");
    let listed = mesh
        .cp
        .meshctl_ok(&["proxies", "endpoints", "cart", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let unhealthy: Vec<&serde_json::Value> = listed["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["health"] == "unhealthy")
        .collect();
    assert_eq!(unhealthy.len(), 1, "{listed}");
    assert!(
        unhealthy[0]["caller"].is_null(),
        "no caller has it: {listed}"
    );
    let proxies = mesh.cp.meshctl_ok(&["proxies", "list"]);
    assert!(proxies.contains("unhealthy"), "{proxies}");

    // It recovers and comes back.
    app.set(Behaviour::Ok);
    let back = wait_endpoints(&mesh, 2).await;
    eprintln!("rejoined {back:?} after the app recovered");
    for _ in 0..40 {
        assert_eq!(mesh.call("/api/items").await.0, 200);
    }
    let (_, seen) = mesh.frontend.admin_get("/endpoints").await;
    assert!(app.calls() > before, "traffic reaches it again: {seen}");
}

/// The frontend's view of the cart endpoints' weights, by address.
async fn cart_weights(mesh: &Mesh) -> Vec<(String, u64)> {
    let (_, body) = mesh.frontend.admin_get("/endpoints").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["upstreams"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap().to_owned(),
                e["weight"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn registered_weights_decide_each_endpoints_share() {
    // A second cart endpoint on a machine said to have three times the capacity.
    let (mesh, app, cart2) = second_cart(
        "services:\n  - service: cart\n    balancer: round-robin\n",
        "weight = 300\n",
    )
    .await;
    let mut weights: Vec<u64> = cart_weights(&mesh).await.into_iter().map(|w| w.1).collect();
    weights.sort_unstable();
    assert_eq!(weights, [100, 300]);
    wait_balancer(&mesh, "round-robin").await;

    // Smooth weighted round robin: exactly three of every four requests.
    assert_eq!(calls_reaching(&mesh, &app, 40).await, 30);

    // The operator sees the weight as the caller's balancer uses it.
    let listed = mesh
        .cp
        .meshctl_ok(&["proxies", "endpoints", "cart", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let mut seen: Vec<u64> = listed["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["weight"].as_u64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [100, 300], "{listed}");
    let table = mesh.cp.meshctl_ok(&["proxies", "endpoints", "cart"]);
    assert!(
        table.contains("WEIGHT") && table.contains(" 300 "),
        "{table}"
    );

    // Under the default P2C-EWMA a heavier endpoint (weight 1000: each candidate is it with
    // probability 10/11) carries most requests even at rest: at least its share squared,
    // ~83 %, whatever the two apps' latencies.
    let p2c = write(&mesh, "p2c.yaml", "services:\n  - service: cart\n");
    mesh.cp.meshctl_ok(&["traffic", "apply", "-f", &p2c]);
    drop(cart2);
    wait_endpoints(&mesh, 1).await;
    let _cart3 = extra_cart(&mesh, "cart-3", app.addr, "weight = 1000\n");
    wait_endpoints(&mesh, 2).await;
    wait_balancer(&mesh, "p2c-ewma").await;
    let heavy = calls_reaching(&mesh, &app, 400).await;
    eprintln!("weight 1000 beside 100 under p2c-ewma: {heavy} of 400 requests");
    assert!(heavy >= 300, "{heavy} of 400");
}

const REPORTS: &str = "spiffe://mesh.test/ns/shop/sa/reports";

/// A second caller of the cart, `reports` (allowed to read it too), and `traffic` applied and
/// in force on the cart's proxy.
async fn with_reports(mesh: &Mesh, traffic: &str) -> signet_tests::process::ProxyProcess {
    let policies = write(
        mesh,
        "v2.cedar",
        &(signet_tests::mesh::policies("/api/*")
            + &format!(
                "@id(\"reports-reads-cart\")\npermit (principal == Mesh::Workload::\"{REPORTS}\", action in Mesh::Action::\"read\", resource == Mesh::Service::\"cart\");\n"
            )),
    );
    mesh.cp
        .meshctl_ok(&["authz", "apply", "-f", &policies, "--allow-widening"]);
    let reports = signet_tests::process::ProxyProcess::start(
        &signet_tests::control::workspace_binary("signet-proxy"),
        mesh.dir.path(),
        "reports",
        &signet_tests::mesh::proxy_toml(
            &mesh.cp,
            "reports",
            Some(&mesh.cp.token(REPORTS)),
            mesh.app.addr,
            &["cart"],
        ),
    );
    let doc = write(mesh, "traffic.yaml", traffic);
    mesh.cp.meshctl_ok(&["traffic", "apply", "-f", &doc]);
    let started = std::time::Instant::now();
    while mesh.cart.metric("signet_proxy_traffic_version").await < 1 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    reports
}

#[tokio::test(flavor = "multi_thread")]
async fn a_noisy_caller_is_rate_limited_alone_with_429_and_retry_after() {
    let mesh = Mesh::start(&[]).await;
    let reports = with_reports(
        &mesh,
        "services:\n  - service: cart\n    rate_limit: {per_caller: {requests_per_second: 1, burst: 5}}\n",
    )
    .await;

    // The frontend sends 20 at once: its burst of 5 (and at most one refilled) passes.
    let mut http = signet_tests::client::Http::h1(mesh.cart_port()).await;
    let mut passed = 0;
    let mut refused = Vec::new();
    for _ in 0..20 {
        let reply = http.get("cart", "/api/items", &[]).await;
        match reply.status.as_u16() {
            200 => passed += 1,
            429 => refused.push(reply),
            other => panic!("{other}"),
        }
    }
    assert!((5..=6).contains(&passed), "{passed} passed");
    let first = &refused[0];
    assert_eq!(
        first.header("x-signet-error").as_deref(),
        Some("rate-limited")
    );
    let after: u64 = first.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&after), "{after}");

    // The other caller has its own share.
    let mut other = signet_tests::client::Http::h1(reports.outbound["cart"]).await;
    reports_reachable(&mut other).await;
    for _ in 0..4 {
        assert_eq!(other.get("cart", "/api/items", &[]).await.status, 200);
    }

    // Counted by route and limit, and audited (sampled: the first refusal at least).
    let series = "signet_proxy_rate_limited_total{route=\"default\",limit=\"service-per-caller\"}";
    assert_eq!(mesh.cart.metric(series).await, refused.len() as u64);
    let started = std::time::Instant::now();
    loop {
        let out = mesh.cp.meshctl_ok(&[
            "audit",
            "tail",
            "-o",
            "json",
            "--policy",
            "rate-limit-service-per-caller",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if let Some(r) = v["records"].as_array().and_then(|r| r.first()) {
            assert_eq!(r["decision"], "deny", "{r}");
            assert_eq!(r["principal"], signet_tests::mesh::FRONTEND, "{r}");
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // A document with a broken limit is refused, one line, nothing applied.
    let bad = write(
        &mesh,
        "bad-limits.yaml",
        "services:\n  - service: cart\n    rate_limit: {per_caller: {requests_per_second: 0}}\n",
    );
    let err = apply_refused(&mesh, &bad);
    assert!(
        err.contains("rate_limit.per_caller.requests_per_second is more than 0"),
        "{err}"
    );
}

/// Waits until the reports proxy reaches the cart (its endpoints arrive after it joined).
async fn reports_reachable(http: &mut signet_tests::client::Http) {
    let started = std::time::Instant::now();
    while http.get("cart", "/api/items", &[]).await.status != 200 {
        assert!(started.elapsed() < std::time::Duration::from_secs(15));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_are_injected_for_the_matched_caller_only_and_say_so() {
    let mesh = Mesh::start(&[]).await;
    let reports = with_reports(
        &mesh,
        &format!(
            "services:\n  - service: cart\n    routes:\n      - name: slow\n        match: {{path: {{prefix: /api/slow}}}}\n        fault: {{delay: {{fixed: 300ms, percent: 100}}, namespaces: [shop]}}\n      - name: flaky\n        match: {{path: {{prefix: /api/flaky}}}}\n        fault: {{abort: {{http_status: 500, percent: 50}}}}\n      - name: api\n        match: {{path: {{prefix: /api}}}}\n        fault: {{abort: {{percent: 100}}, callers: ['{REPORTS}']}}\n"
        ),
    )
    .await;

    // Only the named caller gets the abort, marked as injected.
    let mut other = signet_tests::client::Http::h1(reports.outbound["cart"]).await;
    let started = std::time::Instant::now();
    let reply = loop {
        let reply = other.get("cart", "/api/items", &[]).await;
        if reply.header("x-signet-error").as_deref() == Some("injected") {
            break reply;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{reply:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("x-signet-error").as_deref(), Some("injected"));
    for _ in 0..10 {
        assert_eq!(
            mesh.call("/api/items").await.0,
            200,
            "the frontend is not named"
        );
    }

    // A share: about half of the flaky route's requests fail, with the configured status.
    let mut http = signet_tests::client::Http::h1(mesh.cart_port()).await;
    let mut failed = 0;
    for _ in 0..200 {
        let reply = http.get("cart", "/api/flaky", &[]).await;
        match reply.status.as_u16() {
            200 => {}
            500 => {
                assert_eq!(reply.header("x-signet-error").as_deref(), Some("injected"));
                failed += 1;
            }
            other => panic!("{other}"),
        }
    }
    assert!(
        (60..=140).contains(&failed),
        "{failed} of 200 aborted at 50 %"
    );

    // A delay holds the request at least that long (a lower bound: it cannot be faster).
    let started = std::time::Instant::now();
    assert_eq!(http.get("cart", "/api/slow", &[]).await.status, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));

    // Counted by route and kind, and audited as injected, not as a failure of the app.
    let aborts = "signet_proxy_faults_injected_total{route=\"flaky\",kind=\"abort\"}";
    assert_eq!(mesh.cart.metric(aborts).await, failed);
    let delays = "signet_proxy_faults_injected_total{route=\"slow\",kind=\"delay\"}";
    assert_eq!(mesh.cart.metric(delays).await, 1);
    let started = std::time::Instant::now();
    loop {
        let out =
            mesh.cp
                .meshctl_ok(&["audit", "tail", "-o", "json", "--policy", "fault-injected"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if v["records"].as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Two more cart endpoints, labelled `version: v1` and `version: v2`, each with its own app,
/// once the frontend sees them.
async fn two_versions(
    mesh: &Mesh,
) -> (
    signet_tests::faulty::FaultyApp,
    signet_tests::faulty::FaultyApp,
    [signet_tests::process::ProxyProcess; 2],
) {
    use signet_tests::faulty::FaultyApp;
    let (v1, v2) = (FaultyApp::start("v1").await, FaultyApp::start("v2").await);
    let carts = [
        extra_cart(
            mesh,
            "cart-v1",
            v1.addr,
            "endpoint_labels = { version = \"v1\" }\n",
        ),
        extra_cart(
            mesh,
            "cart-v2",
            v2.addr,
            "endpoint_labels = { version = \"v2\" }\n",
        ),
    ];
    wait_endpoints(mesh, 3).await;
    (v1, v2, carts)
}

/// The frontend's subsets of the cart, by name: how many endpoints each has.
async fn cart_subsets(mesh: &Mesh) -> serde_json::Value {
    let (_, body) = mesh.frontend.admin_get("/endpoints").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["upstreams"][0]["subsets"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_split_by_subset_pin_by_header_and_switch_blue_green() {
    let mesh = Mesh::start(&[]).await;
    let (v1, v2, _carts) = two_versions(&mesh).await;
    let canary = |v1: u32, v2: u32| {
        format!(
            "services:\n  - service: cart\n    balancer: round-robin\n    subsets:\n      - {{name: v1, labels: {{version: v1}}}}\n      - {{name: v2, labels: {{version: v2}}}}\n    routes:\n      - name: pinned\n        match: {{headers: [{{name: x-canary, exact: '1'}}]}}\n        split: [{{subset: v2, weight: 100}}]\n      - name: all\n        split: [{{subset: v1, weight: {v1}}}, {{subset: v2, weight: {v2}}}]\n"
        )
    };
    let doc = write(&mesh, "canary.yaml", &canary(90, 10));
    mesh.cp.meshctl_ok(&["traffic", "apply", "-f", &doc]);
    let started = std::time::Instant::now();
    while cart_subsets(&mesh).await
        != serde_json::json!({"v1": {"endpoints": 1}, "v2": {"endpoints": 1}})
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // 90/10: the canary's share is within statistical bounds (expected 40 of 400, sd 6), and
    // the unlabelled endpoint, in no subset, gets none of the split route's requests.
    let unlabelled = mesh.app.requests.load(std::sync::atomic::Ordering::Relaxed);
    let (before1, before2) = (v1.calls(), v2.calls());
    for _ in 0..400 {
        assert_eq!(mesh.call("/api/items").await.0, 200);
    }
    let (to1, to2) = (v1.calls() - before1, v2.calls() - before2);
    eprintln!("90/10 split: {to1} to v1, {to2} to v2");
    assert_eq!(to1 + to2, 400);
    assert!((20..=60).contains(&to2), "{to2} of 400 to the canary");
    assert_eq!(
        mesh.app.requests.load(std::sync::atomic::Ordering::Relaxed),
        unlabelled
    );
    let counted = mesh
        .frontend
        .metric("signet_proxy_upstream_subset_requests_total{service=\"cart\",route=\"all\",subset=\"v2\"}")
        .await;
    assert_eq!(counted, to2);

    // `meshctl traffic split`: configured against observed, from the proxies' heartbeats.
    let started = std::time::Instant::now();
    let split = loop {
        let out = mesh
            .cp
            .meshctl_ok(&["traffic", "split", "cart", "--window", "5m", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let observed = |name: &str| {
            v["observed"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["subset"] == name)
                .and_then(|o| o["requests"].as_u64())
        };
        if observed("v1") == Some(to1) && observed("v2") == Some(to2) {
            break v;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let all = split["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "all")
        .unwrap();
    assert_eq!(all["split"][0]["share"], 0.9, "{split}");
    assert_eq!(all["split"][1]["share"], 0.1, "{split}");
    let table = mesh.cp.meshctl_ok(&["traffic", "split", "cart"]);
    assert!(
        table.contains("CONFIGURED") && table.contains("OBSERVED") && table.contains("90.0%"),
        "{table}"
    );

    // A header pins a request to the canary.
    let before2 = v2.calls();
    let mut http = signet_tests::client::Http::h1(mesh.cart_port()).await;
    for _ in 0..20 {
        let reply = http.get("cart", "/api/items", &[("x-canary", "1")]).await;
        assert_eq!(reply.status, 200);
    }
    assert_eq!(v2.calls() - before2, 20);

    // Blue-green: one apply moves every request; by the time it returns, the callers have
    // it (apply waits for their acknowledgement).
    let doc = write(&mesh, "green.yaml", &canary(0, 100));
    mesh.cp.meshctl_ok(&["traffic", "apply", "-f", &doc]);
    let before1 = v1.calls();
    for _ in 0..50 {
        assert_eq!(mesh.call("/api/items").await.0, 200);
    }
    assert_eq!(v1.calls(), before1, "nothing to blue after the switch");

    // A split to a subset the service does not name is refused, one line.
    let bad = write(
        &mesh,
        "bad-split.yaml",
        "services:\n  - service: cart\n    routes:\n      - name: all\n        split: [{subset: v3, weight: 1}]\n",
    );
    let err = apply_refused(&mesh, &bad);
    assert!(err.contains("split: no subset `v3`"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mirrored_copies_reach_their_subset_and_never_hold_up_the_original() {
    use signet_tests::faulty::Behaviour;
    let mesh = Mesh::start(&[]).await;
    let (v1, v2, _carts) = two_versions(&mesh).await;
    // The mirror's subset answers only after 5 s.
    v2.set(Behaviour::Slow(std::time::Duration::from_secs(5)));
    let doc = write(
        &mesh,
        "mirror.yaml",
        "services:\n  - service: cart\n    subsets:\n      - {name: v1, labels: {version: v1}}\n      - {name: v2, labels: {version: v2}}\n    routes:\n      - name: all\n        split: [{subset: v1, weight: 1}]\n        mirror: {subset: v2, percent: 100}\n",
    );
    mesh.cp.meshctl_ok(&["traffic", "apply", "-f", &doc]);
    let started = std::time::Instant::now();
    while cart_subsets(&mesh).await
        != serde_json::json!({"v1": {"endpoints": 1}, "v2": {"endpoints": 1}})
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (before1, before2) = (v1.calls(), v2.calls());
    for _ in 0..10 {
        let sent = std::time::Instant::now();
        assert_eq!(mesh.call("/api/items").await.0, 200);
        // Answered by v1 well before the copy's 5 s: nothing waited for the mirror.
        assert!(sent.elapsed() < std::time::Duration::from_secs(5));
    }
    assert_eq!(v1.calls() - before1, 10);
    let started = std::time::Instant::now();
    while v2.calls() - before2 < 10 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "copies arrive"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let copied =
        "signet_proxy_upstream_mirrors_total{service=\"cart\",route=\"all\",result=\"copied\"}";
    assert_eq!(mesh.frontend.metric(copied).await, 10);

    // Requests with bodies are copied too, body and all, as they stream to the original.
    let writes = mesh.dir.path().join("writes.cedar");
    std::fs::write(
        &writes,
        format!(
            "{}\n@id(\"frontend-writes-cart\")\npermit (principal == Mesh::Workload::\"{}\", \
             action == Mesh::Action::\"POST\", resource == Mesh::Service::\"cart\");\n",
            signet_tests::mesh::policies("/api/*"),
            signet_tests::mesh::FRONTEND
        ),
    )
    .unwrap();
    mesh.cp.meshctl_ok(&[
        "authz",
        "apply",
        "-f",
        writes.to_str().unwrap(),
        "-m",
        "writes",
        "--allow-widening",
    ]);
    let (bytes1, bytes2) = (v1.body_bytes(), v2.body_bytes());
    let body = vec![b'x'; 10_000];
    let mut http = signet_tests::client::Http::h1(mesh.cart_port()).await;
    for _ in 0..5 {
        let sent = std::time::Instant::now();
        let request =
            signet_tests::client::request("POST", "cart", "/api/items", &[], body.clone().into());
        assert_eq!(http.send(request).await.unwrap().status, 200);
        assert!(sent.elapsed() < std::time::Duration::from_secs(5));
    }
    assert_eq!(v1.body_bytes() - bytes1, 50_000);
    let started = std::time::Instant::now();
    while v2.body_bytes() - bytes2 < 50_000 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "copied bodies arrive whole: {} bytes",
            v2.body_bytes() - bytes2
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A body past the copy limit reaches the original whole; its copy is abandoned (the
    // subset never sees a truncated body as a whole one), and counted.
    let big = vec![b'y'; 2 * 1024 * 1024];
    let request = signet_tests::client::request("POST", "cart", "/api/items", &[], big.into());
    assert_eq!(http.send(request).await.unwrap().status, 200);
    assert_eq!(v1.body_bytes() - bytes1, 50_000 + 2 * 1024 * 1024);
    let abandoned =
        "signet_proxy_upstream_mirrors_total{service=\"cart\",route=\"all\",result=\"abandoned\"}";
    assert_eq!(mesh.frontend.metric_reaching(abandoned, 1).await, 1);
    assert_eq!(v2.body_bytes() - bytes2, 50_000);
}

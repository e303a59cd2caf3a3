//! What the offline tools say is what the mesh enforces: a real control plane, three
//! services behind joined proxies, policies that read the caller's service, labels and
//! namespace, and `meshctl authz test --registry` asked about every flow the live proxies
//! decide. Then the gate on `authz apply`, refusing what widens unless allowed.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests: a failure is the test failing"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use signet_tests::app::EchoApp;
use signet_tests::client::Http;
use signet_tests::control::{ControlPlane, workspace_binary};
use signet_tests::mesh::{TD, proxy_toml};
use signet_tests::process::ProxyProcess;

const SERVICES: [&str; 3] = ["frontend", "cart", "payments"];
const METHODS: [&str; 3] = ["GET", "POST", "DELETE"];

fn id(service: &str) -> String {
    format!("spiffe://{TD}/ns/shop/sa/{service}")
}

/// Policies generated from predicates on the caller (its service, labels and namespace) and
/// on the target (its labels), each paired with an action and an effect by a fixed
/// pseudo-random walk, so the set is varied but the same on every run.
fn generated_policies() -> String {
    let callers = [
        r#"principal.service == "frontend""#,
        r#"principal.service == "cart""#,
        r#"principal.hasTag("team") && principal.getTag("team") == "checkout""#,
        r#"!principal.hasTag("team")"#,
        r#"principal.namespace == "shop" && principal.service != "payments""#,
    ];
    let targets = [
        r#"resource.hasTag("tier") && resource.getTag("tier") == "api""#,
        r#"resource.hasTag("tier") && resource.getTag("tier") == "db""#,
        "true",
    ];
    let actions = [
        r#"action in Mesh::Action::"read""#,
        r#"action == Mesh::Action::"POST""#,
        r#"action in Mesh::Action::"write""#,
    ];
    // Only registered shop workloads may connect: an unregistered caller has no service.
    let mut text = String::from(
        "@id(\"registered-shop-connects\")\n\
         permit (principal, action == Mesh::Action::\"connect\", resource)\n\
         when { principal.namespace == \"shop\" && principal.service != \"\" };\n",
    );
    let mut state: u32 = 0x5eed;
    let mut next = |n: usize| {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (state >> 16) as usize % n
    };
    for i in 0..9 {
        let effect = if i % 4 == 3 { "forbid" } else { "permit" };
        text.push_str(&format!(
            "\n@id(\"generated-{i}\")\n{effect} (principal, {}, resource)\nwhen {{ {} && {} }};\n",
            actions[next(actions.len())],
            callers[next(callers.len())],
            targets[next(targets.len())],
        ));
    }
    text
}

/// One service of the test mesh: an echo app behind a joined proxy calling the others.
struct Node {
    name: &'static str,
    proxy: ProxyProcess,
}

async fn start_mesh(dir: &std::path::Path) -> (ControlPlane, EchoApp, Vec<Node>) {
    let cp = ControlPlane::start(
        &dir.join("cp"),
        &["--trust-domain", TD, "--heartbeat-interval", "1s"],
    );
    let app = EchoApp::start().await;
    let binary = workspace_binary("signet-proxy");
    let nodes = SERVICES
        .iter()
        .map(|&name| {
            let others: Vec<&str> = SERVICES.iter().copied().filter(|s| *s != name).collect();
            let toml = proxy_toml(&cp, name, Some(&cp.token(&id(name))), app.addr, &others);
            Node {
                name,
                proxy: ProxyProcess::start(&binary, dir, name, &toml),
            }
        })
        .collect();
    (cp, app, nodes)
}

/// The live decision for `caller` doing `method` on `target`: `Some(true)` for a response
/// from the app, `Some(false)` for the proxy's 403; `None` while the mesh is not ready.
async fn live(caller: &Node, target: &str, method: &str) -> Option<bool> {
    let port = caller.proxy.outbound[target];
    let attempt = async {
        let mut http = Http::h1(port).await;
        let reply = http.call(method, target, "/x").await.ok()?;
        match reply.status.as_u16() {
            200 => Some(true),
            403 if reply.header("x-signet-denied-by").is_some() => Some(false),
            _ => None,
        }
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

/// `meshctl authz test --registry` on `policies`: allowed (exit 0) or denied (exit 2).
fn offline(
    cp: &ControlPlane,
    policies: &std::path::Path,
    caller: &str,
    action: &str,
    target: &str,
) -> bool {
    let out = cp.meshctl(&[
        "authz",
        "test",
        "--registry",
        "--principal",
        &id(caller),
        "--action",
        action,
        "--resource",
        target,
        "--path",
        "/x",
        policies.to_str().unwrap(),
    ]);
    match out.status.code() {
        Some(0) => true,
        Some(2) => false,
        _ => panic!(
            "authz test failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

type Matrix = BTreeMap<(String, String, String), bool>;

/// Every (caller, target, method), live and offline; panics on the first disagreement.
async fn compare(cp: &ControlPlane, nodes: &[Node], policies: &std::path::Path) -> Matrix {
    let mut matrix = Matrix::new();
    for caller in nodes {
        for target in SERVICES.iter().filter(|s| **s != caller.name) {
            let connect = offline(cp, policies, caller.name, "connect", target);
            assert!(
                connect,
                "{} -> {target}: connect is denied offline",
                caller.name
            );
            for method in METHODS {
                let expected = offline(cp, policies, caller.name, method, target);
                let mut got = None;
                for _ in 0..50 {
                    got = live(caller, target, method).await;
                    if got.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let got = got
                    .unwrap_or_else(|| panic!("{} -> {target} {method}: no answer", caller.name));
                assert_eq!(
                    got,
                    expected,
                    "{} -> {target} {method}: the proxy says {got}, `authz test` says {expected}\n{}",
                    caller.name,
                    std::fs::read_to_string(policies).unwrap()
                );
                matrix.insert(
                    (
                        caller.name.to_owned(),
                        target.to_string(),
                        method.to_owned(),
                    ),
                    got,
                );
            }
        }
    }
    matrix
}

/// Writes the generated policies under `dir` and applies them; their file.
fn apply_generated(cp: &ControlPlane, dir: &std::path::Path) -> std::path::PathBuf {
    let policies = dir.join("generated.cedar");
    std::fs::write(&policies, generated_policies()).unwrap();
    cp.meshctl_ok(&[
        "authz",
        "apply",
        "-f",
        policies.to_str().unwrap(),
        "--allow-widening",
    ]);
    policies
}

fn label(cp: &ControlPlane, service: &str, changes: &[&str]) {
    let mut args = vec!["services", "label", service, "-n", "shop"];
    args.extend_from_slice(changes);
    let out = cp.meshctl_ok(&args);
    assert!(out.contains("enforced by 3 of 3 proxies"), "{out}");
}

#[tokio::test]
async fn live_decisions_equal_authz_test_for_every_flow_and_follow_label_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _app, nodes) = start_mesh(dir.path()).await;
    let policies = apply_generated(&cp, dir.path());
    label(&cp, "frontend", &["team=checkout"]);
    label(&cp, "cart", &["tier=api"]);
    label(&cp, "payments", &["tier=db", "team=ledger"]);
    // Every proxy registered: the directory lists all three callers.
    for _ in 0..100 {
        let inventory = cp.meshctl_ok(&["proxies", "list", "-o", "json"]);
        if inventory.matches("spiffe_id").count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = compare(&cp, &nodes, &policies).await;
    assert!(
        before.values().any(|a| *a) && before.values().any(|a| !*a),
        "{before:?}"
    );

    // Labels change while traffic runs: the proxies follow, and so does `authz test`.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let traffic = {
        let running = std::sync::Arc::clone(&running);
        let port = nodes[0].proxy.outbound["cart"];
        tokio::spawn(async move {
            let mut sent = 0u32;
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut http) =
                    tokio::time::timeout(Duration::from_secs(2), Http::h1(port)).await
                {
                    let _ = http.call("GET", "cart", "/x").await;
                    sent += 1;
                }
            }
            sent
        })
    };
    label(&cp, "frontend", &["team-"]);
    label(&cp, "cart", &["tier=db", "team=checkout"]);
    label(&cp, "payments", &["tier=api"]);
    let after = compare(&cp, &nodes, &policies).await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(traffic.await.unwrap() > 0);
    assert_ne!(
        before, after,
        "the label changes changed no decision: the test proves nothing"
    );
}

fn versions(cp: &ControlPlane) -> Vec<serde_json::Value> {
    let out = cp.meshctl_ok(&["authz", "history", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["versions"].as_array().unwrap().clone()
}

const NARROW: &str = r#"
@id("shop-connect")
permit (principal in Mesh::Namespace::"shop", action == Mesh::Action::"connect",
        resource in Mesh::Namespace::"shop");
@id("frontend-reads-api")
permit (principal == Mesh::Workload::"spiffe://mesh.test/ns/shop/sa/frontend",
        action in Mesh::Action::"read", resource == Mesh::Service::"cart")
when { context.path like "/api/*" };
"#;

const WIDE: &str = r#"
@id("admin-open")
permit (principal, action in Mesh::Action::"read", resource)
when { context.path like "/admin/*" };
"#;

#[tokio::test]
async fn a_widening_apply_is_refused_unless_allowed_and_permitted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cp, _app, _nodes) = start_mesh(dir.path()).await;
    let narrow = dir.path().join("narrow.cedar");
    std::fs::write(&narrow, NARROW).unwrap();
    let wide = dir.path().join("wide.cedar");
    std::fs::write(&wide, format!("{NARROW}{WIDE}")).unwrap();
    let file = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    for _ in 0..100 {
        let out = cp.meshctl_ok(&["proxies", "list", "-o", "json"]);
        if out.matches("spiffe_id").count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cp.meshctl_ok(&["authz", "apply", "-f", &file(&narrow), "--allow-widening"]);
    let applied = versions(&cp).len();

    // Not a terminal (stdin is not one here): refused, exit 3, the diff shown first.
    let out = cp.meshctl(&["authz", "apply", "-f", &file(&wide)]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stdout.contains("+ WIDENED") && stdout.contains("GET /admin/"),
        "{stdout}"
    );
    assert!(stderr.contains("--allow-widening"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(versions(&cp).len(), applied, "a refused change was stored");

    // A client that skips its own diff meets the control plane's.
    let body = serde_json::json!({
        "files": [{ "name": "wide.cedar", "text": format!("{NARROW}{WIDE}") }],
        "wait_seconds": 0,
    });
    let reply = cp
        .rest(
            "POST",
            "/v1/policies",
            None,
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(
        reply.json["error"]
            .as_str()
            .unwrap()
            .contains("widens access"),
        "{reply:?}"
    );
    assert_eq!(versions(&cp).len(), applied);

    // An operator may apply, but opening access takes `policy.apply_widening`.
    const DEPLOYER: &str = "spiffe://mesh.test/signet/operator/deployer";
    cp.add_operator_policies(&format!(
        r#"
@id("deployer-applies")
permit (principal == Signet::Operator::"{DEPLOYER}",
        action in [Signet::Action::"policy.apply", Signet::Action::"read"], resource);
"#
    ));
    let deployer = cp.enroll(dir.path(), DEPLOYER);
    let out = cp.meshctl_as(
        &deployer,
        &["authz", "apply", "-f", &file(&wide), "--allow-widening"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("may not `policy.apply_widening`"),
        "{stderr}"
    );
    assert_eq!(versions(&cp).len(), applied);

    // The admin may; history and the audit record the summary.
    let out = cp.meshctl_ok(&["authz", "apply", "-f", &file(&wide), "--allow-widening"]);
    assert!(out.contains("control plane's gate: +"), "{out}");
    let history = versions(&cp);
    assert!(history[0]["widened"].as_u64().unwrap() > 0, "{history:?}");
    let table = cp.meshctl_ok(&["authz", "history"]);
    assert!(table.contains("widened /"), "{table}");

    // Narrowing applies without a flag; so does a rollback that narrows. A rollback that
    // widens meets the same gate.
    let out = cp.meshctl(&["authz", "apply", "-f", &file(&narrow)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let widening_version = history[0]["version"].as_u64().unwrap().to_string();
    let out = cp.meshctl(&["authz", "rollback", &widening_version]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cp.meshctl(&["authz", "rollback", &widening_version, "--allow-widening"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The control plane's own signed chain records each version with its gate summary.
    let chain = cp.data_dir.join("audit").join("control-plane");
    let mut found = false;
    for _ in 0..50 {
        found = std::fs::read_dir(&chain).unwrap().any(|f| {
            std::fs::read_to_string(f.unwrap().path()).is_ok_and(|text| {
                text.lines()
                    .any(|l| l.contains("\"widened\":") && l.contains("\"version\""))
            })
        });
        if found {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        found,
        "no policy record with its gate summary in {}",
        chain.display()
    );
}

/// A malformed entry in what the control plane sent (here: the configuration the proxy
/// kept, edited while it was down, then loaded at start with the control plane away) is
/// refused by its part and counted, never skipped: the parts that convert still apply.
#[tokio::test]
async fn a_malformed_entry_is_refused_and_counted_and_the_rest_applies() {
    use prost::Message as _;
    let dir = tempfile::tempdir().unwrap();
    let (mut cp, app, mut nodes) = start_mesh(dir.path()).await;
    apply_generated(&cp, dir.path());
    label(&cp, "cart", &["tier=api"]);
    let kept = dir.path().join("cart-state").join("config.pb");
    let mut config = signet_cp::api::v1::ProxyConfig::default();
    for _ in 0..100 {
        config = signet_cp::api::v1::ProxyConfig::decode(
            std::fs::read(&kept).unwrap_or_default().as_slice(),
        )
        .unwrap_or_default();
        if config.workloads.len() == 3 && !config.labels.is_empty() && config.deny.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(config.workloads.len(), 3, "{config:?}");
    let version = config.policies.as_ref().unwrap().version;
    assert_eq!(cp.stop(), Some(0));
    let cart = nodes.remove(1);
    assert_eq!(cart.name, "cart");
    cart.proxy.terminate();

    config
        .deny
        .get_or_insert_default()
        .serials
        .push("not-hex".into());
    config.workloads[0].labels.push(signet_cp::api::v1::Label {
        key: "Not A Key".into(),
        value: "x".into(),
    });
    std::fs::write(&kept, config.encode_to_vec()).unwrap();
    let toml = proxy_toml(&cp, "cart", None, app.addr, &["frontend", "payments"]);
    let proxy = ProxyProcess::start(&workspace_binary("signet-proxy"), dir.path(), "cart", &toml);
    for part in ["deny", "workloads"] {
        let series = format!("signet_proxy_reload_failures_total{{source=\"{part}\"}}");
        assert_eq!(proxy.metric_reaching(&series, 1).await, 1, "{series}");
    }
    // The policies converted and are enforced.
    assert_eq!(
        proxy
            .metric_reaching("signet_proxy_policy_version", version)
            .await,
        version
    );
    nodes.push(Node {
        name: "cart",
        proxy,
    });
}

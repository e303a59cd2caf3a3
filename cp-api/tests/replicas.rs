//! Two `signet-cp` replicas on one real PostgreSQL database: the cart's proxy follows one,
//! the frontend's the other. Each replica serves the endpoints the other registered (the
//! registry is shared through leases in the store), what an operator does through one is
//! enforced by proxies connected to the other (the store's change feed), and a join token
//! minted on one is redeemable exactly once across both. Both sign with the one CA the
//! database holds, sealed under the key-encryption key each is given.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is the test failing"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use signet_tests::app::EchoApp;
use signet_tests::client::Http;
use signet_tests::control::{ControlPlane, workspace_binary};
use signet_tests::mesh::{CART, FRONTEND, TD, policies, proxy_toml};
use signet_tests::postgres::Postgres;
use signet_tests::process::ProxyProcess;

/// The operator's admin token, made by the first replica: the one thing an operator copies
/// to the others (everything else, the CA included, they read from the database).
fn share_admin_token(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("admin.token"), to.join("admin.token")).unwrap();
}

/// A replica's arguments: the shared database and KEK, the test trust domain, heartbeats
/// each second, then `extra`.
fn replica_args<'a>(url: &'a str, kek: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--store",
        url,
        "--ca-kek-file",
        kek,
        "--trust-domain",
        TD,
        "--heartbeat-interval",
        "1s",
    ];
    args.extend_from_slice(extra);
    args
}

/// A proxy's configuration that joins with a token from `first` and lists every replica
/// (`all`, comma-separated) as its control plane.
fn joined_to_all(
    first: &ControlPlane,
    all: &str,
    service: &str,
    id: &str,
    upstreams: &[&str],
    app: std::net::SocketAddr,
) -> String {
    proxy_toml(first, service, Some(&first.token(id)), app, upstreams).replace(
        &format!("address = \"{}\"", first.grpc),
        &format!("address = \"{all}\""),
    )
}

/// Applies, through `cp`, policies letting the frontend read `read_paths` (a new version
/// named `message`).
fn apply_through(cp: &ControlPlane, dir: &Path, read_paths: &str, message: &str) {
    let file = dir.join(format!("{message}.cedar"));
    std::fs::write(&file, policies(read_paths)).unwrap();
    cp.meshctl_ok(&[
        "authz",
        "apply",
        "-f",
        file.to_str().unwrap(),
        "-m",
        message,
        "--allow-widening",
    ]);
}

async fn status(port: std::net::SocketAddr, path: &str) -> u16 {
    answer(port, path).await.0
}

/// The status of a GET, and the proxy's reason (`x-signet-error`) when it answered itself;
/// 0 and "timeout" when nothing answered within 5 s.
async fn answer(port: std::net::SocketAddr, path: &str) -> (u16, String) {
    let attempt = async {
        let mut http = Http::h1(port).await;
        let reply = http.get("cart", path, &[]).await;
        let reason = reply
            .headers
            .get("x-signet-error")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (reply.status.as_u16(), reason)
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .unwrap_or((0, "timeout".to_owned()))
}

async fn wait_for(port: std::net::SocketAddr, path: &str, want: u16) -> Duration {
    let started = Instant::now();
    loop {
        let got = status(port, path).await;
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{path}: {got}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_replicas_share_the_registry_and_what_either_applies() {
    let server = Postgres::start();
    let url = server.database();
    let dir = tempfile::tempdir().unwrap();
    let kek = server.kek_file();
    let args = replica_args(&url, &kek, &[]);
    let a = ControlPlane::start(&dir.path().join("a"), &args);
    share_admin_token(&dir.path().join("a"), &dir.path().join("b"));
    let mut b = ControlPlane::start(&dir.path().join("b"), &args);

    // Policies applied through A; the cart joins B with a token minted on A, the frontend
    // joins A.
    let file = dir.path().join("v1.cedar");
    std::fs::write(&file, policies("/api/*")).unwrap();
    a.meshctl_ok(&[
        "authz",
        "apply",
        "-f",
        file.to_str().unwrap(),
        "-m",
        "first",
        "--allow-widening",
    ]);
    let app = EchoApp::start().await;
    let proxy = workspace_binary("signet-proxy");
    let cart_token = a.token(CART);
    let _cart = ProxyProcess::start(
        &proxy,
        dir.path(),
        "cart",
        &proxy_toml(&b, "cart", Some(&cart_token), app.addr, &[]),
    );
    let frontend = ProxyProcess::start(
        &proxy,
        dir.path(),
        "frontend",
        &proxy_toml(
            &a,
            "frontend",
            Some(&a.token(FRONTEND)),
            app.addr,
            &["cart"],
        ),
    );
    let to_cart = frontend.outbound["cart"];
    // The frontend's proxy learns from A the cart's endpoint registered at B.
    let took = wait_for(to_cart, "/api/items", 200).await;
    eprintln!("the cart, registered at B, was reachable through A after {took:?}");
    assert_eq!(status(to_cart, "/admin").await, 403);
    for replica in [&a, &b] {
        let proxies = replica.meshctl_ok(&["proxies", "list", "-o", "json"]);
        assert!(
            proxies.contains(CART) && proxies.contains(FRONTEND),
            "every replica lists every proxy: {proxies}"
        );
        // And every replica, alive, this one marked.
        let status = replica.meshctl_ok(&["status"]);
        assert_eq!(status.matches(" alive").count(), 2, "{status}");
        assert_eq!(status.matches("alive (this one)").count(), 1, "{status}");
        assert!(status.contains(&replica.grpc.to_string()), "{status}");
    }

    // A wider version applied on A reaches B's proxies through the change feed.
    std::fs::write(&file, policies("/*")).unwrap();
    a.meshctl_ok(&[
        "authz",
        "apply",
        "-f",
        file.to_str().unwrap(),
        "-m",
        "wider",
        "--allow-widening",
    ]);
    let took = wait_for(to_cart, "/admin", 200).await;
    eprintln!("applied on A, enforced by the cart's proxy (on B) after {took:?}");
    let history = b.meshctl_ok(&["authz", "history", "-o", "json"]);
    assert!(history.contains("\"wider\""), "{history}");

    // Traffic settings applied on B are what A serves too.
    let traffic = dir.path().join("traffic.yaml");
    std::fs::write(
        &traffic,
        "services:\n  - service: cart\n    routes:\n      - name: all\n        timeout: 2s\n",
    )
    .unwrap();
    b.meshctl_ok(&["traffic", "apply", "-f", traffic.to_str().unwrap()]);
    let started = Instant::now();
    loop {
        let got = a.meshctl_ok(&["traffic", "get"]);
        if got.contains("2s") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{got}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The cart's token, redeemed through B, is spent for A too.
    let out = a.meshctl(&[
        "identity",
        "issue",
        "--spiffe-id",
        CART,
        "--join-token",
        &cart_token,
        "--out",
        dir.path().join("again").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already"), "{stderr}");

    // Each singleton duty has one holder among the two.
    let shown = a.meshctl_ok(&["status"]);
    assert_eq!(
        shown.matches(" held by ").count(),
        signet_cp::server::duties::ALL.len(),
        "{shown}"
    );
    assert!(!shown.contains("not held"), "{shown}");

    // A CA rotation started on B: A takes the staged roots in from the store and pushes
    // them to its proxy, the duty's holder promotes once both proxies (one per replica)
    // acknowledged them, well before the timeout for proxies that never do, and both
    // replicas then agree on the active and the retiring root. Traffic never stops.
    let roots = |cp: &ControlPlane| {
        let status: serde_json::Value =
            serde_json::from_str(&cp.meshctl_ok(&["ca", "status", "-o", "json"])).unwrap();
        let roots: Vec<(String, String)> = status["roots"]
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
        (roots, status["rotation"].is_null())
    };
    let (before, idle) = roots(&a);
    assert!(idle && before.len() == 1, "{before:?}");
    b.meshctl_ok(&["ca", "rotate"]);
    let started = Instant::now();
    loop {
        let (now_a, idle_a) = roots(&a);
        let (now_b, idle_b) = roots(&b);
        if idle_a && idle_b && now_a.len() == 2 && now_a == now_b {
            let retiring: Vec<_> = now_a.iter().filter(|(_, s)| s == "retiring").collect();
            assert_eq!(retiring.len(), 1, "{now_a:?}");
            assert_eq!(retiring[0].0, before[0].0, "the old root retires");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not promoted everywhere: A {now_a:?} B {now_b:?}"
        );
        assert_eq!(
            status(to_cart, "/admin").await,
            200,
            "traffic during the rotation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "a rotation started on B was promoted on both after {:?}",
        started.elapsed()
    );
    assert_eq!(status(to_cart, "/admin").await, 200);

    // A replica given another key-encryption key cannot open the CA: one line, exit 1.
    let other_kek = dir.path().join("other.kek");
    std::fs::write(&other_kek, [9u8; 32]).unwrap();
    std::fs::set_permissions(
        &other_kek,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let refused = std::process::Command::new(workspace_binary("signet-cp"))
        .arg("--data-dir")
        .arg(dir.path().join("c"))
        .args(["--store", &url, "--ca-kek-file"])
        .arg(&other_kek)
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("another key-encryption key"), "{stderr}");
    // And without one at all, on a shared database, it says what to give it.
    let refused = std::process::Command::new(workspace_binary("signet-cp"))
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .args(["--store", &url])
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--ca-kek-file"), "{stderr}");

    // B restarts: it reads the registrations from the store and serves them at once, but
    // the frontend, connected to A, is not B's to wait for or count as its own.
    b.stop();
    b.restart();
    let listed: serde_json::Value =
        serde_json::from_str(&b.meshctl_ok(&["proxies", "list", "-o", "json"])).unwrap();
    let frontend_entry = listed["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["service"] == "frontend")
        .cloned()
        .unwrap_or_default();
    assert_eq!(frontend_entry["connected_here"], false, "{listed}");
    wait_for(to_cart, "/admin", 200).await;

    // A deny through A: the cart's proxy (on B) refuses the frontend's identity.
    a.meshctl_ok(&[
        "identity",
        "deny",
        "--spiffe-id",
        FRONTEND,
        "--reason",
        "test",
        "--wait",
        "0s",
    ]);
    let started = Instant::now();
    while status(to_cart, "/api/items").await == 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the deny never reached B's proxies"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Proxies given both replicas' addresses fail over when the one they follow is killed:
/// traffic between them never stops, and each change applied through the surviving replica
/// reaches them within seconds, whichever replica they had started on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_fail_over_between_replicas_without_a_failed_request() {
    let server = Postgres::start();
    let url = server.database();
    let dir = tempfile::tempdir().unwrap();
    let kek = server.kek_file();
    let args = replica_args(&url, &kek, &[]);
    let mut a = ControlPlane::start(&dir.path().join("a"), &args);
    share_admin_token(&dir.path().join("a"), &dir.path().join("b"));
    let mut b = ControlPlane::start(&dir.path().join("b"), &args);
    let both = format!("{},{}", a.grpc, b.grpc);
    let toml = |service: &str, id: &str, upstreams: &[&str], app| {
        joined_to_all(&a, &both, service, id, upstreams, app)
    };
    let apply = |cp: &ControlPlane, read_paths: &str, message: &str| {
        apply_through(cp, dir.path(), read_paths, message);
    };
    apply(&a, "/api/*", "first");
    let app = EchoApp::start().await;
    let proxy = workspace_binary("signet-proxy");
    let _cart = ProxyProcess::start(
        &proxy,
        dir.path(),
        "cart",
        &toml("cart", CART, &[], app.addr),
    );
    let frontend = ProxyProcess::start(
        &proxy,
        dir.path(),
        "frontend",
        &toml("frontend", FRONTEND, &["cart"], app.addr),
    );
    let to_cart = frontend.outbound["cart"];
    wait_for(to_cart, "/api/items", 200).await;

    // Traffic runs all along; not one request may fail.
    let load = Load::start(to_cart);
    let started = load.started;

    // A dies: everything that followed it moves to B, which serves the next change.
    let killed = Instant::now();
    eprintln!("killing A at {:?}", started.elapsed());
    a.kill();
    apply(&b, "/*", "while-a-is-down");
    wait_for(to_cart, "/admin", 200).await;
    eprintln!(
        "A killed: a change through B was enforced {:?} after the kill",
        killed.elapsed()
    );
    // A comes back and B dies: everyone moves back.
    a.restart();
    let killed = Instant::now();
    eprintln!("killing B at {:?}", started.elapsed());
    b.kill();
    apply(&a, "/api/*", "while-b-is-down");
    wait_for(to_cart, "/admin", 403).await;
    eprintln!(
        "B killed: a change through A was enforced {:?} after the kill",
        killed.elapsed()
    );

    // And on, a while after.
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.stop_without_failures("the failovers").await;
}

/// A request to `/api/items` every 10 ms until stopped; any answer but 200 is a failure,
/// kept with when it happened and the proxy's reason for it, if it gave one.
struct Load {
    started: Instant,
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failures: std::sync::Arc<std::sync::Mutex<Vec<(Duration, u16, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(target: std::net::SocketAddr) -> Self {
        let started = Instant::now();
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failures = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = {
            let (running, sent, failures) = (running.clone(), sent.clone(), failures.clone());
            tokio::spawn(async move {
                while running.load(std::sync::atomic::Ordering::Relaxed) {
                    let (got, reason) = answer(target, "/api/items").await;
                    if got != 200 {
                        failures
                            .lock()
                            .unwrap()
                            .push((started.elapsed(), got, reason));
                    }
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        Self {
            started,
            running,
            sent,
            failures,
            task,
        }
    }

    /// Stops it; more than 100 requests were sent and none failed.
    async fn stop_without_failures(self, during: &str) {
        self.running
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap();
        let sent = self.sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(sent > 100, "{sent} requests");
        let failures = self.failures.lock().unwrap().clone();
        assert!(
            failures.is_empty(),
            "requests failed during {during} (of {sent}; time since the load began, status, \
             the proxy's reason): {failures:?}"
        );
    }
}

/// Records in a spool directory, and the highest record number.
fn spooled(dir: &Path) -> (usize, u64) {
    let mut count = 0;
    let mut last = 0;
    for file in signet_audit::spool::segment_files(dir).unwrap_or_default() {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            if let Ok(record) = serde_json::from_str::<signet_audit::record::Record>(line) {
                count += 1;
                last = last.max(record.seq);
            }
        }
    }
    (count, last)
}

/// The replica (by index) the proxy of `service` is connected to, once one says so.
async fn follower_of(replicas: &[&ControlPlane], service: &str) -> usize {
    let started = Instant::now();
    loop {
        for (i, cp) in replicas.iter().enumerate() {
            let out = cp.meshctl(&["proxies", "list", "-o", "json"]);
            let Ok(list) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
                continue;
            };
            let here = list["proxies"].as_array().into_iter().flatten().any(|p| {
                p["service"] == service && p["connected_here"] == serde_json::Value::Bool(true)
            });
            if here {
                return i;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no replica serves {service}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Three replicas; the one the cart's proxy follows is killed with SIGKILL under traffic,
/// issuance (proxies renew every 3 s, and operators issue through each survivor) and audit
/// shipping. No request fails, both proxies are served by a survivor
/// within seconds, a policy applied through a survivor during the failover is enforced,
/// issuance goes on through both survivors, and every proxy's audit chain is in the
/// database whole and exactly once (no record lost, none kept twice), and the survivor's
/// own copy of it verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_lose_one_to_sigkill_and_lose_no_request_and_no_audit_record() {
    let server = Postgres::start();
    let url = server.database();
    let dir = tempfile::tempdir().unwrap();
    let kek = server.kek_file();
    // Proxies renew every 3 s: issuance goes on through the failover.
    let args = replica_args(&url, &kek, &["--svid-ttl", "6s"]);
    let a = ControlPlane::start(&dir.path().join("a"), &args);
    share_admin_token(&dir.path().join("a"), &dir.path().join("b"));
    share_admin_token(&dir.path().join("a"), &dir.path().join("c"));
    let b = ControlPlane::start(&dir.path().join("b"), &args);
    let c = ControlPlane::start(&dir.path().join("c"), &args);
    let mut replicas = [a, b, c];
    let all = replicas
        .iter()
        .map(|r| r.grpc.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let first = &replicas[0];
    let toml = |service: &str, id: &str, upstreams: &[&str], app| {
        joined_to_all(first, &all, service, id, upstreams, app)
    };
    let apply = |cp: &ControlPlane, read_paths: &str, message: &str| {
        apply_through(cp, dir.path(), read_paths, message);
    };
    apply(first, "/api/*", "first");
    let app = EchoApp::start().await;
    let proxy = workspace_binary("signet-proxy");
    let _cart = ProxyProcess::start(
        &proxy,
        dir.path(),
        "cart",
        &toml("cart", CART, &[], app.addr),
    );
    let frontend = ProxyProcess::start(
        &proxy,
        dir.path(),
        "frontend",
        &toml("frontend", FRONTEND, &["cart"], app.addr),
    );
    let to_cart = frontend.outbound["cart"];
    wait_for(to_cart, "/api/items", 200).await;

    let load = Load::start(to_cart);
    let started = load.started;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The replica the cart's proxy follows dies without a goodbye.
    let victim = follower_of(&replicas.iter().collect::<Vec<_>>(), "cart").await;
    let killed = Instant::now();
    replicas[victim].kill();
    let survivors: Vec<&ControlPlane> = replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, r)| r)
        .collect();
    eprintln!("killed replica {victim} at {:?}", started.elapsed());
    apply(survivors[0], "/*", "during-the-failover");
    wait_for(to_cart, "/admin", 200).await;
    eprintln!(
        "a change through a survivor was enforced {:?} after the kill",
        killed.elapsed()
    );
    let now_on = follower_of(&survivors, "cart").await;
    let front_on = follower_of(&survivors, "frontend").await;
    eprintln!(
        "both proxies served by survivors ({now_on}, {front_on}) {:?} after the kill",
        killed.elapsed()
    );
    // Issuance goes on through each survivor.
    for (n, cp) in survivors.iter().enumerate() {
        let token = cp.token(CART);
        cp.meshctl_ok(&[
            "identity",
            "issue",
            "--spiffe-id",
            CART,
            "--join-token",
            &token,
            "--out",
            dir.path().join(format!("issued-{n}")).to_str().unwrap(),
        ]);
    }
    // Long enough after the kill for each proxy to renew its SVID at a survivor.
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(killed.elapsed())).await;
    load.stop_without_failures("the failover").await;

    // Both proxies renewed through the survivors.
    let killed_at = std::time::SystemTime::now() - killed.elapsed();
    let killed_ms = killed_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let renewed = server.query(
        &url,
        &format!(
            "SELECT count(DISTINCT spiffe_id) FROM certificates WHERE kind = 'renew' \
             AND issued_at > {killed_ms}"
        ),
    );
    assert_eq!(
        renewed.trim(),
        "2",
        "proxies renewed after the kill: {renewed}"
    );

    // The cart's chain (its proxy decides every request; the frontend's decides none), as
    // it wrote it, is in the database once and whole, what the dead replica received
    // included.
    for service in ["cart"] {
        let spool = dir.path().join(format!("{service}-state")).join("audit");
        let instance = std::fs::read_to_string(spool.join("writer-instance")).unwrap();
        let id = if service == "cart" { CART } else { FRONTEND };
        let writer = format!("{id}#{}", instance.trim());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (records, last) = spooled(&spool);
            let row = server.query(
                &url,
                &format!(
                    "SELECT count(*), count(DISTINCT seq), COALESCE(max(seq), 0), \
                     (SELECT seq FROM audit_chains WHERE writer = '{writer}') \
                     FROM audit_records WHERE writer = '{writer}'"
                ),
            );
            let kept: Vec<u64> = row
                .trim()
                .split('|')
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            assert!(records > 50, "{service} recorded only {records} decisions");
            if kept == [records as u64, records as u64, last, last] && records as u64 == last {
                eprintln!("{service}: {records} records, each kept once");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{service}: the proxy wrote {records} records through {last}; the database \
                 has (rows, distinct, last, tip) {kept:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    // The survivor now receiving the cart's chain caught up its own copy from the database
    // (what the dead replica had received) and the copy verifies.
    let received = survivors[now_on].data_dir.join("audit").join("received");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = survivors[now_on].meshctl(&[
            "audit",
            "verify",
            "--data-dir",
            received.to_str().unwrap(),
        ]);
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            break;
        }
        for bad in [
            "MALFORMED",
            "MISSING",
            "ALTERED",
            "REORDERED",
            "DUPLICATE",
            "BAD CHECKPOINT",
        ] {
            assert!(!report.contains(bad), "{report}");
        }
        assert!(Instant::now() < deadline, "{report}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A control plane on SQLite with history, a registry and shipped audit chains moves to
/// PostgreSQL with `signet-cp migrate`: the copy is checked against its source, a replica
/// started on the new database (with the KEK that sealed the CA) serves the same policy
/// history, registry, CA and audit records; a second migrate into the same database and
/// bad arguments are one line each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_control_plane_moves_to_postgres_with_its_state() {
    let server = Postgres::start();
    let url = server.database();
    let mut mesh = signet_tests::mesh::Mesh::start(&[]).await;
    let file = mesh.dir.path().join("v2.cedar");
    std::fs::write(&file, policies("/*")).unwrap();
    mesh.cp.meshctl_ok(&[
        "authz",
        "apply",
        "-f",
        file.to_str().unwrap(),
        "-m",
        "wider",
        "--allow-widening",
    ]);
    mesh.wait_for(200, "/admin", Duration::from_secs(10)).await;
    for _ in 0..20 {
        assert_eq!(mesh.call("/api/items").await.0, 200);
    }
    // Until the cart's proxy has shipped what it recorded.
    let tail = |cp: &ControlPlane| {
        let out = cp.meshctl_ok(&["audit", "tail", "-o", "json", "-n", "10000"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["records"].as_array().unwrap().clone()
    };
    let started = Instant::now();
    while tail(&mesh.cp).len() < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "nothing shipped"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let history = mesh.cp.meshctl_ok(&["authz", "history", "-o", "json"]);
    let ca = |cp: &ControlPlane| {
        let v: serde_json::Value =
            serde_json::from_str(&cp.meshctl_ok(&["ca", "status", "-o", "json"])).unwrap();
        v["roots"].clone()
    };
    let roots = ca(&mesh.cp);
    let old_dir = mesh.cp.data_dir.clone();
    assert_eq!(mesh.cp.stop(), Some(0));

    let migrate = |to: &str| {
        std::process::Command::new(workspace_binary("signet-cp"))
            .args(["migrate", "--from"])
            .arg(&old_dir)
            .args(["--to", to])
            .output()
            .unwrap()
    };
    let out = migrate(&url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("the copy matches"), "{stdout}");
    assert!(stdout.contains("copied  audit_records"), "{stdout}");
    assert!(stdout.contains("ca.kek"), "{stdout}");
    eprintln!("{stdout}");

    // Never on top of state.
    let again = migrate(&url);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("empty database"), "{stderr}");
    let bad = std::process::Command::new(workspace_binary("signet-cp"))
        .args(["migrate", "--from", "/nonexistent/signet.db", "--to", &url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // A replica on the new database, with the KEK that sealed the CA.
    let new_dir = mesh.dir.path().join("on-postgres");
    share_admin_token(&old_dir, &new_dir);
    let kek = old_dir.join("ca.kek");
    let moved = ControlPlane::start(
        &new_dir,
        &["--store", &url, "--ca-kek-file", kek.to_str().unwrap()],
    );
    assert_eq!(moved.trust_domain, TD);
    let moved_history = moved.meshctl_ok(&["authz", "history", "-o", "json"]);
    assert_eq!(moved_history, history);
    assert_eq!(ca(&moved), roots, "the same CA");
    let services = moved.meshctl_ok(&["services", "list", "-o", "json"]);
    assert!(services.contains("\"cart\""), "{services}");
    assert!(tail(&moved).len() >= 20, "the audit records came along");
    // And it issues from that CA: a new proxy joins it and is trusted by the cart.
    let token = moved.token(FRONTEND);
    let out = moved.meshctl(&[
        "identity",
        "issue",
        "--spiffe-id",
        FRONTEND,
        "--join-token",
        &token,
        "--out",
        mesh.dir.path().join("issued").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The check after a copy finds a record that differs from its source (here, altered in
/// the target behind the copy's back) and names its chain.
#[tokio::test]
async fn the_check_after_a_migration_finds_an_altered_record() {
    use signet_cp::server::store::{SqlStore, Store as _, migrate};
    let server = Postgres::start();
    let url = server.database();
    let dir = tempfile::tempdir().unwrap();
    let kek = signet_cp::server::seal::Kek::from_bytes(&[5; 32]);
    let from = std::sync::Arc::new(SqlStore::open(&dir.path().join("s.db")).await.unwrap());
    // A CA to move, and a shipped chain of three linked records.
    let store: std::sync::Arc<dyn signet_cp::server::store::Store> = from.clone();
    signet_cp::server::ca::Ca::open(
        store,
        std::sync::Arc::new(kek),
        &dir.path().join("ca"),
        &signet_spiffe::TrustDomain::new(TD).unwrap(),
        (
            signet_ca::SvidProfile::default(),
            signet_cp::server::jwt_keys::JwtProfile::default(),
        ),
    )
    .await
    .unwrap();
    let mut prev = signet_audit::record::GENESIS.to_owned();
    let mut rows = Vec::new();
    for seq in 1..=3u64 {
        let record = signet_audit::record::Record {
            seq,
            prev: prev.clone(),
            time: seq,
            writer: "w".to_owned(),
            event: signet_audit::record::Event::Gap(signet_audit::record::Gap {
                first: 0,
                last: 0,
                count: 1,
                reason: "queue-full".to_owned(),
            }),
        };
        let line = serde_json::to_string(&record).unwrap();
        prev = signet_audit::record::hash_line(line.as_bytes());
        rows.push(signet_cp::server::store::AuditRow {
            id: 0,
            writer: "w".to_owned(),
            seq,
            time: seq,
            kind: "gap".to_owned(),
            decision: None,
            action: None,
            principal: None,
            resource: None,
            path: None,
            policies: None,
            candidate: None,
            line,
        });
    }
    from.index_audit(rows).await.unwrap();
    let to = SqlStore::open_url(&url).await.unwrap();
    let copied = migrate::copy(&from, &to).await.unwrap();
    let checked = migrate::check(&from, &to, &copied).await.unwrap();
    assert_eq!((checked.audit_writers, checked.audit_records), (1, 3));
    server.query(
        &url,
        "UPDATE audit_records SET line = replace(line, '\"count\":1', '\"count\":2') WHERE seq = 2",
    );
    let found = migrate::check(&from, &to, &copied).await.unwrap_err();
    assert!(found.contains("`w`"), "{found}");
}

/// The store over TLS: `sslmode=verify-full` against the database server's CA connects
/// (and the server takes nothing but TLS), while a server certificate from another CA is
/// refused, one line, before anything is written.
#[tokio::test]
async fn the_store_reaches_postgres_over_verified_tls() {
    use signet_spiffe::test_pki::{LeafSpec, TestCa};
    let db_ca = TestCa::new("db.test");
    let (chain, key) = db_ca.issue(&LeafSpec {
        uris: Vec::new(),
        dns: vec!["localhost".to_owned()],
        ..LeafSpec::for_id("spiffe://db.test/postgres")
    });
    let server = Postgres::start_tls(&TestCa::chain_pem(&chain), &key.to_pkcs8_pem());
    let url = server.database().replace("@127.0.0.1:", "@localhost:");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("db-ca.pem");
    std::fs::write(&root, db_ca.root_pem()).unwrap();
    let verified = format!("{url}?sslmode=verify-full&sslrootcert={}", root.display());
    let store = signet_cp::server::store::SqlStore::open_url(&verified).await;
    assert!(store.is_ok(), "{:?}", store.err());
    // The server takes TLS only: a plain connection is turned away.
    let plain =
        signet_cp::server::store::SqlStore::open_url(&format!("{url}?sslmode=disable")).await;
    assert!(plain.is_err(), "a plain connection was accepted");

    // A control plane pointed at it with another CA's root refuses it: one line, exit 1,
    // nothing left in its data directory.
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, TestCa::new("other.test").root_pem()).unwrap();
    let data = dir.path().join("cp");
    let refused = std::process::Command::new(workspace_binary("signet-cp"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--ca-kek-file", &server.kek_file()])
        .env(
            "SIGNET_CP_STORE",
            format!("{url}?sslmode=verify-full&sslrootcert={}", other.display()),
        )
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .args(["--metrics-listen", "off"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!data.join("ca.kek").exists() && !data.join("signet.db").exists());
}

async fn ready(cp: &ControlPlane) -> u16 {
    let attempt = async {
        let mut http = Http::h1(cp.metrics).await;
        http.get("cp", "/ready", &[]).await.status.as_u16()
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .unwrap_or(0)
}

async fn wait_ready(cp: &ControlPlane, want: u16) -> Duration {
    let started = Instant::now();
    loop {
        if ready(cp).await == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "/ready never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PostgreSQL stops and comes back: the control plane says it is not ready, proxies keep
/// serving their last configuration without a failed request, issuance fails with a
/// retriable status, and everything recovers with no operator action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopping_and_coming_back_needs_no_operator() {
    let server = Postgres::start();
    let url = server.database();
    let kek = server.kek_file();
    let mesh = signet_tests::mesh::Mesh::start(&["--store", &url, "--ca-kek-file", &kek]).await;
    assert_eq!(ready(&mesh.cp).await, 200);
    let token = mesh.cp.token(CART);
    let issue = |to: &str| {
        mesh.cp.meshctl(&[
            "identity",
            "issue",
            "--spiffe-id",
            CART,
            "--join-token",
            &token,
            "--out",
            mesh.dir.path().join(to).to_str().unwrap(),
        ])
    };

    server.stop();
    let took = wait_ready(&mesh.cp, 503).await;
    eprintln!("the database stopped: not ready after {took:?}");
    for _ in 0..20 {
        assert_eq!(mesh.call("/api/items").await.0, 200, "traffic goes on");
    }
    let refused = issue("during");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("join token store"),
        "the store named as the cause: {stderr}"
    );
    // Operators' tokens are checked against the database: their calls fail, naming it.
    let history = mesh.cp.meshctl(&["authz", "history"]);
    let stderr = String::from_utf8_lossy(&history.stderr);
    assert!(!history.status.success());
    assert!(stderr.contains("store"), "{stderr}");

    server.restart();
    let took = wait_ready(&mesh.cp, 200).await;
    eprintln!("the database came back: ready after {took:?}");
    // The token the outage refused is still good, and changes flow again.
    let issued = issue("after");
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let file = mesh.dir.path().join("after.cedar");
    std::fs::write(&file, policies("/*")).unwrap();
    mesh.cp.meshctl_ok(&[
        "authz",
        "apply",
        "-f",
        file.to_str().unwrap(),
        "-m",
        "after the outage",
        "--allow-widening",
    ]);
    mesh.wait_for(200, "/admin", Duration::from_secs(10)).await;
}

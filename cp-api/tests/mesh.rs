//! End to end: a real `signet-cp`, real `signet-proxy` processes that join it with tokens, an
//! echo app behind the cart's proxy, and `meshctl` driving it, all on 127.0.0.1.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is the test failing"
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use signet_tests::client::{Http, tls_request};
use signet_tests::control::{ControlPlane, workspace_binary};
use signet_tests::mesh::{CART, FRONTEND, Mesh, TD, identity_serial, policies, proxy_toml};
use signet_tests::process::ProxyProcess;

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn proxies_join_with_one_time_tokens_and_restart_without_them() {
    let mesh = Mesh::start(&[]).await;
    let (_, identity) = mesh.cart.admin_get("/identity").await;
    assert!(identity.contains(CART), "{identity}");
    // The key and SVID are kept 0600 so a restart renews instead of re-joining.
    let state = mesh.dir.path().join("cart-state");
    assert_eq!(mode(&state.join("key.pem")), 0o600);
    assert_eq!(mode(&state.join("svid.pem")), 0o600);
    // The env file and the admin token are the operator's alone.
    assert_eq!(mode(&mesh.cp.data_dir.join("meshctl.env")), 0o600);
    assert_eq!(mode(&mesh.cp.data_dir.join("admin.token")), 0o600);

    // A token is good once: a second proxy presenting the cart's token is refused.
    let token = mesh.cp.token(CART);
    let first = ProxyProcess::start(
        &workspace_binary("signet-proxy"),
        mesh.dir.path(),
        "cart2",
        &proxy_toml(&mesh.cp, "cart", Some(&token), mesh.app.addr, &[])
            .replace("cart-state", "cart2-state"),
    );
    drop(first);
    let reuse = mesh.dir.path().join("cart3.toml");
    std::fs::write(
        &reuse,
        proxy_toml(&mesh.cp, "cart", Some(&token), mesh.app.addr, &[])
            .replace("cart-state", "cart3-state"),
    )
    .unwrap();
    let out = std::process::Command::new(workspace_binary("signet-proxy"))
        .arg("--config")
        .arg(&reuse)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("join token was already used"), "{stderr}");

    // Restarted without a token, the cart's proxy uses the SVID it kept.
    let Mesh {
        dir,
        cp,
        app,
        cart,
        frontend,
    } = mesh;
    let serial_before = identity_serial(&cart).await;
    let config = std::fs::read_to_string(&cart.config).unwrap();
    let without_token: String = config
        .lines()
        .filter(|l| !l.starts_with("join_token"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(cart.terminate(), Some(0));
    let cart = ProxyProcess::start(
        &workspace_binary("signet-proxy"),
        dir.path(),
        "cart-again",
        &without_token,
    );
    assert_eq!(identity_serial(&cart).await, serial_before);
    drop((cp, app, cart, frontend));
}

#[tokio::test]
async fn short_lived_svids_renew_under_traffic_without_losing_a_request() {
    let mesh = Mesh::start(&["--svid-ttl", "6s"]).await;
    let mut cart_serials = BTreeSet::new();
    let mut frontend_serials = BTreeSet::new();
    let begun = Instant::now();
    let mut sent = 0;
    while begun.elapsed() < Duration::from_secs(14) {
        let (status, _) = mesh.call("/api/items").await;
        assert_eq!(status, 200, "request {sent} failed during rotation");
        sent += 1;
        if sent % 10 == 0 {
            cart_serials.insert(identity_serial(&mesh.cart).await);
            frontend_serials.insert(identity_serial(&mesh.frontend).await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 6-second SVIDs renewed at about half-life: at least three in 14 seconds.
    assert!(cart_serials.len() >= 3, "cart serials: {cart_serials:?}");
    assert!(
        frontend_serials.len() >= 3,
        "frontend serials: {frontend_serials:?}"
    );
    assert!(
        mesh.cart
            .metric("signet_proxy_control_plane_errors_total{call=\"renew\"}")
            .await
            == 0
    );
}

#[tokio::test]
async fn applied_policies_reach_every_proxy_and_roll_back_and_bad_ones_change_nothing() {
    let mesh = Mesh::start(&[]).await;
    assert_eq!(mesh.call("/api/items").await.0, 200);

    // Replaying what the proxies recorded against the narrower policies shows the reads
    // that would be refused (records reach the spool within a checkpoint interval).
    let v2_file = mesh.dir.path().join("candidate-v2.cedar");
    std::fs::write(&v2_file, policies("/admin/*")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let simulate = |file: &Path| {
        mesh.cp.meshctl(&[
            "authz",
            "simulate",
            "--policies",
            file.to_str().unwrap(),
            "--data-dir",
            mesh.dir.path().to_str().unwrap(),
        ])
    };
    let out = simulate(&v2_file);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains(&format!("- NARROWED  {FRONTEND} -> cart: GET /api/items")),
        "{shown}"
    );
    assert!(shown.contains("would be DENY by default-deny"), "{shown}");

    // A dry run shows what would narrow, over the registry and a request sample, and
    // applies nothing.
    let v2 = mesh.dir.path().join("v2.cedar");
    std::fs::write(&v2, policies("/admin/*")).unwrap();
    let samples = mesh.dir.path().join("samples.yaml");
    std::fs::write(
        &samples,
        "requests:\n  - method: GET\n    path: /api/items\n",
    )
    .unwrap();
    let out = mesh.cp.meshctl(&[
        "authz",
        "apply",
        "--dry-run",
        "-f",
        v2.to_str().unwrap(),
        "--entities",
        samples.to_str().unwrap(),
    ]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&format!("- NARROWED  {FRONTEND} -> cart: GET /api/items")),
        "{shown}"
    );
    // The path classes the policies name are tried too: /admin/ opens. A dry run that
    // widens exits 3, as `authz diff` does.
    assert!(
        shown.contains(&format!("+ WIDENED   {FRONTEND} -> cart: GET /admin/")),
        "{shown}"
    );
    assert!(shown.contains("dry run"), "{shown}");
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert_eq!(mesh.versions(), [1]);

    // Narrow: reads only under /admin/. Every proxy enforces version 2 quickly.
    let out = mesh.apply("v2.cedar", &policies("/admin/*"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = mesh
        .wait_for(403, "/api/items", Duration::from_secs(5))
        .await;
    for proxy in [&mesh.cart, &mesh.frontend] {
        assert_eq!(
            proxy
                .metric_reaching("signet_proxy_policy_version", 2)
                .await,
            2
        );
    }
    let (status, denied_by) = mesh.call("/api/items").await;
    assert_eq!((status, denied_by.as_deref()), (403, Some("default-deny")));
    eprintln!("apply to enforce: {took:?}");

    // A bad file: one clear error, nothing applied, the running policy unchanged.
    let out = mesh.apply("bad.cedar", "permit (principal, action, resource");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.cedar:1:"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(mesh.versions(), [2, 1]);
    // Valid Cedar the mesh schema refuses is refused too.
    let out = mesh.apply(
        "unknown.cedar",
        "@id(\"x\") permit (principal, action == Mesh::Action::\"BREW\", resource);",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(mesh.versions(), [2, 1]);
    assert_eq!(mesh.call("/api/items").await.0, 403);

    // Replaying the denials since against the first policies: they would be allowed again,
    // and widening exits 3.
    let v1_file = mesh.dir.path().join("candidate-v1.cedar");
    std::fs::write(&v1_file, policies("/api/*")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = simulate(&v1_file);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(shown.contains("+ WIDENED"), "{shown}");

    // Rollback to 1: allowed again, as version 3.
    mesh.cp
        .meshctl_ok(&["authz", "rollback", "1", "--allow-widening"]);
    mesh.wait_for(200, "/api/items", Duration::from_secs(5))
        .await;
    assert_eq!(mesh.versions(), [3, 2, 1]);
    let current = mesh.cp.meshctl_ok(&["authz", "get"]);
    assert!(current.contains("/api/*"), "{current}");
    // Rolling back to a version that does not exist is an error, and changes nothing.
    let out = mesh.cp.meshctl(&["authz", "rollback", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(mesh.versions(), [3, 2, 1]);
}

#[tokio::test]
async fn traffic_flows_while_the_control_plane_is_down_and_proxies_reconnect_after() {
    let mut mesh = Mesh::start(&[]).await;
    assert_eq!(mesh.cp.stop(), Some(0));

    // Static stability: the last configuration and identity keep serving.
    for _ in 0..20 {
        assert_eq!(mesh.call("/api/items").await.0, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, ready) = mesh.frontend.admin_get("/ready").await;
    assert_eq!(status, 200, "{ready}");
    let mut unreachable = false;
    for _ in 0..50 {
        let (_, ready) = mesh.frontend.admin_get("/ready").await;
        if ready.contains("unreachable") {
            unreachable = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        unreachable,
        "/ready never reported the control plane unreachable"
    );

    // Back on the same data dir and ports: nothing stored was lost, proxies reconnect.
    mesh.cp.restart();
    assert_eq!(mesh.versions(), [1]);
    // The registry survived the restart: both proxies are known at once, and traffic keeps
    // flowing while they reconnect (the new configurations still carry the cart's endpoint).
    let out = mesh.cp.meshctl_ok(&["proxies", "list", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["proxies"].as_array().unwrap().len(), 2, "{v}");
    for i in 0..80 {
        assert_eq!(
            mesh.call("/api/items").await.0,
            200,
            "request {i} after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        mesh.frontend
            .metric_reaching("signet_proxy_control_plane_connected", 1)
            .await
            == 1
    );
    let mut registered = 0;
    for _ in 0..100 {
        let out = mesh.cp.meshctl_ok(&["proxies", "list", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        registered = v["proxies"].as_array().unwrap().len();
        if registered == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(registered, 2);
    // And the reconnected streams carry new versions.
    let out = mesh.apply("v2.cedar", &policies("/admin/*"));
    assert!(out.status.success());
    mesh.wait_for(403, "/api/items", Duration::from_secs(5))
        .await;
    let status = mesh.cp.meshctl_ok(&["status", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["policy"]["version"], 2);

    // Audit: every decision the cart's proxy recorded, during the outage too, reached the
    // control plane's copy, which verifies on its own.
    let spool = mesh.dir.path().join("cart-state").join("audit");
    let recorded = || spooled_records(&spool);
    let mut shipped = 0;
    for _ in 0..100 {
        let out = mesh.cp.meshctl_ok(&[
            "audit",
            "tail",
            "-o",
            "json",
            "--resource",
            "cart",
            "-n",
            "10000",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        shipped = v["records"].as_array().unwrap().len();
        if shipped > 0 && shipped == recorded() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(shipped > 20, "only {shipped} records shipped");
    assert_eq!(shipped, recorded());
    // The denials after the narrowing arrive within the next flush and shipment.
    let mut denied = String::new();
    for _ in 0..50 {
        denied = mesh
            .cp
            .meshctl_ok(&["audit", "tail", "--decision", "deny", "-n", "5"]);
        if denied.contains(FRONTEND) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        denied.contains("DENY") && denied.contains(FRONTEND),
        "{denied}"
    );
    // The proxies' chains as received (the control plane's own chain is still being
    // written: its newest records are not signed yet). A proxy signs its newest records
    // within a second and ships the checkpoint with its next batch, so the copy verifies
    // once that batch arrives: until then its tail is reported unsigned.
    let received = mesh.cp.data_dir.join("audit").join("received");
    let mut verified = String::new();
    for _ in 0..50 {
        let out = mesh
            .cp
            .meshctl(&["audit", "verify", "--data-dir", received.to_str().unwrap()]);
        verified = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            break;
        }
        // Waiting is for the signature only: anything else is a failure now.
        assert!(
            verified.contains("UNSIGNED"),
            "{verified} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for other in [
            "MALFORMED",
            "MISSING",
            "ALTERED",
            "REORDERED",
            "DUPLICATE",
            "BAD CHECKPOINT",
        ] {
            assert!(!verified.contains(other), "{verified}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        verified.contains("OK") && verified.contains("sa_2fcart"),
        "{verified}"
    );
}

#[tokio::test]
async fn stopped_proxies_leave_the_registry_and_denied_identities_are_refused() {
    let mesh = Mesh::start(&[]).await;
    let Mesh {
        dir,
        cp,
        app,
        cart,
        frontend,
    } = mesh;
    assert_eq!(cart.terminate(), Some(0));
    // Heartbeats every second; three missed remove the endpoint, and the frontend's proxy
    // learns it has none left.
    let mut services = String::new();
    for _ in 0..100 {
        services = cp.meshctl_ok(&["services", "list", "-o", "json"]);
        if !services.contains("\"cart\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!services.contains("\"cart\""), "{services}");
    let mut http = Http::h1(frontend.outbound["cart"]).await;
    let reply = http.get("cart", "/api/items", &[]).await;
    assert_eq!(reply.status.as_u16(), 503);

    // A new cart proxy joins; then the frontend's identity is denied everywhere.
    let cart = ProxyProcess::start(
        &workspace_binary("signet-proxy"),
        dir.path(),
        "cart-b",
        &proxy_toml(&cp, "cart", Some(&cp.token(CART)), app.addr, &[])
            .replace("cart-state", "cart-b-state"),
    );
    let mesh = Mesh {
        dir,
        cp,
        app,
        cart,
        frontend,
    };
    mesh.wait_for(200, "/api/items", Duration::from_secs(10))
        .await;
    let out = mesh.cp.meshctl_ok(&[
        "identity",
        "deny",
        "--spiffe-id",
        FRONTEND,
        "--reason",
        "test",
    ]);
    assert!(out.contains("denied spiffe_id"), "{out}");
    mesh.wait_for(502, "/api/items", Duration::from_secs(5))
        .await;
    // Live connections were closed; every new handshake is refused by the cart's proxy.
    for _ in 0..3 {
        assert_eq!(mesh.call("/api/items").await.0, 502);
    }
    let refused = "signet_proxy_handshake_failures_total{direction=\"inbound\",reason=\"refused\"}";
    assert!(mesh.cart.metric_reaching(refused, 1).await >= 1);
    // Bad input: neither or both.
    let out = mesh.cp.meshctl(&["identity", "deny"]);
    assert_eq!(out.status.code(), Some(1));
    let out = mesh
        .cp
        .meshctl(&["identity", "deny", "--serial", "not-hex"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not hex"));
}

#[tokio::test]
async fn operators_authenticate_with_tokens_or_certificates_and_are_authorized_by_cedar() {
    let mesh = Mesh::start(&[]).await;
    let certs = mesh.dir.path().join("operators");
    let issue = |id: &str, name: &str, token: &str| {
        mesh.cp.meshctl(&[
            "identity",
            "issue",
            "--spiffe-id",
            id,
            "--join-token",
            token,
            "--out",
            certs.to_str().unwrap(),
            "--name",
            name,
        ])
    };
    // The admin identity, as a client certificate instead of the token.
    let admin = "spiffe://mesh.test/signet/operator/admin";
    let token = mesh.cp.token(admin);
    let out = issue(admin, "admin", &token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&certs.join("admin.key")), 0o600);
    let with_cert = |name: &str, args: &[&str]| {
        let cert = certs.join(format!("{name}.crt"));
        let key = certs.join(format!("{name}.key"));
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]);
        mesh.cp.meshctl(&all)
    };
    let out = with_cert("admin", &["authz", "history"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The token was single-use.
    let out = issue(admin, "again", &token);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already used"));

    // Another operator identity authenticates but the operator policies give it nothing.
    let bob = "spiffe://mesh.test/signet/operator/bob";
    let out = issue(bob, "bob", &mesh.cp.token(bob));
    assert!(out.status.success());
    let out = with_cert("bob", &["authz", "history"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("`{bob}` may not `read` (default-deny)")),
        "{stderr}"
    );

    // With nothing in the environment, meshctl reads the same settings from the user's
    // config home; with nothing there either, it says what is missing.
    let home = mesh.dir.path().join("config-home");
    std::fs::create_dir_all(home.join("signet")).unwrap();
    let bare = |home: &Path| {
        std::process::Command::new(workspace_binary("meshctl"))
            .arg("status")
            .env_remove("SIGNET_CP")
            .env_remove("SIGNET_TOKEN")
            .env_remove("SIGNET_CA")
            .env("XDG_CONFIG_HOME", home)
            .output()
            .unwrap()
    };
    let out = bare(&home);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no control plane"));
    std::fs::copy(
        mesh.cp.data_dir.join("meshctl.env"),
        home.join("signet/meshctl.env"),
    )
    .unwrap();
    let out = bare(&home);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // No token can grant the control plane's own identity.
    let out = mesh.cp.meshctl(&[
        "token",
        "create",
        "--spiffe-id",
        "spiffe://mesh.test/signet/control-plane",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn operators_without_permission_are_refused_and_recorded() {
    let mesh = Mesh::start(&[]).await;
    // A wrong bearer token.
    let out = mesh.cp.meshctl(&["status", "--token", "not-a-token"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bearer token is not valid"), "{stderr}");

    // A workload's own SVID authenticates but is no operator: 403, by the operator policies.
    let state = mesh.dir.path().join("cart-state");
    let chain: Vec<_> = rustls::pki_types::pem::PemObject::pem_file_iter(state.join("svid.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::pem::PemObject::from_pem_file(state.join("key.pem")).unwrap();
    let bundle = signet_spiffe::TrustBundle::from_pem(
        signet_spiffe::TrustDomain::new(TD).unwrap(),
        &std::fs::read_to_string(state.join("bundle.pem")).unwrap(),
    )
    .unwrap();
    let answer = tls_request(
        mesh.cp.api,
        Some((chain, key)),
        bundle.clone(),
        "/v1/policies",
        &[],
    )
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("may not `read` (default-deny)"), "{answer}");

    // The refusal is recorded with who and what; the admin reads the record.
    let bearer = format!("Bearer {}", mesh.cp.setting("SIGNET_TOKEN"));
    let answer = tls_request(
        mesh.cp.api,
        None,
        bundle,
        "/v1/operator-actions",
        &[("authorization", &bearer)],
    )
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let log: serde_json::Value = serde_json::from_str(body).unwrap();
    let actions = log["actions"].as_array().unwrap();
    assert!(
        actions.iter().any(|a| a["principal"] == CART
            && a["allowed"] == false
            && a["action"] == "read"
            && a["detail"] == "default-deny"),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| a["action"] == "policy.apply" && a["allowed"] == true),
        "{actions:?}"
    );

    // The control plane's own signed chain holds the same refusal, the policy version and
    // the SVIDs it issued; stopped, it signs its last records, and the chain verifies.
    let mut mesh = mesh;
    assert_eq!(mesh.cp.stop(), Some(0));
    let own = mesh.cp.data_dir.join("audit").join("control-plane");
    let text: String = signet_audit::spool::segment_files(&own)
        .unwrap()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for needle in [
        "\"type\":\"operator\"",
        "\"allowed\":false",
        "\"type\":\"policy\"",
        "\"type\":\"certificate\",\"kind\":\"issue\"",
    ] {
        assert!(text.contains(needle), "{needle} missing");
    }
    let out = std::process::Command::new(workspace_binary("meshctl"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&mesh.cp.data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("signet/control-plane"), "{stdout}");
}

/// How many records the control plane has indexed, once shipping has caught up (at least
/// `at_least` and unchanged over three reads, which span more than the proxies' one-second
/// shipping period, so a batch still on its way cannot pass for the end); the last count if
/// it never settles.
async fn shipped_count(cp: &ControlPlane, at_least: usize) -> usize {
    let mut last = [usize::MAX; 2];
    for _ in 0..100 {
        let out = cp.meshctl_ok(&["audit", "tail", "-o", "json", "-n", "10000"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let n = v["records"].as_array().unwrap().len();
        if n >= at_least && last == [n, n] {
            return n;
        }
        last = [last[1], n];
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    last[1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_exports_resume_from_their_cursor_and_reach_a_syslog_receiver() {
    let mesh = Mesh::start(&[]).await;
    // Someone follows the denials as they arrive.
    let mut follow = mesh
        .cp
        .meshctl_command(&["audit", "tail", "--follow", "--decision", "deny"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, followed) = std::sync::mpsc::channel::<String>();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    for _ in 0..10 {
        assert_eq!(mesh.call("/api/items").await.0, 200);
    }
    assert_eq!(mesh.call("/admin").await.0, 403);
    // The denial reaches the follower (the proxy ships every second, tail polls every
    // second); allows never do.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !seen
        .iter()
        .any(|l: &String| l.contains("DENY") && l.contains("/admin"))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match followed.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("no denial followed ({e}): {seen:?}"),
        }
    }
    assert!(!seen.iter().any(|l| l.contains("ALLOW")), "{seen:?}");
    follow.kill().unwrap();
    let _ = follow.wait();
    let first = shipped_count(&mesh.cp, 10).await;
    assert!(first >= 10, "shipping never settled: {first}");
    let out_file = mesh.dir.path().join("export.jsonl");
    let cursor = mesh.dir.path().join("export.cursor");
    let export = |format: &str, output: &Path| {
        mesh.cp.meshctl_ok(&[
            "audit",
            "export",
            "--format",
            format,
            "--output",
            output.to_str().unwrap(),
            "--cursor",
            cursor.to_str().unwrap(),
        ])
    };
    export("jsonl", &out_file);
    let lines = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&out_file).len(), first);

    // More traffic; the second run writes exactly the new records.
    for _ in 0..5 {
        assert_eq!(mesh.call("/api/items").await.0, 200);
    }
    let total = shipped_count(&mesh.cp, first + 5).await;
    assert!(total >= first + 5, "shipping never settled: {total}");
    export("jsonl", &out_file);
    let all = lines(&out_file);
    assert_eq!(all.len(), total);
    let keys: BTreeSet<(String, u64)> = all
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["writer"].as_str().unwrap().to_owned(),
                v["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys.len(), total, "no record twice");
    // Nothing new: nothing written.
    export("jsonl", &out_file);
    assert_eq!(lines(&out_file).len(), total);

    // CEF, from the start (a new cursor).
    std::fs::remove_file(&cursor).unwrap();
    let cef = mesh.dir.path().join("export.cef");
    export("cef", &cef);
    let cef_lines = lines(&cef);
    assert_eq!(cef_lines.len(), total);
    assert!(
        cef_lines
            .iter()
            .all(|l| l.starts_with("CEF:0|Signet|signet|"))
    );
    assert!(
        cef_lines
            .iter()
            .any(|l| l.contains(&format!("suser={FRONTEND}")))
    );
    // And liblognorm's CEF parser reads every event back, the caller intact.
    let parsed = signet_tests::validators::cef(&std::fs::read_to_string(&cef).unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.len(), total);
    assert!(
        parsed
            .iter()
            .any(|e| e["Extensions"]["suser"] == FRONTEND && e["DeviceVendor"] == "Signet")
    );

    // Elasticsearch bulk (an action and an ECS document per record) and Splunk HEC events.
    std::fs::remove_file(&cursor).unwrap();
    let bulk = mesh.dir.path().join("export.ndjson");
    export("elastic", &bulk);
    let bulk_lines = lines(&bulk);
    assert_eq!(bulk_lines.len(), 2 * total);
    for pair in bulk_lines.chunks(2) {
        let action: serde_json::Value = serde_json::from_str(&pair[0]).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&pair[1]).unwrap();
        assert!(
            action["create"]["_id"]
                .as_str()
                .unwrap()
                .starts_with("spiffe://")
        );
        assert!(doc["@timestamp"].is_string() && doc["event"]["kind"] == "event");
    }
    // Every document valid ECS, by Elastic's own field definitions.
    let checked = signet_tests::validators::ecs(&bulk);
    assert!(checked.ok, "ECS validation failed:\n{}", checked.report);
    assert!(
        checked.report.contains(&format!("ok: {total} documents")),
        "{}",
        checked.report
    );
    std::fs::remove_file(&cursor).unwrap();
    let hec = mesh.dir.path().join("export.hec");
    export("splunk-hec", &hec);
    let hec_lines = lines(&hec);
    assert_eq!(hec_lines.len(), total);
    let event: serde_json::Value = serde_json::from_str(&hec_lines[0]).unwrap();
    assert_eq!(event["sourcetype"], "signet:audit");

    // HEC and bulk over HTTPS, each with its own cursor.
    use signet_tests::siem::{Flavor, Receiver};
    let deliver = |format: &str, rx: &Receiver, token: &str, cursor: &Path| {
        mesh.cp.meshctl(&[
            "audit",
            "export",
            "--format",
            format,
            "--to",
            rx.url.as_str(),
            "--to-ca",
            rx.ca.to_str().unwrap(),
            "--to-token",
            token,
            "--cursor",
            cursor.to_str().unwrap(),
        ])
    };
    let splunk = Receiver::start(Flavor::SplunkHec, &mesh.dir.path().join("hec")).await;
    let hec_cursor = mesh.dir.path().join("hec.cursor");
    let refused = deliver("splunk-hec", &splunk, "wrong", &hec_cursor);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Invalid token (code 4)"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!hec_cursor.exists(), "nothing delivered, nothing recorded");
    let sent = deliver("splunk-hec", &splunk, &splunk.token, &hec_cursor);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(splunk.accepted.lock().unwrap().len(), total);
    let elastic = Receiver::start(Flavor::ElasticBulk, &mesh.dir.path().join("es")).await;
    let es_cursor = mesh.dir.path().join("es.cursor");
    let sent = deliver("elastic", &elastic, &elastic.token, &es_cursor);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let docs = elastic.accepted.lock().unwrap().clone();
    assert_eq!(docs.len(), total);
    assert!(docs.values().all(|d| d["event"]["kind"] == "event"));
    // The cursor lost: everything is sent again and refused as duplicates, nothing stored
    // twice.
    std::fs::remove_file(&es_cursor).unwrap();
    let again = deliver("elastic", &elastic, &elastic.token, &es_cursor);
    assert!(again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains(&format!("{total} were already in the index")),
        "{stderr}"
    );
    assert_eq!(elastic.accepted.lock().unwrap().len(), total);

    // OCSF: every event valid against the OCSF schema (JSON Schema generated offline from
    // the OCSF release by `ocsf-json-schema`, checked by `jsonschema`).
    std::fs::remove_file(&cursor).unwrap();
    let ocsf = mesh.dir.path().join("export.ocsf.jsonl");
    export("ocsf", &ocsf);
    assert_eq!(lines(&ocsf).len(), total);
    let checked = signet_tests::validators::ocsf(&ocsf);
    let report = checked.report;
    assert!(checked.ok, "OCSF validation failed:\n{report}");
    for class in ["6003 api_activity", "4001 network_activity"] {
        assert!(report.contains(class), "no {class} event:\n{report}");
    }
    let denied = lines(&ocsf)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| {
            e["class_uid"] == 6003
                && e["status_id"] == 2
                && e["http_request"]["url"]["path"] == "/admin"
        })
        .expect("the denied request as a failed API Activity");
    assert_eq!(denied["actor"]["user"]["uid"], FRONTEND);
    assert_eq!(denied["activity_id"], 2);

    // Syslog over TCP to a receiver reading RFC 5425 octet-counted frames.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        use std::io::Read as _;
        let (mut conn, _) = listener.accept().unwrap();
        let mut bytes = Vec::new();
        conn.read_to_end(&mut bytes).unwrap();
        let mut frames = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let space = rest.iter().position(|b| *b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&rest[..space])
                .unwrap()
                .parse()
                .unwrap();
            frames.push(String::from_utf8(rest[space + 1..space + 1 + len].to_vec()).unwrap());
            rest = &rest[space + 1 + len..];
        }
        frames
    });
    mesh.cp.meshctl_ok(&[
        "audit",
        "export",
        "--format",
        "syslog",
        "--to",
        &format!("tcp://{addr}"),
        "--hostname",
        "mesh-test",
    ]);
    let frames = receiver.join().unwrap();
    assert_eq!(frames.len(), total);
    for f in &frames {
        assert!(
            f.starts_with("<8") && f.contains(" mesh-test signet - decision-"),
            "{f}"
        );
        assert!(f.contains("[signet@32473 writer=\""), "{f}");
    }

    // Syslog over TLS (RFC 5425) to a real rsyslog, verified against its CA and host name.
    let rsyslog = signet_tests::rsyslog::Rsyslog::start_tls(&mesh.dir.path().join("rsyslog"));
    mesh.cp.meshctl_ok(&[
        "audit",
        "export",
        "--format",
        "syslog",
        "--to",
        &format!("tls://localhost:{}", rsyslog.port),
        "--to-ca",
        rsyslog.ca.to_str().unwrap(),
        "--hostname",
        "mesh-test",
    ]);
    let received = rsyslog.received(total, Duration::from_secs(20));
    assert_eq!(received.len(), total, "{received:?}");
    assert!(
        received
            .iter()
            .all(|l| l.starts_with("decision-") && l.contains("[signet@32473 writer=\"")),
        "{received:?}"
    );
    assert!(received.iter().any(|l| l.starts_with("decision-deny")));
    // A receiver whose certificate does not chain to --to-ca is refused.
    let out = mesh.cp.meshctl(&[
        "audit",
        "export",
        "--format",
        "syslog",
        "--to",
        &format!("tls://localhost:{}", rsyslog.port),
        "--to-ca",
        mesh.cp.setting("SIGNET_CA").as_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);

    // Bad input: one clear line.
    let out = mesh
        .cp
        .meshctl(&["audit", "export", "--format", "syslog", "--to", "udp://x:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A policy change too large for one proxy's configuration message is refused whole, a
/// revocation reaches every proxy whatever the policies, and a change some proxy does not
/// enforce by the deadline is reported as such, not as a success.
#[tokio::test]
async fn oversized_policies_are_refused_and_changes_report_the_proxies_that_lag() {
    let mesh = Mesh::start(&[]).await;
    assert_eq!(mesh.call("/api/items").await.0, 200);
    let before = mesh.versions();
    // Five files, each one valid, unscoped policy of about 0.9 MB: every proxy's slice would
    // hold them all.
    let big = mesh.dir.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join("base.cedar"), policies("/api/*")).unwrap();
    for i in 0..5 {
        let text = format!(
            "@id(\"big-{i}\")\nforbid (principal, action in Mesh::Action::\"read\", resource)\n\
             when {{ context.path == \"/{}\" }};\n",
            "x".repeat(900_000)
        );
        std::fs::write(big.join(format!("big-{i}.cedar")), text).unwrap();
    }
    let out = mesh
        .cp
        .meshctl(&["authz", "apply", "-f", big.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing was applied"), "{stderr}");
    assert!(stderr.contains("a proxy can be sent at most"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(mesh.versions(), before, "a refused change stored a version");

    // The cart's proxy stops answering (frozen, still registered): a new version is stored
    // but not claimed as enforced; meshctl names the proxy and exits 1.
    let registered = || {
        let out = mesh.cp.meshctl_ok(&["proxies", "list", "-o", "json"]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["proxies"]
            .as_array()
            .unwrap()
            .len()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while registered() < 2 {
        assert!(Instant::now() < deadline, "both proxies never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(mesh.cart.pid(), "STOP");
    let file = mesh.dir.path().join("next.cedar");
    std::fs::write(&file, policies("/api/items*")).unwrap();
    let started = Instant::now();
    let out = mesh.cp.meshctl(&[
        "authz",
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "2s",
    ]);
    let waited = started.elapsed();
    signal(mesh.cart.pid(), "CONT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stderr} {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("is stored, but 1 of 2 proxies do not enforce it yet"),
        "{stderr}"
    );
    assert!(stderr.contains(CART), "{stderr}");
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert_eq!(mesh.versions().len(), before.len() + 1);
    // Thawed, the cart's proxy catches up; the next change is acknowledged by both.
    let out = mesh.cp.meshctl_ok(&[
        "authz",
        "rollback",
        &before.last().unwrap().to_string(),
        "--allow-widening",
    ]);
    assert!(out.contains("enforced by 2 of 2 proxies"), "{out}");

    // A revocation is acknowledged by the proxies, and enforced.
    // (The frontend's own proxy is revoked by it, so only the cart's is waited for.)
    let started = Instant::now();
    let out = mesh
        .cp
        .meshctl_ok(&["identity", "deny", "--spiffe-id", FRONTEND]);
    assert!(out.contains("enforced by 1 of 1 proxies"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    mesh.wait_for(502, "/api/items", Duration::from_secs(5))
        .await;
}

/// Records in a spool directory (lines of records, not checkpoints).
fn spooled_records(dir: &Path) -> usize {
    signet_audit::spool::segment_files(dir)
        .unwrap_or_default()
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("{\"seq\""))
                .count()
        })
        .sum()
}

/// Two proxies of one service keep two chains (one per instance), and the control plane
/// keeps both whole, each in a directory of its own.
#[tokio::test]
async fn two_instances_of_a_service_ship_two_chains_and_both_are_kept() {
    let mesh = Mesh::start(&[]).await;
    let second = ProxyProcess::start(
        &workspace_binary("signet-proxy"),
        mesh.dir.path(),
        "cart-b",
        &proxy_toml(
            &mesh.cp,
            "cart",
            Some(&mesh.cp.token(CART)),
            mesh.app.addr,
            &[],
        )
        .replace("cart-state", "cart-b-state"),
    );
    // Both carts serve (round robin), so both record decisions.
    let deadline = Instant::now() + Duration::from_secs(15);
    let spools = [
        mesh.dir.path().join("cart-state").join("audit"),
        mesh.dir.path().join("cart-b-state").join("audit"),
    ];
    while spools.iter().any(|s| spooled_records(s) < 3) {
        assert!(Instant::now() < deadline, "both carts never recorded");
        let _ = mesh.call("/api/items").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let instances: Vec<String> = spools
        .iter()
        .map(|s| std::fs::read_to_string(s.join("writer-instance")).unwrap())
        .collect();
    assert_ne!(instances[0], instances[1]);
    // The control plane's copy: one directory per instance, each holding that chain whole.
    let received = mesh.cp.data_dir.join("audit").join("received");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let copies: Vec<usize> = instances
            .iter()
            .map(|i| {
                let writer = format!("{CART}#{i}");
                spooled_records(&received.join(signet_cp::server::audit::writer_dir(&writer)))
            })
            .collect();
        let originals: Vec<usize> = spools.iter().map(|s| spooled_records(s)).collect();
        if copies == originals {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "copies {copies:?} of {originals:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(second);
}

/// The whole path on PostgreSQL: a control plane with `--store postgres://`, proxies joining
/// it, policies applied and enforced, and everything still there after the control plane
/// restarts; a store URL it cannot use is one line and exit 1.
#[tokio::test]
async fn a_control_plane_on_postgres_runs_the_mesh_and_keeps_its_state_across_restarts() {
    let server = signet_tests::postgres::Postgres::start();
    let url = server.database();
    let kek = server.kek_file();
    let mut mesh = Mesh::start(&["--store", &url, "--ca-kek-file", &kek]).await;
    assert_eq!(mesh.call("/api/items").await.0, 200);
    assert_eq!(mesh.call("/admin").await.0, 403);
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

    mesh.cp.stop();
    mesh.cp.restart();
    let history = mesh.cp.meshctl_ok(&["authz", "history", "-o", "json"]);
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    let versions: Vec<u64> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["version"].as_u64())
        .collect();
    assert_eq!(versions, [2, 1], "{history}");
    // The proxies' registrations were kept in the database too.
    let services = mesh.cp.meshctl_ok(&["services", "list", "-o", "json"]);
    assert!(services.contains("\"cart\""), "{services}");

    let bad = std::process::Command::new(workspace_binary("signet-cp"))
        .args(["--data-dir"])
        .arg(mesh.dir.path().join("other"))
        .args([
            "--store",
            &format!(
                "postgres://signet:secret@127.0.0.1:{}/nosuchdb",
                server.port
            ),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("nosuchdb"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "the password is never shown: {stderr}"
    );
}

//! Transparent interception on real hosts: three network namespaces on one LAN (the
//! frontend at 10.77.0.1, the cart at 10.77.0.2, the control plane at 10.77.0.3), the rules
//! `signet-proxy init` installs with real nftables or iptables, and an unmodified client
//! (curl, as an unprivileged user) calling `http://cart:8080` by name.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failure is the test failing"
)]

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use signet_tests::control::{ControlPlane, workspace_binary};
use signet_tests::mesh::{CART, FRONTEND, TD, policies};
use signet_tests::netns::{Host, Lan};
use signet_tests::process::ProxyProcess;

/// An app that answers every request with the request's path and headers (JSON).
const ECHO_APP: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Echo).serve_forever()
"#;

/// Processes started on the LAN, killed before it is torn down.
struct Running(Vec<std::process::Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn echo_app(lan: &Lan, host: Host, dir: &Path, port: u16) -> std::process::Child {
    let script = dir.join("echo.py");
    std::fs::write(&script, ECHO_APP).unwrap();
    lan.command(host, "python3")
        .arg(&script)
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the echo app")
}

/// What curl got: the status (0: no HTTP answer) and the body.
fn curl(output: &Output) -> (u16, String) {
    let text = String::from_utf8_lossy(&output.stdout);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

const CURL: [&str; 6] = ["-s", "-m", "3", "-w", "\n%{http_code}", "-o"];

/// The app on `from` (as nobody) GETs `url`.
fn app_get(lan: &Lan, from: Host, url: &str) -> (u16, String) {
    let mut args = CURL.to_vec();
    args.extend(["-", url]);
    curl(&lan.run_as_app(from, "curl", &args))
}

/// The peer identity the echo app saw, from its answer.
fn peer_id(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-signet-peer-id"))
        .and_then(|(_, v)| v.as_str().map(str::to_owned))
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn proxy_toml(
    cp: &ControlPlane,
    dir: &Path,
    service: &str,
    id: &str,
    host: Host,
    extra: &str,
) -> String {
    format!(
        "[service]\nname = \"{service}\"\nnamespace = \"shop\"\n\n\
         [control_plane]\naddress = \"{grpc}\"\nca = \"{ca}\"\ntrust_domain = \"{TD}\"\n\
         state_dir = \"{state}\"\njoin_token = \"{token}\"\nadvertise = \"{ip}:15006\"\n\n\
         [inbound]\nlisten = \"0.0.0.0:15006\"\napp = \"127.0.0.1:8080\"\n\n\
         [admin]\nlisten = \"127.0.0.1:15000\"\n\n[interception]\n{extra}",
        grpc = cp.grpc,
        ca = cp.setting("SIGNET_CA"),
        state = dir.join(format!("{service}-state")).display(),
        token = cp.token(id),
        ip = host.ip(),
    )
}

fn init(lan: &Lan, host: Host, args: &[&str]) -> String {
    let out = lan.run(host, workspace_binary("signet-proxy"), args);
    assert!(
        out.status.success(),
        "signet-proxy {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of a series on the proxy of `host` (its admin listener is on that host's
/// loopback).
fn metric(lan: &Lan, host: Host, series: &str) -> u64 {
    let out = lan.run(host, "curl", &["-s", "http://127.0.0.1:15000/metrics"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

fn interception_end_to_end(backend: &str) {
    if let Some(why) = signet_tests::netns::unavailable() {
        panic!("these tests need network namespaces (run as root with iproute2): {why}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (lan, hosts) = Lan::new(3);
    let [frontend_host, cart_host, cp_host] = [hosts[0], hosts[1], hosts[2]];
    lan.resolve(frontend_host, &[("cart", cart_host)]);
    let cp_prefix = ["ip", "netns", "exec", lan.netns(cp_host)];
    let cp = ControlPlane::start_in(
        &cp_prefix,
        &dir.path().join("cp"),
        &cp_host.ip().to_string(),
        &["--trust-domain", TD, "--heartbeat-interval", "1s"],
    );
    let policy = dir.path().join("v1.cedar");
    std::fs::write(&policy, policies("/api/*")).unwrap();
    cp.meshctl_ok(&[
        "authz",
        "apply",
        "-f",
        policy.to_str().unwrap(),
        "-m",
        "first",
        "--allow-widening",
    ]);
    let apps = Running(vec![
        echo_app(&lan, cart_host, dir.path(), 8080),
        // Reached directly: excluded on both sides.
        echo_app(&lan, cart_host, dir.path(), 9090),
        // Outside the mesh: intercepted connections to it pass through.
        echo_app(&lan, cp_host, dir.path(), 7070),
    ]);
    wait_for("the cart's app", || {
        app_get(&lan, frontend_host, "http://cart:8080/api/items").0 == 200
    });
    // Without the mesh in the way: the app is reached directly, nobody vouches for the caller.
    let (status, body) = app_get(&lan, frontend_host, "http://cart:8080/api/items");
    assert_eq!((status, peer_id(&body)), (200, None), "{body}");

    let proxy = workspace_binary("signet-proxy");
    let cart = ProxyProcess::start_with(
        lan.command(cart_host, &proxy),
        dir.path(),
        "cart",
        &proxy_toml(&cp, dir.path(), "cart", CART, cart_host, ""),
    );
    let frontend = ProxyProcess::start_with(
        lan.command(frontend_host, &proxy),
        dir.path(),
        "frontend",
        &proxy_toml(
            &cp,
            dir.path(),
            "frontend",
            FRONTEND,
            frontend_host,
            "unknown_destinations = \"passthrough\"\n\n[[outbound]]\nservice = \"cart\"\n",
        ),
    );
    // The frontend learns from the registry that 10.77.0.2:8080 is the cart.
    wait_for("the cart's address in the frontend's proxy", || {
        let out = lan.run(
            frontend_host,
            "curl",
            &["-s", "http://127.0.0.1:15000/endpoints"],
        );
        String::from_utf8_lossy(&out.stdout).contains("\"10.77.0.2:8080\"")
    });

    let frontend_config = frontend.config.display().to_string();
    let cart_config = cart.config.display().to_string();
    let installed = init(
        &lan,
        frontend_host,
        &[
            "init",
            "--config",
            &frontend_config,
            "--proxy-uid",
            "0",
            "--exclude-outbound-ports",
            "9090",
            "--backend",
            backend,
        ],
    );
    assert!(
        installed.contains("interception rules installed")
            && installed.contains("outbound TCP -> :15001"),
        "{installed}"
    );
    // Installing twice replaces the rules; it does not stack a second copy.
    for _ in 0..2 {
        init(
            &lan,
            cart_host,
            &[
                "init",
                "--config",
                &cart_config,
                "--proxy-uid",
                "0",
                "--exclude-inbound-ports",
                "9090",
                "--backend",
                backend,
            ],
        );
    }
    let rules = listed_rules(&lan, cart_host, backend);
    assert_eq!(
        rules.matches("redirect to :15006").count() + rules.matches("--to-ports 15006").count(),
        if backend == "nftables" { 2 } else { 1 },
        "one redirect per family (nftables: ip and ip6; iptables lists IPv4 here): {rules}"
    );
    assert_eq!(
        rules.matches("-j SIGNET_INBOUND").count(),
        usize::from(backend == "iptables")
    );

    // The unmodified app now goes through both proxies over mTLS: the cart's app sees the
    // frontend's identity, set by the cart's proxy.
    let (status, body) = app_get(&lan, frontend_host, "http://cart:8080/api/items");
    assert_eq!(status, 200, "{body}");
    assert_eq!(peer_id(&body).as_deref(), Some(FRONTEND), "{body}");
    // And the policies apply: the frontend may read /api/* only.
    let (status, _) = app_get(&lan, frontend_host, "http://cart:8080/admin");
    assert_eq!(status, 403);
    // Excluded ports bypass the proxies.
    let (status, body) = app_get(&lan, frontend_host, "http://10.77.0.2:9090/api/items");
    assert_eq!((status, peer_id(&body)), (200, None), "{body}");
    // A destination outside the mesh passes through as plain TCP, counted.
    let before = metric(
        &lan,
        frontend_host,
        "signet_proxy_connections_total{direction=\"intercepted\"}",
    );
    let (status, body) = app_get(&lan, frontend_host, "http://10.77.0.3:7070/");
    assert_eq!((status, peer_id(&body)), (200, None), "{body}");
    let after = metric(
        &lan,
        frontend_host,
        "signet_proxy_connections_total{direction=\"intercepted\"}",
    );
    assert!(
        after > before,
        "passthrough not counted: {before} -> {after}"
    );
    let passed = metric(
        &lan,
        frontend_host,
        "signet_proxy_tcp_connection_duration_seconds_count{direction=\"outbound\",peer=\"passthrough\"}",
    );
    assert!(passed >= 1, "no passthrough connection recorded");
    // Around the mesh is no way in: plain text to the cart's app port lands on its proxy's
    // mTLS listener (root on the frontend host is the proxy's user, so it is not
    // intercepted there).
    let plain = lan.run(
        frontend_host,
        "curl",
        &[
            "-s",
            "-m",
            "3",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://10.77.0.2:8080/api/items",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "000");

    // Removing the rules restores direct traffic, and removing again is not an error.
    for host in [frontend_host, cart_host] {
        for _ in 0..2 {
            let removed = init(&lan, host, &["init", "--remove", "--backend", backend]);
            assert!(removed.contains("rules removed"), "{removed}");
        }
        let rules = listed_rules(&lan, host, backend);
        assert!(
            !rules.contains("signet") && !rules.contains("SIGNET"),
            "{rules}"
        );
    }
    let (status, body) = app_get(&lan, frontend_host, "http://cart:8080/api/items");
    assert_eq!((status, peer_id(&body)), (200, None), "{body}");
    drop((frontend, cart));
    drop(apps);
}

/// The nat rules on `host`, as the backend lists them.
fn listed_rules(lan: &Lan, host: Host, backend: &str) -> String {
    let out = if backend == "nftables" {
        lan.run(host, "nft", &["list", "ruleset"])
    } else {
        lan.run(host, "iptables", &["-t", "nat", "-S"])
    };
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_unmodified_client_reaches_a_meshed_server_through_nftables_rules() {
    interception_end_to_end("nftables");
}

#[test]
fn an_unmodified_client_reaches_a_meshed_server_through_iptables_rules() {
    interception_end_to_end("iptables");
}

#[test]
fn init_refuses_bad_input_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        "[service]\nname = \"cart\"\nnamespace = \"shop\"\n\
         [inbound]\nlisten = \"0.0.0.0:15006\"\napp = \"127.0.0.1:8080\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let proxy = workspace_binary("signet-proxy");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&proxy)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (args, says) in [
        (vec!["init", "--config", config], "--proxy-uid is required"),
        (
            vec!["init", "--config", config, "--proxy-uid", "0"],
            "has no [interception]",
        ),
        (
            vec!["init", "--proxy-uid", "0", "--no-outbound"],
            "give --inbound-port or --config",
        ),
        (
            vec![
                "init",
                "--proxy-uid",
                "0",
                "--inbound-port",
                "15006",
                "--exclude-outbound-cidrs",
                "10.0.0.1/8",
            ],
            "has host bits set",
        ),
        (
            vec![
                "init",
                "--proxy-uid",
                "0",
                "--inbound-port",
                "15006",
                "--exclude-inbound-ports",
                "ssh",
            ],
            "is not a port",
        ),
        (
            vec!["init", "--proxy-uid", "0", "--no-inbound", "--no-outbound"],
            "nothing to redirect",
        ),
    ] {
        let (code, _, stderr) = run(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // A dry run prints the rules and touches nothing.
    let (code, script, stderr) = run(&[
        "init",
        "--config",
        config,
        "--proxy-uid",
        "1337",
        "--no-outbound",
        "--dry-run",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(script.contains("redirect to :15006"), "{script}");
    assert!(!script.contains("chain output"), "{script}");
}

//! The web console against `meshctl demo`, in a real browser: Debian's Chromium driven by
//! Selenium (`tests/console/browser.py`), with axe-core run inside every page. The demo's
//! own sign-in link signs the admin in; a read-only operator enrolled with a client
//! certificate gets its link from `meshctl console`.
//!
//! Needs `chromium`, `chromium-driver`, Python's `selenium` and axe-core (`SIGNET_AXE`, or
//! the copy `scripts/test.sh` installs): the README's test command installs them all.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure is the test failing"
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const ADMIN_AND_VIEWER: &str = r#"
@id("admin-may-do-everything")
permit (principal == Signet::Operator::"spiffe://signet.local/signet/operator/admin", action, resource);

@id("viewer-reads")
permit (principal == Signet::Operator::"spiffe://signet.local/signet/operator/viewer",
        action == Signet::Action::"read", resource);
"#;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SIGINT: the demo stops its processes on the way out.
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn axe() -> PathBuf {
    std::env::var_os("SIGNET_AXE").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME");
            Path::new(&home)
                .join(".cache/signet-tests/axe-core-4.11.0/node_modules/axe-core/axe.min.js")
        },
        PathBuf::from,
    )
}

/// `meshctl` with the demo's control plane settings and `extra` flags.
fn meshctl(env: &[(String, String)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .env_remove("SIGNET_CERT")
        .env_remove("SIGNET_KEY")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_console_works_in_a_real_browser_against_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    // A read-only operator beside the admin (the operator policies are read at start).
    std::fs::create_dir_all(data.join("cp")).unwrap();
    std::fs::write(data.join("cp/operators.cedar"), ADMIN_AND_VIEWER).unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(["demo", "--duration", "300s", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = demo.stdout.take().unwrap();
    let demo = Killed(demo);
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let mut admin_link = String::new();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        if let Some((_, link)) = line.split_once("console ") {
            admin_link = link.trim().to_owned();
        }
        let done = line.starts_with("Try, in another terminal");
        seen.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    assert!(
        admin_link.starts_with("https://127.0.0.1:") && admin_link.contains("/ui/sign-in#code="),
        "the demo prints the console's sign-in link: {seen:#?}"
    );
    let base = admin_link.split("/ui/").next().unwrap().to_owned();

    let env_text = std::fs::read_to_string(data.join("cp/meshctl.env")).unwrap();
    let env: Vec<(String, String)> = env_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();

    // A second policy version, narrower than the first: rolling back to 1 widens again.
    let v2 = std::fs::read_to_string(data.join("policies/shop.cedar"))
        .unwrap()
        .replace(
            r#"context.path like "/api/*""#,
            r#"context.path like "/api/cart*""#,
        );
    let v2_file = dir.path().join("shop-v2.cedar");
    std::fs::write(&v2_file, v2).unwrap();
    ok(
        meshctl(
            &env,
            &[
                "authz",
                "apply",
                "-f",
                v2_file.to_str().unwrap(),
                "-m",
                "cart only",
            ],
        ),
        "applying version 2",
    );

    // The viewer, enrolled with a client certificate, asks for its own sign-in link.
    let viewer = "spiffe://signet.local/signet/operator/viewer";
    let token = ok(
        meshctl(&env, &["token", "create", "--spiffe-id", viewer]),
        "a token for the viewer",
    );
    let certs = dir.path().join("viewer");
    ok(
        meshctl(
            &env,
            &[
                "identity",
                "issue",
                "--spiffe-id",
                viewer,
                "--join-token",
                token.trim(),
                "--out",
                certs.to_str().unwrap(),
            ],
        ),
        "the viewer's certificate",
    );
    let as_viewer: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "SIGNET_TOKEN")
        .cloned()
        .chain([
            (
                "SIGNET_CERT".to_owned(),
                certs.join("operator.crt").display().to_string(),
            ),
            (
                "SIGNET_KEY".to_owned(),
                certs.join("operator.key").display().to_string(),
            ),
        ])
        .collect();
    let viewer_link = ok(
        meshctl(&as_viewer, &["console"]),
        "meshctl console as the viewer",
    )
    .trim()
    .to_owned();
    assert!(
        viewer_link.starts_with(&format!("{base}/ui/sign-in#code=")),
        "{viewer_link}"
    );

    let shots = std::env::var("SIGNET_CONSOLE_SCREENSHOTS").ok();
    let input = serde_json::json!({
        "base": base,
        "admin_link": admin_link,
        "viewer_link": viewer_link,
        "axe": axe(),
        "shots": shots,
    });
    let mut browser = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/browser.py"))
        .env("SE_OFFLINE", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    browser
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = browser.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    for page in [
        "overview", "topology", "services", "service", "policies", "diff", "audit", "ca",
    ] {
        assert_eq!(
            summary["axe"][page]["serious_or_critical"], 0,
            "{page}: {summary}"
        );
    }
    assert_eq!(summary["csrf_refused"], 403, "{summary}");
    assert_eq!(summary["viewer_refused"], 403, "{summary}");

    // The rollback the browser made is version 3, made by the admin, enforced everywhere.
    let history: serde_json::Value = serde_json::from_str(&ok(
        meshctl(&env, &["authz", "history", "-o", "json"]),
        "history",
    ))
    .unwrap();
    let newest = &history["versions"][0];
    assert_eq!(newest["version"], 3, "{history}");
    assert_eq!(newest["rolled_back_from"], 1, "{history}");
    assert_eq!(
        newest["author"], "spiffe://signet.local/signet/operator/admin",
        "{history}"
    );
    let proxies: serde_json::Value = serde_json::from_str(&ok(
        meshctl(&env, &["proxies", "list", "-o", "json"]),
        "proxies",
    ))
    .unwrap();
    let proxies = proxies["proxies"].as_array().unwrap();
    assert_eq!(proxies.len(), 4);
    assert!(
        proxies.iter().all(|p| p["policy_version"] == 3),
        "{proxies:?}"
    );

    // The viewer's refused rollback and its page views are in the control plane's own
    // signed audit chain, as API calls are (read once the demo stopped and it was flushed).
    drop(demo);
    let chain = chain_lines(&data.join("cp/audit"));
    let viewer_said = |action: &str, allowed: bool| {
        chain.iter().any(|l| {
            l.contains("\"principal\":\"spiffe://signet.local/signet/operator/viewer\"")
                && l.contains(&format!("\"action\":\"{action}\""))
                && l.contains(&format!("\"allowed\":{allowed}"))
        })
    };
    assert!(
        viewer_said("policy.rollback", false),
        "no refused rollback recorded"
    );
    assert!(viewer_said("read", true), "no page view recorded");
}

/// Every line of the JSON-lines files under `dir`, but the copies of the proxies' chains.
fn chain_lines(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "received") {
                out.extend(chain_lines(&path));
            }
        } else if path.extension().is_some_and(|e| e == "jsonl") {
            out.extend(
                std::fs::read_to_string(&path)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned),
            );
        }
    }
    out
}

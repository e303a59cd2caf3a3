//! The deploy/ monitoring files against the real tools and a running demo mesh:
//! `promtool check config` and `check rules` on deploy/prometheus; every metric the Grafana
//! dashboards and the rules name is one the proxies and the control plane expose; and a real
//! Prometheus, run with those rules, scrapes `meshctl demo` and answers a PromQL query for
//! the frontend's request rate.
#![expect(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure is the test failing"
)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// `GET path` over HTTP/1.0: the body.
fn get(addr: &str, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// Metric names an exposition declares (a histogram's `_bucket`, `_sum` and `_count` too).
fn declared(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// `signet_...` and `signet:...` names in a PromQL expression.
fn named(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("signet") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
        {
            end += 1;
        }
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let name = &expr[start..end];
        if !preceded && (name.starts_with("signet_") || name.starts_with("signet:")) {
            out.push(name.to_owned());
        }
        i = end.max(start + 1);
    }
    out
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy().join("prometheus"))
        .output()
        .expect("promtool (./scripts/test.sh installs Debian's prometheus)");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SIGTERM, as a supervisor stops it: the demo stops its processes on the way out
        // (SIGKILL would leave them running).
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn deploy_monitoring_checks_out_and_a_real_prometheus_scrapes_the_demo() {
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "rules", "rules/recording.yml", "rules/alerts.yml"]);

    // The demo mesh, running long enough to be scraped.
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(["demo", "--duration", "60s", "--data-dir"])
        .arg(dir.path().join("demo"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = demo.stdout.take().unwrap();
    let _demo = Killed(demo);
    let mut proxies = Vec::new();
    let mut cp_metrics = String::new();
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    for line in lines.by_ref() {
        if let Some((_, url)) = line.split_once("proxy admin http://") {
            let name = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            proxies.push((name, url.trim().to_owned()));
        }
        if let Some((_, rest)) = line.split_once("metrics http://") {
            cp_metrics = rest.trim_end_matches("/metrics").trim().to_owned();
        }
        if line.starts_with("Try, in another terminal") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    assert_eq!(proxies.len(), 4, "{proxies:?}");
    assert!(!cp_metrics.is_empty());

    // Every name the dashboards and the alerts use is exposed, or recorded by a rule.
    let mut exposed = declared(&get(&cp_metrics, "/metrics"));
    for (_, admin) in &proxies {
        exposed.extend(declared(&get(admin, "/metrics")));
    }
    let recording =
        std::fs::read_to_string(deploy().join("prometheus/rules/recording.yml")).unwrap();
    let alerts = std::fs::read_to_string(deploy().join("prometheus/rules/alerts.yml")).unwrap();
    let recorded: BTreeSet<String> = recording
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(str::to_owned)
        .collect();
    assert!(recorded.contains("signet:http_requests:rate1m"));
    let known = |name: &str| exposed.contains(name) || recorded.contains(name);
    for name in named(&recording).into_iter().chain(named(&alerts)) {
        assert!(
            known(&name),
            "the rules use `{name}`, which nothing exposes"
        );
    }
    let mut dashboards = 0;
    for entry in std::fs::read_dir(deploy().join("grafana")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        dashboards += 1;
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for key in ["uid", "title", "schemaVersion", "panels", "templating"] {
            assert!(!doc[key].is_null(), "{}: no `{key}`", path.display());
        }
        let panels = doc["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{}", path.display());
        let mut ids = BTreeSet::new();
        for panel in panels {
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{}: duplicate panel id",
                path.display()
            );
            assert!(panel["gridPos"]["w"].as_u64().is_some(), "{panel}");
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{panel}");
            for target in targets {
                let expr = target["expr"].as_str().unwrap();
                let names = named(expr);
                assert!(
                    !names.is_empty(),
                    "{}: `{expr}` names no Signet metric",
                    path.display()
                );
                for name in names {
                    assert!(
                        known(&name),
                        "{}: `{expr}` uses `{name}`, which nothing exposes",
                        path.display()
                    );
                }
            }
        }
        for variable in doc["templating"]["list"].as_array().unwrap() {
            if let Some(query) = variable["definition"].as_str() {
                for name in named(query) {
                    assert!(known(&name), "{}: variable uses `{name}`", path.display());
                }
            }
        }
    }
    assert_eq!(dashboards, 4);

    // A real Prometheus with the deploy rules, scraping every second.
    let run = dir.path().join("prometheus");
    std::fs::create_dir_all(run.join("rules")).unwrap();
    std::fs::create_dir_all(run.join("targets")).unwrap();
    for rules in ["recording.yml", "alerts.yml"] {
        std::fs::copy(
            deploy().join("prometheus/rules").join(rules),
            run.join("rules").join(rules),
        )
        .unwrap();
    }
    let config = std::fs::read_to_string(deploy().join("prometheus/prometheus.yml"))
        .unwrap()
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("127.0.0.1:15012", &cp_metrics);
    std::fs::write(run.join("prometheus.yml"), config).unwrap();
    let targets: Vec<serde_json::Value> = proxies
        .iter()
        .map(|(name, admin)| {
            serde_json::json!({"targets": [admin], "labels": {"mesh_service": name, "mesh_namespace": "shop"}})
        })
        .collect();
    std::fs::write(
        run.join("targets/proxies.json"),
        serde_json::to_string(&targets).unwrap(),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            run.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            run.join("data").display()
        ))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (./scripts/test.sh installs it)");
    let _prometheus = Killed(prometheus);

    // The frontend's outbound request rate, through the recording rule.
    let query = "/api/v1/query?query=signet%3Ahttp_requests%3Arate1m%7Bmesh_service%3D%22frontend%22%2Cdirection%3D%22outbound%22%7D";
    let started = Instant::now();
    let rate = loop {
        let answer = std::panic::catch_unwind(|| get(&listen, query)).unwrap_or_default();
        let value: Option<f64> = serde_json::from_str::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| {
                v["data"]["result"]
                    .as_array()?
                    .iter()
                    .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
                    .reduce(f64::max)
            });
        if let Some(rate) = value.filter(|r| *r > 0.0) {
            break rate;
        }
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "no frontend request rate from Prometheus: {answer}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("Prometheus: the frontend sends {rate:.1} requests/s");
    // Both jobs' targets are up.
    let up = get(&listen, "/api/v1/query?query=sum%20by%20(job)%20(up)");
    assert!(
        up.contains("\"signet-cp\"") && up.contains("\"signet-proxy\""),
        "{up}"
    );
}

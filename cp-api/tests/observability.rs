//! Observability end to end: spans from three proxies joined into one trace that an app
//! instrumented with the OpenTelemetry SDK started, collected by a real OTLP receiver over
//! gRPC and HTTP; access-log lines; audit records joined to their spans; golden metrics;
//! an unreachable collector.
#![expect(clippy::panic, reason = "tests: a failure is the test failing")]

use std::time::Duration;

use signet_tests::app::EchoApp;
use signet_tests::control::{ControlPlane, workspace_binary};
use signet_tests::mesh::{CART, FRONTEND, TD, proxy_toml};
use signet_tests::otlp::{Receiver, RelayApp, sdk_client};
use signet_tests::process::ProxyProcess;

const PAYMENTS: &str = "spiffe://mesh.test/ns/shop/sa/payments";

/// The mesh's policies (the frontend reads the cart), and the cart reads payments.
fn policies() -> String {
    signet_tests::mesh::policies("*")
        + &format!(
            r#"
@id("cart-reads-payments")
permit (principal == Mesh::Workload::"{CART}", action in Mesh::Action::"read",
        resource == Mesh::Service::"payments");
"#
        )
}

fn tracing(endpoint: &str, protocol: &str) -> String {
    format!(
        "\n[tracing]\notlp_endpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\nsample_ratio = 1.0\nflush_interval = \"100ms\"\n"
    )
}

/// Waits until `GET path` through `port` answers 200.
async fn reachable(port: std::net::SocketAddr, path: &str) {
    let started = std::time::Instant::now();
    loop {
        let attempt = async {
            let mut http = signet_tests::client::Http::h1(port).await;
            http.get("x", path, &[]).await.status.as_u16()
        };
        let status = tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .unwrap_or(0);
        if status == 200 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{path} through {port}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn span<'a>(spans: &'a [serde_json::Value], service: &str, kind: u64) -> &'a serde_json::Value {
    spans
        .iter()
        .find(|s| s["resource"]["service.name"] == service && s["kind"] == kind)
        .unwrap_or_else(|| panic!("no kind-{kind} span of {service} in {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_through_three_proxies_is_one_trace_with_logs_and_audit_joined() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(
        &dir.path().join("cp"),
        &["--trust-domain", TD, "--heartbeat-interval", "1s"],
    );
    let file = dir.path().join("policies.cedar");
    std::fs::write(&file, policies()).unwrap();
    cp.meshctl_ok(&[
        "authz",
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--allow-widening",
    ]);
    let receiver = Receiver::start();
    let payments_app = EchoApp::start().await;
    let cart_app = RelayApp::start().await;
    let binary = workspace_binary("signet-proxy");
    let access_log = dir.path().join("frontend-access.log");
    let _payments = ProxyProcess::start(
        &binary,
        dir.path(),
        "payments",
        &(proxy_toml(
            &cp,
            "payments",
            Some(&cp.token(PAYMENTS)),
            payments_app.addr,
            &[],
        ) + &tracing(&receiver.grpc, "grpc")),
    );
    // The cart's proxy exports over OTLP/HTTP, the others over gRPC.
    let cart = ProxyProcess::start(
        &binary,
        dir.path(),
        "cart",
        &(proxy_toml(
            &cp,
            "cart",
            Some(&cp.token(CART)),
            cart_app.addr,
            &["payments"],
        ) + &tracing(&receiver.http, "http/protobuf")),
    );
    cart_app.forward_to(cart.outbound["payments"]);
    let frontend = ProxyProcess::start(
        &binary,
        dir.path(),
        "frontend",
        &(proxy_toml(
            &cp,
            "frontend",
            Some(&cp.token(FRONTEND)),
            payments_app.addr,
            &["cart"],
        ) + &tracing(&receiver.grpc, "grpc")
            + &format!(
                "\n[access_log]\npath = \"{}\"\nformat = \"json\"\n",
                access_log.display()
            )),
    );
    reachable(frontend.outbound["cart"], "/api/warm-up").await;

    // An app instrumented with the OpenTelemetry SDK starts the trace.
    let url = format!("http://{}/api/checkout", frontend.outbound["cart"]);
    let client = sdk_client(&url, &receiver.http);
    assert_eq!(client["status"], 200, "{client}");
    assert!(
        client["sent"]["traceparent"].is_string(),
        "the SDK sent its context: {client}"
    );
    let trace_id = client["trace_id"].as_str().unwrap();
    let spans = receiver.trace(trace_id, 5).await;
    assert_eq!(spans.len(), 5, "{spans:#?}");

    // One trace, each span the child of the hop before it.
    let root = span(&spans, "shopper", 3);
    assert_eq!(root["span_id"], client["span_id"]);
    let frontend_out = span(&spans, "frontend", 3);
    let cart_in = span(&spans, "cart", 2);
    let cart_out = span(&spans, "cart", 3);
    let payments_in = span(&spans, "payments", 2);
    assert_eq!(frontend_out["parent_span_id"], root["span_id"]);
    assert_eq!(cart_in["parent_span_id"], frontend_out["span_id"]);
    assert_eq!(cart_out["parent_span_id"], cart_in["span_id"]);
    assert_eq!(payments_in["parent_span_id"], cart_out["span_id"]);
    assert_eq!(cart_in["via"], "http");
    assert_eq!(frontend_out["via"], "grpc");
    for s in [frontend_out, cart_in, cart_out, payments_in] {
        let a = &s["attributes"];
        assert_eq!(a["http.request.method"], "GET", "{s}");
        assert_eq!(a["url.path"], "/api/checkout", "{s}");
        assert_eq!(a["http.response.status_code"], 200, "{s}");
        assert!(a["server.address"].is_string(), "{s}");
        assert!(a["network.peer.address"].is_string(), "{s}");
        assert!(s["end"].as_u64() >= s["start"].as_u64(), "{s}");
        assert_eq!(s["scope"], "signet-proxy");
    }
    // Outbound: where it went and who answered.
    let a = &frontend_out["attributes"];
    assert_eq!(a["signet.peer.spiffe_id"], CART);
    assert_eq!(a["signet.retry.attempt"], 0);
    assert!(a["signet.upstream.endpoint"].is_string(), "{a}");
    assert_eq!(cart_out["attributes"]["signet.peer.spiffe_id"], PAYMENTS);
    // Inbound: who called and what decided.
    let a = &cart_in["attributes"];
    assert_eq!(a["signet.peer.spiffe_id"], FRONTEND);
    assert_eq!(a["signet.authz.decision"], "allow");
    assert_eq!(
        a["signet.authz.policies"],
        serde_json::json!(["frontend-reads-cart"])
    );
    assert_eq!(
        payments_in["attributes"]["signet.authz.policies"],
        serde_json::json!(["cart-reads-payments"])
    );
    assert_eq!(cart_in["resource"]["signet.spiffe_id"], CART);

    // The frontend's access log has the request's line, joined to the trace.
    let started = std::time::Instant::now();
    let line = loop {
        let text = std::fs::read_to_string(&access_log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["trace_id"] == trace_id);
        if let Some(line) = found {
            break line;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(line["direction"], "outbound");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/api/checkout");
    assert_eq!(line["status"], 200);
    assert_eq!(line["source"], FRONTEND);
    assert_eq!(line["destination"], CART);
    assert_eq!(line["peer_service"], "cart");
    assert_eq!(line["route"], "default");
    assert_eq!(line["span_id"], frontend_out["span_id"]);
    assert_eq!(
        line["upstream"],
        a_str(&frontend_out["attributes"]["signet.upstream.endpoint"])
    );
    assert!(line["response_bytes"].as_u64().unwrap() > 0, "{line}");
    assert!(
        line["duration_ms"].as_f64().unwrap() >= line["upstream_duration_ms"].as_f64().unwrap()
    );

    // The cart's audit record of the request carries the trace and its own span.
    let started = std::time::Instant::now();
    loop {
        let out = cp.meshctl_ok(&[
            "audit",
            "tail",
            "-o",
            "json",
            "--resource",
            "cart",
            "-n",
            "1000",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let joined = v["records"].as_array().unwrap().iter().any(|r| {
            r.to_string().contains(trace_id)
                && r.to_string().contains(cart_in["span_id"].as_str().unwrap())
        });
        if joined {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Golden metrics, per edge, on both sides.
    let (_, text) = frontend.admin_get("/metrics").await;
    assert!(
        text.contains("signet_proxy_http_request_duration_seconds_count{direction=\"outbound\",peer=\"cart\",route=\"default\",class=\"2xx\"}"),
        "{text}"
    );
    let (_, text) = cart.admin_get("/metrics").await;
    // The whole exposition, with every family this test made, passes promtool.
    let checked = signet_tests::validators::promtool_metrics(&text);
    assert!(checked.ok, "{}", checked.report);
    assert!(
        text.contains("signet_proxy_http_request_duration_seconds_count{direction=\"inbound\",peer=\"frontend\",route=\"default\",class=\"2xx\"}"),
        "{text}"
    );
    assert!(
        text.contains("signet_proxy_http_request_duration_seconds_count{direction=\"outbound\",peer=\"payments\",route=\"default\",class=\"2xx\"}"),
        "{text}"
    );
}

fn a_str(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_collector_costs_spans_not_requests() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mesh = signet_tests::mesh::Mesh::start(&[]).await;
    let app = EchoApp::start().await;
    let traced = ProxyProcess::start(
        &workspace_binary("signet-proxy"),
        mesh.dir.path(),
        "traced",
        &(proxy_toml(
            &mesh.cp,
            "frontend",
            Some(&mesh.cp.token(FRONTEND)),
            app.addr,
            &["cart"],
        )
        .replace("frontend-state", "traced-state")
            + &tracing(&nowhere, "grpc")),
    );
    reachable(traced.outbound["cart"], "/api/items").await;
    for i in 0..200 {
        let mut http = signet_tests::client::Http::h1(traced.outbound["cart"]).await;
        let reply = http.get("cart", &format!("/api/items/{i}"), &[]).await;
        assert_eq!(reply.status, 200);
    }
    let dropped = traced
        .metric_reaching(
            "signet_proxy_trace_spans_dropped_total{reason=\"export-failed\"}",
            1,
        )
        .await;
    assert!(dropped >= 1);
    assert_eq!(
        traced
            .metric("signet_proxy_trace_spans_exported_total")
            .await,
        0
    );
    // Random paths add no series: one edge, one route, one class.
    let (_, text) = traced.admin_get("/metrics").await;
    let series = text
        .lines()
        .filter(|l| l.starts_with("signet_proxy_http_request_duration_seconds_count"))
        .count();
    assert_eq!(series, 1, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn meshctl_stats_shows_each_services_golden_signals_from_the_proxies() {
    let mesh = signet_tests::mesh::Mesh::start(&[]).await;
    for _ in 0..60 {
        assert_eq!(mesh.call("/api/items").await.0, 200);
    }
    for _ in 0..15 {
        assert_eq!(mesh.call("/admin").await.0, 403);
    }
    // Reported with the next heartbeats (every second here).
    let started = std::time::Instant::now();
    let cart = loop {
        let out = mesh
            .cp
            .meshctl_ok(&["stats", "cart", "--window", "1m", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let row = v["rows"][0].clone();
        if row["requests"].as_u64() >= Some(75) {
            break row;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{out}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(cart["service"], "cart");
    assert_eq!(cart["namespace"], "shop");
    // Ours, and the few the mesh's start-up made (before its first report, or not).
    let requests = cart["requests"].as_u64().unwrap();
    assert!((75..=85).contains(&requests), "{cart}");
    // Denials are answers (4xx), not failures: every request succeeded.
    assert_eq!(cart["success_rate"], 1.0, "{cart}");
    assert!(
        cart["requests_per_second"].as_f64().unwrap() > 0.0,
        "{cart}"
    );
    let (p50, p99) = (
        cart["latency_ms_p50"].as_f64().unwrap(),
        cart["latency_ms_p99"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99, "{cart}");

    // Per edge: the frontend calls the cart.
    let out = mesh
        .cp
        .meshctl_ok(&["stats", "--edges", "--window", "1m", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let edge = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "cart")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(edge["caller"], "frontend", "{out}");
    // Our 75 at least; the service's own count may also hold a start-up call from another
    // caller, and a heartbeat may land between the two reads.
    let edge_requests = edge["requests"].as_u64().unwrap_or(0);
    assert!((75..=85).contains(&edge_requests), "{out}");
    let table = mesh.cp.meshctl_ok(&["stats", "--edges"]);
    assert!(
        table.contains("CALLER") && table.contains("frontend") && table.contains("100.00%"),
        "{table}"
    );

    // --watch redraws in place until interrupted.
    let mut watch = mesh
        .cp
        .meshctl_command(&["stats", "--edges", "--watch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.matches("\x1b[2J\x1b[H").count() >= 2, "{screen:?}");
    assert!(screen.matches("CALLER").count() >= 2, "{screen}");

    // The control plane's own metrics: valid exposition, and the calls this test made.
    let text = cp_metrics(&mesh.cp).await;
    let checked = signet_tests::validators::promtool_metrics(&text);
    assert!(checked.ok, "{}\n{text}", checked.report);
    for series in [
        "signet_cp_grpc_requests_total{method=\"/signet.v1.Registry/Heartbeat\",code=\"0\"}",
        "signet_cp_grpc_requests_total{method=\"/signet.v1.Identity/Issue\",code=\"0\"}",
        "signet_cp_api_requests_total{route=\"/v1/stats\",method=\"GET\",class=\"2xx\"}",
        "signet_cp_svid_issuance_duration_seconds_count{kind=\"issue\",outcome=\"ok\"} 2",
        "signet_cp_proxies{app_health=\"unknown\"} 2",
        "signet_cp_config_push_lag_seconds_count{stream=\"config\"}",
        "signet_cp_store_duration_seconds_count{operation=\"put_member\"}",
        "signet_cp_ca_expiry_seconds{role=",
        "signet_cp_policy_version 1",
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
    let streams = text
        .lines()
        .find_map(|l| l.strip_prefix("signet_cp_streams_open "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(
        streams >= Some(4.0),
        "two proxies, config and trust each: {text}"
    );

    // Bad input: one line, non-zero.
    for (args, says) in [
        (vec!["stats", "--window", "0s"], "more than zero"),
        (vec!["stats", "--window", "1h"], "between 1 and 900"),
    ] {
        let out = mesh.cp.meshctl(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        // One line says what is wrong (a usage error adds where to find help).
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains(says), "{args:?}: {err}");
    }
    // The refused window was counted as the client error it is.
    let text = cp_metrics(&mesh.cp).await;
    let series = "signet_cp_api_requests_total{route=\"/v1/stats\",method=\"GET\",class=\"4xx\"} 1";
    assert!(text.contains(series), "{text}");
}

/// The control plane's `/metrics`.
async fn cp_metrics(cp: &ControlPlane) -> String {
    let mut http = signet_tests::client::Http::h1(cp.metrics).await;
    let reply = http.get("cp", "/metrics", &[]).await;
    assert_eq!(reply.status, 200);
    String::from_utf8_lossy(&reply.body).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_plane_traces_its_api_grpc_calls_and_issuance() {
    let receiver = Receiver::start();
    let mesh = signet_tests::mesh::Mesh::start(&[
        "--otlp-endpoint",
        &receiver.grpc,
        "--trace-sample-ratio",
        "1",
    ])
    .await;
    mesh.cp.meshctl_ok(&["status"]);
    let started = std::time::Instant::now();
    let (issue, sign, status) = loop {
        let spans = receiver.spans();
        let find = |name: &str| spans.iter().find(|s| s["name"] == name).cloned();
        if let (Some(issue), Some(sign), Some(status)) = (
            find("signet.v1.Identity/Issue"),
            find("svid.sign"),
            find("GET /v1/status"),
        ) {
            break (issue, sign, status);
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{spans:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(issue["resource"]["service.name"], "signet-cp");
    assert_eq!(issue["kind"], 2);
    assert_eq!(issue["attributes"]["rpc.system"], "grpc");
    assert_eq!(issue["attributes"]["rpc.grpc.status_code"], "0");
    // Signing is a span of its own, under one of the Issue calls.
    assert_eq!(sign["kind"], 1);
    let issues: Vec<serde_json::Value> = receiver
        .spans()
        .into_iter()
        .filter(|s| s["name"] == "signet.v1.Identity/Issue")
        .collect();
    assert!(
        issues
            .iter()
            .any(|i| i["span_id"] == sign["parent_span_id"] && i["trace_id"] == sign["trace_id"]),
        "{sign} under one of {issues:#?}"
    );
    assert_eq!(sign["attributes"]["signet.svid.kind"], "issue");
    assert_eq!(sign["attributes"]["signet.ca.backend"], "builtin");
    assert_eq!(status["attributes"]["http.route"], "/v1/status");
    assert_eq!(status["attributes"]["http.response.status_code"], 200);

    // A bad tracing flag: one line, exit 1, nothing started.
    let out = std::process::Command::new(workspace_binary("signet-cp"))
        .args(["--data-dir"])
        .arg(mesh.dir.path().join("other"))
        .args([
            "--otlp-endpoint",
            &receiver.grpc,
            "--otlp-protocol",
            "carrier-pigeon",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--otlp-protocol: `carrier-pigeon`"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

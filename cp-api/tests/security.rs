//! Attacks on a real `signet-cp`, as an operator with a narrow role, a workload, or anyone
//! who can reach its ports would try them. Each test fails on a control plane with the hole.
#![expect(clippy::unwrap_used, reason = "tests: a failure is the test failing")]

use std::time::{Duration, SystemTime};

use signet_tests::control::ControlPlane;

const TD: &str = "sec.test";
const ADMIN: &str = "spiffe://sec.test/signet/operator/admin";
const CI: &str = "spiffe://sec.test/signet/operator/ci";
const CART: &str = "spiffe://sec.test/ns/shop/sa/cart";

fn start(dir: &std::path::Path, extra: &[&str]) -> ControlPlane {
    let mut args = vec!["--trust-domain", TD];
    args.extend_from_slice(extra);
    ControlPlane::start(&dir.join("cp"), &args)
}

#[tokio::test]
async fn an_operator_allowed_token_create_cannot_mint_an_operator_identity() {
    let dir = tempfile::tempdir().unwrap();
    let mut cp = start(dir.path(), &[]);
    // The CI role may onboard workloads of the shop namespace, and nothing else.
    let operators = cp.data_dir.join("operators.cedar");
    let mut text = std::fs::read_to_string(&operators).unwrap();
    text.push_str(&format!(
        r#"
@id("ci-onboards-shop")
permit (principal == Signet::Operator::"{CI}",
        action == Signet::Action::"token.create", resource)
when {{ context.path like "/ns/shop/*" }};
"#
    ));
    std::fs::write(&operators, text).unwrap();
    cp.stop();
    cp.restart();
    let ci = cp.enroll(dir.path(), CI);

    let out = cp.meshctl_as(&ci, &["token", "create", "--spiffe-id", CART]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for target in [ADMIN, CI, "spiffe://sec.test/signet/operator/new"] {
        let out = cp.meshctl_as(&ci, &["token", "create", "--spiffe-id", target]);
        assert_eq!(out.status.code(), Some(1), "{target}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("`{CI}` may not `operator.enroll` (default-deny)")),
            "{target}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let out = cp.meshctl_as(
        &ci,
        &[
            "token",
            "create",
            "--spiffe-id",
            "spiffe://sec.test/ns/bank/sa/ledger",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    // Nor can the role add deny-list entries or read the audit trail.
    let out = cp.meshctl_as(&ci, &["identity", "deny", "--spiffe-id", CART]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not `deny.add`"));
    // The refusals are on record, naming the identity that was asked for.
    let actions = cp.rest("GET", "/v1/operator-actions", None, None).await;
    let refused: Vec<&serde_json::Value> = actions.json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["principal"] == CI && a["allowed"] == false)
        .collect();
    assert!(
        refused
            .iter()
            .any(|a| a["action"] == "operator.enroll" && a["target"] == ADMIN),
        "{refused:?}"
    );
}

#[tokio::test]
async fn svid_lifetimes_never_exceed_the_configured_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &["--svid-ttl", "10m"]);
    let (reply, _) = cp.svid_over_rest(CART, Some(30 * 86_400)).await;
    let not_after = reply.json["not_after"].as_u64().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let lifetime = Duration::from_millis(not_after.saturating_sub(now));
    assert!(lifetime <= Duration::from_secs(600), "{lifetime:?}");
    assert!(lifetime > Duration::from_secs(500), "{lifetime:?}");
}

#[tokio::test]
async fn refused_or_malformed_requests_leave_no_large_trace() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]);
    // A workload's certificate authenticates, but it is no operator.
    let resolver = cp.resolver_over_rest(CART).await;

    // Over the 64 KiB limit of small endpoints, yet small enough to be written whole before
    // the refusal comes back (a larger body races the server closing the connection).
    let token_for = |spiffe_id: String| {
        let body = serde_json::json!({ "spiffe_id": spiffe_id });
        cp.rest_as(
            resolver.clone(),
            "POST",
            "/v1/tokens",
            Some(""),
            Some(body.to_string().into_bytes()),
        )
    };
    let huge = "x".repeat(200 * 1024);
    let reply = token_for(format!("spiffe://sec.test/{huge}")).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    // Small enough to be read, too long to be an ID: refused before anything is recorded.
    let long = "x".repeat(3000);
    for _ in 0..3 {
        let reply = token_for(format!("spiffe://sec.test/{long}")).await;
        assert_eq!(reply.status, 400, "{reply:?}");
    }
    // A valid request the workload may not make is recorded, at its bounded size.
    let reply = token_for(CART.to_owned()).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let actions = cp.rest("GET", "/v1/operator-actions", None, None).await;
    assert_eq!(actions.status, 200);
    assert!(actions.len < 64 * 1024, "{} bytes", actions.len);
    let by_cart: Vec<&serde_json::Value> = actions.json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["principal"] == CART)
        .collect();
    assert_eq!(by_cart.len(), 1, "{by_cart:?}");
    assert_eq!(by_cart[0]["target"], CART);

    // The log is read a page at a time.
    let first = cp
        .rest("GET", "/v1/operator-actions?limit=2", None, None)
        .await;
    let page = first.json["actions"].as_array().unwrap();
    assert_eq!(page.len(), 2, "{first:?}");
    let before = first.json["next_before"].as_i64().unwrap();
    assert_eq!(before, page[1]["id"].as_i64().unwrap());
    let next = cp
        .rest(
            "GET",
            &format!("/v1/operator-actions?limit=2&before={before}"),
            None,
            None,
        )
        .await;
    let older = next.json["actions"].as_array().unwrap();
    assert!(older.iter().all(|a| a["id"].as_i64().unwrap() < before));
    // As are the deny-list, the proxies and the services.
    for serial in ["0a", "0b", "0c"] {
        let body = serde_json::json!({ "serial": serial, "wait_seconds": 0 });
        let reply = cp
            .rest(
                "POST",
                "/v1/deny",
                None,
                Some(body.to_string().into_bytes()),
            )
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let first = cp.rest("GET", "/v1/deny?limit=2", None, None).await;
    assert_eq!(
        first.json["entries"].as_array().unwrap().len(),
        2,
        "{first:?}"
    );
    let after = first.json["next_after"].as_str().unwrap().to_owned();
    let rest = cp
        .rest(
            "GET",
            &format!("/v1/deny?limit=2&after={after}"),
            None,
            None,
        )
        .await;
    assert_eq!(rest.json["entries"][0]["value"], "0c", "{rest:?}");
    assert!(rest.json["next_after"].is_null(), "{rest:?}");
    for listing in ["/v1/proxies", "/v1/services", "/v1/deny"] {
        let reply = cp
            .rest("GET", &format!("{listing}?limit=0"), None, None)
            .await;
        assert_eq!(reply.status, 400, "{listing}: {reply:?}");
    }
    for bad in ["limit=0", "limit=5000", "before=x"] {
        for listing in ["/v1/operator-actions", "/v1/policies/history"] {
            let reply = cp
                .rest("GET", &format!("{listing}?{bad}"), None, None)
                .await;
            assert_eq!(reply.status, 400, "{listing}?{bad}: {reply:?}");
        }
    }
}

/// Connects to `addr` from `source` (another loopback address).
async fn connect_from(source: &str, addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Whether the server has closed `stream` within `within` (a read returns end or error).
async fn closed_within(stream: &mut (impl tokio::io::AsyncRead + Unpin), within: Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn floods_and_slow_clients_do_not_hold_the_control_planes_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]);
    // Plain TCP connections that never speak TLS, from one address, on both listeners: past
    // that address's share of handshakes they are closed at once.
    for (listener, share) in [(cp.api, 16), (cp.grpc, 64)] {
        let mut flood = Vec::new();
        for _ in 0..share + 20 {
            flood.push(connect_from("127.0.0.2", listener).await);
        }
        // Those refused are closed as they are accepted; give the last of them a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut closed = 0;
        for stream in &mut flood {
            if closed_within(stream, Duration::from_millis(5)).await {
                closed += 1;
            }
        }
        assert!(closed >= 20, "{listener}: {closed} closed");
        // Operators elsewhere are served meanwhile.
        let status = cp.rest("GET", "/v1/status", None, None).await;
        assert_eq!(status.status, 200, "{status:?}");
    }

    // A slow client: TLS completes, then half a request head and nothing more. It is cut
    // after the header-read timeout (5 s), not kept for as long as it likes.
    let tls = signet_tests::control::control_plane_tls(
        &cp.bundle(),
        std::sync::Arc::new(signet_spiffe::tls::SvidResolver::new()),
        b"http/1.1",
    );
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let tcp = connect_from("127.0.0.3", cp.api).await;
    let name = rustls::pki_types::ServerName::IpAddress(cp.api.ip().into());
    let mut slow = connector.connect(name, tcp).await.unwrap();
    use tokio::io::AsyncWriteExt as _;
    slow.write_all(b"GET /v1/status HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert!(closed_within(&mut slow, Duration::from_secs(12)).await);
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

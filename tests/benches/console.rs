//! The web console's pages against a real `signet-cp` (release build) holding a large mesh:
//! 100 services with 10 registered proxies each (1,000 registrations, made over the
//! registry's gRPC API with each service's own SVID, redeemed over REST), 100 policies (each service readable by
//! its caller) in two versions, and two heartbeats from every proxy reporting the requests
//! on its edge (a tree five deep). Each page is fetched 20 times over a fresh TLS
//! connection with a signed-in session; the table gives the time from sending the request
//! to the last byte of the page.
//!
//! `cargo build --release -p signet-cp && cargo bench -p signet-tests --bench console`
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: a failure stops it with the reason"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use signet_cp::api::v1 as pb;
use signet_spiffe::tls::SvidResolver;
use signet_spiffe::{TrustBundle, TrustDomain, WorkloadKey};
use signet_tests::control::{ControlPlane, grpc_channel};
use signet_tests::percentile;

const TD: &str = "bench.test";
const SERVICES: usize = 100;
const PER_SERVICE: usize = 10;
const TIMES: usize = 20;

/// The service that calls service `i` (none for the first): a tree with four callees per
/// caller, five deep, as a mesh of 100 services behind one gateway might be.
const fn caller_of(i: usize) -> Option<usize> {
    if i == 0 { None } else { Some((i - 1) / 4) }
}

fn policies(version: usize) -> String {
    let mut text = String::from(
        "@id(\"bench-connect\") permit (principal in Mesh::Namespace::\"bench\", action == Mesh::Action::\"connect\", resource in Mesh::Namespace::\"bench\");\n",
    );
    for i in 1..SERVICES {
        let c = caller_of(i).unwrap_or(0);
        text.push_str(&format!(
            "@id(\"svc{i:03}-read-by-svc{c:03}\") permit (principal == Mesh::Workload::\"spiffe://{TD}/ns/bench/sa/svc{c:03}\", action in Mesh::Action::\"read\", resource == Mesh::Service::\"svc{i:03}\") when {{ context.path like \"/api/{version}/*\" }};\n",
        ));
    }
    text
}

/// What a proxy of service `i` reports after `round` seconds: requests in from its caller.
fn stats(i: usize, round: u64) -> Vec<pb::TrafficStats> {
    caller_of(i)
        .map(|c| pb::TrafficStats {
            direction: "inbound".into(),
            peer: format!("svc{c:03}"),
            route: "default".into(),
            class: "2xx".into(),
            count: 50 * round,
            sum_seconds: 0.002 * (50 * round) as f64,
            ..Default::default()
        })
        .into_iter()
        .collect()
}

/// An SVID for `service`'s identity, redeemed over `POST /v1/svid` with a join token the
/// admin makes over REST (no `meshctl`: only the release `signet-cp` is needed).
async fn join(cp: &ControlPlane, td: &TrustDomain, service: &str) -> Arc<SvidResolver> {
    let id = td.service_account("bench", service).unwrap();
    let body = |v: serde_json::Value| Some(v.to_string().into_bytes());
    let token = cp
        .rest(
            "POST",
            "/v1/tokens",
            None,
            body(serde_json::json!({ "spiffe_id": id.as_str() })),
        )
        .await;
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr(&id).unwrap();
    let reply = cp
        .rest(
            "POST",
            "/v1/svid",
            Some(""),
            body(serde_json::json!({
                "join_token": token.json["token"],
                "csr": signet_spiffe::pem_block("CERTIFICATE REQUEST", csr.as_ref()),
            })),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    cp.resolver_of(&reply, &key)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // Registrations outlive the benchmark without heartbeats.
        let cp = ControlPlane::start(
            &dir.path().join("cp"),
            &["--trust-domain", TD, "--heartbeat-interval", "120s"],
        );
        let td = TrustDomain::new(TD).unwrap();
        let bundle = TrustBundle::from_pem(
            td.clone(),
            &std::fs::read_to_string(cp.setting("SIGNET_CA")).unwrap(),
        )
        .unwrap();
        for version in 1..=2 {
            let body = serde_json::json!({
                "files": [{ "name": "bench.cedar", "text": policies(version) }],
                "allow_widening": true,
                "wait_seconds": 0,
            });
            let r = cp
                .rest(
                    "POST",
                    "/v1/policies",
                    None,
                    Some(body.to_string().into_bytes()),
                )
                .await;
            assert_eq!(r.status, 200, "{r:?}");
        }
        let begun = Instant::now();
        let mut registries = Vec::new();
        for s in 0..SERVICES {
            let service = format!("svc{s:03}");
            let resolver = join(&cp, &td, &service).await;
            let mut registry = pb::registry_client::RegistryClient::new(grpc_channel(
                cp.grpc,
                signet_tests::control::control_plane_tls(&bundle, resolver, b"h2"),
            ));
            for p in 0..PER_SERVICE {
                registry
                    .register(pb::RegisterRequest {
                        instance: format!("{s:03}{p:013x}"),
                        service: service.clone(),
                        namespace: "bench".into(),
                        endpoint: format!("10.0.{s}.{p}:8443"),
                        admin: String::new(),
                        policy_version: 2,
                        weight: 100,
                        labels: [("version".to_owned(), format!("v{}", p % 2 + 1))].into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
            registries.push(registry);
        }
        // Two reports a few seconds apart: traffic on every caller -> callee edge.
        for round in 1..=2 {
            for (s, registry) in registries.iter_mut().enumerate() {
                for p in 0..PER_SERVICE {
                    registry
                        .heartbeat(pb::HeartbeatRequest {
                            instance: format!("{s:03}{p:013x}"),
                            policy_version: 2,
                            stats: stats(s, round),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
            }
            if round == 1 {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        }
        println!(
            "{} proxies of {SERVICES} services registered in {:.1} s\n",
            SERVICES * PER_SERVICE,
            begun.elapsed().as_secs_f64()
        );

        // Sign in as the admin.
        let none = || Arc::new(SvidResolver::new());
        let form = cp
            .https(none(), "GET", "/ui/sign-in", &[], Vec::new())
            .await;
        let text = form.text();
        let marker = "name=\"sign_in\" value=\"";
        let start = text.find(marker).unwrap() + marker.len();
        let sign_in = text[start..].split('"').next().unwrap().to_owned();
        let signed = cp
            .https(
                none(),
                "POST",
                "/ui/sign-in",
                &[
                    (
                        "content-type",
                        "application/x-www-form-urlencoded".to_owned(),
                    ),
                    ("cookie", format!("__Host-signet-sign-in={sign_in}")),
                ],
                format!(
                    "sign_in={sign_in}&method=token&token={}",
                    cp.setting("SIGNET_TOKEN")
                )
                .into_bytes(),
            )
            .await;
        let session = signed
            .all("set-cookie")
            .into_iter()
            .find_map(|h| {
                h.strip_prefix("__Host-signet-session=")
                    .map(|v| v.split(';').next().unwrap().to_owned())
            })
            .expect("a session");
        let cookie = format!("__Host-signet-session={session}");

        println!("| page | bytes | p50 | p99 | max |\n|---|---|---|---|---|");
        for path in [
            "/ui",
            "/ui/topology",
            "/ui/services",
            "/ui/services/bench/svc050",
            "/ui/policies",
            "/ui/policies/diff?from=1&to=2",
            "/ui/policies/explain?principal=spiffe%3A%2F%2Fbench.test%2Fns%2Fbench%2Fsa%2Fsvc049&service=svc050&action=GET&path=%2Fapi%2F2%2Fx",
            "/ui/audit",
            "/ui/ca",
        ] {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..TIMES {
                let sent = Instant::now();
                let page = cp
                    .https(
                        none(),
                        "GET",
                        path,
                        &[("cookie", cookie.clone())],
                        Vec::new(),
                    )
                    .await;
                times.push(sent.elapsed());
                assert_eq!(page.status, 200, "{path}: {}", page.text());
                bytes = page.body.len();
                if let (Some(dir), "/ui/topology") = (std::env::var_os("SIGNET_BENCH_PAGES"), path) {
                    std::fs::write(std::path::Path::new(&dir).join("topology.html"), &page.body).unwrap();
                }
            }
            times.sort();
            println!(
                "| `{path}` | {bytes} | {:.1} ms | {:.1} ms | {:.1} ms |",
                percentile(&times, 0.5).as_secs_f64() * 1e3,
                percentile(&times, 0.99).as_secs_f64() * 1e3,
                times.last().unwrap().as_secs_f64() * 1e3,
            );
        }
    });
}

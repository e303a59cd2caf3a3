//! Control-plane benchmarks against a real `signet-cp` (release build, its own process):
//!
//! 1. SVID issuance through the gRPC API: `Issue` (join token + CSR), `Renew` (mTLS with
//!    the current SVID) and `MintJwtSvid` (a JWT-SVID for the caller), 64 calls in flight
//!    over 4 HTTP/2 connections.
//! 2. Apply to enforce: simulated proxies (each its own SVID, TLS connection and config
//!    stream; on each config they rebuild the policy bundle from the slice, as a proxy
//!    does); the time from sending `POST /v1/policies` until the last of N proxies holds the
//!    new version, for N = 1, 10, 100.
//! 3. The control plane's resident memory with the most proxies connected.
//!
//! `cargo build --release -p signet-cp && cargo bench -p signet-tests --bench control_plane`
//! (`-- --postgres` for the store on a real PostgreSQL server the benchmark starts;
//! `-- --postgres --replicas 3` for three replicas on it: issuance spread over them, the
//! simulated proxies spread over them, and the apply sent to the first, so enforcement
//! includes the change feed; `--proxies 1000` adds a round with 1,000 simulated proxies;
//! `--issuance-only` stops after the issuance table)
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: a failure stops it with the reason"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName};
use signet_cp::api::v1 as pb;
use signet_spiffe::tls::SvidResolver;
use signet_spiffe::{SpiffeId, TrustBundle, TrustDomain, WorkloadKey, X509Svid};
use signet_tests::control::{ControlPlane, control_plane_tls, grpc_channel};
use signet_tests::percentile;
use tokio::net::TcpStream;
use tonic::transport::Channel;

const TD: &str = "bench.test";

struct Setup {
    cp: ControlPlane,
    /// Further replicas on the same database (none on SQLite).
    others: Vec<ControlPlane>,
    td: TrustDomain,
    bundle: TrustBundle,
    token: String,
}

fn tls(setup: &Setup, client: Arc<dyn ResolvesClientCert>, alpn: &[u8]) -> rustls::ClientConfig {
    control_plane_tls(&setup.bundle, client, alpn)
}

fn channel(setup: &Setup, client: Arc<dyn ResolvesClientCert>) -> Channel {
    channel_to(setup, client, 0)
}

/// A channel to replica `n` (modulo how many there are).
fn channel_to(setup: &Setup, client: Arc<dyn ResolvesClientCert>, n: usize) -> Channel {
    let replicas = 1 + setup.others.len();
    let addr = match n % replicas {
        0 => setup.cp.grpc,
        i => setup.others[i - 1].grpc,
    };
    grpc_channel(addr, tls(setup, client, b"h2"))
}

fn replicas(setup: &Setup) -> impl Iterator<Item = &ControlPlane> {
    std::iter::once(&setup.cp).chain(setup.others.iter())
}

fn rss(cp: &ControlPlane) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", cp.pid())).unwrap();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kb("VmRSS"), kb("VmHWM"))
}

async fn rest(
    setup: &Setup,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let config = tls(setup, Arc::new(SvidResolver::new()), b"http/1.1");
    let tcp = TcpStream::connect(setup.cp.api).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(setup.cp.api.ip().into()), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "cp")
        .header("authorization", format!("Bearer {}", setup.token))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        status.is_success(),
        "{method} {path}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap()
}

async fn token(setup: &Setup, id: &str) -> String {
    let v = rest(
        setup,
        "POST",
        "/v1/tokens",
        serde_json::json!({ "spiffe_id": id }),
    )
    .await;
    v["token"].as_str().unwrap().to_owned()
}

/// Joins as `id`: the SVID and its key, loaded in a resolver.
async fn join(setup: &Setup, id: &SpiffeId) -> (Arc<SvidResolver>, X509Svid) {
    let token = token(setup, id.as_str()).await;
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr(id).unwrap();
    let mut client =
        pb::identity_client::IdentityClient::new(channel(setup, Arc::new(SvidResolver::new())));
    let response = client
        .issue(pb::IssueRequest {
            join_token: token,
            csr: csr.as_ref().to_vec(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let chain = response
        .chain
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let svid = X509Svid::parse(chain, &setup.td, std::time::SystemTime::now()).unwrap();
    let resolver = Arc::new(SvidResolver::new());
    resolver.update(&svid, &key).unwrap();
    (resolver, svid)
}

async fn issuance(setup: &Setup) {
    const TOKENS: usize = 4_000;
    const IN_FLIGHT: usize = 64;
    let id = setup.td.service_account("bench", "issue").unwrap();
    // Tokens made ahead through the REST API; not part of the measurement.
    let mut tokens = Vec::with_capacity(TOKENS);
    for _ in 0..TOKENS {
        tokens.push(token(setup, id.as_str()).await);
    }
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr(&id).unwrap().as_ref().to_vec();
    let conns = if setup.others.is_empty() {
        4
    } else {
        2 * (1 + setup.others.len())
    };
    let channels: Vec<Channel> = (0..conns)
        .map(|n| channel_to(setup, Arc::new(SvidResolver::new()), n))
        .collect();
    let tokens = Arc::new(std::sync::Mutex::new(tokens));
    let begun = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..IN_FLIGHT {
        let mut client =
            pb::identity_client::IdentityClient::new(channels[n % channels.len()].clone());
        let tokens = Arc::clone(&tokens);
        let csr = csr.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u32;
            loop {
                let Some(token) = tokens.lock().unwrap().pop() else {
                    return done;
                };
                client
                    .issue(pb::IssueRequest {
                        join_token: token,
                        csr: csr.clone(),
                        ttl_seconds: 0,
                    })
                    .await
                    .unwrap();
                done += 1;
            }
        }));
    }
    let mut issued = 0;
    for t in tasks {
        issued += t.await.unwrap();
    }
    let took = begun.elapsed();
    println!(
        "| Issue (join token + CSR) | {issued} | {IN_FLIGHT} | {:.2} s | **{:.0}/s** |",
        took.as_secs_f64(),
        f64::from(issued) / took.as_secs_f64()
    );

    // Renew over mTLS with the SVID just issued.
    const RENEWALS: u32 = 8_000;
    let (resolver, _) = join(setup, &setup.td.service_account("bench", "renew").unwrap()).await;
    let rid = setup.td.service_account("bench", "renew").unwrap();
    let csr = key.csr(&rid).unwrap().as_ref().to_vec();
    let channels: Vec<Channel> = (0..conns)
        .map(|n| channel_to(setup, resolver.clone(), n))
        .collect();
    let took = in_flight(&channels, RENEWALS, IN_FLIGHT, move |mut client| {
        let csr = csr.clone();
        async move {
            client
                .renew(pb::RenewRequest {
                    csr,
                    ttl_seconds: 0,
                })
                .await
                .unwrap();
        }
    })
    .await;
    println!(
        "| Renew (mTLS, current SVID) | {RENEWALS} | {IN_FLIGHT} | {:.2} s | **{:.0}/s** |",
        took.as_secs_f64(),
        f64::from(RENEWALS) / took.as_secs_f64()
    );

    // JWT-SVIDs for the same identity: signed (ES256) and audited per token.
    const MINTS: u32 = 20_000;
    let took = in_flight(&channels, MINTS, IN_FLIGHT, |mut client| async move {
        let minted = client
            .mint_jwt_svid(pb::MintJwtSvidRequest {
                audience: vec!["bench".into()],
                ttl_seconds: 0,
            })
            .await
            .unwrap();
        assert!(!minted.into_inner().token.is_empty());
    })
    .await;
    println!(
        "| MintJwtSvid (mTLS, ES256 JWT-SVID) | {MINTS} | {IN_FLIGHT} | {:.2} s | **{:.0}/s** |",
        took.as_secs_f64(),
        f64::from(MINTS) / took.as_secs_f64()
    );
}

/// Runs `total` calls of `call`, `tasks` at a time over `channels`; how long they took.
async fn in_flight<F, Fut>(channels: &[Channel], total: u32, tasks: usize, call: F) -> Duration
where
    F: Fn(pb::identity_client::IdentityClient<Channel>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let left = Arc::new(std::sync::atomic::AtomicU32::new(total));
    let begun = Instant::now();
    let mut running = Vec::new();
    for n in 0..tasks {
        let client = pb::identity_client::IdentityClient::new(channels[n % channels.len()].clone());
        let left = Arc::clone(&left);
        let call = call.clone();
        running.push(tokio::spawn(async move {
            while left
                .fetch_update(
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            {
                call(client.clone()).await;
            }
        }));
    }
    for t in running {
        t.await.unwrap();
    }
    begun.elapsed()
}

/// A policy set of 12 policies; `round` changes one literal so every apply is a new version.
fn policies(round: usize) -> String {
    let mut text = String::from(
        "@id(\"bench-connect\") permit (principal in Mesh::Namespace::\"bench\", action == Mesh::Action::\"connect\", resource in Mesh::Namespace::\"bench\");\n",
    );
    for i in 0..10 {
        text.push_str(&format!(
            "@id(\"svc{i}-reads\") permit (principal, action in Mesh::Action::\"read\", resource == Mesh::Service::\"svc{i}\") when {{ context.path like \"/api/{i}/*\" }};\n"
        ));
    }
    text.push_str(&format!(
        "@id(\"round\") forbid (principal, action == Mesh::Action::\"DELETE\", resource in Mesh::Namespace::\"bench\") when {{ context.path == \"/round/{round}\" }};\n"
    ));
    text
}

async fn apply_to_enforce(
    setup: &Setup,
    proxies: usize,
    rounds: usize,
    first_round: usize,
    report_memory: bool,
) -> Vec<Duration> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, u64, Instant)>();
    let mut tasks = Vec::new();
    for i in 0..proxies {
        let id = setup
            .td
            .service_account("bench", &format!("svc{}", i % 10))
            .unwrap();
        let (resolver, _) = join(setup, &id).await;
        let mut client = pb::config_client::ConfigClient::new(channel_to(setup, resolver, i));
        let mut stream = client
            .watch(pb::WatchRequest {
                upstreams: vec!["svc1".into(), "svc2".into()],
            })
            .await
            .unwrap()
            .into_inner();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(config)) = stream.message().await {
                let slice = config.policies.unwrap_or_default();
                let sources: Vec<signet_policy::PolicySource> = slice
                    .files
                    .iter()
                    .map(|f| signet_policy::PolicySource {
                        name: f.name.clone(),
                        text: f.text.clone(),
                    })
                    .collect();
                // What a proxy does before it enforces: validate the slice.
                let _bundle = signet_policy::PolicyBundle::from_sources(&sources).unwrap();
                if tx.send((i, slice.version, Instant::now())).is_err() {
                    return;
                }
            }
        }));
    }
    // Drain the initial configurations.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while rx.try_recv().is_ok() {}
    let mut latencies = Vec::new();
    for round in first_round..first_round + rounds {
        let sent = Instant::now();
        let applied = rest(
            setup,
            "POST",
            "/v1/policies",
            serde_json::json!({
                "files": [{ "name": "bench.cedar", "text": policies(round) }],
            }),
        )
        .await;
        let version = applied["version"].as_u64().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let mut last = sent;
        while seen.len() < proxies {
            let (i, v, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("a proxy never got the new version")
                .unwrap();
            if v == version {
                seen.insert(i);
                last = last.max(at);
            }
        }
        latencies.push(last - sent);
    }
    if report_memory {
        for (n, cp) in replicas(setup).enumerate() {
            let (rss, hwm) = rss(cp);
            println!(
                "\nreplica {n} with {proxies} proxies connected to {} replicas: VmRSS {rss} kB; peak {hwm} kB",
                1 + setup.others.len()
            );
        }
        println!();
    }
    for t in tasks {
        t.abort();
    }
    latencies
}

fn main() {
    // `cargo bench` passes --bench; test runners list (--list) or run targets without it:
    // this benchmark has no tests for them.
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
        // `-- --postgres`: the store on a real PostgreSQL server (a cluster of its own).
        let postgres = args
            .iter()
            .any(|a| a == "--postgres")
            .then(signet_tests::postgres::Postgres::start);
        let url = postgres
            .as_ref()
            .map(signet_tests::postgres::Postgres::database);
        let kek = postgres
            .as_ref()
            .map(signet_tests::postgres::Postgres::kek_file);
        let mut cp_args = vec!["--trust-domain", TD];
        if let (Some(url), Some(kek)) = (&url, &kek) {
            println!("store: PostgreSQL");
            cp_args.extend(["--store", url.as_str(), "--ca-kek-file", kek.as_str()]);
        }
        let count: usize = args
            .iter()
            .position(|a| a == "--replicas")
            .and_then(|i| args.get(i + 1))
            .map_or(1, |n| n.parse().expect("--replicas N"));
        assert!(count == 1 || url.is_some(), "--replicas needs --postgres");
        let cp = ControlPlane::start(&dir.path().join("cp"), &cp_args);
        let mut others = Vec::new();
        for n in 1..count {
            let data = dir.path().join(format!("cp-{n}"));
            std::fs::create_dir_all(&data).unwrap();
            std::fs::copy(cp.data_dir.join("admin.token"), data.join("admin.token")).unwrap();
            others.push(ControlPlane::start(&data, &cp_args));
        }
        println!("replicas: {count}");
        let mut sizes = vec![1, 10, 100];
        if args.iter().any(|a| a == "--proxies") {
            let n: usize = args
                .iter()
                .position(|a| a == "--proxies")
                .and_then(|i| args.get(i + 1))
                .map_or(1000, |n| n.parse().expect("--proxies N"));
            sizes.push(n);
        }
        let td = TrustDomain::new(TD).unwrap();
        let bundle = TrustBundle::from_pem(
            td.clone(),
            &std::fs::read_to_string(cp.setting("SIGNET_CA")).unwrap(),
        )
        .unwrap();
        let token = cp.setting("SIGNET_TOKEN");
        let setup = Setup {
            cp,
            others,
            td,
            bundle,
            token,
        };
        for (n, cp) in replicas(&setup).enumerate() {
            println!("signet-cp replica {n} idle: VmRSS {} kB", rss(cp).0);
        }
        println!();

        println!("| call | SVIDs | in flight | time | rate |\n|---|---|---|---|---|");
        issuance(&setup).await;
        if args.iter().any(|a| a == "--issuance-only") {
            return;
        }

        println!("\n| proxies | applies | p50 | p99 | max |\n|---|---|---|---|---|");
        let mut round = 0;
        let largest = sizes.iter().copied().max().unwrap_or(0);
        for proxies in sizes {
            let rounds = 30;
            let mut l = apply_to_enforce(&setup, proxies, rounds, round, proxies == largest).await;
            round += rounds;
            l.sort();
            println!(
                "| {proxies} | {rounds} | {:.1} ms | {:.1} ms | {:.1} ms |",
                percentile(&l, 0.5).as_secs_f64() * 1e3,
                percentile(&l, 0.99).as_secs_f64() * 1e3,
                l.last().unwrap().as_secs_f64() * 1e3,
            );
        }
    });
}

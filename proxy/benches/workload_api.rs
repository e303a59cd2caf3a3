//! How soon a workload has its identity from the SPIFFE Workload API: a release
//! `signet-proxy` (files mode, test PKI) serving `[workload_api]`, and a gRPC client on its
//! Unix socket timing `FetchX509SVID` to its first response, on a new connection (connect,
//! HTTP/2 handshake, attestation by peer credentials and `/proc/<pid>/exe`, the SVID and key
//! encoded) and on an open one.
//!
//! `cargo build --release -p signet-proxy && cargo bench -p signet-proxy --bench workload_api`

#![expect(clippy::unwrap_used, reason = "bench set-up")]

use criterion::{Criterion, criterion_group, criterion_main};
use signet_cp::api::workload as pb;
use signet_spiffe::test_pki::TestCa;
use signet_tests::control::workspace_binary;
use signet_tests::process::ProxyProcess;
use signet_tests::workload::{uid, with_header};

type Client = pb::spiffe_workload_api_client::SpiffeWorkloadApiClient<tonic::transport::Channel>;

async fn connect(socket: &std::path::Path) -> Client {
    Client::new(signet_tests::workload::channel(socket).await)
}

async fn first_response(client: &mut Client) -> pb::X509svidResponse {
    let mut stream = client
        .fetch_x509svid(with_header(pb::X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("bench.test");
    let (chain, key) = ca.svid("spiffe://bench.test/ns/bench/sa/app");
    std::fs::write(dir.path().join("svid.pem"), TestCa::chain_pem(&chain)).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.to_pkcs8_pem()).unwrap();
    std::fs::write(dir.path().join("bundle.pem"), ca.root_pem()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.path().join("key.pem"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/all.cedar"),
        "@id(\"all\") permit (principal, action, resource);\n",
    )
    .unwrap();
    let d = dir.path().display();
    let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    let config = format!(
        "[service]\nname = \"app\"\nnamespace = \"bench\"\n\n\
         [identity]\ncert = \"{d}/svid.pem\"\nkey = \"{d}/key.pem\"\nbundle = \"{d}/bundle.pem\"\n\n\
         [policy]\ndir = \"{d}/policies\"\n\n\
         [inbound]\nlisten = \"127.0.0.1:0\"\napp = \"127.0.0.1:9\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [workload_api]\nsocket = \"{d}/workload.sock\"\nselectors = [\"unix:uid:{}\", \"unix:path:{}\"]\n",
        uid(),
        exe.display()
    );
    let _proxy = ProxyProcess::start(
        &workspace_binary("signet-proxy"),
        dir.path(),
        "app",
        &config,
    );
    let socket = dir.path().join("workload.sock");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("fetch_x509_svid_first_response");
    group.bench_function("new connection", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut client = connect(&socket).await;
                first_response(&mut client).await
            })
        });
    });
    let mut client = runtime.block_on(connect(&socket));
    group.bench_function("open connection", |b| {
        b.iter(|| runtime.block_on(first_response(&mut client)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

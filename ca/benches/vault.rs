//! SVIDs per second from each backend against a local OpenBao server: the built-in CA,
//! `vault-intermediate` (Vault signed the intermediate once; SVIDs are signed here) and
//! `vault-sign` (one Vault round trip per SVID), each with 1 and 16 requests in flight.
//! CSRs are made beforehand (that is the workload's cost, not the CA's).
//!
//! Run: `cargo bench -p signet-ca --bench vault` (needs `bao`: see `scripts/test.sh`).

#![expect(
    clippy::expect_used,
    reason = "benchmark setup: a failure aborts the run"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use signet_ca::vault::{VaultAuth, VaultMode, VaultSettings, preflight};
use signet_ca::{
    Authority, BuiltinAuthority, BuiltinOptions, SignRequest, SvidProfile, SystemClock,
};
use signet_spiffe::{SpiffeId, TrustDomain};
use signet_tests::openbao::OpenBao;

mod common;

const TD: &str = "bench.internal";

type Requests = Arc<
    Vec<(
        SpiffeId,
        rustls_pki_types::CertificateSigningRequestDer<'static>,
    )>,
>;

/// Signs for `period` with `in_flight` concurrent callers; SVIDs per second.
async fn rate(
    ca: Arc<dyn Authority>,
    requests: Requests,
    in_flight: usize,
    period: Duration,
) -> f64 {
    let begun = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|w| {
            let (ca, requests) = (Arc::clone(&ca), Arc::clone(&requests));
            tokio::spawn(async move {
                let mut done = 0u64;
                let mut i = w;
                while begun.elapsed() < period {
                    let (id, csr) = &requests[i % requests.len()];
                    i += in_flight;
                    ca.sign(SignRequest { csr, id, ttl: None })
                        .await
                        .expect("sign");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    total as f64 / begun.elapsed().as_secs_f64()
}

async fn vault(bao: &OpenBao, mode: VaultMode, dir: &std::path::Path) -> Arc<dyn Authority> {
    let td = TrustDomain::new(TD).expect("trust domain");
    let checked = preflight(
        VaultSettings {
            address: bao.address.clone(),
            ca_cert: None,
            auth: VaultAuth::Token {
                token: bao.root_token.clone(),
            },
            mount: "pki".to_owned(),
            role: Some("signet".to_owned()),
            mode,
            intermediate_ttl_secs: 30 * 86400,
        },
        &td,
        SvidProfile::default(),
        Arc::new(SystemClock),
        dir.to_path_buf(),
    )
    .await;
    checked.authority.expect("checks pass")
}

fn main() {
    // `cargo bench` passes --bench; test runners list (--list) or run targets without it:
    // nothing to run then.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let td = TrustDomain::new(TD).expect("trust domain");
        let requests: Requests = Arc::new(common::csrs(&td));
        let bao = OpenBao::start_dev();
        bao.setup_pki("pki", TD);
        let dir = tempfile::tempdir().expect("temp dir");
        let builtin: Arc<dyn Authority> = Arc::new(
            BuiltinAuthority::open(&dir.path().join("builtin"), &td, BuiltinOptions::default())
                .expect("built-in CA"),
        );
        let intermediate = vault(&bao, VaultMode::Intermediate, &dir.path().join("vi")).await;
        let sign = vault(&bao, VaultMode::Sign, &dir.path().join("vs")).await;
        let period = Duration::from_secs(5);
        println!("| backend | in flight | SVIDs/s |");
        println!("|---|---:|---:|");
        for (name, ca) in [
            ("builtin", &builtin),
            ("vault-intermediate", &intermediate),
            ("vault-sign", &sign),
        ] {
            for in_flight in [1, 16] {
                let r = rate(Arc::clone(ca), Arc::clone(&requests), in_flight, period).await;
                println!("| {name} | {in_flight} | {r:.0} |");
            }
        }
    });
}

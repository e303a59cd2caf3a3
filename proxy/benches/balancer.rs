//! Load balancing under a slow endpoint, with real processes: a frontend `signet-proxy`
//! calling three cart endpoints (each a release `signet-proxy` in front of its own app) at
//! a fixed rate, open loop (latency counted from when each request was due, so a stall is
//! not hidden by requests that were never sent). Three runs, each on a fresh fleet:
//! every endpoint healthy (P2C-EWMA), one endpoint answering 50 ms late under P2C-EWMA, and
//! the same under round robin. Prints p50/p90/p99/max and the slow endpoint's share.
//!
//!   cargo build --release -p signet-proxy
//!   cargo bench -p signet-proxy --bench balancer [-- --rate 200 --secs 15]
//!
//! `SIGNET_PROXY_BIN` picks another proxy binary.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark's driver: a failure is the run failing"
)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use signet_tests::client::Http;
use signet_tests::faulty::Behaviour;
use signet_tests::fleet::Fleet;

const P2C: &str = "services:\n  - service: cart\n";
const ROUND_ROBIN: &str = "services:\n  - service: cart\n    balancer: round-robin\n";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // Test runners list and run bench targets too (`--list`, no `--bench`): this one
    // starts a fleet of release binaries, so it runs only under `cargo bench`.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--list") {
        return;
    }
    let binary = std::env::var_os("SIGNET_PROXY_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/signet-proxy"),
        PathBuf::from,
    );
    assert!(
        binary.exists(),
        "{} missing: cargo build --release -p signet-proxy",
        binary.display()
    );
    let rate = arg("--rate", 200);
    let secs = arg("--secs", 15);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("open loop, {rate} req/s for {secs} s, 3 endpoints; latency in ms");
    println!(
        "{:<32} {:>7} {:>7} {:>7} {:>7} {:>10}",
        "run", "p50", "p90", "p99", "max", "slow share"
    );
    runtime.block_on(async {
        for (name, doc, slow) in [
            ("all healthy, p2c-ewma", P2C, false),
            ("one 50 ms slower, p2c-ewma", P2C, true),
            ("one 50 ms slower, round-robin", ROUND_ROBIN, true),
        ] {
            let fleet = Fleet::start(&binary, doc).await;
            if slow {
                fleet.apps[1].set(Behaviour::Slow(Duration::from_millis(50)));
            }
            // Warm-up: connections open, estimates formed.
            run(&fleet, rate, 2).await;
            let before = fleet.apps[1].calls();
            let mut latencies = run(&fleet, rate, secs).await;
            let share = (fleet.apps[1].calls() - before) as f64 / latencies.len() as f64;
            latencies.sort_unstable();
            let at = |q: f64| {
                let i = ((latencies.len() as f64 * q) as usize).min(latencies.len() - 1);
                latencies[i].as_secs_f64() * 1e3
            };
            println!(
                "{name:<32} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>9.1}%",
                at(0.5),
                at(0.9),
                at(0.99),
                at(1.0),
                share * 100.0
            );
        }
    });
}

/// `rate` requests a second for `secs`; each one's latency from when it was due.
async fn run(fleet: &Fleet, rate: u64, secs: u64) -> Vec<Duration> {
    let addr = fleet.to_cart();
    let idle: Arc<Mutex<Vec<Http>>> = Arc::new(Mutex::new(Vec::new()));
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..rate * secs {
        let due = start + period * u32::try_from(n).unwrap();
        tokio::time::sleep_until(due.into()).await;
        let idle = Arc::clone(&idle);
        tasks.push(tokio::spawn(async move {
            let pooled = idle.lock().unwrap().pop();
            let mut http = match pooled {
                Some(h) if !h.is_closed() => h,
                _ => Http::h1(addr).await,
            };
            let reply = http.call("GET", "cart", "/items").await.expect("an answer");
            assert_eq!(reply.status, 200);
            let latency = due.elapsed();
            idle.lock().unwrap().push(http);
            latency
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

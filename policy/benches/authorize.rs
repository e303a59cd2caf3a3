//! The per-request authorization decision, for bundles of 10 to 10,000 policies spread over
//! 100 services and 1,000 workloads (see `signet_policy::synthetic` for the policy mix).
//!
//! Criterion measures the mean of HTTP request decisions and of `connect` decisions (cached,
//! as a proxy sees them after the first connection of a peer), indexed and, up to 1,000
//! policies, with the whole bundle handed to Cedar for comparison. A second pass then times
//! every decision one by one and prints p50/p99/p99.9, the figures the targets are set in.
//!
//! Run: `cargo bench -p signet-policy --bench authorize`
//! (quick look: `cargo bench -p signet-policy --bench authorize -- --quick`)

#![expect(
    clippy::expect_used,
    reason = "benchmark setup: a failure aborts the run"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::Criterion;
use signet_policy::synthetic::{self, Synthetic};
use signet_policy::{Authorizer, PolicyBundle};

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

fn setup(size: usize) -> (Synthetic, Arc<PolicyBundle>) {
    let mesh = synthetic::mesh(size, 4_096, 7);
    let bundle = PolicyBundle::from_sources(&mesh.sources).expect("synthetic bundle validates");
    (mesh, Arc::new(bundle))
}

fn http_only(mesh: &Synthetic) -> Vec<synthetic::SyntheticRequest> {
    mesh.requests
        .iter()
        .filter(|r| r.action != "connect")
        .cloned()
        .collect()
}

fn criterion_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("authorize");
    for size in SIZES {
        let (mesh, bundle) = setup(size);
        let http = http_only(&mesh);
        let connects: Vec<_> = mesh
            .requests
            .iter()
            .filter(|r| r.action == "connect")
            .cloned()
            .collect();
        let indexed = Authorizer::new(Arc::clone(&bundle));
        let mut i = 0;
        group.bench_function(format!("request/indexed/{size}"), |b| {
            b.iter(|| {
                i = (i + 1) % http.len();
                black_box(mesh.decide(&indexed, &http[i]))
            });
        });
        let mut i = 0;
        group.bench_function(format!("connect/indexed-cached/{size}"), |b| {
            b.iter(|| {
                i = (i + 1) % connects.len();
                black_box(mesh.decide(&indexed, &connects[i]))
            });
        });
        if size <= 1_000 {
            let whole = Authorizer::exhaustive(Arc::clone(&bundle));
            let mut i = 0;
            group.bench_function(format!("request/whole-bundle/{size}"), |b| {
                b.iter(|| {
                    i = (i + 1) % http.len();
                    black_box(mesh.decide(&whole, &http[i]))
                });
            });
        }
    }
    group.finish();
}

/// Every HTTP decision timed on its own, after a warm-up pass.
fn percentiles() {
    println!();
    println!(
        "{:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "policies", "decisions", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "allowed"
    );
    for size in SIZES {
        let (mesh, bundle) = setup(size);
        let http = http_only(&mesh);
        let authorizer = Authorizer::new(bundle);
        for r in &http {
            black_box(mesh.decide(&authorizer, r));
        }
        let mut times = Vec::with_capacity(http.len() * 25);
        let mut allowed = 0usize;
        for _ in 0..25 {
            for r in &http {
                let start = Instant::now();
                let d = black_box(mesh.decide(&authorizer, r));
                times.push(start.elapsed().as_nanos());
                allowed += usize::from(d.is_allowed());
            }
        }
        times.sort_unstable();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        println!(
            "{size:>8} {:>10} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7.0}%",
            times.len(),
            at(0.50),
            at(0.99),
            at(0.999),
            at(1.0),
            100.0 * allowed as f64 / times.len() as f64
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
    percentiles();
}

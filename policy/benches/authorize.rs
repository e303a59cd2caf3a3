//! The per-request authorization decision, for bundles of 10 to 10,000 policies spread over
//! 100 services and 1,000 workloads (see `signet_policy::synthetic` for the policy mix).
//!
//! Criterion measures the mean of HTTP request decisions and of `connect` decisions (cached,
//! as a proxy sees them after the first connection of a peer), indexed and, up to 1,000
//! policies, with the whole bundle handed to Cedar for comparison. A second pass then times
//! every decision one by one and prints p50/p99/p99.9, the figures the targets are set in,
//! first with one authorizer over the whole bundle, then as proxies run: each service's
//! requests decided by that service's slice.
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
use signet_policy::{Authorizer, PolicyBundle, ServiceRef};

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

/// Under `cargo bench`, every size; when a test runner smoke-tests this target (debug build,
/// each benchmark run once), the small ones only.
fn sizes() -> &'static [usize] {
    if std::env::args().any(|a| a == "--bench") {
        &SIZES
    } else {
        &SIZES[..2]
    }
}

fn criterion_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("authorize");
    for &size in sizes() {
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

/// Every HTTP decision timed on its own, after a warm-up pass; then the median by how many
/// policies Cedar was handed, which is what the cost follows.
fn percentiles() {
    println!();
    println!(
        "{:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8} {:>11}",
        "policies", "decisions", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "allowed", "candidates"
    );
    let mut by_candidates = Vec::new();
    for size in SIZES {
        let (mesh, bundle) = setup(size);
        let http = http_only(&mesh);
        let authorizer = Authorizer::new(Arc::clone(&bundle));
        for r in &http {
            black_box(mesh.decide(&authorizer, r));
        }
        let candidates: Vec<usize> = http
            .iter()
            .map(|r| mesh.candidates(&authorizer, r))
            .collect();
        let mut times = Vec::with_capacity(http.len() * 25);
        let mut per_count: Vec<Vec<u128>> = vec![Vec::new(); 8];
        let mut allowed = 0usize;
        for _ in 0..25 {
            for (r, k) in http.iter().zip(&candidates) {
                let start = Instant::now();
                let d = black_box(mesh.decide(&authorizer, r));
                let t = start.elapsed().as_nanos();
                times.push(t);
                if let Some(bucket) = per_count.get_mut(*k) {
                    bucket.push(t);
                }
                allowed += usize::from(d.is_allowed());
            }
        }
        by_candidates.push((size, per_count));
        let mean_candidates = candidates.iter().sum::<usize>() as f64 / candidates.len() as f64;
        times.sort_unstable();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        println!(
            "{size:>8} {:>10} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7.0}% {:>11.2}",
            times.len(),
            at(0.50),
            at(0.99),
            at(0.999),
            at(1.0),
            100.0 * allowed as f64 / times.len() as f64,
            mean_candidates
        );
    }
    println!();
    println!("p50 µs by policies handed to Cedar (share of requests):");
    for (size, per_count) in by_candidates {
        let total: usize = per_count.iter().map(Vec::len).sum();
        let cells: Vec<String> = per_count
            .into_iter()
            .enumerate()
            .filter(|(_, v)| v.len() * 100 >= total)
            .map(|(k, mut v)| {
                v.sort_unstable();
                format!(
                    "{k}: {:.2} ({:.0}%)",
                    v[v.len() / 2] as f64 / 1000.0,
                    100.0 * v.len() as f64 / total as f64
                )
            })
            .collect();
        println!("{size:>8}  {}", cells.join("   "));
    }
}

/// As proxies run: each request decided by its own service's slice of the bundle.
fn slices() {
    println!();
    println!("per-service slices (one authorizer per service, as each proxy holds):");
    println!(
        "{:>8} {:>10} {:>11} {:>9} {:>9} {:>9}",
        "policies", "decisions", "slice size", "p50 µs", "p99 µs", "p99.9 µs"
    );
    for size in SIZES {
        let (mesh, bundle) = setup(size);
        let http = http_only(&mesh);
        let per_service: Vec<Authorizer> = mesh
            .services
            .iter()
            .map(|(name, ns)| {
                Authorizer::new(Arc::new(bundle.slice_for(&ServiceRef::new(name, ns))))
            })
            .collect();
        let slice_size = per_service.iter().map(|a| a.bundle().len()).sum::<usize>() as f64
            / per_service.len() as f64;
        // One service's traffic at a time, as one proxy sees it.
        let mut by_service: Vec<Vec<&synthetic::SyntheticRequest>> =
            vec![Vec::new(); mesh.services.len()];
        for r in &http {
            by_service[r.service].push(r);
        }
        let mut times = Vec::with_capacity(http.len() * 25);
        for (service, requests) in by_service.iter().enumerate() {
            let authorizer = &per_service[service];
            for r in requests {
                black_box(mesh.decide(authorizer, r));
            }
            for _ in 0..25 {
                for r in requests {
                    let start = Instant::now();
                    black_box(mesh.decide(authorizer, r));
                    times.push(start.elapsed().as_nanos());
                }
            }
        }
        times.sort_unstable();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        println!(
            "{size:>8} {:>10} {slice_size:>11.1} {:>9.2} {:>9.2} {:>9.2}",
            times.len(),
            at(0.50),
            at(0.99),
            at(0.999)
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
    // Only under `cargo bench` (which passes `--bench`), not when test runners list or smoke
    // test the benchmark targets.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list") {
        percentiles();
        slices();
    }
}

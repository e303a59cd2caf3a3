//! The cost the caller directory adds to every decision: looking up a peer's registered
//! service and labels among 10,000 registered identities (what the proxy does before each
//! `connect` and request decision).
//!
//! Run: `cargo bench -p signet-policy --bench directory`

#![expect(
    clippy::expect_used,
    reason = "benchmark setup: a failure aborts the run"
)]

use std::hint::black_box;

use criterion::Criterion;
use signet_policy::Directory;
use signet_spiffe::SpiffeId;

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let ids: Vec<SpiffeId> = (0..10_000)
        .map(|i| {
            format!("spiffe://acme.internal/ns/ns{}/sa/service-{i}", i % 50)
                .parse()
                .expect("a SPIFFE ID")
        })
        .collect();
    let mut directory = Directory::new();
    for (i, id) in ids.iter().enumerate() {
        directory.insert(
            id.clone(),
            format!("service-{i}"),
            [
                ("team".to_owned(), format!("team-{}", i % 40)),
                ("tier".to_owned(), "api".to_owned()),
            ],
        );
    }
    let stranger: SpiffeId = "spiffe://acme.internal/ns/x/sa/unregistered"
        .parse()
        .expect("a SPIFFE ID");
    let mut i = 0;
    c.bench_function("directory/caller/registered-of-10000", |b| {
        b.iter(|| {
            i = (i + 7) % ids.len();
            black_box(directory.caller(&ids[i]).labels.len())
        });
    });
    c.bench_function("directory/caller/unregistered", |b| {
        b.iter(|| black_box(directory.caller(&stranger).labels.len()));
    });
    c.final_summary();
}

//! SPIFFE ID parsing and peer chain verification costs.
//!
//! Run: `cargo bench -p signet-spiffe --bench spiffe_id`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use signet_spiffe::SpiffeId;

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("spiffe_id_parse");
    for (name, text) in [
        ("short", "spiffe://acme.internal/ns/shop/sa/cart"),
        (
            "long",
            "spiffe://platform.prod.eu-west-1.acme.internal/ns/payments-processing/sa/\
             settlement-reconciler-worker/region/eu-west-1/cell/0042",
        ),
        ("invalid", "spiffe://acme.internal/ns/shop/../sa/cart"),
    ] {
        g.bench_function(name, |b| b.iter(|| black_box(text).parse::<SpiffeId>()));
    }
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);

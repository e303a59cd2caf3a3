//! What the inbound route match and local rate limits cost per request: a service without
//! limits (the route match alone), an overall limit, a per-caller limit with 100 and with
//! 10,000 callers taking turns, and a route limit on top of the service's. Every request
//! passes: the cost measured is that of letting one in, the clock read included.
//!
//! `cargo bench -p signet-proxy --bench rate_limit`

#![expect(clippy::unwrap_used, reason = "bench set-up")]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};
use signet_proxy::traffic::inbound::InboundPolicy;

fn policy(yaml: &str) -> InboundPolicy {
    let doc = signet_traffic::load::load(yaml, "bench.yaml").unwrap();
    InboundPolicy::new(doc.service("cart"))
}

fn bench(c: &mut Criterion) {
    let headers = HeaderMap::new();
    let get = Method::GET;
    let cases = [
        ("no limits", "services:\n  - service: cart\n", 1),
        (
            "overall",
            "services:\n  - service: cart\n    rate_limit: {overall: {requests_per_second: 1000000, burst: 1000000}}\n",
            1,
        ),
        (
            "per caller, 100 callers",
            "services:\n  - service: cart\n    rate_limit: {per_caller: {requests_per_second: 1000000, burst: 1000000}}\n",
            100,
        ),
        (
            "per caller, 10000 callers",
            "services:\n  - service: cart\n    rate_limit: {per_caller: {requests_per_second: 1000000, burst: 1000000}}\n",
            10_000,
        ),
        (
            "route and service, both scopes",
            "services:\n  - service: cart\n    rate_limit: {overall: {requests_per_second: 1000000, burst: 1000000}, per_caller: {requests_per_second: 1000000, burst: 1000000}}\n    routes:\n      - name: api\n        match: {path: {prefix: /api}}\n        rate_limit: {per_caller: {requests_per_second: 1000000, burst: 1000000}}\n",
            100,
        ),
    ];
    for (name, yaml, callers) in cases {
        let p = policy(yaml);
        let ids: Vec<String> = (0..callers)
            .map(|i| format!("spiffe://mesh.example/ns/shop/sa/caller-{i}"))
            .collect();
        let mut i = 0;
        let start = Instant::now();
        let mut n = 0u64;
        c.bench_function(&format!("inbound admit: {name}"), |b| {
            b.iter(|| {
                i = (i + 1) % ids.len();
                n += 1;
                // The clock is read as the proxy reads it; the limits see time advance 2 µs
                // a request (500,000 a second, inside every rate above), however fast the
                // loop runs.
                std::hint::black_box(Instant::now());
                let at = start + Duration::from_nanos(n * 2_000);
                let (route, admitted) = p.admit((&get, "/api/items", &headers), &ids[i], at);
                assert!(admitted.is_ok());
                route
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

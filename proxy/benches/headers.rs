//! What cleaning and vouching for a request's headers costs on the inbound path: the
//! hop-by-hop strip, the underscore rule, the reserved-name strip and the identity insert,
//! on a request with the headers a browser-fronted API call typically carries.
//!
//! `cargo bench -p signet-proxy --bench headers`

#![expect(clippy::unwrap_used, reason = "bench set-up")]

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use signet_proxy::headers::{UnderscoreHeaders, clean, set_identity, strip_hop_by_hop};

fn request_headers(extra: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "cart.shop"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("content-type", "application/json"),
        ("content-length", "42"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        (
            "authorization",
            "Bearer abcdefghijklmnopqrstuvwxyz0123456789",
        ),
        ("cookie", "session=0123456789abcdef"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn clean_and_vouch(c: &mut Criterion) {
    let identity = HeaderName::from_static("x-signet-peer-id");
    let peer = "spiffe://acme.internal/ns/shop/sa/frontend"
        .parse()
        .unwrap();
    // As the inbound path runs it: cleaned before the decision, the identity set after.
    let pipeline = |h: &mut HeaderMap| {
        clean(h, UnderscoreHeaders::Drop, &identity).unwrap();
        set_identity(h, &identity, &peer);
    };
    let plain = request_headers(&[]);
    c.bench_function("clean and vouch, 10 headers", |b| {
        b.iter_batched_ref(
            || plain.clone(),
            |h| pipeline(h),
            criterion::BatchSize::SmallInput,
        );
    });
    let hostile = request_headers(&[
        ("connection", "keep-alive, x-signet-peer-id"),
        ("x_signet_peer_id", "spiffe://acme.internal/evil"),
        ("x-signet-peer-id", "spiffe://acme.internal/evil"),
        ("x_debug", "1"),
    ]);
    c.bench_function("clean and vouch, 10 headers + 4 hostile", |b| {
        b.iter_batched_ref(
            || hostile.clone(),
            |h| pipeline(h),
            criterion::BatchSize::SmallInput,
        );
    });
    // What the proxy did before: remove the identity header, insert it, strip hop-by-hop.
    let old = |h: &mut HeaderMap| {
        h.remove(&identity);
        h.insert(
            identity.clone(),
            HeaderValue::from_str(peer.as_str()).unwrap(),
        );
        strip_hop_by_hop(h);
    };
    c.bench_function("before this change, 10 headers", |b| {
        b.iter_batched_ref(
            || plain.clone(),
            |h| old(h),
            criterion::BatchSize::SmallInput,
        );
    });
}

criterion_group!(benches, clean_and_vouch);
criterion_main!(benches);

//! What verifying an end-user JWT costs per request: header lookup, JOSE header, key by kid,
//! signature, claims checks and the claims mapped for Cedar, for each allowed algorithm.
//! Tokens and keys are minted by PyJWT (`tests/jwt/mint.py`; `pip install pyjwt
//! cryptography`), independently of the verifier.
//!
//! `cargo bench -p signet-proxy --bench authn`

#![expect(clippy::unwrap_used, reason = "bench set-up")]

use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use signet_proxy::authn::{Authn, Provider, ProviderSpec, verify};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = signet_tests::jwt::mint(dir.path(), "https://idp.acme.test", "shop");
    let jwks = std::fs::read_to_string(dir.path().join("jwks.json")).unwrap();
    let build = || {
        let provider = Provider::new(&ProviderSpec {
            name: "acme".to_owned(),
            issuer: "https://idp.acme.test".to_owned(),
            audiences: vec!["shop".to_owned()],
            jwks: jwks.clone(),
            header: "authorization".to_owned(),
            prefix: "Bearer ".to_owned(),
            algorithms: vec!["ES256".to_owned(), "RS256".to_owned(), "EdDSA".to_owned()],
            skew: Duration::from_secs(60),
        })
        .unwrap();
        Authn::new(vec![provider], false, 8192)
    };
    let authn = build();
    let mut group = c.benchmark_group("jwt_verify");
    for token in ["es256", "rs256", "eddsa", "bad_signature"] {
        let mut headers = HeaderMap::new();
        let value = format!("Bearer {}", tokens[token].as_str().unwrap());
        headers.insert("authorization", HeaderValue::from_str(&value).unwrap());
        // First sight: a fresh verifier each time (its set-up is not timed).
        group.bench_function(format!("{token}_first"), |b| {
            b.iter_batched(
                build,
                |fresh| verify(&fresh, std::hint::black_box(&headers)).is_ok(),
                BatchSize::SmallInput,
            )
        });
        // The same token again, as a client sends it on every request.
        group.bench_function(format!("{token}_again"), |b| {
            b.iter(|| verify(&authn, std::hint::black_box(&headers)))
        });
    }
    let empty = HeaderMap::new();
    group.bench_function("no_token", |b| {
        b.iter(|| verify(&authn, std::hint::black_box(&empty)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

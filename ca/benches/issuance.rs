//! SVIDs signed per second by the built-in CA: CSR in, checked, signed from the template,
//! validated, chain out. CSRs are made beforehand (that is the workload's cost, not the CA's).
//!
//! Run: `cargo bench -p signet-ca --bench issuance`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use signet_ca::{BuiltinAuthority, BuiltinOptions, SignRequest};
use signet_spiffe::{TrustDomain, WorkloadKey};

fn issuance(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let td = TrustDomain::new("acme.internal").expect("trust domain");
    let ca = BuiltinAuthority::open(dir.path(), &td, BuiltinOptions::default()).expect("CA");
    let requests: Vec<_> = (0..64)
        .map(|i| {
            let id = td
                .service_account("bench", &format!("workload-{i}"))
                .expect("id");
            let csr = WorkloadKey::generate().expect("key").csr(&id).expect("csr");
            (id, csr)
        })
        .collect();

    let mut g = c.benchmark_group("builtin_ca");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("sign_svid", |b| {
        b.iter(|| {
            let (id, csr) = &requests[i % requests.len()];
            i += 1;
            black_box(ca.issue(SignRequest { csr, id, ttl: None }).expect("issue"))
        })
    });
    g.finish();
}

criterion_group!(benches, issuance);
criterion_main!(benches);

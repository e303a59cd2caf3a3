//! SVIDs signed per second by the built-in CA: CSR in, checked, signed from the template,
//! validated, chain out. CSRs are made beforehand (that is the workload's cost, not the CA's).
//!
//! Run: `cargo bench -p signet-ca --bench issuance`

#![expect(
    clippy::expect_used,
    reason = "benchmark setup: a failure aborts the run"
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use signet_ca::{BuiltinAuthority, BuiltinOptions, SignRequest};
use signet_spiffe::{TrustDomain, WorkloadKey};

mod common;

fn issuance(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let td = TrustDomain::new("acme.internal").expect("trust domain");
    let ca = BuiltinAuthority::open(dir.path(), &td, BuiltinOptions::default()).expect("CA");
    let requests = common::csrs(&td);

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

criterion_group!(benches, issuance, steps);
criterion_main!(benches);

/// The steps of issuance on their own, to see where the time goes.
fn steps(c: &mut Criterion) {
    use rcgen::PublicKeyData as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let td = TrustDomain::new("acme.internal").expect("trust domain");
    let ca = BuiltinAuthority::open(dir.path(), &td, BuiltinOptions::default()).expect("CA");
    let id = td.service_account("bench", "workload").expect("id");
    let key = WorkloadKey::generate().expect("key");
    let csr = key.csr(&id).expect("csr");
    let svid = ca
        .issue(SignRequest {
            csr: &csr,
            id: &id,
            ttl: None,
        })
        .expect("issue");

    let mut g = c.benchmark_group("builtin_ca_steps");
    g.bench_function("check_csr", |b| {
        b.iter(|| signet_ca::csr::check_csr(black_box(&csr), &id).expect("csr"))
    });
    g.bench_function("parse_svid", |b| {
        b.iter(|| {
            signet_spiffe::X509Svid::parse(svid.chain().to_vec(), &td, std::time::SystemTime::now())
                .expect("svid")
        })
    });
    let bundle = signet_ca::Authority::bundle(&ca);
    g.bench_function("verify_chain_to_root", |b| {
        b.iter(|| {
            signet_spiffe::verify::verify_peer(
                &bundle,
                &svid.chain()[0],
                &svid.chain()[1..],
                rustls_pki_types::UnixTime::now(),
                signet_spiffe::verify::Usage::Client,
            )
            .expect("verify")
        })
    });
    let issuer_only =
        signet_spiffe::TrustBundle::from_roots(td.clone(), [svid.chain()[1].clone()]).expect("b");
    g.bench_function("verify_leaf_to_intermediate", |b| {
        b.iter(|| {
            signet_spiffe::verify::verify_peer(
                &issuer_only,
                &svid.chain()[0],
                &[],
                rustls_pki_types::UnixTime::now(),
                signet_spiffe::verify::Usage::Client,
            )
            .expect("verify")
        })
    });
    let raw = key.public_key_raw().to_vec();
    g.bench_function("ring_p256_verify", |b| {
        let msg = b"benchmark message";
        let sig = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            key.key_pair().serialized_der(),
            &ring::rand::SystemRandom::new(),
        )
        .expect("pair")
        .sign(&ring::rand::SystemRandom::new(), msg)
        .expect("sign");
        b.iter(|| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &raw)
                .verify(msg, sig.as_ref())
                .expect("verify")
        })
    });
    g.bench_function("rcgen_sign_leaf", |b| {
        let params = signet_ca::SvidProfile::default()
            .template(
                &id,
                (
                    std::time::SystemTime::now(),
                    std::time::SystemTime::now() + std::time::Duration::from_secs(60),
                ),
            )
            .expect("template");
        let issuer_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("k");
        let issuer = rcgen::Issuer::new(rcgen::CertificateParams::default(), issuer_key);
        let _ = key.key_pair().subject_public_key_info();
        b.iter(|| params.signed_by(key.key_pair(), &issuer).expect("sign"))
    });
    g.finish();
}

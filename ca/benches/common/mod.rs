//! What the CA benchmarks share: CSRs made beforehand (that is the workload's cost, not the
//! CA's).

use rustls_pki_types::CertificateSigningRequestDer;
use signet_spiffe::{SpiffeId, TrustDomain, WorkloadKey};

/// 64 workloads of `td` (service accounts `workload-0` …) with a CSR each.
pub(crate) fn csrs(td: &TrustDomain) -> Vec<(SpiffeId, CertificateSigningRequestDer<'static>)> {
    (0..64)
        .map(|i| {
            let id = td
                .service_account("bench", &format!("workload-{i}"))
                .expect("id");
            let csr = WorkloadKey::generate().expect("key").csr(&id).expect("csr");
            (id, csr)
        })
        .collect()
}

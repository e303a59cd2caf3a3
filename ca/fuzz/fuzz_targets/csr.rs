//! CSR checking never panics on any input, and anything it accepts is a P-256 key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateSigningRequestDer;
use signet_ca::csr::check_csr;
use signet_spiffe::SpiffeId;

fuzz_target!(|data: &[u8]| {
    let Ok(attested) = "spiffe://acme.internal/ns/shop/sa/cart".parse::<SpiffeId>() else {
        return;
    };
    let der = CertificateSigningRequestDer::from(data.to_vec());
    if let Ok(key) = check_csr(&der, &attested) {
        assert_eq!(key.raw().len(), 65);
        assert_eq!(key.raw()[0], 4);
    }
});

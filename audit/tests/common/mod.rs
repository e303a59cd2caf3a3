//! What the audit integration tests share: a signer over a test SVID and sample decisions.

use std::sync::Arc;

use signet_audit::{Decision, Event, KeySigner, Signer};
use signet_spiffe::test_pki::TestCa;

/// A signer over a fresh SVID for `id` from `ca`.
pub(crate) fn signer(ca: &TestCa, id: &str) -> Arc<dyn Signer> {
    let (chain, key) = ca.svid(id);
    let rustls_pki_types::PrivateKeyDer::Pkcs8(der) = key.private_key_der() else {
        unreachable!("workload keys are PKCS#8")
    };
    Arc::new(KeySigner::new(&id.parse().unwrap(), chain, der.secret_pkcs8_der()).unwrap())
}

/// The `n`th sample decision (every third a deny).
pub(crate) fn decision(n: usize) -> Event {
    Event::Decision(Decision {
        decision: if n.is_multiple_of(3) { "deny" } else { "allow" }.to_owned(),
        action: "GET".to_owned(),
        principal: "spiffe://acme.internal/ns/shop/sa/frontend".to_owned(),
        serial: "0a0b".to_owned(),
        resource: "cart".to_owned(),
        namespace: "shop".to_owned(),
        path: Some(format!("/api/items/{n}")),
        policies: vec!["frontend-reads-cart".to_owned()],
        bundle: "ab".repeat(32),
        trace: None,
        span: None,
        src: "127.0.0.1:40000".to_owned(),
        dst: "127.0.0.1:8080".to_owned(),
        sample: 1,
    })
}

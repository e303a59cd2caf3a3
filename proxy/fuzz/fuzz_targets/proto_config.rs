//! Configuration messages from the control plane: decoding any bytes as a `ProxyConfig` or a
//! `TrustUpdate` and converting every part with `signet_cp::api::convert` (the code the
//! proxy runs) never panics; what converts converts back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use signet_cp::api::convert;
use signet_cp::api::v1 as pb;
use signet_policy::PolicyBundle;
use signet_spiffe::TrustDomain;

fn trust(td: &TrustDomain, bundle: Option<&pb::TrustBundle>, deny: Option<&pb::DenyList>) {
    if let Some(b) = bundle {
        let _ = convert::trust_bundle(td, b);
    }
    if let Some(d) = deny
        && let Ok(list) = convert::Deny::try_from(d)
    {
        let back = pb::DenyList::from(&list);
        assert_eq!(convert::Deny::try_from(&back).ok(), Some(list));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(td) = TrustDomain::new("acme.internal") else {
        return;
    };
    if let Ok(config) = pb::ProxyConfig::decode(data) {
        trust(&td, config.bundle.as_ref(), config.deny.as_ref());
        if let Some(p) = &config.policies
            && let Ok(slice) = convert::Slice::try_from(p)
        {
            let _ = PolicyBundle::from_sources(&slice.sources);
        }
        for (i, u) in config.upstreams.iter().enumerate() {
            let _ = convert::endpoints(i, u);
        }
        if let Ok(directory) = convert::directory(&config.workloads) {
            let back = convert::workloads_message(&directory);
            assert_eq!(convert::directory(&back).ok(), Some(directory));
        }
        let _ = convert::labels(&config.labels);
        // Providers with arbitrary JWKS text, algorithms and headers: refused or built,
        // never a panic.
        let _ = convert::authn(config.authn.as_ref());
    }
    if let Ok(update) = pb::TrustUpdate::decode(data) {
        trust(&td, update.bundle.as_ref(), update.deny.as_ref());
    }
});

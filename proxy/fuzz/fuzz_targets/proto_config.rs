//! Configuration messages from the control plane: decoding any bytes as a `ProxyConfig` or
//! a `TrustUpdate`, and turning their parts into the proxy's types (trust bundle, deny-list
//! entries, policies, upstream endpoints and identities), never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use signet_cp::api::v1 as pb;
use signet_policy::{PolicyBundle, PolicySource};
use signet_spiffe::{Serial, SpiffeId, TrustBundle, TrustDomain};

fn trust(td: &TrustDomain, bundle: Option<&pb::TrustBundle>, deny: Option<&pb::DenyList>) {
    if let Some(b) = bundle {
        let roots = b
            .roots
            .iter()
            .cloned()
            .map(rustls_pki_types::CertificateDer::from);
        let _ = TrustBundle::from_roots(td.clone(), roots);
    }
    if let Some(d) = deny {
        for id in &d.spiffe_ids {
            let _ = id.parse::<SpiffeId>();
        }
        for s in &d.serials {
            let _ = Serial::from_hex(s);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(td) = TrustDomain::new("acme.internal") else {
        return;
    };
    if let Ok(config) = pb::ProxyConfig::decode(data) {
        trust(&td, config.bundle.as_ref(), config.deny.as_ref());
        if let Some(p) = &config.policies {
            let sources: Vec<PolicySource> = p
                .files
                .iter()
                .map(|f| PolicySource {
                    name: f.name.clone(),
                    text: f.text.clone(),
                })
                .collect();
            let _ = PolicyBundle::from_sources(&sources);
        }
        for u in &config.upstreams {
            for e in &u.endpoints {
                let _ = e.parse::<std::net::SocketAddr>();
            }
            for i in &u.identities {
                let _ = i.parse::<SpiffeId>();
            }
        }
    }
    if let Ok(update) = pb::TrustUpdate::decode(data) {
        trust(&td, update.bundle.as_ref(), update.deny.as_ref());
    }
});

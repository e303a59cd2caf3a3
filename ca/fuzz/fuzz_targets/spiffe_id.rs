//! SPIFFE ID parsing never panics, and what it accepts prints back to the same text and
//! parses again to the same ID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_spiffe::{SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = text.parse::<SpiffeId>() {
        assert_eq!(id.as_str(), text);
        assert_eq!(id.to_string().parse::<SpiffeId>().ok(), Some(id.clone()));
        assert!(id.path().is_empty() || id.path().starts_with('/'));
        let td = id.trust_domain();
        assert_eq!(TrustDomain::new(td.as_str()).ok(), Some(td));
    }
    let _ = TrustDomain::new(text);
});

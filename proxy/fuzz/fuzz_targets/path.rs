//! Path canonicalisation never panics; what it returns is canonical (a fixed point, no dot
//! segment, no doubled slash, no parameter, no encoded separator) under both rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_proxy::path::{PathParameters, canonical};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for rule in [PathParameters::Reject, PathParameters::Strip] {
        let Ok(path) = canonical(raw, rule) else {
            continue;
        };
        assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
        assert!(!path.contains("//"), "{raw:?} -> {path:?}");
        assert!(!path.contains(';'), "{raw:?} -> {path:?}");
        assert!(
            !path.split('/').any(|s| s == "." || s == ".."),
            "{raw:?} -> {path:?}"
        );
        let lower = path.to_ascii_lowercase();
        assert!(
            !lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%00"),
            "{raw:?} -> {path:?}"
        );
        assert_eq!(canonical(&path, rule).as_deref(), Ok(path.as_str()), "{raw:?}");
    }
});

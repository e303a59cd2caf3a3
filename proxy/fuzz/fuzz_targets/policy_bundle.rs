//! Policy bundles: loading any text never panics; a bundle that loads slices without panic,
//! its largest-slice bound holds for the services it names, and its hash is stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_policy::{PolicyBundle, PolicySource, ServiceRef};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources = [PolicySource {
        name: "fuzz.cedar".to_owned(),
        text: text.to_owned(),
    }];
    let Ok(bundle) = PolicyBundle::from_sources(&sources) else {
        return;
    };
    let again = PolicyBundle::from_sources(&sources).map(|b| b.hash().to_owned());
    assert_eq!(again.as_deref(), Ok(bundle.hash()));
    let bound = bundle.largest_slice_bytes();
    for (name, ns) in [("cart", "shop"), ("payments", "shop"), ("x", "y")] {
        let slice = bundle.slice_for(&ServiceRef::new(name, ns));
        let text: usize = slice.origins().values().map(|o| o.text.len()).sum();
        assert!(text <= bound, "{text} > {bound}");
    }
});

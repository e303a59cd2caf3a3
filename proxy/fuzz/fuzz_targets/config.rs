//! The proxy's TOML configuration: parsing and checking never panic, whatever the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_proxy::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text, "fuzz.toml", std::path::Path::new("/etc/signet")) {
        let _ = config.check();
    }
});

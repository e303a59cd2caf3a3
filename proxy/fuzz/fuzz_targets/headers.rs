//! Whatever headers a client sends (names and `Connection` values from the input), after
//! the proxy vouches for the peer the app sees exactly one identity header, the proxy's,
//! and no other spelling of a reserved name; `host` survives any `Connection` value.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use signet_proxy::headers::{UnderscoreHeaders, is_reserved, underscores, vouch};

fuzz_target!(|data: &[u8]| {
    let identity = HeaderName::from_static("x-signet-peer-id");
    let peer = match "spiffe://t.test/ns/shop/sa/frontend".parse() {
        Ok(id) => id,
        Err(_) => return,
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, HeaderValue::from_static("cart"));
    // Lines of `name: value`.
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    for rule in [UnderscoreHeaders::Drop, UnderscoreHeaders::Allow] {
        let mut h = headers.clone();
        if underscores(&mut h, rule).is_err() {
            continue;
        }
        vouch(&mut h, &identity, &peer);
        let ids: Vec<&HeaderValue> = h.get_all(&identity).iter().collect();
        assert_eq!(ids, [peer.as_str()]);
        for name in h.keys() {
            assert!(
                name == identity || !is_reserved(name.as_str(), &identity),
                "{name} survived"
            );
        }
        assert!(h.contains_key(http::header::HOST));
        assert!(!h.contains_key(http::header::CONNECTION));
    }
});

//! The headers the proxy vouches for, and the hop-by-hop headers it consumes.
//!
//! The app trusts the identity header because only its proxy can set it. That holds only if
//! every spelling of it a client could send is gone before the proxy writes its own, and if
//! nothing the client controls can remove the proxy's copy afterwards:
//! - hop-by-hop headers (including every header a client's `Connection` names) are stripped
//!   *first*, so `Connection: x-signet-peer-id` has nothing of the proxy's to remove;
//! - then every header whose name *folds* to a reserved name is removed: names are compared
//!   case-insensitively with `_` and `.` read as `-`, because CGI/WSGI-style servers map
//!   `x_signet_peer_id` and `x-signet-peer-id` to the same `HTTP_X_SIGNET_PEER_ID`;
//! - only then is the proxy's own value inserted.
//!
//! Reserved names: the configured identity header and the whole `x-signet-` family, which
//! the mesh uses for what its proxies say (`x-signet-denied-by`, `x-signet-error`).

use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde::{Deserialize, Serialize};

/// The prefix of every header the mesh's proxies set.
const RESERVED_PREFIX: &str = "x-signet-";

/// What the inbound proxy does with a request header whose name holds `_`.
///
/// Many servers read `x_user` and `x-user` as one header (CGI's `HTTP_X_USER`), while a
/// policy sees two different names: a `forbid` on `x-debug` would not see `x_debug`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnderscoreHeaders {
    /// Remove such headers before the request is decided and forwarded (as nginx does).
    #[default]
    Drop,
    /// Refuse the request with 400.
    Reject,
    /// Keep them; the policies see them under their own names.
    Allow,
}

/// A name folded as CGI-style servers read it: `_` and `.` as `-` (names in a `HeaderMap`
/// are already lower case).
fn folds_to(name: &[u8], reserved: &[u8]) -> bool {
    name.len() == reserved.len() && name.iter().zip(reserved).all(|(a, b)| fold(*a) == fold(*b))
}

fn fold(b: u8) -> u8 {
    match b {
        b'_' | b'.' => b'-',
        other => other.to_ascii_lowercase(),
    }
}

/// Whether `name` is, under any spelling, a header only the proxy may set.
pub fn is_reserved(name: &str, identity: &HeaderName) -> bool {
    let prefix = RESERVED_PREFIX.as_bytes();
    folds_to(name.as_bytes(), identity.as_str().as_bytes())
        || name
            .as_bytes()
            .get(..prefix.len())
            .is_some_and(|start| folds_to(start, prefix))
}

/// Removes every header only the proxy may set, under any spelling.
pub fn strip_reserved(headers: &mut HeaderMap, identity: &HeaderName) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_reserved(name.as_str(), identity))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Applies the `_` rule; `Err` when the request must be refused.
pub fn underscores(headers: &mut HeaderMap, rule: UnderscoreHeaders) -> Result<(), String> {
    if rule == UnderscoreHeaders::Allow {
        return Ok(());
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .cloned()
        .collect();
    if let (UnderscoreHeaders::Reject, Some(first)) = (rule, names.first()) {
        return Err(format!("header `{first}` holds `_`"));
    }
    for name in names {
        headers.remove(name);
    }
    Ok(())
}

/// Readies a client's request headers for a decision and for the app: hop-by-hop headers
/// go, then the `_` rule applies, then every spelling of a reserved name goes. `Err` when
/// the `_` rule refuses the request.
pub fn clean(
    headers: &mut HeaderMap,
    rule: UnderscoreHeaders,
    identity: &HeaderName,
) -> Result<(), String> {
    strip_hop_by_hop(headers);
    underscores(headers, rule)?;
    strip_reserved(headers, identity);
    Ok(())
}

/// Sets the verified peer's identity on headers [`clean`] has readied.
pub fn set_identity(
    headers: &mut HeaderMap,
    identity: &HeaderName,
    peer: &signet_spiffe::SpiffeId,
) {
    // A SPIFFE ID is visible ASCII by construction, so this always succeeds.
    if let Ok(value) = HeaderValue::from_str(peer.as_str()) {
        headers.insert(identity.clone(), value);
    }
}

/// Strips what the client sent, then sets the verified peer's identity: [`clean`] (with
/// underscores allowed) then [`set_identity`], for callers with no decision in between.
pub fn vouch(headers: &mut HeaderMap, identity: &HeaderName, peer: &signet_spiffe::SpiffeId) {
    let _ = clean(headers, UnderscoreHeaders::Allow, identity);
    set_identity(headers, identity, peer);
}

/// Removes the headers that belong to one hop (RFC 9110 §7.6.1), keeping `te: trailers`
/// (gRPC needs it). A `Connection` header may name other headers to drop, but never `host`:
/// the next hop needs it to route, and a request without it reaches the app's default host.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| n.trim().parse::<HeaderName>().ok())
        .filter(|n| *n != header::HOST)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHORIZATION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    let trailers_only = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !trailers_only {
        headers.remove(header::TE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "spiffe://t.test/ns/shop/sa/frontend";

    fn identity() -> HeaderName {
        HeaderName::from_static("x-signet-peer-id")
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn vouched(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = map(pairs);
        vouch(&mut h, &identity(), &PEER.parse().unwrap());
        h
    }

    #[test]
    fn a_connection_header_cannot_remove_the_proxys_identity() {
        let h = vouched(&[("connection", "x-signet-peer-id"), ("x-other", "1")]);
        let values: Vec<_> = h.get_all("x-signet-peer-id").iter().collect();
        assert_eq!(values, [PEER]);
    }

    #[test]
    fn every_spelling_of_a_reserved_header_is_replaced() {
        for spelling in [
            "x-signet-peer-id",
            "X-Signet-Peer-Id",
            "x_signet_peer_id",
            "x-signet_peer-id",
            "x.signet.peer.id",
            "x_signet_denied_by",
            "x-signet-error",
            "x-signet-anything",
        ] {
            let h = vouched(&[
                (spelling, "spiffe://t.test/attacker"),
                ("connection", "x-signet-peer-id"),
            ]);
            let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
            assert_eq!(names, ["x-signet-peer-id"], "{spelling}");
            assert_eq!(h["x-signet-peer-id"], PEER, "{spelling}");
        }
    }

    #[test]
    fn a_configured_identity_header_is_reserved_under_every_spelling() {
        let custom = HeaderName::from_static("x-client-id");
        assert!(is_reserved("x_client_id", &custom));
        assert!(is_reserved("x-client-id", &custom));
        assert!(!is_reserved("x-client-ids", &custom));
        assert!(!is_reserved("x-signet", &custom));
        assert!(is_reserved("x-signet-", &custom));
        assert!(!is_reserved("x-signetx", &custom));
    }

    #[test]
    fn hop_by_hop_headers_go_but_host_stays() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret, host"),
            ("host", "cart"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
        ]);
        strip_hop_by_hop(&mut h);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["host"]);
        let mut h = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn underscored_names_are_dropped_refused_or_kept() {
        let mut h = map(&[("x_debug", "1"), ("x-debug", "2")]);
        underscores(&mut h, UnderscoreHeaders::Drop).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-debug"], "2");
        let mut h = map(&[("x_debug", "1")]);
        assert_eq!(
            underscores(&mut h, UnderscoreHeaders::Reject).unwrap_err(),
            "header `x_debug` holds `_`"
        );
        underscores(&mut h, UnderscoreHeaders::Allow).unwrap();
        assert_eq!(h.len(), 1);
    }
}

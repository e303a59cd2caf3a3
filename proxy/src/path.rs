//! Request paths made canonical before they are authorized, and forwarded as authorized.
//!
//! A policy that forbids `/admin*` must not be side-stepped by `/api/../admin`, `//admin` or
//! `/%61dmin`: the app would resolve those to `/admin`, the policy would not. So the proxy
//! decides on the canonical path and sends the app that same path:
//! - percent-encoded unreserved characters (`A–Z a–z 0–9 - . _ ~`) are decoded, other
//!   escapes keep their meaning with upper-case hex;
//! - runs of `/` become one;
//! - `.` and `..` segments are resolved (RFC 3986 §5.2.4), never above the root;
//! - encoded `/`, `\` and NUL (`%2F`, `%5C`, `%00`), a raw `\`, and a path that does not start
//!   with `/` are refused: their meaning differs between servers, so no decision about them
//!   can be trusted;
//! - a `;` (a path parameter, `/api/..;/admin`) is refused by default: servlet containers
//!   drop everything from `;` to the end of a segment before resolving `..`, so the app would
//!   serve `/admin` while a policy saw `/api/..;/admin`. With [`PathParameters::Strip`] the
//!   proxy does what those containers do and decides on, and forwards, the stripped path.

use serde::{Deserialize, Serialize};

/// What to do with path parameters (`;` in a segment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathParameters {
    /// Refuse the request (400).
    #[default]
    Reject,
    /// Remove each segment's parameters (from `;` to the segment's end) before dot segments
    /// are resolved, as servlet containers do.
    Strip,
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `%2F`, `%5C` or `%00`.
    #[error("the path holds an encoded `/`, `\\` or NUL")]
    EncodedSeparator,
    /// A raw backslash.
    #[error("the path holds a `\\`")]
    Backslash,
    /// A `%` not followed by two hex digits.
    #[error("the path holds a malformed percent-escape")]
    BadEscape,
    /// Not absolute.
    #[error("the path does not start with `/`")]
    NotAbsolute,
    /// A `;` while parameters are refused.
    #[error("the path holds a `;` (path parameters are refused)")]
    Parameter,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The canonical form of `path` (no query).
pub fn canonical(path: &str, parameters: PathParameters) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if parameters == PathParameters::Reject && path.contains(';') {
        return Err(PathError::Parameter);
    }
    // Decode what may be decoded; refuse what cannot be trusted.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let value = hi * 16 + lo;
                if matches!(value, b'/' | b'\\' | 0) {
                    return Err(PathError::EncodedSeparator);
                }
                if unreserved(value) {
                    decoded.push(char::from(value));
                } else {
                    decoded.push_str(&format!("%{value:02X}"));
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            _ => {
                // Multi-byte UTF-8 passes through whole: find the char at `i`.
                let c = path[i..].chars().next().unwrap_or('\u{fffd}');
                decoded.push(c);
                i += c.len_utf8();
            }
        }
    }
    // Merge slashes and resolve dot segments.
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/').skip(1) {
        let segment = match parameters {
            PathParameters::Strip => segment.split(';').next().unwrap_or_default(),
            PathParameters::Reject => segment,
        };
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let last = decoded.rsplit('/').next().unwrap_or_default();
    let last = match parameters {
        PathParameters::Strip => last.split(';').next().unwrap_or_default(),
        PathParameters::Reject => last,
    };
    let trailing = matches!(last, "" | "." | "..");
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (trailing && !out.ends_with('/')) {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_canonical() {
        for (raw, canon) in [
            ("/", "/"),
            ("/api/items", "/api/items"),
            ("/api/items/", "/api/items/"),
            ("/api/../admin/x", "/admin/x"),
            ("//admin", "/admin"),
            ("/api//items/./7", "/api/items/7"),
            ("/%61dmin", "/admin"),
            ("/api/%2e%2e/admin", "/admin"),
            ("/api/%2E%2E/%2e/admin", "/admin"),
            ("/../../etc", "/etc"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/space%20here", "/space%20here"),
            ("/lower%3a", "/lower%3A"),
            ("/caf\u{e9}", "/caf\u{e9}"),
            ("/shop.Payments/Charge", "/shop.Payments/Charge"),
        ] {
            assert_eq!(
                canonical(raw, PathParameters::Reject).as_deref(),
                Ok(canon),
                "{raw}"
            );
            assert_eq!(
                canonical(raw, PathParameters::Strip).as_deref(),
                Ok(canon),
                "{raw}"
            );
        }
    }

    #[test]
    fn untrustworthy_paths_are_refused() {
        assert_eq!(
            canonical("/a%2Fb", PathParameters::Reject),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(
            canonical("/a%2fb", PathParameters::Reject),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(
            canonical("/a%5cb", PathParameters::Reject),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(
            canonical("/a%00", PathParameters::Reject),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(
            canonical("/a\\b", PathParameters::Reject),
            Err(PathError::Backslash)
        );
        assert_eq!(
            canonical("/a%zz", PathParameters::Reject),
            Err(PathError::BadEscape)
        );
        assert_eq!(
            canonical("/a%2", PathParameters::Reject),
            Err(PathError::BadEscape)
        );
        assert_eq!(
            canonical("a/b", PathParameters::Reject),
            Err(PathError::NotAbsolute)
        );
        assert_eq!(
            canonical("*", PathParameters::Reject),
            Err(PathError::NotAbsolute)
        );
    }
}

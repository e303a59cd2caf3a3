//! SPIFFE IDs and trust domains, parsed exactly as the SPIFFE ID specification says.
//!
//! A SPIFFE ID is `spiffe://<trust-domain><path>`:
//! - the scheme is the literal lowercase `spiffe://`;
//! - the trust domain is non-empty, at most 255 bytes, and only `a-z 0-9 . - _` (no upper
//!   case, no port, no user info, no percent-encoding);
//! - the path is empty or a sequence of `/segment`, each segment non-empty, not `.` or `..`,
//!   and only `a-z A-Z 0-9 . - _`; no trailing slash;
//! - no query and no fragment; the whole ID is at most 2048 bytes.

use std::{fmt, str::FromStr, sync::Arc};

/// Longest SPIFFE ID accepted, in bytes (SPIFFE ID spec, section 2.3).
pub const MAX_ID_LEN: usize = 2048;
/// Longest trust domain name accepted, in bytes (SPIFFE ID spec, section 2.1).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SCHEME: &str = "spiffe://";

/// Why a string is not a valid SPIFFE ID or trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    #[error("SPIFFE ID is empty")]
    Empty,
    #[error("SPIFFE ID must start with `spiffe://`")]
    WrongScheme,
    #[error("trust domain is missing")]
    MissingTrustDomain,
    #[error(
        "trust domain may only contain lowercase letters, digits, `.`, `-` and `_`; found `{0}`"
    )]
    TrustDomainChar(char),
    #[error("trust domain must not carry a port")]
    Port,
    #[error("SPIFFE ID must not carry user info (`@`)")]
    UserInfo,
    #[error("SPIFFE ID must not carry a query (`?`)")]
    Query,
    #[error("SPIFFE ID must not carry a fragment (`#`)")]
    Fragment,
    #[error("path must not contain empty segments (`//`)")]
    EmptySegment,
    #[error("path must not contain `.` or `..` segments")]
    DotSegment,
    #[error(
        "path segments may only contain letters, digits, `.`, `-` and `_`; found `{0}` \
         (percent-encoding is not allowed)"
    )]
    PathChar(char),
    #[error("path must not end with `/`")]
    TrailingSlash,
    #[error("path must be empty or start with `/`")]
    RelativePath,
    #[error("a trust domain has no path; use `spiffe://<trust-domain>` or the bare name")]
    TrustDomainWithPath,
    #[error("SPIFFE ID is {0} bytes long; the limit is 2048")]
    TooLong(usize),
    #[error("trust domain is {0} bytes long; the limit is 255")]
    TrustDomainTooLong(usize),
}

/// A SPIFFE trust domain name, such as `acme.internal`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(Arc<str>);

impl TrustDomain {
    /// Parses a trust domain from its bare name (`acme.internal`) or from a SPIFFE ID that
    /// names it with an empty path (`spiffe://acme.internal`).
    pub fn new(name: &str) -> Result<Self, IdError> {
        if let Some(rest) = name.strip_prefix(SCHEME) {
            let id = SpiffeId::from_str(name)?;
            if !id.path().is_empty() {
                return Err(IdError::TrustDomainWithPath);
            }
            debug_assert_eq!(rest, id.trust_domain_str());
            return Ok(id.trust_domain());
        }
        check_trust_domain(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// The bare name, without scheme.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself, `spiffe://<name>`.
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            text: Arc::from(format!("{SCHEME}{}", self.0)),
            path_start: SCHEME.len() + self.0.len(),
        }
    }

    /// The ID of a workload in this trust domain at `path` (for example `/ns/shop/sa/cart`).
    pub fn workload(&self, path: &str) -> Result<SpiffeId, IdError> {
        if path.is_empty() {
            return Ok(self.id());
        }
        if !path.starts_with('/') {
            return Err(IdError::RelativePath);
        }
        check_path(path)?;
        let text = format!("{SCHEME}{}{path}", self.0);
        if text.len() > MAX_ID_LEN {
            return Err(IdError::TooLong(text.len()));
        }
        Ok(SpiffeId {
            path_start: SCHEME.len() + self.0.len(),
            text: Arc::from(text),
        })
    }

    /// The conventional Kubernetes-style ID, `spiffe://<td>/ns/<namespace>/sa/<service-account>`.
    pub fn service_account(&self, namespace: &str, account: &str) -> Result<SpiffeId, IdError> {
        self.workload(&format!("/ns/{namespace}/sa/{account}"))
    }
}

impl FromStr for TrustDomain {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({})", self.0)
    }
}

/// A SPIFFE ID, such as `spiffe://acme.internal/ns/shop/sa/cart`.
///
/// Cheap to clone: the text is shared.
#[derive(Clone)]
pub struct SpiffeId {
    // INVARIANT (valid-id): `text` is a valid SPIFFE ID and `path_start` is the byte offset of
    // its path (equal to `text.len()` when the path is empty). Set only by the parsers here.
    text: Arc<str>,
    path_start: usize,
}

impl SpiffeId {
    /// The whole ID as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(Arc::from(self.trust_domain_str()))
    }

    /// The trust domain's name, borrowed.
    pub fn trust_domain_str(&self) -> &str {
        // INVARIANT (valid-id) relied on: both offsets are char boundaries of ASCII text.
        &self.text[SCHEME.len()..self.path_start]
    }

    /// Whether this ID belongs to `td`.
    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        self.trust_domain_str() == td.as_str()
    }

    /// The path, empty or starting with `/`.
    pub fn path(&self) -> &str {
        &self.text[self.path_start..]
    }

    /// The path segments, without slashes.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path().split('/').skip(1)
    }

    /// `(namespace, service account)` when the path is exactly `/ns/<ns>/sa/<sa>`.
    pub fn namespace_and_account(&self) -> Option<(&str, &str)> {
        let mut segs = self.segments();
        match (
            segs.next(),
            segs.next(),
            segs.next(),
            segs.next(),
            segs.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(IdError::TooLong(s.len()));
        }
        let rest = s.strip_prefix(SCHEME).ok_or(IdError::WrongScheme)?;
        let td_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (td, tail) = rest.split_at(td_len);
        check_trust_domain(td)?;
        if let Some(at) = tail.find(['?', '#']) {
            return Err(if tail.as_bytes()[at] == b'?' {
                IdError::Query
            } else {
                IdError::Fragment
            });
        }
        check_path(tail)?;
        Ok(Self {
            text: Arc::from(s),
            path_start: SCHEME.len() + td.len(),
        })
    }
}

fn check_trust_domain(td: &str) -> Result<(), IdError> {
    if td.is_empty() {
        return Err(IdError::MissingTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::TrustDomainTooLong(td.len()));
    }
    for c in td.chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            ':' => return Err(IdError::Port),
            '@' => return Err(IdError::UserInfo),
            '?' => return Err(IdError::Query),
            '#' => return Err(IdError::Fragment),
            other => return Err(IdError::TrustDomainChar(other)),
        }
    }
    Ok(())
}

/// Checks a path that is empty or starts with `/`.
fn check_path(path: &str) -> Result<(), IdError> {
    if path.is_empty() {
        return Ok(());
    }
    let Some(body) = path.strip_prefix('/') else {
        return Err(IdError::RelativePath);
    };
    if body.is_empty() {
        return Err(IdError::TrailingSlash);
    }
    let segments: Vec<&str> = body.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.into_iter().enumerate() {
        if seg.is_empty() {
            return Err(if i == last {
                IdError::TrailingSlash
            } else {
                IdError::EmptySegment
            });
        }
        if seg == "." || seg == ".." {
            return Err(IdError::DotSegment);
        }
        for c in seg.chars() {
            match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => {}
                '?' => return Err(IdError::Query),
                '#' => return Err(IdError::Fragment),
                other => return Err(IdError::PathChar(other)),
            }
        }
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.text)
    }
}

impl PartialEq for SpiffeId {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for SpiffeId {}

impl std::hash::Hash for SpiffeId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl PartialOrd for SpiffeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for SpiffeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for SpiffeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for TrustDomain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TrustDomain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[path = "id_tests.rs"]
mod tests;

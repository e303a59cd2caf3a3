//! End-user authentication: JWTs verified before the policies decide (by the proxy; the
//! control plane builds the same providers to validate what operators apply).
//!
//! Each provider names an issuer, the audiences it accepts, its keys (a JWKS), the header
//! the token comes in (default `Authorization`, prefix `Bearer `) and the algorithms it may
//! sign with: ES256, RS256 or EdDSA only. A token is refused when it is larger than the
//! limit, names `none`, an HMAC or any other algorithm, a `kid` no provider has, fails its
//! signature, is expired or not yet valid (beyond the allowed clock skew), or names another
//! issuer or audience. A valid token's claims fill the request's `context.user`. The token
//! itself is never logged or audited: only the reason it was refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::authorizer::Claims;

/// Largest token accepted, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The algorithms a provider may allow.
const ALLOWED: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];

/// One provider, ready to verify.
#[derive(Clone)]
pub struct Provider {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    header: String,
    prefix: String,
    algorithms: Vec<Algorithm>,
    keys: HashMap<String, DecodingKey>,
    skew: Duration,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// What a provider is made from.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    /// A JWKS document (JSON).
    pub jwks: String,
    /// Lower-case header name.
    pub header: String,
    pub prefix: String,
    /// `ES256`, `RS256`, `EdDSA`.
    pub algorithms: Vec<String>,
    pub skew: Duration,
}

/// Parses an algorithm a provider may allow.
pub fn algorithm(name: &str) -> Result<Algorithm, String> {
    match name {
        "ES256" => Ok(Algorithm::ES256),
        "RS256" => Ok(Algorithm::RS256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(format!(
            "algorithm `{other}` is not allowed (ES256, RS256 or EdDSA)"
        )),
    }
}

impl Provider {
    /// Builds a provider, checking every part: the keys must parse, each with a `kid`.
    pub fn new(spec: &ProviderSpec) -> Result<Self, String> {
        let name = &spec.name;
        if spec.issuer.is_empty() {
            return Err(format!("provider `{name}`: issuer is empty"));
        }
        if spec.audiences.is_empty() {
            return Err(format!(
                "provider `{name}`: at least one audience is needed"
            ));
        }
        let algorithms = spec
            .algorithms
            .iter()
            .map(|a| algorithm(a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("provider `{name}`: {e}"))?;
        if algorithms.is_empty() {
            return Err(format!("provider `{name}`: no algorithm allowed"));
        }
        let header = spec.header.to_ascii_lowercase();
        if header.is_empty()
            || !header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(format!(
                "provider `{name}`: `{}` is not a header name",
                spec.header
            ));
        }
        let set: JwkSet = serde_json::from_str(&spec.jwks)
            .map_err(|e| format!("provider `{name}`: the JWKS does not parse: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                return Err(format!(
                    "provider `{name}`: a JWKS key has no `kid` (tokens name their key by kid)"
                ));
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| format!("provider `{name}`: key `{kid}`: {e}"))?;
            if keys.insert(kid.clone(), key).is_some() {
                return Err(format!("provider `{name}`: key `{kid}` is listed twice"));
            }
        }
        if keys.is_empty() {
            return Err(format!("provider `{name}`: the JWKS holds no key"));
        }
        Ok(Self {
            name: name.clone(),
            issuer: spec.issuer.clone(),
            audiences: spec.audiences.clone(),
            header,
            prefix: spec.prefix.clone(),
            algorithms,
            keys,
            skew: spec.skew,
        })
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Why a token was refused: short, fixed words for the audit trail, metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Oversized,
    Malformed,
    Algorithm,
    UnknownKey,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    Missing,
}

impl Refusal {
    /// The reason as a label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Oversized => "oversized",
            Refusal::Malformed => "malformed",
            Refusal::Algorithm => "algorithm-not-allowed",
            Refusal::UnknownKey => "unknown-kid",
            Refusal::Signature => "bad-signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not-yet-valid",
            Refusal::Issuer => "wrong-issuer",
            Refusal::Audience => "wrong-audience",
            Refusal::Missing => "missing",
        }
    }
}

/// Most verified tokens remembered per verifier.
const CACHED_TOKENS: usize = 4096;

/// A verified token's claims and when they hold (Unix seconds, skew included).
#[derive(Debug, Clone)]
struct Verified {
    claims: Claims,
    valid_from: u64,
    valid_until: u64,
}

/// The providers of one service and whether a token is required.
///
/// A verified token is remembered (by its SHA-256, at most [`CACHED_TOKENS`]) until it
/// expires, so a client sending the same token on every request pays for its signature
/// once; the cache lives and dies with this verifier, so new keys start a new one.
#[derive(Debug, Default)]
pub struct Authn {
    providers: Vec<Provider>,
    required: bool,
    max_token_bytes: usize,
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authn {
    /// Verifies tokens of `providers`; without a token a request is refused when
    /// `required`, else it goes on with no user.
    pub fn new(providers: Vec<Provider>, required: bool, max_token_bytes: usize) -> Self {
        Self {
            providers,
            required,
            max_token_bytes,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The providers' names.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(Provider::name)
    }

    /// Whether a request without a token is refused.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Whether anything is configured.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The verified end user of a request whose header values `header` looks up (by
    /// lower-case name): `Ok(None)` when it carries no token (and none is required), the
    /// claims of a valid token, or why it is refused.
    pub fn verify<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Result<Option<Claims>, Refusal> {
        for provider in &self.providers {
            let Some(token) =
                header(&provider.header).and_then(|v| strip_prefix(v, &provider.prefix))
            else {
                continue;
            };
            if token.len() > self.max_token_bytes {
                return Err(Refusal::Oversized);
            }
            let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
            let mut key = [0u8; 32];
            key.copy_from_slice(digest.as_ref());
            let now = now_secs();
            if let Some(hit) = self.remembered(&key, now) {
                return Ok(Some(hit));
            }
            let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
            let Some(kid) = header.kid.as_deref() else {
                return Err(Refusal::UnknownKey);
            };
            // The key is chosen by kid across the providers sharing this header; a token
            // signed by another provider's key is judged by that provider.
            let Some((owner, key_of)) = self
                .providers
                .iter()
                .filter(|p| p.header == provider.header)
                .find_map(|p| p.keys.get(kid).map(|k| (p, k)))
            else {
                return Err(Refusal::UnknownKey);
            };
            let verified = owner.check(token, header.alg, key_of)?;
            let claims = verified.claims.clone();
            self.remember(key, verified, now);
            return Ok(Some(claims));
        }
        if self.required {
            return Err(Refusal::Missing);
        }
        Ok(None)
    }
}

impl Authn {
    fn remembered(&self, key: &[u8; 32], now: u64) -> Option<Claims> {
        let cache = self.verified.lock().ok()?;
        let hit = cache.get(key)?;
        (hit.valid_from <= now && now <= hit.valid_until).then(|| hit.claims.clone())
    }

    fn remember(&self, key: [u8; 32], verified: Verified, now: u64) {
        let Ok(mut cache) = self.verified.lock() else {
            return;
        };
        if cache.len() >= CACHED_TOKENS {
            cache.retain(|_, v| v.valid_until >= now);
            if cache.len() >= CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(key, verified);
    }
}

fn strip_prefix<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(value.trim());
    }
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| value[prefix.len()..].trim())
}

impl Provider {
    fn check(&self, token: &str, alg: Algorithm, key: &DecodingKey) -> Result<Verified, Refusal> {
        if !ALLOWED.contains(&alg) || !self.algorithms.contains(&alg) {
            return Err(Refusal::Algorithm);
        }
        let mut validation = Validation::new(alg);
        validation.leeway = self.skew.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences);
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidSignature => Refusal::Signature,
                    ErrorKind::ExpiredSignature => Refusal::Expired,
                    ErrorKind::ImmatureSignature => Refusal::NotYetValid,
                    ErrorKind::InvalidIssuer => Refusal::Issuer,
                    ErrorKind::InvalidAudience => Refusal::Audience,
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        Refusal::Algorithm
                    }
                    _ => Refusal::Malformed,
                }
            })?;
        let skew = self.skew.as_secs();
        let time = |k: &str| data.claims.get(k).and_then(Value::as_u64);
        Ok(Verified {
            claims: claims(&data.claims),
            valid_from: time("nbf").map_or(0, |t| t.saturating_sub(skew)),
            valid_until: time("exp").map_or(0, |t| t.saturating_add(skew)),
        })
    }
}

/// Claims registered by RFC 7519 and those mapped to their own attributes: not tags.
const NOT_TAGS: [&str; 9] = [
    "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "groups", "roles",
];

/// A string or an array of strings, as a set.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn claims(map: &serde_json::Map<String, Value>) -> Claims {
    let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut other: Vec<(String, String)> = map
        .iter()
        .filter(|(k, _)| !NOT_TAGS.contains(&k.as_str()))
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect();
    other.sort();
    Claims {
        sub: text("sub"),
        iss: text("iss"),
        groups: strings(map.get("groups")),
        roles: strings(map.get("roles")),
        other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(from: u64, until: u64) -> Verified {
        Verified {
            claims: Claims {
                sub: "alice".to_owned(),
                ..Claims::default()
            },
            valid_from: from,
            valid_until: until,
        }
    }

    #[test]
    fn a_remembered_token_holds_only_within_its_validity() {
        let authn = Authn::new(Vec::new(), false, DEFAULT_MAX_TOKEN_BYTES);
        authn.remember([1; 32], verified(100, 200), 150);
        assert_eq!(
            authn.remembered(&[1; 32], 150).map(|c| c.sub),
            Some("alice".to_owned())
        );
        assert!(authn.remembered(&[1; 32], 201).is_none(), "expired");
        assert!(authn.remembered(&[1; 32], 99).is_none(), "not yet valid");
        assert!(authn.remembered(&[2; 32], 150).is_none(), "another token");
    }

    #[test]
    fn the_cache_is_bounded_and_sheds_expired_tokens_first() {
        let authn = Authn::new(Vec::new(), false, DEFAULT_MAX_TOKEN_BYTES);
        for i in 0..CACHED_TOKENS {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            // Half of them expired by the time the cache is full.
            let until = if i % 2 == 0 { 10 } else { 1_000 };
            authn.remember(key, verified(0, until), 5);
        }
        authn.remember([0xff; 32], verified(0, 1_000), 500);
        let len = authn.verified.lock().map(|c| c.len()).unwrap_or(0);
        assert_eq!(len, CACHED_TOKENS / 2 + 1);
        assert!(authn.remembered(&[0xff; 32], 500).is_some());
    }

    #[test]
    fn only_asymmetric_algorithms_can_be_allowed() {
        for ok in ["ES256", "RS256", "EdDSA"] {
            assert!(algorithm(ok).is_ok());
        }
        for refused in ["HS256", "none", "RS512", "es256"] {
            assert!(algorithm(refused).is_err(), "{refused}");
        }
    }
}

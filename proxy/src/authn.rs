//! End-user authentication: JWTs verified in the proxy before the policies decide.
//!
//! Each provider names an issuer, the audiences it accepts, its keys (a JWKS), the header
//! the token comes in (default `Authorization`, prefix `Bearer `) and the algorithms it may
//! sign with: ES256, RS256 or EdDSA only. A token is refused when it is larger than the
//! limit, names `none`, an HMAC or any other algorithm, a `kid` no provider has, fails its
//! signature, is expired or not yet valid (beyond the allowed clock skew), or names another
//! issuer or audience. A valid token's claims fill the request's `context.user`. The token
//! itself is never logged or audited: only the reason it was refused.

use std::collections::HashMap;
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use signet_policy::Claims;

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
    header: HeaderName,
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
        let header = HeaderName::from_bytes(spec.header.as_bytes())
            .map_err(|_| format!("provider `{name}`: `{}` is not a header name", spec.header))?;
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

/// The providers of one service and whether a token is required.
#[derive(Debug, Clone, Default)]
pub struct Authn {
    providers: Vec<Provider>,
    required: bool,
    max_token_bytes: usize,
}

impl Authn {
    /// Verifies tokens of `providers`; without a token a request is refused when
    /// `required`, else it goes on with no user.
    pub fn new(providers: Vec<Provider>, required: bool, max_token_bytes: usize) -> Self {
        Self {
            providers,
            required,
            max_token_bytes,
        }
    }

    /// Whether anything is configured.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The verified end user of a request: `Ok(None)` when it carries no token (and none is
    /// required), the claims of a valid token, or why it is refused.
    pub fn verify(&self, headers: &HeaderMap) -> Result<Option<Claims>, Refusal> {
        for provider in &self.providers {
            let Some(value) = headers.get(&provider.header) else {
                continue;
            };
            let Some(token) = value
                .to_str()
                .ok()
                .and_then(|v| strip_prefix(v, &provider.prefix))
            else {
                continue;
            };
            if token.len() > self.max_token_bytes {
                return Err(Refusal::Oversized);
            }
            let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
            let Some(kid) = header.kid.as_deref() else {
                return Err(Refusal::UnknownKey);
            };
            // The key is chosen by kid across the providers sharing this header; a token
            // signed by another provider's key is judged by that provider.
            let Some((owner, key)) = self
                .providers
                .iter()
                .filter(|p| p.header == provider.header)
                .find_map(|p| p.keys.get(kid).map(|k| (p, k)))
            else {
                return Err(Refusal::UnknownKey);
            };
            return owner.check(token, header.alg, key).map(Some);
        }
        if self.required {
            return Err(Refusal::Missing);
        }
        Ok(None)
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
    fn check(&self, token: &str, alg: Algorithm, key: &DecodingKey) -> Result<Claims, Refusal> {
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
        Ok(claims(&data.claims))
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

//! JWT-SVIDs (the SPIFFE JWT-SVID specification): tokens that carry a workload's SPIFFE ID
//! as `sub` to a peer that cannot take an X.509-SVID (an HTTP API behind a load balancer, a
//! message queue), signed by a key its trust domain publishes in its bundle.
//!
//! - [`JwtAuthority`] is one published key: a key ID and an EC (P-256, P-384) or RSA
//!   public key, read from and written as a JWK with `"use": "jwt-svid"`.
//! - [`JwtSigner`] holds a P-256 private key and signs ES256 tokens; the control plane is
//!   the only holder of one.
//! - [`JwtSvid::validate`] checks a token the way the specification asks: a compact JWS
//!   with an allowed algorithm and a `kid`, signed by that key of the bundle of the trust
//!   domain its `sub` names, with `aud` naming the expected audience and `exp` not passed.
//!   It is done with ring directly, so every check is visible here.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde_json::{Map, Value};

use crate::jwk::Jwk;
use crate::{SpiffeId, TrustBundle};

/// Largest token read, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Most audiences one token may name.
pub const MAX_AUDIENCES: usize = 16;
/// Longest audience, in bytes.
pub const MAX_AUDIENCE_LEN: usize = 256;
/// How far ahead of this clock a token's `nbf` or `iat` may be (another host's clock).
const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// Why a key or token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("the token is not a compact JWS (three base64url parts)")]
    Malformed,
    #[error("the token's header is invalid: {0}")]
    Header(String),
    #[error("the token's claims are invalid: {0}")]
    Claims(String),
    #[error("algorithm `{0}` is not allowed for JWT-SVIDs")]
    Algorithm(String),
    #[error("the token names no key (`kid` is missing)")]
    NoKeyId,
    #[error("there is no bundle for trust domain `{0}`")]
    NoBundle(String),
    #[error("trust domain `{trust_domain}` has no JWT authority `{kid}`")]
    UnknownKey { trust_domain: String, kid: String },
    #[error("key `{kid}` cannot verify {alg} signatures")]
    WrongKeyType { kid: String, alg: String },
    #[error("the signature does not verify")]
    Signature,
    #[error("the token expired at {0} (unix seconds)")]
    Expired(u64),
    #[error("the token is not valid before {0} (unix seconds)")]
    NotYetValid(u64),
    #[error("the token is not for audience `{0}`")]
    Audience(String),
    #[error("bad audience: {0}")]
    BadAudience(String),
    #[error("bad key: {0}")]
    Key(String),
    #[error("signing failed")]
    Signing,
}

/// An elliptic curve JWT-SVIDs may be signed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }
}

/// A public key that verifies JWT-SVIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKey {
    /// The uncompressed point (`04 || x || y`).
    Ec { curve: Curve, point: Vec<u8> },
    /// Big-endian modulus and exponent, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// A trust domain's published JWT signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuthority {
    key_id: String,
    key: JwtKey,
}

fn b64(field: &str, value: Option<&String>) -> Result<Vec<u8>, JwtError> {
    let value = value.ok_or_else(|| JwtError::Key(format!("`{field}` is missing")))?;
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| JwtError::Key(format!("`{field}` is not base64url")))
}

impl JwtAuthority {
    /// An authority for `key` under `key_id`.
    pub fn new(key_id: &str, key: JwtKey) -> Result<Self, JwtError> {
        if key_id.is_empty() || key_id.len() > 256 {
            return Err(JwtError::Key(
                "the key ID must be 1 to 256 bytes".to_owned(),
            ));
        }
        Ok(Self {
            key_id: key_id.to_owned(),
            key,
        })
    }

    /// The key ID (`kid`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key.
    pub fn key(&self) -> &JwtKey {
        &self.key
    }

    /// Reads a JWK; its `kid` is required.
    pub(crate) fn from_jwk(jwk: &Jwk) -> Result<Self, JwtError> {
        let kid = jwk
            .kid
            .as_deref()
            .ok_or_else(|| JwtError::Key("`kid` is missing".to_owned()))?;
        let key = match jwk.kty.as_str() {
            "EC" => {
                let curve = match jwk.crv.as_deref() {
                    Some("P-256") => Curve::P256,
                    Some("P-384") => Curve::P384,
                    other => {
                        return Err(JwtError::Key(format!(
                            "curve {} is not supported (P-256, P-384)",
                            other.unwrap_or("(none)")
                        )));
                    }
                };
                let (x, y) = (b64("x", jwk.x.as_ref())?, b64("y", jwk.y.as_ref())?);
                if x.len() != curve.coordinate_len() || y.len() != curve.coordinate_len() {
                    return Err(JwtError::Key(format!(
                        "the coordinates are not {} bytes long",
                        curve.coordinate_len()
                    )));
                }
                let mut point = Vec::with_capacity(1 + 2 * x.len());
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                JwtKey::Ec { curve, point }
            }
            "RSA" => {
                let (n, e) = (b64("n", jwk.n.as_ref())?, b64("e", jwk.e.as_ref())?);
                if n.len() < 256 {
                    return Err(JwtError::Key(
                        "RSA keys must be at least 2048 bits".to_owned(),
                    ));
                }
                JwtKey::Rsa { n, e }
            }
            other => {
                return Err(JwtError::Key(format!(
                    "key type `{other}` is not supported (EC, RSA)"
                )));
            }
        };
        Self::new(kid, key)
    }

    /// The JWK, with `"use": "jwt-svid"`.
    pub(crate) fn to_jwk(&self) -> Jwk {
        let mut jwk = match &self.key {
            JwtKey::Ec { curve, point } => {
                let len = curve.coordinate_len();
                Jwk {
                    kty: "EC".to_owned(),
                    crv: Some(curve.name().to_owned()),
                    x: Some(URL_SAFE_NO_PAD.encode(&point[1..=len])),
                    y: Some(URL_SAFE_NO_PAD.encode(&point[1 + len..])),
                    ..Jwk::default()
                }
            }
            JwtKey::Rsa { n, e } => Jwk {
                kty: "RSA".to_owned(),
                n: Some(URL_SAFE_NO_PAD.encode(n)),
                e: Some(URL_SAFE_NO_PAD.encode(e)),
                ..Jwk::default()
            },
        };
        jwk.use_ = Some("jwt-svid".to_owned());
        jwk.kid = Some(self.key_id.clone());
        jwk
    }

    /// The JWK as JSON (the form the control-plane API carries one key in).
    pub fn to_jwk_json(&self) -> String {
        serde_json::to_string(&self.to_jwk()).unwrap_or_default()
    }

    /// Reads [`Self::to_jwk_json`]'s form.
    pub fn from_jwk_json(json: &str) -> Result<Self, JwtError> {
        let jwk: Jwk = serde_json::from_str(json).map_err(|e| JwtError::Key(e.to_string()))?;
        Self::from_jwk(&jwk)
    }

    /// Checks `signature` over `message` for the token algorithm `alg`.
    fn verify(&self, alg: &str, message: &[u8], sig: &[u8]) -> Result<(), JwtError> {
        let wrong = || JwtError::WrongKeyType {
            kid: self.key_id.clone(),
            alg: alg.to_owned(),
        };
        let outcome = match (&self.key, alg) {
            (JwtKey::Ec { curve, point }, "ES256" | "ES384") => {
                let algorithm = match (curve, alg) {
                    (Curve::P256, "ES256") => &signature::ECDSA_P256_SHA256_FIXED,
                    (Curve::P384, "ES384") => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => return Err(wrong()),
                };
                signature::UnparsedPublicKey::new(algorithm, point).verify(message, sig)
            }
            (JwtKey::Rsa { n, e }, _) => {
                let algorithm: &signature::RsaParameters = match alg {
                    "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                    "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                    "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                    "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                    "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return Err(wrong()),
                };
                signature::RsaPublicKeyComponents { n, e }.verify(algorithm, message, sig)
            }
            _ => return Err(wrong()),
        };
        outcome.map_err(|_| JwtError::Signature)
    }
}

/// A P-256 key that signs ES256 JWT-SVIDs.
pub struct JwtSigner {
    authority: JwtAuthority,
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("key_id", &self.authority.key_id)
            .finish_non_exhaustive()
    }
}

/// A signed token and when it expires.
#[derive(Debug, Clone)]
pub struct MintedJwt {
    pub token: String,
    pub expires: SystemTime,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks the audiences a token is asked for: 1 to [`MAX_AUDIENCES`], each non-empty and
/// at most [`MAX_AUDIENCE_LEN`] bytes.
pub fn check_audience(audience: &[String]) -> Result<(), JwtError> {
    if audience.is_empty() {
        return Err(JwtError::BadAudience(
            "at least one audience is required".to_owned(),
        ));
    }
    if audience.len() > MAX_AUDIENCES {
        return Err(JwtError::BadAudience(format!(
            "at most {MAX_AUDIENCES} audiences"
        )));
    }
    if let Some(bad) = audience
        .iter()
        .find(|a| a.is_empty() || a.len() > MAX_AUDIENCE_LEN)
    {
        return Err(JwtError::BadAudience(format!(
            "`{bad}` is empty or longer than {MAX_AUDIENCE_LEN} bytes"
        )));
    }
    Ok(())
}

impl JwtSigner {
    /// A new P-256 private key, PKCS#8 DER.
    pub fn generate_pkcs8() -> Result<Vec<u8>, JwtError> {
        EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| JwtError::Key("no secure random source".to_owned()))
    }

    /// The signer of a P-256 PKCS#8 key; its key ID is the key's JWK thumbprint (RFC 7638),
    /// so every holder of the key names it the same.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, JwtError> {
        let rng = SystemRandom::new();
        let pair =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                .map_err(|e| JwtError::Key(e.to_string()))?;
        let point = pair.public_key().as_ref().to_vec();
        let key = JwtKey::Ec {
            curve: Curve::P256,
            point,
        };
        let mut jwk = JwtAuthority {
            key_id: String::new(),
            key: key.clone(),
        }
        .to_jwk();
        // RFC 7638: the required members only, in lexicographic order, no whitespace.
        let canonical = format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk.crv.take().unwrap_or_default(),
            jwk.x.take().unwrap_or_default(),
            jwk.y.take().unwrap_or_default()
        );
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        let authority = JwtAuthority::new(&URL_SAFE_NO_PAD.encode(digest.as_ref()), key)?;
        Ok(Self {
            authority,
            pair,
            rng,
        })
    }

    /// The key ID.
    pub fn key_id(&self) -> &str {
        self.authority.key_id()
    }

    /// The public half, as the bundle publishes it.
    pub fn authority(&self) -> &JwtAuthority {
        &self.authority
    }

    /// A token for `id`, for `audience`, issued at `now` and living `ttl`; `jti` names it
    /// in the issuer's audit trail.
    pub fn sign(
        &self,
        id: &SpiffeId,
        audience: &[String],
        now: SystemTime,
        ttl: Duration,
        jti: &str,
    ) -> Result<MintedJwt, JwtError> {
        check_audience(audience)?;
        let expires = now + ttl;
        let header = serde_json::json!({
            "alg": "ES256",
            "kid": self.authority.key_id,
            "typ": "JWT",
        });
        let aud = match audience {
            [one] => Value::String(one.clone()),
            many => Value::from(many.to_vec()),
        };
        let claims = serde_json::json!({
            "sub": id.as_str(),
            "aud": aud,
            "exp": unix(expires),
            "iat": unix(now),
            "jti": jti,
        });
        let mut token = String::with_capacity(512);
        URL_SAFE_NO_PAD.encode_string(header.to_string(), &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut token);
        let sig = self
            .pair
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| JwtError::Signing)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut token);
        Ok(MintedJwt { token, expires })
    }
}

/// A validated JWT-SVID.
#[derive(Debug, Clone)]
pub struct JwtSvid {
    id: SpiffeId,
    audience: Vec<String>,
    expires: SystemTime,
    claims: Map<String, Value>,
}

const ALGORITHMS: [&str; 8] = [
    "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
];

fn part(b64: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD.decode(b64).map_err(|_| JwtError::Malformed)
}

fn seconds(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| JwtError::Claims(format!("`{name}` is not a number of seconds"))),
    }
}

impl JwtSvid {
    /// Validates `token` for `audience` at `now` against the bundle of the trust domain its
    /// `sub` names, found among `bundles`.
    pub fn validate(
        token: &str,
        audience: &str,
        bundles: &[TrustBundle],
        now: SystemTime,
    ) -> Result<Self, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Map<String, Value> = serde_json::from_slice(&part(header_b64)?)
            .map_err(|e| JwtError::Header(e.to_string()))?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| JwtError::Header("`alg` is missing".to_owned()))?;
        if !ALGORITHMS.contains(&alg) {
            return Err(JwtError::Algorithm(alg.to_owned()));
        }
        match header.get("typ").map(Value::as_str) {
            None | Some(Some("JWT" | "JOSE")) => {}
            Some(_) => return Err(JwtError::Header("`typ` is not JWT or JOSE".to_owned())),
        }
        if header.contains_key("crit") {
            return Err(JwtError::Header(
                "`crit` extensions are not understood".to_owned(),
            ));
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(JwtError::NoKeyId)?;
        let claims: Map<String, Value> = serde_json::from_slice(&part(claims_b64)?)
            .map_err(|e| JwtError::Claims(e.to_string()))?;
        let id: SpiffeId = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| JwtError::Claims("`sub` is missing".to_owned()))?
            .parse()
            .map_err(|e| JwtError::Claims(format!("`sub` is not a SPIFFE ID: {e}")))?;
        let bundle = bundles
            .iter()
            .find(|b| id.is_member_of(b.trust_domain()))
            .ok_or_else(|| JwtError::NoBundle(id.trust_domain_str().to_owned()))?;
        let authority = bundle
            .jwt_authority(kid)
            .ok_or_else(|| JwtError::UnknownKey {
                trust_domain: id.trust_domain_str().to_owned(),
                kid: kid.to_owned(),
            })?;
        let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
        authority.verify(alg, signed.as_bytes(), &part(sig_b64)?)?;

        // Only a token whose signature holds has its claims believed.
        let audiences: Vec<String> = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Array(many)) => many
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| JwtError::Claims("`aud` holds a non-string".to_owned()))?,
            _ => return Err(JwtError::Claims("`aud` is missing".to_owned())),
        };
        if audiences.is_empty() {
            return Err(JwtError::Claims("`aud` is empty".to_owned()));
        }
        let exp = seconds(&claims, "exp")?
            .ok_or_else(|| JwtError::Claims("`exp` is missing".to_owned()))?;
        let now_s = unix(now);
        if exp <= now_s {
            return Err(JwtError::Expired(exp));
        }
        let ahead = now_s + CLOCK_SKEW.as_secs();
        for name in ["nbf", "iat"] {
            if let Some(t) = seconds(&claims, name)?
                && t > ahead
            {
                return Err(JwtError::NotYetValid(t));
            }
        }
        if !audiences.iter().any(|a| a == audience) {
            return Err(JwtError::Audience(audience.to_owned()));
        }
        Ok(Self {
            id,
            audience: audiences,
            expires: SystemTime::UNIX_EPOCH + Duration::from_secs(exp),
            claims,
        })
    }

    /// The SPIFFE ID (`sub`).
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// Every audience the token names.
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// When it expires.
    pub fn expires(&self) -> SystemTime {
        self.expires
    }

    /// Every claim, as signed.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;

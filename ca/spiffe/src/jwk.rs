//! JSON Web Keys as the SPIFFE bundle format writes them (RFC 7517, with the SPIFFE `use`
//! values `x509-svid` and `jwt-svid`).

use serde::{Deserialize, Serialize};

/// A JWK set with the SPIFFE bundle fields.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct JwkSet {
    pub keys: Vec<Jwk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_sequence: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_refresh_hint: Option<u64>,
}

/// One key: only the members SPIFFE bundles use.
#[derive(Serialize, Deserialize, Default, Clone, PartialEq, Eq, Debug)]
pub(crate) struct Jwk {
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    pub kty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
}

impl Jwk {
    /// Whether the key material this JWK states (if any) is that of `described`.
    pub fn matches(&self, described: &Jwk) -> bool {
        let same = |a: &Option<String>, b: &Option<String>| a.is_none() || a == b;
        self.kty == described.kty
            && same(&self.crv, &described.crv)
            && same(&self.x, &described.x)
            && same(&self.y, &described.y)
            && same(&self.n, &described.n)
            && same(&self.e, &described.e)
    }
}

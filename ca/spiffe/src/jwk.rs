//! JSON Web Keys as the SPIFFE bundle format writes them (RFC 7517, with the SPIFFE `use`
//! values `x509-svid` and `jwt-svid`).

use serde::{Deserialize, Serialize};

/// A JWK set with the SPIFFE bundle fields.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct JwkSet {
    pub(crate) keys: Vec<Jwk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) spiffe_sequence: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) spiffe_refresh_hint: Option<u64>,
}

/// One key: only the members SPIFFE bundles use.
#[derive(Serialize, Deserialize, Default, Clone, PartialEq, Eq, Debug)]
pub(crate) struct Jwk {
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub(crate) use_: Option<String>,
    pub(crate) kty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) x5c: Option<Vec<String>>,
}

impl Jwk {
    /// Whether the key material this JWK states (if any) is that of `described`.
    pub(crate) fn matches(&self, described: &Jwk) -> bool {
        let same = |a: &Option<String>, b: &Option<String>| a.is_none() || a == b;
        self.kty == described.kty
            && same(&self.crv, &described.crv)
            && same(&self.x, &described.x)
            && same(&self.y, &described.y)
            && same(&self.n, &described.n)
            && same(&self.e, &described.e)
    }
}

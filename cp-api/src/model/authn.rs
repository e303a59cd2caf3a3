//! `/v1/authn`: end-user authentication. The document is what operators write
//! (`meshctl authn apply`), so unlike the answers it refuses fields it does not know.

use serde::{Deserialize, Serialize};

use super::Enforcement;

/// The whole end-user authentication configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthnDoc {
    pub providers: Vec<ProviderDoc>,
    #[serde(default)]
    pub services: Vec<ServiceAuthn>,
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: u32,
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u32,
}

fn default_max_token_bytes() -> u32 {
    8192
}

fn default_clock_skew() -> u32 {
    60
}

/// One JWT provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDoc {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    /// The keys, a JWKS document (JSON text). Exactly one of `jwks` and `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Where the control plane fetches the keys (`https` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// PEM certificates to trust for `jwks_uri` instead of the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_ca: Option<String>,
    /// How often `jwks_uri` is fetched again.
    #[serde(default = "default_refresh")]
    pub refresh_seconds: u64,
    #[serde(default = "default_header")]
    pub header: String,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
}

fn default_refresh() -> u64 {
    300
}

fn default_header() -> String {
    "authorization".to_owned()
}

fn default_prefix() -> String {
    "Bearer ".to_owned()
}

fn default_algorithms() -> Vec<String> {
    ["ES256", "RS256", "EdDSA"].map(str::to_owned).to_vec()
}

/// Which providers one service accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAuthn {
    pub service: String,
    pub namespace: String,
    pub providers: Vec<String>,
    /// Refuse requests without a token (default: only invalid tokens are refused).
    #[serde(default)]
    pub required: bool,
}

/// A provider's keys as the control plane holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderKeys {
    pub name: String,
    pub issuer: String,
    /// `inline`, or the URL they are fetched from.
    pub keys_from: String,
    /// How many keys it has now.
    pub keys: u64,
    /// When a fetched provider's keys last came (Unix ms).
    pub fetched_at: Option<i64>,
    /// The last fetch's error, cleared by a good fetch.
    pub error: Option<String>,
}

/// `GET /v1/authn`: the configuration in force (`None` before the first apply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthnState {
    pub version: u64,
    pub author: String,
    pub applied_at: i64,
    pub config: Option<AuthnDoc>,
    pub providers: Vec<ProviderKeys>,
}

/// `POST /v1/authn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthnApplied {
    pub version: u64,
    pub enforcement: Enforcement,
}

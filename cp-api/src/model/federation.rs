//! `/v1/federation`: the trust domains this mesh federates with.

use serde::{Deserialize, Serialize};

use super::Enforcement;

/// How a federated trust domain's bundle endpoint is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FederationProfile {
    /// It presents an SVID of its own trust domain, checked against its bundle.
    HttpsSpiffe,
    /// An ordinary web PKI certificate.
    HttpsWeb,
}

impl std::str::FromStr for FederationProfile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "https_spiffe" => Ok(Self::HttpsSpiffe),
            "https_web" => Ok(Self::HttpsWeb),
            other => Err(format!(
                "profile `{other}`: expected https_spiffe or https_web"
            )),
        }
    }
}

impl FederationProfile {
    /// The name as the specification writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::HttpsSpiffe => "https_spiffe",
            Self::HttpsWeb => "https_web",
        }
    }
}

/// One federated trust domain and the bundle held for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Federation {
    pub trust_domain: String,
    /// The bundle endpoint's URL.
    pub endpoint: String,
    pub profile: FederationProfile,
    /// `https_spiffe`: the SPIFFE ID the endpoint presents.
    pub endpoint_spiffe_id: Option<String>,
    /// X.509 roots in the bundle held.
    pub roots: u64,
    /// The `kid`s of its JWT authorities.
    pub jwt_keys: Vec<String>,
    /// The bundle's sequence number.
    pub sequence: u64,
    /// The last good fetch (`None`: never; the bootstrap bundle is held).
    pub refreshed_at: Option<i64>,
    pub next_refresh: i64,
    /// Why the last fetch failed (`None` when it did not).
    pub last_error: Option<String>,
    pub created_at: i64,
    pub author: String,
}

/// `GET /v1/federation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationList {
    /// This mesh's own trust domain.
    pub trust_domain: String,
    pub federations: Vec<Federation>,
}

/// `POST /v1/federation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationAdded {
    pub federation: Federation,
    /// Which proxies trust it.
    pub enforcement: Enforcement,
}

/// `DELETE /v1/federation/{trust_domain}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationRemoved {
    pub removed: String,
    /// Which proxies dropped its roots.
    pub enforcement: Enforcement,
}

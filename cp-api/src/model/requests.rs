//! The bodies of the REST API's requests, as `meshctl` sends them and the handlers read
//! them. Unlike the answers, they refuse fields they do not know: a misspelt option is an
//! error, not silently ignored. `wait_seconds` is how long a change waits for every proxy
//! to report it enforces it (default 10, at most 300; 0: do not wait).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{AuthnDoc, PolicyFile};

/// `POST /v1/tokens`: a one-time join token for `spiffe_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub spiffe_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// `POST /v1/deny`: exactly one of `spiffe_id` and `serial`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// `POST /v1/svid`: a join token redeemed for an SVID of its identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SvidRequest {
    pub join_token: String,
    /// PKCS#10 CSR, PEM.
    pub csr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// `POST /v1/policies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyApplyRequest {
    pub files: Vec<PolicyFile>,
    #[serde(default)]
    pub message: String,
    /// Apply only if this is still the latest version (what the caller reviewed against).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
    #[serde(default)]
    pub dry_run: bool,
    /// Apply even if the control plane's access diff finds the change opens access (the
    /// operator also needs `policy.apply_widening`).
    #[serde(default)]
    pub allow_widening: bool,
    /// How long to wait for every proxy to report it enforces the new version (default
    /// 10 s; 0: do not wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// `POST /v1/policies/rollback`: an older version's policies applied again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRollbackRequest {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
    #[serde(default)]
    pub allow_widening: bool,
}

/// `POST /v1/services/labels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsRequest {
    pub service: String,
    pub namespace: String,
    /// Labels to set (replacing a key's value).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Keys to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// `POST /v1/policies/shadow`: a candidate decided beside the applied policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowInstallRequest {
    pub files: Vec<PolicyFile>,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// `POST /v1/policies/shadow/promote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowPromoteRequest {
    /// The candidate the caller reviewed: promoting another one is refused.
    pub candidate: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
    #[serde(default)]
    pub allow_widening: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// `DELETE /v1/policies/shadow` (the body is optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ShadowClearRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// `POST /v1/traffic`: the whole mesh's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficApplyRequest {
    /// The document as the operator wrote it (YAML or JSON).
    pub document: String,
    /// Its file name, for problems (`traffic.yaml:12: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Check and diff only.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// `POST /v1/traffic/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficRollbackRequest {
    pub version: u64,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// `POST /v1/workloads/attestation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    pub service: String,
    pub namespace: String,
    /// Replaces the service's selectors; empty: clears them (its proxies' own
    /// configuration applies again).
    pub selectors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// `POST /v1/authn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthnApplyRequest {
    pub config: AuthnDoc,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// `POST /v1/federation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationAddRequest {
    pub trust_domain: String,
    pub endpoint: String,
    pub profile: String,
    /// `https_spiffe`: the SPIFFE ID the endpoint presents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_spiffe_id: Option<String>,
    /// The bundle that authenticates the first fetch (`https_spiffe`; PEM roots or the
    /// SPIFFE bundle format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_bundle: Option<String>,
    /// `https_web`: roots (PEM) the endpoint's certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

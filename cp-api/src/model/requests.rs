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

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    use super::*;

    /// `minimal` reads as `T`, and the same with a misspelt field does not.
    fn strict<T: DeserializeOwned>(minimal: Value) -> Result<(), String> {
        let name = std::any::type_name::<T>();
        serde_json::from_value::<T>(minimal.clone())
            .map_err(|e| format!("{name}: {minimal}: {e}"))?;
        let mut typo = minimal;
        typo["wait_secnods"] = json!(1);
        match serde_json::from_value::<T>(typo) {
            Err(e) if e.to_string().contains("unknown field `wait_secnods`") => Ok(()),
            Err(e) => Err(format!("{name}: refused for another reason: {e}")),
            Ok(_) => Err(format!("{name}: a misspelt field was accepted")),
        }
    }

    #[test]
    fn every_request_body_refuses_a_field_it_does_not_know() {
        let files = json!([{ "name": "a.cedar", "text": "" }]);
        let results = [
            strict::<TokenRequest>(json!({ "spiffe_id": "spiffe://t/x" })),
            strict::<DenyRequest>(json!({ "serial": "0a" })),
            strict::<SvidRequest>(json!({ "join_token": "t", "csr": "c" })),
            strict::<PolicyApplyRequest>(json!({ "files": files })),
            strict::<PolicyRollbackRequest>(json!({ "version": 1 })),
            strict::<LabelsRequest>(json!({ "service": "s", "namespace": "n" })),
            strict::<ShadowInstallRequest>(json!({ "files": files })),
            strict::<ShadowPromoteRequest>(json!({ "candidate": 1 })),
            strict::<ShadowClearRequest>(json!({})),
            strict::<TrafficApplyRequest>(json!({ "document": "" })),
            strict::<TrafficRollbackRequest>(json!({ "version": 1 })),
            strict::<AttestRequest>(json!({ "service": "s", "namespace": "n", "selectors": [] })),
            strict::<AuthnApplyRequest>(json!({ "config": { "providers": [] } })),
            strict::<FederationAddRequest>(
                json!({ "trust_domain": "p", "endpoint": "https://p", "profile": "https_web" }),
            ),
        ];
        let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(failed.is_empty(), "{failed:?}");
    }

    #[test]
    fn optional_fields_left_unset_are_left_out() {
        let body = serde_json::to_value(PolicyRollbackRequest {
            version: 2,
            expected_version: None,
            wait_seconds: None,
            allow_widening: false,
        })
        .unwrap_or_default();
        assert_eq!(body, json!({ "version": 2, "allow_widening": false }));
    }
}

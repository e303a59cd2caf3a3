//! `/v1/workloads/attestation`: who each service's proxies answer on the Workload API.

use serde::{Deserialize, Serialize};

use super::Enforcement;

/// Who may take one service's identity from its proxies' Workload API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSelectors {
    pub namespace: String,
    pub name: String,
    /// Every one must match the calling process (`unix:uid:1000`); none: the entry goes.
    pub selectors: Vec<String>,
    pub updated_at: i64,
    pub author: String,
}

/// `GET /v1/workloads/attestation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSelectorsList {
    pub services: Vec<WorkloadSelectors>,
}

/// `POST /v1/workloads/attestation`: the selectors now set (empty: cleared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationSet {
    pub service: String,
    pub namespace: String,
    pub selectors: Vec<String>,
    /// Which of the service's proxies enforce them.
    pub enforcement: Enforcement,
}

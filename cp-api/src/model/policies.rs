//! `GET /v1/policies/history`.

use serde::{Deserialize, Serialize};

/// One policy version's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub version: u64,
    pub hash: String,
    pub policies: u64,
    pub created_at: i64,
    pub author: String,
    pub message: String,
    pub rolled_back_from: Option<u64>,
    /// How many (workload, action, service, path class) decisions it opened and closed, as
    /// the control plane's gate computed before applying it (`None`: applied before the
    /// gate existed).
    pub widened: Option<u64>,
    pub narrowed: Option<u64>,
}

/// A page of versions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyHistory {
    pub versions: Vec<PolicyVersion>,
    /// The `before` of the next page; `None` on the last.
    pub next_before: Option<u64>,
}

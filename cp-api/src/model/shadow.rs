//! `/v1/policies/shadow*`: a candidate bundle decided beside the enforced one, and what it
//! would have changed on live traffic.

use serde::{Deserialize, Serialize};

use super::{Applied, Enforcement, Gate, PolicyFile};

/// An allow or deny decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    /// As it is written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// The candidate installed for shadow mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowCandidate {
    pub id: u64,
    /// The bundle's content hash.
    pub hash: String,
    pub policies: u64,
    pub installed_at: i64,
    pub author: String,
    pub message: String,
}

/// `POST /v1/policies/shadow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowInstalled {
    pub candidate: ShadowCandidate,
    /// What enforcing it would widen and narrow, as `POST /v1/policies` would gate it.
    pub gate: Gate,
    /// Which proxies run it beside the enforced policies.
    pub enforcement: Enforcement,
}

/// How many proxies run the candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowRunning {
    pub proxies: u64,
    pub running: u64,
}

/// One decision where the candidate disagreed, from its proxy's signed audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowExample {
    /// When it was decided (Unix ms; the record itself keeps ns).
    pub time: i64,
    /// The record's place in its writer's chain.
    pub writer: String,
    pub seq: u64,
    /// The request path (HTTP).
    pub path: Option<String>,
    pub trace: Option<String>,
    /// The caller's address.
    pub src: String,
    /// What was enforced, and by which policies (empty: the default deny).
    pub enforced: Decision,
    pub enforced_policies: Vec<String>,
    /// The candidate's deciding policies (empty: the default deny).
    pub candidate_policies: Vec<String>,
}

/// Decisions of one caller, service and action that the candidate would make the other
/// way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowFlow {
    pub principal: String,
    pub service: String,
    pub action: String,
    /// What the candidate would decide: `allow` (newly allowed) or `deny` (newly denied).
    pub would: Decision,
    pub count: u64,
    /// The first and the last such decision (Unix ms).
    pub first: i64,
    pub last: i64,
    /// The newest few.
    pub examples: Vec<ShadowExample>,
}

/// `GET /v1/policies/shadow`: the installed candidate (`None`: none) and its report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowReport {
    pub candidate: Option<ShadowCandidate>,
    /// Its policy files (empty when none is installed).
    pub files: Vec<PolicyFile>,
    pub running_on: ShadowRunning,
    /// Decisions since it was installed that it would have allowed, or denied, the other
    /// way.
    pub would_allow: u64,
    pub would_deny: u64,
    pub flows: Vec<ShadowFlow>,
}

/// `DELETE /v1/policies/shadow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowCleared {
    /// The candidate removed.
    pub cleared: u64,
    /// Which proxies stopped running it.
    pub enforcement: Enforcement,
}

/// `POST /v1/policies/shadow/promote`: the candidate applied as a new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowPromoted {
    #[serde(flatten)]
    pub applied: Applied,
    /// The candidate promoted.
    pub promoted: u64,
}

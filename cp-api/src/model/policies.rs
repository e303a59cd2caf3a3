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

/// One policy file as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFile {
    /// The name it was applied under.
    pub name: String,
    /// Its Cedar text.
    pub text: String,
}

/// `GET /v1/policies`: what the proxies are sent now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySet {
    /// 0 before the first apply.
    pub version: u64,
    pub meta: Option<PolicyVersion>,
    pub hash: String,
    pub policies: u64,
    pub files: Vec<PolicyFile>,
}

/// `GET /v1/policies/{version}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersionFiles {
    pub version: u64,
    pub meta: PolicyVersion,
    pub files: Vec<PolicyFile>,
}

/// The control plane's access diff of a change against what is applied, over its registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    /// (workload, action, service, path class) decisions compared.
    pub checked: u64,
    pub widened: u64,
    pub narrowed: u64,
    /// The first changes (at most 50), as `authz diff -o json` writes them.
    pub changes: Vec<GateChange>,
}

/// Which way a change moves a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Denied before, allowed after.
    Widened,
    /// Allowed before, denied after.
    Narrowed,
}

/// A decision and what made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionDetail {
    pub decision: super::Decision,
    /// The deciding policies (empty: the default deny).
    pub policies: Vec<String>,
    /// Policies that failed to evaluate (they decide nothing).
    pub errors: Vec<String>,
}

/// One (caller, action, service) whose decision a change moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateChange {
    pub kind: ChangeKind,
    pub principal: String,
    /// `connect` or an HTTP method.
    pub action: String,
    /// The path class tried, for HTTP actions.
    pub path: Option<String>,
    pub resource: String,
    pub namespace: String,
    pub before: DecisionDetail,
    pub after: DecisionDetail,
}

/// `POST /v1/policies` and `POST /v1/policies/rollback`: the version made, and who enforces
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub version: u64,
    pub hash: String,
    pub policies: u64,
    pub gate: Gate,
    pub enforcement: super::Enforcement,
}

/// `POST /v1/policies` with `dry_run`: what would be applied, and what it would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRun {
    /// Always true.
    pub dry_run: bool,
    pub hash: String,
    pub policies: u64,
    pub gate: Gate,
}

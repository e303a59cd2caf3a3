//! Join tokens, the deny-list and the operator log.

use serde::{Deserialize, Serialize};

/// `POST /v1/tokens`: a one-time join token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    pub token: String,
    pub id: String,
    pub spiffe_id: String,
    pub expires_at: i64,
}

/// A deny-list entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyEntry {
    /// `spiffe_id` or `serial`.
    pub kind: String,
    pub value: String,
    pub reason: String,
    pub created_at: i64,
}

/// `POST /v1/deny`: the entry added, and which proxies refuse it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denied {
    pub denied: DenyEntry,
    /// The denied identity's own proxies are not waited for.
    pub enforcement: super::Enforcement,
}

/// `GET /v1/deny`: a page of the deny-list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyList {
    pub entries: Vec<DenyEntry>,
    pub next_after: Option<String>,
}

/// An operator action, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorAction {
    /// Its position in the log (0 until recorded), for paging with `before`.
    #[serde(default)]
    pub id: i64,
    pub at: i64,
    pub principal: String,
    pub action: String,
    pub target: String,
    pub allowed: bool,
    /// The deciding operator policies, or `default-deny`.
    pub detail: String,
}

/// `GET /v1/operator-actions`: a page of the log, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorActions {
    pub actions: Vec<OperatorAction>,
    pub next_before: Option<i64>,
}

/// `POST /v1/console/sign-in-codes`: a one-time sign-in link for the calling operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInCode {
    /// The console path with the code in its fragment (`/ui/sign-in#code=...`), which
    /// browsers never send.
    pub path: String,
    pub expires_in_seconds: u64,
}

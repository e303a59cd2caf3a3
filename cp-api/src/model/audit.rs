//! `GET /v1/audit`: the audit records the control plane indexed (the proxies' shipped chains
//! and its own). Times here stay in the Unix **nanoseconds** each record was signed with, so
//! a record's `time` is exactly the one in its signed `line`.

use serde::{Deserialize, Serialize};

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditKind {
    /// A proxy's authorization decision.
    Decision,
    /// A decision a shadow candidate would have made the other way.
    Shadow,
    /// An SVID issued, renewed or denied.
    Certificate,
    /// A policy version applied.
    Policy,
    /// Other configuration applied (traffic, authentication, CA).
    Config,
    /// An operator's action, allowed or refused.
    Operator,
    /// Records a writer lost (its spool overflowed).
    Gap,
    /// A kind this client does not know (a newer control plane's).
    #[serde(other)]
    Other,
}

/// One indexed record and its signed line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Its position in the index (the `after` of the next page).
    pub id: i64,
    /// The chain it belongs to, and its place in it.
    pub writer: String,
    pub seq: u64,
    /// Unix nanoseconds, as signed.
    pub time: u64,
    #[serde(rename = "type")]
    pub kind: AuditKind,
    /// `allow` or `deny` as the record says it (for a shadow record, what the candidate
    /// would have decided).
    pub decision: Option<String>,
    pub action: Option<String>,
    pub principal: Option<String>,
    pub resource: Option<String>,
    pub path: Option<String>,
    /// The deciding policies, comma-separated.
    pub policies: Option<String>,
    /// A shadow record's candidate bundle hash.
    pub candidate: Option<String>,
    /// The record exactly as written and signed.
    pub line: String,
}

/// A page of records, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
}

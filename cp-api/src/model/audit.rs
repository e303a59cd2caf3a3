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

impl AuditKind {
    /// The kind a stored record's `type` names (by the serde names above, so the two cannot
    /// drift); a name this build does not know is [`AuditKind::Other`].
    pub fn from_name(name: &str) -> Self {
        use serde::de::IntoDeserializer as _;
        let name: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            name.into_deserializer();
        Self::deserialize(name).unwrap_or(Self::Other)
    }
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

#[cfg(test)]
mod tests {
    use super::AuditKind;

    #[test]
    fn a_stored_type_reads_as_its_kind_and_an_unknown_one_as_other() {
        for (name, kind) in [
            ("decision", AuditKind::Decision),
            ("shadow", AuditKind::Shadow),
            ("certificate", AuditKind::Certificate),
            ("policy", AuditKind::Policy),
            ("config", AuditKind::Config),
            ("operator", AuditKind::Operator),
            ("gap", AuditKind::Gap),
            ("from-a-newer-writer", AuditKind::Other),
            ("Decision", AuditKind::Other),
        ] {
            assert_eq!(AuditKind::from_name(name), kind, "{name}");
        }
    }
}

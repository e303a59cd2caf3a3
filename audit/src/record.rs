//! What the audit log records.
//!
//! A record is one JSON object on one line, its keys in the order declared here, no
//! whitespace, integers only (times are Unix nanoseconds). The hash chain is computed over
//! the line's exact bytes, so a verifier never re-serializes: it hashes what is on disk.

use serde::{Deserialize, Serialize};

/// One record: its place in the writer's chain and what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// 1 for a writer's first record, then one more per record.
    pub seq: u64,
    /// SHA-256 (hex) of the previous record's line; 64 zeros for the first.
    pub prev: String,
    /// When it happened, Unix nanoseconds.
    pub time: u64,
    /// The SPIFFE ID of the writer (whose key signs the checkpoints).
    pub writer: String,
    /// What happened.
    pub event: Event,
}

/// A [`Record`] borrowing its parts: the writer serializes this so that numbering a record
/// copies nothing. Same fields in the same order, so the same bytes as the owned form.
#[derive(Serialize)]
pub(crate) struct RecordRef<'a> {
    pub seq: u64,
    pub prev: &'a str,
    pub time: u64,
    pub writer: &'a str,
    pub event: &'a Event,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// An authorization decision.
    Decision(Decision),
    /// A decision a shadow (candidate) bundle made differently from the enforced one.
    Shadow(ShadowDecision),
    /// A certificate issued, renewed or revoked.
    Certificate(CertificateEvent),
    /// A policy version applied (or rolled back to).
    Policy(PolicyEvent),
    /// A configuration change a proxy applied.
    Config(ConfigEvent),
    /// An operator action, allowed or not.
    Operator(OperatorEvent),
    /// Records were lost: says how many, which, and why.
    Gap(Gap),
}

/// An authorization decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// `allow` or `deny`.
    pub decision: String,
    /// `connect`, or the HTTP method.
    pub action: String,
    /// The caller's SPIFFE ID.
    pub principal: String,
    /// The caller's certificate serial (hex).
    pub serial: String,
    /// The destination service.
    pub resource: String,
    /// Its namespace.
    pub namespace: String,
    /// The request path (HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The determining policy ids; empty for a default deny.
    pub policies: Vec<String>,
    /// The enforced bundle's content hash.
    pub bundle: String,
    /// W3C trace id, when the request carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// The span of the deciding proxy for this request (16 hex digits), when it traces:
    /// joins the record to the trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<String>,
    /// Source address.
    pub src: String,
    /// Destination address.
    pub dst: String,
    /// One record stands for this many decisions like it (allows may be sampled; 1 = all).
    pub sample: u32,
}

/// A decision the candidate bundle of shadow mode would have made differently: only the
/// enforced one acted, so the record says what enforcing the candidate would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowDecision {
    /// What the candidate would have decided: `allow` or `deny`.
    pub would: String,
    /// The candidate's determining policy ids; empty for a default deny.
    pub candidate_policies: Vec<String>,
    /// The candidate bundle's content hash.
    pub candidate: String,
    /// The decision that was enforced, as its own record says it.
    pub enforced: Decision,
}

/// A certificate event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateEvent {
    /// `issue`, `renew` or `revoke`.
    pub kind: String,
    pub spiffe_id: String,
    pub serial: String,
    /// Unix nanoseconds; 0 for a revocation.
    pub not_after: u64,
}

/// A policy version applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEvent {
    pub version: u64,
    pub hash: String,
    pub author: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<u64>,
    /// The access-matrix decisions the version opened and closed, as the control plane's
    /// gate computed them before applying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widened: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub narrowed: Option<u64>,
}

impl PolicyEvent {
    /// `version N hash H`, with `+W widened / -N narrowed` when the gate computed them.
    pub fn summary(&self) -> String {
        let mut text = format!("version {} hash {}", self.version, self.hash);
        if let (Some(w), Some(n)) = (self.widened, self.narrowed) {
            text.push_str(&format!(" (+{w} widened / -{n} narrowed)"));
        }
        text
    }
}

/// A configuration change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigEvent {
    /// What changed (`policies`, `bundle`, `deny-list`, `upstreams`).
    pub what: String,
    pub version: u64,
    pub detail: String,
}

/// An operator action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorEvent {
    pub principal: String,
    pub action: String,
    pub target: String,
    pub allowed: bool,
    pub detail: String,
}

/// Records that were lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gap {
    /// First lost sequence number, when the lost records had numbers (evicted from the
    /// spool); 0 when they were dropped before being numbered (queue full).
    pub first: u64,
    /// Last lost sequence number, or 0.
    pub last: u64,
    /// How many records were lost.
    pub count: u64,
    /// Why: `queue-full`, `spool-full`.
    pub reason: String,
}

/// The line a checkpoint is written as: `{"checkpoint":{…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointLine {
    pub checkpoint: Checkpoint,
}

/// A signed statement: the writer's records `first..=last` end with a record whose line
/// hashes to `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub writer: String,
    pub first: u64,
    pub last: u64,
    pub head: String,
    pub time: u64,
    /// The signer's certificate chain, leaf first, base64 DER.
    pub chain: Vec<String>,
    /// ECDSA P-256 SHA-256 (ASN.1 DER, base64) over [`Checkpoint::signed_bytes`].
    pub sig: String,
}

impl Checkpoint {
    /// What the signature covers: a fixed text form, so no JSON canonicalization is needed
    /// to verify it.
    pub fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "signet-audit-checkpoint-v1\nwriter={}\nfirst={}\nlast={}\nhead={}\ntime={}\n",
            self.writer, self.first, self.last, self.head, self.time
        )
        .into_bytes()
    }
}

/// The `prev` of a writer's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 of `line`, lowercase hex.
pub fn hash_line(line: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    hash_line_into(line, &mut out);
    out
}

/// SHA-256 of `line`, lowercase hex, in place of what `out` held (reusing its allocation).
pub fn hash_line_into(line: &[u8], out: &mut String) {
    let digest = ring::digest::digest(&ring::digest::SHA256, line);
    out.clear();
    for b in digest.as_ref() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    fn decision() -> Record {
        Record {
            seq: 7,
            prev: GENESIS.to_owned(),
            time: 1_795_000_000_000_000_000,
            writer: "spiffe://t.test/ns/shop/sa/cart".to_owned(),
            event: Event::Decision(Decision {
                decision: "deny".to_owned(),
                action: "GET".to_owned(),
                principal: "spiffe://t.test/ns/shop/sa/frontend".to_owned(),
                serial: "0a1b".to_owned(),
                resource: "cart".to_owned(),
                namespace: "shop".to_owned(),
                path: Some("/admin".to_owned()),
                policies: vec![],
                bundle: "ab".repeat(32),
                trace: None,
                span: None,
                src: "127.0.0.1:5000".to_owned(),
                dst: "127.0.0.1:8080".to_owned(),
                sample: 1,
            }),
        }
    }

    #[test]
    fn the_same_record_always_serializes_and_hashes_the_same() {
        let a = serde_json::to_vec(&decision()).unwrap();
        let b = serde_json::to_vec(&decision()).unwrap();
        assert_eq!(a, b);
        assert_eq!(hash_line(&a), hash_line(&b));
        let text = String::from_utf8(a.clone()).unwrap();
        assert!(text.starts_with("{\"seq\":7,\"prev\":\"000"), "{text}");
        assert!(
            text.contains("\"event\":{\"type\":\"decision\",\"decision\":\"deny\""),
            "{text}"
        );
        assert!(
            !text.contains("trace"),
            "absent options are left out: {text}"
        );
        // Parsing and writing again gives the same bytes.
        let back: Record = serde_json::from_slice(&a).unwrap();
        assert_eq!(serde_json::to_vec(&back).unwrap(), a);
    }

    #[test]
    fn the_borrowed_form_writes_the_same_bytes() {
        let mut records = vec![decision()];
        let mut second = decision();
        second.event = Event::Gap(Gap {
            first: 3,
            last: 9,
            count: 7,
            reason: "spool-full".to_owned(),
        });
        records.push(second);
        for record in records {
            let borrowed = RecordRef {
                seq: record.seq,
                prev: &record.prev,
                time: record.time,
                writer: &record.writer,
                event: &record.event,
            };
            assert_eq!(
                serde_json::to_vec(&borrowed).unwrap(),
                serde_json::to_vec(&record).unwrap()
            );
        }
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            hash_line(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = serde_json::to_value(decision()).unwrap();
        v["event"]["extra"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Record>(v).is_err());
    }
}

//! The control plane's copy of a writer's chain: what a real writer ships is kept and
//! verifies; forged, altered, discontinuous or foreign lines are refused whole, and a
//! checkpoint whose signer can no longer vouch is left out.

#![expect(clippy::unwrap_used, reason = "tests: a failure is the test failing")]

use std::path::Path;
use std::sync::Arc;

use signet_audit::checkpoint::InstanceSigner;
use signet_audit::receiver::{Receiver, Rules, Verdict};
use signet_audit::record::{Checkpoint, OperatorEvent};
use signet_audit::spool::segment_files;
use signet_audit::{AuditLog, Event, Kind, Signer, WriterConfig, verify_files};
use signet_spiffe::test_pki::TestCa;

mod common;
use common::{decision, signer};

const ID: &str = "spiffe://acme.internal/ns/shop/sa/cart";
const WRITER: &str = "spiffe://acme.internal/ns/shop/sa/cart#0a1b2c3d";

/// The lines a real writer (as one instance of the cart) leaves in its spool.
async fn shipped_lines(dir: &Path, ca: &TestCa, records: usize) -> Vec<Vec<u8>> {
    let signer: Arc<dyn Signer> = Arc::new(InstanceSigner::new(signer(ca, ID), "0a1b2c3d"));
    let mut cfg = WriterConfig::new(dir.to_path_buf());
    cfg.checkpoint_records = 5;
    let (tx, rx) = tokio::sync::watch::channel(signer);
    let (log, _task) = AuditLog::start(cfg, rx).unwrap();
    for n in 0..records {
        log.record(decision(n));
    }
    log.close().await;
    drop(tx);
    segment_files(dir)
        .unwrap()
        .iter()
        .flat_map(|f| {
            std::fs::read(f)
                .unwrap()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn proxy_event(event: &Event) -> bool {
    matches!(event, Event::Decision(_) | Event::Gap(_))
}

fn keep(_: &Checkpoint) -> Verdict {
    Verdict::Keep
}

fn rules() -> Rules<'static> {
    Rules {
        event_allowed: &proxy_event,
        checkpoint: &keep,
    }
}

fn is_record(line: &[u8]) -> bool {
    line.starts_with(b"{\"seq\"")
}

/// An admin's action, as a workload would like the control plane to list it.
fn forged_operator_action() -> serde_json::Value {
    serde_json::to_value(Event::Operator(OperatorEvent {
        principal: "spiffe://acme.internal/signet/operator/admin".to_owned(),
        action: "deny.add".to_owned(),
        target: "x".to_owned(),
        allowed: true,
        detail: "forged".to_owned(),
    }))
    .unwrap()
}

fn edit(line: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(line).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn a_real_chain_is_kept_whole_and_verifies_as_its_instance() {
    let ca = TestCa::new("acme.internal");
    let src = tempfile::tempdir().unwrap();
    let lines = shipped_lines(src.path(), &ca, 12).await;
    let copy = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::open(copy.path(), WRITER).unwrap();
    // In two batches, the second re-sending the end of the first, as after a lost ack.
    let (a, b) = lines.split_at(7);
    let first = a.iter().filter(|l| is_record(l)).count();
    assert_eq!(receiver.append(a, &rules()).unwrap().accepted.len(), first);
    let mut again = a[4..].to_vec();
    again.extend_from_slice(b);
    let appended = receiver.append(&again, &rules()).unwrap();
    assert_eq!(appended.accepted.len(), 12 - first);
    assert_eq!(receiver.stored_through(), 12);
    let report = verify_files(&segment_files(copy.path()).unwrap(), &ca.bundle());
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(report.chains.keys().collect::<Vec<_>>(), [WRITER]);
}

#[tokio::test]
async fn forged_altered_and_discontinuous_lines_are_refused_whole() {
    let ca = TestCa::new("acme.internal");
    let src = tempfile::tempdir().unwrap();
    let lines = shipped_lines(src.path(), &ca, 6).await;
    let copy = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::open(copy.path(), WRITER).unwrap();
    receiver.append(&lines[..3], &rules()).unwrap();
    let next = lines[3..].iter().find(|l| is_record(l)).unwrap().clone();

    // A record far ahead, claiming to be an operator action: the attack that made a
    // workload's line appear as an admin action and swallowed the genuine records after it.
    let forged = edit(&next, |v| {
        v["seq"] = serde_json::json!(1_000_000);
        v["event"] = forged_operator_action();
    });
    let err = receiver.append(&[forged], &rules()).unwrap_err();
    assert!(err.contains("does not follow"), "{err}");
    // In its place, the kind alone refuses it.
    let operator = edit(&next, |v| {
        v["event"] = forged_operator_action();
    });
    let err = receiver.append(&[operator], &rules()).unwrap_err();
    assert!(err.contains("never writes"), "{err}");
    // A record that does not chain to the last one kept.
    let unchained = edit(&next, |v| v["prev"] = serde_json::json!("00".repeat(32)));
    let err = receiver.append(&[unchained], &rules()).unwrap_err();
    assert!(err.contains("does not chain"), "{err}");
    // A re-sent record that differs from the one kept.
    let altered = edit(&lines[0], |v| {
        v["event"]["path"] = serde_json::json!("/other")
    });
    let err = receiver.append(&[altered], &rules()).unwrap_err();
    assert!(err.contains("differs from the one kept"), "{err}");
    // Another writer's line, good lines before it: nothing of the batch is kept.
    let foreign = edit(&next, |v| {
        v["writer"] = serde_json::json!("spiffe://acme.internal/ns/shop/sa/cart#ffff");
    });
    let before = receiver.stored_through();
    let mut batch = lines[3..].to_vec();
    batch.push(foreign);
    assert!(receiver.append(&batch, &rules()).is_err());
    assert_eq!(receiver.stored_through(), before);
    // The genuine continuation is still accepted.
    receiver.append(&lines[3..], &rules()).unwrap();
    assert_eq!(receiver.stored_through(), 6);
}

#[tokio::test]
async fn a_checkpoint_that_signs_other_records_or_is_left_out_is_not_kept() {
    let ca = TestCa::new("acme.internal");
    let src = tempfile::tempdir().unwrap();
    let lines = shipped_lines(src.path(), &ca, 5).await;
    let checkpoint_at = lines.iter().position(|l| !is_record(l)).unwrap();
    // A checkpoint over a head that is not the copy's.
    let copy = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::open(copy.path(), WRITER).unwrap();
    let mut batch = lines[..checkpoint_at].to_vec();
    batch.push(edit(&lines[checkpoint_at], |v| {
        v["checkpoint"]["head"] = serde_json::json!("11".repeat(32));
    }));
    let err = receiver.append(&batch, &rules()).unwrap_err();
    assert!(err.contains("does not sign the records kept"), "{err}");
    // Signed by a key that cannot vouch now (revoked, expired): the records are kept, the
    // checkpoint is not, and the copy reports them unsigned.
    let drop = |_: &Checkpoint| Verdict::Drop("its signer is deny-listed".to_owned());
    let dropping = Rules {
        event_allowed: &proxy_event,
        checkpoint: &drop,
    };
    let appended = receiver
        .append(&lines[..=checkpoint_at], &dropping)
        .unwrap();
    assert_eq!(appended.dropped.len(), 1);
    let report = verify_files(&segment_files(copy.path()).unwrap(), &ca.bundle());
    assert!(
        report.findings.iter().any(|f| f.kind == Kind::Unsigned),
        "{:?}",
        report.findings
    );
    // A forged one refuses the batch.
    let forged = |_: &Checkpoint| Verdict::Refuse("the signature does not verify".to_owned());
    let refusing = Rules {
        event_allowed: &proxy_event,
        checkpoint: &forged,
    };
    let copy = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::open(copy.path(), WRITER).unwrap();
    assert!(
        receiver
            .append(&lines[..=checkpoint_at], &refusing)
            .is_err()
    );
    assert_eq!(receiver.stored_through(), 0);
}

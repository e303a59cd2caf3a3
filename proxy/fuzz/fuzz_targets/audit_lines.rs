//! Audit lines from anywhere (a spool on disk, a shipped batch): record and checkpoint
//! parsing, checkpoint verification, the verifier over a file and the receiver never panic,
//! and the receiver keeps nothing from a batch it refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_audit::receiver::{Receiver, Rules, Verdict};
use signet_audit::record::{CheckpointLine, Event, Record};

fuzz_target!(|data: &[u8]| {
    let ca = signet_spiffe::test_pki::TestCa::new("acme.internal");
    let bundle = ca.bundle();
    let lines: Vec<Vec<u8>> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    for line in &lines {
        let _ = serde_json_record(line);
        if let Ok(c) = serde_json_checkpoint(line) {
            let _ = signet_audit::checkpoint::verify(&c.checkpoint, &bundle);
        }
    }
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let file = dir.path().join("00000000000000000001.jsonl");
    if std::fs::write(&file, data).is_ok() {
        let _ = signet_audit::verify_files(&[file], &bundle);
    }
    let copy = dir.path().join("copy");
    let writer = "spiffe://acme.internal/ns/shop/sa/cart#0a";
    let Ok(mut receiver) = Receiver::open(&copy, writer) else {
        return;
    };
    let any = |_: &Event| true;
    let keep = |_: &signet_audit::record::Checkpoint| Verdict::Keep;
    let rules = Rules {
        event_allowed: &any,
        checkpoint: &keep,
    };
    if receiver.append(&lines, &rules).is_err() {
        assert_eq!(receiver.stored_through(), 0);
    }
});

fn serde_json_record(line: &[u8]) -> Result<Record, serde_json::Error> {
    serde_json::from_slice(line)
}

fn serde_json_checkpoint(line: &[u8]) -> Result<CheckpointLine, serde_json::Error> {
    serde_json::from_slice(line)
}

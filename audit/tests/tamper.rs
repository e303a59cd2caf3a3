//! A spool written by the real writer verifies; every kind of tampering is detected and
//! located at the record it touched.

#![expect(clippy::unwrap_used, reason = "tests: a failure is the test failing")]

use std::path::{Path, PathBuf};

use signet_audit::spool::{SpoolLimits, segment_files};
use signet_audit::{AuditLog, Kind, Signer, WriterConfig, verify_files};
use signet_spiffe::test_pki::TestCa;

mod common;
use common::{decision, signer};

const ID: &str = "spiffe://acme.internal/ns/shop/sa/cart";

async fn write(
    dir: &Path,
    ca: &TestCa,
    records: usize,
    config: impl FnOnce(&mut WriterConfig),
) -> AuditLog {
    let mut cfg = WriterConfig::new(dir.to_path_buf());
    cfg.checkpoint_records = 10;
    config(&mut cfg);
    let (tx, rx) = tokio::sync::watch::channel(signer(ca, ID));
    let (log, _task) = AuditLog::start(cfg, rx).unwrap();
    for n in 0..records {
        log.record(decision(n));
    }
    log.close().await;
    drop(tx);
    log
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn save(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The line index of record `seq`.
fn find(lines: &[String], seq: u64) -> usize {
    lines
        .iter()
        .position(|l| l.starts_with(&format!("{{\"seq\":{seq},")))
        .unwrap()
}

async fn spool(ca: &TestCa) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), ca, 50, |_| {}).await;
    let files = segment_files(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    let file = files[0].clone();
    (dir, file)
}

fn kinds(report: &signet_audit::Report) -> Vec<(Kind, Option<u64>)> {
    report.findings.iter().map(|f| (f.kind, f.seq)).collect()
}

fn resign(file: &Path, with: &dyn Signer, keep_writer: bool) {
    let mut l = lines(file);
    for line in &mut l {
        if line.starts_with("{\"checkpoint\"") {
            let mut cp: signet_audit::record::CheckpointLine = serde_json::from_str(line).unwrap();
            let c = cp.checkpoint.clone();
            let mut signed =
                signet_audit::checkpoint::sign(with, c.first, c.last, &c.head, c.time).unwrap();
            if keep_writer {
                signed.writer = c.writer;
            }
            cp.checkpoint = signed;
            *line = serde_json::to_string(&cp).unwrap();
        }
    }
    save(file, &l);
}

#[tokio::test]
async fn an_untouched_spool_verifies() {
    let ca = TestCa::new("acme.internal");
    let (_dir, file) = spool(&ca).await;
    let report = verify_files(&[file], &ca.bundle());
    assert!(report.ok(), "{:?}", report.findings);
    let chain = &report.chains[ID];
    assert_eq!(
        (chain.records, chain.first, chain.last, chain.signed_through),
        (50, 1, 50, 50)
    );
    assert_eq!(chain.checkpoints, 5);
}

#[tokio::test]
async fn an_edited_record_is_located() {
    let ca = TestCa::new("acme.internal");
    let (_dir, file) = spool(&ca).await;
    let original = lines(&file);
    let mut l = original.clone();
    let i = find(&l, 20);
    l[i] = l[i].replace("/api/items/19", "/api/items/ok");
    save(&file, &l);
    let report = verify_files(std::slice::from_ref(&file), &ca.bundle());
    assert!(!report.ok());
    assert_eq!(kinds(&report), [(Kind::Altered, Some(20))]);
    assert_eq!(report.findings[0].line, i + 1);
    // The last record before a checkpoint has no successor in its range: the checkpoint's
    // signed head catches it.
    let mut l = original;
    let i = find(&l, 30);
    l[i] = l[i].replace("/api/items/29", "/api/items/xx");
    save(&file, &l);
    let report = verify_files(&[file], &ca.bundle());
    assert!(
        kinds(&report).contains(&(Kind::Altered, Some(30))),
        "{:?}",
        report.findings
    );
}

#[tokio::test]
async fn deleted_inserted_and_reordered_records_are_located() {
    let ca = TestCa::new("acme.internal");
    let (_dir, file) = spool(&ca).await;
    let original = lines(&file);

    let mut l = original.clone();
    l.remove(find(&l, 20));
    save(&file, &l);
    let report = verify_files(std::slice::from_ref(&file), &ca.bundle());
    assert!(
        kinds(&report).contains(&(Kind::Missing, Some(20))),
        "{:?}",
        report.findings
    );

    let mut l = original.clone();
    let copy = l[find(&l, 20)].clone();
    let at = find(&l, 30);
    l.insert(at, copy);
    save(&file, &l);
    let report = verify_files(std::slice::from_ref(&file), &ca.bundle());
    assert_eq!(kinds(&report), [(Kind::Duplicate, Some(20))]);

    let mut l = original;
    let (a, b) = (find(&l, 21), find(&l, 22));
    l.swap(a, b);
    save(&file, &l);
    let report = verify_files(&[file], &ca.bundle());
    assert!(
        kinds(&report).contains(&(Kind::Reordered, Some(21))),
        "{:?}",
        report.findings
    );
    assert!(!report.ok());
}

#[tokio::test]
async fn truncation_and_foreign_signatures_are_found() {
    let ca = TestCa::new("acme.internal");
    let (_dir, file) = spool(&ca).await;
    let original = std::fs::read(&file).unwrap();

    // Cut in the middle of a line.
    std::fs::write(&file, &original[..original.len() * 2 / 3]).unwrap();
    let report = verify_files(std::slice::from_ref(&file), &ca.bundle());
    let k = kinds(&report);
    assert!(k.iter().any(|(k, _)| *k == Kind::Malformed), "{k:?}");
    assert!(k.iter().any(|(k, _)| *k == Kind::Unsigned), "{k:?}");

    // Every checkpoint re-signed with a key from another CA: nothing chains to the bundle.
    std::fs::write(&file, &original).unwrap();
    let evil = TestCa::new("acme.internal");
    resign(&file, signer(&evil, ID).as_ref(), false);
    let report = verify_files(std::slice::from_ref(&file), &ca.bundle());
    let bad = report
        .findings
        .iter()
        .filter(|f| f.kind == Kind::BadCheckpoint)
        .count();
    assert_eq!(bad, 5, "{:?}", report.findings);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == Kind::Unsigned && f.seq == Some(1))
    );

    // A valid workload of the same trust domain cannot sign for another writer either.
    std::fs::write(&file, &original).unwrap();
    let other = signer(&ca, "spiffe://acme.internal/ns/shop/sa/payments");
    resign(&file, other.as_ref(), true);
    let report = verify_files(&[file], &ca.bundle());
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == Kind::BadCheckpoint && f.detail.contains("not by the writer")),
        "{:?}",
        report.findings
    );
}

#[tokio::test]
async fn a_full_spool_records_exactly_what_it_lost() {
    let ca = TestCa::new("acme.internal");
    let dir = tempfile::tempdir().unwrap();
    let log = write(dir.path(), &ca, 400, |c| {
        c.limits = SpoolLimits {
            segment_bytes: 16 * 1024,
            total_bytes: 40 * 1024,
        };
        c.checkpoint_records = 25;
    })
    .await;
    assert!(
        log.stats()
            .evicted
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    let files = segment_files(dir.path()).unwrap();
    let report = verify_files(&files, &ca.bundle());
    assert!(report.ok(), "{:?}", report.findings);
    let gaps: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind == Kind::Gap)
        .collect();
    assert!(!gaps.is_empty());
    assert!(gaps[0].detail.contains("spool-full"), "{}", gaps[0].detail);
    // Deleting a segment nobody declared lost is reported as missing.
    let middle = &files[files.len() / 2];
    std::fs::remove_file(middle).unwrap();
    let files = segment_files(dir.path()).unwrap();
    let report = verify_files(&files, &ca.bundle());
    assert!(
        report.findings.iter().any(|f| f.kind == Kind::Missing),
        "{:?}",
        report.findings
    );
}

#[tokio::test]
async fn a_writer_resumes_its_chain_across_restarts() {
    let ca = TestCa::new("acme.internal");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &ca, 15, |_| {}).await;
    write(dir.path(), &ca, 15, |_| {}).await;
    let files = segment_files(dir.path()).unwrap();
    assert_eq!(files.len(), 2);
    let report = verify_files(&files, &ca.bundle());
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(report.chains[ID].last, 30);
}

#[tokio::test]
async fn events_the_queue_cannot_hold_become_a_gap_record() {
    let ca = TestCa::new("acme.internal");
    let dir = tempfile::tempdir().unwrap();
    // A queue of 2 flooded with 20,000 events: the writer cannot keep up, and every event it
    // did not get is accounted for by gap records.
    let log = write(dir.path(), &ca, 20_000, |c| c.queue = 2).await;
    let dropped = log
        .stats()
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    let written = log
        .stats()
        .records
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 0);
    let files = segment_files(dir.path()).unwrap();
    let report = verify_files(&files, &ca.bundle());
    assert!(report.ok(), "{:?}", report.findings);
    let declared: u64 = report
        .findings
        .iter()
        .filter(|f| f.kind == Kind::Gap)
        .map(|f| {
            assert!(f.detail.contains("events dropped"), "{}", f.detail);
            f.detail.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(declared, dropped);
    let gaps = report
        .findings
        .iter()
        .filter(|f| f.kind == Kind::Gap)
        .count() as u64;
    assert_eq!(written, 20_000 - dropped + gaps);
}

//! Records per second through the audit writer: the chain alone (serialize + SHA-256), then
//! the whole writer thread (queue, chain, spool file, a signed checkpoint every 1,024 records
//! with an fsync before each) fed by one caller thread building events as the proxy does. The
//! queue holds every event so none is dropped: this measures what the writer can absorb, and
//! what each record costs the caller (the request path: building the event and queueing it).
//!
//! `cargo bench -p signet-audit --bench writer`
#![expect(
    clippy::unwrap_used,
    reason = "a benchmark: a failure stops it with the reason"
)]

use std::sync::Arc;
use std::time::Instant;

use signet_audit::chain::Chain;
use signet_audit::{AuditLog, Decision, Event, KeySigner, Signer, WriterConfig};
use signet_spiffe::test_pki::TestCa;

const ID: &str = "spiffe://acme.internal/ns/shop/sa/cart";

fn event(n: u64) -> Event {
    Event::Decision(Decision {
        decision: "allow".to_owned(),
        action: "GET".to_owned(),
        principal: "spiffe://acme.internal/ns/shop/sa/frontend".to_owned(),
        serial: "5f3c0a0b1e2d4c6b8a9f0e1d2c3b4a59".to_owned(),
        resource: "cart".to_owned(),
        namespace: "shop".to_owned(),
        path: Some(format!("/api/items/{n}")),
        policies: vec!["frontend-reads-cart".to_owned()],
        bundle: "ab".repeat(32),
        trace: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
        span: None,
        src: "127.0.0.1:40000".to_owned(),
        dst: "127.0.0.1:15006".to_owned(),
        sample: 1,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--list") {
        return;
    }
    const N: u64 = 1_000_000;

    // The chain alone.
    let mut chain = Chain::new(ID);
    let mut bytes = 0;
    let one = event(0);
    let begun = Instant::now();
    for n in 0..N {
        bytes += chain.append(n, &one).1.len();
    }
    let took = begun.elapsed();
    println!(
        "chain (serialize + SHA-256): {N} records in {:.2} s: {:.0} records/s, {:.0} ns/record, {} bytes/record",
        took.as_secs_f64(),
        N as f64 / took.as_secs_f64(),
        took.as_nanos() as f64 / N as f64,
        bytes as u64 / N
    );

    // The whole writer.
    let ca = TestCa::new("acme.internal");
    let (certs, key) = ca.svid(ID);
    let rustls_pki_types::PrivateKeyDer::Pkcs8(der) = key.private_key_der() else {
        unreachable!("workload keys are PKCS#8")
    };
    let signer: Arc<dyn Signer> =
        Arc::new(KeySigner::new(&ID.parse().unwrap(), certs, der.secret_pkcs8_der()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    run_writer(&runtime, &signer, dir.path(), |log, n| log.record(event(n)));
}

/// Feeds `N` records through a writer on `dir` with `feed`; prints the writer's rate and
/// what each record cost the caller.
fn run_writer(
    runtime: &tokio::runtime::Runtime,
    signer: &Arc<dyn Signer>,
    dir: &std::path::Path,
    feed: impl Fn(&AuditLog, u64),
) {
    const N: u64 = 1_000_000;
    runtime.block_on(async {
        let (_signers, rx) = tokio::sync::watch::channel(Arc::clone(signer));
        let mut config = WriterConfig::new(dir.to_path_buf());
        config.limits.total_bytes = 4 * 1024 * 1024 * 1024;
        config.queue = usize::try_from(N).unwrap() + 1;
        let (log, _task) = AuditLog::start(config, rx).unwrap();
        let begun = Instant::now();
        for n in 0..N {
            feed(&log, n);
        }
        let fed = begun.elapsed();
        log.close().await;
        let took = begun.elapsed();
        let stats = log.stats();
        let written = stats.records.load(std::sync::atomic::Ordering::Relaxed);
        // Wall-clock time includes waiting for fsync; the CPU the thread used is what a core
        // must give it.
        let cpu = thread_cpu("audit-writer").unwrap_or_default();
        println!(
            "writer thread (queue + chain + spool + checkpoints): {written} records in {:.2} s: {:.0} records/s; on the writer's CPU time ({:.2} s, {:.0} % in the kernel): {:.0} records per CPU-second; the caller spent {:.0} ns/record; {} checkpoints, {} dropped",
            took.as_secs_f64(),
            written as f64 / took.as_secs_f64(),
            cpu.0 + cpu.1,
            100.0 * cpu.1 / (cpu.0 + cpu.1).max(f64::EPSILON),
            written as f64 / (cpu.0 + cpu.1).max(f64::EPSILON),
            fed.as_nanos() as f64 / N as f64,
            stats.checkpoints.load(std::sync::atomic::Ordering::Relaxed),
            stats.dropped.load(std::sync::atomic::Ordering::Relaxed),
        );
    });
}

/// User and system CPU seconds of this process's thread named `name` (Linux procfs: fields
/// 14 and 15 of the thread's stat, in clock ticks of 1/100 s).
fn thread_cpu(name: &str) -> Option<(f64, f64)> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks = |i: usize| fields.get(i - 3)?.parse::<f64>().ok();
        return Some((ticks(14)? / 100.0, ticks(15)? / 100.0));
    }
    None
}

//! The proxy's audit trail: every connection decision and every denied request is recorded;
//! allowed requests are recorded one in `sample_allows` (1: all, the default), with the rate
//! in the record. Records go through `signet-audit`'s non-blocking writer into a local spool,
//! signed by the proxy's own SVID key; a rotated SVID starts a new signed segment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use signet_audit::checkpoint::InstanceSigner;
use signet_audit::record::ShadowDecision;
use signet_audit::{AuditLog, Decision as Record, Event, KeySigner, Signer};
use signet_policy::Decision;
use signet_spiffe::{Serial, SpiffeId, WorkloadKey, X509Svid};
use tokio::sync::watch;

/// One rate-limit refusal in this many is recorded.
pub const LIMITED_SAMPLE: u32 = 100;

/// The writer handle and the sampling state.
#[derive(Debug)]
pub struct Audit {
    log: AuditLog,
    sample_allows: u32,
    allows: AtomicU64,
    /// Rate-limit refusals and injected aborts seen, for sampling them.
    limited: AtomicU64,
    signers: watch::Sender<Arc<dyn Signer>>,
    /// This proxy's instance of its identity's chain (kept in the spool directory).
    instance: String,
}

/// The instance this spool's chain is written as, made on first use and kept beside the
/// spool, so a restart continues the same chain and two proxies of one service never share
/// one. A spool that already holds records from before instances keeps writing as the bare
/// identity (empty instance), so its chain stays whole.
fn writer_instance(dir: &std::path::Path) -> Result<String, String> {
    let file = dir.join("writer-instance");
    match std::fs::read_to_string(&file) {
        Ok(text) => return Ok(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading `{}`: {e}", file.display())),
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating `{}`: {e}", dir.display()))?;
    let legacy = !signet_audit::spool::segment_files(dir)
        .map_err(|e| format!("reading `{}`: {e}", dir.display()))?
        .is_empty();
    let instance = if legacy {
        String::new()
    } else {
        let mut bytes = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| "no secure random source".to_owned())?;
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    signet_spiffe::write_private(&file, instance.as_bytes())
        .map_err(|e| format!("writing `{}`: {e}", file.display()))?;
    Ok(instance)
}

/// A signer over an SVID and its key.
pub fn signer(svid: &X509Svid, key: &WorkloadKey) -> Result<Arc<dyn Signer>, String> {
    let rustls::pki_types::PrivateKeyDer::Pkcs8(der) = key.private_key_der() else {
        return Err("audit: the workload key is not PKCS#8".to_owned());
    };
    Ok(Arc::new(KeySigner::new(
        svid.id(),
        svid.chain().to_vec(),
        der.secret_pkcs8_der(),
    )?))
}

/// What one decision was about.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub action: &'a str,
    pub peer: &'a SpiffeId,
    pub serial: &'a Serial,
    pub path: Option<&'a str>,
    pub trace: Option<&'a str>,
    pub span: Option<&'a str>,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

impl Audit {
    /// Starts the writer on `dir`, signing with `signer`.
    pub fn start(
        dir: std::path::PathBuf,
        sample_allows: u32,
        signer: Arc<dyn Signer>,
    ) -> Result<Self, String> {
        let instance = writer_instance(&dir)?;
        let signer: Arc<dyn Signer> = Arc::new(InstanceSigner::new(signer, &instance));
        let (signers, rx) = watch::channel(signer);
        let (log, _task) = AuditLog::start(signet_audit::WriterConfig::new(dir), rx)?;
        Ok(Self {
            log,
            sample_allows: sample_allows.max(1),
            allows: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            signers,
            instance,
        })
    }

    /// Signs from now on with a rotated SVID's key.
    pub fn rotate(&self, signer: Arc<dyn Signer>) {
        self.signers
            .send_replace(Arc::new(InstanceSigner::new(signer, &self.instance)));
    }

    /// Records `decision` about `subject` (allows of requests sampled).
    pub fn decision(
        &self,
        subject: &Subject<'_>,
        decision: &Decision,
        target: (&str, &str),
        bundle_hash: &str,
    ) {
        let sampled = decision.is_allowed() && subject.action != "connect";
        let sample = if sampled { self.sample_allows } else { 1 };
        if sampled
            && self.sample_allows > 1
            && !self
                .allows
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(u64::from(self.sample_allows))
        {
            return;
        }
        self.log.record(Event::Decision(decision_record(
            subject,
            decision,
            target,
            bundle_hash,
            sample,
        )));
    }

    /// Records a request the proxy answered itself by its traffic settings (a rate-limit
    /// refusal, an injected abort), one in [`LIMITED_SAMPLE`] (the first always): a flood
    /// of them must not flood the trail; the record says how many it stands for.
    pub fn sampled(
        &self,
        subject: &Subject<'_>,
        decision: &Decision,
        target: (&str, &str),
        bundle_hash: &str,
    ) {
        if !self
            .limited
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(u64::from(LIMITED_SAMPLE))
        {
            return;
        }
        self.log.record(Event::Decision(decision_record(
            subject,
            decision,
            target,
            bundle_hash,
            LIMITED_SAMPLE,
        )));
    }

    /// Records that the shadow `candidate` (bundle `candidate_hash`) decided other than the
    /// `enforced` decision that acted. Never sampled: each one is a request the candidate
    /// would treat differently.
    pub fn shadow(
        &self,
        subject: &Subject<'_>,
        enforced: &Decision,
        candidate: &Decision,
        target: (&str, &str),
        hashes: (&str, &str),
    ) {
        self.log.record(Event::Shadow(ShadowDecision {
            would: effect(candidate).to_owned(),
            candidate_policies: candidate.policies.clone(),
            candidate: hashes.1.to_owned(),
            enforced: decision_record(subject, enforced, target, hashes.0, 1),
        }));
    }

    /// Writes what is queued and signs a last checkpoint.
    pub async fn close(&self) {
        self.log.close().await;
    }

    /// The writer's counters.
    pub fn stats(&self) -> &signet_audit::writer::WriterStats {
        self.log.stats()
    }
}

fn effect(decision: &Decision) -> &'static str {
    if decision.is_allowed() {
        "allow"
    } else {
        "deny"
    }
}

fn decision_record(
    subject: &Subject<'_>,
    decision: &Decision,
    target: (&str, &str),
    bundle_hash: &str,
    sample: u32,
) -> Record {
    Record {
        decision: effect(decision).to_owned(),
        action: subject.action.to_owned(),
        principal: subject.peer.as_str().to_owned(),
        serial: subject.serial.to_string(),
        resource: target.0.to_owned(),
        namespace: target.1.to_owned(),
        path: subject.path.map(str::to_owned),
        policies: decision.policies.clone(),
        bundle: bundle_hash.to_owned(),
        trace: subject.trace.map(str::to_owned),
        span: subject.span.map(str::to_owned),
        src: subject.src.to_string(),
        dst: subject.dst.to_string(),
        sample,
    }
}

/// The audit writer's counters as Prometheus text: an alert on `dropped`, `evicted` or
/// `errors` rising is an alert on a gap in the trail.
pub fn render_stats(stats: &signet_audit::writer::WriterStats, out: &mut String) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    for (name, help, value) in [
        (
            "signet_proxy_audit_records_total",
            "Audit records written to the spool.",
            load(&stats.records),
        ),
        (
            "signet_proxy_audit_checkpoints_total",
            "Signed checkpoints written to the spool.",
            load(&stats.checkpoints),
        ),
        (
            "signet_proxy_audit_dropped_total",
            "Audit events dropped because the writer's queue was full (a gap, marked in the chain).",
            load(&stats.dropped),
        ),
        (
            "signet_proxy_audit_evicted_total",
            "Audit records lost to spool eviction before they were shipped.",
            load(&stats.evicted),
        ),
        (
            "signet_proxy_audit_errors_total",
            "Errors writing or signing the audit spool.",
            load(&stats.errors),
        ),
    ] {
        signet_metrics::family(out, (name, "counter", help), &[("", value)]);
    }
}

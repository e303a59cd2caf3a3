//! `signet.v1.Audit`: proxies ship their audit chains here. Each writer's chain is kept as a
//! spool of the same format under `<data-dir>/audit/received/<writer>/` (so `meshctl audit
//! verify --data-dir` checks the control plane's copy like any other) and indexed in the
//! store for queries. A proxy may ship only its own chain: the writer of every line must be
//! the SPIFFE ID of the certificate the call came over.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use signet_audit::receiver::Receiver;
use signet_audit::record::Event;
use tonic::{Request, Response, Status};

use crate::api::v1 as pb;
use crate::server::hub::Hub;
use crate::server::identity::caller;
use crate::server::store::AuditRow;

/// Most lines in one batch, and the longest line.
const MAX_LINES: usize = 4096;
const MAX_LINE: usize = 64 * 1024;

/// The service.
#[derive(Debug, Clone)]
pub struct AuditService {
    hub: Arc<Hub>,
    dir: PathBuf,
    receivers: Arc<tokio::sync::Mutex<HashMap<String, Receiver>>>,
}

impl AuditService {
    /// Keeps received chains under `dir`.
    pub fn new(hub: Arc<Hub>, dir: PathBuf) -> Self {
        Self {
            hub,
            dir,
            receivers: Arc::default(),
        }
    }
}

/// A directory name for a writer, one to one: letters, digits, `.` and `-` stay, every other
/// byte becomes `_` and two hex digits (so `_` itself is `_5f`), and two writers never share
/// a directory.
pub fn writer_dir(writer: &str) -> String {
    let mut out = String::with_capacity(writer.len() * 2);
    for b in writer.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The writer a caller may ship as: its own SPIFFE ID, or one instance of it
/// (`<id>#<1 to 32 hex digits>`).
fn may_write_as(writer: &str, caller: &signet_spiffe::SpiffeId) -> bool {
    match writer.split_once('#') {
        None => writer == caller.as_str(),
        Some((id, instance)) => {
            id == caller.as_str()
                && (1..=32).contains(&instance.len())
                && instance.bytes().all(|b| b.is_ascii_hexdigit())
        }
    }
}

/// What a proxy's chain may hold: its decisions, its shadow decisions, and gaps.
fn proxy_event(event: &Event) -> bool {
    matches!(event, Event::Decision(_) | Event::Shadow(_) | Event::Gap(_))
}

fn row(accepted: &signet_audit::receiver::Accepted) -> AuditRow {
    let r = &accepted.record;
    let line = String::from_utf8_lossy(&accepted.line).into_owned();
    let mut row = AuditRow {
        id: 0,
        writer: r.writer.clone(),
        seq: r.seq,
        time: r.time,
        kind: String::new(),
        decision: None,
        action: None,
        principal: None,
        resource: None,
        path: None,
        policies: None,
        candidate: None,
        line,
    };
    match &r.event {
        Event::Decision(d) => {
            row.kind = "decision".to_owned();
            row.decision = Some(d.decision.clone());
            row.action = Some(d.action.clone());
            row.principal = Some(d.principal.clone());
            row.resource = Some(d.resource.clone());
            row.path.clone_from(&d.path);
            row.policies = Some(d.policies.join(","));
        }
        Event::Shadow(shadow) => {
            // Indexed as what the candidate would have done.
            let d = &shadow.enforced;
            row.kind = "shadow".to_owned();
            row.decision = Some(shadow.would.clone());
            row.action = Some(d.action.clone());
            row.principal = Some(d.principal.clone());
            row.resource = Some(d.resource.clone());
            row.path.clone_from(&d.path);
            row.policies = Some(shadow.candidate_policies.join(","));
            row.candidate = Some(shadow.candidate.clone());
        }
        Event::Certificate(c) => {
            row.kind = "certificate".to_owned();
            row.action = Some(c.kind.clone());
            row.principal = Some(c.spiffe_id.clone());
        }
        Event::Policy(p) => {
            row.kind = "policy".to_owned();
            row.principal = Some(p.author.clone());
        }
        Event::Config(c) => {
            row.kind = "config".to_owned();
            row.action = Some(c.what.clone());
        }
        Event::Operator(o) => {
            row.kind = "operator".to_owned();
            row.decision = Some(if o.allowed { "allow" } else { "deny" }.to_owned());
            row.action = Some(o.action.clone());
            row.principal = Some(o.principal.clone());
            row.resource = Some(o.target.clone());
        }
        Event::Gap(_) => row.kind = "gap".to_owned(),
    }
    row
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    async fn ship(
        &self,
        request: Request<pb::ShipRequest>,
    ) -> Result<Response<pb::ShipResponse>, Status> {
        let caller = caller(&request, &self.hub)?;
        let lines = request.into_inner().lines;
        if lines.len() > MAX_LINES || lines.iter().any(|l| l.len() > MAX_LINE) {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_LINES} lines of at most {MAX_LINE} bytes per batch"
            )));
        }
        let Some(writer) = lines
            .first()
            .and_then(|l| signet_audit::receiver::writer_of(l))
        else {
            return Ok(Response::new(pb::ShipResponse { stored_through: 0 }));
        };
        if !may_write_as(&writer, &caller) {
            return Err(Status::permission_denied(format!(
                "`{caller}` may ship only its own chain, not `{writer}`"
            )));
        }
        // Judged on receipt: a checkpoint whose signer is revoked or expired now is left out
        // (its records stay, unsigned); a forged one refuses the batch.
        let bundle = self.hub.ca.bundle();
        let deny = self.hub.deny_list();
        let now = rustls::pki_types::UnixTime::now();
        let checkpoint = |c: &signet_audit::record::Checkpoint| {
            use signet_audit::checkpoint::CheckpointError as E;
            use signet_audit::receiver::Verdict;
            match signet_audit::checkpoint::verify_at(c, &bundle, now) {
                Ok(peer) => {
                    let serial = peer.serial.to_string();
                    if deny.spiffe_ids.iter().any(|id| id == peer.id.as_str())
                        || deny.serials.iter().any(|s| s.eq_ignore_ascii_case(&serial))
                    {
                        Verdict::Drop("its signer is deny-listed".to_owned())
                    } else {
                        Verdict::Keep
                    }
                }
                Err(E::Untrusted(why)) => Verdict::Drop(why),
                Err(e) => Verdict::Refuse(e.to_string()),
            }
        };
        let rules = signet_audit::receiver::Rules {
            event_allowed: &proxy_event,
            checkpoint: &checkpoint,
        };
        let mut receivers = self.receivers.lock().await;
        let receiver = match receivers.entry(writer.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let dir = self.dir.join(writer_dir(&writer));
                e.insert(Receiver::open(&dir, &writer).map_err(Status::internal)?)
            }
        };
        let appended = receiver.append(&lines, &rules).map_err(|e| {
            self.hub
                .metrics
                .audit_lines
                .add(&["refused"], lines.len() as u64);
            Status::invalid_argument(e)
        })?;
        self.hub
            .metrics
            .audit_lines
            .add(&["stored"], appended.accepted.len() as u64);
        for why in &appended.dropped {
            tracing::warn!(%writer, reason = %why, "a shipped checkpoint was not kept");
        }
        let accepted = appended.accepted;
        let stored_through = receiver.stored_through();
        drop(receivers);
        if !accepted.is_empty() {
            // The spool copy is the record; the index only serves queries, so a failure
            // here is logged, not returned (the proxy would resend what is already kept).
            let indexed = self.hub.metrics.store_call(
                "index_audit",
                self.hub
                    .store
                    .index_audit(accepted.iter().map(row).collect()),
            );
            if let Err(e) = indexed.await {
                tracing::error!(error = %e, "indexing audit records failed");
            }
        }
        Ok(Response::new(pb::ShipResponse { stored_through }))
    }
}

//! `signet.v1.Audit`: proxies ship their audit chains here. The store keeps each writer's
//! chain (exact lines of its records and checkpoints, and where it stands), so whichever
//! replica a proxy ships to next continues the same chain: a batch is checked against the
//! store's tip and kept in one transaction that moves it, so nothing is lost or kept twice
//! when a proxy fails over. Each replica also writes what it receives to a spool of the
//! same format under `<data-dir>/audit/received/<writer>/`, first catching up from the
//! store with what other replicas received, so `meshctl audit verify --data-dir` checks a
//! replica's copy like any other. A proxy may ship only its own chain: the writer of every
//! line must be the SPIFFE ID of the certificate the call came over.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use signet_audit::receiver::{Planned, Receiver, Tip};
use signet_audit::record::Event;
use tonic::{Request, Response, Status};

use crate::api::v1 as pb;
use crate::server::hub::Hub;
use crate::server::identity::caller;
use crate::server::store::{AuditBatch, AuditRow, StoreError};

/// Most lines in one batch, and the longest line.
const MAX_LINES: usize = 4096;
/// Records read from the store per query when a replica's copy catches up.
const CATCH_UP_PAGE: u32 = 4096;
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

impl AuditService {
    /// Brings this replica's copy of `writer`'s chain up to the store's (batches other
    /// replicas received since), and returns the tip the next batch must move in the
    /// store. A copy kept before the store held chains seeds the store's tip.
    async fn catch_up(
        &self,
        receiver: &mut Receiver,
        writer: &str,
        stored: Option<Tip>,
    ) -> Result<Option<Tip>, Status> {
        let Some(stored) = stored else {
            let local = receiver.tip();
            if local.seq == 0 {
                return Ok(None);
            }
            // Its records were indexed as they came; from now on the store leads.
            let seed = AuditBatch {
                writer: writer.to_owned(),
                from: None,
                to: local.clone(),
                records: Vec::new(),
                checkpoints: Vec::new(),
            };
            return match self.hub.store.append_audit(seed).await {
                Ok(()) => Ok(Some(local)),
                Err(StoreError::Raced(what)) => Err(Status::aborted(format!(
                    "{what} was started by another replica meanwhile; ship again"
                ))),
                Err(e) => Err(Status::unavailable(e.to_string())),
            };
        };
        // Lines kept by other replicas were checked when they arrived there.
        let keep_all = |_: &Event| true;
        let keep_checkpoints =
            |_: &signet_audit::record::Checkpoint| signet_audit::receiver::Verdict::Keep;
        let trusted = signet_audit::receiver::Rules {
            event_allowed: &keep_all,
            checkpoint: &keep_checkpoints,
        };
        loop {
            let local = receiver.tip();
            if local.seq >= stored.seq && local.signed_through >= stored.signed_through {
                break;
            }
            let lines = self
                .hub
                .store
                .audit_chain_after(writer, &local, CATCH_UP_PAGE)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            if lines.is_empty() {
                break;
            }
            let lines: Vec<Vec<u8>> = lines.into_iter().map(String::into_bytes).collect();
            receiver.append(&lines, &trusted).map_err(|e| {
                Status::internal(format!("catching up `{writer}` from the store: {e}"))
            })?;
        }
        let local = receiver.tip();
        if local != stored {
            return Err(Status::internal(format!(
                "this replica's copy of `{writer}` (through record {}) does not match the \
                 store's (through record {})",
                local.seq, stored.seq
            )));
        }
        Ok(Some(stored))
    }
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
        let stored = self
            .hub
            .store
            .audit_tip(&writer)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let from = self.catch_up(receiver, &writer, stored).await?;
        let plan = receiver.plan(&lines, &rules).map_err(|e| {
            self.hub
                .metrics
                .audit_lines
                .add(&["refused"], lines.len() as u64);
            Status::invalid_argument(e)
        })?;
        let stored_through = plan.tip.seq;
        if from.as_ref() != Some(&plan.tip) {
            let mut records = Vec::new();
            let mut checkpoints = Vec::new();
            for planned in &plan.lines {
                match planned {
                    Planned::Record(accepted) => records.push(row(accepted)),
                    Planned::Checkpoint { last, line } => {
                        checkpoints.push((*last, String::from_utf8_lossy(line).into_owned()));
                    }
                }
            }
            let batch = AuditBatch {
                writer: writer.clone(),
                from,
                to: plan.tip.clone(),
                records,
                checkpoints,
            };
            let kept = self
                .hub
                .metrics
                .store_call("append_audit", self.hub.store.append_audit(batch));
            match kept.await {
                Ok(()) => {}
                Err(StoreError::Raced(what)) => {
                    return Err(Status::aborted(format!(
                        "{what} was extended by another replica meanwhile; ship again"
                    )));
                }
                Err(e) => return Err(Status::unavailable(e.to_string())),
            }
        }
        // The store holds the batch: this replica's spool is a copy, and one that failed
        // half-written is reopened from disk (and caught up) at the next batch.
        let appended = match receiver.commit(plan) {
            Ok(appended) => appended,
            Err(e) => {
                tracing::error!(%writer, error = %e, "writing the received copy failed");
                receivers.remove(&writer);
                signet_audit::receiver::Appended::default()
            }
        };
        drop(receivers);
        self.hub
            .metrics
            .audit_lines
            .add(&["stored"], appended.accepted.len() as u64);
        for why in &appended.dropped {
            tracing::warn!(%writer, reason = %why, "a shipped checkpoint was not kept");
        }
        Ok(Response::new(pb::ShipResponse { stored_through }))
    }
}

//! Waiting until every registered proxy reports that it enforces a change.
//!
//! Storing a policy version or a deny-list entry is not the same as enforcing it: a proxy
//! may be disconnected, or may refuse what it received. `meshctl authz apply` and
//! `meshctl identity deny` therefore wait (up to a deadline) for the proxies' own reports,
//! which arrive with the heartbeat a proxy sends as soon as it applied a change, and say
//! which proxies have not caught up instead of claiming success. With several replicas,
//! each waits for the proxies connected to it.

use std::time::Duration;

use crate::server::hub::{Hub, ProxyEntry};

/// The longest a caller may ask to wait.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// What the registered proxies reported by the deadline.
#[derive(Debug, Clone)]
pub struct Acks {
    /// Registered proxies.
    pub proxies: usize,
    /// Those that had not reported the change.
    pub pending: Vec<ProxyEntry>,
}

impl Acks {
    /// As the API's type; `reported` names what a pending proxy enforces.
    pub fn to_model(&self, reported: impl Fn(&ProxyEntry) -> u64) -> crate::model::Enforcement {
        crate::model::Enforcement {
            proxies: self.proxies as u64,
            enforced_by: (self.proxies - self.pending.len()) as u64,
            pending: self
                .pending
                .iter()
                .map(|p| crate::model::PendingProxy {
                    instance: p.instance.clone(),
                    spiffe_id: p.spiffe_id.as_str().to_owned(),
                    service: p.service.clone(),
                    enforces: reported(p),
                })
                .collect(),
        }
    }
}

/// Waits up to `timeout` for every registered proxy that `counts` to satisfy `done`.
pub async fn wait(
    hub: &Hub,
    timeout: Duration,
    counts: impl Fn(&ProxyEntry) -> bool,
    done: impl Fn(&ProxyEntry) -> bool,
) -> Acks {
    let deadline = tokio::time::Instant::now() + timeout.min(MAX_WAIT);
    // Who was registered when the change was made: one that leaves the registry while we
    // wait (its heartbeats stopped) did not enforce the change, and is reported.
    // Only this replica's proxies report their versions here: those of another replica
    // follow the change through the store's feed, and that replica's own waits see them.
    let counts = |p: &ProxyEntry| p.local && counts(p);
    let at_start: Vec<ProxyEntry> = hub.proxies().into_iter().filter(&counts).collect();
    loop {
        // Listen before looking, so a report landing in between is not missed.
        let report = hub.reports().notified();
        tokio::pin!(report);
        report.as_mut().enable();
        let mut proxies: Vec<ProxyEntry> = hub.proxies().into_iter().filter(&counts).collect();
        for gone in &at_start {
            if !proxies.iter().any(|p| p.instance == gone.instance) {
                proxies.push(gone.clone());
            }
        }
        let total = proxies.len();
        let pending: Vec<ProxyEntry> = proxies.into_iter().filter(|p| !done(p)).collect();
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            return Acks {
                proxies: total,
                pending,
            };
        }
        tokio::select! {
            () = report => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

//! `GET /v1/status`: the control plane at a glance, and what the other handlers share to
//! describe certificates and proxies.

use super::*;

pub(super) fn der_not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp() * 1000)
}

pub(super) fn der_subject(der: &[u8]) -> String {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_default()
}

/// Whether a proxy enforces the current configuration: its last heartbeat names the current
/// policy version and came within three heartbeat intervals.
pub(crate) fn in_sync(hub: &Hub, p: &ProxyEntry, policy_version: u64) -> bool {
    let fresh = p
        .last_seen
        .elapsed()
        .is_ok_and(|age| age < hub.heartbeat_interval * 3);
    fresh && p.policy_version == policy_version
}

pub(super) async fn status(
    State(api): State<Api>,
    op: Operator,
) -> Result<Json<model::Status>, ApiError> {
    api.authorize(
        &op,
        Act::Read {
            collection: "status",
        },
    )
    .await?;
    Ok(Json(status_of(&api.hub).await))
}

/// The control plane at a glance, as `GET /v1/status` and the console's overview show it.
/// The database away, it still answers from memory, and says so.
pub(crate) async fn status_of(hub: &Hub) -> model::Status {
    let applied = hub.applied();
    let version = applied.meta.as_ref().map_or(0, |m| m.version);
    let proxies = hub.proxies();
    // Versions are known for the proxies connected here; those of other replicas are
    // counted apart.
    let local: Vec<_> = proxies.iter().filter(|p| p.local).collect();
    let synced = local.iter().filter(|p| in_sync(hub, p, version)).count();
    let now = crate::server::store::unix_ms(std::time::SystemTime::now());
    let own = hub.replica.get().map(|r| r.id.clone()).unwrap_or_default();
    let mut store_error = None;
    let rows = hub
        .store
        .replicas(now - REPLICAS_SHOWN_MS)
        .await
        .unwrap_or_else(|e| {
            store_error = Some(e.to_string());
            Vec::new()
        });
    let replicas = rows
        .into_iter()
        .map(|r| model::Replica {
            alive: now - r.last_seen <= REPLICA_ALIVE_MS,
            this: r.id == own,
            id: r.id,
            grpc: r.grpc,
            api: r.api,
            version: r.version,
            started_at: r.started_at,
            last_seen: r.last_seen,
        })
        .collect();
    let leases = hub.store.duties().await.unwrap_or_else(|e| {
        store_error.get_or_insert(e.to_string());
        Vec::new()
    });
    let duties = crate::server::duties::ALL
        .iter()
        .map(|name| {
            let lease = leases
                .iter()
                .find(|l| l.name == *name && l.expires_at >= now);
            model::Duty {
                name: (*name).to_owned(),
                holder: lease.map(|l| l.holder.clone()),
                since: lease.map(|l| l.since),
                this: lease.is_some_and(|l| l.holder == own),
            }
        })
        .collect();
    let count = |n: usize| n as u64;
    model::Status {
        healthy: store_error.is_none(),
        store_error,
        trust_domain: hub.trust_domain.as_str().to_owned(),
        uptime_seconds: hub.started.elapsed().map_or(0, |d| d.as_secs()),
        ca: ca_routes::describe(hub),
        policy: model::PolicySummary {
            version,
            hash: applied.bundle.hash().to_owned(),
            policies: count(applied.bundle.len()),
        },
        proxies: model::ProxyCounts {
            total: count(proxies.len()),
            in_sync: count(synced),
            stale: count(local.len() - synced),
            on_other_replicas: count(proxies.len() - local.len()),
        },
        replicas,
        duties,
    }
}

/// A replica that renewed its row this recently is alive (it renews every second).
pub(super) const REPLICA_ALIVE_MS: i64 = 5_000;
/// Replicas seen in this long are listed (the dead ones too, marked so).
pub(super) const REPLICAS_SHOWN_MS: i64 = 10 * 60 * 1_000;

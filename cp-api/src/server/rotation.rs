//! The step, run every second, that moves CA rotations along (staged → promoted → old roots retired) and runs
//! the active backend's housekeeping (Vault token, intermediate re-signing).

use std::time::{Duration, SystemTime};

use crate::server::hub::Hub;

/// Proxies that have not acknowledged the staged bundle, by instance: those connected here
/// and, through the store's leases, those connected to other replicas.
pub fn lagging(hub: &Hub) -> Vec<String> {
    hub.ca
        .staged_sequence()
        .map_or_else(Vec::new, |wanted| lagging_behind(hub, wanted))
}

/// Proxies that have not acknowledged bundle `wanted`.
pub fn lagging_behind(hub: &Hub, wanted: u64) -> Vec<String> {
    hub.proxies()
        .into_iter()
        .filter(|p| p.trust_bundle < wanted)
        .map(|p| format!("{} ({})", p.instance, p.spiffe_id))
        .collect()
}

/// How long new roots or JWT keys stay staged, published but unused, at least: with a
/// bundle endpoint served, two of its refresh hints, so every federated domain has fetched
/// them before anything signed by them (this control plane's own endpoint SVID included)
/// reaches it. Without one, no wait.
pub fn federation_delay(hub: &Hub) -> Duration {
    use std::sync::atomic::Ordering;
    if hub.bundle_endpoint_served.load(Ordering::Relaxed) {
        Duration::from_secs(hub.bundle_refresh_hint_secs.load(Ordering::Relaxed)) * 2
    } else {
        Duration::ZERO
    }
}

/// How long a staged rotation waits for proxies that keep heartbeating without applying
/// the new bundle: past this, a proxy is broken in a way a rotation cannot wait for.
pub fn patience(hub: &Hub) -> Duration {
    (hub.heartbeat_interval * 12).max(Duration::from_secs(30))
}

fn audit(hub: &Hub, what: &str, detail: String) {
    hub.audit.record(signet_audit::Event::Config(
        signet_audit::record::ConfigEvent {
            what: what.to_owned(),
            version: hub.ca.bundle().sequence(),
            detail,
        },
    ));
}

/// One step: run housekeeping when due and, on the replica holding the rotation duty,
/// promote a staged rotation every proxy has acknowledged and retire expired roots.
pub async fn step(hub: &Hub, now: SystemTime) {
    // Each replica keeps its own backend session (Vault token, its intermediate).
    hub.ca.maintain_if_due(now).await;
    if !hub.duties.holds(crate::server::duties::CA_ROTATION) {
        return;
    }
    if let Some(staged) = hub.ca.staged() {
        let waiting = lagging(hub);
        let since = hub.ca.staged_since().unwrap_or(0);
        let elapsed = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(since);
        let timed_out = Duration::from_secs(elapsed) >= patience(hub);
        let federated_domains_had_time = Duration::from_secs(elapsed) >= federation_delay(hub);
        if federated_domains_had_time && (waiting.is_empty() || timed_out) {
            if timed_out && !waiting.is_empty() {
                tracing::warn!(
                    ?waiting,
                    "promoting the CA rotation without these proxies' acknowledgement"
                );
            }
            match hub.ca.promote().await {
                Ok(Some(_)) => {
                    tracing::info!(
                        backend = staged.backend.name(),
                        "CA rotation promoted: new SVIDs come from the new CA"
                    );
                    audit(
                        hub,
                        "ca",
                        format!(
                            "promoted {}: issuance moved to it{}",
                            staged.backend.name(),
                            if waiting.is_empty() {
                                String::new()
                            } else {
                                format!("; not acknowledged by {}", waiting.join(", "))
                            }
                        ),
                    );
                    hub.changed();
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "promoting the CA rotation failed"),
            }
        }
    }
    rotate_jwt_key(hub, now).await;
    match hub.ca.retire_expired(now).await {
        Ok(true) => {
            tracing::info!("retired CA roots whose SVIDs have all expired");
            audit(
                hub,
                "ca",
                "retired old roots: every SVID they signed has expired".to_owned(),
            );
            hub.changed();
        }
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "retiring CA roots failed"),
    }
}

/// The JWT signing key's own rotation (a CA rotation carries one along): a key that has
/// signed for its lifetime gets a staged successor, promoted once every proxy holds a bundle
/// publishing it, so no validator meets a token whose key it has not seen.
async fn rotate_jwt_key(hub: &Hub, now: SystemTime) {
    if hub.ca.staged().is_some() {
        return;
    }
    if let Some((since, sequence)) = hub.ca.jwt_staged() {
        let waiting = lagging_behind(hub, sequence);
        let elapsed = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(since);
        if !waiting.is_empty() && Duration::from_secs(elapsed) < patience(hub) {
            return;
        }
        if Duration::from_secs(elapsed) < federation_delay(hub) {
            return;
        }
        match hub.ca.promote_jwt_key().await {
            Ok(true) => {
                tracing::info!("JWT-SVID signing moved to the staged key");
                audit(
                    hub,
                    "ca",
                    format!(
                        "promoted the staged JWT-SVID signing key{}",
                        if waiting.is_empty() {
                            String::new()
                        } else {
                            format!("; not acknowledged by {}", waiting.join(", "))
                        }
                    ),
                );
                hub.changed();
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "promoting the JWT signing key failed"),
        }
    } else if hub.ca.jwt_due(now) {
        match hub.ca.stage_jwt_key().await {
            Ok(true) => {
                tracing::info!("staged a new JWT-SVID signing key");
                audit(
                    hub,
                    "ca",
                    "staged a new JWT-SVID signing key: published, signing once every proxy holds it"
                        .to_owned(),
                );
                hub.changed();
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "staging a JWT signing key failed"),
        }
    }
}

//! Following the store's change feed: another replica's write (a policy version, traffic
//! settings, a deny, a CA rotation step, ...) reaches the proxies connected here. The feed's sequence is the
//! truth and is checked every [`POLL`]; on PostgreSQL a `LISTEN` on the feed's channel
//! wakes the check as soon as the writer commits, so followers usually learn within
//! milliseconds and at worst within the poll.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::server::hub::Hub;
use crate::server::store::sql::CHANGES_CHANNEL;

/// How often the feed is checked without a notification.
pub const POLL: Duration = Duration::from_secs(1);

/// Follows the feed from `seen` until shutdown. `database_url` is the PostgreSQL store's
/// URL, when it is one: then its notifications wake the follower too.
pub async fn follow(
    hub: Arc<Hub>,
    mut seen: u64,
    database_url: Option<String>,
    mut stop: watch::Receiver<bool>,
) {
    let woken = Arc::new(Notify::new());
    if let Some(url) = database_url {
        tokio::spawn(listen(url, Arc::clone(&woken), stop.clone()));
    }
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = woken.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let latest = match hub.store.latest_change().await {
            Ok(latest) => latest,
            Err(e) => {
                tracing::warn!(error = %e, "reading the change feed failed");
                continue;
            }
        };
        if latest <= seen {
            continue;
        }
        if let Err(e) = hub.sync_registry().await {
            tracing::warn!(error = %e, "sharing the registry through the store failed");
        }
        // Another replica's rotation step: the new bundle (or issuer) reaches the proxies
        // connected here.
        match hub.ca.follow().await {
            Ok(true) => {
                tracing::info!(
                    bundle = hub.ca.bundle().sequence(),
                    "followed a change to the CA"
                );
                hub.changed();
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "following the CA in the store failed");
                continue;
            }
        }
        match hub.follow_store().await {
            Ok(()) => {
                tracing::debug!(from = seen, to = latest, "followed the change feed");
                seen = latest;
            }
            // Retried at the next tick: the feed has not been consumed.
            Err(e) => tracing::error!(error = %e, "applying the store's changes failed"),
        }
    }
}

/// Wakes the follower on each notification of the feed's channel, reconnecting with a
/// pause if the connection to the database drops.
async fn listen(url: String, woken: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => match listener.listen(CHANGES_CHANNEL).await {
                Ok(()) => loop {
                    tokio::select! {
                        received = listener.recv() => match received {
                            Ok(_) => woken.notify_one(),
                            Err(e) => {
                                tracing::debug!(error = %e, "change notifications interrupted");
                                break;
                            }
                        },
                        _ = stop.wait_for(|s| *s) => return,
                    }
                },
                Err(e) => tracing::debug!(error = %e, "LISTEN on the change feed failed"),
            },
            Err(e) => tracing::debug!(error = %e, "no connection for change notifications"),
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

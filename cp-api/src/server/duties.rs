//! Duties one replica performs at a time, each under a lease in the store: moving a CA
//! rotation along (promotion, retiring roots), forgetting registrations whose lease lapsed
//! (whichever replica served them, including one that died), and fetching JWT providers'
//! keys. Every replica asks for every duty each second; the store gives each to one holder
//! and to another once its holder stops renewing. A holder that cannot reach the store
//! stops acting when its own view of the lease runs out, a margin before the store's.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::server::store::{Store, StoreError};

/// Promoting a staged CA rotation and retiring expired roots.
pub const CA_ROTATION: &str = "ca-rotation";
/// Forgetting registrations whose lease lapsed.
pub const REGISTRY_EXPIRY: &str = "registry-expiry";
/// Fetching JWT providers' keys when their refresh is due.
pub const JWKS_REFRESH: &str = "jwks-refresh";
/// Fetching federated trust domains' bundles when their refresh is due.
pub const FEDERATION_REFRESH: &str = "federation-refresh";
/// Every duty, in the order `meshctl status` lists them.
pub const ALL: [&str; 4] = [
    CA_ROTATION,
    REGISTRY_EXPIRY,
    JWKS_REFRESH,
    FEDERATION_REFRESH,
];

/// How long a lease runs unless renewed: a dead holder's duties move within this.
pub const LEASE: Duration = Duration::from_secs(5);
/// How much earlier than the store's lease a holder stops trusting its own.
const MARGIN: Duration = Duration::from_secs(1);

/// The duties this replica holds, and until when it may act on each.
#[derive(Debug, Default)]
pub struct Duties {
    held: Mutex<BTreeMap<&'static str, Instant>>,
}

impl Duties {
    /// Asks the store for each duty (a renewal for those held). A failure leaves what
    /// is held to run out on its own.
    pub async fn renew(&self, store: &dyn Store, holder: &str) -> Result<(), StoreError> {
        for name in ALL {
            let asked = Instant::now();
            let taken = store.take_duty(name, holder, LEASE).await?;
            let mut held = self
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if taken {
                if !held.contains_key(name) {
                    tracing::info!(duty = name, "this replica took a duty");
                }
                held.insert(name, asked + LEASE - MARGIN);
            } else if held.remove(name).is_some() {
                tracing::info!(duty = name, "another replica holds a duty this one had");
            }
        }
        Ok(())
    }

    /// Whether this replica may perform `name` now.
    pub fn holds(&self, name: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Gives every duty up (a clean stop), so another replica takes them at once.
    pub async fn release(&self, store: &dyn Store, holder: &str) {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        if let Err(e) = store.release_duties(holder).await {
            tracing::warn!(error = %e, "giving up duties failed; they move when their lease lapses");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::SqlStore;

    #[tokio::test]
    async fn each_duty_has_one_holder_and_moves_when_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open(&dir.path().join("s.db")).await.unwrap();
        let (a, b) = (Duties::default(), Duties::default());
        a.renew(&store, "a").await.unwrap();
        b.renew(&store, "b").await.unwrap();
        for name in ALL {
            assert!(a.holds(name) && !b.holds(name), "{name}");
        }
        assert!(!a.holds("unknown"));
        a.release(&store, "a").await;
        assert!(!a.holds(CA_ROTATION));
        b.renew(&store, "b").await.unwrap();
        a.renew(&store, "a").await.unwrap();
        for name in ALL {
            assert!(b.holds(name) && !a.holds(name), "{name}");
        }
    }
}

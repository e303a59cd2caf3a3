//! JWT-SVIDs for the local workload: minted by the control plane for the proxy's own
//! identity (the proxy never holds a JWT signing key) and cached per audience set until
//! half their life has passed, so a workload asking on every request costs one mint per
//! half-lifetime, not one per call.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tonic::Status;

/// A boxed future (the trait stays object-safe).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A token and its lifetime as the control plane minted it.
#[derive(Debug, Clone)]
pub struct Minted {
    pub spiffe_id: String,
    pub token: String,
    pub expires: SystemTime,
}

/// Where JWT-SVIDs come from: the control plane.
pub trait JwtSource: Send + Sync + fmt::Debug {
    /// Mints a token of the proxy's identity for `audience`.
    fn mint(&self, audience: Vec<String>) -> BoxFuture<'_, Result<Minted, Status>>;
}

/// Audience sets cached at most; past this the entry expiring first makes room.
const MAX_ENTRIES: usize = 256;

#[derive(Debug, Clone)]
struct Entry {
    minted: Minted,
    /// Half-way through its life: from here on a new one is minted.
    refresh_at: SystemTime,
}

/// Tokens by audience set.
#[derive(Debug)]
pub struct JwtCache {
    source: Option<Arc<dyn JwtSource>>,
    entries: Mutex<HashMap<Vec<String>, Entry>>,
}

impl JwtCache {
    /// A cache over `source`; `None` (a proxy without a control plane) mints nothing.
    pub fn new(source: Option<Arc<dyn JwtSource>>) -> Self {
        Self {
            source,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<String>, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A token for `audience` (in any order, repeats ignored): the cached one while it is in
    /// the first half of its life, else a new one.
    pub async fn get(&self, mut audience: Vec<String>, now: SystemTime) -> Result<Minted, Status> {
        audience.sort();
        audience.dedup();
        if let Some(entry) = self.entries().get(&audience)
            && now < entry.refresh_at
        {
            return Ok(entry.minted.clone());
        }
        let source = self.source.as_ref().ok_or_else(|| {
            Status::unavailable(
                "JWT-SVIDs come from the control plane; this proxy runs without one",
            )
        })?;
        let minted = source.mint(audience.clone()).await?;
        let life = minted.expires.duration_since(now).unwrap_or(Duration::ZERO);
        let entry = Entry {
            minted: minted.clone(),
            refresh_at: now + life / 2,
        };
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&audience) {
            entries.retain(|_, e| e.minted.expires > now);
            if entries.len() >= MAX_ENTRIES
                && let Some(first) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.minted.expires)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&first);
            }
        }
        entries.insert(audience, entry);
        Ok(minted)
    }

    /// Audience sets held.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug, Default)]
    struct Counting {
        minted: AtomicUsize,
    }

    impl JwtSource for Counting {
        fn mint(&self, audience: Vec<String>) -> BoxFuture<'_, Result<Minted, Status>> {
            let n = self.minted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                Ok(Minted {
                    spiffe_id: "spiffe://acme.internal/cart".to_owned(),
                    token: format!("{}#{n}", audience.join(",")),
                    expires: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + 100),
                })
            })
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn aud(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn a_token_is_reused_for_the_same_audiences_until_half_its_life() {
        let source = Arc::new(Counting::default());
        let cache = JwtCache::new(Some(source.clone()));
        let first = cache.get(aud(&["b", "a"]), at(1_000)).await.unwrap();
        let same = cache.get(aud(&["a", "b", "a"]), at(1_049)).await.unwrap();
        assert_eq!(first.token, same.token, "order and repeats do not matter");
        assert_eq!(source.minted.load(Ordering::SeqCst), 1);
        let other = cache.get(aud(&["a"]), at(1_010)).await.unwrap();
        assert_ne!(other.token, first.token);
        let renewed = cache.get(aud(&["a", "b"]), at(1_050)).await.unwrap();
        assert_ne!(renewed.token, first.token, "half-way: minted again");
        assert_eq!(source.minted.load(Ordering::SeqCst), 3);
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let cache = JwtCache::new(Some(Arc::new(Counting::default())));
        for n in 0..MAX_ENTRIES + 10 {
            cache
                .get(vec![format!("aud-{n}")], at(1_000))
                .await
                .unwrap();
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
    }

    #[tokio::test]
    async fn without_a_control_plane_nothing_is_minted() {
        let cache = JwtCache::new(None);
        let refused = cache.get(aud(&["a"]), at(1)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(cache.is_empty());
    }
}

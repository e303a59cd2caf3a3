//! Circuit-breaker limits toward one upstream service (Envoy's thresholds): requests in
//! flight, retries in flight, connections open, and requests waiting for a connection. Past
//! a limit a request fails at once (503, `x-signet-error: overflow`) instead of queueing
//! without end behind a service that cannot keep up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which limit a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_requests`.
    Requests,
    /// `max_retries` (the retry is skipped; the failed answer stands).
    Retries,
    /// `max_connections` and `max_pending` both full.
    Pending,
}

impl Limit {
    /// The label in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Requests => "requests",
            Limit::Retries => "retries",
            Limit::Pending => "pending",
        }
    }
}

/// One service's limits and what is in use.
#[derive(Debug)]
pub struct Breaker {
    requests: Arc<Semaphore>,
    retries: Arc<Semaphore>,
    /// Connections, shared by the pools of all the service's endpoints.
    pub connections: Arc<ConnectionLimit>,
}

impl Breaker {
    /// Limits as configured.
    pub fn new(settings: &signet_traffic::doc::Breaker) -> Self {
        let permits = |n: u32| Arc::new(Semaphore::new(n as usize));
        Self {
            requests: permits(settings.max_requests),
            retries: permits(settings.max_retries),
            connections: Arc::new(ConnectionLimit {
                permits: permits(settings.max_connections),
                pending: AtomicU32::new(0),
                max_pending: settings.max_pending,
            }),
        }
    }

    /// A place for one request in flight, held until its response is back.
    pub fn request(&self) -> Result<OwnedSemaphorePermit, Limit> {
        Arc::clone(&self.requests)
            .try_acquire_owned()
            .map_err(|_| Limit::Requests)
    }

    /// A place for one retry in flight.
    pub fn retry(&self) -> Result<OwnedSemaphorePermit, Limit> {
        Arc::clone(&self.retries)
            .try_acquire_owned()
            .map_err(|_| Limit::Retries)
    }
}

/// Connections open to a service, and requests allowed to wait for one.
#[derive(Debug)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    pending: AtomicU32,
    max_pending: u32,
}

impl ConnectionLimit {
    /// No limit (the local app's pool).
    pub fn unlimited() -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            pending: AtomicU32::new(0),
            max_pending: u32::MAX,
        })
    }

    /// A place for one more connection, held for its life: at once when there is one, after
    /// a wait when `max_pending` others are not already waiting, else [`Limit::Pending`].
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, Limit> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(permit);
        }
        let waiting = self.pending.fetch_add(1, Ordering::AcqRel);
        let _leave = Leave(&self.pending);
        if waiting >= self.max_pending {
            return Err(Limit::Pending);
        }
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Limit::Pending)
    }
}

/// Takes one off the waiting count however the wait ends (a timeout drops it mid-wait).
struct Leave<'a>(&'a AtomicU32);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(max_connections: u32, max_pending: u32) -> Breaker {
        Breaker::new(&signet_traffic::doc::Breaker {
            max_connections,
            max_pending,
            max_requests: 2,
            max_retries: 1,
        })
    }

    #[test]
    fn requests_and_retries_past_their_limits_fail_at_once() {
        let b = breaker(1, 1);
        let one = b.request().unwrap();
        let _two = b.request().unwrap();
        assert_eq!(b.request().unwrap_err(), Limit::Requests);
        drop(one);
        assert!(b.request().is_ok());
        let _retry = b.retry().unwrap();
        assert_eq!(b.retry().unwrap_err(), Limit::Retries);
    }

    #[tokio::test]
    async fn connections_wait_while_there_is_room_to_wait() {
        let b = breaker(1, 1);
        let open = b.connections.acquire().await.unwrap();
        let limit = Arc::clone(&b.connections);
        let waiter = tokio::spawn(async move { limit.acquire().await.map(|_| ()) });
        tokio::task::yield_now().await;
        // One already waits: the next is refused.
        while b.connections.pending.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(b.connections.acquire().await.unwrap_err(), Limit::Pending);
        drop(open);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(b.connections.pending.load(Ordering::Acquire), 0);
    }
}

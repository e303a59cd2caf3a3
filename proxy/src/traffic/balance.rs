//! Endpoint choice. Each endpoint keeps its requests in flight and a peak-EWMA of its
//! latency (Finagle's and Linkerd's): a slow answer raises the estimate at once, fast ones
//! bring it down over about `DECAY`, and it decays while the endpoint gets no traffic so an
//! endpoint that recovered is tried again. Power of two choices compares two endpoints
//! picked at random, which spreads load nearly as well as comparing all of them, in O(1).
//!
//! Ejected endpoints (outlier detection) are passed over; when every endpoint is ejected
//! they are all used anyway, since some answer beats none.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use signet_traffic::doc::BalancerKind;

use super::outlier::OutlierState;
use super::rand;
use crate::pool::Pool;

/// How long the latency estimate takes to forget (by 1/e) a slow answer.
const DECAY: Duration = Duration::from_secs(10);

/// One endpoint of an upstream service.
#[derive(Debug)]
pub struct Endpoint {
    /// Its address (its proxy's inbound listener).
    pub addr: SocketAddr,
    /// Its connections.
    pub pool: Pool,
    outstanding: AtomicU32,
    latency: Mutex<Ewma>,
    /// Passive health.
    pub outlier: OutlierState,
}

#[derive(Debug, Clone, Copy)]
struct Ewma {
    /// Estimated latency, nanoseconds; 0 until the first answer (a new endpoint is tried
    /// soon rather than never).
    cost: f64,
    at: Option<Instant>,
}

impl Ewma {
    fn decayed(&self, now: Instant) -> f64 {
        match self.at {
            Some(at) => {
                let idle = now.saturating_duration_since(at).as_secs_f64();
                self.cost * (-idle / DECAY.as_secs_f64()).exp()
            }
            None => self.cost,
        }
    }
}

/// An attempt in flight on an endpoint: counted in its load until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Endpoint {
    /// An endpoint reached through `pool`.
    pub fn new(pool: Pool) -> Self {
        Self {
            addr: pool.addr(),
            pool,
            outstanding: AtomicU32::new(0),
            latency: Mutex::new(Ewma {
                cost: 0.0,
                at: None,
            }),
            outlier: OutlierState::default(),
        }
    }

    /// Counts an attempt in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Attempts in flight now.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Records an answer that took `rtt`.
    pub fn observe(&self, rtt: Duration, now: Instant) {
        let Ok(mut e) = self.latency.lock() else {
            return;
        };
        let rtt = rtt.as_nanos() as f64;
        let current = e.decayed(now);
        e.cost = if rtt > current {
            rtt
        } else {
            let idle =
                e.at.map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
            let w = (-idle / DECAY.as_secs_f64()).exp();
            current * w + rtt * (1.0 - w)
        };
        e.at = Some(now);
    }

    /// The latency estimate now, in seconds.
    pub fn latency_seconds(&self, now: Instant) -> f64 {
        self.latency.lock().map_or(0.0, |e| e.decayed(now)) / 1e9
    }

    /// Peak-EWMA load: estimated latency times the attempts that would share it.
    fn cost(&self, now: Instant) -> f64 {
        let latency = self.latency.lock().map_or(0.0, |e| e.decayed(now));
        // A floor of 1 µs so that, between endpoints with no estimate yet, the one with
        // fewer requests in flight still wins.
        latency.max(1e3) * f64::from(self.outstanding() + 1)
    }
}

/// An upstream's endpoints.
#[derive(Debug, Default)]
pub struct Endpoints {
    /// In the order the control plane (or the file) lists them.
    pub list: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
}

impl Endpoints {
    /// Over `list`.
    pub fn new(list: Vec<Arc<Endpoint>>) -> Self {
        Self {
            list,
            next: AtomicUsize::new(0),
        }
    }

    /// How many are ejected now.
    pub fn ejected(&self, now: Instant) -> usize {
        self.list
            .iter()
            .filter(|e| e.outlier.is_ejected(now))
            .count()
    }

    /// The endpoint for the next attempt by `kind`, passing over ejected ones and `avoid`
    /// (the one a retry's failed attempt went to) while others are left.
    pub fn pick(
        &self,
        kind: BalancerKind,
        avoid: Option<SocketAddr>,
        now: Instant,
    ) -> Option<Arc<Endpoint>> {
        let n = self.list.len();
        if n <= 1 {
            return self.list.first().cloned();
        }
        let eligible = |e: &Endpoint| !e.outlier.is_ejected(now) && Some(e.addr) != avoid;
        let chosen = match kind {
            BalancerKind::RoundRobin => (0..n)
                .map(|_| &self.list[self.next.fetch_add(1, Ordering::Relaxed) % n])
                .find(|e| eligible(e)),
            BalancerKind::P2cEwma | BalancerKind::LeastRequest => {
                let i = rand::below(n);
                let mut j = rand::below(n - 1);
                if j >= i {
                    j += 1;
                }
                let (a, b) = (&self.list[i], &self.list[j]);
                match (eligible(a), eligible(b)) {
                    (true, true) => Some(if self.load(kind, b, now) < self.load(kind, a, now) {
                        b
                    } else {
                        a
                    }),
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => (1..n)
                        .map(|k| &self.list[(i + k) % n])
                        .find(|e| eligible(e)),
                }
            }
        };
        chosen
            .or_else(|| self.list.iter().find(|e| !e.outlier.is_ejected(now)))
            .or_else(|| self.list.get(rand::below(n)))
            .cloned()
    }

    fn load(&self, kind: BalancerKind, e: &Endpoint, now: Instant) -> f64 {
        match kind {
            BalancerKind::LeastRequest => f64::from(e.outstanding()),
            _ => e.cost(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Transport;

    fn endpoints(n: u16) -> Endpoints {
        Endpoints::new(
            (0..n)
                .map(|i| {
                    let addr = SocketAddr::from(([127, 0, 0, 1], 1000 + i));
                    Arc::new(Endpoint::new(Pool::new(addr, Transport::Http1)))
                })
                .collect(),
        )
    }

    fn shares(e: &Endpoints, kind: BalancerKind, picks: usize, now: Instant) -> Vec<usize> {
        let mut counts = vec![0; e.list.len()];
        for _ in 0..picks {
            let p = e.pick(kind, None, now).unwrap();
            counts[e.list.iter().position(|x| Arc::ptr_eq(x, &p)).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_takes_each_in_turn() {
        let e = endpoints(3);
        assert_eq!(
            shares(&e, BalancerKind::RoundRobin, 300, Instant::now()),
            vec![100, 100, 100]
        );
    }

    #[test]
    fn p2c_ewma_sends_little_to_a_slow_endpoint() {
        let e = endpoints(3);
        let now = Instant::now();
        e.list[0].observe(Duration::from_millis(1), now);
        e.list[1].observe(Duration::from_millis(1), now);
        e.list[2].observe(Duration::from_millis(51), now);
        let s = shares(&e, BalancerKind::P2cEwma, 3000, now);
        assert_eq!(s[2], 0, "{s:?}");
        // Fast answers pull the estimate down only gradually: a second later it is still
        // well above the fast ones.
        let later = now + Duration::from_secs(1);
        e.list[2].observe(Duration::from_millis(1), later);
        assert!(e.list[2].latency_seconds(later) > 0.040);
        // Unused, the estimate decays, and the endpoint is tried again.
        let much_later = now + Duration::from_secs(120);
        e.list[0].observe(Duration::from_millis(1), much_later);
        e.list[1].observe(Duration::from_millis(1), much_later);
        assert!(shares(&e, BalancerKind::P2cEwma, 3000, much_later)[2] > 0);
    }

    #[test]
    fn load_counts_requests_in_flight() {
        let e = endpoints(2);
        let now = Instant::now();
        let _busy: Vec<InFlight> = (0..5).map(|_| e.list[0].start()).collect();
        assert_eq!(
            shares(&e, BalancerKind::LeastRequest, 100, now),
            vec![0, 100]
        );
        // Same latency estimate: in-flight requests decide for P2C-EWMA too.
        assert_eq!(shares(&e, BalancerKind::P2cEwma, 100, now), vec![0, 100]);
        drop(_busy);
        assert_eq!(e.list[0].outstanding(), 0);
    }

    #[test]
    fn ejected_and_avoided_endpoints_are_passed_over_while_others_remain() {
        let e = endpoints(3);
        let now = Instant::now();
        let settings = signet_traffic::doc::Outlier {
            consecutive_gateway_errors: 1,
            ..Default::default()
        };
        e.list[0].outlier.observe(
            super::super::outlier::Health::GatewayError,
            &settings,
            now,
            || true,
        );
        for kind in [
            BalancerKind::RoundRobin,
            BalancerKind::P2cEwma,
            BalancerKind::LeastRequest,
        ] {
            let s = shares(&e, kind, 300, now);
            assert_eq!(s[0], 0, "{kind:?} {s:?}");
            for _ in 0..50 {
                let p = e.pick(kind, Some(e.list[1].addr), now).unwrap();
                assert_eq!(p.addr, e.list[2].addr, "{kind:?}");
            }
        }
        // Everything ejected: something is still chosen.
        let one = endpoints(1);
        one.list[0].outlier.observe(
            super::super::outlier::Health::GatewayError,
            &settings,
            now,
            || true,
        );
        assert!(one.pick(BalancerKind::P2cEwma, None, now).is_some());
    }
}

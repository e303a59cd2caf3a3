//! Endpoint choice. Each endpoint keeps its requests in flight and a peak-EWMA of its
//! latency (Finagle's and Linkerd's): a slow answer raises the estimate at once, fast ones
//! bring it down over about `DECAY`, and it decays while the endpoint gets no traffic so an
//! endpoint that recovered is tried again. Power of two choices compares two endpoints
//! picked at random, which spreads load nearly as well as comparing all of them, in O(1).
//!
//! Ejected endpoints (outlier detection) are passed over; when every endpoint is ejected
//! they are all used anyway, since some answer beats none.
//!
//! Endpoint weights (from the registry) count as if an endpoint of weight 2w were two
//! endpoints of weight w sharing one queue: each of the two candidates is drawn in
//! proportion to weight (independently, so both may be the same endpoint), and requests in
//! flight count per unit of weight. When the two candidates' costs are alike every endpoint
//! gets its weight's share exactly; when they differ the cheaper one still wins. The price
//! is that a heavy endpoint is sometimes both candidates, so it keeps a floor of its share
//! squared even when slow: weights trade a little of P2C's protection for proportion.
//! Round robin becomes smooth weighted round robin (nginx's), which spreads a heavy
//! endpoint's turns between the others' instead of bunching them. A set whose weights are
//! all equal (the default) takes the unweighted paths: two distinct candidates.

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
    /// Its registered weight; the set's own copy (taken when the set is made) is what
    /// picks use, this one is what operators see.
    weight: AtomicU32,
    latency: Mutex<Ewma>,
    /// Passive health.
    pub outlier: OutlierState,
    /// Its registered labels, which traffic subsets select by.
    pub labels: Arc<signet_traffic::labels::Labels>,
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
    /// An endpoint of `weight` reached through `pool`.
    /// The same endpoint, carrying `labels`.
    pub fn with_labels(mut self, labels: Arc<signet_traffic::labels::Labels>) -> Self {
        self.labels = labels;
        self
    }

    pub fn new(pool: Pool, weight: u32) -> Self {
        Self {
            labels: Arc::default(),
            addr: pool.addr(),
            pool,
            outstanding: AtomicU32::new(0),
            weight: AtomicU32::new(weight),
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

    /// Its weight now.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Takes a new weight from the registry; sets made from now on use it.
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
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

    /// Peak-EWMA load: estimated latency times the attempts that would share it, each
    /// attempt counting `1 / share` (an endpoint of twice the share queues half as deep).
    fn cost(&self, share: f64, now: Instant) -> f64 {
        let latency = self.latency.lock().map_or(0.0, |e| e.decayed(now));
        // A floor of 1 µs so that, between endpoints with no estimate yet, the one with
        // fewer requests in flight still wins.
        latency.max(1e3) * (f64::from(self.outstanding()) / share + 1.0)
    }
}

/// Unequal weights, as a set's picks use them.
#[derive(Debug)]
struct Weights {
    each: Vec<u32>,
    /// Running sums of `each` (the k-th includes `each[k]`), for weighted draws.
    cumulative: Vec<u64>,
    /// `each` over their mean: 1 for an average endpoint.
    share: Vec<f64>,
    /// Smooth weighted round robin's running scores.
    scores: Mutex<Vec<i64>>,
}

impl Weights {
    /// `None` when the weights are all equal (the unweighted paths are exact then).
    fn of(list: &[Arc<Endpoint>]) -> Option<Self> {
        let each: Vec<u32> = list.iter().map(|e| e.weight().max(1)).collect();
        if each.windows(2).all(|w| w[0] == w[1]) {
            return None;
        }
        let cumulative: Vec<u64> = each
            .iter()
            .scan(0u64, |sum, w| {
                *sum += u64::from(*w);
                Some(*sum)
            })
            .collect();
        let mean = cumulative.last().copied().unwrap_or(1) as f64 / each.len() as f64;
        Some(Self {
            share: each.iter().map(|w| f64::from(*w) / mean).collect(),
            scores: Mutex::new(vec![0; each.len()]),
            each,
            cumulative,
        })
    }

    /// An index drawn with probability proportional to its weight.
    fn draw(&self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        let r = rand::below(usize::try_from(total).unwrap_or(usize::MAX)) as u64;
        self.cumulative
            .partition_point(|c| *c <= r)
            .min(self.each.len() - 1)
    }

    /// Smooth weighted round robin over the eligible: each gains its weight, the highest
    /// is chosen and loses the total.
    fn next_turn(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let mut scores = match self.scores.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut best: Option<usize> = None;
        let mut total = 0i64;
        for k in (0..self.each.len()).filter(|k| eligible(*k)) {
            let w = i64::from(self.each[k]);
            scores[k] += w;
            total += w;
            if best.is_none_or(|b| scores[k] > scores[b]) {
                best = Some(k);
            }
        }
        if let Some(b) = best {
            scores[b] -= total;
        }
        best
    }
}

/// An upstream's endpoints.
#[derive(Debug, Default)]
pub struct Endpoints {
    /// In the order the control plane (or the file) lists them.
    pub list: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
    weights: Option<Weights>,
}

impl Endpoints {
    /// Over `list`, with their weights as they are now.
    pub fn new(list: Vec<Arc<Endpoint>>) -> Self {
        Self {
            weights: Weights::of(&list),
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
        let chosen = match (kind, &self.weights) {
            (BalancerKind::RoundRobin, None) => (0..n)
                .map(|_| &self.list[self.next.fetch_add(1, Ordering::Relaxed) % n])
                .find(|e| eligible(e)),
            (BalancerKind::RoundRobin, Some(w)) => w
                .next_turn(|k| eligible(&self.list[k]))
                .map(|k| &self.list[k]),
            (BalancerKind::P2cEwma | BalancerKind::LeastRequest, _) => {
                let (i, j) = match &self.weights {
                    Some(w) => (w.draw(), w.draw()),
                    None => {
                        let i = rand::below(n);
                        let j = rand::below(n - 1);
                        (i, if j >= i { j + 1 } else { j })
                    }
                };
                let (a, b) = (&self.list[i], &self.list[j]);
                match (eligible(a), eligible(b)) {
                    // On a tie the first drawn wins: at rest, shares follow the draw.
                    (true, true) => Some(if self.load(kind, j, now) < self.load(kind, i, now) {
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

    fn load(&self, kind: BalancerKind, k: usize, now: Instant) -> f64 {
        let share = self.weights.as_ref().map_or(1.0, |w| w.share[k]);
        let e = &self.list[k];
        match kind {
            BalancerKind::LeastRequest => f64::from(e.outstanding()) / share,
            _ => e.cost(share, now),
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
                    Arc::new(Endpoint::new(Pool::new(addr, Transport::Http1), 100))
                })
                .collect(),
        )
    }

    fn weighted(weights: &[u32]) -> Endpoints {
        Endpoints::new(
            weights
                .iter()
                .zip(1000..)
                .map(|(w, port)| {
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    Arc::new(Endpoint::new(Pool::new(addr, Transport::Http1), *w))
                })
                .collect(),
        )
    }

    /// Ejects `endpoint` as outlier detection would after one gateway error.
    fn eject(endpoint: &Endpoint, now: Instant) {
        let settings = signet_traffic::doc::Outlier {
            consecutive_gateway_errors: 1,
            ..Default::default()
        };
        endpoint.outlier.observe(
            super::super::outlier::Health::GatewayError,
            &settings,
            now,
            || true,
        );
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
        eject(&e.list[0], now);
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
        eject(&one.list[0], now);
        assert!(one.pick(BalancerKind::P2cEwma, None, now).is_some());
    }

    #[test]
    fn equal_weights_take_the_unweighted_paths() {
        assert!(weighted(&[7, 7, 7]).weights.is_none());
        assert!(endpoints(3).weights.is_none());
        assert!(weighted(&[100, 200]).weights.is_some());
    }

    #[test]
    fn weighted_round_robin_gives_each_its_share_spread_out() {
        let e = weighted(&[100, 100, 200]);
        let now = Instant::now();
        let mut order = Vec::new();
        for _ in 0..400 {
            let p = e.pick(BalancerKind::RoundRobin, None, now).unwrap();
            order.push(e.list.iter().position(|x| Arc::ptr_eq(x, &p)).unwrap());
        }
        let count = |k| order.iter().filter(|o| **o == k).count();
        assert_eq!((count(0), count(1), count(2)), (100, 100, 200));
        // Smooth: the heavy endpoint never takes more than two turns in a row.
        assert!(
            order
                .windows(3)
                .all(|w| !(w[0] == 2 && w[1] == 2 && w[2] == 2))
        );
        // A weight of 1 beside 10,000 still gets its turn.
        let e = weighted(&[1, 10_000]);
        let s = shares(&e, BalancerKind::RoundRobin, 10_001, now);
        assert_eq!(s, vec![1, 10_000]);
    }

    #[test]
    fn at_rest_p2c_and_least_request_follow_the_weights() {
        let e = weighted(&[100, 100, 200]);
        let now = Instant::now();
        for x in &e.list {
            x.observe(Duration::from_millis(2), now);
        }
        for kind in [BalancerKind::P2cEwma, BalancerKind::LeastRequest] {
            let s = shares(&e, kind, 40_000, now);
            // Expected 10,000 / 10,000 / 20,000; binomial spread is about ±100.
            assert!((9_400..10_600).contains(&s[0]), "{kind:?} {s:?}");
            assert!((9_400..10_600).contains(&s[1]), "{kind:?} {s:?}");
            assert!((19_000..21_000).contains(&s[2]), "{kind:?} {s:?}");
        }
    }

    #[test]
    fn a_heavier_endpoint_is_expected_to_queue_deeper() {
        // Weights 3:1, so each candidate is the heavy one with probability 3/4. Its three
        // requests in flight weigh as the light one's one.
        let e = weighted(&[300, 100]);
        let now = Instant::now();
        let _light = e.list[1].start();
        let two: Vec<InFlight> = (0..2).map(|_| e.list[0].start()).collect();
        // Less loaded for its weight: it wins every draw it is in (15/16, ~3,750 of 4,000).
        for kind in [BalancerKind::P2cEwma, BalancerKind::LeastRequest] {
            let s = shares(&e, kind, 4_000, now);
            assert!((3_600..3_900).contains(&s[0]), "{kind:?} {s:?}");
        }
        // More loaded for its weight: only when it is both candidates (9/16, ~2,250).
        let four: Vec<InFlight> = (0..2).map(|_| e.list[0].start()).collect();
        for kind in [BalancerKind::P2cEwma, BalancerKind::LeastRequest] {
            let s = shares(&e, kind, 4_000, now);
            assert!((2_100..2_400).contains(&s[0]), "{kind:?} {s:?}");
        }
        drop((two, four));
    }

    #[test]
    fn weighted_draws_follow_the_weights() {
        let e = weighted(&[100, 300, 1]);
        let w = e.weights.as_ref().unwrap();
        let mut seen = [0usize; 3];
        for _ in 0..40_000 {
            seen[w.draw()] += 1;
        }
        // Expected 9,975 / 29,925 / 100.
        assert!((9_400..10_600).contains(&seen[0]), "{seen:?}");
        assert!((29_300..30_600).contains(&seen[1]), "{seen:?}");
        assert!((40..200).contains(&seen[2]), "{seen:?}");
    }

    #[test]
    fn ejected_endpoints_are_passed_over_by_weighted_picks_too() {
        let e = weighted(&[100, 100, 400]);
        let now = Instant::now();
        eject(&e.list[2], now);
        for kind in [
            BalancerKind::RoundRobin,
            BalancerKind::P2cEwma,
            BalancerKind::LeastRequest,
        ] {
            let s = shares(&e, kind, 300, now);
            assert_eq!(s[2], 0, "{kind:?} {s:?}");
        }
    }
}

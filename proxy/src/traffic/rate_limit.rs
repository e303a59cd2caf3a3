//! Local rate limits on the inbound side: GCRA (the generic cell rate algorithm, a token
//! bucket kept as one "theoretical arrival time"), overall and per calling identity, so one
//! noisy caller cannot use up what the others need. Each proxy counts alone.
//!
//! A request must pass every limit that applies (the route's, then the service's; per
//! caller, then overall). When a later one refuses, the earlier ones give their token back,
//! so a refused request costs no caller anything.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use signet_traffic::doc;

/// Most callers one per-caller limit tracks; past it (after forgetting the idle ones), new
/// callers share one bucket, so no caller set can grow the proxy's memory without bound.
pub const MAX_CALLERS: usize = 10_000;

/// One rate: an emission interval and a tolerance, in nanoseconds of the limiter's clock.
#[derive(Debug, Clone, Copy)]
struct Rate {
    emission: u64,
    tolerance: u64,
}

impl Rate {
    fn new(rate: &doc::Rate) -> Self {
        let emission = (1e9 / rate.requests_per_second.max(1e-9)).round() as u64;
        Self {
            emission: emission.max(1),
            tolerance: emission.saturating_mul(u64::from(rate.burst.max(1) - 1)),
        }
    }

    /// The new arrival time if a request at `now` fits after `tat`, or how long until it
    /// would.
    fn next(self, tat: u64, now: u64) -> Result<u64, Duration> {
        let start = tat.max(now);
        let ahead = start - now;
        if ahead > self.tolerance {
            return Err(Duration::from_nanos(ahead - self.tolerance));
        }
        Ok(start + self.emission)
    }
}

/// Every caller together.
#[derive(Debug)]
struct Overall {
    rate: Rate,
    tat: AtomicU64,
}

impl Overall {
    fn take(&self, now: u64) -> Result<(), Duration> {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = self.rate.next(tat, now)?;
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }

    fn give_back(&self) {
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(self.rate.emission))
            });
    }
}

/// Each caller alone.
#[derive(Debug)]
struct PerCaller {
    rate: Rate,
    tats: Mutex<Callers>,
}

#[derive(Debug, Default)]
struct Callers {
    tats: HashMap<Box<str>, u64>,
    /// When idle callers were last forgotten: at most once a second, so a stream of new
    /// callers at the bound costs no scan each.
    swept_at: Option<u64>,
}

const SWEEP_EVERY: u64 = 1_000_000_000;

/// The key callers share once [`MAX_CALLERS`] are tracked.
const OVERFLOW: &str = "";

impl PerCaller {
    fn take(&self, caller: &str, now: u64) -> Result<(), Duration> {
        let Ok(mut callers) = self.tats.lock() else {
            return Ok(());
        };
        let Callers { tats, swept_at } = &mut *callers;
        if let Some(tat) = tats.get_mut(caller) {
            *tat = self.rate.next(*tat, now)?;
            return Ok(());
        }
        if tats.len() >= MAX_CALLERS && swept_at.is_none_or(|t| now >= t + SWEEP_EVERY) {
            // A caller whose arrival time has passed is as good as new: forget those.
            tats.retain(|_, tat| *tat > now);
            *swept_at = Some(now);
        }
        let key = if tats.len() >= MAX_CALLERS {
            OVERFLOW
        } else {
            caller
        };
        let tat = tats.get(key).copied().unwrap_or(0);
        let next = self.rate.next(tat, now)?;
        tats.insert(key.into(), next);
        Ok(())
    }

    fn give_back(&self, caller: &str) {
        if let Ok(mut callers) = self.tats.lock() {
            let tats = &mut callers.tats;
            let key = if tats.contains_key(caller) {
                caller
            } else {
                OVERFLOW
            };
            if let Some(tat) = tats.get_mut(key) {
                *tat = tat.saturating_sub(self.rate.emission);
            }
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Overall,
    PerCaller,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Overall => "overall",
            Scope::PerCaller => "per-caller",
        }
    }
}

/// A refusal: which limit, and when the caller may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub scope: Scope,
    pub retry_after: Duration,
}

/// One `rate_limit` block.
#[derive(Debug)]
pub struct Limiter {
    clock: Instant,
    overall: Option<Overall>,
    per_caller: Option<PerCaller>,
}

impl Limiter {
    pub fn new(limit: &doc::RateLimit) -> Self {
        Self {
            clock: Instant::now(),
            overall: limit.overall.as_ref().map(|r| Overall {
                rate: Rate::new(r),
                tat: AtomicU64::new(0),
            }),
            per_caller: limit.per_caller.as_ref().map(|r| PerCaller {
                rate: Rate::new(r),
                tats: Mutex::new(Callers::default()),
            }),
        }
    }

    fn now(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.clock).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes a token for `caller` at `at` from each of its limits, or none.
    pub fn take(&self, caller: &str, at: Instant) -> Result<(), Limited> {
        let now = self.now(at);
        if let Some(p) = &self.per_caller {
            p.take(caller, now).map_err(|retry_after| Limited {
                scope: Scope::PerCaller,
                retry_after,
            })?;
        }
        if let Some(o) = &self.overall
            && let Err(retry_after) = o.take(now)
        {
            if let Some(p) = &self.per_caller {
                p.give_back(caller);
            }
            return Err(Limited {
                scope: Scope::Overall,
                retry_after,
            });
        }
        Ok(())
    }

    /// Returns the token `take` took for `caller` (a later limit refused the request).
    pub fn give_back(&self, caller: &str) {
        if let Some(p) = &self.per_caller {
            p.give_back(caller);
        }
        if let Some(o) = &self.overall {
            o.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(overall: Option<(f64, u32)>, per_caller: Option<(f64, u32)>) -> Limiter {
        let rate = |(requests_per_second, burst)| doc::Rate {
            requests_per_second,
            burst,
        };
        Limiter::new(&doc::RateLimit {
            overall: overall.map(rate),
            per_caller: per_caller.map(rate),
        })
    }

    #[test]
    fn a_burst_then_the_rate() {
        let l = limiter(Some((10.0, 5)), None);
        let t0 = l.clock + Duration::from_secs(1);
        for _ in 0..5 {
            assert!(l.take("a", t0).is_ok());
        }
        let refused = l.take("a", t0).unwrap_err();
        assert_eq!(refused.scope, Scope::Overall);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        // One more every 100 ms.
        assert!(l.take("a", t0 + Duration::from_millis(100)).is_ok());
        assert!(l.take("a", t0 + Duration::from_millis(150)).is_err());
        assert!(l.take("a", t0 + Duration::from_millis(200)).is_ok());
        // Over a long quiet time the burst refills, and no more.
        let later = t0 + Duration::from_secs(60);
        let passed = (0..20).filter(|_| l.take("a", later).is_ok()).count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn each_caller_has_its_own_share() {
        let l = limiter(None, Some((1.0, 2)));
        let t = l.clock + Duration::from_secs(1);
        assert!(l.take("noisy", t).is_ok());
        assert!(l.take("noisy", t).is_ok());
        assert_eq!(l.take("noisy", t).unwrap_err().scope, Scope::PerCaller);
        assert!(l.take("quiet", t).is_ok());
        assert!(l.take("quiet", t).is_ok());
    }

    #[test]
    fn a_refusal_overall_costs_the_caller_nothing() {
        let l = limiter(Some((1.0, 1)), Some((1.0, 1)));
        let t = l.clock + Duration::from_secs(1);
        assert!(l.take("a", t).is_ok());
        // "b" passes its own limit, then the overall one refuses: b's token comes back.
        assert_eq!(l.take("b", t).unwrap_err().scope, Scope::Overall);
        let t2 = t + Duration::from_secs(1);
        assert!(l.take("b", t2).is_ok());
    }

    fn callers_tracked(l: &Limiter) -> usize {
        l.per_caller
            .as_ref()
            .unwrap()
            .tats
            .lock()
            .unwrap()
            .tats
            .len()
    }

    #[test]
    fn tracked_callers_are_bounded() {
        let l = limiter(None, Some((1.0, 1)));
        let t = l.clock + Duration::from_secs(1);
        for i in 0..MAX_CALLERS + 500 {
            let _ = l.take(&format!("spiffe://td/c/{i}"), t);
        }
        let tracked = callers_tracked(&l);
        assert_eq!(
            tracked,
            MAX_CALLERS + 1,
            "the overflow bucket is the one extra"
        );
        // Later, idle callers are forgotten to make room.
        let later = t + Duration::from_secs(10);
        assert!(l.take("spiffe://td/new", later).is_ok());
        let tracked = callers_tracked(&l);
        assert!(tracked < 10, "{tracked}");
    }
}

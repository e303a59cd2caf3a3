//! The retry budget (Finagle's and Linkerd's): retries may add at most `ratio` of the recent
//! requests plus `min_per_second`, over a sliding window. When a service fails, its callers'
//! retries stop at that share instead of multiplying its load by the retry count.
//!
//! The window is cut into ten slots, each counting requests and retries; a slot is cleared
//! when time comes round to it again. Counting is two atomic adds per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SLOTS: usize = 10;

/// One service's budget.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_second: u32,
    window: Duration,
    slot_width: Duration,
    start: Instant,
    slots: [Slot; SLOTS],
}

#[derive(Debug, Default)]
struct Slot {
    /// Which slot-length tick of time this slot counts now.
    epoch: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl RetryBudget {
    /// A budget of `ratio` of requests plus `min_per_second`, over `window`.
    pub fn new(settings: &signet_traffic::doc::RetryBudget) -> Self {
        let window = settings.window.max(Duration::from_millis(SLOTS as u64));
        Self {
            ratio: settings.ratio,
            min_per_second: settings.min_per_second,
            window,
            slot_width: window / SLOTS as u32,
            start: Instant::now(),
            slots: Default::default(),
        }
    }

    /// Counts a request (its first attempt).
    pub fn deposit(&self, now: Instant) {
        self.slot(now).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; false when it is spent (the retry is not made).
    pub fn withdraw(&self, now: Instant) -> bool {
        let (requests, retries) = self.totals(now);
        let floor = f64::from(self.min_per_second) * self.window.as_secs_f64();
        if (retries as f64) < requests as f64 * self.ratio + floor {
            self.slot(now).retries.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    fn tick(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.start).as_nanos();
        u64::try_from(nanos / self.slot_width.as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    /// The slot for `now`, cleared first if it last counted an older tick.
    fn slot(&self, now: Instant) -> &Slot {
        let tick = self.tick(now);
        let slot = &self.slots[usize::try_from(tick % SLOTS as u64).unwrap_or(0)];
        let seen = slot.epoch.load(Ordering::Acquire);
        if seen != tick
            && slot
                .epoch
                .compare_exchange(seen, tick, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // Counts added between the exchange and these stores are lost: a few requests at
            // a slot boundary, well inside the budget's precision.
            slot.requests.store(0, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
        }
        slot
    }

    /// Requests and retries in the window ending now.
    fn totals(&self, now: Instant) -> (u64, u64) {
        let tick = self.tick(now);
        let oldest = tick.saturating_sub(SLOTS as u64 - 1);
        self.slots
            .iter()
            .filter(|s| {
                let e = s.epoch.load(Ordering::Acquire);
                e >= oldest && e <= tick
            })
            .fold((0, 0), |(q, r), s| {
                (
                    q + s.requests.load(Ordering::Relaxed),
                    r + s.retries.load(Ordering::Relaxed),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, min_per_second: u32) -> RetryBudget {
        RetryBudget::new(&signet_traffic::doc::RetryBudget {
            ratio,
            min_per_second,
            window: Duration::from_secs(10),
        })
    }

    #[test]
    fn retries_are_capped_at_the_ratio_plus_the_floor() {
        let b = budget(0.2, 1);
        let now = b.start + Duration::from_secs(1);
        for _ in 0..1000 {
            b.deposit(now);
        }
        let granted = (0..1000).filter(|_| b.withdraw(now)).count();
        // 20 % of 1000, plus 1/s over the 10 s window.
        assert_eq!(granted, 210);
    }

    #[test]
    fn old_requests_stop_counting_after_the_window() {
        let b = budget(0.5, 0);
        let t0 = b.start;
        for _ in 0..100 {
            b.deposit(t0);
        }
        assert!(b.withdraw(t0 + Duration::from_secs(9)));
        // Eleven seconds on, those requests are out of the window: nothing to retry against.
        assert!(!b.withdraw(t0 + Duration::from_secs(11)));
        // The retry at 9 s still counts: four new requests allow one more (2 x 0.5 - 1).
        for _ in 0..4 {
            b.deposit(t0 + Duration::from_secs(11));
        }
        assert!(b.withdraw(t0 + Duration::from_secs(11)));
        assert!(!b.withdraw(t0 + Duration::from_secs(11)));
    }

    #[test]
    fn a_zero_ratio_and_floor_allows_no_retry() {
        let b = budget(0.0, 0);
        b.deposit(b.start);
        assert!(!b.withdraw(b.start));
    }
}

//! Passive outlier detection (Envoy's, in short): an endpoint that keeps failing is ejected
//! for a while, longer each time; when it returns it is on probation, and one failure sends
//! it out again at once. No more than a set share of endpoints is ever out, and never the
//! last one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use signet_traffic::doc::Outlier;

use super::clock;

/// What one attempt says about an endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Answered, not with a 5xx.
    Success,
    /// Answered 500, 501 or 505+.
    ServerError,
    /// No connection, 502, 503 or 504.
    GatewayError,
}

/// One endpoint's outlier state.
#[derive(Debug, Default)]
pub struct OutlierState {
    /// When the current ejection ends (`clock` nanoseconds), 0 when not ejected. Read without
    /// the lock by every pick.
    ejected_until: AtomicU64,
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    ejections: u32,
    /// Returned from an ejection and not yet proven healthy again.
    probation: bool,
    successes: u32,
    returned: Option<Instant>,
}

impl OutlierState {
    /// Whether the endpoint is out now.
    pub fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && clock::nanos(now) < until
    }

    /// Times ejected so far (for `/endpoints` and metrics).
    pub fn ejections(&self) -> u32 {
        self.inner.lock().map_or(0, |c| c.ejections)
    }

    /// Records one attempt's `health`; returns the ejection's length when this one ejects
    /// the endpoint. `may_eject` says whether the service can spare one more endpoint.
    pub fn observe(
        &self,
        health: Health,
        settings: &Outlier,
        now: Instant,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Duration> {
        if self.is_ejected(now) {
            // Answers to requests sent before the ejection say nothing new.
            return None;
        }
        let Ok(mut c) = self.inner.lock() else {
            return None;
        };
        if c.probation && self.ejected_until.load(Ordering::Relaxed) != 0 {
            // The ejection just ended.
            self.ejected_until.store(0, Ordering::Relaxed);
            c.returned = Some(now);
        }
        let on = settings.consecutive_5xx > 0 || settings.consecutive_gateway_errors > 0;
        match health {
            Health::Success => {
                c.consecutive_5xx = 0;
                c.consecutive_gateway = 0;
                if c.probation {
                    c.successes += 1;
                    if c.successes
                        >= settings
                            .consecutive_5xx
                            .max(settings.consecutive_gateway_errors)
                    {
                        c.probation = false;
                    }
                } else if c.ejections > 0
                    && c.returned
                        .is_some_and(|t| now.saturating_duration_since(t) > settings.max_ejection)
                {
                    // Healthy for a whole maximum ejection: the next one starts short again.
                    c.ejections = 0;
                }
                return None;
            }
            Health::ServerError => {
                c.consecutive_5xx += 1;
                c.consecutive_gateway = 0;
            }
            Health::GatewayError => {
                c.consecutive_5xx += 1;
                c.consecutive_gateway += 1;
            }
        }
        let tripped = (settings.consecutive_5xx > 0
            && c.consecutive_5xx >= settings.consecutive_5xx)
            || (settings.consecutive_gateway_errors > 0
                && c.consecutive_gateway >= settings.consecutive_gateway_errors)
            || (on && c.probation);
        if !tripped || !may_eject() {
            return None;
        }
        c.ejections = c.ejections.saturating_add(1);
        let length = settings
            .base_ejection
            .saturating_mul(c.ejections)
            .min(settings.max_ejection);
        self.ejected_until
            .store(clock::nanos(now + length).max(1), Ordering::Relaxed);
        c.consecutive_5xx = 0;
        c.consecutive_gateway = 0;
        c.probation = true;
        c.successes = 0;
        Some(length)
    }
}

/// Whether one more of `total` endpoints may be out when `ejected` already are.
pub fn may_eject(ejected: usize, total: usize, max_percent: u32) -> bool {
    if max_percent == 0 || ejected + 1 >= total {
        return false;
    }
    let share = (total * max_percent as usize / 100).max(1);
    ejected < share
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Outlier {
        Outlier {
            consecutive_5xx: 0,
            consecutive_gateway_errors: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn consecutive_failures_eject_for_longer_each_time_and_probation_is_short() {
        let s = settings();
        let o = OutlierState::default();
        let t = Instant::now();
        assert_eq!(o.observe(Health::GatewayError, &s, t, || true), None);
        assert_eq!(o.observe(Health::GatewayError, &s, t, || true), None);
        // A success in between starts the count again.
        assert_eq!(o.observe(Health::Success, &s, t, || true), None);
        assert_eq!(o.observe(Health::GatewayError, &s, t, || true), None);
        assert_eq!(o.observe(Health::GatewayError, &s, t, || true), None);
        assert_eq!(
            o.observe(Health::GatewayError, &s, t, || true),
            Some(Duration::from_secs(10))
        );
        assert!(o.is_ejected(t + Duration::from_secs(9)));
        assert!(!o.is_ejected(t + Duration::from_secs(11)));
        // Back on probation: one failure is enough, and the ejection is twice as long.
        let back = t + Duration::from_secs(11);
        assert_eq!(
            o.observe(Health::GatewayError, &s, back, || true),
            Some(Duration::from_secs(20))
        );
        // Then capped at the maximum.
        let back = back + Duration::from_secs(21);
        assert_eq!(
            o.observe(Health::GatewayError, &s, back, || true),
            Some(Duration::from_secs(25))
        );
        assert_eq!(o.ejections(), 3);
    }

    #[test]
    fn probation_ends_after_enough_successes() {
        let s = settings();
        let o = OutlierState::default();
        let t = Instant::now();
        for _ in 0..3 {
            o.observe(Health::GatewayError, &s, t, || true);
        }
        let back = t + Duration::from_secs(11);
        for _ in 0..3 {
            assert_eq!(o.observe(Health::Success, &s, back, || true), None);
        }
        // No longer on probation: one failure does not eject.
        assert_eq!(o.observe(Health::GatewayError, &s, back, || true), None);
    }

    #[test]
    fn a_service_keeps_its_share_of_endpoints() {
        let s = settings();
        let o = OutlierState::default();
        let t = Instant::now();
        for _ in 0..5 {
            assert_eq!(o.observe(Health::GatewayError, &s, t, || false), None);
        }
        assert!(!o.is_ejected(t));
        // Server errors count only when consecutive_5xx is on.
        for _ in 0..5 {
            assert_eq!(o.observe(Health::ServerError, &s, t, || true), None);
        }
        assert!(may_eject(0, 3, 50));
        assert!(!may_eject(1, 3, 50));
        assert!(!may_eject(0, 1, 100), "never the last endpoint");
        assert!(may_eject(0, 2, 10), "at least one may go");
        assert!(!may_eject(0, 5, 0), "0 % turns ejection off");
        assert!(may_eject(4, 10, 50));
        assert!(!may_eject(5, 10, 50));
    }
}

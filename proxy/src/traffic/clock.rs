//! Instants as nanoseconds since the process's first use of this clock, so they fit in an
//! atomic that a request can read without a lock.

use std::sync::OnceLock;
use std::time::Instant;

static BASE: OnceLock<Instant> = OnceLock::new();

/// `at` in nanoseconds since the base (0 for anything before it).
pub(crate) fn nanos(at: Instant) -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

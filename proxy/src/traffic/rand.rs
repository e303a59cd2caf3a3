//! A fast per-thread random source for choices on the request path (which two endpoints to
//! compare, which pause to take). Not for secrets: seeded once per thread from the system.

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    // Without system randomness (never seen) choices are still spread, only predictable.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    u64::from_le_bytes(bytes) | 1
}

/// A random number below `n` (`n` > 0).
pub(crate) fn below(n: usize) -> usize {
    let x = next();
    // Multiply-shift: uniform enough for n far below 2^32, and no division.
    let n = n as u64;
    usize::try_from((u128::from(x) * u128::from(n)) >> 64).unwrap_or(0)
}

/// A random fraction in [0, 1].
pub(crate) fn fraction() -> f64 {
    (next() >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) fn next() -> u64 {
    STATE.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn choices_cover_the_range_evenly() {
        let mut seen = [0u32; 3];
        for _ in 0..30_000 {
            seen[super::below(3)] += 1;
        }
        for n in seen {
            assert!((9_000..11_000).contains(&n), "{seen:?}");
        }
        for _ in 0..1000 {
            let f = super::fraction();
            assert!((0.0..=1.0).contains(&f));
        }
    }
}

//! Random ids for traces and spans: a per-thread SplitMix64 stream, seeded from the standard
//! library's per-process random hash keys. Fast and unpredictable enough for trace ids, which
//! only need to be unique; never for secrets.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

thread_local! {
    static STATE: Cell<u64> = Cell::new({
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        h.finish()
    });
}

/// The next random number of this thread's stream.
pub fn next() -> u64 {
    STATE.with(|s| {
        let mut z = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_differ_across_draws_and_threads() {
        let here: Vec<u64> = (0..1000).map(|_| super::next()).collect();
        let mut sorted = here.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), here.len());
        let there = std::thread::spawn(super::next).join().unwrap();
        assert!(!here.contains(&there));
    }
}

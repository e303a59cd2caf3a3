//! Capped exponential backoff with jitter: every retry loop of the proxy waits through one.
//!
//! Each pause is drawn between half and all of the current step ("equal jitter"), and the
//! step doubles up to a cap. Without jitter, every proxy of a mesh that lost its control
//! plane at the same moment would come back at the same moments too, in lockstep.

use std::time::Duration;

/// One retry loop's backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    start: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Steps from `start`, doubling up to `max`.
    pub fn new(start: Duration, max: Duration) -> Self {
        Self {
            start,
            max: max.max(start),
            step: start,
        }
    }

    /// The current step (the longest the next pause can be).
    pub fn step(&self) -> Duration {
        self.step
    }

    /// The pause before the next attempt; the step after it doubles.
    pub fn pause(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        jittered(step, crate::traffic::rand::fraction())
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.step = self.start;
    }
}

/// Between half of `step` (fraction 0) and all of it (fraction 1).
fn jittered(step: Duration, fraction: f64) -> Duration {
    let half = step / 2;
    half + half.mul_f64(fraction.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(2));
        let steps: Vec<Duration> = (0..6)
            .map(|_| {
                let step = b.step();
                let pause = b.pause();
                assert!(pause >= step / 2 && pause <= step, "{pause:?} of {step:?}");
                step
            })
            .collect();
        assert_eq!(
            steps,
            [250, 500, 1000, 2000, 2000, 2000].map(Duration::from_millis)
        );
        b.reset();
        assert_eq!(b.step(), Duration::from_millis(250));
    }

    #[test]
    fn jitter_spans_half_to_all_of_a_step() {
        let step = Duration::from_secs(4);
        assert_eq!(jittered(step, 0.0), Duration::from_secs(2));
        assert_eq!(jittered(step, 1.0), step);
        assert_eq!(jittered(step, 0.5), Duration::from_secs(3));
        assert_eq!(jittered(step, 7.0), step, "clamped");
        // Pauses of many loops differ: they are not in lockstep.
        let mut b = Backoff::new(step, step);
        let pauses: std::collections::BTreeSet<Duration> = (0..20).map(|_| b.pause()).collect();
        assert!(pauses.len() > 1, "{pauses:?}");
    }
}

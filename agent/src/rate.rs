//! Per-second rates of counters between two samples.
//!
//! `rate = (v1 - v0) / (t1 - t0)`. A counter that went down was reset (a container restarted,
//! a cgroup was recreated under the same path): that interval yields no rate at all, never a
//! negative one. Time is an input, so the arithmetic is tested without a clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// Previous `(value, at)` of one counter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rate {
    prev: Option<(f64, Instant)>,
}

impl Rate {
    /// Records `value` observed `at` and returns the rate since the previous observation:
    /// `None` on the first one, on a counter reset, or if no time passed.
    pub fn update(&mut self, value: f64, at: Instant) -> Option<f64> {
        let prev = self.prev.replace((value, at));
        let (v0, t0) = prev?;
        let dt = at.checked_duration_since(t0)?.as_secs_f64();
        if dt <= 0.0 || value < v0 {
            return None;
        }
        Some((value - v0) / dt)
    }
}

/// Rates keyed by series; keys not updated in a pass are forgotten by [`RateMap::sweep`].
#[derive(Debug)]
pub struct RateMap<K> {
    rates: HashMap<K, (Rate, bool)>,
}

impl<K> Default for RateMap<K> {
    fn default() -> Self {
        Self {
            rates: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> RateMap<K> {
    /// See [`Rate::update`]; marks `key` as seen in this pass.
    pub fn update(&mut self, key: K, value: f64, at: Instant) -> Option<f64> {
        let entry = self.rates.entry(key).or_default();
        entry.1 = true;
        entry.0.update(value, at)
    }

    /// Forgets keys not updated since the last sweep (gone containers), so state stays bounded.
    pub fn sweep(&mut self) {
        self.rates.retain(|_, (_, seen)| std::mem::take(seen));
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.rates.len()
    }

    /// True if no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn first_sample_has_no_rate_then_rate_is_delta_over_time() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        assert_eq!(r.update(10.0, t0), None);
        assert_eq!(r.update(12.0, t0 + Duration::from_secs(2)), Some(1.0));
        assert_eq!(r.update(12.0, t0 + Duration::from_secs(3)), Some(0.0));
    }

    #[test]
    fn counter_reset_skips_the_interval_and_never_goes_negative() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        r.update(100.0, t0);
        assert_eq!(
            r.update(5.0, t0 + Duration::from_secs(1)),
            None,
            "reset: no rate"
        );
        // The next interval is measured from the post-reset value.
        assert_eq!(r.update(7.0, t0 + Duration::from_secs(3)), Some(1.0));
    }

    #[test]
    fn zero_or_backward_time_gives_no_rate() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut r = Rate::default();
        r.update(1.0, t0);
        assert_eq!(r.update(2.0, t0), None);
        assert_eq!(r.update(3.0, t0 - Duration::from_secs(1)), None);
    }

    #[test]
    fn sweep_forgets_unseen_keys() {
        let t0 = Instant::now();
        let mut m = RateMap::default();
        m.update("a", 1.0, t0);
        m.update("b", 1.0, t0);
        m.sweep();
        assert_eq!(m.len(), 2);
        assert_eq!(m.update("a", 3.0, t0 + Duration::from_secs(1)), Some(2.0));
        m.sweep();
        assert_eq!(m.len(), 1);
        assert_eq!(
            m.update("b", 5.0, t0 + Duration::from_secs(2)),
            None,
            "b was forgotten"
        );
    }
}

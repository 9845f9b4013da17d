//! The cycle watchdog: `/healthz` fails once the controller's loop has not completed a cycle
//! for too long (a hung request, a deadlock), so the kubelet's liveness probe restarts it.
//!
//! Every replica runs the controller's loop (a follower's cycle only forgets its state), so
//! the watchdog judges the loop on leaders and followers alike. It judges only once the loop
//! has started (the loop waits for the caches to sync first, which `/readyz` reports); from
//! then on a cycle must complete at least every [`Watchdog::limit`], by default
//! max(30 s, 10 × `--fast-interval-seconds`). Time is the monotonic clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The default limit for a fast interval: max(30 s, 10 × interval).
pub fn default_limit(fast_interval: Duration) -> Duration {
    (fast_interval.saturating_mul(10)).max(Duration::from_secs(30))
}

/// What the watchdog says about the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The loop has not started yet: nothing to judge.
    NotStarted,
    /// The last cycle completed within the limit.
    Healthy,
    /// No cycle completed for `stuck_for`, more than `limit`.
    Stuck {
        stuck_for: Duration,
        limit: Duration,
    },
}

/// Judges a loop whose last cycle completed (or which started) at `last`, at `now`.
pub fn judge(last: Option<Instant>, now: Instant, limit: Duration) -> Verdict {
    match last {
        None => Verdict::NotStarted,
        Some(last) => {
            let since = now.saturating_duration_since(last);
            if since > limit {
                Verdict::Stuck {
                    stuck_for: since,
                    limit,
                }
            } else {
                Verdict::Healthy
            }
        }
    }
}

impl Verdict {
    /// `/healthz`'s body for a stuck loop.
    pub fn message(&self) -> Option<String> {
        match self {
            Self::Stuck { stuck_for, limit } => Some(format!(
                "controller stuck: no cycle completed for {:.1}s (limit {:.1}s, \
                 --cycle-watchdog-seconds)\n",
                stuck_for.as_secs_f64(),
                limit.as_secs_f64()
            )),
            _ => None,
        }
    }
}

/// Shared by the controller (which beats) and the HTTP server (which judges). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Watchdog {
    last: Arc<Mutex<Option<Instant>>>,
    limit: Duration,
}

impl Watchdog {
    pub fn new(limit: Duration) -> Self {
        Self {
            last: Arc::new(Mutex::new(None)),
            limit,
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    fn set(&self, f: impl FnOnce(&mut Option<Instant>)) {
        // A poisoned lock only means a panic elsewhere; an instant is always consistent.
        let mut guard = self.last.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The loop starts: from now on it is judged.
    pub fn start(&self) {
        self.set(|l| *l = Some(l.unwrap_or_else(Instant::now)));
    }

    /// A cycle completed.
    pub fn beat(&self) {
        self.set(|l| *l = Some(Instant::now()));
    }

    /// The verdict now.
    pub fn verdict(&self) -> Verdict {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        judge(last, Instant::now(), self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judged_only_once_started_and_stuck_only_past_the_limit() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(30);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(judge(None, at(3600), limit), Verdict::NotStarted);
        assert_eq!(judge(Some(t0), at(0), limit), Verdict::Healthy);
        assert_eq!(
            judge(Some(t0), at(30), limit),
            Verdict::Healthy,
            "at the limit"
        );
        let stuck = judge(Some(t0), at(47), limit);
        assert_eq!(
            stuck,
            Verdict::Stuck {
                stuck_for: Duration::from_secs(47),
                limit
            }
        );
        assert_eq!(
            stuck.message().as_deref(),
            Some(
                "controller stuck: no cycle completed for 47.0s (limit 30.0s, \
                 --cycle-watchdog-seconds)\n"
            )
        );
        // A later beat: healthy again.
        assert_eq!(judge(Some(at(46)), at(47), limit), Verdict::Healthy);
        // An instant before the beat (clocks read out of order) is not stuck.
        assert_eq!(judge(Some(at(10)), at(5), limit), Verdict::Healthy);
    }

    #[test]
    fn the_default_limit_is_ten_intervals_at_least_30s() {
        assert_eq!(
            default_limit(Duration::from_secs(1)),
            Duration::from_secs(30)
        );
        assert_eq!(
            default_limit(Duration::from_secs(5)),
            Duration::from_secs(50)
        );
    }

    #[test]
    fn start_does_not_move_an_earlier_beat() {
        let w = Watchdog::new(Duration::from_secs(30));
        assert_eq!(w.verdict(), Verdict::NotStarted);
        w.start();
        assert_eq!(w.verdict(), Verdict::Healthy);
        let first = *w.last.lock().expect("lock");
        w.start();
        assert_eq!(*w.last.lock().expect("lock"), first);
        w.beat();
        assert!(*w.last.lock().expect("lock") >= first);
    }
}

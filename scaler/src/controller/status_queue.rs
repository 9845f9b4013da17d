//! ScalingPolicy statuses, written off the cycle.
//!
//! A cycle decides; it does not wait for the API server to store statuses. The controller
//! queues each status it wants written, and one task writes the queue through the single
//! [`Writer`], [`STATUS_WRITES_IN_FLIGHT`] at a time:
//!
//! - **Latest wins.** A policy has at most one queued status; a newer one replaces it, so the
//!   queue never holds more entries than there are policies.
//! - **One write per policy at a time.** A status queued while the policy's previous one is
//!   in flight waits for it, so an older status can never land after a newer one.
//! - **Scales first, at once.** The status of a cycle that scaled the target carries the
//!   checkpoint a new leader continues from (the scale event, the stabilization
//!   recommendations): it is [`Priority::Scale`], goes before everything else and starts at
//!   once, even when [`STATUS_WRITES_IN_FLIGHT`] other writes are in flight (it may use
//!   [`SCALE_WRITES_EXTRA`] more slots), so it is not stuck behind slow writes.
//! - **Changes next.** A status whose significant fields changed (conditions, desired
//!   replicas, a metric's error...) is [`Priority::Change`] and goes before every refresh,
//!   unthrottled.
//! - **Refreshes are budgeted.** A status queued only to refresh metric values and the
//!   checkpoint needs a token of a bucket of `refresh_per_second` ([`StatusQueue::try_refresh`]);
//!   without one the controller tries again at the policy's next evaluation. With many
//!   policies the effective refresh period stretches to `policies / refresh_per_second`
//!   instead of the API server's write rate stretching the cycle (5,000 policies refreshed
//!   every 15 s were 333 writes/s and 15 s cycles), and the queue never holds more than the
//!   changed statuses plus one second of refreshes.
//!
//! A failed write is reported back ([`StatusQueue::take_failed`]) so the controller queues
//! that policy's status again at its next evaluation. That includes a write refused with
//! `NotLeader` (not logged or counted as an error): the controller records a status as
//! written when it queues it, so if the lease lapses and is renewed between two cycles, the
//! follower cycle that would clear the queue and the controller's state never runs, and
//! without the report a refused change would stay unwritten until a later change or refresh.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::Notify;

use crate::actuators::{ActuateError, Writer};
use crate::api::ScalingPolicyStatus;

/// Status writes in flight at once (refreshes and changes).
pub const STATUS_WRITES_IN_FLIGHT: usize = 16;

/// Slots beyond [`STATUS_WRITES_IN_FLIGHT`] that only [`Priority::Scale`] writes may use.
pub const SCALE_WRITES_EXTRA: usize = 16;

/// One status write gives up after this long (and is queued again at the next evaluation).
pub const STATUS_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// `(namespace, name)`.
pub type Key = (String, String);

/// Why a status is queued; a higher priority is written first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Only metric values and the checkpoint changed: budgeted.
    Refresh,
    /// A significant field changed.
    Change,
    /// The cycle scaled the target: the checkpoint goes out at once.
    Scale,
}

const LANES: [Priority; 3] = [Priority::Scale, Priority::Change, Priority::Refresh];

/// Writes one status (the real one goes through [`Writer::status`]).
pub(crate) type WriteFn = Arc<
    dyn Fn(
            Key,
            Box<ScalingPolicyStatus>,
        ) -> Pin<Box<dyn Future<Output = Result<(), ActuateError>> + Send>>
        + Send
        + Sync,
>;

/// Counts a failed write's label.
pub(crate) type ErrorFn = Arc<dyn Fn(&ActuateError) + Send + Sync>;

#[derive(Default)]
struct Pending {
    /// Boxed: a status is a large struct, and the map keeps its capacity after a burst (the
    /// first statuses of 5,000 policies held 13 MB of slots inline).
    entries: HashMap<Key, (Box<ScalingPolicyStatus>, Priority)>,
    /// One lane per priority (index: `Priority as usize`); a key may be in a lane it left
    /// (promoted or written): such stale keys are skipped.
    lanes: [VecDeque<Key>; 3],
    /// Keys with a write in flight (at most one per key).
    in_flight: HashSet<Key>,
    failed: Vec<Key>,
}

impl Pending {
    fn push(&mut self, key: Key, status: ScalingPolicyStatus, priority: Priority) {
        let status = Box::new(status);
        match self.entries.get_mut(&key) {
            Some(e) => {
                let promote = priority > e.1;
                *e = (status, e.1.max(priority));
                if promote {
                    self.lanes[priority as usize].push_back(key);
                }
            }
            None => {
                self.lanes[priority as usize].push_back(key.clone());
                self.entries.insert(key, (status, priority));
            }
        }
    }

    /// The next entry of `lane` whose key has no write in flight; keys skipped for being in
    /// flight keep their place.
    fn pop(&mut self, lane: Priority) -> Option<(Key, Box<ScalingPolicyStatus>)> {
        let mut busy = Vec::new();
        let mut found = None;
        while let Some(k) = self.lanes[lane as usize].pop_front() {
            if self.entries.get(&k).is_none_or(|e| e.1 != lane) {
                continue; // stale: written or promoted
            }
            if self.in_flight.contains(&k) {
                busy.push(k);
                continue;
            }
            if let Some((s, _)) = self.entries.remove(&k) {
                found = Some((k, s));
                break;
            }
        }
        for k in busy.into_iter().rev() {
            self.lanes[lane as usize].push_front(k);
        }
        found
    }

    /// The next write to start with `running` writes in flight, highest priority first; it
    /// is marked in flight.
    fn next(&mut self, running: usize) -> Option<(Key, Box<ScalingPolicyStatus>)> {
        for lane in LANES {
            let cap = match lane {
                Priority::Scale => STATUS_WRITES_IN_FLIGHT + SCALE_WRITES_EXTRA,
                _ => STATUS_WRITES_IN_FLIGHT,
            };
            if running >= cap {
                continue;
            }
            if let Some((k, s)) = self.pop(lane) {
                self.in_flight.insert(k.clone());
                return Some((k, s));
            }
        }
        None
    }

    fn shrink_if_drained(&mut self) {
        if self.entries.is_empty() && self.entries.capacity() > 1024 {
            // Drained after a burst: give the slots back.
            self.entries.shrink_to_fit();
            for lane in &mut self.lanes {
                lane.clear();
                lane.shrink_to_fit();
            }
        }
    }
}

struct Inner {
    pending: Mutex<Pending>,
    bucket: Mutex<Bucket>,
    wake: Notify,
}

/// See the module docs. Cloning shares the queue.
#[derive(Clone)]
pub struct StatusQueue {
    inner: Arc<Inner>,
}

/// A token bucket for refresh writes.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        Self {
            rate,
            tokens: rate.max(1.0),
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let burst = self.rate.max(1.0);
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(burst);
        self.at = now;
    }
}

impl StatusQueue {
    /// A queue and the task that writes it through `writer` (spawn the future on the
    /// runtime).
    pub fn new(
        writer: Writer,
        refresh_per_second: f64,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let metrics = writer.metrics().clone();
        let write: WriteFn = Arc::new(move |key: Key, status: Box<ScalingPolicyStatus>| {
            let writer = writer.clone();
            Box::pin(async move { writer.status(&key.0, &key.1, &status).await })
        });
        let count: ErrorFn = Arc::new(move |e: &ActuateError| metrics.error(e.label()));
        Self::with_write(write, count, refresh_per_second)
    }

    /// A queue whose task writes with `write` (tests use a fake).
    pub(crate) fn with_write(
        write: WriteFn,
        count_error: ErrorFn,
        refresh_per_second: f64,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let queue = Self {
            inner: Arc::new(Inner {
                pending: Mutex::new(Pending::default()),
                bucket: Mutex::new(Bucket::new(refresh_per_second)),
                wake: Notify::new(),
            }),
        };
        let task = queue.clone().drive(write, count_error);
        (queue, task)
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock cannot leave `Pending` half-updated in a way that
        // matters (every method keeps it consistent), so a poisoned lock is used as is.
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take one refresh token: true when a refresh may be queued now.
    pub fn try_refresh(&self) -> bool {
        let mut b = self.inner.bucket.lock().unwrap_or_else(|e| e.into_inner());
        b.refill();
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Queue `status` for `key`, replacing any queued one (keeping the higher priority).
    pub fn push(&self, key: Key, status: ScalingPolicyStatus, priority: Priority) {
        self.lock().push(key, status, priority);
        self.inner.wake.notify_one();
    }

    /// Queued statuses (not yet sent).
    pub fn queued(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        let p = self.lock();
        p.entries.is_empty() && p.in_flight.is_empty()
    }

    /// Drop everything queued (leadership lost: a follower must not write).
    pub fn clear(&self) {
        let mut p = self.lock();
        p.entries.clear();
        for lane in &mut p.lanes {
            lane.clear();
        }
    }

    /// The keys whose write failed since the last call.
    pub fn take_failed(&self) -> Vec<Key> {
        std::mem::take(&mut self.lock().failed)
    }

    /// Wait until the queue is empty and nothing is in flight, at most `timeout`; true when
    /// it drained (graceful shutdown).
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_idle() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Keeps up to the cap of writes in flight, starting the next as soon as one ends or
    /// something is queued.
    async fn drive(self, write: WriteFn, count_error: ErrorFn) {
        let mut running = FuturesUnordered::new();
        loop {
            loop {
                let next = self.lock().next(running.len());
                let Some((key, status)) = next else { break };
                let write = write.clone();
                running.push(async move {
                    // Bound every write, so one hung request cannot hold a slot (and the
                    // policy's next status) for the client's 295 s.
                    let r = tokio::time::timeout(STATUS_WRITE_TIMEOUT, write(key.clone(), status))
                        .await
                        .unwrap_or_else(|_| {
                            Err(ActuateError::Unreachable {
                                verb: "patch",
                                object: format!(
                                    "scalingpolicies/{}/status in namespace {}",
                                    key.1, key.0
                                ),
                                detail: format!("no answer in {STATUS_WRITE_TIMEOUT:?}"),
                            })
                        });
                    (key, r)
                });
            }
            if running.is_empty() {
                self.inner.wake.notified().await;
                continue;
            }
            tokio::select! {
                done = running.next() => {
                    let Some((key, r)) = done else { continue };
                    let mut p = self.lock();
                    p.in_flight.remove(&key);
                    match r {
                        Ok(()) => {}
                        // Expected when leadership is lost: not an error, but written again
                        // if this replica still (or again) leads at the next evaluation.
                        Err(ActuateError::NotLeader { .. }) => p.failed.push(key),
                        Err(e) => {
                            count_error(&e);
                            tracing::warn!(
                                error = %e,
                                "status not written; it is queued again at the policy's next evaluation"
                            );
                            p.failed.push(key);
                        }
                    }
                    p.shrink_if_drained();
                }
                () = self.inner.wake.notified() => {}
            }
        }
    }
}

/// A fake writer for tests: each write is recorded when it starts, then waits for `release`.
#[cfg(test)]
pub(crate) fn fake_writer(
    started: Arc<Mutex<Vec<(Key, ScalingPolicyStatus)>>>,
    release: Arc<Notify>,
) -> (WriteFn, ErrorFn) {
    let write: WriteFn = Arc::new(move |key: Key, status: Box<ScalingPolicyStatus>| {
        if let Ok(mut s) = started.lock() {
            s.push((key, *status));
        }
        let release = release.clone();
        Box::pin(async move {
            release.notified().await;
            Ok(())
        })
    });
    (write, Arc::new(|_: &ActuateError| {}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Priority::{Change, Refresh, Scale};

    fn st(desired: i32) -> ScalingPolicyStatus {
        ScalingPolicyStatus {
            desired_replicas: Some(desired),
            ..Default::default()
        }
    }

    fn key(n: &str) -> Key {
        ("ns".into(), n.into())
    }

    fn take(p: &mut Pending) -> Option<(Key, Option<i32>)> {
        let (k, s) = p.next(0)?;
        p.in_flight.remove(&k);
        Some((k, s.desired_replicas))
    }

    /// Latest wins, scales go first, then changes (a refresh promoted to a change too), then
    /// refreshes, and no key is handed out twice.
    #[test]
    fn latest_wins_and_scales_then_changes_first() {
        let mut p = Pending::default();
        p.push(key("a"), st(1), Refresh);
        p.push(key("b"), st(1), Refresh);
        p.push(key("c"), st(1), Change);
        p.push(key("a"), st(2), Refresh);
        p.push(key("b"), st(3), Change);
        p.push(key("d"), st(7), Scale);
        assert_eq!(p.entries.len(), 4);
        assert_eq!(take(&mut p), Some((key("d"), Some(7))), "the scale first");
        assert_eq!(take(&mut p), Some((key("c"), Some(1))));
        assert_eq!(take(&mut p), Some((key("b"), Some(3))), "b promoted");
        assert_eq!(take(&mut p), Some((key("a"), Some(2))));
        // b's old refresh slot is stale: skipped.
        assert_eq!(take(&mut p), None);
        assert!(p.entries.is_empty());
    }

    /// A status queued after a higher-priority one for the same key keeps the priority (the
    /// newer status replaces the older one; priority is never lost before the write).
    #[test]
    fn priority_is_kept_until_written() {
        let mut p = Pending::default();
        p.push(key("a"), st(1), Scale);
        p.push(key("a"), st(2), Refresh);
        p.push(key("b"), st(5), Change);
        assert_eq!(take(&mut p), Some((key("a"), Some(2))), "still a scale");
        assert_eq!(take(&mut p), Some((key("b"), Some(5))));
    }

    /// A key with a write in flight is not handed out again until that write ends (an older
    /// status must never land after a newer one), and keeps its place meanwhile.
    #[test]
    fn one_write_per_key_at_a_time() {
        let mut p = Pending::default();
        p.push(key("a"), st(1), Change);
        let (k, _) = p.next(0).expect("a");
        p.push(key("a"), st(2), Scale);
        p.push(key("b"), st(3), Change);
        let (k2, _) = p.next(1).expect("b, not a");
        assert_eq!(k2, key("b"));
        assert!(p.next(2).is_none(), "a waits for its write in flight");
        p.in_flight.remove(&k);
        let (k3, s) = p.next(1).expect("a now");
        assert_eq!((k3, s.desired_replicas), (key("a"), Some(2)));
    }

    /// Scale writes may use extra slots; nothing else may.
    #[test]
    fn only_scales_exceed_the_in_flight_cap() {
        let mut p = Pending::default();
        p.push(key("c"), st(1), Change);
        p.push(key("s"), st(1), Scale);
        p.push(key("t"), st(1), Scale);
        let full = STATUS_WRITES_IN_FLIGHT;
        assert_eq!(p.next(full).map(|e| e.0), Some(key("s")));
        assert_eq!(
            p.next(full + SCALE_WRITES_EXTRA).map(|e| e.0),
            None,
            "hard cap"
        );
        assert_eq!(p.next(full + 1).map(|e| e.0), Some(key("t")));
        assert!(p.next(full).is_none(), "the change waits for a slot");
        assert_eq!(p.next(full - 1).map(|e| e.0), Some(key("c")));
    }

    /// A write refused because this replica does not lead is reported back like any other
    /// failure: the controller has already recorded the status as written, and only the
    /// report makes it queue the status again (a lease that lapsed and was renewed between
    /// two cycles never clears the controller's state).
    #[tokio::test]
    async fn a_write_refused_for_leadership_is_reported_for_a_retry() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        let follower = tidal_core::lease::Leadership::new();
        let writer = Writer::new(client, follower, crate::metrics::Metrics::new(), "test");
        let (queue, task) = StatusQueue::new(writer, 10.0);
        let task = tokio::spawn(task);
        queue.push(key("a"), st(1), Change);
        queue.push(key("b"), st(1), Refresh);
        assert!(queue.drain(Duration::from_secs(5)).await, "drained");
        let mut failed = queue.take_failed();
        failed.sort();
        assert_eq!(failed, vec![key("a"), key("b")]);
        assert!(queue.take_failed().is_empty(), "reported once");
        task.abort();
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(2), async {
            while !check() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    /// With every ordinary slot taken by a write that does not answer, a scale's status still
    /// starts at once, and a change waits.
    #[tokio::test]
    async fn a_scale_status_starts_at_once_even_when_every_slot_is_busy() {
        let started = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let (write, count) = fake_writer(started.clone(), release.clone());
        let (queue, task) = StatusQueue::with_write(write, count, 100.0);
        let task = tokio::spawn(task);
        for i in 0..STATUS_WRITES_IN_FLIGHT {
            queue.push(key(&format!("slow-{i}")), st(1), Change);
        }
        until("the slots to fill", || {
            started.lock().expect("lock").len() == STATUS_WRITES_IN_FLIGHT
        })
        .await;
        queue.push(key("changed"), st(2), Change);
        queue.push(key("scaled"), st(9), Scale);
        until("the scale's status", || {
            started
                .lock()
                .expect("lock")
                .iter()
                .any(|(k, s)| *k == key("scaled") && s.desired_replicas == Some(9))
        })
        .await;
        assert!(
            !started
                .lock()
                .expect("lock")
                .iter()
                .any(|(k, _)| *k == key("changed")),
            "a change waits for a free slot"
        );
        release.notify_waiters();
        until("the change once slots free up", || {
            started
                .lock()
                .expect("lock")
                .iter()
                .any(|(k, _)| *k == key("changed"))
        })
        .await;
        release.notify_waiters();
        task.abort();
    }

    #[test]
    fn bucket_spends_and_refills_at_its_rate() {
        let mut b = Bucket::new(10.0);
        assert_eq!(b.tokens, 10.0);
        b.tokens = 0.0;
        b.at -= Duration::from_millis(500);
        b.refill();
        assert!((4.9..=5.1).contains(&b.tokens), "{}", b.tokens);
        b.at -= Duration::from_secs(60);
        b.refill();
        assert_eq!(b.tokens, 10.0, "the burst is one second of tokens");
    }
}

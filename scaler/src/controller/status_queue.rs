//! ScalingPolicy statuses, written off the cycle.
//!
//! A cycle decides; it does not wait for the API server to store statuses. The controller
//! queues each status it wants written, and one task writes the queue
//! [`STATUS_WRITES_IN_FLIGHT`] at a time through the single [`Writer`]:
//!
//! - **Latest wins.** A policy has at most one queued status; a newer one replaces it, so the
//!   queue never holds more entries than there are policies.
//! - **Changes first.** A status whose significant fields changed (conditions, desired
//!   replicas, a metric's error...) is *urgent* and goes before every refresh, unthrottled.
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

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Notify;

use crate::actuators::{ActuateError, Writer};
use crate::api::ScalingPolicyStatus;

/// Status writes in flight at once.
pub const STATUS_WRITES_IN_FLIGHT: usize = 16;

/// One status write gives up after this long (and is queued again at the next evaluation).
pub const STATUS_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// `(namespace, name)`.
pub type Key = (String, String);

#[derive(Default)]
struct Pending {
    /// Boxed: a status is a large struct, and the map keeps its capacity after a burst (the
    /// first statuses of 5,000 policies held 13 MB of slots inline).
    entries: HashMap<Key, (Box<ScalingPolicyStatus>, bool)>,
    urgent: VecDeque<Key>,
    refresh: VecDeque<Key>,
    in_flight: usize,
    failed: Vec<Key>,
}

impl Pending {
    fn push(&mut self, key: Key, status: ScalingPolicyStatus, urgent: bool) {
        let status = Box::new(status);
        match self.entries.get_mut(&key) {
            Some(e) => {
                let promote = urgent && !e.1;
                *e = (status, e.1 || urgent);
                if promote {
                    self.urgent.push_back(key);
                }
            }
            None => {
                if urgent {
                    self.urgent.push_back(key.clone());
                } else {
                    self.refresh.push_back(key.clone());
                }
                self.entries.insert(key, (status, urgent));
            }
        }
    }

    /// The next urgent entry; stale keys (written or promoted) are skipped.
    fn pop_urgent(&mut self) -> Option<(Key, Box<ScalingPolicyStatus>)> {
        while let Some(k) = self.urgent.pop_front() {
            if self.entries.get(&k).is_some_and(|e| e.1)
                && let Some((s, _)) = self.entries.remove(&k)
            {
                return Some((k, s));
            }
        }
        None
    }

    fn pop_refresh(&mut self) -> Option<(Key, Box<ScalingPolicyStatus>)> {
        while let Some(k) = self.refresh.pop_front() {
            if self.entries.get(&k).is_some_and(|e| !e.1)
                && let Some((s, _)) = self.entries.remove(&k)
            {
                return Some((k, s));
            }
        }
        None
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
    /// A queue and the task that writes it (spawn the future on the runtime).
    pub fn new(
        writer: Writer,
        refresh_per_second: f64,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let queue = Self {
            inner: Arc::new(Inner {
                pending: Mutex::new(Pending::default()),
                bucket: Mutex::new(Bucket::new(refresh_per_second)),
                wake: Notify::new(),
            }),
        };
        let task = queue.clone().drive(writer);
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

    /// Queue `status` for `key`, replacing any queued one.
    pub fn push(&self, key: Key, status: ScalingPolicyStatus, urgent: bool) {
        self.lock().push(key, status, urgent);
        self.inner.wake.notify_one();
    }

    /// Queued statuses (not yet sent).
    pub fn queued(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        let p = self.lock();
        p.entries.is_empty() && p.in_flight == 0
    }

    /// Drop everything queued (leadership lost: a follower must not write).
    pub fn clear(&self) {
        let mut p = self.lock();
        p.entries.clear();
        p.urgent.clear();
        p.refresh.clear();
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

    /// The next batch: urgent entries first, then refreshes.
    fn next_batch(&self) -> Vec<(Key, Box<ScalingPolicyStatus>)> {
        let mut p = self.lock();
        let mut batch = Vec::new();
        while batch.len() < STATUS_WRITES_IN_FLIGHT {
            match p.pop_urgent().or_else(|| p.pop_refresh()) {
                Some(e) => batch.push(e),
                None => break,
            }
        }
        p.in_flight += batch.len();
        if p.entries.is_empty() && p.entries.capacity() > 1024 {
            // Drained after a burst: give the slots back.
            p.entries.shrink_to_fit();
            p.urgent.shrink_to_fit();
            p.refresh.shrink_to_fit();
        }
        batch
    }

    async fn drive(self, writer: Writer) {
        loop {
            let batch = self.next_batch();
            if batch.is_empty() {
                self.inner.wake.notified().await;
                continue;
            }
            let n = batch.len();
            let results: Vec<(Key, Result<(), ActuateError>)> = futures::stream::iter(batch)
                .map(|(key, status)| {
                    let writer = writer.clone();
                    async move {
                        // A batch waits for its slowest write: bound it, so one hung request
                        // cannot hold the statuses behind it for the client's 295 s.
                        let r = tokio::time::timeout(
                            STATUS_WRITE_TIMEOUT,
                            writer.status(&key.0, &key.1, &status),
                        )
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
                    }
                })
                .buffer_unordered(STATUS_WRITES_IN_FLIGHT)
                .collect()
                .await;
            let mut p = self.lock();
            p.in_flight -= n;
            for (key, r) in results {
                match r {
                    Ok(()) => {}
                    // Expected when leadership is lost: not an error, but written again if
                    // this replica still (or again) leads at the next evaluation.
                    Err(ActuateError::NotLeader { .. }) => p.failed.push(key),
                    Err(e) => {
                        writer.metrics().error(e.label());
                        tracing::warn!(
                            error = %e,
                            "status not written; it is queued again at the policy's next evaluation"
                        );
                        p.failed.push(key);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(desired: i32) -> ScalingPolicyStatus {
        ScalingPolicyStatus {
            desired_replicas: Some(desired),
            ..Default::default()
        }
    }

    fn key(n: &str) -> Key {
        ("ns".into(), n.into())
    }

    /// Latest wins, urgent entries go first (a refresh promoted to urgent too), and no key is
    /// handed out twice.
    #[test]
    fn latest_wins_and_urgent_first() {
        let mut p = Pending::default();
        p.push(key("a"), st(1), false);
        p.push(key("b"), st(1), false);
        p.push(key("c"), st(1), true);
        p.push(key("a"), st(2), false);
        p.push(key("b"), st(3), true);
        assert_eq!(p.entries.len(), 3);
        let (k, s) = p.pop_urgent().expect("c");
        assert_eq!((k, s.desired_replicas), (key("c"), Some(1)));
        let (k, s) = p.pop_urgent().expect("b promoted");
        assert_eq!((k, s.desired_replicas), (key("b"), Some(3)));
        assert!(p.pop_urgent().is_none());
        let (k, s) = p.pop_refresh().expect("a");
        assert_eq!((k, s.desired_replicas), (key("a"), Some(2)));
        // b's old refresh slot is stale: skipped.
        assert!(p.pop_refresh().is_none());
        assert!(p.entries.is_empty());
    }

    /// A refresh queued after an urgent one for the same key keeps it urgent (the newer
    /// status replaces the older one; urgency is never lost before the write).
    #[test]
    fn urgency_is_kept_until_written() {
        let mut p = Pending::default();
        p.push(key("a"), st(1), true);
        p.push(key("a"), st(2), false);
        assert!(p.pop_refresh().is_none());
        let (_, s) = p.pop_urgent().expect("a");
        assert_eq!(s.desired_replicas, Some(2));
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
        queue.push(key("a"), st(1), true);
        queue.push(key("b"), st(1), false);
        assert!(queue.drain(Duration::from_secs(5)).await, "drained");
        let mut failed = queue.take_failed();
        failed.sort();
        assert_eq!(failed, vec![key("a"), key("b")]);
        assert!(queue.take_failed().is_empty(), "reported once");
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

//! A Lease-based election (coordination.k8s.io/v1), shared by both binaries: the agents elect
//! the one that exports the Kafka partitions no consumer owns (`--attribute-to-node`), and the
//! scaler's replicas elect the one that writes (`--leader-elect`).
//!
//! The holder renews every `duration / 3`; another candidate takes over only after the holder
//! failed to renew for `duration`. Every write is conditional on the Lease's resourceVersion,
//! so two candidates can never both believe they won: the loser gets 409 Conflict and stays a
//! follower. [`Leadership::is_leader`] turns false on its own once a renewal is overdue, even
//! if the API server is unreachable (no stale leadership), and [`Leadership::changed`] /
//! [`Leadership::wait_for`] wake on those expiries too, not only on the election's writes.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! use std::time::Duration;
//! use tidal_core::lease::Election;
//!
//! let election = Election {
//!     namespace: "tidal-system".into(),
//!     name: "tidal-scaler".into(),
//!     identity: "tidal-scaler-0".into(),
//!     duration: Duration::from_secs(6),
//!     purpose: "writing scale decisions",
//! };
//! let (leadership, _task) = election.spawn(client);
//! loop {
//!     leadership.wait_for(true).await; // elected
//!     // ... act, checking `leadership.is_leader()` before each write ...
//!     leadership.wait_for(false).await; // lost (or expired)
//! }
//! # }
//! ```

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;

/// Shared view of the election, cheap to clone (all clones see the same state).
#[derive(Clone, Debug)]
pub struct Leadership {
    leader: Arc<AtomicBool>,
    /// Unix milliseconds until which the last successful renewal is valid.
    valid_until_ms: Arc<AtomicI64>,
    /// Bumped on every update, so waiters re-check (the value is a generation counter).
    updates: Arc<watch::Sender<u64>>,
    /// Why the election cannot work at all (the Lease API is not served, or forbidden), said
    /// with the fix; `None` once an attempt succeeds.
    problem: Arc<Mutex<Option<String>>>,
}

/// Validity of [`Leadership::always`]: never expires.
const FOREVER_MS: i64 = i64::MAX;

impl Default for Leadership {
    /// A follower until an [`Election`] updates it.
    fn default() -> Self {
        Self::with(false, 0)
    }
}

impl Leadership {
    /// A follower until an [`Election`] updates it (same as `default()`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Always leader, never expires: for a single replica without election
    /// (`--leader-elect=false`). Run no [`Election`] on it.
    pub fn always() -> Self {
        Self::with(true, FOREVER_MS)
    }

    fn with(leader: bool, valid_until_ms: i64) -> Self {
        Self {
            leader: Arc::new(AtomicBool::new(leader)),
            valid_until_ms: Arc::new(AtomicI64::new(valid_until_ms)),
            updates: Arc::new(watch::Sender::new(0)),
            problem: Arc::new(Mutex::new(None)),
        }
    }

    /// Why the election cannot work (a 404 or 403 on the Lease, with the fix), if it cannot.
    /// Transient errors (timeouts, 5xx) are not problems: leadership just expires meanwhile.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }

    /// True while this candidate holds an unexpired lease.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
            && Timestamp::now().as_millisecond() < self.valid_until_ms.load(Ordering::Acquire)
    }

    /// Waits until [`is_leader`](Self::is_leader) equals `leader`; returns at once if it
    /// already does. Wakes on the election's updates and on the local expiry of the lease.
    /// Cancel-safe.
    pub async fn wait_for(&self, leader: bool) {
        let mut updates = self.updates.subscribe();
        loop {
            // Mark the current generation seen *before* reading the state, so an update
            // between the read and the wait below is not missed.
            updates.borrow_and_update();
            let now_leader = self.is_leader();
            if now_leader == leader {
                return;
            }
            let until = self.valid_until_ms.load(Ordering::Acquire);
            if now_leader && until != FOREVER_MS {
                // Leader, waiting to lose it: the lease may also just run out.
                let left = until
                    .saturating_sub(Timestamp::now().as_millisecond())
                    .max(0);
                let expiry = Duration::from_millis(left as u64 + 1);
                tokio::select! {
                    _ = updates.changed() => {}
                    () = tokio::time::sleep(expiry) => {}
                }
            } else if updates.changed().await.is_err() {
                // Unreachable: `self` holds the sender. Never return a wrong answer.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until leadership changes from its value at the call; returns the new value
    /// (`true`: elected, `false`: lost or expired). Cancel-safe.
    pub async fn changed(&self) -> bool {
        let was = self.is_leader();
        self.wait_for(!was).await;
        !was
    }

    fn set(&self, leader: bool, valid_until_ms: i64) {
        self.valid_until_ms.store(valid_until_ms, Ordering::Release);
        self.leader.store(leader, Ordering::Release);
        self.updates
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }
}

/// One election: who (`identity`) competes for which Lease, and for what.
#[derive(Clone, Debug)]
pub struct Election {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease (the same for every candidate).
    pub name: String,
    /// This candidate's identity, written as `holderIdentity` (unique per candidate).
    pub identity: String,
    /// A holder that has not renewed for this long is replaced; it renews every third of it.
    /// Stored in the Lease rounded up to whole seconds (at least one).
    pub duration: Duration,
    /// What the leader does, for the log: "elected: {purpose}".
    pub purpose: &'static str,
}

/// One attempt's outcome.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Leader,
    Follower,
}

impl Election {
    /// Spawns [`run`](Self::run) on the current tokio runtime; returns the leadership it
    /// updates and the task (aborting it stops renewing: leadership then expires by itself).
    pub fn spawn(self, client: kube::Client) -> (Leadership, tokio::task::JoinHandle<()>) {
        let leadership = Leadership::new();
        let task = tokio::spawn(self.run(client, leadership.clone()));
        (leadership, task)
    }

    /// Runs the election forever, updating `out` after every attempt.
    pub async fn run(self, client: kube::Client, out: Leadership) {
        let Election {
            namespace,
            name,
            identity,
            duration,
            purpose,
        } = self;
        let lease = format!("{namespace}/{name}");
        let api: Api<Lease> = Api::namespaced(client, &namespace);
        let mut last_error: Option<String> = None;
        let renew_every = duration / 3;
        let mut wait = renew_every;
        loop {
            let now = Timestamp::now();
            match attempt(&api, &name, &identity, duration, now).await {
                Ok(outcome) => {
                    if outcome == Outcome::Leader && !out.is_leader() {
                        tracing::info!(%lease, %identity, "elected: {purpose}");
                    } else if outcome == Outcome::Follower && out.is_leader() {
                        tracing::info!(%lease, %identity, "lost the lease: no longer {purpose}");
                    }
                    let until = now.as_millisecond() + duration.as_millis() as i64;
                    out.set(outcome == Outcome::Leader, until);
                    if last_error.take().is_some() {
                        tracing::info!(%lease, %identity, "lease election works again");
                    }
                    out.set_problem(None);
                    wait = renew_every;
                }
                Err(failed) => {
                    let msg = failed.explain(&namespace, &name);
                    if last_error.as_deref() != Some(msg.as_str()) {
                        tracing::warn!(%lease, %identity, "lease election failed ({purpose}): {msg}");
                        last_error = Some(msg.clone());
                    }
                    // Keep the old validity: leadership expires by itself if renewals keep
                    // failing (waiters wake on that expiry). An API that is missing or
                    // forbidden does not come back by itself: retry with back-off.
                    if failed.needs_action() {
                        out.set_problem(Some(msg));
                        wait = (wait * 2).clamp(renew_every, MAX_RETRY.max(renew_every));
                    } else {
                        wait = renew_every;
                    }
                }
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// The longest wait between attempts while the Lease API is missing or forbidden.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// A failed request of an attempt: which verb, and the error.
#[derive(Debug)]
struct Failed {
    verb: &'static str,
    error: kube::Error,
}

impl Failed {
    fn code(&self) -> u16 {
        match &self.error {
            kube::Error::Api(s) => s.code,
            _ => 0,
        }
    }

    /// 404 (the Lease API is not served) and 403 need someone to act.
    fn needs_action(&self) -> bool {
        matches!(self.code(), 403 | 404)
    }

    /// What went wrong, with the fix for a 404 or 403.
    fn explain(&self, namespace: &str, name: &str) -> String {
        let server_says = match &self.error {
            kube::Error::Api(s) if !s.message.is_empty() => s.message.trim().to_string(),
            e => e.to_string(),
        };
        match self.code() {
            404 => format!(
                "the Lease API (leases.coordination.k8s.io/v1) is not served (404 on {} of \
                 Lease {namespace}/{name}); leader election needs it",
                self.verb
            ),
            403 => format!(
                "forbidden (403): may not {} Lease {namespace}/{name}; grant get, create and \
                 update on leases in namespace {namespace} (the scaler's Role \
                 tidal-scaler-lease, the agent's tidal-agent-lease) (the API server says: \
                 {server_says})",
                self.verb
            ),
            _ => format!("{} Lease {namespace}/{name}: {server_says}", self.verb),
        }
    }
}

/// `leaseDurationSeconds`: rounded *up*, so other candidates never consider the lease expired
/// before this holder's local validity (`duration`) ends.
fn duration_seconds(duration: Duration) -> i32 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
}

fn spec(
    identity: &str,
    duration: Duration,
    now: Timestamp,
    acquire: Option<MicroTime>,
    transitions: i32,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(duration_seconds(duration)),
        acquire_time: acquire.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

/// Given the Lease as read, what `identity` should write to hold it now, or `None` when
/// another holder's lease is still valid. Pure: the time is an input.
fn claim(
    current: &LeaseSpec,
    identity: &str,
    duration: Duration,
    now: Timestamp,
) -> Option<LeaseSpec> {
    let holder = current.holder_identity.as_deref().unwrap_or_default();
    let expired = match (&current.renew_time, current.lease_duration_seconds) {
        (Some(MicroTime(t)), Some(d)) => {
            now.as_millisecond() > t.as_millisecond() + i64::from(d) * 1000
        }
        _ => true,
    };
    if holder != identity && !holder.is_empty() && !expired {
        return None;
    }
    let transitions = current.lease_transitions.unwrap_or(0);
    Some(if holder == identity {
        spec(
            identity,
            duration,
            now,
            current.acquire_time.clone(),
            transitions,
        )
    } else {
        spec(identity, duration, now, None, transitions + 1)
    })
}

async fn attempt(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    duration: Duration,
    now: Timestamp,
) -> Result<Outcome, Failed> {
    let failed = |verb| move |error| Failed { verb, error };
    let Some(mut lease) = api.get_opt(name).await.map_err(failed("get"))? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            spec: Some(spec(identity, duration, now, None, 0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Outcome::Leader),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Outcome::Follower),
            Err(e) => Err(failed("create")(e)),
        };
    };
    let Some(next) = claim(
        &lease.spec.clone().unwrap_or_default(),
        identity,
        duration,
        now,
    ) else {
        return Ok(Outcome::Follower);
    };
    lease.spec = Some(next);
    // replace() sends the resourceVersion we read: a concurrent writer makes this a 409.
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Outcome::Leader),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Outcome::Follower),
        Err(e) => Err(failed("update")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn held(by: &str, renewed_ms: i64, secs: i32, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.to_string()),
            lease_duration_seconds: Some(secs),
            acquire_time: Some(MicroTime(at(1_000))),
            renew_time: Some(MicroTime(at(renewed_ms))),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    const D: Duration = Duration::from_secs(3);

    #[test]
    fn another_holders_valid_lease_is_respected_until_it_expires() {
        let lease = held("a", 10_000, 3, 0);
        assert_eq!(claim(&lease, "b", D, at(12_999)), None);
        assert_eq!(claim(&lease, "b", D, at(13_000)), None, "expiry is strict");
        let taken = claim(&lease, "b", D, at(13_001)).expect("expired: b takes it");
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(1), "a transition is counted");
        assert_eq!(taken.acquire_time, Some(MicroTime(at(13_001))));
        assert_eq!(taken.renew_time, Some(MicroTime(at(13_001))));
        assert_eq!(taken.lease_duration_seconds, Some(3));
    }

    #[test]
    fn the_holder_renews_keeping_acquire_time_and_transitions() {
        let lease = held("a", 10_000, 3, 4);
        let renewed = claim(&lease, "a", D, at(11_000)).expect("own lease");
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(1_000))));
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(11_000))));
    }

    #[test]
    fn an_empty_or_incomplete_lease_is_free() {
        let free = claim(&LeaseSpec::default(), "b", D, at(5)).expect("free");
        assert_eq!(free.holder_identity.as_deref(), Some("b"));
        let released = LeaseSpec {
            holder_identity: Some(String::new()),
            ..held("", 10_000, 3, 2)
        };
        assert!(claim(&released, "b", D, at(10_001)).is_some(), "released");
        let no_renew = LeaseSpec {
            renew_time: None,
            ..held("a", 0, 3, 0)
        };
        assert!(claim(&no_renew, "b", D, at(1)).is_some(), "never renewed");
    }

    #[test]
    fn stored_duration_is_rounded_up_so_others_never_expire_it_early() {
        assert_eq!(duration_seconds(Duration::from_secs(15)), 15);
        assert_eq!(duration_seconds(Duration::from_millis(1_500)), 2);
        assert_eq!(duration_seconds(Duration::from_millis(200)), 1);
        assert_eq!(duration_seconds(Duration::ZERO), 1);
    }

    fn failed(verb: &'static str, code: u16, message: &str) -> Failed {
        let mut s = kube::core::Status::failure(message, "");
        s.code = code;
        Failed {
            verb,
            error: kube::Error::Api(Box::new(s)),
        }
    }

    #[test]
    fn a_missing_or_forbidden_lease_api_is_explained_with_the_fix() {
        let missing = failed("create", 404, "404 page not found");
        assert!(missing.needs_action());
        let m = missing.explain("tidal-system", "tidal-scaler");
        assert!(m.contains("leases.coordination.k8s.io/v1"), "{m}");
        assert!(m.contains("Lease tidal-system/tidal-scaler"), "{m}");
        let forbidden = failed("get", 403, "leases.coordination.k8s.io is forbidden");
        assert!(forbidden.needs_action());
        let m = forbidden.explain("tidal-system", "tidal-scaler");
        for part in [
            "forbidden (403)",
            "may not get",
            "tidal-scaler-lease",
            "is forbidden",
        ] {
            assert!(m.contains(part), "{part:?} missing in {m}");
        }
        let transient = failed("update", 500, "etcd timeout");
        assert!(!transient.needs_action());
        assert_eq!(
            transient.explain("ns", "l"),
            "update Lease ns/l: etcd timeout"
        );
    }

    #[test]
    fn default_is_follower_and_always_is_leader() {
        assert!(!Leadership::default().is_leader());
        assert!(!Leadership::new().is_leader());
        assert!(Leadership::always().is_leader());
    }

    #[test]
    fn leadership_expires_by_itself() {
        let l = Leadership::new();
        let now = Timestamp::now().as_millisecond();
        l.set(true, now + 60_000);
        assert!(l.is_leader());
        let clone = l.clone();
        l.set(true, now - 1);
        assert!(
            !clone.is_leader(),
            "clones share the state; validity is checked"
        );
        l.set(false, now + 60_000);
        assert!(!l.is_leader());
    }

    #[tokio::test]
    async fn waiters_wake_on_election_updates() {
        let l = Leadership::new();
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.changed().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "nothing changed yet");
        l.set(true, Timestamp::now().as_millisecond() + 60_000);
        let became = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the update")
            .expect("task");
        assert!(became);
        // Already in the wanted state: returns at once.
        tokio::time::timeout(Duration::from_millis(100), l.wait_for(true))
            .await
            .expect("already leader");
    }

    #[tokio::test]
    async fn waiters_wake_on_local_expiry_without_any_update() {
        let l = Leadership::new();
        l.set(true, Timestamp::now().as_millisecond() + 300);
        let started = std::time::Instant::now();
        let lost = tokio::time::timeout(Duration::from_secs(5), l.changed())
            .await
            .expect("expiry wakes the waiter");
        assert!(!lost);
        assert!(!l.is_leader());
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test]
    async fn always_never_loses() {
        let l = Leadership::always();
        tokio::time::timeout(Duration::from_millis(100), l.wait_for(true))
            .await
            .expect("leader at once");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), l.wait_for(false))
                .await
                .is_err(),
            "never loses"
        );
    }
}

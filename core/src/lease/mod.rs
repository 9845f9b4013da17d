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
//! **Clocks.** No decision compares two machines' clocks, and none uses the wall clock, as in
//! client-go's leaderelection:
//!
//! - the holder's own validity is monotonic: it leads until the start of its last successful
//!   renewal (taken *before* the request was sent) plus `duration`, on
//!   [`tokio::time::Instant`];
//! - a candidate judges another holder's lease by when *it* saw the holder's record
//!   (holderIdentity, renewTime, resourceVersion) change last, on its own monotonic clock,
//!   plus the lease's duration ([`expiry`]); `renewTime` is written for people and other
//!   tools but never compared with a local clock.
//!
//! So a clock step or seconds of skew between nodes cannot make two replicas lead at once:
//! the candidate sees the last renewal only after it was written, which is after the holder's
//! validity started counting, and the stored duration is rounded up.
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

mod expiry;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;

use expiry::{Observer, Verdict};

/// Shared view of the election, cheap to clone (all clones see the same state).
#[derive(Clone, Debug)]
pub struct Leadership {
    state: Arc<Mutex<Validity>>,
    /// Bumped on every update, so waiters re-check (the value is a generation counter).
    updates: Arc<watch::Sender<u64>>,
    /// Why the election cannot work at all (the Lease API is not served, or forbidden), said
    /// with the fix; `None` once an attempt succeeds.
    problem: Arc<Mutex<Option<String>>>,
}

/// Whether this candidate leads, and until when (monotonic).
#[derive(Clone, Copy, Debug)]
struct Validity {
    leader: bool,
    /// `None`: never expires ([`Leadership::always`]).
    until: Option<Instant>,
}

impl Validity {
    fn leads_at(&self, now: Instant) -> bool {
        self.leader && self.until.is_none_or(|until| now < until)
    }
}

impl Default for Leadership {
    /// A follower until an [`Election`] updates it.
    fn default() -> Self {
        Self::with(Validity {
            leader: false,
            until: Some(Instant::now()),
        })
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
        Self::with(Validity {
            leader: true,
            until: None,
        })
    }

    fn with(validity: Validity) -> Self {
        Self {
            state: Arc::new(Mutex::new(validity)),
            updates: Arc::new(watch::Sender::new(0)),
            problem: Arc::new(Mutex::new(None)),
        }
    }

    fn validity(&self) -> Validity {
        *lock(&self.state)
    }

    /// Why the election cannot work (a 404 or 403 on the Lease, with the fix), if it cannot.
    /// Transient errors (timeouts, 5xx) are not problems: leadership just expires meanwhile.
    pub fn problem(&self) -> Option<String> {
        lock(&self.problem).clone()
    }

    fn set_problem(&self, problem: Option<String>) {
        *lock(&self.problem) = problem;
    }

    /// True while this candidate holds an unexpired lease (on the monotonic clock).
    pub fn is_leader(&self) -> bool {
        self.validity().leads_at(Instant::now())
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
            let validity = self.validity();
            let now_leader = validity.leads_at(Instant::now());
            if now_leader == leader {
                return;
            }
            match validity.until {
                // Leader, waiting to lose it: the lease may also just run out.
                Some(until) if now_leader => {
                    tokio::select! {
                        _ = updates.changed() => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                }
                _ => {
                    if updates.changed().await.is_err() {
                        // Unreachable: `self` holds the sender. Never return a wrong answer.
                        std::future::pending::<()>().await;
                    }
                }
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

    /// Leader (or not) until `until` on the monotonic clock.
    fn set(&self, leader: bool, until: Instant) {
        *lock(&self.state) = Validity {
            leader,
            until: Some(until),
        };
        self.updates
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }
}

/// A poisoned lock is used as is: every writer leaves the value whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
    /// Another holder's lease is valid, until `held_until` unless it renews (`None`: lost a
    /// race for the Lease).
    Follower {
        held_until: Option<Instant>,
    },
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
        let mut observer = Observer::default();
        loop {
            // Taken before the request is sent: the lease counts from no later than the
            // moment the API server stored the renewal others see.
            let started = Instant::now();
            match attempt(&api, &name, &identity, duration, &mut observer).await {
                Ok(outcome) => {
                    let leader = matches!(outcome, Outcome::Leader);
                    if leader && !out.is_leader() {
                        tracing::info!(%lease, %identity, "elected: {purpose}");
                    } else if !leader && out.is_leader() {
                        tracing::info!(%lease, %identity, "lost the lease: no longer {purpose}");
                    }
                    out.set(leader, started + duration);
                    if last_error.take().is_some() {
                        tracing::info!(%lease, %identity, "lease election works again");
                    }
                    out.set_problem(None);
                    wait = renew_every;
                    if let Outcome::Follower {
                        held_until: Some(until),
                    } = outcome
                    {
                        // Try again right when the holder's lease would expire, not up to a
                        // renew period later.
                        let left = until.saturating_duration_since(Instant::now());
                        wait = wait.min(left + Duration::from_millis(1));
                    }
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

/// Given the Lease as read and this candidate's [`Verdict`] on it, what `identity` should
/// write to hold it now (`now` is only written, as renewTime/acquireTime), or `None` when
/// another holder's lease is still valid. Pure.
fn claim(
    current: &LeaseSpec,
    verdict: Verdict,
    identity: &str,
    duration: Duration,
    now: Timestamp,
) -> Option<LeaseSpec> {
    let transitions = current.lease_transitions.unwrap_or(0);
    match verdict {
        Verdict::Held { .. } => None,
        Verdict::Own => Some(spec(
            identity,
            duration,
            now,
            current.acquire_time.clone(),
            transitions,
        )),
        Verdict::Free | Verdict::Expired => {
            Some(spec(identity, duration, now, None, transitions + 1))
        }
    }
}

async fn attempt(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    duration: Duration,
    observer: &mut Observer,
) -> Result<Outcome, Failed> {
    let failed = |verb| move |error| Failed { verb, error };
    let lost = Outcome::Follower { held_until: None };
    let Some(mut lease) = api.get_opt(name).await.map_err(failed("get"))? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            spec: Some(spec(identity, duration, Timestamp::now(), None, 0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Outcome::Leader),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(lost),
            Err(e) => Err(failed("create")(e)),
        };
    };
    let current = lease.spec.clone().unwrap_or_default();
    // Observed when the answer arrived, on this candidate's monotonic clock.
    let verdict = observer.judge(
        &current,
        lease.metadata.resource_version.as_deref(),
        identity,
        duration,
        Instant::now(),
    );
    let Some(next) = claim(&current, verdict, identity, duration, Timestamp::now()) else {
        let held_until = match verdict {
            Verdict::Held { until } => Some(until),
            _ => None,
        };
        return Ok(Outcome::Follower { held_until });
    };
    lease.spec = Some(next);
    // replace() sends the resourceVersion we read: a concurrent writer makes this a 409.
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Outcome::Leader),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(lost),
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

    /// A lease held by another is left alone until this candidate judges it expired (on its
    /// own clock, see `expiry`); then it is taken with a transition counted.
    #[test]
    fn another_holders_valid_lease_is_respected_until_it_expires() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        let lease = held("a", 10_000, 3, 0);
        let v = o.judge(&lease, Some("1"), "b", D, t0);
        assert_eq!(claim(&lease, v, "b", D, at(99_000)), None);
        let v = o.judge(&lease, Some("1"), "b", D, t0 + D - Duration::from_millis(1));
        assert_eq!(claim(&lease, v, "b", D, at(99_000)), None, "not yet");
        let v = o.judge(&lease, Some("1"), "b", D, t0 + D);
        assert_eq!(v, Verdict::Expired);
        let taken = claim(&lease, v, "b", D, at(13_001)).expect("expired: b takes it");
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(1), "a transition is counted");
        assert_eq!(taken.acquire_time, Some(MicroTime(at(13_001))));
        assert_eq!(taken.renew_time, Some(MicroTime(at(13_001))));
        assert_eq!(taken.lease_duration_seconds, Some(3));
    }

    #[test]
    fn the_holder_renews_keeping_acquire_time_and_transitions() {
        let lease = held("a", 10_000, 3, 4);
        let mut o = Observer::default();
        let v = o.judge(&lease, Some("1"), "a", D, Instant::now());
        assert_eq!(v, Verdict::Own);
        let renewed = claim(&lease, v, "a", D, at(11_000)).expect("own lease");
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(1_000))));
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(11_000))));
    }

    #[test]
    fn an_empty_lease_is_free() {
        let mut o = Observer::default();
        let now = Instant::now();
        let v = o.judge(&LeaseSpec::default(), None, "b", D, now);
        let free = claim(&LeaseSpec::default(), v, "b", D, at(5)).expect("free");
        assert_eq!(free.holder_identity.as_deref(), Some("b"));
        let released = LeaseSpec {
            holder_identity: Some(String::new()),
            ..held("", 10_000, 3, 2)
        };
        let v = o.judge(&released, Some("2"), "b", D, now);
        let taken = claim(&released, v, "b", D, at(10_001)).expect("released");
        assert_eq!(taken.lease_transitions, Some(3));
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
        let now = Instant::now();
        l.set(true, now + Duration::from_secs(60));
        assert!(l.is_leader());
        let clone = l.clone();
        l.set(true, now);
        assert!(
            !clone.is_leader(),
            "clones share the state; validity is checked"
        );
        l.set(false, now + Duration::from_secs(60));
        assert!(!l.is_leader());
    }

    /// Local validity is a monotonic instant: leader until the last successful renewal's
    /// start plus the duration, exactly (checked at injected instants; no wall clock is read).
    #[test]
    fn validity_ends_at_renewal_start_plus_duration() {
        let renew_started = Instant::now();
        let v = Validity {
            leader: true,
            until: Some(renew_started + Duration::from_secs(6)),
        };
        assert!(v.leads_at(renew_started));
        assert!(v.leads_at(renew_started + Duration::from_millis(5_999)));
        assert!(!v.leads_at(renew_started + Duration::from_secs(6)));
        let follower = Validity {
            leader: false,
            until: Some(renew_started + Duration::from_secs(6)),
        };
        assert!(!follower.leads_at(renew_started));
        let always = Validity {
            leader: true,
            until: None,
        };
        assert!(always.leads_at(renew_started + Duration::from_secs(1 << 30)));
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
        l.set(true, Instant::now() + Duration::from_secs(60));
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
        l.set(true, Instant::now() + Duration::from_millis(300));
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

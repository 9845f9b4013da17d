//! A Lease-based election among agents (coordination.k8s.io/v1), used by the `kafka_lag`
//! sampler with `--attribute-to-node`: the elected agent also exports the partitions that no
//! consumer owns, so every partition is exported by exactly one agent.
//!
//! The holder renews every `duration / 3`; another agent takes over only after the holder
//! failed to renew for `duration`. Every write is conditional on the Lease's resourceVersion,
//! so two agents can never both believe they won: the loser gets 409 Conflict and stays a
//! follower. `is_leader()` turns false on its own once a renewal is overdue, even if the API
//! server is unreachable (no stale leadership).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

/// Shared view of the election, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Leadership {
    leader: Arc<AtomicBool>,
    /// Unix milliseconds until which the last successful renewal is valid.
    valid_until_ms: Arc<AtomicI64>,
}

impl Leadership {
    /// True while this agent holds an unexpired lease.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
            && Timestamp::now().as_millisecond() < self.valid_until_ms.load(Ordering::Acquire)
    }

    fn set(&self, leader: bool, valid_until_ms: i64) {
        self.valid_until_ms.store(valid_until_ms, Ordering::Release);
        self.leader.store(leader, Ordering::Release);
    }
}

/// One attempt's outcome.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Leader,
    Follower,
}

/// Runs the election forever for `name` in `namespace`, as `identity`.
pub async fn run(
    client: kube::Client,
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
    out: Leadership,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let mut last_error: Option<String> = None;
    loop {
        let now = Timestamp::now();
        match attempt(&api, &name, &identity, duration, now).await {
            Ok(outcome) => {
                if outcome == Outcome::Leader && !out.is_leader() {
                    tracing::info!(lease = %format!("{namespace}/{name}"), %identity, "elected: exporting unowned Kafka partitions");
                } else if outcome == Outcome::Follower && out.is_leader() {
                    tracing::info!(lease = %format!("{namespace}/{name}"), %identity, "lost the lease");
                }
                let until = now.as_millisecond() + duration.as_millis() as i64;
                out.set(outcome == Outcome::Leader, until);
                last_error = None;
            }
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(lease = %format!("{namespace}/{name}"), error = %msg, "lease election failed");
                    last_error = Some(msg);
                }
                // Keep the old validity: leadership expires by itself if renewals keep failing.
            }
        }
        tokio::time::sleep(duration / 3).await;
    }
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
        lease_duration_seconds: Some(duration.as_secs().max(1) as i32),
        acquire_time: acquire.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

async fn attempt(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    duration: Duration,
    now: Timestamp,
) -> Result<Outcome, kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
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
            Err(e) => Err(e),
        };
    };
    let current = lease.spec.clone().unwrap_or_default();
    let holder = current.holder_identity.clone().unwrap_or_default();
    let expired = match (&current.renew_time, current.lease_duration_seconds) {
        (Some(MicroTime(t)), Some(d)) => {
            now.as_millisecond() > t.as_millisecond() + i64::from(d) * 1000
        }
        _ => true,
    };
    if holder != identity && !holder.is_empty() && !expired {
        return Ok(Outcome::Follower);
    }
    let (acquire, transitions) = if holder == identity {
        (
            current.acquire_time.clone(),
            current.lease_transitions.unwrap_or(0),
        )
    } else {
        (None, current.lease_transitions.unwrap_or(0) + 1)
    };
    lease.spec = Some(spec(identity, duration, now, acquire, transitions));
    // replace() sends the resourceVersion we read: a concurrent writer makes this a 409.
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Outcome::Leader),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Outcome::Follower),
        Err(e) => Err(e),
    }
}

//! tidal-core's Lease election against the real API server of the local stack: two
//! candidates on one Lease, exactly one leader, and after the leader stops renewing the other
//! takes over within lease duration + renew period, never before the old lease expired, and
//! never with both leader at the same sampled instant (sampled every 100 ms throughout); the
//! new leader then keeps the lease alone.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tidal_core::lease::{Election, Leadership};
use tidal_e2e::{Stack, in_namespace, wait_for};

type R = anyhow::Result<()>;

const LEASE: &str = "tidal-e2e-election";
const DURATION: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(1); // DURATION / 3, the renew (and retry) period
/// Room for the API round trips of the follower's attempt (get + replace) on a busy machine,
/// and for its view of the last renewal, which it counts from when it saw it.
const SLACK: Duration = Duration::from_millis(2_000);

/// Samples both leaderships every 100 ms until `stop` fires; returns (time, a, b) samples.
async fn sample(
    a: Leadership,
    b: Leadership,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Vec<(Instant, bool, bool)> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => samples.push((Instant::now(), a.is_leader(), b.is_leader())),
            _ = &mut stop => return samples,
        }
    }
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

fn millis(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>) -> i64 {
    t.as_ref().map_or(0, |t| t.0.as_millisecond())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_then_failover_within_duration_plus_renew_never_two() -> R {
    let stack = Stack::load()?;
    let admin = stack.admin_client().await?;
    let client = admin.clone();
    in_namespace(&admin, "lease", |ns| async move {
        let election = |identity: &str| Election {
            namespace: ns.clone(),
            name: LEASE.to_string(),
            identity: identity.to_string(),
            duration: DURATION,
            purpose: "testing the election",
        };
        let (a, a_task) = election("a").spawn(client.clone());
        let (b, b_task) = election("b").spawn(client.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let sampler = tokio::spawn(sample(a.clone(), b.clone(), stopped));

        let result = async {
            // Exactly one wins the first round.
            wait_for("a leader", Duration::from_secs(10), || async {
                (a.is_leader() || b.is_leader()).then_some(())
            })
            .await?;
            // It keeps the lease by renewing: exactly one leader for two lease durations.
            let until = Instant::now() + 2 * DURATION;
            while Instant::now() < until {
                anyhow::ensure!(
                    a.is_leader() ^ b.is_leader(),
                    "exactly one leader while the holder renews (a={}, b={})",
                    a.is_leader(),
                    b.is_leader()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let (leader, leader_task, follower, follower_id) = if a.is_leader() {
                (&a, &a_task, &b, "b")
            } else {
                (&b, &b_task, &a, "a")
            };
            let leader_id = if follower_id == "a" { "b" } else { "a" };
            let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
            let before = leases.get(LEASE).await?;
            anyhow::ensure!(holder(&before) == Some(leader_id), "the Lease names the leader: {before:?}");

            // The leader stops (its task is aborted: no more renewals, no release).
            leader_task.abort();
            let stopped_at = Instant::now();
            // Its last renewal, as stored (an aborted in-flight renewal could only be later).
            let last_renew =
                millis(&leases.get(LEASE).await?.spec.and_then(|s| s.renew_time));
            tokio::time::timeout(DURATION + RENEW + SLACK, follower.wait_for(true))
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "{follower_id} did not take over within {:?} of the leader stopping",
                        DURATION + RENEW + SLACK
                    )
                })?;
            let took = stopped_at.elapsed();
            eprintln!("{follower_id} took over {took:?} after {leader_id} stopped");
            // The stopped leader's view expired by itself (no task updates it any more).
            anyhow::ensure!(!leader.is_leader(), "a stopped leader's lease expires locally");

            let after = leases.get(LEASE).await?;
            anyhow::ensure!(holder(&after) == Some(follower_id), "the Lease names the new leader: {after:?}");
            let spec = after.spec.clone().unwrap_or_default();
            anyhow::ensure!(spec.lease_duration_seconds == Some(3), "{spec:?}");
            anyhow::ensure!(spec.lease_transitions.unwrap_or(0) >= 1, "{spec:?}");
            let acquired = millis(&spec.acquire_time);
            anyhow::ensure!(
                acquired > last_renew + DURATION.as_millis() as i64,
                "taken over only after the old lease expired: acquired at {acquired}, last renewal at {last_renew}"
            );
            // The new leader keeps it (renewing alone) for another lease duration.
            let until = Instant::now() + DURATION;
            while Instant::now() < until {
                anyhow::ensure!(
                    follower.is_leader() && !leader.is_leader(),
                    "{follower_id} stays the only leader"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok(())
        }
        .await;

        let _ = stop.send(());
        let samples = sampler.await?;
        a_task.abort();
        b_task.abort();
        result?;
        let both: Vec<_> = samples.iter().filter(|(_, a, b)| *a && *b).collect();
        anyhow::ensure!(
            both.is_empty(),
            "both leader at {} of {} samples",
            both.len(),
            samples.len()
        );
        // The samples cover the test (the 100 ms sampler was not starved).
        anyhow::ensure!(samples.len() >= 60, "only {} samples", samples.len());
        // And the handover is visible in them: some sample saw each as the leader.
        anyhow::ensure!(
            samples.iter().any(|s| s.1) && samples.iter().any(|s| s.2),
            "the handover shows in the samples"
        );
        Ok(())
    })
    .await
}

//! A policy's vertical history in the controller: restored (from its ScalingPolicyCheckpoint,
//! its status, or afresh), fed each cycle's usage and OOM kills, and checkpointed to the
//! ScalingPolicyCheckpoint at most once per interval.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::observe::Gathered;
use super::requests::{self, AfterCheckpoint};
use super::{PolicyState, time_of, vertical};
use crate::actuators::Writer;
use crate::actuators::checkpoint::CheckpointWrite;
use crate::api::ScalingPolicy;
use crate::api::ScalingPolicyCheckpoint;
use crate::api::checkpoint::{self, Restore};
use crate::engine::vertical::{ModelConfig, VerticalCheckpoint, VerticalError, VerticalState};
use crate::metrics::Metrics;
use crate::readiness::CRD_INSTALL;

/// A policy's ScalingPolicyCheckpoint as read before its vertical history is restored.
#[derive(Debug, Default)]
pub(super) struct Stored {
    /// The object, if one exists in a format this version reads.
    pub object: Option<ScalingPolicyCheckpoint>,
    /// Whether one exists (also one this version cannot read, which is then replaced).
    pub exists: bool,
}

/// A fixed share in `[0, 1)` of the checkpoint interval for a policy, to spread the
/// checkpoint writes of policies restored in the same cycle.
pub(super) fn spread_share(namespace: &str, name: &str) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    (namespace, name).hash(&mut h);
    (h.finish() % 1000) as f64 / 1000.0
}

/// Restores `st`'s vertical history (there is none in memory) from `p`'s stored object, its
/// status, or afresh, with the checkpoint's bookkeeping (`interval` is the checkpoint
/// interval). An unreadable checkpoint starts afresh.
pub(super) fn restore(
    st: &mut PolicyState,
    p: &ScalingPolicy,
    stored: &Stored,
    interval: Duration,
    now: f64,
) -> Result<(), VerticalError> {
    let ns = p.namespace().unwrap_or_default();
    let (restored, from_object) = match checkpoint::restore_from(p, stored.object.as_ref()) {
        Restore::Object(c) => (Some(c), true),
        Restore::Status(c) => (Some(c), false),
        Restore::Fresh => (None, false),
    };
    let restored = restored.map(|c| VerticalState::from_checkpoint(ModelConfig::default(), c));
    // Restored from its own object: nothing new to write until a spread share of the
    // interval (policies restored together, at a takeover, do not all write in the
    // same cycle after). From the status (an older version's place, or newer than the
    // object) or afresh: the object is written at once.
    st.checkpoint_written_at = if from_object {
        let spread = interval.mul_f64(spread_share(&ns, &p.name_any()));
        Some(
            Instant::now()
                .checked_sub(spread)
                .unwrap_or_else(Instant::now),
        )
    } else {
        None
    };
    st.checkpoint_stored = stored.exists;
    st.checkpoint_in_status = !from_object && restored.is_some();
    st.oom_seen.clear();
    st.oom_floor = restored.as_ref().is_some_and(Result::is_ok).then_some(now);
    st.vertical = Some(match restored {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "vertical checkpoint unreadable: starting afresh");
            VerticalState::new(ModelConfig::default())?
        }
        None => VerticalState::new(ModelConfig::default())?,
    });
    Ok(())
}

/// Feeds `state` this cycle's usage of `pods` and every OOM kill not recorded yet (`oom_seen`
/// and `oom_floor` as [`vertical::new_oom_kills`] reads them).
pub(super) fn learn(
    metrics: &Metrics,
    state: &mut VerticalState,
    oom_seen: &mut HashMap<(String, String), f64>,
    oom_floor: Option<f64>,
    p: &ScalingPolicy,
    pods: &[&Arc<Pod>],
    gathered: &Gathered,
) {
    let ns = p.namespace().unwrap_or_default();
    if let Some(Ok(usage)) = &gathered.usage {
        for e in vertical::observe(state, &ns, pods, usage) {
            metrics.error(e.label());
            tracing::debug!(error = %e, "vertical sample rejected");
        }
    }
    // Every OOM kill once (the VPA's OOM observer): a memory peak of
    // max(used + 100Mi, used * 1.2), `used` the larger of the request and the usage peak.
    let kills = vertical::oom_kills(pods);
    for k in vertical::new_oom_kills(oom_seen, oom_floor, kills) {
        match state.record_oom(&k.pod, &k.container, k.memory_request_bytes, k.at) {
            Ok(outcome) => tracing::info!(
                policy = %format!("{ns}/{}", p.name_any()),
                pod = %k.pod,
                container = %k.container,
                request_bytes = k.memory_request_bytes,
                ?outcome,
                "OOM kill recorded"
            ),
            Err(e) => {
                metrics.error(e.label());
                tracing::warn!(error = %e, "OOM kill not recorded");
            }
        }
    }
}

/// Writes `checkpoint` to `p`'s ScalingPolicyCheckpoint when the last write (or attempt) is
/// `interval` old or there was none, and records where the histograms live after it (see
/// [`after_write`]).
pub(super) async fn write_when_due(
    writer: &Writer,
    interval: Duration,
    st: &mut PolicyState,
    p: &ScalingPolicy,
    checkpoint: &VerticalCheckpoint,
    now: f64,
) {
    if st
        .checkpoint_written_at
        .is_some_and(|t| t.elapsed() < interval)
    {
        return;
    }
    let ns = p.namespace().unwrap_or_default();
    let metrics = writer.metrics();
    let attempted_before = st.checkpoint_written_at.replace(Instant::now());
    let stamp = time_of(now).0.to_string();
    let how = if st.checkpoint_stored {
        CheckpointWrite::Replace
    } else {
        CheckpointWrite::Create
    };
    let written = writer.checkpoint(p, checkpoint, stamp, how).await;
    let after = requests::after_checkpoint(how, &written);
    match after {
        AfterCheckpoint::Stored => {}
        AfterCheckpoint::Reread => {
            tracing::warn!(
                policy = %format!("{ns}/{}", p.name_any()),
                "a ScalingPolicyCheckpoint appeared since it was read: restoring again"
            );
            metrics.error("conflict");
        }
        AfterCheckpoint::InStatus | AfterCheckpoint::NotLeader => {
            if let Err(e) = &written {
                metrics.error(e.label());
                tracing::warn!(
                    policy = %format!("{ns}/{}", p.name_any()),
                    error = %e,
                    "vertical checkpoint not written: kept in the policy's status meanwhile \
                     (is the ScalingPolicyCheckpoint CRD of {CRD_INSTALL} installed?)"
                );
            }
        }
    }
    after_write(st, after, attempted_before);
}

/// Where the histograms live after a checkpoint write whose result was `after`; a write that
/// does not restart the interval puts back when the last one was (`attempted_before`).
fn after_write(st: &mut PolicyState, after: AfterCheckpoint, attempted_before: Option<Instant>) {
    if !after.restarts_interval() {
        st.checkpoint_written_at = attempted_before;
    }
    match after {
        AfterCheckpoint::Stored => {
            st.checkpoint_in_status = false;
            st.checkpoint_stored = true;
        }
        AfterCheckpoint::Reread => {
            // One exists that the read did not see: read it again next cycle rather
            // than replace it (the status keeps this cycle's copy meanwhile).
            st.checkpoint_in_status = true;
            st.vertical = None;
        }
        after @ (AfterCheckpoint::InStatus | AfterCheckpoint::NotLeader) => {
            st.checkpoint_in_status = after == AfterCheckpoint::InStatus;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SpecError;
    use crate::api::checkpoint::fixtures::{self, object};

    const INTERVAL: Duration = Duration::from_secs(60);

    /// Empty histograms of this build's version.
    fn readable() -> VerticalCheckpoint {
        VerticalState::new(ModelConfig::default())
            .expect("state")
            .checkpoint()
    }

    /// Histograms of a version this build does not read.
    fn unreadable() -> VerticalCheckpoint {
        let mut v = readable();
        v.version += 1;
        v
    }

    /// The policy's own stored object.
    fn stored(v: VerticalCheckpoint) -> Stored {
        Stored {
            object: Some(object("u1", v)),
            exists: true,
        }
    }

    /// Policy `shop/web` (uid `u1`), with `in_status` as its status's histograms.
    fn policy(in_status: Option<VerticalCheckpoint>) -> ScalingPolicy {
        fixtures::policy("u1", in_status)
    }

    /// A state as a cycle first creates it, with an OOM seen (which a restore forgets).
    fn state(p: &ScalingPolicy) -> PolicyState {
        let compiled = Err(SpecError::Invalid {
            field: "spec".into(),
            problem: "not compiled in this test".into(),
        });
        let mut st = PolicyState::new(p, compiled, Instant::now());
        st.oom_seen.insert(("pod-uid".into(), "app".into()), 1.0);
        st
    }

    /// Where the history comes from sets the checkpoint's bookkeeping: from its own object,
    /// the next write waits a spread share of the interval; from the status, the histograms
    /// stay there until the object is written, at once; afresh, nothing is in the status. A
    /// restored history (and only a readable one) sets the OOM floor.
    #[test]
    fn a_restore_sets_the_checkpoints_bookkeeping_by_where_the_history_was() {
        let now = 1_000.0;
        // From the policy's own object.
        let p = policy(None);
        let mut st = state(&p);
        let before = Instant::now();
        restore(&mut st, &p, &stored(readable()), INTERVAL, now).expect("restored");
        let at = st.checkpoint_written_at.expect("not written at once");
        let spread = INTERVAL.mul_f64(spread_share("shop", "web"));
        // (With an uptime shorter than the spread, the wait is the whole interval.)
        if let Some(earliest) = before.checked_sub(spread) {
            assert!(
                at >= earliest && at <= earliest + Duration::from_secs(1),
                "{spread:?}"
            );
        }
        assert!(st.checkpoint_stored && !st.checkpoint_in_status);
        assert!(st.vertical.is_some() && st.oom_seen.is_empty());
        assert_eq!(st.oom_floor, Some(now));

        // From the status (no object): written at once, kept in the status meanwhile.
        let p = policy(Some(readable()));
        let mut st = state(&p);
        restore(&mut st, &p, &Stored::default(), INTERVAL, now).expect("restored");
        assert_eq!(st.checkpoint_written_at, None);
        assert!(!st.checkpoint_stored && st.checkpoint_in_status);
        assert!(st.vertical.is_some() && st.oom_seen.is_empty());
        assert_eq!(st.oom_floor, Some(now));

        // Afresh, though an object exists that this version cannot read: it is replaced.
        let p = policy(None);
        let mut st = state(&p);
        let foreign_format = Stored {
            object: None,
            exists: true,
        };
        restore(&mut st, &p, &foreign_format, INTERVAL, now).expect("fresh");
        assert_eq!(st.checkpoint_written_at, None);
        assert!(st.checkpoint_stored && !st.checkpoint_in_status);
        assert!(st.vertical.is_some() && st.oom_seen.is_empty());
        assert_eq!(st.oom_floor, None);

        // Unreadable histograms in the status: afresh, with no OOM floor.
        let p = policy(Some(unreadable()));
        let mut st = state(&p);
        restore(&mut st, &p, &Stored::default(), INTERVAL, now).expect("fresh");
        assert_eq!(st.checkpoint_written_at, None);
        assert!(st.checkpoint_in_status);
        assert!(st.vertical.is_some());
        assert_eq!(st.oom_floor, None);
    }

    /// After each write result: where the histograms live, whether the history is read again,
    /// and whether the interval restarts (all but a lost Lease).
    #[test]
    fn a_checkpoint_write_result_says_where_the_histograms_live() {
        let p = policy(None);
        let earlier = Instant::now().checked_sub(Duration::from_secs(90));
        let attempted = Instant::now();
        // (result, in the status, stored, history kept, interval restarted)
        let cases = [
            (AfterCheckpoint::Stored, false, true, true, true),
            (AfterCheckpoint::Reread, true, false, false, true),
            (AfterCheckpoint::InStatus, true, false, true, true),
            (AfterCheckpoint::NotLeader, false, false, true, false),
        ];
        for (after, in_status, stored, kept, restarted) in cases {
            let mut st = state(&p);
            restore(&mut st, &p, &Stored::default(), INTERVAL, 0.0).expect("fresh");
            st.checkpoint_written_at = Some(attempted);
            after_write(&mut st, after, earlier);
            assert_eq!(st.checkpoint_in_status, in_status, "{after:?}");
            assert_eq!(st.checkpoint_stored, stored, "{after:?}");
            assert_eq!(st.vertical.is_some(), kept, "{after:?}");
            let want = if restarted { Some(attempted) } else { earlier };
            assert_eq!(st.checkpoint_written_at, want, "{after:?}");
        }
    }
}

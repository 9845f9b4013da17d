//! When a policy's status is queued: at once when it scaled the target or changed
//! significantly, otherwise as a refresh (see [`super::status_queue`]).

use std::time::{Duration, Instant};

use super::status_queue::{self, Priority, StatusQueue};
use crate::api::ScalingPolicyStatus;

/// Queues `status` (the policy's last queued status and when it was queued are `written`
/// and `written_at`) and returns the priority it was queued with, or `None` when it was not
/// (an insignificant change before the refresh period, or no refresh budget left).
///
/// A status of a cycle that `scaled` the target is always queued, as [`Priority::Scale`]:
/// its checkpoint holds the scale event and the stabilization recommendations a new leader
/// continues from, so it does not wait for the refresh period or budget, nor behind other
/// writes.
pub(super) fn enqueue(
    statuses: &StatusQueue,
    written: &mut Option<Box<ScalingPolicyStatus>>,
    written_at: &mut Option<Instant>,
    key: status_queue::Key,
    status: ScalingPolicyStatus,
    scaled: bool,
    refresh: Duration,
) -> Option<Priority> {
    let (changed, stale) = match (written.as_deref(), *written_at) {
        (Some(w), Some(at)) => (
            significant(w) != significant(&status),
            at.elapsed() >= refresh,
        ),
        _ => (true, true),
    };
    let priority = if scaled {
        Priority::Scale
    } else if changed {
        Priority::Change
    } else if stale && statuses.try_refresh() {
        Priority::Refresh
    } else {
        return None;
    };
    *written = Some(Box::new(status.clone()));
    *written_at = Some(Instant::now());
    statuses.push(key, status, priority);
    Some(priority)
}

/// The significant part of a status: a change here is written at once.
pub(super) fn significant(s: &ScalingPolicyStatus) -> impl PartialEq + use<> {
    (
        s.observed_generation,
        s.current_replicas,
        s.desired_replicas,
        s.last_scale_time.clone(),
        s.conditions
            .iter()
            .map(|c| (c.kind, c.status, c.reason.clone(), c.message.clone()))
            .collect::<Vec<_>>(),
        s.last_decision.as_ref().map(|d| d.dominant_metric.clone()),
        s.current_metrics
            .iter()
            .map(|m| (m.name.clone(), m.error.clone(), m.proposed_replicas))
            .collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::Checkpoint;
    use crate::controller::history::rec;
    use crate::engine::types::{self as engine, NextState};

    fn checkpointed(events: usize, recommendations: usize) -> ScalingPolicyStatus {
        let next = NextState {
            recommendations: (0..recommendations)
                .map(|i| rec(3 + i as i32, i as f64))
                .collect(),
            scale_events: (0..events)
                .map(|i| engine::ScaleEvent {
                    replica_change: 1,
                    at_unix_seconds: 100.0 + i as f64,
                })
                .collect(),
            last_active_unix_seconds: None,
        };
        ScalingPolicyStatus {
            desired_replicas: Some(4),
            checkpoint: Some(Checkpoint::from_engine(&next)),
            ..Default::default()
        }
    }

    /// The controller/queue seam: a cycle that scaled queues its status (with the checkpoint
    /// holding the new scale event) as a scale, though nothing significant changed, the last
    /// status was queued just now and the refresh budget is spent; and the queue's task
    /// starts that write at once, even with every ordinary slot taken by writes that hang.
    #[tokio::test]
    async fn a_scale_writes_its_checkpoint_at_once() {
        use std::sync::Mutex;
        let started = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Notify::new());
        let (write, count) = status_queue::fake_writer(started.clone(), release.clone());
        let (queue, task) = StatusQueue::with_write(write, count, 1.0);
        let task = tokio::spawn(task);
        while queue.try_refresh() {} // no refresh budget left
        let refresh = Duration::from_secs(15);
        let key: status_queue::Key = ("shop".into(), "web".into());
        let mut written = Some(Box::new(checkpointed(0, 2)));
        let mut written_at = Some(Instant::now());
        // Without a scale, the same significant fields before the refresh period: not queued.
        assert_eq!(
            enqueue(
                &queue,
                &mut written,
                &mut written_at,
                key.clone(),
                checkpointed(0, 3),
                false,
                refresh
            ),
            None
        );
        // Fill every ordinary slot with writes that do not answer.
        for i in 0..status_queue::STATUS_WRITES_IN_FLIGHT {
            queue.push(
                ("other".into(), format!("p{i}")),
                checkpointed(0, 1),
                Priority::Change,
            );
        }
        // The scale: its checkpoint has the event and the newest recommendations.
        let scaled = checkpointed(1, 3);
        assert_eq!(
            enqueue(
                &queue,
                &mut written,
                &mut written_at,
                key.clone(),
                scaled.clone(),
                true,
                refresh
            ),
            Some(Priority::Scale)
        );
        let seen = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                let hit = started
                    .lock()
                    .expect("lock")
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, s)| s.clone());
                if let Some(s) = hit {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the scale's checkpoint is written at once");
        let checkpoint = seen.checkpoint.expect("checkpoint").to_engine();
        assert_eq!(checkpoint.scale_events.len(), 1, "the scale event");
        assert_eq!(checkpoint.recommendations.len(), 3, "the newest history");
        assert_eq!(written.as_deref(), Some(&scaled), "recorded as queued");
        release.notify_waiters();
        task.abort();
    }
}

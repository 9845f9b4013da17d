//! The vertical writes of one cycle as values, like [`super::plan`] for the horizontal ones:
//!
//! - [`super::vertical::request_writes`] (pure) lists a round's request changes;
//! - [`apply_requests`] writes them and their Events through [`Actuate`];
//! - [`after_checkpoint`] (pure) says where the histograms live after a
//!   ScalingPolicyCheckpoint write, from its result.

use kube::{Resource, ResourceExt};

use super::plan::Actuate;
use super::vertical::RequestWrite;
use crate::actuators::ActuateError;
use crate::actuators::checkpoint::CheckpointWrite;
use crate::api::ScalingPolicy;

/// A vertical write (`InPlace` resize, `Template` patch) that failed: the condition's reason
/// and message (the [`ActuateError`], which names the object, the verb and, for a 403, the
/// overlay that grants the right).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct VerticalWriteFailure {
    pub reason: &'static str,
    pub message: String,
}

/// What [`apply_requests`] did.
#[derive(Debug, Default)]
pub(super) struct RequestsApplied {
    /// Some write changed requests.
    pub applied: bool,
    /// The round's failure: the template's, or the first refused pod's (which speaks for the
    /// others: same verb, same cause, usually).
    pub failed: Option<VerticalWriteFailure>,
    /// Every failed write, to count.
    pub write_errors: Vec<ActuateError>,
    /// Every Event that could not be recorded (counted and logged, never fatal).
    pub event_errors: Vec<ActuateError>,
}

/// Writes a round's request changes in order, each followed by its Event on the policy
/// (`UpdatedTemplateRequests`/`ResizedInPlace`, or the warning
/// `FailedUpdateRequests`/`FailedResize`). A write refused because this replica is no longer
/// the leader ends the round quietly: counted, not a failure, no Event.
pub(super) async fn apply_requests(
    writes: &[RequestWrite],
    namespace: &str,
    policy: &ScalingPolicy,
    actuate: &impl Actuate,
) -> RequestsApplied {
    let mut out = RequestsApplied::default();
    let regarding = policy.object_ref(&());
    for w in writes {
        let (result, ok_reason, failed_reason, note, what) = match w {
            RequestWrite::Template {
                kind,
                name,
                changes,
                note,
            } => (
                actuate
                    .patch_template(*kind, namespace, name, changes)
                    .await,
                "UpdatedTemplateRequests",
                "FailedUpdateRequests",
                note,
                None,
            ),
            RequestWrite::Resize { pod, changes, note } => (
                actuate.resize_pod(namespace, pod, changes).await,
                "ResizedInPlace",
                "FailedResize",
                note,
                Some(pod),
            ),
        };
        if let Err(e @ ActuateError::NotLeader { .. }) = result {
            // The Lease lapsed: nothing more is written this round (no Event either), and it
            // is no failure of the policy, as for a scale write.
            out.write_errors.push(e);
            break;
        }
        let (warning, reason, message) = match result {
            Ok(()) => {
                out.applied = true;
                let policy = format!("{namespace}/{}", policy.name_any());
                match what {
                    Some(_) => tracing::info!(%policy, %note, "resized in place"),
                    None => tracing::info!(%policy, %note, "template requests changed"),
                }
                (false, ok_reason, note.clone())
            }
            Err(e) => {
                let message = match what {
                    Some(pod) => format!("{pod}: {e}"),
                    None => e.to_string(),
                };
                out.failed.get_or_insert(VerticalWriteFailure {
                    reason: failed_reason,
                    message: message.clone(),
                });
                out.write_errors.push(e);
                (true, failed_reason, message)
            }
        };
        if let Err(e) = actuate
            .event(&regarding, warning, reason, "Scale", message)
            .await
        {
            out.event_errors.push(e);
        }
    }
    out
}

/// Where a policy's histograms live after a ScalingPolicyCheckpoint write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterCheckpoint {
    /// Written: the object holds them; later writes replace it.
    Stored,
    /// A create found an object the read did not see: restore from it next cycle rather than
    /// replace it; the status keeps this cycle's copy meanwhile.
    Reread,
    /// Not written (no CRD, no right, API server unreachable): kept in the policy's status.
    InStatus,
    /// Not the leader any more: nothing is written, the status copy included.
    NotLeader,
}

impl AfterCheckpoint {
    /// Whether the write attempt restarts the checkpoint interval. A write refused because the
    /// Lease lapsed does not: a replica that leads again writes its checkpoint on its next
    /// cycle, not a whole interval later. Every other result does (a missing CRD is not retried
    /// every cycle).
    pub(super) fn restarts_interval(self) -> bool {
        self != Self::NotLeader
    }
}

/// See [`AfterCheckpoint`]. Pure.
pub(super) fn after_checkpoint(
    how: CheckpointWrite,
    result: &Result<(), ActuateError>,
) -> AfterCheckpoint {
    match result {
        Ok(()) => AfterCheckpoint::Stored,
        Err(ActuateError::Conflict { .. }) if how == CheckpointWrite::Create => {
            AfterCheckpoint::Reread
        }
        Err(ActuateError::NotLeader { .. }) => AfterCheckpoint::NotLeader,
        Err(_) => AfterCheckpoint::InStatus,
    }
}

#[cfg(test)]
#[path = "requests_tests.rs"]
mod tests;

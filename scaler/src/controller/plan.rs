//! One policy's horizontal evaluation as values, so that every branch is a unit test without
//! a cluster (`plan_tests.rs`):
//!
//! 1. [`plan`] (pure): the policy's facts and its gate → the engine's decision, the status it
//!    makes, the history to keep, and the one scale write the gate allows ([`ScaleIntent`]).
//! 2. [`apply`]: that write and its Event, through [`Actuate`] (the [`Writer`] in production,
//!    a recording fake in the tests).
//! 3. [`settle`] (pure): the write's result → the final status (conditions, checkpoint), the
//!    history, the outcome and the warning to emit.
//!
//! The controller's `evaluate` is the thin shell around them: it reads the caches, calls these
//! three in order, counts metrics and logs, and queues the status.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;

use super::gate::{self, Gate};
use super::{Compiled, Facts, compact, decide, superseded};
use crate::actuators::events::rescale_note;
use crate::actuators::replicas::{ObservedScale, ScaleOutcome, ScaleTarget};
use crate::actuators::resources::{ContainerRequests, TemplateKind};
use crate::actuators::{ActuateError, Writer};
use crate::api::{Checkpoint, ScalingPolicy, ScalingPolicyStatus};
use crate::engine::types::{self as engine, NextState, ScaleEvent};
use crate::metrics::{MetricLabels, Metrics, Outcome, PolicyLabels, ScaleLabels};

/// The writes an evaluation makes: the [`Writer`] in production (fenced by the Lease), a
/// recording fake in the tests.
pub(super) trait Actuate {
    /// Set the target's replicas (the scale subresource, conditional on `observed`).
    async fn scale(
        &self,
        target: &ScaleTarget,
        observed: &ObservedScale,
        to: i32,
    ) -> Result<ScaleOutcome, ActuateError>;

    /// Publish an Event about `regarding`.
    async fn event(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), ActuateError>;

    /// Resize one running pod in place (`pods/<name>/resize`).
    async fn resize_pod(
        &self,
        namespace: &str,
        pod: &str,
        changes: &[ContainerRequests],
    ) -> Result<(), ActuateError>;

    /// Patch the requests of a workload's pod template.
    async fn patch_template(
        &self,
        kind: TemplateKind,
        namespace: &str,
        name: &str,
        changes: &[ContainerRequests],
    ) -> Result<(), ActuateError>;
}

impl Actuate for Writer {
    async fn scale(
        &self,
        target: &ScaleTarget,
        observed: &ObservedScale,
        to: i32,
    ) -> Result<ScaleOutcome, ActuateError> {
        Writer::scale(self, target, observed, to).await
    }

    async fn event(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), ActuateError> {
        Writer::event(self, regarding, warning, reason, action, note).await
    }

    async fn resize_pod(
        &self,
        namespace: &str,
        pod: &str,
        changes: &[ContainerRequests],
    ) -> Result<(), ActuateError> {
        Writer::resize_pod(self, namespace, pod, changes).await
    }

    async fn patch_template(
        &self,
        kind: TemplateKind,
        namespace: &str,
        name: &str,
        changes: &[ContainerRequests],
    ) -> Result<(), ActuateError> {
        Writer::patch_template(self, kind, namespace, name, changes).await
    }
}

/// The scale write the gate allows this cycle.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ScaleIntent {
    /// The target's `spec.replicas` as the decision read it.
    pub from: i32,
    pub to: i32,
    /// Why, for the `SuccessfulRescale` Event and the log: the decision's reason, or the
    /// pause's.
    pub reason: String,
}

/// What [`plan`] reads.
pub(super) struct PlanInput<'a> {
    pub policy: &'a ScalingPolicy,
    pub compiled: &'a Compiled,
    pub gate: &'a Gate,
    pub facts: Facts<'a>,
    /// The status this cycle's starts from (see `base_status`).
    pub old: &'a ScalingPolicyStatus,
    pub sample_window_seconds: f64,
    pub now: f64,
}

/// What [`plan`] decided, before any write.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub decision: engine::Decision,
    /// The status with the decision (and the gate's hold) recorded.
    pub status: ScalingPolicyStatus,
    /// The engine's history after this decision.
    pub next: NextState,
    /// The history's scale events before it, kept when the decision's write does not happen.
    pub prior_scale_events: Vec<ScaleEvent>,
    pub scale: Option<ScaleIntent>,
    /// The outcome if nothing is written (`NotApplied` when the gate held a rescale).
    pub outcome: Outcome,
    /// The warning Event to emit (a conflicting autoscaler).
    pub warning: Option<(&'static str, String)>,
}

/// The decision and what the gate lets this cycle write. Pure: `now` is given.
pub(super) fn plan(input: &PlanInput<'_>) -> Planned {
    let PlanInput {
        policy: p,
        compiled,
        gate,
        facts,
        old,
        sample_window_seconds,
        now,
    } = input;
    let (state, mut d) = decide(&p.spec, compiled, facts, *sample_window_seconds, *now);
    // A gate that holds on purpose says so in ScalingActive (and so in Ready), set with the
    // engine's conditions so their transition times compare with the last status.
    let mut warning = None;
    if let Some((reason, message)) = gate.holding(&p.spec.target_ref) {
        if matches!(gate, Gate::Conflict(_)) {
            warning = Some((reason, message.clone()));
        }
        d.conditions
            .retain(|c| c.kind != engine::ConditionType::ScalingActive);
        d.conditions.push(engine::Condition {
            kind: engine::ConditionType::ScalingActive,
            status: false,
            reason: reason.into(),
            message,
        });
        d.conditions.sort_by_key(|c| c.kind);
    }
    let mut status = (*old).clone();
    status.record_decision(&d, &compiled.spec, &super::time_of(*now));
    status.observed_generation = p.metadata.generation;
    let mut next = d.next.clone();
    let scale = match gate {
        g if g.writes() => d.rescale.then(|| ScaleIntent {
            from: facts.spec_replicas,
            to: d.desired_replicas,
            reason: d.rescale_reason.clone().unwrap_or_default(),
        }),
        Gate::Paused { replicas: Some(n) } => (facts.spec_replicas != *n).then(|| ScaleIntent {
            from: facts.spec_replicas,
            to: *n,
            reason: format!("paused at {n} replicas ({})", gate::PAUSED_REPLICAS),
        }),
        _ => None,
    };
    let held = d.rescale && !gate.writes();
    if held {
        // Not the decision's write: the engine's history must not count it.
        next.scale_events = state.scale_events.clone();
        if let Some(ld) = status.last_decision.as_mut() {
            ld.reasons.push(format!(
                "{}: would scale {} -> {} (not applied)",
                gate.label(),
                d.current_replicas,
                d.desired_replicas
            ));
        }
    }
    Planned {
        decision: d,
        status,
        next,
        prior_scale_events: state.scale_events,
        scale,
        outcome: if held {
            Outcome::NotApplied
        } else {
            Outcome::Unchanged
        },
        warning,
    }
}

/// What [`apply`] did: the scale write's result, and the `SuccessfulRescale` Event's failure
/// (counted and logged, never fatal).
#[derive(Debug)]
pub(super) struct Applied {
    pub scale: Result<ScaleOutcome, ActuateError>,
    pub event: Option<ActuateError>,
}

/// Writes the intent and, when it changed the target, the `SuccessfulRescale` Event.
pub(super) async fn apply(
    intent: &ScaleIntent,
    target: &ScaleTarget,
    observed: &ObservedScale,
    policy: &ScalingPolicy,
    actuate: &impl Actuate,
) -> Applied {
    let scale = actuate.scale(target, observed, intent.to).await;
    let mut event = None;
    if matches!(scale, Ok(ScaleOutcome::Applied { .. })) {
        event = actuate
            .event(
                &policy.object_ref(&()),
                false,
                "SuccessfulRescale",
                // The recorder aggregates Events by action and reason, keeping the first
                // note: one action per size keeps each note true.
                &format!("ScaleTo{}", intent.to),
                rescale_note(intent.to, &intent.reason),
            )
            .await
            .err();
    }
    Applied { scale, event }
}

/// The evaluation's end state.
#[derive(Debug, Clone)]
pub(super) struct Settled {
    pub decision: engine::Decision,
    /// The status to queue (the checkpoint is the compacted history's).
    pub status: ScalingPolicyStatus,
    /// The compacted history to remember.
    pub next: NextState,
    pub outcome: Outcome,
    pub warning: Option<(&'static str, String)>,
    /// The target was scaled: the status (with its checkpoint) is queued with priority.
    pub scaled: bool,
    /// The write failed (not superseded, not a lost Lease): a failure of the cycle.
    pub failed: bool,
    /// Someone else scaled the target: decide again at the next tick.
    pub decide_again: bool,
}

/// Folds the write's result (`None`: nothing was to be written) into the planned status and
/// history. Pure.
pub(super) fn settle(
    planned: Planned,
    written: Option<&Result<ScaleOutcome, ActuateError>>,
    gate: &Gate,
    policy: &ScalingPolicy,
    old: &ScalingPolicyStatus,
    now: &Time,
) -> Settled {
    let Planned {
        decision: d,
        mut status,
        mut next,
        prior_scale_events,
        scale,
        mut outcome,
        mut warning,
    } = planned;
    let (mut scaled, mut failed, mut decide_again) = (false, false, false);
    let from = scale.as_ref().map_or(d.current_replicas, |s| s.from);
    match (written, &scale) {
        (Some(Ok(ScaleOutcome::Applied { .. })), Some(intent)) => {
            scaled = true;
            status.last_scale_time = Some(now.clone());
            outcome = if intent.to > intent.from {
                Outcome::ScaledUp
            } else {
                Outcome::ScaledDown
            };
        }
        (Some(Ok(_)), _) => outcome = Outcome::Unchanged,
        (Some(Err(e @ ActuateError::Superseded { .. })), _) => {
            // Someone else scaled the target since the decision read it: hold this cycle (no
            // scale event, no lastScaleTime, no warning) and decide again at the next tick
            // from the new count.
            outcome = Outcome::NotApplied;
            next.scale_events = prior_scale_events;
            superseded(&mut status, from, e);
            decide_again = true;
        }
        (Some(Err(ActuateError::NotLeader { .. })), _) => {
            // The Lease lapsed before (or between) the attempts: nothing was written, and a
            // follower neither warns nor claims anything.
            outcome = Outcome::NotApplied;
            next.scale_events = prior_scale_events;
        }
        (Some(Err(e)), _) => {
            failed = true;
            outcome = Outcome::Failed;
            next.scale_events = prior_scale_events;
            warning = Some(("FailedRescale", e.to_string()));
            let mut conds = d.conditions.clone();
            for c in &mut conds {
                if c.kind == engine::ConditionType::AbleToScale {
                    c.status = false;
                    c.reason = "FailedUpdateScale".into();
                    c.message = format!("the scaler was unable to update the target scale: {e}");
                }
            }
            status.conditions = old.conditions.clone();
            status.set_conditions(&conds, now);
        }
        (None, _) => {}
    }
    if let Gate::TakenOver(other) = gate
        && let Some(ld) = status.last_decision.as_mut()
    {
        ld.reasons.push(format!(
            "took over {other} ({}: {})",
            gate::TAKE_OVER,
            other.key()
        ));
    }
    if let Some(note) = policy
        .spec
        .vertical
        .as_ref()
        .and_then(|v| v.mode.deprecation())
        && let Some(ld) = status.last_decision.as_mut()
    {
        ld.reasons.push(note.to_string());
    }
    let next = compact(&next);
    status.checkpoint = Some(Checkpoint::from_engine(&next));
    Settled {
        decision: d,
        status,
        next,
        outcome,
        warning,
        scaled,
        failed,
        decide_again,
    }
}

/// The per-policy metric families an evaluation sets: the errors of its metrics (one count
/// per reason, however many metrics failed with it), its outcome, the current and desired
/// counts, and each metric's value and target.
pub(super) fn publish(
    metrics: &Metrics,
    labels: &PolicyLabels,
    settled: &Settled,
    spec: &engine::Spec,
) {
    let (ns, name) = (&labels.namespace, &labels.policy);
    let d = &settled.decision;
    let failed_metrics: BTreeSet<&str> = d
        .proposals
        .iter()
        .filter_map(|p| p.invalid_reason.as_deref())
        .collect();
    for reason in failed_metrics {
        metrics.policy_error(ns, name, reason);
    }
    metrics.decision(ns, name, settled.outcome);
    if let Some(direction) = match settled.outcome {
        Outcome::ScaledUp => Some("up"),
        Outcome::ScaledDown => Some("down"),
        _ => None,
    } {
        metrics
            .scale_events
            .get_or_create(&ScaleLabels {
                namespace: ns.clone(),
                policy: name.clone(),
                direction,
            })
            .inc();
    }
    if settled.failed {
        metrics.policy_error(ns, name, "FailedRescale");
    }
    metrics
        .current_replicas
        .get_or_create(labels)
        .set(i64::from(d.current_replicas));
    metrics
        .desired_replicas
        .get_or_create(labels)
        .set(i64::from(d.desired_replicas));
    for (prop, m) in d.proposals.iter().zip(&spec.metrics) {
        let ml = MetricLabels {
            namespace: ns.clone(),
            policy: name.clone(),
            metric: prop.metric.clone(),
        };
        let (value, target) = metric_value_and_target(prop, m);
        match value {
            Some(v) => {
                metrics.metric_value.get_or_create(&ml).set(v);
            }
            None => {
                metrics.metric_value.remove(&ml);
            }
        }
        if let Some(t) = target {
            metrics.metric_target.get_or_create(&ml).set(t);
        }
    }
}

/// The value and target of a proposal in one unit: utilization as a ratio of the request
/// (0.8 for 80%), everything else in base units.
fn metric_value_and_target(
    p: &engine::Proposal,
    m: &engine::MetricSpec,
) -> (Option<f64>, Option<f64>) {
    let cur = p.current.as_ref();
    match m.target.kind {
        engine::TargetType::Utilization => (
            cur.and_then(|c| c.average_utilization)
                .map(|u| f64::from(u) / 100.0),
            m.target.average_utilization.map(|u| f64::from(u) / 100.0),
        ),
        engine::TargetType::AverageValue => (
            cur.and_then(|c| c.average_value.or(c.value)),
            m.target
                .average_value
                .or_else(|| m.kafka_lag.as_ref().map(|k| k.lag_per_replica)),
        ),
        engine::TargetType::Value => (cur.and_then(|c| c.value), m.target.value),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

//! One ScalingPolicy's horizontal rounds without a cluster, through the controller's own
//! [`plan`] and [`settle`]: the same compilation, gate (dry run, pause, paused replicas), status,
//! checkpoint and compacted history as a cycle, with every write the gate allows taken as
//! applied. The caller plays the cluster: it gives the pods, the replica count and what the
//! sources gathered, and applies the returned count to its workload.
//!
//! `tidal-sim simulate` runs Tidal through it (issue #13), so a replay exercises what a cycle
//! runs, not a copy of it. A policy's annotations are read as the controller reads them; there
//! is no other autoscaler offline, so the gate is never a conflict or a take-over.

use std::sync::Arc;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::gate::{self, Gate};
use super::observe::Gathered;
use super::plan::{PlanInput, plan, settle};
use super::{Compiled, Facts, compile, time_of};
use crate::actuators::replicas::ScaleOutcome;
use crate::api::{Checkpoint, ScalingPolicy, ScalingPolicyStatus, SpecError};
use crate::engine::types::{self as engine, NextState};
use crate::metrics::Outcome;

/// Why a policy cannot be run offline; the message names the field or annotation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OfflineError {
    /// The spec breaks a rule of the CRD, or its formula does not compile.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A `tidal.dev/...` annotation has a value the controller rejects.
    #[error("{0}")]
    Annotation(String),
}

/// One round's result.
#[derive(Debug, Clone)]
pub struct OfflineRound {
    /// The engine's decision, with the gate's hold in its conditions.
    pub decision: engine::Decision,
    /// The replica count written this round: the decision's, or the paused count.
    pub scaled_to: Option<i32>,
    /// The decision wanted another count and the gate held it (dry run, paused).
    pub held: bool,
}

/// A policy and what the controller remembers of it between rounds. A clone starts its
/// rounds from the same point: compile once, replay many times.
#[derive(Clone)]
pub struct OfflinePolicy {
    policy: ScalingPolicy,
    compiled: Compiled,
    gate: Gate,
    namespace: String,
    status: ScalingPolicyStatus,
    history: Option<NextState>,
    sample_window_seconds: f64,
}

impl std::fmt::Debug for OfflinePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflinePolicy")
            .field("policy", &self.policy.name_any())
            .field("namespace", &self.namespace)
            .field("gate", &self.gate)
            .field("spec", &self.compiled.spec)
            .finish_non_exhaustive()
    }
}

impl OfflinePolicy {
    /// Compiles `policy` with the controller's `settings`; its status (and checkpoint), when
    /// it has one, is where the rounds start. `sample_window_seconds` is the window the
    /// usage samples cover (`--sample-window-seconds`, 1 s on the fast path).
    pub fn new(
        policy: ScalingPolicy,
        settings: &engine::ControllerSettings,
        sample_window_seconds: f64,
    ) -> Result<Self, OfflineError> {
        let compiled = compile(&policy, settings)?;
        let gate = gate::gate_among(
            &policy,
            std::iter::empty::<&HorizontalPodAutoscaler>(),
            std::iter::empty::<&ScalingPolicy>(),
        );
        if let Gate::Invalid(message) = gate {
            return Err(OfflineError::Annotation(message));
        }
        let status = super::base_status(None, &policy);
        let history = status.checkpoint.as_ref().map(Checkpoint::to_engine);
        Ok(Self {
            namespace: policy.namespace().unwrap_or_default(),
            policy,
            compiled,
            gate,
            status,
            history,
            sample_window_seconds,
        })
    }

    /// One evaluation at `now` (Unix seconds) of the target at `replicas` (its scale's spec
    /// and status) with `pods` and what the sources `gathered`.
    pub fn round(
        &mut self,
        pods: &[Arc<Pod>],
        replicas: i32,
        gathered: &Gathered,
        now: f64,
    ) -> OfflineRound {
        let pods: Vec<&Arc<Pod>> = pods.iter().collect();
        let planned = plan(&PlanInput {
            policy: &self.policy,
            compiled: &self.compiled,
            gate: &self.gate,
            facts: Facts {
                namespace: &self.namespace,
                pods: &pods,
                spec_replicas: replicas,
                status_replicas: Some(replicas),
                history: self.history.as_ref(),
                gathered,
            },
            old: &self.status,
            sample_window_seconds: self.sample_window_seconds,
            now,
        });
        let held = planned.outcome == Outcome::NotApplied;
        let scaled_to = planned.scale.as_ref().map(|intent| intent.to);
        let written = scaled_to.map(|_| Ok(ScaleOutcome::Applied { attempts: 1 }));
        let settled = settle(
            planned,
            written.as_ref(),
            &self.gate,
            &self.policy,
            &self.status,
            &time_of(now),
        );
        self.status = settled.status;
        self.history = Some(settled.next);
        OfflineRound {
            decision: settled.decision,
            scaled_to,
            held,
        }
    }

    /// The status a cycle would write after the last round (conditions, last decision,
    /// checkpoint of the compacted history).
    pub fn status(&self) -> &ScalingPolicyStatus {
        &self.status
    }

    /// The engine spec the policy compiled to (with the settings it was made with).
    pub fn spec(&self) -> &engine::Spec {
        &self.compiled.spec
    }

    /// `spec.formula`, compiled, when the policy has one.
    pub fn formula(&self) -> Option<&crate::engine::Formula> {
        self.compiled.formula.as_ref()
    }

    /// The policy's namespace (empty when it has none): where its pods and usage are keyed.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The gate's name for logs and reports (`write`, `dryRun`, `paused`).
    pub fn gate(&self) -> &'static str {
        self.gate.label()
    }
}

#[cfg(test)]
#[path = "offline_tests.rs"]
mod tests;

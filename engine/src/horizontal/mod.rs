//! One horizontal decision: `desired(&Spec, &State, &[Observation], now) -> Decision`.
//!
//! Ported from kubernetes/kubernetes `pkg/controller/podautoscaler/horizontal.go`
//! (`reconcileAutoscaler`, `computeReplicasForMetrics`, `computeReplicasForMetric`,
//! `normalizeDesiredReplicas`, `normalizeDesiredReplicasWithBehaviors`, `tolerancesForHpa`).
//! Each metric proposes a count; the highest wins. If every metric is invalid, or some are and
//! the proposal would scale down, nothing changes: Tidal never scales down on missing metrics.
//!
//! Tidal additions: `kafka_lag` metrics ([`super::lag`]), `spec.formula` replacing the highest
//! proposal ([`super::formula`], [`desired_with_formula`] for a cached compile), and stale
//! observations, which may scale up but never down.
//!
//! **Layout.** `validate.rs`: the input checks ([`InputError`], [`validate()`]); `propose.rs`:
//! one metric's proposal (`computeReplicasForMetric`, the `kafka_lag` aggregation);
//! `decision.rs`: every metric's proposal, `spec.formula`, the invalid-metric rule and
//! normalization (stabilization and rate policies); `tests.rs`: the decision tests. This file
//! holds the entry points.

mod decision;
mod propose;
mod validate;

use crate::formula::Formula;
use crate::types::{Decision, Input, Observation, Spec, State, Tolerances};

use decision::compute_decision;

pub use propose::INVALID_METRIC;
pub use validate::{InputError, validate};

/// Validate, then decide.
#[tracing::instrument(level = "debug", skip_all, fields(spec_replicas = input.state.spec_replicas))]
pub fn decide(input: &Input) -> Result<Decision, InputError> {
    validate(input)
        .inspect_err(|e| tracing::debug!(error = %e, label = e.label(), "invalid input"))?;
    let d = desired(
        &input.spec,
        &input.state,
        &input.observations,
        input.now_unix_seconds,
    );
    tracing::debug!(
        desired = d.desired_replicas,
        rescale = d.rescale,
        chosen = d.chosen_metric.as_deref().unwrap_or(""),
        "decided"
    );
    Ok(d)
}

/// `tolerancesForHpa`: the controller tolerance, overridden per direction by the behavior.
pub fn tolerances(spec: &Spec) -> Tolerances {
    let mut t = Tolerances::symmetric(spec.controller.tolerance);
    if let Some(b) = &spec.behavior {
        if let Some(v) = b.scale_down.as_ref().and_then(|r| r.tolerance) {
            t.scale_down = v;
        }
        if let Some(v) = b.scale_up.as_ref().and_then(|r| r.tolerance) {
            t.scale_up = v;
        }
    }
    t
}

/// Decide the replica count for one target at time `now` (Unix seconds). Pure: the same input
/// always gives the same decision. Compiles `spec.formula` on every call; a controller keeps a
/// [`Formula`] per policy generation and calls [`desired_with_formula`] instead.
pub fn desired(spec: &Spec, state: &State, observations: &[Observation], now: f64) -> Decision {
    match spec.formula.as_deref() {
        None => compute_decision(spec, Ok(None), state, observations, now),
        Some(src) => {
            let names: Vec<&str> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
            match Formula::compile(src, &names) {
                Ok(f) => compute_decision(spec, Ok(Some(&f)), state, observations, now),
                Err(e) => compute_decision(spec, Err(e), state, observations, now),
            }
        }
    }
}

/// [`desired`] with `spec.formula` already compiled (`formula` must come from
/// `spec.formula` and the names of `spec.metrics`, in order; `None` ignores `spec.formula`).
pub fn desired_with_formula(
    spec: &Spec,
    formula: Option<&Formula>,
    state: &State,
    observations: &[Observation],
    now: f64,
) -> Decision {
    compute_decision(spec, Ok(formula), state, observations, now)
}

#[cfg(test)]
mod tests;

//! One decision over all metrics: the proposals, `spec.formula`, the invalid-metric rule and
//! normalization (`computeReplicasForMetrics`, `normalizeDesiredReplicas*`).

use crate::behavior::{self, reason};
use crate::formula::{Formula, FormulaError, Inputs, MetricValues};
use crate::replica_calc::Readiness;
use crate::types::{
    Condition, ConditionType, Decision, Limit, LimitStage, MetricSource, MetricSpec, MetricTarget,
    NextState, Observation, Recommendation, ScaleEvent, Spec, State, TargetType,
};

use super::propose::{Ctx, ProposalDetail, propose};
use super::tolerances;

fn default_metric() -> MetricSpec {
    MetricSpec {
        name: "cpu".into(),
        source: MetricSource::Resource,
        container: None,
        target: MetricTarget {
            kind: TargetType::Utilization,
            average_utilization: Some(80),
            average_value: None,
            value: None,
        },
        kafka_lag: None,
    }
}

/// A metric's display name, as in upstream's `ValidMetricFound` message.
fn metric_label(m: &MetricSpec) -> String {
    match (m.source, m.target.kind) {
        (MetricSource::Resource, TargetType::Utilization) => {
            format!("{} resource utilization (percentage of request)", m.name)
        }
        (MetricSource::Resource, _) => format!("{} resource", m.name),
        (MetricSource::ContainerResource, TargetType::Utilization) => {
            format!(
                "{} container resource utilization (percentage of request)",
                m.name
            )
        }
        (MetricSource::ContainerResource, _) => format!("{} container resource", m.name),
        (MetricSource::Pods, _) => format!("pods metric {}", m.name),
        (MetricSource::Object, _) => format!("object metric {}", m.name),
        (MetricSource::External, _) => format!("external metric {}", m.name),
        (MetricSource::KafkaLag, _) => format!("kafka lag metric {}", m.name),
    }
}

fn condition(
    kind: ConditionType,
    status: bool,
    reason: &str,
    message: impl Into<String>,
) -> Condition {
    Condition {
        kind,
        status,
        reason: reason.to_owned(),
        message: message.into(),
    }
}

/// Round a formula result up to a replica count. A result within 1e-9 (relative) of an
/// integer is that integer, so float noise does not add a replica (`1.1 * 10` is
/// `11.000000000000002`, which gives 11, not 12).
fn ceil_replicas(v: f64) -> i32 {
    let r = v.round();
    let v = if (v - r).abs() <= 1e-9 * r.abs().max(1.0) {
        r
    } else {
        v
    };
    let c = v.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        c.max(0.0) as i32
    }
}

/// The decision for one target: every metric's proposal, `spec.formula` (`formula` is it
/// compiled, `Ok(None)` without one), the invalid-metric rule and normalization.
pub(super) fn compute_decision(
    spec: &Spec,
    formula: Result<Option<&Formula>, FormulaError>,
    state: &State,
    observations: &[Observation],
    now: f64,
) -> Decision {
    let current = state.spec_replicas;
    let min = spec.min_replicas;
    let max = spec.max_replicas;
    let tol = tolerances(spec);
    let mut d = Decision {
        current_replicas: current,
        desired_replicas: current,
        rescale: false,
        rescale_reason: None,
        tolerances: tol,
        proposals: Vec::new(),
        chosen_metric: None,
        metric_replicas: None,
        limits: Vec::new(),
        conditions: Vec::new(),
        next: NextState {
            // `recordInitialRecommendation`: a target seen for the first time starts with its
            // current replica count.
            recommendations: state.recommendations.clone().unwrap_or_else(|| {
                vec![Recommendation {
                    replicas: current,
                    at_unix_seconds: now,
                }]
            }),
            scale_events: state.scale_events.clone(),
            last_active_unix_seconds: state.last_active_unix_seconds,
        },
    };

    if current == 0 && min != 0 {
        d.desired_replicas = 0;
        d.conditions.push(condition(
            ConditionType::ScalingActive,
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        ));
        return d;
    }

    let desired = if current > max {
        d.rescale_reason = Some("Current number of replicas above Spec.MaxReplicas".into());
        d.limits.push(Limit {
            stage: LimitStage::Bounds,
            from: current,
            to: max,
            reason: reason::TOO_MANY_REPLICAS.into(),
        });
        max
    } else if current < min {
        d.rescale_reason = Some("Current number of replicas below Spec.MinReplicas".into());
        d.limits.push(Limit {
            stage: LimitStage::Bounds,
            from: current,
            to: min,
            reason: reason::TOO_FEW_REPLICAS.into(),
        });
        min
    } else if let Err(e) = &formula {
        // Nothing is applied: no recommendation is recorded and the count stays.
        d.conditions.push(condition(
            ConditionType::ScalingActive,
            false,
            "InvalidFormula",
            e.to_string(),
        ));
        return d;
    } else {
        let formula = formula.ok().flatten();
        let default_metrics;
        let metrics: &[MetricSpec] = if spec.metrics.is_empty() {
            default_metrics = [default_metric()];
            &default_metrics
        } else {
            &spec.metrics
        };
        let ctx = Ctx {
            current,
            status: state.status_replicas.unwrap_or(current),
            tol,
            state,
            last_active: state.last_active_unix_seconds,
            readiness: Readiness {
                cpu_initialization_period_seconds: spec
                    .controller
                    .cpu_initialization_period_seconds,
                initial_readiness_delay_seconds: spec.controller.initial_readiness_delay_seconds,
                now_unix_seconds: now,
            },
            now,
        };
        let mut replicas = 0i32;
        let mut chosen: Option<usize> = None;
        let mut invalid = 0usize;
        let mut first_invalid: Option<usize> = None;
        let mut extras: Vec<ProposalDetail> = Vec::with_capacity(metrics.len());
        let mut stale = false;
        for (i, m) in metrics.iter().enumerate() {
            let obs: Vec<&Observation> =
                observations.iter().filter(|o| o.metric == m.name).collect();
            let mut extra = ProposalDetail::default();
            let p = propose(m, &obs, &ctx, &mut extra);
            if p.replicas.is_some() {
                stale |= p.stale;
                if extra.active {
                    d.next.last_active_unix_seconds = Some(now);
                }
            } else {
                extra.vars = None;
            }
            extras.push(extra);
            match p.replicas {
                Some(r) => {
                    if replicas == 0 || r > replicas {
                        replicas = r;
                        chosen = Some(i);
                    }
                }
                None => {
                    invalid += 1;
                    first_invalid.get_or_insert(i);
                }
            }
            d.proposals.push(p);
        }
        let mut chosen_label = chosen
            .map(|i| metric_label(&metrics[i]))
            .unwrap_or_default();
        let mut bypass_rate = chosen.is_some_and(|i| extras[i].bypass_rate);
        let mut formula_applied = false;
        // `spec.formula` replaces the highest proposal when every metric it reads is valid;
        // otherwise the highest proposal stands and the invalid-metric rule below forbids a
        // scale-down.
        if let Some(f) = formula
            && f.referenced_metrics()
                .iter()
                .all(|i| extras.get(*i).is_some_and(|e| e.vars.is_some()))
            && invalid < metrics.len()
        {
            let vars: Vec<Option<MetricValues>> = extras.iter().map(|e| e.vars).collect();
            let inputs = Inputs {
                metrics: &vars,
                replicas: f64::from(current),
                ready_replicas: state.pods.iter().filter(|p| p.is_consuming()).count() as f64,
                partitions: extras
                    .iter()
                    .filter_map(|e| e.partitions)
                    .max()
                    .map(|p| p as f64),
            };
            match f.eval(&inputs) {
                Ok(v) => {
                    let r = ceil_replicas(v);
                    if r != replicas {
                        d.limits.push(Limit {
                            stage: LimitStage::Formula,
                            from: replicas,
                            to: r,
                            reason: "Formula".into(),
                        });
                    }
                    replicas = r;
                    chosen = None;
                    bypass_rate = false;
                    formula_applied = true;
                    chosen_label = "spec.formula".into();
                }
                Err(e) => {
                    d.conditions.push(condition(
                        ConditionType::ScalingActive,
                        false,
                        "InvalidFormula",
                        e.to_string(),
                    ));
                    return d;
                }
            }
        }
        if stale && replicas < current && invalid < metrics.len() {
            d.limits.push(Limit {
                stage: LimitStage::StaleMetrics,
                from: replicas,
                to: current,
                reason: "StaleMetric".into(),
            });
            replicas = current;
        }
        if invalid >= metrics.len() || (invalid > 0 && replicas < current) {
            let first = first_invalid.map(|i| &d.proposals[i]);
            let message = format!(
                "invalid metrics ({invalid} invalid out of {}), first error is: {}",
                metrics.len(),
                first.and_then(|p| p.error.clone()).unwrap_or_default()
            );
            let why = first
                .and_then(|p| p.invalid_reason.clone())
                .unwrap_or_default();
            if invalid < metrics.len() {
                d.limits.push(Limit {
                    stage: LimitStage::InvalidMetrics,
                    from: replicas,
                    to: current,
                    reason: why.clone(),
                });
            }
            d.conditions.push(condition(
                ConditionType::ScalingActive,
                false,
                &why,
                message,
            ));
            return d;
        }
        d.conditions.push(condition(
            ConditionType::ScalingActive,
            true,
            "ValidMetricFound",
            format!(
                "the policy was able to successfully calculate a replica count from {chosen_label}"
            ),
        ));
        // With `spec.formula` applied, `chosen_metric` is "spec.formula".
        d.chosen_metric = match chosen {
            Some(i) => Some(metrics[i].name.clone()),
            None if formula_applied => Some(chosen_label.clone()),
            None => None,
        };
        d.metric_replicas = Some(replicas);
        let desired = replicas.max(0);
        if desired > current {
            d.rescale_reason = Some(format!("{chosen_label} above target"));
        } else if desired < current {
            d.rescale_reason = Some("All metrics below target".into());
        }
        normalize(spec, state, current, desired, now, bypass_rate, &mut d)
    };

    d.desired_replicas = desired;
    d.rescale = desired != current;
    if !d.rescale {
        d.rescale_reason = None;
    }
    if d.rescale && spec.behavior.is_some() {
        d.next.scale_events.push(ScaleEvent {
            replica_change: desired.saturating_sub(current),
            at_unix_seconds: now,
        });
    }
    d.conditions.sort_by_key(|c| c.kind);
    d
}

/// `normalizeDesiredReplicas` / `normalizeDesiredReplicasWithBehaviors`.
fn normalize(
    spec: &Spec,
    state: &State,
    current: i32,
    prenormalized: i32,
    now: f64,
    bypass_rate: bool,
    d: &mut Decision,
) -> i32 {
    let min = spec.min_replicas;
    let max = spec.max_replicas;
    let history = d.next.recommendations.clone();
    let (stabilized, stabilized_reason, keep_after, rated) = match &spec.behavior {
        None => {
            let window = spec.controller.downscale_stabilization_window_seconds;
            let s = behavior::stabilize_legacy(prenormalized, &history, window, now);
            let rated = behavior::convert_with_rules(current, s, min, max);
            // Upstream reuses entries older than the cutoff; entries at the cutoff still count.
            (
                s,
                reason::SCALE_DOWN_STABILIZED,
                now - f64::from(window),
                rated,
            )
        }
        Some(b) => {
            let up = behavior::scale_up_rules(b.scale_up.as_ref());
            let down = behavior::scale_down_rules(
                b.scale_down.as_ref(),
                spec.controller.downscale_stabilization_window_seconds,
            );
            let (s, why) = behavior::stabilize_with_behaviors(
                current,
                prenormalized,
                up.stabilization_window_seconds,
                down.stabilization_window_seconds,
                &history,
                now,
            );
            let rated = behavior::convert_with_behavior_rate(
                current,
                s,
                min,
                max,
                &up,
                &down,
                &state.scale_events,
                now,
            );
            let longest = up
                .longest_period_seconds()
                .max(down.longest_period_seconds());
            let horizon = now - f64::from(longest);
            d.next.scale_events.retain(|e| e.at_unix_seconds > horizon);
            let window = up
                .stabilization_window_seconds
                .max(down.stabilization_window_seconds);
            // Upstream reuses an entry only when it is older than both windows.
            (s, why, now - f64::from(window), rated)
        }
    };
    d.next
        .recommendations
        .retain(|r| r.at_unix_seconds >= keep_after);
    d.next.recommendations.push(Recommendation {
        replicas: prenormalized,
        at_unix_seconds: now,
    });

    if stabilized != prenormalized {
        d.limits.push(Limit {
            stage: LimitStage::Stabilization,
            from: prenormalized,
            to: stabilized,
            reason: stabilized_reason.into(),
        });
        d.conditions.push(condition(
            ConditionType::AbleToScale,
            true,
            stabilized_reason,
            reason::message(stabilized_reason),
        ));
    } else {
        d.conditions.push(condition(
            ConditionType::AbleToScale,
            true,
            reason::READY_FOR_NEW_SCALE,
            reason::message(reason::READY_FOR_NEW_SCALE),
        ));
    }
    let (desired, why) = if bypass_rate {
        // A predictive `kafka_lag` proposal that opts out: straight to the count, one
        // rebalance; only min and max apply.
        if stabilized > max {
            (max, reason::TOO_MANY_REPLICAS)
        } else if stabilized < min {
            (min, reason::TOO_FEW_REPLICAS)
        } else {
            (stabilized, reason::DESIRED_WITHIN_RANGE)
        }
    } else {
        rated
    };
    if desired != stabilized {
        d.limits.push(Limit {
            stage: LimitStage::Rate,
            from: stabilized,
            to: desired,
            reason: why.into(),
        });
    }
    d.conditions.push(condition(
        ConditionType::ScalingLimited,
        desired != stabilized,
        why,
        reason::message(why),
    ));
    desired
}

//! One metric's proposal: `computeReplicasForMetric`, and the `kafka_lag` aggregation.

use crate::formula::MetricValues;
use crate::lag::{self, LagInput};
use crate::replica_calc::{self, CalcError, PodMetrics, Readiness, Sample, to_milli};
use crate::types::{
    CurrentValue, MetricSource, MetricSpec, Observation, Proposal, State, TargetType, Tolerances,
};

/// The condition reason of a metric whose source answered with an unusable value (Tidal's
/// own; the HPA has no such case, since metrics-server never returns one).
pub const INVALID_METRIC: &str = "InvalidMetric";

fn failed_reason(source: MetricSource) -> &'static str {
    match source {
        MetricSource::Resource => "FailedGetResourceMetric",
        MetricSource::ContainerResource => "FailedGetContainerResourceMetric",
        MetricSource::Pods => "FailedGetPodsMetric",
        MetricSource::Object => "FailedGetObjectMetric",
        MetricSource::External | MetricSource::KafkaLag => "FailedGetExternalMetric",
    }
}

fn milli_to_f64(v: i64) -> f64 {
    v as f64 / 1000.0
}

pub(super) struct Ctx<'a> {
    pub(super) current: i32,
    pub(super) status: i32,
    pub(super) tol: Tolerances,
    pub(super) state: &'a State,
    pub(super) last_active: Option<f64>,
    pub(super) readiness: Readiness,
    pub(super) now: f64,
}

/// What a proposal knows besides the [`Proposal`]: the formula variables and lag details.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ProposalDetail {
    pub(super) vars: Option<MetricValues>,
    pub(super) partitions: Option<i64>,
    /// A predictive `kafka_lag` proposal that opts out of the rate policies.
    pub(super) bypass_rate: bool,
    pub(super) active: bool,
}

fn ratio_of(value: f64, target: f64) -> f64 {
    value / target
}

/// Replicas that consume: Running, Ready and not deleting; `None` when no pods are known.
fn ready_consumers(pods: &[crate::types::Pod]) -> Option<i32> {
    if pods.is_empty() {
        return None;
    }
    let ready = pods.iter().filter(|p| p.is_consuming()).count();
    Some(i32::try_from(ready).unwrap_or(i32::MAX))
}

/// Aggregate a `kafka_lag` metric's observations (see `KafkaDetail`).
fn lag_input(obs: &[&Observation]) -> LagInput {
    let mut input = LagInput::default();
    let mut partitions: Option<i64> = None;
    let mut with_lag: Option<i64> = None;
    let mut consume: Option<f64> = None;
    let mut produce: Option<f64> = None;
    // The averaged total: an observation without an average counts its latest lag.
    let mut interval = 0.0;
    let mut averaged_any = false;
    let mut positive = 0i64;
    for o in obs {
        input.total_lag += o.value;
        let averaged = o.kafka.as_ref().and_then(|k| k.commit_interval_lag);
        averaged_any |= averaged.is_some();
        interval += averaged.unwrap_or(o.value);
        if o.value > 0.0 {
            positive += 1;
        }
        if let Some(k) = &o.kafka {
            input.persistent_lag += k.persistent_lag;
            if let Some(p) = k.partitions {
                partitions = Some(partitions.map_or(p, |q| q.max(p)));
            }
            if let Some(p) = k.partitions_with_lag {
                with_lag = Some(with_lag.unwrap_or(0).saturating_add(p));
            }
            if let Some(r) = k.consume_rate_per_second {
                consume = Some(consume.unwrap_or(0.0) + r);
            }
            if let Some(r) = k.produce_rate_per_second {
                produce = Some(produce.unwrap_or(0.0) + r);
            }
        }
    }
    input.partitions = partitions.unwrap_or(obs.len() as i64);
    input.partitions_with_lag = with_lag.unwrap_or(positive);
    input.consume_rate_per_second = consume;
    input.produce_rate_per_second = produce;
    input.commit_interval_lag = averaged_any.then_some(interval);
    input
}

/// `computeReplicasForMetric` for one metric.
pub(super) fn propose(
    m: &MetricSpec,
    obs: &[&Observation],
    ctx: &Ctx<'_>,
    extra: &mut ProposalDetail,
) -> Proposal {
    let mut p = Proposal {
        metric: m.name.clone(),
        source: m.source,
        replicas: None,
        current: None,
        pods: None,
        invalid_reason: None,
        error: None,
        stale: obs.iter().any(|o| o.stale),
        lag: None,
    };
    let fail = |mut p: Proposal, msg: String| {
        p.invalid_reason = Some(failed_reason(m.source).to_owned());
        p.error = Some(msg);
        p
    };
    if let Some(o) = obs.iter().find(|o| o.error.is_some()) {
        let err = o.error.as_deref().unwrap_or_default();
        if o.invalid {
            p.invalid_reason = Some(INVALID_METRIC.to_owned());
            p.error = Some(format!("invalid metric {}: {err}", m.name));
            return p;
        }
        return fail(p, format!("unable to get metric {}: {err}", m.name));
    }
    if obs.is_empty() {
        let msg = match m.source {
            MetricSource::Resource | MetricSource::ContainerResource => format!(
                "unable to get metrics for resource {}: no metrics returned from resource metrics API",
                m.name
            ),
            _ => format!("unable to get metric {}: no metrics returned", m.name),
        };
        return fail(p, msg);
    }
    let pods = &ctx.state.pods;
    let t = &m.target;
    match m.source {
        MetricSource::Resource | MetricSource::ContainerResource | MetricSource::Pods => {
            let samples: PodMetrics<'_> = obs
                .iter()
                .filter_map(|o| {
                    o.pod.as_deref().map(|pod| {
                        (
                            pod,
                            Sample {
                                value: to_milli(o.value),
                                timestamp_unix_seconds: o.timestamp_unix_seconds.unwrap_or(ctx.now),
                                window_seconds: o.window_seconds.unwrap_or(15.0),
                            },
                        )
                    })
                })
                .collect();
            let result = match (m.source, t.kind) {
                (MetricSource::Pods, _) => replica_calc::plain_metric_replicas(
                    ctx.current,
                    to_milli(t.average_value.unwrap_or_default()),
                    ctx.tol,
                    pods,
                    &samples,
                    false,
                    &ctx.readiness,
                ),
                (_, TargetType::Utilization) => replica_calc::resource_replicas(
                    ctx.current,
                    t.average_utilization.unwrap_or(1),
                    &m.name,
                    m.container.as_deref(),
                    ctx.tol,
                    pods,
                    &samples,
                    &ctx.readiness,
                ),
                _ => replica_calc::plain_metric_replicas(
                    ctx.current,
                    to_milli(t.average_value.unwrap_or_default()),
                    ctx.tol,
                    pods,
                    &samples,
                    m.name == "cpu",
                    &ctx.readiness,
                ),
            };
            match result {
                Ok(out) => {
                    let (value, target) = match out.utilization {
                        Some(u) if t.kind == TargetType::Utilization => {
                            (f64::from(u), f64::from(t.average_utilization.unwrap_or(1)))
                        }
                        _ => (
                            milli_to_f64(out.average_value),
                            t.average_value.unwrap_or(1.0),
                        ),
                    };
                    extra.vars = Some(MetricValues {
                        value,
                        target,
                        ratio: ratio_of(value, target),
                    });
                    p.replicas = Some(out.replicas);
                    p.pods = Some(out.pods);
                    p.current = Some(CurrentValue {
                        average_utilization: out.utilization,
                        average_value: Some(milli_to_f64(out.average_value)),
                        value: None,
                    });
                    p
                }
                Err(e) => {
                    let msg = match (m.source, t.kind) {
                        (MetricSource::Pods, _) => format!("failed to get pods metric value: {e}"),
                        (_, TargetType::Utilization) => {
                            format!("failed to get {} utilization: {e}", m.name)
                        }
                        _ => format!("failed to get {} usage: {e}", m.name),
                    };
                    fail(p, msg)
                }
            }
        }
        MetricSource::Object | MetricSource::External => {
            let values: Vec<i64> = obs.iter().map(|o| to_milli(o.value)).collect();
            let result: Result<(i32, i64, bool), CalcError> = match (m.source, t.kind) {
                (MetricSource::Object, TargetType::AverageValue) => {
                    let (r, u) = replica_calc::object_per_pod_replicas(
                        ctx.status,
                        values[0],
                        to_milli(t.average_value.unwrap_or_default()),
                        ctx.tol,
                    );
                    Ok((r, u, true))
                }
                (MetricSource::Object, _) => replica_calc::object_replicas(
                    ctx.current,
                    values[0],
                    to_milli(t.value.unwrap_or_default()),
                    ctx.tol,
                    pods,
                )
                .map(|(r, u)| (r, u, false)),
                (_, TargetType::AverageValue) => {
                    let (r, u) = replica_calc::external_per_pod_replicas(
                        ctx.status,
                        &values,
                        to_milli(t.average_value.unwrap_or_default()),
                        ctx.tol,
                    );
                    Ok((r, u, true))
                }
                _ => replica_calc::external_replicas(
                    ctx.current,
                    &values,
                    to_milli(t.value.unwrap_or_default()),
                    ctx.tol,
                    pods,
                )
                .map(|(r, u)| (r, u, false)),
            };
            match result {
                Ok((replicas, usage, average)) => {
                    let total = if m.source == MetricSource::Object {
                        values[0]
                    } else {
                        values
                            .iter()
                            .try_fold(0i64, |acc, v| acc.checked_add(*v))
                            .unwrap_or(i64::MAX)
                    };
                    let value = milli_to_f64(total);
                    let (target, ratio) = if average {
                        let target = t.average_value.unwrap_or(1.0);
                        (
                            target,
                            ratio_of(value, target * f64::from(ctx.status.max(1))),
                        )
                    } else {
                        let target = t.value.unwrap_or(1.0);
                        (target, ratio_of(value, target))
                    };
                    extra.vars = Some(MetricValues {
                        value,
                        target,
                        ratio,
                    });
                    p.replicas = Some(replicas);
                    p.current = Some(if average {
                        CurrentValue {
                            average_utilization: None,
                            average_value: Some(milli_to_f64(usage)),
                            value: None,
                        }
                    } else {
                        CurrentValue {
                            average_utilization: None,
                            average_value: None,
                            value: Some(milli_to_f64(usage)),
                        }
                    });
                    p
                }
                Err(e) => fail(p, format!("failed to get {} metric value: {e}", m.name)),
            }
        }
        MetricSource::KafkaLag => {
            let cfg = m.kafka_lag.clone().unwrap_or_default();
            let mut input = lag_input(obs);
            input.consumers = ready_consumers(&ctx.state.pods);
            let out =
                lag::lag_replicas(&cfg, &input, ctx.status, ctx.tol, ctx.last_active, ctx.now);
            extra.vars = Some(MetricValues {
                value: out.lag,
                target: cfg.lag_per_replica,
                ratio: ratio_of(out.lag, cfg.lag_per_replica * f64::from(ctx.status.max(1))),
            });
            extra.partitions = Some(input.partitions);
            extra.active = out.active;
            extra.bypass_rate = out.predictive
                && cfg
                    .predictive
                    .as_ref()
                    .is_some_and(|pr| pr.bypass_rate_limits);
            p.replicas = Some(out.replicas);
            p.current = Some(CurrentValue {
                average_utilization: None,
                average_value: Some(out.average_value),
                value: None,
            });
            p.lag = Some(out);
            p
        }
    }
}

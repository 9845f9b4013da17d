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

use std::collections::BTreeMap;

use super::behavior::{self, reason};
use super::formula::{Formula, FormulaError, Inputs, MetricValues};
use super::lag::{self, LagInput};
use super::replica_calc::{self, CalcError, PodMetrics, Readiness, Sample, to_milli};
use super::types::{
    Condition, ConditionType, CurrentValue, Decision, Input, Limit, LimitStage, MetricSource,
    MetricSpec, MetricTarget, NextState, Observation, Proposal, Recommendation, ScaleEvent, Spec,
    State, TargetType, Tolerances,
};

/// Invalid input, naming the field (e.g. `observations[2].value: NaN is not a valid metric
/// value`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("{field}: {value} is not a valid {what}")]
    NotFinite {
        field: String,
        value: f64,
        what: &'static str,
    },
    #[error("{field}: {reason}")]
    OutOfRange { field: String, reason: String },
    #[error("{field}: required for {context}")]
    Missing { field: String, context: String },
    #[error("{field}: no metric named {name:?} in spec.metrics")]
    UnknownMetric { field: String, name: String },
    #[error("{field}: duplicate {what} {name:?}")]
    Duplicate {
        field: String,
        what: &'static str,
        name: String,
    },
    /// `spec.formula` does not compile (the message names `spec.formula` and the position).
    #[error(transparent)]
    Formula(#[from] FormulaError),
}

impl InputError {
    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotFinite { .. } => "not_finite",
            Self::OutOfRange { .. } => "out_of_range",
            Self::Missing { .. } => "missing",
            Self::UnknownMetric { .. } => "unknown_metric",
            Self::Duplicate { .. } => "duplicate",
            Self::Formula(_) => "formula",
        }
    }
}

fn finite(
    field: impl FnOnce() -> String,
    value: f64,
    what: &'static str,
) -> Result<(), InputError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(InputError::NotFinite {
            field: field(),
            value,
            what,
        })
    }
}

fn range(field: impl FnOnce() -> String, ok: bool, reason: &str) -> Result<(), InputError> {
    if ok {
        Ok(())
    } else {
        Err(InputError::OutOfRange {
            field: field(),
            reason: reason.to_owned(),
        })
    }
}

fn validate_target(i: usize, m: &MetricSpec) -> Result<(), InputError> {
    let t = &m.target;
    let f = |name: &str| format!("spec.metrics[{i}].target.{name}");
    let allowed: &[TargetType] = match m.source {
        MetricSource::Resource | MetricSource::ContainerResource => {
            &[TargetType::Utilization, TargetType::AverageValue]
        }
        MetricSource::Pods => &[TargetType::AverageValue],
        MetricSource::Object | MetricSource::External => {
            &[TargetType::Value, TargetType::AverageValue]
        }
        MetricSource::KafkaLag => return validate_kafka_lag(i, m),
    };
    if m.kafka_lag.is_some() {
        return Err(InputError::OutOfRange {
            field: format!("spec.metrics[{i}].kafka_lag"),
            reason: "only for type kafka_lag".into(),
        });
    }
    range(
        || f("type"),
        allowed.contains(&t.kind),
        "target type not allowed for this metric type",
    )?;
    let missing = |name: &str| InputError::Missing {
        field: f(name),
        context: format!("target type {:?}", t.kind),
    };
    match t.kind {
        TargetType::Utilization => {
            let v = t
                .average_utilization
                .ok_or_else(|| missing("average_utilization"))?;
            range(|| f("average_utilization"), v > 0, "must be greater than 0")
        }
        TargetType::AverageValue => {
            let v = t.average_value.ok_or_else(|| missing("average_value"))?;
            finite(|| f("average_value"), v, "target value")?;
            range(
                || f("average_value"),
                to_milli(v) > 0,
                "must be at least 0.001",
            )
        }
        TargetType::Value => {
            let v = t.value.ok_or_else(|| missing("value"))?;
            finite(|| f("value"), v, "target value")?;
            range(|| f("value"), to_milli(v) > 0, "must be at least 0.001")
        }
    }
}

fn validate_kafka_lag(i: usize, m: &MetricSpec) -> Result<(), InputError> {
    let t = &m.target;
    range(
        || format!("spec.metrics[{i}].target"),
        t.kind == TargetType::AverageValue
            && t.average_value.is_none()
            && t.value.is_none()
            && t.average_utilization.is_none(),
        "not used for kafka_lag; set kafka_lag.lag_per_replica",
    )?;
    let Some(k) = &m.kafka_lag else {
        return Ok(());
    };
    let f = |name: &str| format!("spec.metrics[{i}].kafka_lag.{name}");
    finite(|| f("lag_per_replica"), k.lag_per_replica, "setting")?;
    range(
        || f("lag_per_replica"),
        to_milli(k.lag_per_replica) > 0,
        "must be at least 0.001",
    )?;
    for (name, v) in [
        ("activation_lag_threshold", k.activation_lag_threshold),
        ("cooldown_seconds", k.cooldown_seconds),
    ] {
        finite(|| f(name), v, "setting")?;
        range(|| f(name), v >= 0.0, "must not be negative")?;
    }
    if let Some(p) = &k.predictive {
        let name = "predictive.target_drain_seconds";
        finite(|| f(name), p.target_drain_seconds, "setting")?;
        range(
            || f(name),
            p.target_drain_seconds > 0.0,
            "must be greater than 0",
        )?;
        let name = "predictive.lookahead_seconds";
        finite(|| f(name), p.lookahead_seconds, "setting")?;
        range(
            || f(name),
            (0.0..=3600.0).contains(&p.lookahead_seconds),
            "must be between 0 and 3600",
        )?;
    }
    Ok(())
}

/// Check an input once, naming the first bad field.
pub fn validate(input: &Input) -> Result<(), InputError> {
    let spec = &input.spec;
    finite(|| "now_unix_seconds".into(), input.now_unix_seconds, "time")?;
    range(
        || "spec.min_replicas".into(),
        spec.min_replicas >= 0,
        "must be at least 0",
    )?;
    range(
        || "spec.max_replicas".into(),
        spec.max_replicas >= spec.min_replicas.max(1),
        "must be at least 1 and at least min_replicas",
    )?;
    let c = &spec.controller;
    for (name, v) in [
        ("tolerance", c.tolerance),
        (
            "cpu_initialization_period_seconds",
            c.cpu_initialization_period_seconds,
        ),
        (
            "initial_readiness_delay_seconds",
            c.initial_readiness_delay_seconds,
        ),
    ] {
        finite(|| format!("spec.controller.{name}"), v, "setting")?;
        range(
            || format!("spec.controller.{name}"),
            v >= 0.0,
            "must not be negative",
        )?;
    }
    range(
        || "spec.controller.downscale_stabilization_window_seconds".into(),
        c.downscale_stabilization_window_seconds >= 0,
        "must not be negative",
    )?;
    let mut names = BTreeMap::new();
    for (i, m) in spec.metrics.iter().enumerate() {
        if names.insert(m.name.as_str(), m.source).is_some() {
            return Err(InputError::Duplicate {
                field: format!("spec.metrics[{i}].name"),
                what: "metric",
                name: m.name.clone(),
            });
        }
        if m.source == MetricSource::ContainerResource && m.container.is_none() {
            return Err(InputError::Missing {
                field: format!("spec.metrics[{i}].container"),
                context: "type container_resource".into(),
            });
        }
        validate_target(i, m)?;
    }
    if let Some(src) = &spec.formula {
        let names: Vec<&str> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
        let f = Formula::compile(src, &names)?;
        range(
            || "spec.formula".into(),
            !f.uses_partitions()
                || spec
                    .metrics
                    .iter()
                    .any(|m| m.source == MetricSource::KafkaLag),
            "partitions needs a kafka_lag metric",
        )?;
    }
    if let Some(b) = &spec.behavior {
        for (dir, rules) in [("scale_up", &b.scale_up), ("scale_down", &b.scale_down)] {
            let Some(rules) = rules else { continue };
            let f = |name: &str| format!("spec.behavior.{dir}.{name}");
            if let Some(w) = rules.stabilization_window_seconds {
                range(
                    || f("stabilization_window_seconds"),
                    (0..=3600).contains(&w),
                    "must be 0..=3600",
                )?;
            }
            if let Some(t) = rules.tolerance {
                finite(|| f("tolerance"), t, "tolerance")?;
                range(|| f("tolerance"), t >= 0.0, "must not be negative")?;
            }
            for (j, p) in rules.policies.iter().flatten().enumerate() {
                range(
                    || f(&format!("policies[{j}].value")),
                    p.value > 0,
                    "must be greater than 0",
                )?;
                range(
                    || f(&format!("policies[{j}].period_seconds")),
                    (1..=1800).contains(&p.period_seconds),
                    "must be 1..=1800",
                )?;
            }
        }
    }
    let st = &input.state;
    range(
        || "state.spec_replicas".into(),
        st.spec_replicas >= 0,
        "must not be negative",
    )?;
    if let Some(s) = st.status_replicas {
        range(
            || "state.status_replicas".into(),
            s >= 0,
            "must not be negative",
        )?;
    }
    let mut pods = BTreeMap::new();
    for (i, p) in st.pods.iter().enumerate() {
        if pods.insert(p.name.as_str(), ()).is_some() {
            return Err(InputError::Duplicate {
                field: format!("state.pods[{i}].name"),
                what: "pod",
                name: p.name.clone(),
            });
        }
        if let Some(t) = p.start_time_unix_seconds {
            finite(
                || format!("state.pods[{i}].start_time_unix_seconds"),
                t,
                "time",
            )?;
        }
        if let Some(r) = p.ready {
            finite(
                || format!("state.pods[{i}].ready.last_transition_unix_seconds"),
                r.last_transition_unix_seconds,
                "time",
            )?;
        }
        let requests = p
            .requests
            .iter()
            .map(|(k, v)| (format!("state.pods[{i}].requests.{k}"), *v))
            .chain(p.containers.iter().enumerate().flat_map(|(j, c)| {
                c.requests.iter().map(move |(k, v)| {
                    (format!("state.pods[{i}].containers[{j}].requests.{k}"), *v)
                })
            }))
            .chain(p.init_containers.iter().enumerate().flat_map(|(j, c)| {
                c.requests.iter().map(move |(k, v)| {
                    (
                        format!("state.pods[{i}].init_containers[{j}].requests.{k}"),
                        *v,
                    )
                })
            }));
        for (field, v) in requests {
            finite(|| field.clone(), v, "request")?;
            range(|| field.clone(), v >= 0.0, "must not be negative")?;
        }
    }
    for (i, r) in st.recommendations.iter().flatten().enumerate() {
        finite(
            || format!("state.recommendations[{i}].at_unix_seconds"),
            r.at_unix_seconds,
            "time",
        )?;
    }
    for (i, e) in st.scale_events.iter().enumerate() {
        finite(
            || format!("state.scale_events[{i}].at_unix_seconds"),
            e.at_unix_seconds,
            "time",
        )?;
    }
    let mut seen = BTreeMap::new();
    for (i, o) in input.observations.iter().enumerate() {
        let Some(source) = names.get(o.metric.as_str()).copied().or_else(|| {
            // The default metric (CPU at 80%) when spec.metrics is empty.
            (spec.metrics.is_empty() && o.metric == "cpu").then_some(MetricSource::Resource)
        }) else {
            return Err(InputError::UnknownMetric {
                field: format!("observations[{i}].metric"),
                name: o.metric.clone(),
            });
        };
        finite(
            || format!("observations[{i}].value"),
            o.value,
            "metric value",
        )?;
        if let Some(t) = o.timestamp_unix_seconds {
            finite(
                || format!("observations[{i}].timestamp_unix_seconds"),
                t,
                "time",
            )?;
        }
        if let Some(k) = &o.kafka {
            if source != MetricSource::KafkaLag {
                return Err(InputError::OutOfRange {
                    field: format!("observations[{i}].kafka"),
                    reason: "only for kafka_lag metrics".into(),
                });
            }
            for (name, v) in [
                ("persistent_lag", Some(k.persistent_lag)),
                ("consume_rate_per_second", k.consume_rate_per_second),
                ("produce_rate_per_second", k.produce_rate_per_second),
            ] {
                let Some(v) = v else { continue };
                finite(|| format!("observations[{i}].kafka.{name}"), v, "value")?;
                range(
                    || format!("observations[{i}].kafka.{name}"),
                    v >= 0.0,
                    "must not be negative",
                )?;
            }
            for (name, v) in [
                ("partitions", k.partitions),
                ("partitions_with_lag", k.partitions_with_lag),
            ] {
                if let Some(v) = v {
                    range(
                        || format!("observations[{i}].kafka.{name}"),
                        v >= 0,
                        "must not be negative",
                    )?;
                }
            }
        }
        if let Some(w) = o.window_seconds {
            finite(|| format!("observations[{i}].window_seconds"), w, "window")?;
            range(
                || format!("observations[{i}].window_seconds"),
                w >= 0.0,
                "must not be negative",
            )?;
        }
        let per_pod = matches!(
            source,
            MetricSource::Resource | MetricSource::ContainerResource | MetricSource::Pods
        );
        if per_pod && o.error.is_none() {
            let Some(pod) = &o.pod else {
                return Err(InputError::Missing {
                    field: format!("observations[{i}].pod"),
                    context: "per-pod metrics".into(),
                });
            };
            if seen.insert((o.metric.as_str(), pod.as_str()), ()).is_some() {
                return Err(InputError::Duplicate {
                    field: format!("observations[{i}].pod"),
                    what: "sample for pod",
                    name: pod.clone(),
                });
            }
        }
        if source == MetricSource::Object
            && o.error.is_none()
            && seen.insert((o.metric.as_str(), ""), ()).is_some()
        {
            return Err(InputError::Duplicate {
                field: format!("observations[{i}].metric"),
                what: "sample for object metric",
                name: o.metric.clone(),
            });
        }
    }
    Ok(())
}

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

struct Ctx<'a> {
    current: i32,
    status: i32,
    tol: Tolerances,
    state: &'a State,
    last_active: Option<f64>,
    readiness: Readiness,
    now: f64,
}

/// What a proposal knows besides the [`Proposal`]: the formula variables and lag details.
#[derive(Debug, Clone, Copy, Default)]
struct Extra {
    vars: Option<MetricValues>,
    partitions: Option<i64>,
    /// A predictive `kafka_lag` proposal that opts out of the rate policies.
    bypass_rate: bool,
    active: bool,
}

fn ratio_of(value: f64, target: f64) -> f64 {
    value / target
}

/// A pod that consumes: Running, Ready and not deleting.
fn is_ready(p: &super::types::Pod) -> bool {
    !p.deleting
        && p.phase == super::types::PodPhase::Running
        && p.ready
            .is_some_and(|r| r.status == super::types::ConditionStatus::True)
}

/// Replicas that consume: Running, Ready and not deleting; `None` when no pods are known.
fn ready_consumers(pods: &[super::types::Pod]) -> Option<i32> {
    if pods.is_empty() {
        return None;
    }
    let ready = pods.iter().filter(|p| is_ready(p)).count();
    Some(i32::try_from(ready).unwrap_or(i32::MAX))
}

/// Aggregate a `kafka_lag` metric's observations (see `KafkaDetail`).
fn lag_input(obs: &[&Observation]) -> LagInput {
    let mut input = LagInput::default();
    let mut partitions: Option<i64> = None;
    let mut with_lag: Option<i64> = None;
    let mut consume: Option<f64> = None;
    let mut produce: Option<f64> = None;
    let mut positive = 0i64;
    for o in obs {
        input.total_lag += o.value;
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
    input
}

/// `computeReplicasForMetric` for one metric.
fn propose(m: &MetricSpec, obs: &[&Observation], ctx: &Ctx<'_>, extra: &mut Extra) -> Proposal {
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

/// Decide the replica count for one target at time `now` (Unix seconds). Pure: the same input
/// always gives the same decision. Compiles `spec.formula` on every call; a controller keeps a
/// [`Formula`] per policy generation and calls [`desired_with_formula`] instead.
pub fn desired(spec: &Spec, state: &State, observations: &[Observation], now: f64) -> Decision {
    match spec.formula.as_deref() {
        None => run(spec, Ok(None), state, observations, now),
        Some(src) => {
            let names: Vec<&str> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
            match Formula::compile(src, &names) {
                Ok(f) => run(spec, Ok(Some(&f)), state, observations, now),
                Err(e) => run(spec, Err(e), state, observations, now),
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
    run(spec, Ok(formula), state, observations, now)
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

fn run(
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
        let mut extras: Vec<Extra> = Vec::with_capacity(metrics.len());
        let mut stale = false;
        for (i, m) in metrics.iter().enumerate() {
            let obs: Vec<&Observation> =
                observations.iter().filter(|o| o.metric == m.name).collect();
            let mut extra = Extra::default();
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
                ready_replicas: state.pods.iter().filter(|p| is_ready(p)).count() as f64,
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

#[cfg(test)]
#[path = "horizontal_tests.rs"]
mod tests;

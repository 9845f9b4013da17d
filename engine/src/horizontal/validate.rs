//! Input validation: every field checked once, the first bad one named.

use std::collections::BTreeMap;

use crate::formula::{Formula, FormulaError};
use crate::limits::{
    LOOKAHEAD_SECONDS, POLICY_PERIOD_SECONDS, POLICY_VALUE, STABILIZATION_WINDOW_SECONDS,
};
use crate::replica_calc::to_milli;
use crate::types::{Input, MetricSource, MetricSpec, TargetType};

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
            LOOKAHEAD_SECONDS.contains_f64(p.lookahead_seconds),
            LOOKAHEAD_SECONDS.message,
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
                    STABILIZATION_WINDOW_SECONDS.contains(w),
                    STABILIZATION_WINDOW_SECONDS.message,
                )?;
            }
            if let Some(t) = rules.tolerance {
                finite(|| f("tolerance"), t, "tolerance")?;
                range(|| f("tolerance"), t >= 0.0, "must not be negative")?;
            }
            for (j, p) in rules.policies.iter().flatten().enumerate() {
                range(
                    || f(&format!("policies[{j}].value")),
                    POLICY_VALUE.contains(p.value),
                    POLICY_VALUE.message,
                )?;
                range(
                    || f(&format!("policies[{j}].period_seconds")),
                    POLICY_PERIOD_SECONDS.contains(p.period_seconds),
                    POLICY_PERIOD_SECONDS.message,
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
                ("commit_interval_lag", k.commit_interval_lag),
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

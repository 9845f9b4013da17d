//! From a ScalingPolicy `spec` to the engine's [`Spec`](crate::engine::Spec).
//!
//! The apiserver already enforces most of these rules through the schema; they are checked
//! again here because a spec can also come from a file, and because the quantities need
//! parsing. The first problem found is returned as a [`SpecError`] naming the field as the
//! user wrote it (`spec.metrics[1]: exactly one of resource, kafkaLag, prometheus must be set`).
//!
//! Mapping to the HPA metric types the engine implements:
//!
//! | CRD | engine |
//! | --- | --- |
//! | `resource` + `targetUtilization` | `resource` (or `container_resource`), `utilization` |
//! | `resource` + `targetAverageValue` | `resource` (or `container_resource`), `average_value` |
//! | `kafkaLag` | `kafka_lag` (KEDA's Kafka scaler), `lag_per_replica` |
//! | `prometheus` + `targetValue` | `external`, `value` |
//! | `prometheus` + `targetAverageValue` | `pods`, `average_value` |
//! | `prometheus` + `targetPerReplica` | `external`, `average_value` |
//!
//! What the engine's `Spec` has no place for (`targetRef`, the Kafka cluster, group, topics
//! and offset reset policy, the Prometheus query, `vertical`, `dryRun`) stays in the CRD spec
//! for the controller and the sources.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::engine::limits::{
    COOLDOWN_SECONDS, LOOKAHEAD_SECONDS, PERSISTENT_LAG_WINDOW_SECONDS, POLICY_PERIOD_SECONDS,
    POLICY_VALUE, STABILIZATION_WINDOW_SECONDS, TARGET_DRAIN_SECONDS,
};
use crate::engine::types as engine;

use super::policy::{
    Behavior, ContainerPolicy, KafkaLagMetric, LagSampling, MetricSpec, ResourceBounds,
    ScalingPolicySpec, ScalingRules,
};

/// Why a ScalingPolicy spec cannot be handed to the engine. The message starts with the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// None, or more than one, of a set of mutually exclusive fields is set.
    #[error("{field}: exactly one of {choices} must be set")]
    ExactlyOne {
        field: String,
        choices: &'static str,
    },
    /// A quantity that does not parse, or is not positive where it must be.
    #[error("{field}: {value:?} {problem}")]
    Quantity {
        field: String,
        value: String,
        problem: &'static str,
    },
    /// A number outside its allowed range.
    #[error("{field}: {value} {problem}")]
    OutOfRange {
        field: String,
        value: String,
        problem: &'static str,
    },
    /// A name used twice where names must be unique.
    #[error("{field}: duplicate name {name:?}")]
    Duplicate { field: String, name: String },
    /// Any other rule on a field.
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// `spec.formula` does not compile against the declared metrics (the engine's message
    /// names `spec.formula` and the position).
    #[error(transparent)]
    Formula(#[from] crate::engine::FormulaError),
}

impl SpecError {
    /// A fixed label for metrics (`tidal_scaler_..._errors_total{reason}`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::ExactlyOne { .. } => "exactly_one",
            Self::Quantity { .. } => "quantity",
            Self::OutOfRange { .. } => "out_of_range",
            Self::Duplicate { .. } => "duplicate",
            Self::Invalid { .. } => "invalid",
            Self::Formula(_) => "formula",
        }
    }

    /// The field the error is about (`spec.metrics[1]`).
    pub fn field(&self) -> &str {
        match self {
            Self::ExactlyOne { field, .. }
            | Self::Quantity { field, .. }
            | Self::OutOfRange { field, .. }
            | Self::Duplicate { field, .. }
            | Self::Invalid { field, .. } => field,
            Self::Formula(_) => "spec.formula",
        }
    }
}

/// The spec with the default controller settings; see [`ScalingPolicySpec::to_engine`].
impl TryFrom<&ScalingPolicySpec> for engine::Spec {
    type Error = SpecError;

    fn try_from(spec: &ScalingPolicySpec) -> Result<Self, Self::Error> {
        spec.to_engine(engine::ControllerSettings::default())
    }
}

/// The spec with the default controller settings; see [`ScalingPolicySpec::to_engine`].
impl TryFrom<ScalingPolicySpec> for engine::Spec {
    type Error = SpecError;

    fn try_from(spec: ScalingPolicySpec) -> Result<Self, Self::Error> {
        Self::try_from(&spec)
    }
}

impl ScalingPolicySpec {
    /// Check the spec and build the engine's [`Spec`](engine::Spec) for it, with the
    /// controller-wide settings (`--horizontal-pod-autoscaler-*` equivalents) given.
    pub fn to_engine(
        &self,
        controller: engine::ControllerSettings,
    ) -> Result<engine::Spec, SpecError> {
        self.validate()?;
        let metrics = self
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| metric_to_engine(i, m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(engine::Spec {
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            metrics,
            behavior: self.behavior.as_ref().map(engine::Behavior::from),
            controller,
            formula: self.formula.clone(),
        })
    }

    /// The checks of [`to_engine`](Self::to_engine), without building anything.
    pub fn validate(&self) -> Result<(), SpecError> {
        let t = &self.target_ref;
        for (field, value) in [
            ("spec.targetRef.apiVersion", &t.api_version),
            ("spec.targetRef.kind", &t.kind),
            ("spec.targetRef.name", &t.name),
        ] {
            if value.is_empty() {
                return Err(invalid(field, "must not be empty"));
            }
        }
        if self.min_replicas < 0 {
            return Err(range(
                "spec.minReplicas",
                self.min_replicas,
                "must be at least 0",
            ));
        }
        if self.max_replicas < 1 {
            return Err(range(
                "spec.maxReplicas",
                self.max_replicas,
                "must be at least 1",
            ));
        }
        if self.min_replicas > self.max_replicas {
            return Err(invalid(
                "spec.minReplicas",
                format!(
                    "must be less than or equal to maxReplicas ({} > {})",
                    self.min_replicas, self.max_replicas
                ),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, m) in self.metrics.iter().enumerate() {
            check_metric(i, m)?;
            if !names.insert(m.name.as_str()) {
                return Err(SpecError::Duplicate {
                    field: format!("spec.metrics[{i}].name"),
                    name: m.name.clone(),
                });
            }
        }
        if self.min_replicas == 0 && !self.metrics.iter().any(wakes_from_zero) {
            return Err(invalid(
                "spec.minReplicas",
                "0 (scale to zero) needs a kafkaLag metric or a prometheus metric with \
                 targetValue or targetPerReplica",
            ));
        }
        if let Some(f) = &self.formula {
            if f.trim().is_empty() {
                return Err(invalid("spec.formula", "must not be empty when set"));
            }
            let names: Vec<&str> = self.metrics.iter().map(|m| m.name.as_str()).collect();
            crate::engine::Formula::compile(f, &names)?;
        }
        if let Some(b) = &self.behavior {
            check_behavior(b)?;
        }
        if let Some(v) = &self.vertical {
            let mut names = BTreeSet::new();
            for (i, p) in v.container_policies.iter().enumerate() {
                check_container_policy(i, p)?;
                if !names.insert(p.container_name.as_str()) {
                    return Err(SpecError::Duplicate {
                        field: format!("spec.vertical.containerPolicies[{i}].containerName"),
                        name: p.container_name.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A metric whose value is a total (Object/External in the HPA), which the engine can scale
/// from zero replicas.
fn wakes_from_zero(m: &MetricSpec) -> bool {
    m.kafka_lag.is_some()
        || m.prometheus
            .as_ref()
            .is_some_and(|p| p.target_average_value.is_none())
}

const SOURCES: &str = "resource, kafkaLag, prometheus";

fn check_metric(i: usize, m: &MetricSpec) -> Result<(), SpecError> {
    let at = |rest: &str| format!("spec.metrics[{i}]{rest}");
    if m.name.is_empty()
        || !m.name.starts_with(|c: char| c.is_ascii_lowercase())
        || !m
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(invalid(
            at(".name"),
            format!(
                "{:?} must start with a lowercase letter and hold only a-z, 0-9 and _",
                m.name
            ),
        ));
    }
    let sources = [
        m.resource.is_some(),
        m.kafka_lag.is_some(),
        m.prometheus.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(SpecError::ExactlyOne {
            field: at(""),
            choices: SOURCES,
        });
    }
    if let Some(r) = &m.resource {
        if m.name != r.name.as_str() {
            return Err(invalid(
                at(".name"),
                format!(
                    "a resource metric is named after its resource: {:?}, not {:?}",
                    r.name.as_str(),
                    m.name
                ),
            ));
        }
        if let Some(c) = &r.container
            && c.is_empty()
        {
            return Err(invalid(
                at(".resource.container"),
                "must not be empty when set",
            ));
        }
        match (r.target_utilization, &r.target_average_value) {
            (Some(u), None) if u < 1 => {
                return Err(range(
                    at(".resource.targetUtilization"),
                    u,
                    "must be at least 1 (percent)",
                ));
            }
            (Some(_), None) => {}
            (None, Some(q)) => {
                positive_quantity(at(".resource.targetAverageValue"), q)?;
            }
            _ => {
                return Err(SpecError::ExactlyOne {
                    field: at(".resource"),
                    choices: "targetUtilization, targetAverageValue",
                });
            }
        }
    }
    if let Some(k) = &m.kafka_lag {
        if k.cluster.is_empty() {
            return Err(invalid(at(".kafkaLag.cluster"), "must not be empty"));
        }
        if k.group.is_empty() {
            return Err(invalid(at(".kafkaLag.group"), "must not be empty"));
        }
        if let Some(t) = k.topics.iter().position(String::is_empty) {
            return Err(invalid(
                at(&format!(".kafkaLag.topics[{t}]")),
                "must not be empty",
            ));
        }
        if k.lag_per_replica < 1 {
            return Err(range(
                at(".kafkaLag.lagPerReplica"),
                k.lag_per_replica,
                "must be at least 1",
            ));
        }
        if k.activation_lag_threshold < 0 {
            return Err(range(
                at(".kafkaLag.activationLagThreshold"),
                k.activation_lag_threshold,
                "must be at least 0",
            ));
        }
        if !PERSISTENT_LAG_WINDOW_SECONDS.contains(k.persistent_lag_window_seconds) {
            return Err(range(
                at(".kafkaLag.persistentLagWindowSeconds"),
                k.persistent_lag_window_seconds,
                PERSISTENT_LAG_WINDOW_SECONDS.message,
            ));
        }
        if !COOLDOWN_SECONDS.contains(k.cooldown_seconds) {
            return Err(range(
                at(".kafkaLag.cooldownSeconds"),
                k.cooldown_seconds,
                COOLDOWN_SECONDS.message,
            ));
        }
        if let Some(p) = &k.predictive
            && !TARGET_DRAIN_SECONDS.contains(p.target_drain_seconds)
        {
            return Err(range(
                at(".kafkaLag.predictive.targetDrainSeconds"),
                p.target_drain_seconds,
                TARGET_DRAIN_SECONDS.message,
            ));
        }
        if let Some(p) = &k.predictive
            && !LOOKAHEAD_SECONDS.contains(p.lookahead_seconds)
        {
            return Err(range(
                at(".kafkaLag.predictive.lookaheadSeconds"),
                p.lookahead_seconds,
                LOOKAHEAD_SECONDS.message,
            ));
        }
    }
    if let Some(p) = &m.prometheus {
        if p.query.trim().is_empty() {
            return Err(invalid(at(".prometheus.query"), "must not be empty"));
        }
        let targets = [
            ("targetValue", &p.target_value),
            ("targetAverageValue", &p.target_average_value),
            ("targetPerReplica", &p.target_per_replica),
        ];
        let mut set = targets.iter().filter(|(_, q)| q.is_some());
        match (set.next(), set.next()) {
            (Some((name, Some(q))), None) => {
                positive_quantity(at(&format!(".prometheus.{name}")), q)?;
            }
            _ => {
                return Err(SpecError::ExactlyOne {
                    field: at(".prometheus"),
                    choices: "targetValue, targetAverageValue, targetPerReplica",
                });
            }
        }
    }
    Ok(())
}

/// One checked metric as the engine's `MetricSpec`.
fn metric_to_engine(i: usize, m: &MetricSpec) -> Result<engine::MetricSpec, SpecError> {
    let at = |rest: &str| format!("spec.metrics[{i}]{rest}");
    let target = |kind, utilization, average, value| engine::MetricTarget {
        kind,
        average_utilization: utilization,
        average_value: average,
        value,
    };
    let (source, container, target) = if let Some(r) = &m.resource {
        let source = if r.container.is_some() {
            engine::MetricSource::ContainerResource
        } else {
            engine::MetricSource::Resource
        };
        let t = match (r.target_utilization, &r.target_average_value) {
            (Some(u), _) => target(engine::TargetType::Utilization, Some(u), None, None),
            (None, Some(q)) => {
                let v = positive_quantity(at(".resource.targetAverageValue"), q)?;
                target(engine::TargetType::AverageValue, None, Some(v), None)
            }
            (None, None) => {
                return Err(SpecError::ExactlyOne {
                    field: at(".resource"),
                    choices: "targetUtilization, targetAverageValue",
                });
            }
        };
        (source, r.container.clone(), t)
    } else if let Some(k) = &m.kafka_lag {
        return Ok(engine::MetricSpec {
            name: m.name.clone(),
            source: engine::MetricSource::KafkaLag,
            container: None,
            target: engine::MetricTarget::default(),
            kafka_lag: Some(kafka_lag_to_engine(k)),
        });
    } else if let Some(p) = &m.prometheus {
        let q = |name: &str, q: &Quantity| positive_quantity(at(&format!(".prometheus.{name}")), q);
        let (source, t) = match (
            &p.target_value,
            &p.target_average_value,
            &p.target_per_replica,
        ) {
            (Some(v), None, None) => (
                engine::MetricSource::External,
                target(
                    engine::TargetType::Value,
                    None,
                    None,
                    Some(q("targetValue", v)?),
                ),
            ),
            (None, Some(v), None) => (
                engine::MetricSource::Pods,
                target(
                    engine::TargetType::AverageValue,
                    None,
                    Some(q("targetAverageValue", v)?),
                    None,
                ),
            ),
            (None, None, Some(v)) => (
                engine::MetricSource::External,
                target(
                    engine::TargetType::AverageValue,
                    None,
                    Some(q("targetPerReplica", v)?),
                    None,
                ),
            ),
            _ => {
                return Err(SpecError::ExactlyOne {
                    field: at(".prometheus"),
                    choices: "targetValue, targetAverageValue, targetPerReplica",
                });
            }
        };
        (source, None, t)
    } else {
        return Err(SpecError::ExactlyOne {
            field: at(""),
            choices: SOURCES,
        });
    };
    Ok(engine::MetricSpec {
        name: m.name.clone(),
        source,
        container,
        target,
        kafka_lag: None,
    })
}

/// KEDA's Kafka scaler settings as the engine takes them.
fn kafka_lag_to_engine(k: &KafkaLagMetric) -> engine::KafkaLag {
    // Lag counts and seconds fit an f64 exactly far beyond any real value (2^53).
    #[allow(clippy::cast_precision_loss)]
    engine::KafkaLag {
        lag_per_replica: k.lag_per_replica as f64,
        activation_lag_threshold: k.activation_lag_threshold as f64,
        allow_idle_consumers: k.allow_idle_consumers,
        limit_to_partitions_with_lag: k.limit_to_partitions_with_lag,
        exclude_persistent_lag: k.exclude_persistent_lag,
        cooldown_seconds: f64::from(k.cooldown_seconds),
        predictive: k.predictive.map(|p| engine::Predictive {
            target_drain_seconds: f64::from(p.target_drain_seconds),
            bypass_rate_limits: p.bypass_rate_limits,
            lookahead_seconds: f64::from(p.lookahead_seconds),
        }),
        lag_sampling: match k.lag_sampling {
            LagSampling::Latest => engine::LagSampling::Latest,
            LagSampling::CommitInterval => engine::LagSampling::CommitInterval,
        },
    }
}

fn check_behavior(b: &Behavior) -> Result<(), SpecError> {
    for (dir, rules) in [("scaleUp", &b.scale_up), ("scaleDown", &b.scale_down)] {
        let Some(rules) = rules else { continue };
        let at = |rest: &str| format!("spec.behavior.{dir}.{rest}");
        if let Some(w) = rules.stabilization_window_seconds
            && !STABILIZATION_WINDOW_SECONDS.contains(w)
        {
            return Err(range(
                at("stabilizationWindowSeconds"),
                w,
                STABILIZATION_WINDOW_SECONDS.message,
            ));
        }
        if let Some(t) = rules.tolerance
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(range(
                at("tolerance"),
                t,
                "must be a finite number, at least 0",
            ));
        }
        for (i, p) in rules.policies.iter().flatten().enumerate() {
            if !POLICY_VALUE.contains(p.value) {
                return Err(range(
                    at(&format!("policies[{i}].value")),
                    p.value,
                    POLICY_VALUE.message,
                ));
            }
            if !POLICY_PERIOD_SECONDS.contains(p.period_seconds) {
                return Err(range(
                    at(&format!("policies[{i}].periodSeconds")),
                    p.period_seconds,
                    POLICY_PERIOD_SECONDS.message,
                ));
            }
        }
    }
    Ok(())
}

fn check_container_policy(i: usize, p: &ContainerPolicy) -> Result<(), SpecError> {
    let at = |rest: &str| format!("spec.vertical.containerPolicies[{i}].{rest}");
    if p.container_name.is_empty() {
        return Err(invalid(at("containerName"), "must not be empty"));
    }
    let parse = |which: &str, b: &Option<ResourceBounds>| -> Result<[Option<f64>; 2], SpecError> {
        let Some(b) = b else { return Ok([None, None]) };
        let one = |res: &str, q: &Option<Quantity>| {
            q.as_ref()
                .map(|q| non_negative_quantity(at(&format!("{which}.{res}")), q))
                .transpose()
        };
        Ok([one("cpu", &b.cpu)?, one("memory", &b.memory)?])
    };
    let min = parse("minAllowed", &p.min_allowed)?;
    let max = parse("maxAllowed", &p.max_allowed)?;
    for (k, res) in ["cpu", "memory"].into_iter().enumerate() {
        if let (Some(lo), Some(hi)) = (min[k], max[k])
            && lo > hi
        {
            return Err(invalid(
                at(&format!("minAllowed.{res}")),
                format!("must be less than or equal to maxAllowed.{res}"),
            ));
        }
    }
    Ok(())
}

impl From<&Behavior> for engine::Behavior {
    fn from(b: &Behavior) -> Self {
        Self {
            scale_up: b.scale_up.as_ref().map(engine::ScalingRules::from),
            scale_down: b.scale_down.as_ref().map(engine::ScalingRules::from),
        }
    }
}

impl From<&ScalingRules> for engine::ScalingRules {
    fn from(r: &ScalingRules) -> Self {
        Self {
            stabilization_window_seconds: r.stabilization_window_seconds,
            select_policy: r.select_policy,
            policies: r.policies.as_ref().map(|ps| {
                ps.iter()
                    .map(|p| engine::RatePolicy {
                        kind: p.kind,
                        value: p.value,
                        period_seconds: p.period_seconds,
                    })
                    .collect()
            }),
            tolerance: r.tolerance,
        }
    }
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

fn range(field: impl Into<String>, value: impl ToString, problem: &'static str) -> SpecError {
    SpecError::OutOfRange {
        field: field.into(),
        value: value.to_string(),
        problem,
    }
}

fn positive_quantity(field: String, q: &Quantity) -> Result<f64, SpecError> {
    let v = non_negative_quantity(field.clone(), q)?;
    if v < 0.001 {
        return Err(SpecError::Quantity {
            field,
            value: q.0.clone(),
            problem: "must be at least 1m (0.001)",
        });
    }
    Ok(v)
}

fn non_negative_quantity(field: String, q: &Quantity) -> Result<f64, SpecError> {
    match parse_quantity(&q.0) {
        Ok(v) if v >= 0.0 => Ok(v),
        Ok(_) => Err(SpecError::Quantity {
            field,
            value: q.0.clone(),
            problem: "must not be negative",
        }),
        Err(problem) => Err(SpecError::Quantity {
            field,
            value: q.0.clone(),
            problem,
        }),
    }
}

/// Parse a Kubernetes quantity (`resource.Quantity` syntax) into base units:
/// `500m` = 0.5, `2Gi` = 2147483648, `1.5k` = 1500, `1e3` = 1000, `12` = 12.
///
/// The grammar is upstream's: an optional sign, a decimal number (`1`, `1.5`, `.5`, `1.`), and
/// one optional suffix: binary SI (`Ki` .. `Ei`), decimal SI (`n`, `u`, `m`, `k`, `M`, `G`,
/// `T`, `P`, `E`) or a decimal exponent (`e3`, `E-2`). The error says what is wrong.
pub fn parse_quantity(s: &str) -> Result<f64, &'static str> {
    const NOT: &str = "is not a quantity (e.g. 500m, 2Gi, 1.5, 1e3)";
    let s = s.trim();
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'-') => (-1.0, &s[1..]),
        Some(b'+') => (1.0, &s[1..]),
        Some(_) => (1.0, s),
        None => return Err("is empty, not a quantity"),
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return Err(NOT);
    }
    let mantissa: f64 = number.parse().map_err(|_| NOT)?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => {
            let exp = suffix
                .strip_prefix(['e', 'E'])
                .filter(|e| {
                    let d = e.strip_prefix(['+', '-']).unwrap_or(e);
                    !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())
                })
                .ok_or(NOT)?;
            // The whole `<number>e<exp>` is parsed as one float (correctly rounded):
            // `mantissa * 10^exp` underflowed to 0 or overflowed for large exponents
            // (`…10e-311` was 0; found by the `quantity` fuzz target against the agent).
            let _: i32 = exp.parse().map_err(|_| NOT)?;
            let v: f64 = format!("{number}{suffix}").parse().map_err(|_| NOT)?;
            return if v.is_finite() {
                Ok(sign * v)
            } else {
                Err("is too large")
            };
        }
    };
    let v = sign * mantissa * multiplier;
    if v.is_finite() {
        Ok(v)
    } else {
        Err("is too large")
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;

//! Settings of the vertical recommender, with the VPA's defaults, and container policies.
//!
//! [`ModelConfig`] shapes how samples are kept (half-lives, the memory aggregation interval,
//! the OOM bump; upstream's `AggregationsConfig` and recommender flags) and is fixed when a
//! [`super::VerticalState`] is made. [`VerticalConfig`] shapes how a recommendation is read from
//! them (percentiles, margin, confidence, pod minimum, policies) and can change every call.
//! Both are serde structs with units in their names, validated once with an error naming the
//! field.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::amount::{Resource, Resources};
use super::{VerticalError, finite, invalid, non_negative};

/// A day.
const DAY: f64 = 86_400.0;

/// How samples are aggregated (`aggregations_config.go`, `container.go`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `DefaultCPUHistogramDecayHalfLife` (24h).
    pub cpu_half_life_seconds: f64,
    /// `DefaultMemoryHistogramDecayHalfLife` (24h).
    pub memory_half_life_seconds: f64,
    /// `DefaultMemoryAggregationInterval` (24h): one memory peak per container and interval.
    pub memory_aggregation_interval_seconds: f64,
    /// `DefaultMemoryAggregationIntervalCount` (8): a container unseen for this many intervals
    /// is expired.
    pub memory_aggregation_interval_count: u32,
    /// `OOMBumpUpRatio` (1.2).
    pub oom_bump_up_ratio: f64,
    /// `OOMMinBumpUp` (100 MiB).
    pub oom_min_bump_up_bytes: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            cpu_half_life_seconds: DAY,
            memory_half_life_seconds: DAY,
            memory_aggregation_interval_seconds: DAY,
            memory_aggregation_interval_count: 8,
            oom_bump_up_ratio: 1.2,
            oom_min_bump_up_bytes: 100.0 * 1024.0 * 1024.0,
        }
    }
}

impl ModelConfig {
    /// `GetMemoryAggregationWindowLength`: interval times count (8 days).
    pub fn memory_aggregation_window_seconds(&self) -> f64 {
        self.memory_aggregation_interval_seconds * f64::from(self.memory_aggregation_interval_count)
    }

    /// Check every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), VerticalError> {
        for (name, v) in [
            ("cpu_half_life_seconds", self.cpu_half_life_seconds),
            ("memory_half_life_seconds", self.memory_half_life_seconds),
            (
                "memory_aggregation_interval_seconds",
                self.memory_aggregation_interval_seconds,
            ),
        ] {
            positive(name, v)?;
        }
        if self.memory_aggregation_interval_count == 0 {
            return Err(invalid(
                "memory_aggregation_interval_count",
                "must be at least 1",
            ));
        }
        let ratio = finite(|| "oom_bump_up_ratio".into(), self.oom_bump_up_ratio)?;
        if ratio < 1.0 {
            return Err(invalid("oom_bump_up_ratio", "must be at least 1"));
        }
        non_negative(
            || "oom_min_bump_up_bytes".into(),
            self.oom_min_bump_up_bytes,
        )?;
        Ok(())
    }
}

/// Which estimator turns the history into requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EstimatorKind {
    /// Percentiles of the decaying histograms, as the VPA.
    #[default]
    Histogram,
    /// `u + z * s` over the same decayed weights.
    MeanVariance,
}

/// Percentiles of the histogram estimator (`CreatePodResourceRecommender`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Percentiles {
    /// `targetCPUPercentile`, `targetMemoryPeaksPercentile` (0.9).
    pub target: f64,
    /// `lowerBound...Percentile` (0.5).
    pub lower_bound: f64,
    /// `upperBound...Percentile` (0.95).
    pub upper_bound: f64,
}

impl Default for Percentiles {
    fn default() -> Self {
        Self {
            target: 0.9,
            lower_bound: 0.5,
            upper_bound: 0.95,
        }
    }
}

/// `z` values of the mean/variance estimator: each estimate is `u + z * s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MeanVarianceConfig {
    /// Target (1.645: the 95th percentile of a normal distribution).
    pub z: f64,
    /// Lower bound (0: the mean, the normal's median, as the VPA's p50 lower bound).
    pub z_lower_bound: f64,
    /// Upper bound (2.326: the normal's 99th percentile).
    pub z_upper_bound: f64,
}

impl Default for MeanVarianceConfig {
    fn default() -> Self {
        Self {
            z: 1.645,
            z_lower_bound: 0.0,
            z_upper_bound: 2.326,
        }
    }
}

/// `WithConfidenceMultiplier(multiplier, exponent)`: an estimate is scaled by
/// `(1 + multiplier / confidence)^exponent`, confidence being the history's length in days.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfidenceMultiplier {
    pub multiplier: f64,
    pub exponent: f64,
}

/// How a recommendation is read from the history, and the container policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct VerticalConfig {
    /// `histogram` (the VPA) or `mean_variance`.
    pub estimator: EstimatorKind,
    /// Per-container bounds and controlled resources; `*` matches containers not listed.
    pub container_policies: Vec<ContainerPolicy>,
    /// Percentiles for `histogram`.
    pub percentiles: Percentiles,
    /// `z` values for `mean_variance`.
    pub mean_variance: MeanVarianceConfig,
    /// `recommendation-margin-fraction` (0.15), added to all three estimates.
    pub safety_margin_fraction: f64,
    /// `pod-recommendation-min-cpu-millicores` (25m), split evenly over the containers.
    pub pod_min_cpu_cores: f64,
    /// `pod-recommendation-min-memory-mb` (250 MiB), split evenly over the containers.
    pub pod_min_memory_bytes: f64,
    /// The unit of confidence (24h): a history this long, sampled once a minute, is 1.
    pub confidence_interval_seconds: f64,
    /// Upper bound confidence multiplier (1, +1): `(1 + 1/days)`, infinite with no history.
    pub upper_bound_confidence: ConfidenceMultiplier,
    /// Lower bound confidence multiplier (0.001, -2): `(1 + 0.001/days)^-2`, 0 with no history.
    pub lower_bound_confidence: ConfidenceMultiplier,
    /// Off by default (the VPA's unbounded start-up upper bound, autoscaler#5569). When set,
    /// the upper bound's confidence multiplier is at most this (e.g. 3, the VPA's own value
    /// after 12 hours of history).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_upper_bound_multiplier: Option<f64>,
}

impl Default for VerticalConfig {
    fn default() -> Self {
        Self {
            estimator: EstimatorKind::Histogram,
            container_policies: Vec::new(),
            percentiles: Percentiles::default(),
            mean_variance: MeanVarianceConfig::default(),
            safety_margin_fraction: 0.15,
            pod_min_cpu_cores: 0.025,
            pod_min_memory_bytes: 250.0 * 1024.0 * 1024.0,
            confidence_interval_seconds: DAY,
            upper_bound_confidence: ConfidenceMultiplier {
                multiplier: 1.0,
                exponent: 1.0,
            },
            lower_bound_confidence: ConfidenceMultiplier {
                multiplier: 0.001,
                exponent: -2.0,
            },
            max_upper_bound_multiplier: None,
        }
    }
}

impl VerticalConfig {
    /// Check every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), VerticalError> {
        let p = &self.percentiles;
        for (name, v) in [
            ("percentiles.target", p.target),
            ("percentiles.lower_bound", p.lower_bound),
            ("percentiles.upper_bound", p.upper_bound),
        ] {
            let v = finite(|| name.into(), v)?;
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(name, format!("{v} must be between 0 and 1")));
            }
        }
        let mv = &self.mean_variance;
        for (name, v) in [
            ("mean_variance.z", mv.z),
            ("mean_variance.z_lower_bound", mv.z_lower_bound),
            ("mean_variance.z_upper_bound", mv.z_upper_bound),
        ] {
            finite(|| name.into(), v)?;
        }
        non_negative(
            || "safety_margin_fraction".into(),
            self.safety_margin_fraction,
        )?;
        non_negative(|| "pod_min_cpu_cores".into(), self.pod_min_cpu_cores)?;
        non_negative(|| "pod_min_memory_bytes".into(), self.pod_min_memory_bytes)?;
        positive(
            "confidence_interval_seconds",
            self.confidence_interval_seconds,
        )?;
        for (name, c) in [
            ("upper_bound_confidence", self.upper_bound_confidence),
            ("lower_bound_confidence", self.lower_bound_confidence),
        ] {
            non_negative(|| format!("{name}.multiplier"), c.multiplier)?;
            finite(|| format!("{name}.exponent"), c.exponent)?;
        }
        if let Some(m) = self.max_upper_bound_multiplier {
            let m = finite(|| "max_upper_bound_multiplier".into(), m)?;
            if m < 1.0 {
                return Err(invalid("max_upper_bound_multiplier", "must be at least 1"));
            }
        }
        for (i, policy) in self.container_policies.iter().enumerate() {
            policy.validate(i)?;
            if self.container_policies[..i]
                .iter()
                .any(|p| p.container_name == policy.container_name)
            {
                return Err(invalid(
                    format!("container_policies[{i}].container_name"),
                    format!("{:?} is listed twice", policy.container_name),
                ));
            }
        }
        Ok(())
    }
}

/// Bounds for one container (upstream's `ContainerResourcePolicy` without `mode`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerPolicy {
    /// The container, or `*` for every container not listed by name.
    pub container_name: String,
    /// Never recommend less (a zero or absent value is no bound, as upstream).
    #[serde(default)]
    pub min_allowed: Resources,
    /// Never recommend more (a zero or absent value is no bound, as upstream). Applied after
    /// `min_allowed`, so it wins when they cross.
    #[serde(default)]
    pub max_allowed: Resources,
    /// Resources to recommend; `None` means both, empty means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controlled_resources: Option<Vec<Resource>>,
}

impl ContainerPolicy {
    /// A policy without bounds for `name`.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            container_name: name.into(),
            min_allowed: Resources::default(),
            max_allowed: Resources::default(),
            controlled_resources: None,
        }
    }

    fn validate(&self, i: usize) -> Result<(), VerticalError> {
        let at = |rest: &str| format!("container_policies[{i}].{rest}");
        if self.container_name.is_empty() {
            return Err(invalid(at("container_name"), "must not be empty"));
        }
        for (which, b) in [
            ("min_allowed", self.min_allowed),
            ("max_allowed", self.max_allowed),
        ] {
            for r in Resource::ALL {
                if let Some(v) = b.get(r) {
                    non_negative(|| at(&format!("{which}.{}", field_name(r))), v)?;
                }
            }
        }
        Ok(())
    }
}

/// The [`Resources`] field of a resource.
pub(crate) fn field_name(r: Resource) -> &'static str {
    match r {
        Resource::Cpu => "cpu_cores",
        Resource::Memory => "memory_bytes",
    }
}

fn positive(name: &str, v: f64) -> Result<f64, VerticalError> {
    let v = finite(|| name.into(), v)?;
    if v <= 0.0 {
        return Err(invalid(name, format!("{v} must be positive")));
    }
    Ok(v)
}

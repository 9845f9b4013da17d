//! From history to three estimates per resource (`pkg/recommender/logic/estimator.go`,
//! `logic/recommender.go` `CreatePodResourceRecommender`).
//!
//! Each of target, lower bound and upper bound is a pipeline on amounts (millicores, bytes):
//!
//! ```text
//! base        histogram: percentile p of the CPU histogram / the memory-peak histogram
//!                        (target p90, lower p50, upper p95)
//!             mean_variance: u + z*s of the same samples (z 1.645, 0, 2.326)
//! margin      base + trunc(base * 0.15)
//! confidence  upper: * (1 + 1/c)^1      lower: * (1 + 0.001/c)^-2     (target: none)
//! minimum     max(estimate, pod minimum / containers)     25m CPU, 250Mi memory per pod
//! ```
//!
//! with `c` the confidence: `min(history days, samples / 1440)`, the number of days of
//! history at one sample a minute (`getConfidence`). With no history the upper bound is
//! infinite (capped at 1e14) and the lower bound 0.

use super::aggregate::AggregateState;
use super::amount::{
    Amounts, Resource, cpu_amount_from_cores, memory_amount_from_bytes, scale_resource,
};
use super::config::{ConfidenceMultiplier, EstimatorKind, VerticalConfig};

/// The first step of a pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Base {
    /// `percentileEstimator`: a percentile (0..=1) of each histogram.
    Percentile { cpu: f64, memory: f64 },
    /// `u + z * s`: CPU from the CPU samples, memory from the memory peaks.
    MeanVariance { z: f64 },
    /// `constEstimator` (upstream's tests).
    Const(Amounts),
}

/// One estimate: base, margin, optional confidence multiplier (and Tidal's optional cap on
/// that multiplier).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pipeline {
    pub base: Base,
    pub margin_fraction: f64,
    pub confidence: Option<ConfidenceMultiplier>,
    pub max_multiplier: Option<f64>,
}

/// Target, lower bound and upper bound pipelines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimators {
    pub target: Pipeline,
    pub lower_bound: Pipeline,
    pub upper_bound: Pipeline,
}

impl Estimators {
    /// `CreatePodResourceRecommender` for the configured estimator.
    pub fn from_config(cfg: &VerticalConfig) -> Self {
        let base = |p: f64, z: f64| match cfg.estimator {
            EstimatorKind::Histogram => Base::Percentile { cpu: p, memory: p },
            EstimatorKind::MeanVariance => Base::MeanVariance { z },
        };
        let (p, mv) = (&cfg.percentiles, &cfg.mean_variance);
        let margin = cfg.safety_margin_fraction;
        Self {
            target: Pipeline {
                base: base(p.target, mv.z),
                margin_fraction: margin,
                confidence: None,
                max_multiplier: None,
            },
            lower_bound: Pipeline {
                base: base(p.lower_bound, mv.z_lower_bound),
                margin_fraction: margin,
                confidence: Some(cfg.lower_bound_confidence),
                max_multiplier: None,
            },
            upper_bound: Pipeline {
                base: base(p.upper_bound, mv.z_upper_bound),
                margin_fraction: margin,
                confidence: Some(cfg.upper_bound_confidence),
                max_multiplier: cfg.max_upper_bound_multiplier,
            },
        }
    }
}

impl Pipeline {
    /// The estimate for `s` given its confidence.
    pub fn estimate(&self, s: &AggregateState, confidence: f64) -> Amounts {
        let base = base_estimate(self.base, s);
        let with_margin = margin(base, self.margin_fraction);
        match self.confidence {
            Some(c) => confidence_multiplier(with_margin, c, confidence, self.max_multiplier),
            None => with_margin,
        }
    }
}

/// `getConfidence`: `min(lifespan / interval, samples / interval-in-minutes)`; 1 for a day of
/// history sampled once a minute.
pub fn confidence(s: &AggregateState, interval_seconds: f64) -> f64 {
    let lifespan = match (s.first_sample(), s.last_sample()) {
        (Some(first), Some(last)) => (last - first) / interval_seconds,
        _ => 0.0,
    };
    let samples = s.total_samples() as f64 / (interval_seconds / 60.0);
    lifespan.min(samples)
}

/// The base estimate.
pub fn base_estimate(base: Base, s: &AggregateState) -> Amounts {
    match base {
        Base::Percentile { cpu, memory } => Amounts {
            cpu: cpu_amount_from_cores(s.cpu_histogram().percentile(cpu)),
            memory: memory_amount_from_bytes(s.memory_histogram().percentile(memory)),
        },
        Base::MeanVariance { z } => {
            let mv = |m: &super::moments::DecayingMoments| match (m.mean(), m.std_dev()) {
                (Some(u), Some(sd)) => (u + z * sd).max(0.0),
                _ => 0.0,
            };
            Amounts {
                cpu: cpu_amount_from_cores(mv(s.cpu_moments())),
                memory: memory_amount_from_bytes(mv(s.memory_peak_moments())),
            }
        }
        Base::Const(a) => a,
    }
}

/// `marginEstimator`: `amount + trunc(amount * fraction)`.
pub fn margin(a: Amounts, fraction: f64) -> Amounts {
    a.map(|_, v| v + scale_resource(v, fraction))
}

/// `confidenceMultiplier`: `amount * (1 + multiplier / confidence)^exponent`, the factor at
/// most `max_multiplier` when set.
pub fn confidence_multiplier(
    a: Amounts,
    c: ConfidenceMultiplier,
    confidence: f64,
    max_multiplier: Option<f64>,
) -> Amounts {
    a.map(|_, v| scale_by_confidence(v, c, confidence, max_multiplier))
}

/// [`confidence_multiplier`] on one amount.
pub fn scale_by_confidence(
    v: i64,
    c: ConfidenceMultiplier,
    confidence: f64,
    max_multiplier: Option<f64>,
) -> i64 {
    let mut factor = (1.0 + c.multiplier / confidence).powf(c.exponent);
    if let Some(m) = max_multiplier {
        factor = factor.min(m);
    }
    scale_resource(v, factor)
}

/// `minResourcesEstimator`: at least `min`.
pub fn at_least(a: Amounts, min: Amounts) -> Amounts {
    a.map(|r, v| v.max(min.get(r)))
}

/// `GetRecommendedPodResources`' minimum: the pod minimum split evenly over `containers`.
pub fn container_minimum(cfg: &VerticalConfig, containers: usize) -> Amounts {
    let fraction = 1.0 / containers.max(1) as f64;
    Amounts {
        cpu: scale_resource(cpu_amount_from_cores(cfg.pod_min_cpu_cores), fraction),
        memory: scale_resource(memory_amount_from_bytes(cfg.pod_min_memory_bytes), fraction),
    }
}

/// Target, lower and upper bound of one container before policies, as amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecommendation {
    pub target: Amounts,
    pub lower_bound: Amounts,
    pub upper_bound: Amounts,
}

impl RawRecommendation {
    /// The three estimates for `s`, each at least `min`.
    pub fn estimate(est: &Estimators, s: &AggregateState, confidence: f64, min: Amounts) -> Self {
        Self {
            target: at_least(est.target.estimate(s, confidence), min),
            lower_bound: at_least(est.lower_bound.estimate(s, confidence), min),
            upper_bound: at_least(est.upper_bound.estimate(s, confidence), min),
        }
    }

    /// One resource's `(target, lower, upper)`.
    pub fn get(&self, r: Resource) -> (i64, i64, i64) {
        (
            self.target.get(r),
            self.lower_bound.get(r),
            self.upper_bound.get(r),
        )
    }
}

#[cfg(test)]
#[path = "estimator_tests.rs"]
mod tests;

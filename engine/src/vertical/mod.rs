//! The vertical recommender: right-sized container requests from usage history, the VPA
//! recommender's algorithm (kubernetes/autoscaler `vertical-pod-autoscaler/pkg/recommender`),
//! plus a mean/variance estimator and the rule that lets horizontal and vertical scaling share
//! a workload (autoscaler#6060). Pure: no I/O, no clock reads; every time is an argument.
//!
//! One concern per file, each naming the upstream file it follows:
//!
//! - [`amount`]: CPU millicores and memory bytes as `i64`, as `model/types.go` keeps them.
//! - [`histogram_options`], [`histogram`], [`decaying`]: the decaying exponential histograms
//!   (`util/histogram_options.go`, `util/histogram.go`, `util/decaying_histogram.go`).
//! - [`moments`]: a decaying weighted mean and variance (Tidal's, for `meanVariance` and for
//!   the horizontal/vertical rule).
//! - [`instance`]: one container of one pod: a memory peak per aggregation interval, OOMs
//!   (`model/container.go`).
//! - [`aggregate`]: everything known about one container name (`model/aggregate_container_state.go`).
//! - [`config`]: the settings and the container policies, validated once.
//! - [`estimator`]: percentiles, margin, confidence, pod minimum (`logic/estimator.go`,
//!   `logic/recommender.go`) and `u + z*s`.
//! - [`capping`]: `minAllowed`/`maxAllowed` and controlled resources (`utils/vpa/capping.go`).
//! - [`coordination`]: sizing a resource that a horizontal utilization target also uses.
//! - [`recommend`]: one container's recommendation, the steps in upstream's order.
//! - [`state`]: [`VerticalState`], the API the controller calls each cycle, and its checkpoint.
//! - [`convert`]: from the CRD's `spec.vertical` and to its `status.recommendations`.
//!
//! `docs/vertical.md` gives the algorithm, the constants with their upstream anchors, and
//! where Tidal differs.

pub mod aggregate;
pub mod amount;
pub mod capping;
pub mod config;
pub mod coordination;
pub mod decaying;
pub mod estimator;
pub mod histogram;
pub mod histogram_options;
pub mod instance;
pub mod moments;
pub mod recommend;
pub mod state;

pub use amount::{Resource, Resources};
pub use config::{
    ConfidenceMultiplier, ContainerPolicy, EstimatorKind, MeanVarianceConfig, ModelConfig,
    Percentiles, VerticalConfig,
};
pub use coordination::{Band, HorizontalTarget, coordinate, horizontal_targets};
pub use decaying::DecayingHistogram;
pub use histogram::{Histogram, HistogramCheckpoint};
pub use histogram_options::HistogramOptions;
pub use state::{
    ContainerCheckpoint, ContainerRecommendation, Observed, OomOutcome, VerticalCheckpoint,
    VerticalState,
};

/// Everything that can be wrong with the vertical recommender's input. Each variant names the
/// field; [`VerticalError::label`] gives a fixed metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerticalError {
    /// A sample, request, time or setting is NaN or infinite. Never taken as zero.
    #[error("{field}: {value} is not a finite number")]
    NotFinite { field: String, value: f64 },
    /// A usage, request or weight below zero.
    #[error("{field}: {value} must not be negative")]
    Negative { field: String, value: f64 },
    /// A setting outside its range, or an empty name.
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// A checkpoint that cannot be loaded (unknown version, bucket out of range, ...).
    #[error("checkpoint {field}: {problem}")]
    Checkpoint { field: String, problem: String },
    /// Two histograms or accumulators with different bucketing or half-lives.
    #[error("cannot merge {what}: {problem}")]
    Mismatch { what: &'static str, problem: String },
}

impl VerticalError {
    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotFinite { .. } => "not_finite",
            Self::Negative { .. } => "negative",
            Self::Invalid { .. } => "invalid",
            Self::Checkpoint { .. } => "checkpoint",
            Self::Mismatch { .. } => "mismatch",
        }
    }
}

/// `Ok(v)` when `v` is finite, else [`VerticalError::NotFinite`] naming the field.
pub(crate) fn finite(field: impl FnOnce() -> String, v: f64) -> Result<f64, VerticalError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(VerticalError::NotFinite {
            field: field(),
            value: v,
        })
    }
}

/// `Ok(v)` when `v` is finite and not negative.
pub(crate) fn non_negative(field: impl Fn() -> String, v: f64) -> Result<f64, VerticalError> {
    let v = finite(&field, v)?;
    if v < 0.0 {
        return Err(VerticalError::Negative {
            field: field(),
            value: v,
        });
    }
    Ok(v)
}

/// An [`VerticalError::Invalid`].
pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> VerticalError {
    VerticalError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

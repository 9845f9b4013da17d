//! Everything known about one container name of the workload (upstream's
//! `AggregateContainerState`, `pkg/recommender/model/aggregate_container_state.go`).
//!
//! - CPU: a decaying histogram of usage in cores, each sample weighted by
//!   `max(request cores, 0.1)` (`minSampleWeight`): when the request grows, the history so far
//!   counts less, which reacts quickly to CPU starvation.
//! - Memory: a decaying histogram of per-interval peaks (one per pod and 24h), weight 1.
//! - First and last sample time and the sample count, from CPU samples only (they give the
//!   confidence).
//! - Tidal's additions, with the same decayed weights ([`DecayingMoments`]): the mean and
//!   variance of CPU usage and of memory peaks (the `meanVariance` estimator), and the mean of
//!   every memory sample (the horizontal/vertical rule needs the mean usage the HPA sees).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::amount::{bytes_from_memory_amount, cores_from_cpu_amount};
use super::config::ModelConfig;
use super::decaying::DecayingHistogram;
use super::histogram::HistogramCheckpoint;
use super::histogram_options::{EPSILON, HistogramOptions, MIN_SAMPLE_WEIGHT};
use super::instance::Aggregator;
use super::moments::{DecayingMoments, MomentsCheckpoint};
use super::{VerticalError, finite};

/// The aggregated history of one container name.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateState {
    cpu: DecayingHistogram,
    memory_peaks: DecayingHistogram,
    cpu_moments: DecayingMoments,
    memory_peak_moments: DecayingMoments,
    memory_usage: DecayingMoments,
    first_sample: Option<f64>,
    last_sample: Option<f64>,
    total_samples: u64,
    created: f64,
}

/// An [`AggregateState`] in a checkpoint (upstream's `VerticalPodAutoscalerCheckpointStatus`
/// plus Tidal's moments).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerCheckpoint {
    /// `FirstSampleStart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_sample_unix_seconds: Option<f64>,
    /// `LastSampleStart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sample_unix_seconds: Option<f64>,
    /// `TotalSamplesCount` (CPU samples).
    #[serde(default)]
    pub total_samples: u64,
    /// When the container was first seen (expiry of a container without samples).
    pub created_unix_seconds: f64,
    /// `CPUHistogram`.
    #[serde(default)]
    pub cpu: HistogramCheckpoint,
    /// `MemoryHistogram` (peaks).
    #[serde(default)]
    pub memory: HistogramCheckpoint,
    /// Mean and variance of CPU usage (cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_moments: Option<MomentsCheckpoint>,
    /// Mean and variance of memory peaks (bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_peak_moments: Option<MomentsCheckpoint>,
    /// Mean of all memory samples (bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_usage: Option<MomentsCheckpoint>,
}

impl AggregateState {
    /// `NewAggregateContainerState`, created at `created`.
    pub fn new(model: &ModelConfig, created: f64) -> Result<Self, VerticalError> {
        Ok(Self {
            cpu: DecayingHistogram::new(HistogramOptions::cpu(), model.cpu_half_life_seconds)?,
            memory_peaks: DecayingHistogram::new(
                HistogramOptions::memory(),
                model.memory_half_life_seconds,
            )?,
            cpu_moments: DecayingMoments::new(model.cpu_half_life_seconds, EPSILON)?,
            memory_peak_moments: DecayingMoments::new(model.memory_half_life_seconds, EPSILON)?,
            memory_usage: DecayingMoments::new(model.memory_half_life_seconds, EPSILON)?,
            first_sample: None,
            last_sample: None,
            total_samples: 0,
            created,
        })
    }

    /// Both histograms, to fill them directly as upstream's estimator tests do.
    #[cfg(test)]
    pub(crate) fn histograms_mut(&mut self) -> (&mut DecayingHistogram, &mut DecayingHistogram) {
        (&mut self.cpu, &mut self.memory_peaks)
    }

    /// The CPU usage histogram (cores).
    pub fn cpu_histogram(&self) -> &DecayingHistogram {
        &self.cpu
    }

    /// The memory peaks histogram (bytes).
    pub fn memory_histogram(&self) -> &DecayingHistogram {
        &self.memory_peaks
    }

    /// Mean and variance of CPU usage, weighted as the CPU histogram.
    pub fn cpu_moments(&self) -> &DecayingMoments {
        &self.cpu_moments
    }

    /// Mean and variance of the memory peaks, weighted as the memory histogram.
    pub fn memory_peak_moments(&self) -> &DecayingMoments {
        &self.memory_peak_moments
    }

    /// Mean of every memory usage sample (decayed with the memory half-life).
    pub fn memory_usage(&self) -> &DecayingMoments {
        &self.memory_usage
    }

    /// `FirstSampleStart`.
    pub fn first_sample(&self) -> Option<f64> {
        self.first_sample
    }

    /// `LastSampleStart`.
    pub fn last_sample(&self) -> Option<f64> {
        self.last_sample
    }

    /// `TotalSamplesCount`.
    pub fn total_samples(&self) -> u64 {
        self.total_samples
    }

    /// `isExpired`: no CPU sample for the memory aggregation window (8 days), or, with no
    /// sample at all, created that long ago.
    pub fn is_expired(&self, now: f64, window_seconds: f64) -> bool {
        match self.last_sample {
            Some(last) if self.total_samples > 0 => now - last >= window_seconds,
            _ => now - self.created >= window_seconds,
        }
    }

    /// `MergeContainerState`: add `other`'s history to this one.
    pub fn merge(&mut self, other: &AggregateState) -> Result<(), VerticalError> {
        self.cpu.merge(&other.cpu)?;
        self.memory_peaks.merge(&other.memory_peaks)?;
        self.cpu_moments.merge(&other.cpu_moments)?;
        self.memory_peak_moments.merge(&other.memory_peak_moments)?;
        self.memory_usage.merge(&other.memory_usage)?;
        if let Some(f) = other.first_sample
            && self.first_sample.is_none_or(|mine| f < mine)
        {
            self.first_sample = Some(f);
        }
        if let Some(l) = other.last_sample
            && self.last_sample.is_none_or(|mine| l > mine)
        {
            self.last_sample = Some(l);
        }
        self.total_samples += other.total_samples;
        Ok(())
    }

    /// `SaveToCheckpoint` (histograms lose precision; moments are exact).
    pub fn checkpoint(&self) -> ContainerCheckpoint {
        let moments = |m: &DecayingMoments| (!m.is_empty()).then(|| m.checkpoint());
        ContainerCheckpoint {
            first_sample_unix_seconds: self.first_sample,
            last_sample_unix_seconds: self.last_sample,
            total_samples: self.total_samples,
            created_unix_seconds: self.created,
            cpu: self.cpu.checkpoint(),
            memory: self.memory_peaks.checkpoint(),
            cpu_moments: moments(&self.cpu_moments),
            memory_peak_moments: moments(&self.memory_peak_moments),
            memory_usage: moments(&self.memory_usage),
        }
    }

    /// `LoadFromCheckpoint` into a new state.
    pub fn from_checkpoint(
        model: &ModelConfig,
        cp: &ContainerCheckpoint,
    ) -> Result<Self, VerticalError> {
        let created = finite(
            || "checkpoint created_unix_seconds".into(),
            cp.created_unix_seconds,
        )?;
        let mut s = Self::new(model, created)?;
        for (name, t) in [
            ("first_sample_unix_seconds", cp.first_sample_unix_seconds),
            ("last_sample_unix_seconds", cp.last_sample_unix_seconds),
        ] {
            if let Some(t) = t {
                finite(|| format!("checkpoint {name}"), t)?;
            }
        }
        s.first_sample = cp.first_sample_unix_seconds;
        s.last_sample = cp.last_sample_unix_seconds;
        s.total_samples = cp.total_samples;
        s.memory_peaks.load_checkpoint(&cp.memory)?;
        s.cpu.load_checkpoint(&cp.cpu)?;
        for (m, c) in [
            (&mut s.cpu_moments, &cp.cpu_moments),
            (&mut s.memory_peak_moments, &cp.memory_peak_moments),
            (&mut s.memory_usage, &cp.memory_usage),
        ] {
            if let Some(c) = c {
                m.load_checkpoint(c)?;
            }
        }
        Ok(s)
    }
}

impl Aggregator for AggregateState {
    /// `addCPUSample`.
    fn add_cpu_sample(&mut self, usage_millicores: i64, request_millicores: i64, at: f64) {
        let usage = cores_from_cpu_amount(usage_millicores);
        let weight = cores_from_cpu_amount(request_millicores).max(MIN_SAMPLE_WEIGHT);
        // Amounts and `at` are finite and the weight positive: this cannot fail.
        let _ = self.cpu.add_sample(usage, weight, at);
        self.cpu_moments.add(usage, weight, at);
        if self.last_sample.is_none_or(|last| at > last) {
            self.last_sample = Some(at);
        }
        if self.first_sample.is_none_or(|first| at < first) {
            self.first_sample = Some(at);
        }
        self.total_samples += 1;
    }

    fn add_memory_peak(&mut self, bytes: i64, at: f64) {
        let v = bytes_from_memory_amount(bytes);
        let _ = self.memory_peaks.add_sample(v, 1.0, at);
        self.memory_peak_moments.add(v, 1.0, at);
    }

    fn subtract_memory_peak(&mut self, bytes: i64, at: f64) {
        let v = bytes_from_memory_amount(bytes);
        let _ = self.memory_peaks.subtract_sample(v, 1.0, at);
        self.memory_peak_moments.subtract(v, 1.0, at);
    }

    fn add_memory_usage(&mut self, bytes: i64, at: f64) {
        self.memory_usage
            .add(bytes_from_memory_amount(bytes), 1.0, at);
    }
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;

//! A bucketed histogram and its checkpoint (`pkg/recommender/util/histogram.go`).
//!
//! Each bucket holds the total weight of the samples that fell into it; there is no
//! interpolation inside a bucket. A bucket lighter than the options' epsilon counts as empty.
//! [`Histogram::percentile`] returns the *end* of the bucket where the cumulative weight
//! reaches the percentile (the start of the next bucket), so it errs upwards by at most one
//! bucket (5% with the VPA's buckets); the last bucket has no end and gives its start.
//!
//! Checkpoints keep the total weight and the bucket weights scaled so the heaviest bucket is
//! 10000 (`MaxCheckpointWeight`), rounded; buckets that round to 0 are dropped.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::VerticalError;
use super::histogram_options::HistogramOptions;

/// `MaxCheckpointWeight`: the heaviest bucket's weight in a checkpoint.
pub const MAX_CHECKPOINT_WEIGHT: u32 = 10_000;

/// A histogram as stored in a checkpoint (`HistogramCheckpoint` of the
/// `VerticalPodAutoscalerCheckpoint` API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistogramCheckpoint {
    /// The decaying histogram's reference time; absent for a histogram that never had a
    /// sample (upstream's zero time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_unix_seconds: Option<f64>,
    /// The sum of all bucket weights, before normalization.
    #[serde(default)]
    pub total_weight: f64,
    /// Bucket index to weight, normalized so the heaviest bucket is 10000.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bucket_weights: BTreeMap<usize, u32>,
}

/// A histogram of weighted samples (upstream's `histogram`).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    options: HistogramOptions,
    bucket_weight: Vec<f64>,
    total_weight: f64,
    /// The first non-empty bucket, or the last bucket when there is none.
    min_bucket: usize,
    /// The last non-empty bucket, or 0 when there is none.
    max_bucket: usize,
}

impl Histogram {
    /// `NewHistogram`: empty.
    pub fn new(options: HistogramOptions) -> Self {
        let n = options.num_buckets();
        Self {
            options,
            bucket_weight: vec![0.0; n],
            total_weight: 0.0,
            min_bucket: n - 1,
            max_bucket: 0,
        }
    }

    /// The bucketing scheme.
    pub fn options(&self) -> &HistogramOptions {
        &self.options
    }

    /// The sum of all weights.
    pub fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// The weight of one bucket (0 past the last).
    pub fn bucket_weight(&self, bucket: usize) -> f64 {
        self.bucket_weight.get(bucket).copied().unwrap_or(0.0)
    }

    /// `AddSample`. The weight must be finite and not negative (callers check; a bad weight
    /// is ignored here rather than panicking as upstream does).
    pub fn add_sample(&mut self, value: f64, weight: f64) {
        if !(weight >= 0.0 && weight.is_finite()) {
            return;
        }
        let bucket = self.options.find_bucket(value);
        self.bucket_weight[bucket] += weight;
        self.total_weight += weight;
        let eps = self.options.epsilon();
        if bucket < self.min_bucket && self.bucket_weight[bucket] >= eps {
            self.min_bucket = bucket;
        }
        if bucket > self.max_bucket && self.bucket_weight[bucket] >= eps {
            self.max_bucket = bucket;
        }
    }

    /// `SubtractSample`: remove weight from a value's bucket; a bucket (and the total) left
    /// below epsilon becomes exactly 0 (`safeSubtract`).
    pub fn subtract_sample(&mut self, value: f64, weight: f64) {
        if !(weight >= 0.0 && weight.is_finite()) {
            return;
        }
        let bucket = self.options.find_bucket(value);
        let eps = self.options.epsilon();
        self.total_weight = safe_subtract(self.total_weight, weight, eps);
        self.bucket_weight[bucket] = safe_subtract(self.bucket_weight[bucket], weight, eps);
        self.update_min_and_max_bucket();
    }

    /// `Merge`: add every sample of `other`, which must use the same options.
    pub fn merge(&mut self, other: &Histogram) -> Result<(), VerticalError> {
        if self.options != other.options {
            return Err(VerticalError::Mismatch {
                what: "histograms",
                problem: "different bucketing options".into(),
            });
        }
        if other.min_bucket <= other.max_bucket {
            for b in other.min_bucket..=other.max_bucket {
                self.bucket_weight[b] += other.bucket_weight[b];
            }
        }
        self.total_weight += other.total_weight;
        self.min_bucket = self.min_bucket.min(other.min_bucket);
        self.max_bucket = self.max_bucket.max(other.max_bucket);
        Ok(())
    }

    /// `Percentile`: the end of the bucket where the cumulative weight first reaches
    /// `p * total` (`p` in 0..=1; below 0 gives the first non-empty bucket, above 1 the last).
    /// 0 when the histogram is empty.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        let threshold = p * self.total_weight;
        let mut partial = 0.0;
        let mut bucket = self.min_bucket;
        while bucket < self.max_bucket {
            partial += self.bucket_weight[bucket];
            if partial >= threshold {
                break;
            }
            bucket += 1;
        }
        if bucket < self.options.num_buckets() - 1 {
            self.options.bucket_start(bucket + 1)
        } else {
            // The last bucket has no end.
            self.options.bucket_start(bucket)
        }
    }

    /// `IsEmpty`: the first non-empty bucket is lighter than epsilon.
    pub fn is_empty(&self) -> bool {
        self.bucket_weight[self.min_bucket] < self.options.epsilon()
    }

    /// `Equals`: same options, same non-empty range, weights within 1e-15.
    pub fn equals(&self, other: &Histogram) -> bool {
        if self.options != other.options
            || self.min_bucket != other.min_bucket
            || self.max_bucket != other.max_bucket
        {
            return false;
        }
        self.range()
            .all(|b| (self.bucket_weight[b] - other.bucket_weight[b]).abs() <= 1e-15)
    }

    /// `SaveToChekpoint` (sic): the total weight and the bucket weights scaled so the heaviest
    /// is 10000, rounded half up, zeros dropped. The reference time is the caller's.
    pub fn save_to_checkpoint(&self) -> HistogramCheckpoint {
        let max = self
            .range()
            .map(|b| self.bucket_weight[b])
            .fold(0.0_f64, f64::max);
        let ratio = f64::from(MAX_CHECKPOINT_WEIGHT) / max;
        let mut bucket_weights = BTreeMap::new();
        for b in self.range() {
            // Go: uint32(round(w * ratio)) with round(x) = floor(x + 0.5); NaN (0 * Inf when
            // every weight is 0) gives no bucket.
            let w = (self.bucket_weight[b] * ratio + 0.5).floor();
            if w >= 1.0 {
                bucket_weights.insert(b, w.min(f64::from(u32::MAX)) as u32);
            }
        }
        HistogramCheckpoint {
            reference_unix_seconds: None,
            total_weight: self.total_weight,
            bucket_weights,
        }
    }

    /// `LoadFromCheckpoint`: add the checkpoint's samples, each bucket getting
    /// `weight * total / sum(weights)`. Fails on a negative or non-finite total weight and
    /// on a bucket past the last; the histogram is unchanged then.
    pub fn load_from_checkpoint(&mut self, cp: &HistogramCheckpoint) -> Result<(), VerticalError> {
        if !cp.total_weight.is_finite() || cp.total_weight < 0.0 {
            return Err(VerticalError::Checkpoint {
                field: "total_weight".into(),
                problem: format!("cannot load a total weight of {}", cp.total_weight),
            });
        }
        let n = self.options.num_buckets();
        let mut sum: u64 = 0;
        for (&bucket, &weight) in &cp.bucket_weights {
            if bucket >= n {
                return Err(VerticalError::Checkpoint {
                    field: "bucket_weights".into(),
                    problem: format!("bucket {bucket} is past the histogram's {n} buckets"),
                });
            }
            sum += u64::from(weight);
        }
        if sum == 0 {
            return Ok(());
        }
        let ratio = cp.total_weight / sum as f64;
        for (&bucket, &weight) in &cp.bucket_weights {
            self.min_bucket = self.min_bucket.min(bucket);
            self.max_bucket = self.max_bucket.max(bucket);
            self.bucket_weight[bucket] += f64::from(weight) * ratio;
        }
        self.total_weight += cp.total_weight;
        Ok(())
    }

    /// `scale`: multiply every weight by a non-negative factor (percentiles do not change,
    /// but buckets may fall below epsilon).
    pub(crate) fn scale(&mut self, factor: f64) {
        for b in self.range() {
            self.bucket_weight[b] *= factor;
        }
        self.total_weight *= factor;
        self.update_min_and_max_bucket();
    }

    /// `updateMinAndMaxBucket`, after weights went down.
    fn update_min_and_max_bucket(&mut self) {
        let eps = self.options.epsilon();
        let last = self.options.num_buckets() - 1;
        while self.bucket_weight[self.min_bucket] < eps && self.min_bucket < last {
            self.min_bucket += 1;
        }
        while self.bucket_weight[self.max_bucket] < eps && self.max_bucket > 0 {
            self.max_bucket -= 1;
        }
    }

    /// `min_bucket..=max_bucket`, empty when the histogram is.
    fn range(&self) -> std::ops::RangeInclusive<usize> {
        if self.min_bucket <= self.max_bucket {
            self.min_bucket..=self.max_bucket
        } else {
            #[allow(clippy::reversed_empty_ranges)]
            {
                1..=0
            }
        }
    }
}

/// `safeSubtract`: `value - sub`, or 0 when that is below epsilon.
fn safe_subtract(value: f64, sub: f64, epsilon: f64) -> f64 {
    let v = value - sub;
    if v < epsilon { 0.0 } else { v }
}

#[cfg(test)]
#[path = "histogram_tests.rs"]
mod tests;

//! Bucketing schemes (`pkg/recommender/util/histogram_options.go`).
//!
//! Exponential buckets: bucket 0 is `[0, first)`, bucket `n` has size `first * ratio^n` and
//! starts at `first * (ratio^n - 1) / (ratio - 1)`; the last bucket starts at or above the
//! maximum value and has no upper bound. The VPA uses ratio 1.05 (5% wider each,
//! `DefaultHistogramBucketSizeGrowth`), CPU from 0.01 core to 1000 cores and memory from 1e7 to
//! 1e12 bytes (`aggregations_config.go`), 176 buckets each. Linear buckets exist for upstream's
//! own histogram tests.

use super::{VerticalError, invalid};

/// `DefaultHistogramBucketSizeGrowth`: each bucket is 5% wider than the previous one.
pub const BUCKET_SIZE_GROWTH: f64 = 0.05;
/// `minSampleWeight`: the smallest weight of a sample before decay (cores of CPU request).
pub const MIN_SAMPLE_WEIGHT: f64 = 0.1;
/// `epsilon`: the smallest bucket weight that makes a bucket non-empty.
pub const EPSILON: f64 = 0.001 * MIN_SAMPLE_WEIGHT;
/// `cpuHistogramOptions`: first bucket 0.01 core (upstream's value; not 0.001).
pub const CPU_FIRST_BUCKET_CORES: f64 = 0.01;
/// `cpuHistogramOptions`: 1000 cores.
pub const CPU_MAX_CORES: f64 = 1000.0;
/// `memoryHistogramOptions`: first bucket 10 MB.
pub const MEMORY_FIRST_BUCKET_BYTES: f64 = 1e7;
/// `memoryHistogramOptions`: 1 TB.
pub const MEMORY_MAX_BYTES: f64 = 1e12;
/// Guard against a bucketing scheme that would allocate without bound.
const MAX_BUCKETS: usize = 1 << 20;

/// How a histogram maps values to buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HistogramOptions {
    /// Fixed-size buckets from 0 (`NewLinearHistogramOptions`).
    Linear {
        num_buckets: usize,
        bucket_size: f64,
        epsilon: f64,
    },
    /// Exponentially growing buckets (`NewExponentialHistogramOptions`).
    Exponential {
        num_buckets: usize,
        first_bucket_size: f64,
        ratio: f64,
        epsilon: f64,
    },
}

impl HistogramOptions {
    /// `NewLinearHistogramOptions`: `ceil(max / size) + 1` buckets of `size`, the first
    /// starting at 0. Requires `max > 0`, `size > 0`, `epsilon > 0`.
    pub fn linear(max_value: f64, bucket_size: f64, epsilon: f64) -> Result<Self, VerticalError> {
        if ![max_value, bucket_size, epsilon]
            .into_iter()
            .all(positive_finite)
        {
            return Err(invalid(
                "histogram options",
                "maxValue, bucketSize and epsilon must be finite and positive",
            ));
        }
        let num_buckets = bucket_count((max_value / bucket_size).ceil())?;
        Ok(Self::Linear {
            num_buckets,
            bucket_size,
            epsilon,
        })
    }

    /// `NewExponentialHistogramOptions`: `ceil(log_ratio(max * (ratio - 1) / first + 1)) + 1`
    /// buckets. Requires `max > 0`, `first > 0`, `ratio > 1`, `epsilon > 0`.
    pub fn exponential(
        max_value: f64,
        first_bucket_size: f64,
        ratio: f64,
        epsilon: f64,
    ) -> Result<Self, VerticalError> {
        let positive = [max_value, first_bucket_size, epsilon]
            .into_iter()
            .all(positive_finite);
        if !positive || !ratio.is_finite() || ratio <= 1.0 {
            return Err(invalid(
                "histogram options",
                "maxValue, firstBucketSize and epsilon must be > 0.0, ratio must be > 1.0",
            ));
        }
        let num_buckets =
            bucket_count(log(ratio, max_value * (ratio - 1.0) / first_bucket_size + 1.0).ceil())?;
        Ok(Self::Exponential {
            num_buckets,
            first_bucket_size,
            ratio,
            epsilon,
        })
    }

    /// The VPA's CPU histograms: 0.01 core .. 1000 cores, ratio 1.05, epsilon 1e-4.
    pub fn cpu() -> Self {
        Self::vpa(CPU_MAX_CORES, CPU_FIRST_BUCKET_CORES)
    }

    /// The VPA's memory histograms: 1e7 .. 1e12 bytes, ratio 1.05, epsilon 1e-4.
    pub fn memory() -> Self {
        Self::vpa(MEMORY_MAX_BYTES, MEMORY_FIRST_BUCKET_BYTES)
    }

    fn vpa(max_value: f64, first_bucket_size: f64) -> Self {
        let ratio = 1.0 + BUCKET_SIZE_GROWTH;
        // Constants within every limit checked by `exponential`.
        let n = log(ratio, max_value * (ratio - 1.0) / first_bucket_size + 1.0).ceil() as usize;
        Self::Exponential {
            num_buckets: n + 1,
            first_bucket_size,
            ratio,
            epsilon: EPSILON,
        }
    }

    /// `NumBuckets`.
    pub fn num_buckets(&self) -> usize {
        match *self {
            Self::Linear { num_buckets, .. } | Self::Exponential { num_buckets, .. } => num_buckets,
        }
    }

    /// `Epsilon`: the minimum weight for a bucket to count as non-empty.
    pub fn epsilon(&self) -> f64 {
        match *self {
            Self::Linear { epsilon, .. } | Self::Exponential { epsilon, .. } => epsilon,
        }
    }

    /// `FindBucket`: the bucket of `value`; values outside the range go to the first or the
    /// last bucket.
    pub fn find_bucket(&self, value: f64) -> usize {
        match *self {
            Self::Linear {
                num_buckets,
                bucket_size,
                ..
            } => {
                // Go's int() truncates toward zero; `as` also saturates negatives and NaN to 0.
                ((value / bucket_size) as usize).min(num_buckets - 1)
            }
            Self::Exponential {
                num_buckets,
                first_bucket_size,
                ratio,
                ..
            } => {
                if value.is_nan() || value < first_bucket_size {
                    return 0;
                }
                let bucket = log(ratio, value * (ratio - 1.0) / first_bucket_size + 1.0) as usize;
                bucket.min(num_buckets - 1)
            }
        }
    }

    /// `GetBucketStart`. Indexes past the last bucket give the last bucket's start (upstream
    /// panics; no caller passes one).
    pub fn bucket_start(&self, bucket: usize) -> f64 {
        let bucket = bucket.min(self.num_buckets() - 1);
        match *self {
            Self::Linear { bucket_size, .. } => bucket as f64 * bucket_size,
            Self::Exponential {
                first_bucket_size,
                ratio,
                ..
            } => {
                if bucket == 0 {
                    0.0
                } else {
                    first_bucket_size * (ratio.powf(bucket as f64) - 1.0) / (ratio - 1.0)
                }
            }
        }
    }
}

/// The logarithm of `x` to `base`, as upstream computes it (`ln(x) / ln(base)`).
fn log(base: f64, x: f64) -> f64 {
    x.ln() / base.ln()
}

fn positive_finite(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// `ceil(..) + 1` buckets, bounded.
fn bucket_count(ceiled: f64) -> Result<usize, VerticalError> {
    if ceiled.is_nan() || ceiled < 0.0 || ceiled >= MAX_BUCKETS as f64 {
        return Err(invalid(
            "histogram options",
            format!("would need more than {MAX_BUCKETS} buckets"),
        ));
    }
    Ok(ceiled as usize + 1)
}

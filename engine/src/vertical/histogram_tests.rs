//! Ported from kubernetes/autoscaler `vertical-pod-autoscaler/pkg/recommender/util/`
//! `histogram_test.go` and `histogram_options_test.go`, one test per upstream test (named in
//! each doc comment), plus Tidal's checks of the VPA's own bucketing.

use std::collections::BTreeMap;

use super::*;
use crate::vertical::histogram_options::{EPSILON, HistogramOptions};

/// `valueEpsilon`, `weightEpsilon` of histogram_test.go.
const VALUE_EPSILON: f64 = 1e-15;
const WEIGHT_EPSILON: f64 = 1e-15;

/// `testHistogramOptions`: linear, max 10, bucket size 1.
fn test_options() -> HistogramOptions {
    HistogramOptions::linear(10.0, 1.0, WEIGHT_EPSILON).expect("valid options")
}

/// testify's `InEpsilon`: relative error at most `eps`.
#[track_caller]
fn in_epsilon(expected: f64, actual: f64, eps: f64) {
    let rel = ((expected - actual) / expected).abs();
    assert!(
        rel <= eps,
        "expected {expected}, got {actual} (relative error {rel})"
    );
}

/// histogram_test.go `TestPercentilesEmptyHistogram`.
#[test]
fn percentiles_empty_histogram() {
    let h = Histogram::new(test_options());
    for p in [-0.5, 0.0, 0.5, 1.0, 1.5] {
        assert_eq!(h.percentile(p), 0.0);
    }
}

/// histogram_test.go `TestPercentiles`: { 1: 1, 2: 2, 3: 3, 4: 4 }.
#[test]
fn percentiles() {
    let mut h = Histogram::new(test_options());
    for i in 1..=4 {
        h.add_sample(f64::from(i), f64::from(i));
    }
    for (p, want) in [
        (0.0, 2.0),
        (0.1, 2.0),
        (0.2, 3.0),
        (0.3, 3.0),
        (0.4, 4.0),
        (0.5, 4.0),
        (0.6, 4.0),
        (0.7, 5.0),
        (0.8, 5.0),
        (0.9, 5.0),
        (1.0, 5.0),
    ] {
        in_epsilon(want, h.percentile(p), VALUE_EPSILON);
    }
}

/// histogram_test.go `TestPercentileOutOfBounds`.
#[test]
fn percentile_out_of_bounds() {
    let options = HistogramOptions::linear(1.0, 0.1, WEIGHT_EPSILON).expect("valid options");
    let mut h = Histogram::new(options);
    h.add_sample(0.1, 0.1);
    h.add_sample(0.2, 0.2);
    in_epsilon(0.2, h.percentile(-0.1), VALUE_EPSILON);
    in_epsilon(0.3, h.percentile(1.1), VALUE_EPSILON);
    // Fill the boundary buckets.
    h.add_sample(0.0, 0.1);
    h.add_sample(1.0, 0.2);
    in_epsilon(0.1, h.percentile(-0.1), VALUE_EPSILON);
    in_epsilon(1.0, h.percentile(1.1), VALUE_EPSILON);
}

/// histogram_test.go `TestEmptyHistogram`.
#[test]
fn empty_histogram() {
    let options = HistogramOptions::linear(1.0, 0.1, WEIGHT_EPSILON).expect("valid options");
    let mut h = Histogram::new(options);
    assert!(h.is_empty());
    h.add_sample(0.1, WEIGHT_EPSILON * 2.5); // epsilon * 2.5
    assert!(!h.is_empty());
    h.subtract_sample(0.1, WEIGHT_EPSILON); // epsilon * 1.5
    assert!(!h.is_empty());
    h.subtract_sample(0.1, WEIGHT_EPSILON); // epsilon * 0.5
    assert!(h.is_empty());
}

/// histogram_test.go `TestNonEmptyOnEpsilonAddition`.
#[test]
fn non_empty_on_epsilon_addition() {
    let options = HistogramOptions::linear(1.0, 0.1, WEIGHT_EPSILON).expect("valid options");
    let mut h = Histogram::new(options);
    assert!(h.is_empty());
    h.add_sample(9.9, WEIGHT_EPSILON * 3.0);
    assert!(!h.is_empty());
    h.add_sample(0.1, WEIGHT_EPSILON * 0.3);
    assert!(!h.is_empty(), "the epsilon*3 sample keeps it non-empty");
    h.add_sample(999.9, WEIGHT_EPSILON * 0.3);
    assert!(!h.is_empty());
}

/// histogram_test.go `TestHistogramMerge`.
#[test]
fn histogram_merge() {
    let mut h1 = Histogram::new(test_options());
    h1.add_sample(1.0, 1.0);
    h1.add_sample(2.0, 1.0);
    let mut h2 = Histogram::new(test_options());
    h2.add_sample(2.0, 1.0);
    h2.add_sample(3.0, 1.0);
    let mut expected = Histogram::new(test_options());
    for v in [1.0, 2.0, 2.0, 3.0] {
        expected.add_sample(v, 1.0);
    }
    h1.merge(&h2).expect("same options");
    assert!(h1.equals(&expected));
}

/// histogram_test.go `TestHistogramSaveToCheckpointEmpty`.
#[test]
fn save_to_checkpoint_empty() {
    let s = Histogram::new(test_options()).save_to_checkpoint();
    assert_eq!(s.total_weight, 0.0);
    assert!(s.bucket_weights.is_empty());
}

/// histogram_test.go `TestHistogramSaveToCheckpoint`.
#[test]
fn save_to_checkpoint() {
    let mut h = Histogram::new(test_options());
    h.add_sample(1.0, 1.0);
    let s = h.save_to_checkpoint();
    let bucket = test_options().find_bucket(1.0);
    assert_eq!(s.total_weight, 1.0);
    assert_eq!(
        s.bucket_weights,
        BTreeMap::from([(bucket, MAX_CHECKPOINT_WEIGHT)])
    );
}

/// histogram_test.go `TestHistogramSaveToCheckpointDropsRelativelySmallValues`.
#[test]
fn save_to_checkpoint_drops_relatively_small_values() {
    let mut h = Histogram::new(test_options());
    let (v1, w1) = (1.0, 1.0);
    let (v2, w2) = (2.0, 100_000.0);
    h.add_sample(v1, w1);
    h.add_sample(v2, w2);
    let (b1, b2) = (
        test_options().find_bucket(v1),
        test_options().find_bucket(v2),
    );
    assert_ne!(b1, b2, "the two values must fall in different buckets");
    assert!(w1 < (w2 / f64::from(MAX_CHECKPOINT_WEIGHT)) / 2.0);
    let s = h.save_to_checkpoint();
    assert_eq!(s.total_weight, 100_001.0);
    // Bucket 1 is not there.
    assert_eq!(
        s.bucket_weights,
        BTreeMap::from([(b2, MAX_CHECKPOINT_WEIGHT)])
    );
}

/// histogram_test.go `TestHistogramSaveToCheckpointForMultipleValues`.
#[test]
fn save_to_checkpoint_for_multiple_values() {
    let mut h = Histogram::new(test_options());
    h.add_sample(1.0, 1.0);
    h.add_sample(2.0, 10_000.0);
    h.add_sample(3.0, 50.0);
    let o = test_options();
    let (b1, b2, b3) = (o.find_bucket(1.0), o.find_bucket(2.0), o.find_bucket(3.0));
    assert!(b1 != b2 && b2 != b3 && b1 != b3);
    let s = h.save_to_checkpoint();
    assert_eq!(s.total_weight, 10_051.0);
    assert_eq!(
        s.bucket_weights,
        BTreeMap::from([(b1, 1), (b2, 10_000), (b3, 50)])
    );
}

/// histogram_test.go `TestHistogramLoadFromCheckpoint`.
#[test]
fn load_from_checkpoint() {
    let cp = HistogramCheckpoint {
        reference_unix_seconds: None,
        total_weight: 6.0,
        bucket_weights: BTreeMap::from([(0, 1), (1, 2)]),
    };
    let mut h = Histogram::new(test_options());
    h.load_from_checkpoint(&cp).expect("loads");
    assert_eq!(h.total_weight(), 6.0);
    assert_eq!(h.bucket_weight(0), 2.0);
    assert_eq!(h.bucket_weight(1), 4.0);
}

/// histogram_test.go `TestHistogramLoadFromCheckpointReturnsErrorOnNegativeBucket`: bucket
/// indexes are `usize`, so a negative one is already rejected when the JSON is read.
#[test]
fn load_from_checkpoint_rejects_negative_bucket() {
    let err = serde_json::from_str::<HistogramCheckpoint>(
        r#"{"total_weight": 1.0, "bucket_weights": {"-1": 1}}"#,
    )
    .expect_err("negative bucket");
    assert!(err.to_string().contains("-1"), "{err}");
}

/// histogram_test.go `TestHistogramLoadFromCheckpointReturnsErrorOnInvalidBucket`.
#[test]
fn load_from_checkpoint_rejects_invalid_bucket() {
    let cp = HistogramCheckpoint {
        reference_unix_seconds: None,
        total_weight: 1.0,
        bucket_weights: BTreeMap::from([(99, 1)]),
    };
    let mut h = Histogram::new(test_options());
    let err = h.load_from_checkpoint(&cp).expect_err("bucket 99 of 11");
    assert_eq!(err.label(), "checkpoint");
    assert!(err.to_string().contains("bucket 99"), "{err}");
    assert!(h.is_empty(), "nothing loaded");
}

/// histogram_test.go `TestHistogramLoadFromCheckpointReturnsErrorNegativeTotaWeight` (and
/// Tidal: a non-finite total is rejected too).
#[test]
fn load_from_checkpoint_rejects_bad_total_weight() {
    let mut h = Histogram::new(test_options());
    for total in [-1.0, f64::NAN, f64::INFINITY] {
        let cp = HistogramCheckpoint {
            total_weight: total,
            ..HistogramCheckpoint::default()
        };
        assert!(h.load_from_checkpoint(&cp).is_err(), "total {total}");
    }
}

/// histogram_options_test.go `TestLinearHistogramOptions`.
#[test]
fn linear_histogram_options() {
    let o = HistogramOptions::linear(5.0, 0.3, 0.001).expect("valid options");
    assert_eq!(o.epsilon(), 0.001);
    assert_eq!(o.num_buckets(), 18);
    assert_eq!(o.bucket_start(0), 0.0);
    assert_eq!(o.bucket_start(17), 5.1);
    assert_eq!(o.find_bucket(-1.0), 0);
    assert_eq!(o.find_bucket(0.0), 0);
    assert_eq!(o.find_bucket(1.3), 4);
    assert_eq!(o.find_bucket(100.0), 17);
}

/// histogram_options_test.go `TestExponentialHistogramOptions`.
#[test]
fn exponential_histogram_options() {
    let o = HistogramOptions::exponential(500.0, 40.0, 1.5, 0.001).expect("valid options");
    assert_eq!(o.epsilon(), 0.001);
    assert_eq!(o.num_buckets(), 6);
    for (bucket, start) in [
        (0, 0.0),
        (1, 40.0),
        (2, 100.0),
        (3, 190.0),
        (4, 325.0),
        (5, 527.5),
    ] {
        assert_eq!(o.bucket_start(bucket), start, "bucket {bucket}");
    }
    for (value, bucket) in [(-1.0, 0), (39.99, 0), (40.0, 1), (100.0, 2), (900.0, 5)] {
        assert_eq!(o.find_bucket(value), bucket, "value {value}");
    }
}

/// histogram_options.go: the constructors' preconditions (upstream returns an error).
#[test]
fn options_reject_bad_parameters() {
    assert!(HistogramOptions::linear(0.0, 1.0, 0.1).is_err());
    assert!(HistogramOptions::linear(1.0, 0.0, 0.1).is_err());
    assert!(HistogramOptions::linear(1.0, 1.0, 0.0).is_err());
    assert!(HistogramOptions::linear(f64::NAN, 1.0, 0.1).is_err());
    assert!(
        HistogramOptions::exponential(1.0, 1.0, 1.0, 0.1).is_err(),
        "ratio 1"
    );
    assert!(HistogramOptions::exponential(1.0, -1.0, 1.5, 0.1).is_err());
    assert!(
        HistogramOptions::linear(1e300, 1e-300, 0.1).is_err(),
        "too many buckets"
    );
}

/// aggregations_config.go: the VPA's bucketing, 176 buckets each, epsilon 0.001 * 0.1, and
/// bucket n of size first * 1.05^n.
#[test]
fn vpa_cpu_and_memory_options() {
    for (o, first) in [
        (HistogramOptions::cpu(), 0.01),
        (HistogramOptions::memory(), 1e7),
    ] {
        assert_eq!(o.num_buckets(), 176);
        assert_eq!(o.epsilon(), EPSILON);
        assert_eq!(o.bucket_start(1), first);
        let size = |n: usize| o.bucket_start(n + 1) - o.bucket_start(n);
        for n in [1, 10, 100] {
            in_epsilon(first * 1.05_f64.powi(n as i32), size(n), 1e-9);
        }
        assert_eq!(o.find_bucket(first * 0.999), 0);
        assert_eq!(o.find_bucket(first), 1);
        assert_eq!(o.find_bucket(f64::INFINITY), 175);
    }
    // The last CPU bucket starts at or above 1000 cores.
    assert!(HistogramOptions::cpu().bucket_start(175) >= 1000.0);
    assert!(HistogramOptions::cpu().bucket_start(174) < 1000.0);
}

/// histogram.go `Percentile`: the value returned is the end of the bucket (the next bucket's
/// start), exactly, with the VPA's exponential buckets.
#[test]
fn percentile_is_the_bucket_end() {
    let o = HistogramOptions::cpu();
    let mut h = Histogram::new(o);
    h.add_sample(0.5, 1.0);
    let b = o.find_bucket(0.5);
    assert_eq!(h.percentile(0.9), o.bucket_start(b + 1));
    assert!(o.bucket_start(b) <= 0.5 && 0.5 < o.bucket_start(b + 1));
    // A value past the last bucket's start gives that start (the last bucket has no end).
    h.add_sample(5000.0, 100.0);
    assert_eq!(h.percentile(1.0), o.bucket_start(175));
}

/// histogram.go `Merge` requires the same options (upstream panics).
#[test]
fn merge_rejects_different_options() {
    let mut a = Histogram::new(test_options());
    let b = Histogram::new(HistogramOptions::cpu());
    assert_eq!(a.merge(&b).expect_err("different").label(), "mismatch");
}

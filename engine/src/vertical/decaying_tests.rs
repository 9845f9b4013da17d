//! Ported from kubernetes/autoscaler
//! `vertical-pod-autoscaler/pkg/recommender/util/decaying_histogram_test.go`, one test per
//! upstream test (named in each doc comment), plus the reference-time arithmetic.

use std::collections::BTreeMap;

use super::*;

/// `startTime = time.Unix(1234567890, 0)`.
const START: f64 = 1_234_567_890.0;
const HOUR: f64 = 3600.0;

/// `testHistogramOptions` of histogram_test.go.
fn test_options() -> HistogramOptions {
    HistogramOptions::linear(10.0, 1.0, 1e-15).expect("valid options")
}

fn histogram() -> DecayingHistogram {
    DecayingHistogram::new(test_options(), HOUR).expect("valid half-life")
}

#[track_caller]
fn in_epsilon(expected: f64, actual: f64) {
    let rel = ((expected - actual) / expected).abs();
    assert!(rel <= 1e-15, "expected {expected}, got {actual}");
}

#[track_caller]
fn add(h: &mut DecayingHistogram, value: f64, weight: f64, t: f64) {
    h.add_sample(value, weight, t).expect("valid sample");
}

/// decaying_histogram_test.go `TestPercentilesEmptyDecayingHistogram`.
#[test]
fn percentiles_empty_decaying_histogram() {
    let h = histogram();
    for p in [-0.5, 0.0, 0.5, 1.0, 1.5] {
        assert_eq!(h.percentile(p), 0.0);
    }
}

/// decaying_histogram_test.go `TestSimpleDecay`: a heavy sample is almost (not entirely)
/// forgotten 20 half-lives later.
#[test]
fn simple_decay() {
    let mut h = histogram();
    add(&mut h, 2.0, 1000.0, START);
    // 2^20 * 0.001 > 1000 times heavier.
    add(&mut h, 1.0, 1.0, START + 20.0 * HOUR);
    in_epsilon(2.0, h.percentile(0.999));
    in_epsilon(3.0, h.percentile(1.0));
}

/// decaying_histogram_test.go `TestLongtermDecay`: past 2^maxDecayExponent the reference moves
/// and the old sample drops below epsilon.
#[test]
fn longterm_decay() {
    let mut h = histogram();
    add(&mut h, 2.0, 1.0, START);
    add(&mut h, 1.0, 1.0, START + 101.0 * HOUR);
    in_epsilon(2.0, h.percentile(1.0));
}

/// decaying_histogram_test.go `TestDecayingHistogramPercentiles`: samples 1..4 with weights
/// 1..4, one half-life apart.
#[test]
fn decaying_histogram_percentiles() {
    let mut h = histogram();
    for i in 1..=4 {
        add(
            &mut h,
            f64::from(i),
            f64::from(i),
            START + f64::from(i - 1) * HOUR,
        );
    }
    // [1..2] 1 * 2^-3 (0%..2%), [2..3] 2 * 2^-2 (3%..10%), [3..4] 3 * 2^-1 (11%..34%),
    // [4..5] 4 (35%..100%).
    for (p, want) in [
        (0.00, 2.0),
        (0.02, 2.0),
        (0.03, 3.0),
        (0.10, 3.0),
        (0.11, 4.0),
        (0.34, 4.0),
        (0.35, 5.0),
        (1.00, 5.0),
    ] {
        in_epsilon(want, h.percentile(p));
    }
}

/// decaying_histogram_test.go `TestNoDecay`: with a fixed time it is a plain histogram.
#[test]
fn no_decay() {
    let mut h = histogram();
    for i in 1..=4 {
        add(&mut h, f64::from(i), f64::from(i), START);
    }
    for (p, want) in [
        (0.0, 2.0),
        (0.2, 3.0),
        (0.1, 2.0),
        (0.3, 3.0),
        (0.4, 4.0),
        (0.5, 4.0),
        (0.6, 4.0),
        (0.7, 5.0),
        (0.8, 5.0),
        (0.9, 5.0),
        (1.0, 5.0),
    ] {
        in_epsilon(want, h.percentile(p));
    }
}

/// decaying_histogram_test.go `TestDecayingHistogramMerge`.
#[test]
fn decaying_histogram_merge() {
    let mut h1 = histogram();
    add(&mut h1, 1.0, 1.0, START);
    add(&mut h1, 2.0, 1.0, START + HOUR);
    let mut h2 = histogram();
    add(&mut h2, 2.0, 1.0, START + 2.0 * HOUR);
    add(&mut h2, 3.0, 1.0, START + HOUR);
    let mut expected = histogram();
    add(&mut expected, 2.0, 1.0, START + 2.0 * HOUR);
    add(&mut expected, 2.0, 1.0, START + HOUR);
    add(&mut expected, 3.0, 1.0, START + HOUR);
    add(&mut expected, 1.0, 1.0, START);
    h1.merge(&h2).expect("same half-life");
    assert!(h1.equals(&expected), "{h1:?}\n{expected:?}");
}

/// decaying_histogram_test.go `TestDecayingHistogramSaveToCheckpoint`.
#[test]
fn decaying_histogram_save_to_checkpoint() {
    let mut h = histogram();
    add(&mut h, 2.0, 1.0, START + 100.0 * HOUR);
    assert!(
        h.reference_unix_seconds().is_some(),
        "the reference moved off the zero time"
    );
    let cp = h.checkpoint();
    assert_eq!(cp.reference_unix_seconds, h.reference_unix_seconds());
    assert!(!cp.bucket_weights.is_empty());
    assert_ne!(cp.total_weight, 0.0);
}

/// decaying_histogram_test.go `TestDecayingHistogramLoadFromCheckpoint`
/// (2018-01-02T03:04:05Z).
#[test]
fn decaying_histogram_load_from_checkpoint() {
    let timestamp = 1_514_862_245.0;
    let cp = HistogramCheckpoint {
        reference_unix_seconds: Some(timestamp),
        total_weight: 6.0,
        bucket_weights: BTreeMap::from([(0, 1)]),
    };
    let mut h = histogram();
    h.load_checkpoint(&cp).expect("loads");
    assert!(!h.is_empty());
    assert_eq!(h.reference_unix_seconds(), Some(timestamp));
}

/// decaying_histogram.go `shiftReferenceTimestamp`: the reference is the sample time rounded
/// to the half-life (halves up), and weights are relative to it. 1234567890 is 28.5 minutes
/// before the hour 1234569600, so the first sample weighs 2^(-1710/3600).
#[test]
fn reference_is_rounded_to_the_half_life() {
    let mut h = histogram();
    add(&mut h, 1.0, 1.0, START);
    assert_eq!(h.reference_unix_seconds(), Some(1_234_569_600.0));
    let w = h.histogram().bucket_weight(1);
    assert!((w - (-1710.0_f64 / 3600.0).exp2()).abs() < 1e-15, "{w}");
    // Exactly half-way rounds up, as Go's time.Round.
    let mut h = histogram();
    add(&mut h, 1.0, 1.0, 1_800.0 + 100.0 * HOUR * 10.0);
    assert_eq!(h.reference_unix_seconds(), Some(3_600.0 + 1000.0 * HOUR));
}

/// Subtracting what was added leaves the histogram empty, across a reference move.
#[test]
fn subtract_undoes_add() {
    let mut h = histogram();
    add(&mut h, 4.0, 1.0, START);
    add(&mut h, 3.0, 1.0, START + 150.0 * HOUR);
    h.subtract_sample(3.0, 1.0, START + 150.0 * HOUR)
        .expect("valid");
    assert!(
        h.is_empty(),
        "the first sample decayed below epsilon, the second was removed"
    );
}

/// Tidal: samples with a non-finite value, weight or time, or a negative weight, are errors
/// (upstream would bucket NaN somewhere or panic).
#[test]
fn rejects_bad_samples() {
    let mut h = histogram();
    for (v, w, t) in [
        (f64::NAN, 1.0, START),
        (1.0, f64::INFINITY, START),
        (1.0, -1.0, START),
        (1.0, 1.0, f64::NAN),
    ] {
        let err = h.add_sample(v, w, t).expect_err("bad sample");
        assert!(matches!(err.label(), "not_finite" | "negative"), "{err}");
    }
    assert!(h.is_empty());
    assert!(DecayingHistogram::new(test_options(), 0.0).is_err());
    assert!(DecayingHistogram::new(test_options(), f64::NAN).is_err());
}

/// decaying_histogram.go `Merge` requires the same half-life (upstream panics).
#[test]
fn merge_rejects_different_half_lives() {
    let mut a = histogram();
    let b = DecayingHistogram::new(test_options(), 2.0 * HOUR).expect("valid");
    assert_eq!(a.merge(&b).expect_err("different").label(), "mismatch");
}

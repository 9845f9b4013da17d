//! Ported from kubernetes/autoscaler
//! `vertical-pod-autoscaler/pkg/recommender/model/aggregate_container_state_test.go` (one test
//! per upstream test, named in each doc comment), plus the CPU weight rule of
//! `aggregate_container_state.go`.

// Upstream's test values (3.14 cores, 6.28 cores) are not pi.
#![allow(clippy::approx_constant)]

use std::collections::BTreeMap;

use super::*;
use crate::vertical::amount::Resources;
use crate::vertical::state::{CHECKPOINT_VERSION, VerticalCheckpoint, VerticalState};

/// `testTimestamp` of container_test.go.
const T: f64 = 1_492_536_905.0;
const DAY: f64 = 86_400.0;
/// 2018-01-01 02:03:04 UTC and 2018-02-01 02:03:04 UTC.
const T1: f64 = 1_514_772_184.0;
const T2: f64 = 1_517_450_584.0;

fn model() -> ModelConfig {
    ModelConfig::default()
}

fn state() -> AggregateState {
    AggregateState::new(&model(), T).expect("valid model")
}

/// `testRequest`: 3.14 cores, 3.14e9 bytes.
fn test_request() -> Resources {
    Resources::new(3.14, 3.14e9)
}

/// aggregate_container_state_test.go `TestAggregateStateByContainerName`: pod 1 has app-A and
/// app-B, pod 2 app-A and app-C; samples of both app-A containers end up in one aggregate.
#[test]
fn aggregate_state_by_container_name() {
    let mut s = VerticalState::new(model()).expect("valid model");
    for (pod, container, cpu, memory) in [
        ("pod-1", "app-A", 1.0, 2e9),
        ("pod-1", "app-B", 5.0, 10e9),
        ("pod-2", "app-A", 3.0, 4e9),
        ("pod-2", "app-C", 5.0, 10e9),
    ] {
        let usage = Resources::new(cpu, memory);
        let seen = s
            .observe(pod, container, &usage, &test_request(), T)
            .expect("valid sample");
        assert!(seen.cpu && seen.memory);
    }
    let names: Vec<&str> = s.containers().collect();
    assert_eq!(names, ["app-A", "app-B", "app-C"]);
    let a = s.aggregate("app-A").expect("app-A");
    assert_eq!(a.total_samples(), 2);
    assert_eq!(
        s.aggregate("app-B").map(AggregateState::total_samples),
        Some(1)
    );
    assert_eq!(
        s.aggregate("app-C").map(AggregateState::total_samples),
        Some(1)
    );

    let mut cpu = DecayingHistogram::new(HistogramOptions::cpu(), DAY).expect("valid");
    cpu.add_sample(1.0, 3.14, T).expect("valid");
    cpu.add_sample(3.0, 3.14, T).expect("valid");
    assert!(
        cpu.equals(a.cpu_histogram()),
        "{cpu:?}\n{:?}",
        a.cpu_histogram()
    );
    let mut memory = DecayingHistogram::new(HistogramOptions::memory(), DAY).expect("valid");
    memory.add_sample(2e9, 1.0, T + DAY).expect("valid");
    memory.add_sample(4e9, 1.0, T + DAY).expect("valid");
    assert!(memory.equals(a.memory_histogram()));

    // The same aggregate from per-pod aggregates merged (`MergeContainerState`).
    let mut merged = state();
    for (cpu, mem) in [(1000, 2_000_000_000), (3000, 4_000_000_000)] {
        let mut one = state();
        one.add_cpu_sample(cpu, 3140, T);
        one.add_memory_peak(mem, T + DAY);
        merged.merge(&one).expect("same model");
    }
    assert!(merged.cpu_histogram().equals(a.cpu_histogram()));
    assert!(merged.memory_histogram().equals(a.memory_histogram()));
    assert_eq!(merged.total_samples(), 2);
    assert_eq!(merged.first_sample(), Some(T));
    assert_eq!(merged.last_sample(), Some(T));
}

/// aggregate_container_state_test.go `TestAggregateContainerStateSaveToCheckpoint`.
#[test]
fn save_to_checkpoint() {
    let mut cs = state();
    cs.first_sample = Some(T1);
    cs.last_sample = Some(T2);
    cs.total_samples = 10;
    cs.cpu.add_sample(1.0, 33.0, T2).expect("valid");
    cs.memory_peaks.add_sample(1.0, 55.0, T1).expect("valid");
    cs.memory_peaks
        .add_sample(10_000_000.0, 55.0, T1)
        .expect("valid");
    let cp = cs.checkpoint();
    assert_eq!(cp.first_sample_unix_seconds, Some(T1));
    assert_eq!(cp.last_sample_unix_seconds, Some(T2));
    assert_eq!(cp.total_samples, 10);
    assert_eq!(cp.cpu.bucket_weights.len(), 1);
    assert_eq!(cp.memory.bucket_weights.len(), 2);
    let mut s = VerticalState::new(model()).expect("valid");
    s.observe("p", "c", &Resources::new(1.0, 1e9), &test_request(), T)
        .expect("valid");
    assert_eq!(s.checkpoint().version, CHECKPOINT_VERSION);
}

/// aggregate_container_state_test.go
/// `TestAggregateContainerStateLoadFromCheckpointFailsForVersionMismatch` (the version is on
/// the whole checkpoint in Tidal).
#[test]
fn load_from_checkpoint_fails_for_version_mismatch() {
    let cp = VerticalCheckpoint {
        version: CHECKPOINT_VERSION + 1,
        containers: BTreeMap::new(),
    };
    let err = VerticalState::from_checkpoint(model(), &cp).expect_err("unknown version");
    assert_eq!(err.label(), "checkpoint");
    assert!(err.to_string().contains("version"), "{err}");
}

/// aggregate_container_state_test.go `TestAggregateContainerStateLoadFromCheckpoint`.
#[test]
fn load_from_checkpoint() {
    let cp = ContainerCheckpoint {
        first_sample_unix_seconds: Some(T1),
        last_sample_unix_seconds: Some(T2),
        total_samples: 20,
        created_unix_seconds: T1,
        memory: HistogramCheckpoint {
            reference_unix_seconds: None,
            total_weight: 33.0,
            bucket_weights: BTreeMap::from([(0, 10)]),
        },
        cpu: HistogramCheckpoint {
            reference_unix_seconds: None,
            total_weight: 44.0,
            bucket_weights: BTreeMap::from([(0, 10)]),
        },
        ..ContainerCheckpoint::default()
    };
    let cs = AggregateState::from_checkpoint(&model(), &cp).expect("loads");
    assert_eq!(cs.first_sample(), Some(T1));
    assert_eq!(cs.last_sample(), Some(T2));
    assert_eq!(cs.total_samples(), 20);
    assert!(!cs.cpu_histogram().is_empty());
    assert!(!cs.memory_histogram().is_empty());
}

/// aggregate_container_state_test.go `TestAggregateContainerStateIsExpired`.
#[test]
fn is_expired() {
    let window = model().memory_aggregation_window_seconds();
    let mut cs = state();
    cs.last_sample = Some(T);
    cs.total_samples = 1;
    assert!(!cs.is_expired(T + 7.0 * DAY, window));
    assert!(cs.is_expired(T + 8.0 * DAY, window));
    let mut empty = state();
    empty.total_samples = 0;
    empty.created = T;
    assert!(!empty.is_expired(T + 7.0 * DAY, window));
    assert!(empty.is_expired(T + 8.0 * DAY, window));
}

/// aggregate_container_state.go `addCPUSample`: a CPU sample weighs `max(request cores, 0.1)`;
/// the moments use the same weights.
#[test]
fn cpu_sample_weight_is_the_request() {
    let mut cs = state();
    cs.add_cpu_sample(1000, 2300, T);
    cs.add_cpu_sample(2000, 50, T + 60.0);
    cs.add_cpu_sample(4000, 0, T + 120.0);
    let mut want = DecayingHistogram::new(HistogramOptions::cpu(), DAY).expect("valid");
    want.add_sample(1.0, 2.3, T).expect("valid");
    want.add_sample(2.0, 0.1, T + 60.0).expect("valid");
    want.add_sample(4.0, 0.1, T + 120.0).expect("valid");
    assert!(want.equals(cs.cpu_histogram()));
    assert_eq!(cs.total_samples(), 3);
    assert_eq!(cs.first_sample(), Some(T));
    assert_eq!(cs.last_sample(), Some(T + 120.0));
    // The mean is weighted the same way: (1 * 2.3 + 2 * 0.1 + 4 * 0.1) / 2.5 (decay over
    // two minutes of a day's half-life is below 1e-3).
    let mean = cs.cpu_moments().mean().expect("samples");
    assert!((mean - 2.9 / 2.5).abs() < 2e-3, "{mean}");
}

/// A memory peak replaced within its interval leaves one peak in both the histogram and the
/// peak moments.
#[test]
fn replaced_peak_is_withdrawn() {
    let mut cs = state();
    cs.add_memory_peak(1_000_000_000, T + DAY);
    cs.subtract_memory_peak(1_000_000_000, T + DAY);
    cs.add_memory_peak(3_000_000_000, T + DAY);
    let mut want = DecayingHistogram::new(HistogramOptions::memory(), DAY).expect("valid");
    want.add_sample(3e9, 1.0, T + DAY).expect("valid");
    assert!(want.equals(cs.memory_histogram()));
    let m = cs.memory_peak_moments();
    assert_eq!(m.mean(), Some(3e9));
    assert_eq!(m.variance(), Some(0.0));
}

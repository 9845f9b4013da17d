//! Ported from kubernetes/autoscaler
//! `vertical-pod-autoscaler/pkg/recommender/model/container_test.go`, one test per upstream
//! test (named in each doc comment). Upstream checks the calls a container makes on mock
//! histograms; [`Recorder`] records the same calls, and each test asserts the exact sequence.

// Upstream's test values (3.14 cores, 6.28 cores) are not pi.
#![allow(clippy::approx_constant)]

use super::*;
use crate::vertical::amount::cores_from_cpu_amount;

/// `testTimestamp`: 2017-04-18 17:35:05 UTC.
const T: f64 = 1_492_536_905.0;
const HOUR: f64 = 3600.0;
/// `MemoryAggregationInterval` (24h).
const INTERVAL: f64 = 24.0 * HOUR;
/// `mb` of container_test.go.
const MB: i64 = 1024 * 1024;
/// `TestRequest`: 2.3 cores.
const REQUEST_CPU: i64 = 2300;

/// A call on the aggregation, as upstream's mock histograms see it: CPU in cores with its
/// request, memory in bytes, each with its time.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Cpu { cores: f64, request: f64, at: f64 },
    AddPeak { bytes: f64, at: f64 },
    SubtractPeak { bytes: f64, at: f64 },
}

#[derive(Debug, Default)]
struct Recorder {
    calls: Vec<Call>,
    usage: Vec<(i64, f64)>,
}

impl Aggregator for Recorder {
    fn add_cpu_sample(&mut self, usage: i64, request: i64, at: f64) {
        self.calls.push(Call::Cpu {
            cores: cores_from_cpu_amount(usage),
            request: cores_from_cpu_amount(request),
            at,
        });
    }
    fn add_memory_peak(&mut self, bytes: i64, at: f64) {
        self.calls.push(Call::AddPeak {
            bytes: bytes as f64,
            at,
        });
    }
    fn subtract_memory_peak(&mut self, bytes: i64, at: f64) {
        self.calls.push(Call::SubtractPeak {
            bytes: bytes as f64,
            at,
        });
    }
    fn add_memory_usage(&mut self, bytes: i64, at: f64) {
        self.usage.push((bytes, at));
    }
}

fn add(bytes: i64, at: f64) -> Call {
    Call::AddPeak {
        bytes: bytes as f64,
        at,
    }
}

fn sub(bytes: i64, at: f64) -> Call {
    Call::SubtractPeak {
        bytes: bytes as f64,
        at,
    }
}

fn model() -> ModelConfig {
    ModelConfig::default()
}

/// container_test.go `TestAggregateContainerUsageSamples`: three CPU and memory samples
/// half an interval apart, then three invalid ones (out of order, negative CPU, negative
/// memory).
#[test]
fn aggregate_container_usage_samples() {
    let (mut c, mut r) = (InstanceState::default(), Recorder::default());
    let step = INTERVAL / 2.0;
    assert!(c.add_cpu_sample(&mut r, 3140, REQUEST_CPU, T));
    assert!(c.add_memory_sample(&mut r, 5, T, false, INTERVAL));
    assert!(c.add_cpu_sample(&mut r, 6280, REQUEST_CPU, T + step));
    assert!(c.add_memory_sample(&mut r, 10, T + step, false, INTERVAL));
    assert!(c.add_cpu_sample(&mut r, 1570, REQUEST_CPU, T + 2.0 * step));
    assert!(c.add_memory_sample(&mut r, 2, T + 2.0 * step, false, INTERVAL));
    // Out of order, negative CPU, negative memory.
    assert!(!c.add_cpu_sample(&mut r, 1000, REQUEST_CPU, T + 2.0 * step));
    assert!(!c.add_cpu_sample(&mut r, -1000, REQUEST_CPU, T + 4.0 * step));
    assert!(!c.add_memory_sample(&mut r, -1000, T + 4.0 * step, false, INTERVAL));

    let cpu = |cores: f64, at: f64| Call::Cpu {
        cores,
        request: 2.3,
        at,
    };
    let end = T + INTERVAL;
    assert_eq!(
        r.calls,
        vec![
            cpu(3.14, T),
            add(5, end),
            cpu(6.28, T + step),
            // A higher sample in the same interval replaces the peak.
            sub(5, end),
            add(10, end),
            cpu(1.57, T + 2.0 * step),
            // At the interval's end the next interval opens.
            add(2, end + INTERVAL),
        ]
    );
    // Every valid memory sample also feeds the mean usage (Tidal's).
    assert_eq!(r.usage, vec![(5, T), (10, T + step), (2, T + 2.0 * step)]);
}

/// container_test.go `TestRecordOOMIncreasedByBumpUp`: 1000Mi becomes 1200Mi (20%).
#[test]
fn record_oom_increased_by_bump_up() {
    let (mut c, mut r) = (InstanceState::default(), Recorder::default());
    assert_eq!(c.record_oom(&mut r, T, 1000 * MB, &model()), Ok(1200 * MB));
    assert_eq!(r.calls, vec![add(1200 * MB, T + INTERVAL)]);
}

/// container_test.go `TestRecordOOMDontRunAway`: smaller OOMs in the same interval change
/// nothing; a larger one replaces the OOM peak.
#[test]
fn record_oom_dont_run_away() {
    let (mut c, mut r) = (InstanceState::default(), Recorder::default());
    let end = T + INTERVAL;
    assert!(c.record_oom(&mut r, T, 1000 * MB, &model()).is_ok());
    assert!(c.record_oom(&mut r, T, 999 * MB, &model()).is_ok());
    assert!(c.record_oom(&mut r, T, 999 * MB, &model()).is_ok());
    assert!(c.record_oom(&mut r, T, 2000 * MB, &model()).is_ok());
    assert_eq!(
        r.calls,
        vec![
            add(1200 * MB, end),
            sub(1200 * MB, end),
            add(2400 * MB, end)
        ]
    );
}

/// container_test.go `TestRecordOOMIncreasedByMin`: 1Mi grows by at least 100Mi.
#[test]
fn record_oom_increased_by_min() {
    let (mut c, mut r) = (InstanceState::default(), Recorder::default());
    assert_eq!(c.record_oom(&mut r, T, MB, &model()), Ok(101 * MB));
    assert_eq!(r.calls, vec![add(101 * MB, T + INTERVAL)]);
}

/// container_test.go `TestRecordOOMMaxedWithKnownSample`: the interval's usage peak (3000Mi)
/// is above the request (1000Mi), so it is bumped: 3600Mi.
#[test]
fn record_oom_maxed_with_known_sample() {
    let (mut c, mut r) = (InstanceState::default(), Recorder::default());
    let end = T + INTERVAL;
    assert!(c.add_memory_sample(&mut r, 3000 * MB, T, false, INTERVAL));
    assert!(c.record_oom(&mut r, T, 1000 * MB, &model()).is_ok());
    assert_eq!(
        r.calls,
        vec![
            add(3000 * MB, end),
            sub(3000 * MB, end),
            add(3600 * MB, end)
        ]
    );
}

/// container_test.go `TestRecordOOMDiscardsOldSample`: an OOM 30h before the current
/// interval's start is too old.
#[test]
fn record_oom_discards_old_sample() {
    let (mut c, mut r) = (InstanceState::default(), Recorder::default());
    assert!(c.add_memory_sample(&mut r, 1000 * MB, T, false, INTERVAL));
    assert_eq!(
        c.record_oom(&mut r, T - 30.0 * HOUR, 1000 * MB, &model()),
        Err(OomRejected::TooOld)
    );
    assert_eq!(r.calls, vec![add(1000 * MB, T + INTERVAL)]);
}

/// container_test.go `TestRecordOOMInNewWindow`: an OOM two intervals later opens a new
/// interval (on the same grid) and uses the last usage peak: 2000Mi * 1.2.
#[test]
fn record_oom_in_new_window() {
    let (mut c, mut r) = (InstanceState::default(), Recorder::default());
    assert!(c.add_memory_sample(&mut r, 2000 * MB, T, false, INTERVAL));
    assert!(
        c.record_oom(&mut r, T + 2.0 * INTERVAL, 1000 * MB, &model())
            .is_ok()
    );
    assert_eq!(
        r.calls,
        vec![
            add(2000 * MB, T + INTERVAL),
            add(2400 * MB, T + 3.0 * INTERVAL)
        ]
    );
    assert_eq!(c.window_end(), Some(T + 3.0 * INTERVAL));
}

/// container_test.go `TestRecordOOMFreshOOMNearWindowBoundaryIsNotDiscarded`
/// (kubernetes/autoscaler#8548): a sample on the next interval's boundary moves the interval's
/// end a whole interval past it; an OOM one second before that sample is still recorded,
/// against the new peak: 2000Mi * 1.2.
#[test]
fn record_oom_fresh_oom_near_window_boundary_is_not_discarded() {
    let (mut c, mut r) = (InstanceState::default(), Recorder::default());
    assert!(c.add_memory_sample(&mut r, 100 * MB, T, false, INTERVAL));
    assert!(c.add_memory_sample(&mut r, 2000 * MB, T + INTERVAL, false, INTERVAL));
    let end = T + 2.0 * INTERVAL;
    assert_eq!(
        c.record_oom(&mut r, T + INTERVAL - 1.0, 1000 * MB, &model()),
        Ok(2400 * MB)
    );
    assert_eq!(
        r.calls,
        vec![
            add(100 * MB, T + INTERVAL),
            add(2000 * MB, end),
            sub(2000 * MB, end),
            add(2400 * MB, end)
        ]
    );
}

/// container.go `addMemorySample`: a memory sample earlier than the previous one is dropped,
/// one at the same time is kept; an OOM is processed even when earlier than the last sample.
#[test]
fn memory_ordering() {
    let (mut c, mut r) = (InstanceState::default(), Recorder::default());
    assert!(c.add_memory_sample(&mut r, 100, T, false, INTERVAL));
    assert!(!c.add_memory_sample(&mut r, 200, T - 1.0, false, INTERVAL));
    assert!(c.add_memory_sample(&mut r, 300, T + 120.0, false, INTERVAL));
    assert!(c.add_memory_sample(&mut r, 250, T + 120.0, false, INTERVAL));
    // max(1000Mi + 100Mi, 1000Mi * 1.2)
    assert_eq!(
        c.record_oom(&mut r, T + 60.0, 1000 * MB, &model()),
        Ok(1200 * MB)
    );
    assert_eq!(c.max_memory_peak(), 1200 * MB);
}

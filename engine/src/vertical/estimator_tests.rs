//! Ported from kubernetes/autoscaler `vertical-pod-autoscaler/pkg/recommender/logic/`
//! `estimator_test.go` and `recommender_test.go` (one test per upstream test, named in each
//! doc comment), plus the mean/variance estimator and the start-up cap on hand-computed data.

// Upstream's test values (3.14 cores, 6.28 cores) are not pi.
#![allow(clippy::approx_constant)]

use super::*;
use crate::vertical::capping::{controlled_resources, filter_controlled};
use crate::vertical::config::{ContainerPolicy, ModelConfig};
use crate::vertical::histogram_options::HistogramOptions;
use crate::vertical::instance::Aggregator;

/// `anyTime = time.Unix(0, 0)`.
const ANY_TIME: f64 = 0.0;
const DAY: f64 = 86_400.0;

fn state() -> AggregateState {
    AggregateState::new(&ModelConfig::default(), ANY_TIME).expect("valid model")
}

/// `NewConstEstimator(3.14 cores, 3.14e9 bytes)`.
fn test_resources() -> Amounts {
    Amounts {
        cpu: cpu_amount_from_cores(3.14),
        memory: memory_amount_from_bytes(3.14e9),
    }
}

fn const_pipeline(a: Amounts) -> Pipeline {
    Pipeline {
        base: Base::Const(a),
        margin_fraction: 0.0,
        confidence: None,
        max_multiplier: None,
    }
}

/// estimator_test.go `TestPercentileEstimator`: p20 of CPU {1, 2, 3} is about 1 core, p50 of
/// memory {1e9, 2e9, 3e9} about 2e9 (within 5%: the bucket's end).
#[test]
fn percentile_estimator() {
    let mut s = state();
    for v in [1.0, 2.0, 3.0] {
        let (cpu, memory) = s.histograms_mut();
        cpu.add_sample(v, 1.0, ANY_TIME).expect("valid");
        memory.add_sample(v * 1e9, 1.0, ANY_TIME).expect("valid");
    }
    let e = base_estimate(
        Base::Percentile {
            cpu: 0.2,
            memory: 0.5,
        },
        &s,
    );
    let rel = |want: f64, got: f64| ((want - got) / want).abs();
    assert!(rel(1.0, e.cpu as f64 / 1000.0) <= 0.05, "{e:?}");
    assert!(rel(2e9, e.memory as f64) <= 0.05, "{e:?}");
}

/// estimator_test.go `TestConfidenceMultiplier`: 9 CPU samples 2 minutes apart give
/// confidence 9/1440 = 0.00625, and 3.14 * (1 + 0.1/0.00625)^2 = 907.46.
#[test]
fn confidence_multiplier_scales_by_history() {
    let mut s = state();
    let request = cpu_amount_from_cores(3.14);
    for i in 0..9 {
        s.add_cpu_sample(1000, request, ANY_TIME + f64::from(i) * 120.0);
    }
    let c = confidence(&s, DAY);
    assert_eq!(c, 0.00625);
    let m = ConfidenceMultiplier {
        multiplier: 0.1,
        exponent: 2.0,
    };
    let e = confidence_multiplier(test_resources(), m, c, None);
    assert_eq!(e.cpu as f64 / 1000.0, 907.46);
}

/// estimator_test.go `TestConfidenceMultiplierNoHistory`: with no history the multiplier is
/// +Inf (capped at 1e14) for a positive exponent and 0 for a negative one.
#[test]
fn confidence_multiplier_no_history() {
    let s = state();
    let c = confidence(&s, DAY);
    let up = ConfidenceMultiplier {
        multiplier: 1.0,
        exponent: 1.0,
    };
    let down = ConfidenceMultiplier {
        multiplier: 1.0,
        exponent: -1.0,
    };
    assert_eq!(
        confidence_multiplier(test_resources(), up, c, None).cpu,
        100_000_000_000_000
    );
    assert_eq!(
        confidence_multiplier(test_resources(), down, c, None).cpu,
        0
    );
}

/// estimator_test.go `TestMarginEstimator`: a 10% margin on 3.14 cores and 3.14e9 bytes.
#[test]
fn margin_estimator() {
    let e = margin(test_resources(), 0.1);
    assert_eq!(e.cpu as f64 / 1000.0, 3.454);
    assert_eq!(e.memory as f64, 3.454e9);
}

/// estimator_test.go `TestMinResourcesEstimator`.
#[test]
fn min_resources_estimator() {
    let min = Amounts {
        cpu: cpu_amount_from_cores(0.2),
        memory: memory_amount_from_bytes(4e8),
    };
    let base = Amounts {
        cpu: cpu_amount_from_cores(3.14),
        memory: memory_amount_from_bytes(2e7),
    };
    let e = at_least(base, min);
    // CPU above the minimum, memory below it.
    assert_eq!(e.cpu as f64 / 1000.0, 3.14);
    assert_eq!(e.memory as f64, 4e8);
}

/// `podResourceRecommender` with the same const estimator for all three estimates
/// (recommender_test.go's setup): 1m CPU and 1e6 bytes.
fn const_estimators() -> Estimators {
    let p = const_pipeline(Amounts {
        cpu: cpu_amount_from_cores(0.001),
        memory: memory_amount_from_bytes(1e6),
    });
    Estimators {
        target: p,
        lower_bound: p,
        upper_bound: p,
    }
}

/// recommender_test.go `TestMinResourcesApplied`: one container gets the whole pod minimum,
/// 25m and 250Mi.
#[test]
fn min_resources_applied() {
    let cfg = VerticalConfig::default();
    let min = container_minimum(&cfg, 1);
    let r = RawRecommendation::estimate(&const_estimators(), &state(), 0.0, min);
    assert_eq!(r.target.cpu, cpu_amount_from_cores(25.0 / 1000.0));
    assert_eq!(
        r.target.memory,
        memory_amount_from_bytes(250.0 * 1024.0 * 1024.0)
    );
}

/// recommender_test.go `TestMinResourcesSplitAcrossContainers`: two containers get half each
/// (12m: 12.5 truncated, and 125Mi).
#[test]
fn min_resources_split_across_containers() {
    let cfg = VerticalConfig::default();
    let min = container_minimum(&cfg, 2);
    for _container in ["container-1", "container-2"] {
        let r = RawRecommendation::estimate(&const_estimators(), &state(), 0.0, min);
        assert_eq!(r.target.cpu, cpu_amount_from_cores((25.0 / 1000.0) / 2.0));
        assert_eq!(r.target.cpu, 12);
        assert_eq!(
            r.target.memory,
            memory_amount_from_bytes((250.0 * 1024.0 * 1024.0) / 2.0)
        );
    }
}

/// recommender_test.go `TestControlledResourcesFiltered`: memory only.
#[test]
fn controlled_resources_filtered() {
    let policy = ContainerPolicy {
        controlled_resources: Some(vec![Resource::Memory]),
        ..ContainerPolicy::named("container-1")
    };
    let controlled = controlled_resources(Some(&policy));
    let min = container_minimum(&VerticalConfig::default(), 1);
    let r = RawRecommendation::estimate(&const_estimators(), &state(), 0.0, min);
    for a in [r.target, r.lower_bound, r.upper_bound] {
        let f = filter_controlled(a.cpu, a.memory, &controlled);
        assert!(f.memory.is_some());
        assert!(f.cpu.is_none());
    }
}

/// recommender_test.go `TestControlledResourcesFilteredDefault`: memory and CPU.
#[test]
fn controlled_resources_filtered_default() {
    let policy = ContainerPolicy {
        controlled_resources: Some(vec![Resource::Memory, Resource::Cpu]),
        ..ContainerPolicy::named("container-1")
    };
    let controlled = controlled_resources(Some(&policy));
    let min = container_minimum(&VerticalConfig::default(), 1);
    let r = RawRecommendation::estimate(&const_estimators(), &state(), 0.0, min);
    for a in [r.target, r.lower_bound, r.upper_bound] {
        let f = filter_controlled(a.cpu, a.memory, &controlled);
        assert!(f.memory.is_some() && f.cpu.is_some());
    }
}

/// `u + z * s` on hand-computed data. CPU 1, 2, 3, 4 cores (same request, same time):
/// u = 2.5, s = sqrt(1.25), 2.5 + 1.645 * 1.1180340 = 4.3391659 -> 4339m. Memory peaks 1e9 and
/// 3e9: u = 2e9, s = 1e9, 2e9 + 1.645e9 = 3.645e9 bytes. With z = 0 it is the mean.
#[test]
fn mean_variance_estimator() {
    let mut s = state();
    for cores in [1000, 2000, 3000, 4000] {
        s.add_cpu_sample(cores, 1000, ANY_TIME);
    }
    s.add_memory_peak(1_000_000_000, ANY_TIME + DAY);
    s.add_memory_peak(3_000_000_000, ANY_TIME + DAY);
    let e = base_estimate(Base::MeanVariance { z: 1.645 }, &s);
    assert_eq!(e.cpu, 4339);
    assert_eq!(e.memory, 3_645_000_000);
    let mean = base_estimate(Base::MeanVariance { z: 0.0 }, &s);
    assert_eq!(
        mean,
        Amounts {
            cpu: 2500,
            memory: 2_000_000_000
        }
    );
    // A negative estimate (z far below the mean) is 0, and an empty history gives 0.
    assert_eq!(
        base_estimate(Base::MeanVariance { z: -10.0 }, &s),
        Amounts::default()
    );
    assert_eq!(
        base_estimate(Base::MeanVariance { z: 1.645 }, &state()),
        Amounts::default()
    );
}

/// The configured pipelines: p90/p50/p95 (or z 1.645/0/2.326), 15% margin, confidence on the
/// bounds only, and the start-up cap on the upper bound's multiplier only.
#[test]
fn pipelines_from_config() {
    let cfg = VerticalConfig {
        max_upper_bound_multiplier: Some(3.0),
        ..VerticalConfig::default()
    };
    let e = Estimators::from_config(&cfg);
    assert_eq!(
        e.target.base,
        Base::Percentile {
            cpu: 0.9,
            memory: 0.9
        }
    );
    assert_eq!(
        e.lower_bound.base,
        Base::Percentile {
            cpu: 0.5,
            memory: 0.5
        }
    );
    assert_eq!(
        e.upper_bound.base,
        Base::Percentile {
            cpu: 0.95,
            memory: 0.95
        }
    );
    assert_eq!(e.target.margin_fraction, 0.15);
    assert_eq!(e.target.confidence, None);
    assert_eq!(e.upper_bound.max_multiplier, Some(3.0));
    assert_eq!(e.lower_bound.max_multiplier, None);
    let mv = Estimators::from_config(&VerticalConfig {
        estimator: EstimatorKind::MeanVariance,
        ..VerticalConfig::default()
    });
    assert_eq!(mv.target.base, Base::MeanVariance { z: 1.645 });
    assert_eq!(mv.lower_bound.base, Base::MeanVariance { z: 0.0 });
    assert_eq!(mv.upper_bound.base, Base::MeanVariance { z: 2.326 });
}

/// autoscaler#5569: ten minutes of history (confidence 9/1440) multiply the VPA's upper bound
/// by 1 + 1440/9 = 161; with `max_upper_bound_multiplier: 3` by 3.
#[test]
fn start_up_upper_bound_cap() {
    let mut s = state();
    for i in 0..10 {
        s.add_cpu_sample(500, 1000, ANY_TIME + 60.0 * f64::from(i));
    }
    let c = confidence(&s, DAY);
    assert_eq!(c, 9.0 * 60.0 / DAY);
    let up = VerticalConfig::default().upper_bound_confidence;
    let base = Amounts {
        cpu: 1000,
        memory: 1_000_000_000,
    };
    assert_eq!(confidence_multiplier(base, up, c, None).cpu, 161_000);
    let capped = confidence_multiplier(base, up, c, Some(3.0));
    assert_eq!(
        capped,
        Amounts {
            cpu: 3000,
            memory: 3_000_000_000
        }
    );
    // Past 12 hours of history the VPA's own multiplier is below 3 and the cap does nothing.
    assert_eq!(confidence_multiplier(base, up, 1.0, Some(3.0)).cpu, 2000);
}

/// A full histogram pipeline by hand: 0.5 cores every minute for two days. Every percentile is
/// the end of 0.5's bucket, the target that plus 15%, and the bounds carry the confidence
/// multipliers for min(2879 min / 1 day, 2880 / 1440).
#[test]
fn histogram_pipeline_by_hand() {
    let mut s = state();
    for i in 0..2880 {
        s.add_cpu_sample(500, 1000, ANY_TIME + 60.0 * f64::from(i));
    }
    let o = HistogramOptions::cpu();
    let end = o.bucket_start(o.find_bucket(0.5) + 1);
    let p = (end * 1000.0) as i64;
    let with_margin = p + (p as f64 * 0.15) as i64;
    let c = confidence(&s, DAY);
    assert_eq!(c, 2879.0 / 1440.0);
    let e = Estimators::from_config(&VerticalConfig::default());
    assert_eq!(e.target.estimate(&s, c).cpu, with_margin);
    let upper = (with_margin as f64 * (1.0 + 1.0 / c)) as i64;
    assert_eq!(e.upper_bound.estimate(&s, c).cpu, upper);
    let lower = (with_margin as f64 * (1.0 + 0.001 / c).powf(-2.0)) as i64;
    assert_eq!(e.lower_bound.estimate(&s, c).cpu, lower);
}

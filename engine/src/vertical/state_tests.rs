//! `VerticalState`, the API the controller calls: input checks, duplicate samples, OOMs,
//! recommendations end to end, the checkpoint (round trip, size, bad input) and pruning.

use super::*;
use crate::vertical::histogram_options::HistogramOptions;
use crate::vertical::{ContainerPolicy, EstimatorKind};

const NOW: f64 = 1_700_000_000.0;
const DAY: f64 = 86_400.0;
const MI: f64 = 1024.0 * 1024.0;

fn new_state() -> VerticalState {
    VerticalState::new(ModelConfig::default()).expect("valid model")
}

fn req() -> Resources {
    Resources::new(1.0, 512.0 * MI)
}

/// One pod, one sample a minute for `minutes` up to `NOW`, of `usage(minute)`.
fn feed(
    s: &mut VerticalState,
    pod: &str,
    container: &str,
    minutes: u32,
    usage: impl Fn(u32) -> Resources,
) {
    for m in 0..minutes {
        let t = NOW - f64::from(minutes - 1 - m) * 60.0;
        s.observe(pod, container, &usage(m), &req(), t)
            .expect("valid sample");
    }
}

/// The end of the CPU bucket holding `cores`, plus the 15% margin, in cores.
fn cpu_p_plus_margin(cores: f64) -> f64 {
    let o = HistogramOptions::cpu();
    let p = (o.bucket_start(o.find_bucket(cores) + 1) * 1000.0) as i64;
    (p + (p as f64 * 0.15) as i64) as f64 / 1000.0
}

/// The end of the memory bucket holding `bytes`, plus 15%.
fn memory_p_plus_margin(bytes: f64) -> f64 {
    let o = HistogramOptions::memory();
    let p = o.bucket_start(o.find_bucket(bytes) + 1) as i64;
    (p + (p as f64 * 0.15) as i64) as f64
}

/// Non-finite and negative numbers and empty names are errors naming the field, and the state
/// is unchanged by them.
#[test]
fn observe_rejects_bad_input() {
    let mut s = new_state();
    let cases: [(Resources, Resources, f64, &str); 6] = [
        (Resources::new(f64::NAN, 1.0), req(), NOW, "usage.cpu_cores"),
        (
            Resources::new(0.1, f64::INFINITY),
            req(),
            NOW,
            "usage.memory_bytes",
        ),
        (Resources::new(-0.1, 1.0), req(), NOW, "usage.cpu_cores"),
        (
            Resources::new(0.1, 1.0),
            Resources::new(f64::NAN, 1.0),
            NOW,
            "requests.cpu_cores",
        ),
        (
            Resources::new(0.1, 1.0),
            Resources::new(1.0, -5.0),
            NOW,
            "requests.memory_bytes",
        ),
        (Resources::new(0.1, 1.0), req(), f64::NAN, "now"),
    ];
    for (usage, requests, now, field) in cases {
        let err = s
            .observe("p", "app", &usage, &requests, now)
            .expect_err(field);
        assert!(err.to_string().contains(field), "{err}");
        assert!(err.to_string().contains("app in p"), "{err}");
        assert!(matches!(err.label(), "not_finite" | "negative"), "{err}");
    }
    assert!(s.observe("", "app", &req(), &req(), NOW).is_err());
    assert!(s.observe("p", "", &req(), &req(), NOW).is_err());
    assert_eq!(s.containers().count(), 0, "nothing was recorded");
    assert!(s.record_oom("p", "app", f64::NAN, NOW).is_err());
    assert!(s.record_oom("p", "app", -1.0, NOW).is_err());
    assert_eq!(s.containers().count(), 0);
}

/// container.go: a CPU sample not later than the pod's previous one is dropped; memory at the
/// same time is kept; another pod at the same time is its own.
#[test]
fn duplicates_are_dropped_per_pod() {
    let mut s = new_state();
    let u = Resources::new(0.5, 100.0 * MI);
    assert_eq!(
        s.observe("a", "app", &u, &req(), NOW),
        Ok(Observed {
            cpu: true,
            memory: true
        })
    );
    assert_eq!(
        s.observe("a", "app", &u, &req(), NOW),
        Ok(Observed {
            cpu: false,
            memory: true
        })
    );
    assert_eq!(
        s.observe("a", "app", &u, &req(), NOW - 1.0),
        Ok(Observed {
            cpu: false,
            memory: false
        })
    );
    assert_eq!(
        s.observe("b", "app", &u, &req(), NOW),
        Ok(Observed {
            cpu: true,
            memory: true
        })
    );
    let cpu_only = Resources {
        cpu_cores: Some(0.5),
        memory_bytes: None,
    };
    assert_eq!(
        s.observe("b", "app", &cpu_only, &Resources::default(), NOW + 60.0),
        Ok(Observed {
            cpu: true,
            memory: false
        })
    );
    assert_eq!(s.aggregate("app").map(|a| a.total_samples()), Some(3));
}

/// Two containers with steady usage for two days, the histogram estimator end to end: targets
/// are the bucket ends plus 15%, the bounds carry the confidence multipliers, the pod minimum
/// is split in two (12m, 125Mi) and lifts the idle sidecar.
#[test]
fn recommend_end_to_end() {
    let mut s = new_state();
    feed(&mut s, "web-0", "app", 2 * 1440, |_| {
        Resources::new(0.5, 300e6)
    });
    feed(&mut s, "web-0", "sidecar", 2 * 1440, |_| {
        Resources::new(0.001, 1e6)
    });
    let recs = s
        .recommend(&VerticalConfig::default(), &[], NOW)
        .expect("valid config");
    assert_eq!(recs.len(), 2);
    let app = &recs[0];
    assert_eq!(app.container, "app");
    assert_eq!(app.total_samples, 2880);
    assert_eq!(app.confidence, 2879.0 / 1440.0);
    let cpu = cpu_p_plus_margin(0.5);
    assert_eq!(app.target.cpu_cores, Some(cpu));
    assert_eq!(app.uncapped_target, app.target);
    // One memory peak per day (two days): both 300e6.
    assert_eq!(app.target.memory_bytes, Some(memory_p_plus_margin(300e6)));
    let c = app.confidence;
    let upper = ((cpu * 1000.0) * (1.0 + 1.0 / c)) as i64 as f64 / 1000.0;
    assert_eq!(app.upper_bound.cpu_cores, Some(upper));
    let lower = ((cpu * 1000.0) * (1.0 + 0.001 / c).powf(-2.0)) as i64 as f64 / 1000.0;
    assert_eq!(app.lower_bound.cpu_cores, Some(lower));
    assert!(app.coordinated.is_empty() && app.capped.is_empty());
    let sidecar = &recs[1];
    assert_eq!(sidecar.target, Resources::new(0.012, 125.0 * MI));
}

/// `mean_variance` through the API: a pod alternating 1 and 3 cores has u ~ 2, s ~ 1, so the
/// target is about (2 + 1.645) * 1.15 = 4.19 cores, and the lower bound (z = 0) about the
/// mean plus 15%.
#[test]
fn recommend_mean_variance() {
    let mut s = new_state();
    feed(&mut s, "p", "app", 1440, |m| {
        Resources::new(if m % 2 == 0 { 1.0 } else { 3.0 }, 300e6)
    });
    let cfg = VerticalConfig {
        estimator: EstimatorKind::MeanVariance,
        ..VerticalConfig::default()
    };
    let recs = s.recommend(&cfg, &[], NOW).expect("valid");
    let t = recs[0].target.cpu_cores.expect("cpu");
    assert!((t - 3.645 * 1.15).abs() < 0.01, "{t}");
    // Memory: one peak of 300e6, s = 0: the peak plus 15%.
    assert_eq!(recs[0].target.memory_bytes, Some(345e6));
}

/// An OOM is recorded as `max(used + 100Mi, used * 1.2)` and raises the memory target; an OOM
/// of an unknown container creates it (upstream would drop it); an old one is reported.
#[test]
fn oom_raises_memory() {
    let mut s = new_state();
    feed(&mut s, "p", "app", 60, |_| Resources::new(0.2, 200e6));
    // used = max(request 256Mi, peak 200e6) = 256Mi; 256Mi + 100Mi > 256Mi * 1.2.
    let out = s.record_oom("p", "app", 256.0 * MI, NOW).expect("valid");
    assert_eq!(
        out,
        OomOutcome::Recorded {
            memory_bytes: 356.0 * MI
        }
    );
    let recs = s
        .recommend(&VerticalConfig::default(), &[], NOW)
        .expect("valid");
    assert_eq!(
        recs[0].target.memory_bytes,
        Some(memory_p_plus_margin(356.0 * MI))
    );

    let out = s
        .record_oom("new-pod", "init-loop", 64.0 * MI, NOW)
        .expect("valid");
    assert_eq!(
        out,
        OomOutcome::Recorded {
            memory_bytes: 164.0 * MI
        }
    );
    assert!(s.aggregate("init-loop").is_some());
    assert_eq!(
        s.record_oom("p", "app", 256.0 * MI, NOW - 3.0 * DAY),
        Ok(OomOutcome::TooOld)
    );
}

/// autoscaler#5569, off by default: ten minutes of history give the VPA's upper bound
/// 161 times the p95; with `max_upper_bound_multiplier: 3` three times.
#[test]
fn start_up_upper_bound() {
    let mut s = new_state();
    feed(&mut s, "p", "app", 10, |_| Resources::new(0.5, 300e6));
    let vpa = s
        .recommend(&VerticalConfig::default(), &[], NOW)
        .expect("valid");
    let capped = VerticalConfig {
        max_upper_bound_multiplier: Some(3.0),
        ..VerticalConfig::default()
    };
    let tidal = s.recommend(&capped, &[], NOW).expect("valid");
    let p95 = cpu_p_plus_margin(0.5);
    assert_eq!(
        vpa[0].upper_bound.cpu_cores,
        Some(((p95 * 1000.0) * 161.0) as i64 as f64 / 1000.0)
    );
    assert_eq!(tidal[0].upper_bound.cpu_cores, Some(p95 * 3.0));
    assert_eq!(
        vpa[0].target, tidal[0].target,
        "only the upper bound changes"
    );
}

/// Bad settings are rejected naming the field.
#[test]
fn recommend_rejects_bad_config() {
    let s = new_state();
    let mut cfg = VerticalConfig::default();
    cfg.percentiles.target = 1.5;
    let err = s.recommend(&cfg, &[], NOW).expect_err("p150");
    assert!(err.to_string().starts_with("percentiles.target"), "{err}");
    let cfg = VerticalConfig {
        container_policies: vec![ContainerPolicy::named("a"), ContainerPolicy::named("a")],
        ..VerticalConfig::default()
    };
    let err = s.recommend(&cfg, &[], NOW).expect_err("twice");
    assert!(err.to_string().contains("container_policies[1]"), "{err}");
    let h = [HorizontalTarget {
        resource: Resource::Cpu,
        container: None,
        target_utilization_percent: 0,
        tolerance_down: 0.1,
        tolerance_up: 0.1,
    }];
    let err = s
        .recommend(&VerticalConfig::default(), &h, NOW)
        .expect_err("0%");
    assert!(err.to_string().contains("horizontal[0]"), "{err}");
    assert!(
        VerticalState::new(ModelConfig {
            cpu_half_life_seconds: 0.0,
            ..ModelConfig::default()
        })
        .is_err()
    );
}

/// A realistic history of two containers (8 days, 5 pods, a daily cycle with noise), through
/// JSON and back: the same recommendations, in a few KiB.
#[test]
fn checkpoint_round_trip_and_size() {
    let mut s = new_state();
    let mut seed: u64 = 42;
    let mut noise = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as f64 / f64::from(1u32 << 31)
    };
    for m in 0..8 * 1440u32 {
        let t = NOW - f64::from(8 * 1440 - 1 - m) * 60.0;
        let day = (f64::from(m) / 1440.0 * std::f64::consts::TAU).sin();
        for p in 0..5 {
            let pod = format!("web-{p}");
            let app = Resources::new(0.3 + 0.2 * day + 0.1 * noise(), 400e6 + 80e6 * noise());
            let sidecar = Resources::new(0.02 + 0.01 * noise(), 60e6 + 5e6 * noise());
            s.observe(&pod, "app", &app, &req(), t).expect("valid");
            s.observe(&pod, "sidecar", &sidecar, &req(), t)
                .expect("valid");
        }
    }
    let cp = s.checkpoint();
    let json = serde_json::to_string(&cp).expect("serializes");
    assert!(json.len() < 4096, "{} bytes: {json}", json.len());
    let back: VerticalCheckpoint = serde_json::from_str(&json).expect("parses");
    let restored = VerticalState::from_checkpoint(ModelConfig::default(), &back).expect("loads");
    let cfg = VerticalConfig::default();
    let a = s.recommend(&cfg, &[], NOW).expect("valid");
    let b = restored.recommend(&cfg, &[], NOW).expect("valid");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.container, y.container);
        assert_eq!(x.total_samples, y.total_samples);
        assert_eq!(x.confidence, y.confidence);
        for r in Resource::ALL {
            let (p, q) = (x.target.get(r).expect("set"), y.target.get(r).expect("set"));
            // Normalizing to 10000 may move a percentile by at most one 5% bucket.
            assert!((p - q).abs() <= 0.06 * p, "{r:?}: {p} vs {q}");
        }
    }
    let mv = VerticalConfig {
        estimator: EstimatorKind::MeanVariance,
        ..cfg
    };
    assert_eq!(
        s.recommend(&mv, &[], NOW).expect("valid"),
        restored.recommend(&mv, &[], NOW).expect("valid"),
        "moments are exact"
    );
}

/// Checkpoints that cannot be loaded are errors.
#[test]
fn bad_checkpoints() {
    let mut s = new_state();
    feed(&mut s, "p", "app", 5, |_| Resources::new(0.5, 300e6));
    let good = s.checkpoint();
    let mut cp = good.clone();
    let c = cp.containers.remove("app").expect("app");
    cp.containers.insert(String::new(), c.clone());
    assert!(VerticalState::from_checkpoint(ModelConfig::default(), &cp).is_err());
    let mut cp = good.clone();
    let mut c = c;
    c.cpu.bucket_weights.insert(500, 1);
    cp.containers.insert("app".into(), c);
    let err = VerticalState::from_checkpoint(ModelConfig::default(), &cp).expect_err("bucket");
    assert!(err.to_string().contains("bucket 500"), "{err}");
    let json = serde_json::to_string(&good)
        .expect("serializes")
        .replace("\"version\":1", "\"version\":1,\"extra\":0");
    assert!(
        serde_json::from_str::<VerticalCheckpoint>(&json).is_err(),
        "unknown fields"
    );
}

/// `prune`: a container without a sample for 8 days goes (and leaves the pod minimum split);
/// pods silent for a day lose their tracker, so their next memory sample opens a new interval.
#[test]
fn prune_and_expiry() {
    let mut s = new_state();
    feed(&mut s, "p", "app", 10, |_| Resources::new(0.5, 300e6));
    s.observe(
        "p",
        "old",
        &Resources::new(0.5, 300e6),
        &req(),
        NOW - 8.0 * DAY,
    )
    .expect("valid");
    let recs = s
        .recommend(&VerticalConfig::default(), &[], NOW)
        .expect("valid");
    assert_eq!(recs.len(), 1, "expired containers are not recommended");
    assert_eq!(s.prune(NOW), vec!["old".to_owned()]);
    assert_eq!(s.containers().collect::<Vec<_>>(), ["app"]);
    // The pod's tracker is dropped a day after its last sample.
    assert!(s.prune(NOW + DAY).is_empty());
    let seen = s
        .observe("p", "app", &Resources::new(0.5, 100e6), &req(), NOW - 60.0)
        .expect("valid");
    assert!(seen.cpu, "a fresh tracker accepts an older time again");
    s.remove_pod("p");
}

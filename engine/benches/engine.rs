//! One horizontal decision: 100 pods, 3 metrics (CPU utilization, a Pods metric, an External
//! AverageValue metric), with a behavior and some history. Target: under 20 µs.
//! `spec.formula` evaluation (target under 5 µs) and 10,000 small policies in one cycle
//! (target under 200 ms on one core). The vertical recommender: `recommend` for 10 containers
//! with 10,000 samples each, and one `observe`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tidal_engine::formula::{Formula, Inputs, MetricValues};
use tidal_engine::horizontal::desired_with_formula;
use tidal_engine::types::{
    Behavior, ConditionStatus, Container, ControllerSettings, KafkaDetail, KafkaLag, MetricSource,
    MetricSpec, MetricTarget, Observation, Pod, PodPhase, ReadyCondition, Recommendation,
    ScaleEvent, Spec, State, TargetType,
};
use tidal_engine::vertical::{
    HorizontalTarget, ModelConfig, Resource, Resources, VerticalConfig, VerticalState,
};

const NOW: f64 = 1_700_000_000.0;

fn target(kind: TargetType, v: f64) -> MetricTarget {
    MetricTarget {
        kind,
        average_utilization: (kind == TargetType::Utilization).then_some(v as i32),
        average_value: (kind == TargetType::AverageValue).then_some(v),
        value: (kind == TargetType::Value).then_some(v),
    }
}

fn input() -> (Spec, State, Vec<Observation>) {
    let spec = Spec {
        min_replicas: 2,
        max_replicas: 500,
        metrics: vec![
            MetricSpec {
                name: "cpu".into(),
                source: MetricSource::Resource,
                container: None,
                target: target(TargetType::Utilization, 60.0),
                kafka_lag: None,
            },
            MetricSpec {
                name: "rps".into(),
                source: MetricSource::Pods,
                container: None,
                target: target(TargetType::AverageValue, 50.0),
                kafka_lag: None,
            },
            MetricSpec {
                name: "lag".into(),
                source: MetricSource::External,
                container: None,
                target: target(TargetType::AverageValue, 100.0),
                kafka_lag: None,
            },
        ],
        behavior: Some(Behavior::default()),
        controller: ControllerSettings::default(),
        formula: None,
    };
    let pods = (0..100)
        .map(|i| Pod {
            name: format!("worker-{i}"),
            phase: PodPhase::Running,
            deleting: false,
            start_time_unix_seconds: Some(NOW - 3600.0),
            ready: Some(ReadyCondition {
                status: ConditionStatus::True,
                last_transition_unix_seconds: NOW - 3500.0,
            }),
            containers: vec![Container {
                name: "app".into(),
                requests: BTreeMap::from([("cpu".to_owned(), 0.5)]),
                restart_policy_always: false,
            }],
            init_containers: vec![],
            requests: BTreeMap::new(),
        })
        .collect();
    let state = State {
        spec_replicas: 100,
        status_replicas: Some(100),
        pods,
        recommendations: Some(
            (0..20)
                .map(|i| Recommendation {
                    replicas: 100 + i,
                    at_unix_seconds: NOW - 15.0 * f64::from(i),
                })
                .collect(),
        ),
        scale_events: vec![ScaleEvent {
            replica_change: 10,
            at_unix_seconds: NOW - 30.0,
        }],
        last_active_unix_seconds: None,
    };
    let mut obs = Vec::new();
    for i in 0..100 {
        let pod = Some(format!("worker-{i}"));
        let sample = |metric: &str, value: f64| Observation {
            metric: metric.into(),
            pod: pod.clone(),
            value,
            timestamp_unix_seconds: Some(NOW - 5.0),
            window_seconds: Some(15.0),
            error: None,
            stale: false,
            kafka: None,
            invalid: false,
        };
        obs.push(sample("cpu", 0.3 + f64::from(i % 7) * 0.01));
        obs.push(sample("rps", 40.0 + f64::from(i % 5)));
    }
    for p in 0..12 {
        obs.push(Observation {
            metric: "lag".into(),
            pod: None,
            value: 900.0 + f64::from(p),
            timestamp_unix_seconds: Some(NOW),
            window_seconds: None,
            error: None,
            stale: false,
            kafka: None,
            invalid: false,
        });
    }
    (spec, state, obs)
}

fn bench(c: &mut Criterion) {
    let (spec, state, obs) = input();
    c.bench_function("horizontal::desired 100 pods 3 metrics", |b| {
        b.iter(|| tidal_engine::desired(black_box(&spec), black_box(&state), black_box(&obs), NOW))
    });
    for keep in ["cpu", "rps", "lag"] {
        let mut s1 = spec.clone();
        s1.metrics.retain(|m| m.name == keep);
        let o1: Vec<_> = obs.iter().filter(|o| o.metric == keep).cloned().collect();
        c.bench_function(&format!("horizontal::desired 100 pods {keep} only"), |b| {
            b.iter(|| tidal_engine::desired(black_box(&s1), black_box(&state), black_box(&o1), NOW))
        });
    }
}

/// One `spec.formula` evaluation against cached compiled formulas. Target: under 5 µs.
fn bench_formula(c: &mut Criterion) {
    let names = ["cpu", "lag"];
    let metrics = [
        Some(MetricValues {
            value: 72.0,
            target: 60.0,
            ratio: 1.2,
        }),
        Some(MetricValues {
            value: 48_000.0,
            target: 1000.0,
            ratio: 1.6,
        }),
    ];
    let inputs = Inputs {
        metrics: &metrics,
        replicas: 30.0,
        ready_replicas: 29.0,
        partitions: Some(64.0),
    };
    for src in [
        "max(cpu.ratio, lag.ratio) * replicas",
        "clamp(ceil(lag.value / 1000), 1, partitions)",
        "readyReplicas < replicas ? max(cpu.ratio * replicas, lag.value / lag.target) : clamp(ceil(lag.ratio * replicas), 1, partitions)",
    ] {
        let f = Formula::compile(src, &names).expect("compiles");
        c.bench_function(&format!("formula eval {src}"), |b| {
            b.iter(|| f.eval(black_box(&inputs)))
        });
    }
    c.bench_function(
        "formula compile max(cpu.ratio, lag.ratio) * replicas",
        |b| b.iter(|| Formula::compile(black_box("max(cpu.ratio, lag.ratio) * replicas"), &names)),
    );
}

/// 10,000 small policies (a `kafka_lag` metric and an External metric, 3 pods, a behavior,
/// every fourth with a cached `spec.formula`), one `horizontal::desired` each: one controller
/// cycle on one core. Target: under 200 ms.
fn bench_fleet(c: &mut Criterion) {
    let fleet: Vec<(Spec, Option<Formula>, State, Vec<Observation>)> = (0..10_000u32)
        .map(|i| {
            let spec = Spec {
                min_replicas: 0,
                max_replicas: 64,
                metrics: vec![
                    MetricSpec {
                        name: "lag".into(),
                        source: MetricSource::KafkaLag,
                        container: None,
                        target: MetricTarget::default(),
                        kafka_lag: Some(KafkaLag {
                            lag_per_replica: 100.0,
                            ..KafkaLag::default()
                        }),
                    },
                    MetricSpec {
                        name: "rps".into(),
                        source: MetricSource::External,
                        container: None,
                        target: target(TargetType::AverageValue, 50.0),
                        kafka_lag: None,
                    },
                ],
                behavior: Some(Behavior::default()),
                controller: ControllerSettings::default(),
                formula: (i % 4 == 0)
                    .then(|| "clamp(max(lag.ratio, rps.ratio) * replicas, 1, partitions)".into()),
            };
            let formula = spec
                .formula
                .as_deref()
                .map(|src| Formula::compile(src, &["lag", "rps"]).expect("compiles"));
            let current = 1 + (i % 7) as i32;
            let state = State {
                spec_replicas: current,
                status_replicas: Some(current),
                pods: (0..3)
                    .map(|p| Pod {
                        name: format!("p{i}-{p}"),
                        phase: PodPhase::Running,
                        deleting: false,
                        start_time_unix_seconds: Some(NOW - 3600.0),
                        ready: Some(ReadyCondition {
                            status: ConditionStatus::True,
                            last_transition_unix_seconds: NOW - 3500.0,
                        }),
                        containers: vec![],
                        init_containers: vec![],
                        requests: BTreeMap::new(),
                    })
                    .collect(),
                recommendations: Some(
                    (0..4)
                        .map(|k| Recommendation {
                            replicas: current + k % 2,
                            at_unix_seconds: NOW - 60.0 * f64::from(k),
                        })
                        .collect(),
                ),
                scale_events: vec![],
                last_active_unix_seconds: Some(NOW - 100.0),
            };
            let lag = f64::from((i * 37) % 2000);
            let obs = vec![
                Observation {
                    metric: "lag".into(),
                    pod: None,
                    value: lag,
                    timestamp_unix_seconds: Some(NOW),
                    window_seconds: None,
                    error: None,
                    stale: i % 50 == 0,
                    kafka: Some(KafkaDetail {
                        partitions: Some(12),
                        partitions_with_lag: Some(8),
                        ..KafkaDetail::default()
                    }),
                    invalid: false,
                },
                Observation {
                    metric: "rps".into(),
                    pod: None,
                    value: f64::from((i * 13) % 400),
                    timestamp_unix_seconds: Some(NOW),
                    window_seconds: None,
                    error: None,
                    stale: false,
                    kafka: None,
                    invalid: false,
                },
            ];
            (spec, formula, state, obs)
        })
        .collect();
    let mut g = c.benchmark_group("fleet");
    g.sample_size(10);
    g.bench_function("horizontal::desired 10k policies one cycle", |b| {
        b.iter(|| {
            let mut scaled = 0usize;
            for (spec, formula, state, obs) in &fleet {
                let d = desired_with_formula(
                    black_box(spec),
                    formula.as_ref(),
                    black_box(state),
                    black_box(obs),
                    NOW,
                );
                scaled += usize::from(d.rescale);
            }
            scaled
        })
    });
    g.bench_function(
        "horizontal::desired 10k policies one cycle, formulas compiled each call",
        |b| {
            b.iter(|| {
                let mut scaled = 0usize;
                for (spec, _, state, obs) in &fleet {
                    let d = tidal_engine::desired(
                        black_box(spec),
                        black_box(state),
                        black_box(obs),
                        NOW,
                    );
                    scaled += usize::from(d.rescale);
                }
                scaled
            })
        },
    );
    g.finish();
}

/// The vertical recommender: 10 containers, each with 10,000 CPU and memory samples (10 pods,
/// 1000 minutes), then one `recommend` (histogram, mean/variance, and with a horizontal CPU
/// target), and one `observe` into that state.
fn bench_vertical(c: &mut Criterion) {
    let mut state = VerticalState::new(ModelConfig::default()).expect("valid model");
    let containers: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let requests = Resources::new(1.0, 512e6);
    for m in 0..1000u32 {
        let t = NOW - f64::from(1000 - m) * 60.0;
        let wave = (f64::from(m) / 100.0).sin();
        for (k, name) in containers.iter().enumerate() {
            for p in 0..10u32 {
                let cores = 0.2 + 0.05 * k as f64 + 0.1 * wave + 0.01 * f64::from(p);
                let usage = Resources::new(cores, 2e8 + 1e7 * f64::from(p) + 3e7 * wave);
                state
                    .observe(&format!("pod-{p}"), name, &usage, &requests, t)
                    .expect("valid sample");
            }
        }
    }
    let cfg = VerticalConfig::default();
    let mv = VerticalConfig {
        estimator: tidal_engine::vertical::EstimatorKind::MeanVariance,
        ..VerticalConfig::default()
    };
    let hpa = [HorizontalTarget {
        resource: Resource::Cpu,
        container: None,
        target_utilization_percent: 60,
        tolerance_down: 0.1,
        tolerance_up: 0.1,
    }];
    let mut g = c.benchmark_group("vertical");
    g.bench_function("recommend 10 containers x 10k samples", |b| {
        b.iter(|| state.recommend(black_box(&cfg), &[], NOW))
    });
    g.bench_function(
        "recommend 10 containers x 10k samples, mean_variance",
        |b| b.iter(|| state.recommend(black_box(&mv), &[], NOW)),
    );
    g.bench_function(
        "recommend 10 containers x 10k samples, cpu coordinated",
        |b| b.iter(|| state.recommend(black_box(&cfg), black_box(&hpa), NOW)),
    );
    let mut t = NOW;
    let usage = Resources::new(0.3, 2.5e8);
    g.bench_function("observe one sample (cpu and memory)", |b| {
        b.iter(|| {
            t += 60.0;
            state.observe(black_box("pod-3"), black_box("c7"), &usage, &requests, t)
        })
    });
    g.bench_function("checkpoint 10 containers to JSON", |b| {
        b.iter(|| serde_json::to_vec(&state.checkpoint()))
    });
    g.finish();
}

criterion_group!(benches, bench, bench_formula, bench_fleet, bench_vertical);
criterion_main!(benches);

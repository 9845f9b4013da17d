//! One horizontal decision: 100 pods, 3 metrics (CPU utilization, a Pods metric, an External
//! AverageValue metric), with a behavior and some history. Target: under 20 µs.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tidal_scaler::engine::types::{
    Behavior, ConditionStatus, Container, ControllerSettings, MetricSource, MetricSpec,
    MetricTarget, Observation, Pod, PodPhase, ReadyCondition, Recommendation, ScaleEvent, Spec,
    State, TargetType,
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
            },
            MetricSpec {
                name: "rps".into(),
                source: MetricSource::Pods,
                container: None,
                target: target(TargetType::AverageValue, 50.0),
            },
            MetricSpec {
                name: "lag".into(),
                source: MetricSource::External,
                container: None,
                target: target(TargetType::AverageValue, 100.0),
            },
        ],
        behavior: Some(Behavior::default()),
        controller: ControllerSettings::default(),
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
        });
    }
    (spec, state, obs)
}

fn bench(c: &mut Criterion) {
    let (spec, state, obs) = input();
    c.bench_function("horizontal::desired 100 pods 3 metrics", |b| {
        b.iter(|| {
            tidal_scaler::engine::desired(black_box(&spec), black_box(&state), black_box(&obs), NOW)
        })
    });
    for keep in ["cpu", "rps", "lag"] {
        let mut s1 = spec.clone();
        s1.metrics.retain(|m| m.name == keep);
        let o1: Vec<_> = obs.iter().filter(|o| o.metric == keep).cloned().collect();
        c.bench_function(&format!("horizontal::desired 100 pods {keep} only"), |b| {
            b.iter(|| {
                tidal_scaler::engine::desired(
                    black_box(&s1),
                    black_box(&state),
                    black_box(&o1),
                    NOW,
                )
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

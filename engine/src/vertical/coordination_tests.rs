//! The horizontal/vertical rule: the pure function, the targets read from a horizontal spec,
//! and the fixed point checked with the real horizontal engine (`engine::desired`): after the
//! pods are resized to the coordinated request, the HPA's ratio is inside its tolerance and the
//! replica count does not change, while the estimator's own target would make it scale in.

use std::collections::BTreeMap;

use super::*;
use crate::desired;
use crate::types::{
    Behavior, ConditionStatus, Container, Decision, MetricSpec, MetricTarget, Observation, Pod,
    PodPhase, ReadyCondition, ScalingRules, State,
};
use crate::vertical::amount::Resources;
use crate::vertical::config::{ContainerPolicy, ModelConfig, VerticalConfig};
use crate::vertical::state::{ContainerRecommendation, VerticalState};

const NOW: f64 = 1_700_000_000.0;
const DAY: f64 = 86_400.0;

fn utilization(name: &str, container: Option<&str>, percent: i32) -> MetricSpec {
    MetricSpec {
        name: name.into(),
        source: if container.is_some() {
            MetricSource::ContainerResource
        } else {
            MetricSource::Resource
        },
        container: container.map(str::to_owned),
        target: MetricTarget {
            kind: TargetType::Utilization,
            average_utilization: Some(percent),
            average_value: None,
            value: None,
        },
        kafka_lag: None,
    }
}

fn spec(metrics: Vec<MetricSpec>, min: i32, max: i32) -> Spec {
    Spec {
        min_replicas: min,
        max_replicas: max,
        metrics,
        behavior: None,
        controller: Default::default(),
        formula: None,
    }
}

fn target(resource: Resource, container: Option<&str>, t: i32) -> HorizontalTarget {
    HorizontalTarget {
        resource,
        container: container.map(str::to_owned),
        target_utilization_percent: t,
        tolerance_down: 0.1,
        tolerance_up: 0.1,
    }
}

/// `horizontal_targets`: utilization targets on cpu and memory, per pod or per container, with
/// the spec's tolerances; other metrics and `AverageValue` targets are not coordinated.
#[test]
fn targets_from_a_horizontal_spec() {
    let mut average = utilization("cpu", None, 50);
    average.target = MetricTarget {
        kind: TargetType::AverageValue,
        average_utilization: None,
        average_value: Some(0.5),
        value: None,
    };
    let mut s = spec(
        vec![
            utilization("cpu", None, 60),
            utilization("memory", Some("app"), 75),
            average,
            utilization("rps", None, 10),
        ],
        1,
        10,
    );
    s.metrics[3].source = MetricSource::Pods;
    s.behavior = Some(Behavior {
        scale_up: Some(ScalingRules {
            tolerance: Some(0.05),
            ..ScalingRules::default()
        }),
        scale_down: None,
    });
    let t = horizontal_targets(&s);
    assert_eq!(
        t,
        vec![
            HorizontalTarget {
                tolerance_up: 0.05,
                ..target(Resource::Cpu, None, 60)
            },
            HorizontalTarget {
                tolerance_up: 0.05,
                ..target(Resource::Memory, Some("app"), 75)
            },
        ]
    );
    // No metrics: the HPA's default, CPU at 80%.
    assert_eq!(
        horizontal_targets(&spec(vec![], 1, 10)),
        vec![target(Resource::Cpu, None, 80)]
    );
}

/// `coordinate`: `mean / (T/100)`, the band where the HPA holds, the lowest covering target,
/// only covered containers and resources.
#[test]
fn the_rule() {
    let h = [
        target(Resource::Cpu, None, 80),
        target(Resource::Cpu, Some("app"), 50),
        target(Resource::Memory, Some("sidecar"), 90),
    ];
    // app: both CPU targets cover it, 50% wins (the largest request).
    let b = coordinate(Resource::Cpu, "app", 0.3, &h).expect("covered");
    assert_eq!(b.target_utilization_percent, 50);
    assert!((b.target - 0.6).abs() < 1e-12);
    assert!((b.lower_bound - 0.3 / (0.5 * 1.1)).abs() < 1e-12);
    assert!((b.upper_bound - 0.3 / (0.5 * 0.9)).abs() < 1e-12);
    // At either end of the band the HPA's ratio is exactly at its tolerance.
    assert!(((0.3 / b.lower_bound) / 0.5 - 1.1).abs() < 1e-12);
    assert!(((0.3 / b.upper_bound) / 0.5 - 0.9).abs() < 1e-12);
    // sidecar: only the pod-level CPU target.
    let b = coordinate(Resource::Cpu, "sidecar", 0.4, &h).expect("covered");
    assert_eq!(b.target_utilization_percent, 80);
    assert!((b.target - 0.5).abs() < 1e-12);
    assert!(coordinate(Resource::Memory, "app", 1e9, &h).is_none());
    assert!(coordinate(Resource::Memory, "sidecar", 9e8, &h).is_some());
    assert!(coordinate(Resource::Cpu, "app", 0.3, &[]).is_none());
    // A scale-down tolerance of 1 never scales in: no upper end.
    let wide = [HorizontalTarget {
        tolerance_down: 1.0,
        ..target(Resource::Cpu, None, 50)
    }];
    assert!(
        coordinate(Resource::Cpu, "app", 0.3, &wide)
            .expect("covered")
            .upper_bound
            .is_infinite()
    );
}

/// Ten pods of one container `app`, each with its own steady CPU usage, requesting `request`
/// cores, observed once a minute for `days`.
fn history(usages: &[f64], request: f64, days: u32) -> VerticalState {
    let mut s = VerticalState::new(ModelConfig::default()).expect("valid model");
    let minutes = days * 1440;
    for m in 0..minutes {
        let t = NOW - f64::from(minutes - m) * 60.0;
        for (i, u) in usages.iter().enumerate() {
            let usage = Resources::new(*u, 300e6);
            let requests = Resources::new(request, 512e6);
            s.observe(&format!("web-{i}"), "app", &usage, &requests, t)
                .expect("valid sample");
        }
    }
    s
}

/// The HPA's decision for pods running `usages` with `request` cores each.
fn hpa(spec: &Spec, usages: &[f64], request: f64) -> Decision {
    let pods = (0..usages.len())
        .map(|i| Pod {
            name: format!("web-{i}"),
            phase: PodPhase::Running,
            deleting: false,
            start_time_unix_seconds: Some(NOW - 3600.0),
            ready: Some(ReadyCondition {
                status: ConditionStatus::True,
                last_transition_unix_seconds: NOW - 3500.0,
            }),
            containers: vec![Container {
                name: "app".into(),
                requests: BTreeMap::from([("cpu".to_owned(), request)]),
                restart_policy_always: false,
            }],
            init_containers: vec![],
            requests: BTreeMap::new(),
        })
        .collect();
    let state = State {
        spec_replicas: usages.len() as i32,
        status_replicas: None,
        pods,
        recommendations: Some(vec![]),
        scale_events: vec![],
        last_active_unix_seconds: None,
    };
    let obs: Vec<Observation> = usages
        .iter()
        .enumerate()
        .map(|(i, u)| Observation {
            metric: "cpu".into(),
            pod: Some(format!("web-{i}")),
            value: *u,
            timestamp_unix_seconds: Some(NOW - 5.0),
            window_seconds: Some(15.0),
            error: None,
            stale: false,
            kafka: None,
            invalid: false,
        })
        .collect();
    desired(spec, &state, &obs, NOW)
}

fn app(recs: &[ContainerRecommendation]) -> &ContainerRecommendation {
    recs.iter()
        .find(|r| r.container == "app")
        .expect("app recommended")
}

fn utilization_of(d: &Decision) -> Option<i32> {
    d.proposals[0].current.and_then(|c| c.average_utilization)
}

/// autoscaler#6060, the fixed point. 10 pods use 0.40..0.55 cores (mean 0.475) of a 1-core
/// request; the HPA targets 60%.
///
/// - Before the resize the HPA reads the current requests: 47% < 54%, it would go to 8.
/// - The coordinated request is 0.475 / 0.6 = 0.791 cores; after the resize the HPA sees
///   exactly 60% and keeps 10 replicas (its ratio is 1).
/// - The estimator's target for the same history (p90 + 15% = 0.671 cores) would make the
///   HPA see 70% > 66% and scale out to 12; fewer cores per pod then, more pods, lower usage
///   per pod, a smaller request, ...: the fight the rule avoids.
/// - Fed the resized pods, the recommender stays where it is.
#[test]
fn fixed_point_with_the_hpa() {
    let usages = [0.40, 0.45, 0.50, 0.55, 0.40, 0.45, 0.50, 0.55, 0.45, 0.50];
    let mean = usages.iter().sum::<f64>() / 10.0;
    assert!((mean - 0.475).abs() < 1e-12, "{mean}");
    let spec = spec(vec![utilization("cpu", None, 60)], 1, 20);
    let horizontal = horizontal_targets(&spec);
    let cfg = VerticalConfig::default();

    let before = hpa(&spec, &usages, 1.0);
    assert_eq!(utilization_of(&before), Some(47));
    assert_eq!(
        before.desired_replicas, 8,
        "the HPA alone scales in on 1-core requests"
    );

    let s = history(&usages, 1.0, 2);
    let recs = s.recommend(&cfg, &horizontal, NOW).expect("valid config");
    let rec = app(&recs);
    assert_eq!(rec.coordinated, vec![Resource::Cpu]);
    let request = rec.target.cpu_cores.expect("cpu controlled");
    assert_eq!(request, 0.791, "0.475 / 0.6 truncated to a millicore");
    let after = hpa(&spec, &usages, request);
    assert_eq!(utilization_of(&after), Some(60));
    assert!(!after.rescale, "{after:?}");
    assert_eq!(after.desired_replicas, 10);
    // The band's ends are horizontal fixed points too (before the confidence multipliers,
    // which only widen it): the HPA holds anywhere inside.
    let band = coordinate(Resource::Cpu, "app", mean, &horizontal).expect("covered");
    for r in [band.lower_bound + 0.001, band.upper_bound - 0.001] {
        let d = hpa(&spec, &usages, (r * 1000.0).floor() / 1000.0);
        assert!(!d.rescale, "request {r}: {d:?}");
    }

    // The uncoordinated estimate of the same history: the HPA would fight it.
    let plain = s.recommend(&cfg, &[], NOW).expect("valid config");
    let p90 = app(&plain).target.cpu_cores.expect("cpu");
    assert!(p90 < request, "p90 + 15% = {p90} is below the mean at 60%");
    assert_eq!(p90, 0.671);
    let fight = hpa(&spec, &usages, p90);
    assert_eq!(utilization_of(&fight), Some(70));
    assert_eq!(fight.desired_replicas, 12, "{fight:?}");

    // The VPA side is a fixed point too: two more days on the resized pods give the same
    // request (to the millicore).
    let mut s = s;
    for m in 0..2 * 1440 {
        let t = NOW + f64::from(m + 1) * 60.0;
        for (i, u) in usages.iter().enumerate() {
            s.observe(
                &format!("web-{i}"),
                "app",
                &Resources::new(*u, 300e6),
                &Resources::new(request, 512e6),
                t,
            )
            .expect("valid sample");
        }
    }
    let again = s
        .recommend(&cfg, &horizontal, NOW + 2.0 * DAY)
        .expect("valid");
    assert_eq!(app(&again).target.cpu_cores, Some(request));
}

/// At `minReplicas` with little load the HPA cannot scale in, so the rule shrinks the request
/// instead, and the HPA still holds afterwards.
#[test]
fn at_min_replicas_the_request_shrinks() {
    let usages = [0.1, 0.1];
    let spec = spec(vec![utilization("cpu", None, 60)], 2, 10);
    let before = hpa(&spec, &usages, 1.0);
    assert_eq!(before.desired_replicas, 2, "held at minReplicas");
    let s = history(&usages, 1.0, 1);
    let recs = s
        .recommend(&VerticalConfig::default(), &horizontal_targets(&spec), NOW)
        .expect("valid");
    let request = app(&recs).target.cpu_cores.expect("cpu");
    assert_eq!(request, 0.166);
    let after = hpa(&spec, &usages, request);
    assert_eq!(utilization_of(&after), Some(60));
    assert!(!after.rescale);
}

/// At `maxReplicas` under load the HPA cannot scale out, so the rule grows the request.
#[test]
fn at_max_replicas_the_request_grows() {
    let usages = [0.9, 0.9, 0.9];
    let spec = spec(vec![utilization("cpu", None, 60)], 1, 3);
    let before = hpa(&spec, &usages, 1.0);
    assert_eq!(before.desired_replicas, 3, "held at maxReplicas");
    let s = history(&usages, 1.0, 1);
    let recs = s
        .recommend(&VerticalConfig::default(), &horizontal_targets(&spec), NOW)
        .expect("valid");
    let request = app(&recs).target.cpu_cores.expect("cpu");
    assert_eq!(request, 1.5);
    let after = hpa(&spec, &usages, request);
    assert_eq!(utilization_of(&after), Some(60));
    assert!(!after.rescale);
}

/// Memory follows the same rule from the mean of all memory samples (300e6 bytes here), not
/// from the daily peaks; policy bounds still apply after it, and a container whose memory is
/// not controlled is not coordinated.
#[test]
fn memory_and_policies() {
    let usages = [0.2, 0.2];
    let h = [target(Resource::Memory, None, 75)];
    let s = history(&usages, 0.5, 1);
    let recs = s
        .recommend(&VerticalConfig::default(), &h, NOW)
        .expect("valid");
    let rec = app(&recs);
    assert_eq!(rec.coordinated, vec![Resource::Memory]);
    assert_eq!(rec.target.memory_bytes, Some(400e6));

    let bounded = VerticalConfig {
        container_policies: vec![ContainerPolicy {
            max_allowed: Resources {
                cpu_cores: None,
                memory_bytes: Some(350e6),
            },
            ..ContainerPolicy::named("app")
        }],
        ..VerticalConfig::default()
    };
    let recs = s.recommend(&bounded, &h, NOW).expect("valid");
    let rec = app(&recs);
    assert_eq!(rec.target.memory_bytes, Some(350e6));
    assert_eq!(rec.uncapped_target.memory_bytes, Some(400e6));
    assert_eq!(rec.capped, vec!["memory capped to maxAllowed".to_owned()]);

    let cpu_only = VerticalConfig {
        container_policies: vec![ContainerPolicy {
            controlled_resources: Some(vec![Resource::Cpu]),
            ..ContainerPolicy::named("*")
        }],
        ..VerticalConfig::default()
    };
    let recs = s.recommend(&cpu_only, &h, NOW).expect("valid");
    assert!(app(&recs).coordinated.is_empty());
    assert_eq!(app(&recs).target.memory_bytes, None);
}

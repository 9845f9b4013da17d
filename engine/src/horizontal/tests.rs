//! End-to-end decisions. The `hpa_*` cases are ported from kubernetes/kubernetes
//! `pkg/controller/podautoscaler/horizontal_test.go` (named per case), built like upstream's
//! `testCase.prepareTestClient`: pods `test-pod-<i>` whose two containers each request half of
//! `reportedCPURequests[i]`, Ready transition at the pod's start time (Go's zero time unless
//! given), CPU samples of `level/2` per container stamped `now` with a 1-minute window, and a
//! controller with tolerance 0.1, 2m CPU initialization, 10s readiness delay and a 5m downscale
//! window.

use super::*;
use crate::replica_calc::to_milli;
use crate::test_rng::Rng;
use crate::types::{
    Behavior, ConditionStatus, ConditionType, Container, ControllerSettings, LimitStage,
    MetricSource, MetricSpec, MetricTarget, Pod, PodPhase, PolicyType, RatePolicy, ReadyCondition,
    Recommendation, ScaleEvent, ScalingRules, SelectPolicy, TargetType,
};

const NOW: f64 = 1_700_000_000.0;
const GO_ZERO: f64 = -62_135_596_800.0;

fn hot() -> f64 {
    NOW
}
fn cool() -> f64 {
    NOW - 180.0
}

fn settings() -> ControllerSettings {
    ControllerSettings {
        tolerance: 0.1,
        cpu_initialization_period_seconds: 120.0,
        initial_readiness_delay_seconds: 10.0,
        downscale_stabilization_window_seconds: 300,
    }
}

fn target(kind: TargetType, v: f64) -> MetricTarget {
    MetricTarget {
        kind,
        average_utilization: (kind == TargetType::Utilization).then_some(v as i32),
        average_value: (kind == TargetType::AverageValue).then_some(v),
        value: (kind == TargetType::Value).then_some(v),
    }
}

fn metric(name: &str, source: MetricSource, t: MetricTarget) -> MetricSpec {
    MetricSpec {
        name: name.into(),
        source,
        container: None,
        target: t,
        kafka_lag: None,
    }
}

/// Upstream `testCase` fields used here.
#[derive(Default, Clone)]
struct HpaCase {
    min: i32,
    max: i32,
    spec_replicas: i32,
    status_replicas: i32,
    cpu_target: Option<i32>,
    metrics: Vec<MetricSpec>,
    levels: Vec<u64>,
    requests: Vec<f64>,
    readiness: Vec<ConditionStatus>,
    start: Vec<f64>,
    phase: Vec<PodPhase>,
    deleting: Vec<bool>,
    /// Metrics whose source fails ("something went wrong").
    failing: Vec<&'static str>,
    /// `None` is upstream's nil (first sight: the current count is recorded first).
    recommendations: Option<Vec<Recommendation>>,
    behavior: Option<Behavior>,
    /// Upstream's `reportedCPURequests: []resource.Quantity{}` (non-nil, empty): no pods.
    no_pods: bool,
}

impl HpaCase {
    fn spec(&self) -> Spec {
        let mut metrics = Vec::new();
        if let Some(t) = self.cpu_target {
            metrics.push(metric(
                "cpu",
                MetricSource::Resource,
                target(TargetType::Utilization, f64::from(t)),
            ));
        }
        metrics.extend(self.metrics.iter().cloned());
        Spec {
            min_replicas: self.min,
            max_replicas: self.max,
            metrics,
            behavior: self.behavior.clone(),
            controller: settings(),
            formula: None,
        }
    }

    fn state(&self) -> State {
        let n = if self.no_pods {
            0
        } else if self.requests.is_empty() {
            self.status_replicas as usize
        } else {
            self.requests.len()
        };
        let pods = (0..n)
            .map(|i| {
                let req = to_milli(self.requests.get(i).copied().unwrap_or(1.0));
                let half = std::collections::BTreeMap::from([(
                    "cpu".to_owned(),
                    (req / 2) as f64 / 1000.0,
                )]);
                let start = self.start.get(i).copied().unwrap_or(GO_ZERO);
                Pod {
                    name: format!("test-pod-{i}"),
                    phase: self.phase.get(i).copied().unwrap_or(PodPhase::Running),
                    deleting: self.deleting.get(i).copied().unwrap_or(false),
                    start_time_unix_seconds: Some(start),
                    ready: Some(ReadyCondition {
                        status: self
                            .readiness
                            .get(i)
                            .copied()
                            .unwrap_or(ConditionStatus::True),
                        last_transition_unix_seconds: start,
                    }),
                    containers: ["container1", "container2"]
                        .iter()
                        .map(|c| Container {
                            name: (*c).into(),
                            requests: half.clone(),
                            restart_policy_always: false,
                        })
                        .collect(),
                    init_containers: vec![],
                    requests: Default::default(),
                }
            })
            .collect();
        State {
            spec_replicas: self.spec_replicas,
            status_replicas: Some(self.status_replicas),
            pods,
            recommendations: self.recommendations.clone(),
            scale_events: vec![],
            last_active_unix_seconds: None,
        }
    }

    fn observations(&self) -> Vec<Observation> {
        let spec = self.spec();
        let mut out = Vec::new();
        for m in &spec.metrics {
            if self.failing.contains(&m.name.as_str()) {
                out.push(Observation {
                    metric: m.name.clone(),
                    pod: None,
                    value: 0.0,
                    timestamp_unix_seconds: None,
                    window_seconds: None,
                    error: Some("something went wrong".into()),
                    stale: false,
                    kafka: None,
                    invalid: false,
                });
                continue;
            }
            for (i, level) in self.levels.iter().enumerate() {
                let milli = match m.source {
                    // Two containers of level/2 each (integer division, as upstream).
                    MetricSource::Resource => 2 * (level / 2),
                    MetricSource::ContainerResource => level / 2,
                    _ => *level,
                };
                let per_pod = matches!(
                    m.source,
                    MetricSource::Resource | MetricSource::ContainerResource | MetricSource::Pods
                );
                out.push(Observation {
                    metric: m.name.clone(),
                    pod: per_pod.then(|| format!("test-pod-{i}")),
                    value: milli as f64 / 1000.0,
                    timestamp_unix_seconds: Some(NOW),
                    window_seconds: Some(60.0),
                    error: None,
                    stale: false,
                    kafka: None,
                    invalid: false,
                });
            }
        }
        out
    }

    fn decide(&self) -> Decision {
        let input = Input {
            spec: self.spec(),
            state: self.state(),
            observations: self.observations(),
            now_unix_seconds: NOW,
        };
        decide(&input).unwrap_or_else(|e| panic!("invalid test input: {e}"))
    }
}

fn base(spec: i32, want_levels: &[u64]) -> HpaCase {
    HpaCase {
        min: 2,
        max: 6,
        spec_replicas: spec,
        status_replicas: spec,
        levels: want_levels.to_vec(),
        requests: vec![1.0; spec as usize],
        ..Default::default()
    }
}

fn cond(d: &Decision, kind: ConditionType) -> Option<(bool, &str)> {
    d.conditions
        .iter()
        .find(|c| c.kind == kind)
        .map(|c| (c.status, c.reason.as_str()))
}

fn check(name: &str, c: &HpaCase, want: i32, cpu_current: Option<i32>) -> Decision {
    let d = c.decide();
    assert_eq!(d.desired_replicas, want, "{name}: desired replicas");
    assert_eq!(d.rescale, want != c.spec_replicas, "{name}: rescale");
    if let Some(u) = cpu_current {
        let got = d
            .proposals
            .first()
            .and_then(|p| p.current)
            .and_then(|v| v.average_utilization);
        assert_eq!(got, Some(u), "{name}: CPU utilization");
    }
    d
}

fn status_ok(name: &str, d: &Decision) {
    assert_eq!(
        cond(d, ConditionType::ScalingActive),
        Some((true, "ValidMetricFound")),
        "{name}: ScalingActive"
    );
    assert_eq!(
        cond(d, ConditionType::ScalingLimited),
        Some((false, "DesiredWithinRange")),
        "{name}: ScalingLimited"
    );
}

#[test]
fn hpa_scale_up_cases() {
    // horizontal_test.go TestScaleUp
    let c = HpaCase {
        cpu_target: Some(30),
        ..base(3, &[300, 500, 700])
    };
    status_ok("TestScaleUp", &check("TestScaleUp", &c, 5, None));

    // horizontal_test.go TestScaleUpContainer
    let mut m = metric(
        "cpu",
        MetricSource::ContainerResource,
        target(TargetType::Utilization, 30.0),
    );
    m.container = Some("container1".into());
    let c = HpaCase {
        metrics: vec![m],
        ..base(3, &[300, 500, 700])
    };
    status_ok(
        "TestScaleUpContainer",
        &check("TestScaleUpContainer", &c, 5, None),
    );

    // horizontal_test.go TestScaleUpUnreadyLessScale
    let c = HpaCase {
        cpu_target: Some(30),
        readiness: vec![
            ConditionStatus::False,
            ConditionStatus::True,
            ConditionStatus::True,
        ],
        ..base(3, &[300, 500, 700])
    };
    status_ok(
        "TestScaleUpUnreadyLessScale",
        &check("TestScaleUpUnreadyLessScale", &c, 4, Some(60)),
    );

    // horizontal_test.go TestScaleUpHotCpuLessScale
    let c = HpaCase {
        cpu_target: Some(30),
        start: vec![hot(), cool(), cool()],
        ..base(3, &[300, 500, 700])
    };
    status_ok(
        "TestScaleUpHotCpuLessScale",
        &check("TestScaleUpHotCpuLessScale", &c, 4, Some(60)),
    );

    // horizontal_test.go TestScaleUpIgnoresFailedPods
    let c = HpaCase {
        cpu_target: Some(30),
        requests: vec![1.0; 4],
        readiness: vec![
            ConditionStatus::True,
            ConditionStatus::True,
            ConditionStatus::False,
            ConditionStatus::False,
        ],
        phase: vec![
            PodPhase::Running,
            PodPhase::Running,
            PodPhase::Failed,
            PodPhase::Failed,
        ],
        ..base(2, &[500, 700])
    };
    status_ok(
        "TestScaleUpIgnoresFailedPods",
        &check("TestScaleUpIgnoresFailedPods", &c, 4, Some(60)),
    );

    // horizontal_test.go TestScaleUpIgnoresDeletionPods
    let c = HpaCase {
        cpu_target: Some(30),
        requests: vec![1.0; 4],
        readiness: vec![
            ConditionStatus::True,
            ConditionStatus::True,
            ConditionStatus::False,
            ConditionStatus::False,
        ],
        phase: vec![PodPhase::Running; 4],
        deleting: vec![false, false, true, true],
        ..base(2, &[500, 700])
    };
    status_ok(
        "TestScaleUpIgnoresDeletionPods",
        &check("TestScaleUpIgnoresDeletionPods", &c, 4, Some(60)),
    );

    // horizontal_test.go TestScaleUpCM
    let qps = metric(
        "qps",
        MetricSource::Pods,
        target(TargetType::AverageValue, 15.0),
    );
    let c = HpaCase {
        metrics: vec![qps.clone()],
        ..base(3, &[20000, 10000, 30000])
    };
    status_ok("TestScaleUpCM", &check("TestScaleUpCM", &c, 4, None));

    // horizontal_test.go TestScaleUpCMUnreadyAndHotCpuNoLessScale
    let c = HpaCase {
        metrics: vec![qps],
        readiness: vec![
            ConditionStatus::True,
            ConditionStatus::True,
            ConditionStatus::False,
        ],
        start: vec![cool(), cool(), hot()],
        ..base(3, &[50000, 10000, 30000])
    };
    status_ok(
        "TestScaleUpCMUnreadyAndHotCpuNoLessScale",
        &check("TestScaleUpCMUnreadyAndHotCpuNoLessScale", &c, 6, None),
    );
}

#[test]
fn hpa_no_scale_cases() {
    // horizontal_test.go TestScaleUpUnreadyNoScale
    let c = HpaCase {
        cpu_target: Some(30),
        readiness: vec![
            ConditionStatus::True,
            ConditionStatus::False,
            ConditionStatus::False,
        ],
        ..base(3, &[400, 500, 700])
    };
    let d = check("TestScaleUpUnreadyNoScale", &c, 3, Some(40));
    status_ok("TestScaleUpUnreadyNoScale", &d);
    assert_eq!(
        cond(&d, ConditionType::AbleToScale),
        Some((true, "ReadyForNewScale"))
    );

    // horizontal_test.go TestScaleUpHotCpuNoScale
    let c = HpaCase {
        cpu_target: Some(30),
        readiness: vec![
            ConditionStatus::True,
            ConditionStatus::False,
            ConditionStatus::False,
        ],
        start: vec![cool(), hot(), hot()],
        ..base(3, &[400, 500, 700])
    };
    let d = check("TestScaleUpHotCpuNoScale", &c, 3, Some(40));
    status_ok("TestScaleUpHotCpuNoScale", &d);
    assert_eq!(
        cond(&d, ConditionType::AbleToScale),
        Some((true, "ReadyForNewScale"))
    );
}

#[test]
fn hpa_invalid_metric_cases() {
    let qps_value = |v: f64| metric("qps", MetricSource::External, target(TargetType::Value, v));

    // horizontal_test.go TestScaleUpOneMetricEmpty: one metric fails, the other scales up.
    let c = HpaCase {
        cpu_target: Some(30),
        metrics: vec![qps_value(0.1)],
        failing: vec!["qps"],
        ..base(3, &[300, 400, 500])
    };
    let d = check("TestScaleUpOneMetricEmpty", &c, 4, None);
    assert_eq!(
        d.proposals[1].invalid_reason.as_deref(),
        Some("FailedGetExternalMetric")
    );

    // horizontal_test.go TestNoScaleDownOneMetricEmpty: one metric fails, so no scale-down.
    let c = HpaCase {
        cpu_target: Some(50),
        metrics: vec![qps_value(1.0)],
        failing: vec!["qps"],
        recommendations: Some(vec![]),
        ..base(5, &[100, 300, 500, 250, 250])
    };
    let d = check("TestNoScaleDownOneMetricEmpty", &c, 5, None);
    assert_eq!(
        cond(&d, ConditionType::ScalingActive),
        Some((false, "FailedGetExternalMetric"))
    );
    assert_eq!(
        d.proposals[0].replicas,
        Some(3),
        "the CPU proposal alone would scale down"
    );
    assert!(
        d.next.recommendations.is_empty(),
        "no recommendation is recorded when metrics are invalid"
    );
}

#[test]
fn hpa_bounds_cases() {
    // horizontal_test.go TestScaleUpRCImmediately: below minReplicas, no metrics needed.
    let c = HpaCase {
        levels: vec![0, 0, 0, 0],
        requests: vec![1.0; 4],
        ..base(1, &[])
    };
    let d = check("TestScaleUpRCImmediately", &c, 2, None);
    assert_eq!(
        d.rescale_reason.as_deref(),
        Some("Current number of replicas below Spec.MinReplicas")
    );

    // horizontal_test.go TestScaleDownRCImmediately: above maxReplicas.
    let c = HpaCase {
        max: 5,
        cpu_target: Some(50),
        requests: vec![0.9, 1.0, 1.1],
        ..base(6, &[8000, 9500, 1000])
    };
    let d = check("TestScaleDownRCImmediately", &c, 5, None);
    assert_eq!(
        d.rescale_reason.as_deref(),
        Some("Current number of replicas above Spec.MaxReplicas")
    );
}

/// The error text is upstream's for an empty resource metrics list (replica_calculator_test.go
/// TestReplicaCalcEmptyMetrics); the outcome is horizontal.go's all-metrics-invalid rule.
#[test]
fn never_scales_down_when_every_metric_is_missing() {
    let c = HpaCase {
        cpu_target: Some(50),
        ..base(5, &[])
    };
    let d = c.decide();
    assert_eq!(d.desired_replicas, 5);
    assert!(!d.rescale);
    let (status, reason) = cond(&d, ConditionType::ScalingActive).expect("ScalingActive is set");
    assert!(!status);
    assert_eq!(reason, "FailedGetResourceMetric");
    assert!(
        d.proposals[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("no metrics returned from resource metrics API"))
    );
}

#[test]
fn zero_replicas_disable_scaling() {
    let c = HpaCase {
        cpu_target: Some(50),
        ..base(0, &[])
    };
    let d = c.decide();
    assert_eq!(d.desired_replicas, 0);
    assert_eq!(
        cond(&d, ConditionType::ScalingActive),
        Some((false, "ScalingDisabled"))
    );
}

/// The KEDA path: External AverageValue, `ceil(sum / target)`, tolerance against status
/// replicas, then the default behavior limits (4 pods or 100% per 15s).
#[test]
fn external_average_value_with_default_behavior() {
    let lag = metric(
        "kafka_lag",
        MetricSource::External,
        target(TargetType::AverageValue, 10.0),
    );
    let c = HpaCase {
        min: 1,
        max: 50,
        metrics: vec![lag],
        ..base(2, &[])
    };
    let mut spec = c.spec();
    spec.behavior = Some(Behavior::default());
    let obs = |v: f64| Observation {
        metric: "kafka_lag".into(),
        pod: None,
        value: v,
        timestamp_unix_seconds: Some(NOW),
        window_seconds: None,
        error: None,
        stale: false,
        kafka: None,
        invalid: false,
    };
    let input = Input {
        spec,
        state: c.state(),
        observations: vec![obs(150.0), obs(45.0)],
        now_unix_seconds: NOW,
    };
    let d = decide(&input).expect("valid");
    assert_eq!(d.proposals[0].replicas, Some(20), "ceil(195 / 10)");
    assert_eq!(
        d.proposals[0].current.and_then(|v| v.average_value),
        Some(97.5)
    );
    assert_eq!(d.desired_replicas, 6, "max(2 + 4, 2 * 2) within 15s");
    assert_eq!(
        cond(&d, ConditionType::ScalingLimited),
        Some((true, "ScaleUpLimit"))
    );
    assert_eq!(
        d.next.scale_events,
        vec![ScaleEvent {
            replica_change: 4,
            at_unix_seconds: NOW
        }]
    );
    // First sight: the current count is recorded before the new recommendation.
    assert_eq!(
        d.next.recommendations,
        vec![
            Recommendation {
                replicas: 2,
                at_unix_seconds: NOW
            },
            Recommendation {
                replicas: 20,
                at_unix_seconds: NOW
            }
        ]
    );

    // Fifteen seconds later the event has aged out of the period and another step is allowed.
    let mut state = input.state.clone();
    state.spec_replicas = 6;
    state.status_replicas = Some(6);
    state.scale_events = d.next.scale_events.clone();
    state.recommendations = Some(d.next.recommendations.clone());
    let later = Input {
        state,
        now_unix_seconds: NOW + 15.0,
        ..input.clone()
    };
    let d2 = decide(&later).expect("valid");
    assert_eq!(d2.desired_replicas, 12, "100% of 6");
    let sooner = Input {
        now_unix_seconds: NOW + 14.0,
        ..later
    };
    // Within the period the base is 6 - 4 = 2: max(2 + 4, ceil(2 * 2)) = 6, so no further step.
    let d3 = decide(&sooner).expect("valid");
    assert_eq!(d3.desired_replicas, 6);
    assert_eq!(
        cond(&d3, ConditionType::ScalingLimited),
        Some((true, "ScaleUpLimit"))
    );
}

#[test]
fn scale_down_is_stabilized_by_history() {
    let c = HpaCase {
        cpu_target: Some(50),
        ..base(5, &[100, 300, 500, 250, 250])
    };
    let mut input = Input {
        spec: c.spec(),
        state: c.state(),
        observations: c.observations(),
        now_unix_seconds: NOW,
    };
    input.state.recommendations = Some(vec![Recommendation {
        replicas: 5,
        at_unix_seconds: NOW - 200.0,
    }]);
    let d = decide(&input).expect("valid");
    assert_eq!(d.metric_replicas, Some(3));
    assert_eq!(
        d.desired_replicas, 5,
        "the highest recommendation of the last 5 minutes"
    );
    assert_eq!(
        cond(&d, ConditionType::AbleToScale),
        Some((true, "ScaleDownStabilized"))
    );
    assert_eq!(d.limits[0].stage, LimitStage::Stabilization);
    input.state.recommendations = Some(vec![Recommendation {
        replicas: 5,
        at_unix_seconds: NOW - 301.0,
    }]);
    assert_eq!(
        decide(&input).expect("valid").desired_replicas,
        3,
        "older recommendations do not count"
    );
}

#[test]
fn per_direction_tolerance_overrides_the_controller_default() {
    let c = HpaCase {
        cpu_target: Some(100),
        requests: vec![1.0; 3],
        ..base(3, &[1050, 1050, 1050])
    };
    let mut spec = c.spec();
    assert_eq!(
        desired(&spec, &c.state(), &c.observations(), NOW).desired_replicas,
        3,
        "5% is inside 10%"
    );
    spec.behavior = Some(Behavior {
        scale_up: Some(ScalingRules {
            tolerance: Some(0.01),
            ..Default::default()
        }),
        scale_down: Some(ScalingRules {
            select_policy: Some(SelectPolicy::Max),
            policies: Some(vec![RatePolicy {
                kind: PolicyType::Pods,
                value: 1,
                period_seconds: 60,
            }]),
            ..Default::default()
        }),
    });
    let d = desired(&spec, &c.state(), &c.observations(), NOW);
    assert_eq!(
        d.tolerances,
        Tolerances {
            scale_down: 0.1,
            scale_up: 0.01
        }
    );
    assert_eq!(d.desired_replicas, 4, "5% is outside 1%");
}

#[test]
fn validation_names_the_field() {
    let c = HpaCase {
        cpu_target: Some(50),
        ..base(3, &[100, 200, 300])
    };
    let mut input = Input {
        spec: c.spec(),
        state: c.state(),
        observations: c.observations(),
        now_unix_seconds: NOW,
    };
    input.observations[2].value = f64::NAN;
    let err = decide(&input).expect_err("NaN is rejected");
    assert_eq!(
        err.to_string(),
        "observations[2].value: NaN is not a valid metric value"
    );
    assert_eq!(err.label(), "not_finite");

    input.observations[2].value = 0.3;
    input.observations[1].metric = "memory".into();
    let err = decide(&input).expect_err("unknown metric");
    assert_eq!(
        err.to_string(),
        "observations[1].metric: no metric named \"memory\" in spec.metrics"
    );

    input.observations[1].metric = "cpu".into();
    input.spec.max_replicas = 1;
    assert_eq!(
        decide(&input).expect_err("max < min").to_string(),
        "spec.max_replicas: must be at least 1 and at least min_replicas"
    );
}

/// One controller-level case from horizontal_test.go.
struct Port {
    name: &'static str,
    case: HpaCase,
    want: i32,
    cpu_current: Option<i32>,
    /// Expected `ScalingLimited` when not `(false, DesiredWithinRange)`.
    limited: Option<(bool, &'static str)>,
    /// Expected `AbleToScale` reason when no rescale happens.
    able: Option<&'static str>,
}

fn port(name: &'static str, case: HpaCase, want: i32) -> Port {
    Port {
        name,
        case,
        want,
        cpu_current: None,
        limited: None,
        able: None,
    }
}

fn pods_qps(v: f64) -> MetricSpec {
    metric(
        "qps",
        MetricSource::Pods,
        target(TargetType::AverageValue, v),
    )
}
fn object_qps(kind: TargetType, v: f64) -> MetricSpec {
    metric("qps", MetricSource::Object, target(kind, v))
}
fn external_qps(kind: TargetType, v: f64) -> MetricSpec {
    metric("qps", MetricSource::External, target(kind, v))
}

/// horizontal_test.go controller cases (named per entry), run through `decide`.
#[test]
fn hpa_controller_cases() {
    use ConditionStatus::{False as F, True as T};
    use TargetType::{AverageValue, Value};
    let none = || Some(vec![]);
    let cm = |m: MetricSpec, spec: i32, levels: &[u64]| HpaCase {
        metrics: vec![m],
        requests: vec![],
        ..base(spec, levels)
    };
    let cases = vec![
        Port {
            limited: Some((true, "TooManyReplicas")),
            ..port(
                "TestScaleUpCMUnreadyandCpuHot",
                HpaCase {
                    readiness: vec![F, T, F],
                    start: vec![hot(), cool(), hot()],
                    ..cm(pods_qps(15.0), 3, &[50000, 15000, 30000])
                },
                6,
            )
        },
        Port {
            limited: Some((true, "TooManyReplicas")),
            ..port(
                "TestScaleUpHotCpuNoScaleWouldScaleDown",
                HpaCase {
                    start: vec![hot(), cool(), hot()],
                    ..cm(pods_qps(15.0), 3, &[50000, 15000, 30000])
                },
                6,
            )
        },
        port(
            "TestScaleUpCMObject",
            cm(object_qps(Value, 15.0), 3, &[20000]),
            4,
        ),
        port(
            "TestScaleUpFromZeroCMObject",
            HpaCase {
                min: 0,
                ..cm(object_qps(Value, 15.0), 0, &[20000])
            },
            2,
        ),
        port(
            "TestScaleUpFromZeroIgnoresToleranceCMObject",
            HpaCase {
                min: 0,
                ..cm(object_qps(Value, 1.0), 0, &[1000])
            },
            1,
        ),
        port(
            "TestScaleUpPerPodCMObject",
            cm(object_qps(AverageValue, 10.0), 3, &[40000]),
            4,
        ),
        port(
            "TestScaleUpCMExternal",
            cm(external_qps(Value, 6.666), 3, &[8600]),
            4,
        ),
        port(
            "TestScaleUpPerPodCMExternal",
            cm(external_qps(AverageValue, 2.222), 3, &[8600]),
            4,
        ),
        Port {
            cpu_current: Some(28),
            ..port(
                "TestScaleDown",
                HpaCase {
                    cpu_target: Some(50),
                    recommendations: none(),
                    ..base(5, &[100, 300, 500, 250, 250])
                },
                3,
            )
        },
        port(
            "TestScaleDownContainerResource",
            HpaCase {
                metrics: vec![MetricSpec {
                    container: Some("container2".into()),
                    ..metric(
                        "cpu",
                        MetricSource::ContainerResource,
                        target(TargetType::Utilization, 50.0),
                    )
                }],
                recommendations: none(),
                ..base(5, &[100, 300, 500, 250, 250])
            },
            3,
        ),
        Port {
            cpu_current: Some(28),
            ..port(
                "TestScaleDownWithScalingRules",
                HpaCase {
                    cpu_target: Some(50),
                    recommendations: none(),
                    behavior: Some(Behavior {
                        scale_up: Some(ScalingRules {
                            stabilization_window_seconds: Some(30),
                            select_policy: Some(SelectPolicy::Max),
                            policies: Some(vec![RatePolicy {
                                kind: PolicyType::Percent,
                                value: 100,
                                period_seconds: 15,
                            }]),
                            tolerance: None,
                        }),
                        scale_down: None,
                    }),
                    ..base(5, &[100, 300, 500, 250, 250])
                },
                3,
            )
        },
        Port {
            cpu_current: Some(28),
            able: Some("ScaleDownStabilized"),
            ..port(
                "TestScaleDownStabilizeInitialSize",
                HpaCase {
                    cpu_target: Some(50),
                    ..base(5, &[100, 300, 500, 250, 250])
                },
                5,
            )
        },
        port(
            "TestScaleDownCM",
            HpaCase {
                recommendations: none(),
                ..cm(pods_qps(20.0), 5, &[12000; 5])
            },
            3,
        ),
        port(
            "TestScaleDownCMObject",
            HpaCase {
                recommendations: none(),
                requests: vec![1.0; 5],
                ..cm(object_qps(Value, 20.0), 5, &[12000])
            },
            3,
        ),
        port(
            "TestScaleDownToZeroCMObject",
            HpaCase {
                min: 0,
                recommendations: none(),
                requests: vec![1.0; 5],
                ..cm(object_qps(Value, 20.0), 5, &[0])
            },
            0,
        ),
        port(
            "TestScaleDownPerPodCMObject",
            HpaCase {
                recommendations: none(),
                requests: vec![1.0; 5],
                ..cm(object_qps(AverageValue, 20.0), 5, &[60000])
            },
            3,
        ),
        port(
            "TestScaleDownCMExternal",
            HpaCase {
                recommendations: none(),
                ..cm(external_qps(Value, 14.4), 5, &[8600])
            },
            3,
        ),
        port(
            "TestScaleDownToZeroCMExternal",
            HpaCase {
                min: 0,
                recommendations: none(),
                ..cm(external_qps(Value, 14.4), 5, &[0])
            },
            0,
        ),
        port(
            "TestScaleDownPerPodCMExternal",
            HpaCase {
                recommendations: none(),
                ..cm(external_qps(AverageValue, 3.0), 5, &[8600])
            },
            3,
        ),
        Port {
            cpu_current: Some(30),
            ..port(
                "TestScaleDownIncludeUnreadyPods",
                HpaCase {
                    cpu_target: Some(50),
                    readiness: vec![T, T, T, F, F],
                    recommendations: none(),
                    ..base(5, &[100, 300, 500, 250, 250])
                },
                2,
            )
        },
        Port {
            cpu_current: Some(30),
            ..port(
                "TestScaleDownIgnoreHotCpuPods",
                HpaCase {
                    cpu_target: Some(50),
                    start: vec![cool(), cool(), cool(), hot(), hot()],
                    recommendations: none(),
                    ..base(5, &[100, 300, 500, 250, 250])
                },
                2,
            )
        },
        Port {
            cpu_current: Some(28),
            ..port(
                "TestScaleDownIgnoresFailedPods",
                HpaCase {
                    cpu_target: Some(50),
                    requests: vec![1.0; 7],
                    readiness: vec![T, T, T, T, T, F, F],
                    phase: vec![
                        PodPhase::Running,
                        PodPhase::Running,
                        PodPhase::Running,
                        PodPhase::Running,
                        PodPhase::Running,
                        PodPhase::Failed,
                        PodPhase::Failed,
                    ],
                    recommendations: none(),
                    ..base(5, &[100, 300, 500, 250, 250])
                },
                3,
            )
        },
        Port {
            cpu_current: Some(28),
            ..port(
                "TestScaleDownIgnoresDeletionPods",
                HpaCase {
                    cpu_target: Some(50),
                    requests: vec![1.0; 7],
                    readiness: vec![T, T, T, T, T, F, F],
                    phase: vec![PodPhase::Running; 7],
                    deleting: vec![false, false, false, false, false, true, true],
                    recommendations: none(),
                    ..base(5, &[100, 300, 500, 250, 250])
                },
                3,
            )
        },
        Port {
            able: Some("ReadyForNewScale"),
            ..port(
                "TestTolerance",
                HpaCase {
                    min: 1,
                    max: 5,
                    cpu_target: Some(100),
                    requests: vec![0.9, 1.0, 1.1],
                    ..base(3, &[1010, 1030, 1020])
                },
                3,
            )
        },
        Port {
            able: Some("ReadyForNewScale"),
            ..port(
                "TestToleranceCM",
                HpaCase {
                    min: 1,
                    max: 5,
                    requests: vec![0.9, 1.0, 1.1],
                    ..cm(pods_qps(20.0), 3, &[20000, 20001, 21000])
                },
                3,
            )
        },
        Port {
            able: Some("ReadyForNewScale"),
            ..port(
                "TestToleranceCMObject",
                HpaCase {
                    min: 1,
                    max: 5,
                    requests: vec![0.9, 1.0, 1.1],
                    ..cm(object_qps(Value, 20.0), 3, &[20050])
                },
                3,
            )
        },
        Port {
            able: Some("ReadyForNewScale"),
            ..port(
                "TestToleranceCMExternal",
                cm(external_qps(Value, 8.666), 4, &[8600]),
                4,
            )
        },
        Port {
            able: Some("ReadyForNewScale"),
            ..port(
                "TestTolerancePerPodCMObject",
                cm(object_qps(AverageValue, 2.2), 4, &[8600]),
                4,
            )
        },
        Port {
            able: Some("ReadyForNewScale"),
            ..port(
                "TestTolerancePerPodCMExternal",
                cm(external_qps(AverageValue, 2.2), 4, &[8600]),
                4,
            )
        },
        Port {
            limited: Some((true, "TooFewReplicas")),
            ..port(
                "TestMinReplicas",
                HpaCase {
                    max: 5,
                    cpu_target: Some(90),
                    requests: vec![0.9, 1.0, 1.1],
                    recommendations: none(),
                    ..base(3, &[10, 95, 10])
                },
                2,
            )
        },
    ];
    for p in &cases {
        let d = check(p.name, &p.case, p.want, p.cpu_current);
        assert_eq!(
            cond(&d, ConditionType::ScalingActive),
            Some((true, "ValidMetricFound")),
            "{}: ScalingActive",
            p.name
        );
        assert_eq!(
            cond(&d, ConditionType::ScalingLimited),
            Some(p.limited.unwrap_or((false, "DesiredWithinRange"))),
            "{}: ScalingLimited",
            p.name
        );
        if let Some(able) = p.able {
            assert_eq!(
                cond(&d, ConditionType::AbleToScale),
                Some((true, able)),
                "{}: AbleToScale",
                p.name
            );
        }
    }
}

fn up_rules(percent: i32, period: i32) -> Behavior {
    Behavior {
        scale_up: Some(ScalingRules {
            stabilization_window_seconds: Some(0),
            select_policy: Some(SelectPolicy::Max),
            policies: Some(vec![RatePolicy {
                kind: PolicyType::Percent,
                value: percent,
                period_seconds: period,
            }]),
            tolerance: None,
        }),
        scale_down: None,
    }
}

/// More horizontal_test.go controller cases (named per entry).
#[test]
fn hpa_controller_cases_limits_and_reports() {
    let none = || Some(vec![]);
    let r3 = || vec![0.9, 1.0, 1.1];
    let cases = vec![
        port(
            "TestZeroMinReplicasDesiredZero",
            HpaCase {
                min: 0,
                max: 5,
                cpu_target: Some(90),
                requests: r3(),
                recommendations: none(),
                ..base(3, &[0, 0, 0])
            },
            0,
        ),
        Port {
            limited: Some((true, "TooFewReplicas")),
            ..port(
                "TestMinReplicasDesiredZero",
                HpaCase {
                    max: 5,
                    cpu_target: Some(90),
                    requests: r3(),
                    recommendations: none(),
                    ..base(3, &[0, 0, 0])
                },
                2,
            )
        },
        Port {
            limited: Some((true, "TooManyReplicas")),
            ..port(
                "TestMaxReplicas",
                HpaCase {
                    max: 5,
                    cpu_target: Some(90),
                    requests: r3(),
                    ..base(3, &[8000, 9500, 1000])
                },
                5,
            )
        },
        Port {
            limited: Some((true, "TooManyReplicas")),
            ..port(
                "TestSuperfluousMetrics",
                HpaCase {
                    cpu_target: Some(100),
                    requests: vec![1.0; 4],
                    ..base(4, &[4000, 9500, 3000, 7000, 3200, 2000])
                },
                6,
            )
        },
        port(
            "TestMissingMetrics",
            HpaCase {
                cpu_target: Some(100),
                recommendations: none(),
                ..base(4, &[400, 95])
            },
            3,
        ),
        port(
            "TestEventCreated",
            HpaCase {
                min: 1,
                max: 5,
                cpu_target: Some(50),
                requests: vec![0.2],
                ..base(1, &[200])
            },
            2,
        ),
        Port {
            able: Some("ReadyForNewScale"),
            ..port(
                "TestEventNotCreated",
                HpaCase {
                    min: 1,
                    max: 5,
                    cpu_target: Some(50),
                    requests: vec![0.4, 0.4],
                    ..base(2, &[200, 200])
                },
                2,
            )
        },
        port(
            "TestMissingReports",
            HpaCase {
                min: 1,
                max: 5,
                cpu_target: Some(50),
                requests: vec![0.2],
                recommendations: none(),
                ..base(4, &[200])
            },
            2,
        ),
        Port {
            limited: Some((true, "ScaleUpLimit")),
            ..port(
                "TestUpscaleCap",
                HpaCase {
                    min: 1,
                    max: 100,
                    cpu_target: Some(10),
                    requests: vec![0.1; 3],
                    behavior: Some(up_rules(700, 60)),
                    ..base(3, &[100, 200, 300])
                },
                24,
            )
        },
        Port {
            limited: Some((true, "TooManyReplicas")),
            ..port(
                "TestUpscaleCapGreaterThanMaxReplicas",
                HpaCase {
                    min: 1,
                    max: 20,
                    cpu_target: Some(10),
                    requests: vec![0.1; 3],
                    behavior: Some(up_rules(700, 60)),
                    ..base(3, &[100, 200, 300])
                },
                20,
            )
        },
        Port {
            able: Some("ReadyForNewScale"),
            ..port(
                "TestMoreReplicasThanSpecNoScale",
                HpaCase {
                    min: 1,
                    max: 8,
                    status_replicas: 5,
                    cpu_target: Some(50),
                    requests: vec![1.0; 5],
                    ..base(4, &[500; 5])
                },
                4,
            )
        },
    ];
    for p in &cases {
        let d = check(p.name, &p.case, p.want, p.cpu_current);
        assert_eq!(
            cond(&d, ConditionType::ScalingActive),
            Some((true, "ValidMetricFound")),
            "{}: ScalingActive",
            p.name
        );
        assert_eq!(
            cond(&d, ConditionType::ScalingLimited),
            Some(p.limited.unwrap_or((false, "DesiredWithinRange"))),
            "{}: ScalingLimited",
            p.name
        );
        if let Some(able) = p.able {
            assert_eq!(
                cond(&d, ConditionType::AbleToScale),
                Some((true, able)),
                "{}: AbleToScale",
                p.name
            );
        }
    }

    // horizontal_test.go TestZeroReplicas: a target scaled to zero by hand is left alone.
    let d = check(
        "TestZeroReplicas",
        &HpaCase {
            min: 3,
            max: 5,
            cpu_target: Some(90),
            no_pods: true,
            ..base(0, &[])
        },
        0,
        None,
    );
    assert_eq!(
        cond(&d, ConditionType::ScalingActive),
        Some((false, "ScalingDisabled"))
    );
    // horizontal_test.go TestTooFewReplicas and TestTooManyReplicas: bounds first, no metrics read.
    let d = check(
        "TestTooFewReplicas",
        &HpaCase {
            min: 3,
            max: 5,
            cpu_target: Some(90),
            no_pods: true,
            ..base(2, &[])
        },
        3,
        None,
    );
    assert!(d.proposals.is_empty());
    let d = check(
        "TestTooManyReplicas",
        &HpaCase {
            min: 3,
            max: 5,
            cpu_target: Some(90),
            no_pods: true,
            ..base(10, &[])
        },
        5,
        None,
    );
    assert!(d.proposals.is_empty());
    // horizontal_test.go TestEmptyMetrics: no samples, no change.
    let d = check(
        "TestEmptyMetrics",
        &HpaCase {
            cpu_target: Some(100),
            ..base(4, &[])
        },
        4,
        None,
    );
    assert_eq!(
        cond(&d, ConditionType::ScalingActive),
        Some((false, "FailedGetResourceMetric"))
    );
    // horizontal_test.go TestEmptyCPURequest: no pods (so no requests), no change.
    let d = check(
        "TestEmptyCPURequest",
        &HpaCase {
            min: 1,
            max: 5,
            cpu_target: Some(100),
            no_pods: true,
            ..base(1, &[200])
        },
        1,
        None,
    );
    assert_eq!(
        cond(&d, ConditionType::ScalingActive),
        Some((false, "FailedGetResourceMetric"))
    );
}

/// horizontal_test.go TestConditionFailedGetMetrics (every entry): when the only metric's
/// source fails, nothing changes and ScalingActive names the metric type.
#[test]
fn hpa_condition_failed_get_metrics() {
    let cases = [
        ("FailedGetResourceMetric", None),
        ("FailedGetPodsMetric", Some(pods_qps(15.0))),
        (
            "FailedGetObjectMetric",
            Some(object_qps(TargetType::Value, 15.0)),
        ),
        (
            "FailedGetExternalMetric",
            Some(external_qps(TargetType::Value, 0.3)),
        ),
    ];
    for (reason, spec) in cases {
        let c = HpaCase {
            min: 1,
            max: 100,
            cpu_target: if spec.is_none() { Some(10) } else { None },
            metrics: spec.into_iter().collect(),
            requests: vec![0.1; 3],
            failing: vec!["cpu", "qps"],
            ..base(3, &[100, 200, 300])
        };
        let d = check(reason, &c, 3, None);
        assert_eq!(
            cond(&d, ConditionType::ScalingActive),
            Some((false, reason)),
            "TestConditionFailedGetMetrics {reason}"
        );
    }
}

/// horizontal_test.go TestNoBackoffUpscaleCM, TestNoBackoffUpscaleCMNoBackoffCpu,
/// TestStabilizeDownscale and TestComputedToleranceAlgImplementation.
#[test]
fn hpa_controller_cases_backoff_stabilization_tolerance() {
    let d = check(
        "TestNoBackoffUpscaleCM",
        &HpaCase {
            min: 1,
            max: 5,
            metrics: vec![pods_qps(15.0)],
            ..base(3, &[20000, 10000, 30000])
        },
        4,
        None,
    );
    status_ok("TestNoBackoffUpscaleCM", &d);

    let d = check(
        "TestNoBackoffUpscaleCMNoBackoffCpu",
        &HpaCase {
            min: 1,
            max: 5,
            cpu_target: Some(10),
            metrics: vec![pods_qps(15.0)],
            ..base(3, &[20000, 10000, 30000])
        },
        5,
        None,
    );
    assert_eq!(
        cond(&d, ConditionType::ScalingLimited),
        Some((true, "TooManyReplicas"))
    );

    let m = 60.0;
    let d = check(
        "TestStabilizeDownscale",
        &HpaCase {
            min: 1,
            max: 5,
            cpu_target: Some(100),
            requests: vec![0.1; 3],
            recommendations: Some(vec![
                Recommendation {
                    replicas: 10,
                    at_unix_seconds: NOW - 10.0 * m,
                },
                Recommendation {
                    replicas: 4,
                    at_unix_seconds: NOW - m,
                },
            ]),
            ..base(4, &[50, 50, 50])
        },
        4,
        None,
    );
    assert_eq!(
        cond(&d, ConditionType::AbleToScale),
        Some((true, "ScaleDownStabilized"))
    );
    assert_eq!(
        cond(&d, ConditionType::ScalingLimited),
        Some((false, "DesiredWithinRange"))
    );
    assert_eq!(d.metric_replicas, Some(2));

    // TestComputedToleranceAlgImplementation, with upstream's arithmetic.
    let start_pods: i32 = 10;
    let total_used: u64 = start_pods as u64 * 150;
    let total_requested: i32 = 2 * total_used as i32;
    let requested_to_used = f64::from(total_requested / total_used as i32);
    let per_pod = i64::from(total_requested / start_pods);
    let offsets = [100, -100, 10, -10, 2, -2, 1, -1, 0, 0];
    let requests: Vec<f64> = offsets
        .iter()
        .map(|o| (per_pod + o) as f64 / 1000.0)
        .collect();
    let mut target = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.01;
    let used_ratio = total_used as f64 / (f64::from(total_requested) * target);
    let final_pods = (used_ratio * f64::from(start_pods)).ceil() as i32;
    let case = |target: f64| HpaCase {
        min: 0,
        max: 1000,
        cpu_target: Some((target * 100.0) as i32),
        requests: requests.clone(),
        recommendations: Some(vec![]),
        ..base(start_pods, &[total_used / 10; 10])
    };
    check(
        "TestComputedToleranceAlgImplementation/1",
        &case(target),
        final_pods,
        None,
    );
    target = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.004;
    let d = check(
        "TestComputedToleranceAlgImplementation/2",
        &case(target),
        start_pods,
        None,
    );
    assert_eq!(
        cond(&d, ConditionType::AbleToScale),
        Some((true, "ReadyForNewScale"))
    );
}

fn random_case(rng: &mut Rng) -> Input {
    let min = rng.below(4) as i32;
    let max = min.max(1) + rng.below(30) as i32;
    let current = min + rng.below((max - min + 1) as u64) as i32;
    let n_pods = current as usize + rng.below(3) as usize;
    let phases = [
        PodPhase::Running,
        PodPhase::Running,
        PodPhase::Running,
        PodPhase::Pending,
        PodPhase::Failed,
    ];
    let pods: Vec<Pod> = (0..n_pods)
        .map(|i| {
            let start = NOW - rng.below(900) as f64;
            Pod {
                name: format!("p-{i}"),
                phase: phases[rng.below(phases.len() as u64) as usize],
                deleting: rng.chance(5),
                start_time_unix_seconds: Some(start),
                ready: Some(ReadyCondition {
                    status: if rng.chance(85) {
                        ConditionStatus::True
                    } else {
                        ConditionStatus::False
                    },
                    last_transition_unix_seconds: start + rng.below(60) as f64,
                }),
                containers: vec![Container {
                    name: "app".into(),
                    requests: std::collections::BTreeMap::from([(
                        "cpu".to_owned(),
                        0.1 + rng.below(10) as f64 / 10.0,
                    )]),
                    restart_policy_always: false,
                }],
                init_containers: vec![],
                requests: Default::default(),
            }
        })
        .collect();
    let mut metrics = vec![metric(
        "cpu",
        MetricSource::Resource,
        target(TargetType::Utilization, 10.0 + rng.below(90) as f64),
    )];
    if rng.chance(60) {
        metrics.push(pods_qps(1.0 + rng.below(50) as f64));
    }
    if rng.chance(60) {
        let kind = if rng.chance(50) {
            TargetType::Value
        } else {
            TargetType::AverageValue
        };
        metrics.push(external_qps(kind, 1.0 + rng.below(100) as f64).clone());
        metrics.last_mut().expect("just pushed").name = "lag".into();
    }
    let mut observations = Vec::new();
    for m in &metrics {
        if rng.chance(10) {
            observations.push(Observation {
                metric: m.name.clone(),
                pod: None,
                value: 0.0,
                timestamp_unix_seconds: None,
                window_seconds: None,
                error: Some("source down".into()),
                stale: false,
                kafka: None,
                invalid: false,
            });
            continue;
        }
        match m.source {
            MetricSource::External => {
                for _ in 0..rng.below(4) {
                    observations.push(Observation {
                        metric: m.name.clone(),
                        pod: None,
                        value: rng.below(5000) as f64,
                        timestamp_unix_seconds: Some(NOW),
                        window_seconds: None,
                        error: None,
                        stale: false,
                        kafka: None,
                        invalid: false,
                    });
                }
            }
            _ => {
                for p in &pods {
                    if rng.chance(85) {
                        observations.push(Observation {
                            metric: m.name.clone(),
                            pod: Some(p.name.clone()),
                            value: rng.below(3000) as f64 / 1000.0
                                * if m.source == MetricSource::Pods {
                                    30.0
                                } else {
                                    1.0
                                },
                            timestamp_unix_seconds: Some(NOW - rng.below(30) as f64),
                            window_seconds: Some(15.0),
                            error: None,
                            stale: false,
                            kafka: None,
                            invalid: false,
                        });
                    }
                }
            }
        }
    }
    let behavior = rng.chance(50).then(|| Behavior {
        scale_up: rng.chance(50).then(|| ScalingRules {
            stabilization_window_seconds: Some(rng.below(120) as i32),
            select_policy: Some(
                [SelectPolicy::Max, SelectPolicy::Min, SelectPolicy::Disabled]
                    [rng.below(3) as usize],
            ),
            policies: Some(vec![RatePolicy {
                kind: PolicyType::Percent,
                value: 1 + rng.below(300) as i32,
                period_seconds: 15 + rng.below(60) as i32,
            }]),
            tolerance: rng.chance(30).then(|| rng.below(30) as f64 / 100.0),
        }),
        scale_down: rng.chance(50).then(|| ScalingRules {
            policies: Some(vec![RatePolicy {
                kind: PolicyType::Pods,
                value: 1 + rng.below(5) as i32,
                period_seconds: 15 + rng.below(60) as i32,
            }]),
            ..Default::default()
        }),
    });
    let recommendations = rng.chance(70).then(|| {
        (0..rng.below(6))
            .map(|_| Recommendation {
                replicas: rng.below(40) as i32,
                at_unix_seconds: NOW - rng.below(600) as f64,
            })
            .collect()
    });
    let scale_events = (0..rng.below(4))
        .map(|_| ScaleEvent {
            replica_change: rng.below(9) as i32 - 4,
            at_unix_seconds: NOW - rng.below(120) as f64,
        })
        .collect();
    Input {
        spec: Spec {
            min_replicas: min,
            max_replicas: max,
            metrics,
            behavior,
            controller: ControllerSettings::default(),
            formula: None,
        },
        state: State {
            spec_replicas: current,
            status_replicas: Some(n_pods as i32),
            pods,
            recommendations,
            scale_events,
            last_active_unix_seconds: None,
        },
        observations,
        now_unix_seconds: NOW,
    }
}

/// Invariants over random inputs: valid input always decides; the result stays within
/// `[min, max]`; an invalid metric never lets the target shrink; the engine is pure.
#[test]
fn property_bounds_no_scale_down_on_invalid_metrics_and_purity() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..3000 {
        let input = random_case(&mut rng);
        let d =
            decide(&input).unwrap_or_else(|e| panic!("case {i}: generated input is invalid: {e}"));
        let (min, max, current) = (
            input.spec.min_replicas,
            input.spec.max_replicas,
            input.state.spec_replicas,
        );
        if current != 0 || min == 0 {
            assert!(
                (min..=max).contains(&d.desired_replicas),
                "case {i}: {} outside [{min}, {max}]",
                d.desired_replicas
            );
        }
        if d.proposals.iter().any(|p| p.replicas.is_none()) {
            assert!(
                d.desired_replicas >= current,
                "case {i}: scaled down from {current} to {} with an invalid metric",
                d.desired_replicas
            );
        }
        assert_eq!(d.rescale, d.desired_replicas != current, "case {i}");
        assert_eq!(
            decide(&input).expect("valid"),
            d,
            "case {i}: not deterministic"
        );
    }
}

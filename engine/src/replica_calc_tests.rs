//! Cases ported from kubernetes/kubernetes
//! `pkg/controller/podautoscaler/replica_calculator_test.go`. Each case names its upstream
//! test (and table entry). The fixtures are built the way upstream's fake clients build them:
//! pods `test-pod-<i>` with two containers (`container1`, `container2`) that each request
//! `requests[i]`, per-container usage `levels[i][j]` (milli), metric timestamp and pod
//! transition times at Go's zero time, start times at Go's zero time unless given, a 2m CPU
//! initialization period and a 10s initial readiness delay (`defaultTesting*`).

use super::*;
use crate::types::{Container, ReadyCondition};

const NOW: f64 = 1_700_000_000.0;
/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds.
const GO_ZERO: f64 = -62_135_596_800.0;
const DEFAULT_TOL: f64 = 0.1;

fn hot() -> f64 {
    NOW // hotCPUCreationTime: time.Now()
}
fn cool() -> f64 {
    NOW - 180.0 // coolCPUCreationTime: time.Now().Add(-3 * time.Minute)
}

fn readiness() -> Readiness {
    Readiness {
        cpu_initialization_period_seconds: 120.0,
        initial_readiness_delay_seconds: 10.0,
        now_unix_seconds: NOW,
    }
}

use ConditionStatus::{False as F, True as T};
use PodPhase::{Failed, Pending, Running};

/// `calcScenario` / `replicaCalcTestCase` pod and metric fixture.
#[derive(Default, Clone)]
struct Fixture {
    current: i32,
    readiness: Vec<ConditionStatus>,
    start: Vec<f64>,
    phase: Vec<PodPhase>,
    deleting: Vec<bool>,
    /// CPU request per container, in cores (`resource.MustParse`).
    requests: Vec<f64>,
    /// Per-pod, per-container usage (milli); `makePodMetricLevels` repeats a value per container.
    levels: Vec<Vec<i64>>,
    pod_names: Vec<&'static str>,
    container: Option<&'static str>,
}

/// `makePodMetricLevels`.
fn lv(per_pod: &[i64]) -> Vec<Vec<i64>> {
    per_pod.iter().map(|v| vec![*v, *v]).collect()
}

fn reqs(n: usize, cores: f64) -> Vec<f64> {
    vec![cores; n]
}

impl Fixture {
    fn pods(&self) -> Vec<Pod> {
        let count = (self.current.max(0) as usize).max(self.phase.len());
        (0..count)
            .map(|i| {
                let requests = |req: Option<f64>| {
                    req.map(|r| BTreeMap::from([("cpu".to_owned(), r)]))
                        .unwrap_or_default()
                };
                let req = self.requests.get(i).copied();
                Pod {
                    name: format!("test-pod-{i}"),
                    phase: self.phase.get(i).copied().unwrap_or(Running),
                    deleting: self.deleting.get(i).copied().unwrap_or(false),
                    start_time_unix_seconds: Some(self.start.get(i).copied().unwrap_or(GO_ZERO)),
                    ready: Some(ReadyCondition {
                        status: self.readiness.get(i).copied().unwrap_or(T),
                        last_transition_unix_seconds: GO_ZERO,
                    }),
                    containers: vec![
                        Container {
                            name: "container1".into(),
                            requests: requests(req),
                            restart_policy_always: false,
                        },
                        Container {
                            name: "container2".into(),
                            requests: requests(req),
                            restart_policy_always: false,
                        },
                    ],
                    init_containers: vec![],
                    requests: BTreeMap::new(),
                }
            })
            .collect()
    }

    fn names(&self) -> Vec<String> {
        (0..self.levels.len())
            .map(|i| {
                self.pod_names
                    .get(i)
                    .map(|s| (*s).to_owned())
                    .unwrap_or(format!("test-pod-{i}"))
            })
            .collect()
    }

    /// What the resource metrics client returns: the pod sum (a pod with a container lacking
    /// usage is skipped), or the named container's usage.
    fn resource_metrics<'a>(&self, names: &'a [String]) -> PodMetrics<'a> {
        let mut m = PodMetrics::default();
        for (i, levels) in self.levels.iter().enumerate() {
            let value = match self.container {
                None if levels.len() >= 2 => Some(levels.iter().sum()),
                None => None,
                Some(c) => {
                    let idx = if c == "container1" { 0 } else { 1 };
                    levels.get(idx).copied()
                }
            };
            if let Some(value) = value {
                m.insert(
                    names[i].as_str(),
                    Sample {
                        value,
                        timestamp_unix_seconds: GO_ZERO,
                        window_seconds: 60.0,
                    },
                );
            }
        }
        m
    }
}

fn tol(t: Option<(f64, f64)>) -> Tolerances {
    t.map(|(down, up)| Tolerances {
        scale_down: down,
        scale_up: up,
    })
    .unwrap_or(Tolerances::symmetric(DEFAULT_TOL))
}

struct ResCase {
    src: &'static str,
    f: Fixture,
    target: i32,
    tol: Option<(f64, f64)>,
    replicas: i32,
    utilization: i32,
    raw: i64,
}

fn run_resource(c: &ResCase) {
    let pods = c.f.pods();
    let names = c.f.names();
    let metrics = c.f.resource_metrics(&names);
    let out = resource_replicas(
        c.f.current,
        c.target,
        "cpu",
        c.f.container,
        tol(c.tol),
        &pods,
        &metrics,
        &readiness(),
    )
    .unwrap_or_else(|e| panic!("{}: unexpected error {e}", c.src));
    assert_eq!(out.replicas, c.replicas, "{}: replicas", c.src);
    assert_eq!(
        out.utilization,
        Some(c.utilization),
        "{}: utilization",
        c.src
    );
    assert_eq!(out.average_value, c.raw, "{}: raw value", c.src);
}

const N: i64 = 2; // numContainersPerPod

#[test]
fn resource_scale_table() {
    let t = "replica_calculator_test.go TestReplicaCalcResourceScale";
    let cases = vec![
        ResCase {
            src: "scale up",
            f: Fixture {
                current: 3,
                requests: reqs(3, 1.0),
                levels: lv(&[300, 500, 700]),
                ..Default::default()
            },
            target: 30,
            tol: None,
            replicas: 5,
            utilization: 50,
            raw: N * 500,
        },
        ResCase {
            src: "scale up: container metric",
            f: Fixture {
                current: 3,
                container: Some("container2"),
                requests: reqs(3, 1.0),
                levels: vec![vec![1000, 300], vec![1000, 500], vec![1000, 700]],
                ..Default::default()
            },
            target: 30,
            tol: None,
            replicas: 5,
            utilization: 50,
            raw: 500,
        },
        ResCase {
            src: "scale up: unready pod scales less",
            f: Fixture {
                current: 3,
                readiness: vec![F, T, T],
                requests: reqs(3, 1.0),
                levels: lv(&[300, 500, 700]),
                ..Default::default()
            },
            target: 30,
            tol: None,
            replicas: 4,
            utilization: 60,
            raw: N * 600,
        },
        ResCase {
            src: "scale up: hot-CPU container scales less",
            f: Fixture {
                current: 3,
                start: vec![hot(), cool(), cool()],
                container: Some("container2"),
                requests: reqs(3, 1.0),
                levels: vec![vec![0, 300], vec![0, 500], vec![0, 700]],
                ..Default::default()
            },
            target: 30,
            tol: None,
            replicas: 4,
            utilization: 60,
            raw: 600,
        },
        ResCase {
            src: "scale up: hot-CPU pod scales less",
            f: Fixture {
                current: 3,
                start: vec![hot(), cool(), cool()],
                requests: reqs(3, 1.0),
                levels: lv(&[300, 500, 700]),
                ..Default::default()
            },
            target: 30,
            tol: None,
            replicas: 4,
            utilization: 60,
            raw: N * 600,
        },
        ResCase {
            src: "no scale: unready pods ignored",
            f: Fixture {
                current: 3,
                readiness: vec![T, F, F],
                requests: reqs(3, 1.0),
                levels: lv(&[400, 500, 700]),
                ..Default::default()
            },
            target: 30,
            tol: None,
            replicas: 3,
            utilization: 40,
            raw: N * 400,
        },
        ResCase {
            src: "no scale: hot-CPU pods ignored",
            f: Fixture {
                current: 3,
                readiness: vec![T, F, F],
                start: vec![cool(), hot(), hot()],
                requests: reqs(3, 1.0),
                levels: lv(&[400, 500, 700]),
                ..Default::default()
            },
            target: 30,
            tol: None,
            replicas: 3,
            utilization: 40,
            raw: N * 400,
        },
        ResCase {
            src: "scale up: failed pods ignored",
            f: Fixture {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![Running, Running, Failed, Failed],
                requests: reqs(4, 1.0),
                levels: lv(&[500, 700]),
                ..Default::default()
            },
            target: 30,
            tol: None,
            replicas: 4,
            utilization: 60,
            raw: N * 600,
        },
        ResCase {
            src: "scale up: failed pods ignored with missing container metric",
            f: Fixture {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![Running, Running, Failed, Failed],
                container: Some("container2"),
                requests: reqs(4, 1.0),
                levels: vec![vec![1000, 500], vec![9000, 700], vec![1000], vec![9000]],
                ..Default::default()
            },
            target: 30,
            tol: None,
            replicas: 4,
            utilization: 60,
            raw: 600,
        },
        ResCase {
            src: "scale up: container metrics with failed pods ignored",
            f: Fixture {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![Running, Running, Failed, Failed],
                container: Some("container2"),
                requests: reqs(4, 1.0),
                levels: vec![vec![1000, 500], vec![9000, 700]],
                ..Default::default()
            },
            target: 30,
            tol: None,
            replicas: 4,
            utilization: 60,
            raw: 600,
        },
        ResCase {
            src: "scale up: pods being deleted are ignored",
            f: Fixture {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![Running; 4],
                deleting: vec![false, false, true, true],
                requests: reqs(4, 1.0),
                levels: lv(&[500, 700]),
                ..Default::default()
            },
            target: 30,
            tol: None,
            replicas: 4,
            utilization: 60,
            raw: N * 600,
        },
        ResCase {
            src: "scale up: container metrics with pods being deleted ignored",
            f: Fixture {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![Running; 4],
                deleting: vec![false, false, true, true],
                container: Some("container1"),
                requests: reqs(4, 1.0),
                levels: lv(&[500, 700]),
                ..Default::default()
            },
            target: 30,
            tol: None,
            replicas: 4,
            utilization: 60,
            raw: 600,
        },
        ResCase {
            src: "scale down",
            f: Fixture {
                current: 5,
                requests: reqs(5, 1.0),
                levels: lv(&[100, 300, 500, 250, 250]),
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 3,
            utilization: 28,
            raw: N * 280,
        },
        ResCase {
            src: "scale down: container metric",
            f: Fixture {
                current: 5,
                container: Some("container2"),
                requests: reqs(5, 1.0),
                levels: vec![
                    vec![1000, 100],
                    vec![1000, 300],
                    vec![1000, 500],
                    vec![1000, 250],
                    vec![1000, 250],
                ],
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 3,
            utilization: 28,
            raw: 280,
        },
        ResCase {
            src: "scale down: exclude unready pods",
            f: Fixture {
                current: 5,
                readiness: vec![T, T, T, F, F],
                requests: reqs(5, 1.0),
                levels: lv(&[100, 300, 500, 250, 250]),
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 2,
            utilization: 30,
            raw: N * 300,
        },
        ResCase {
            src: "scale down: container metric excludes unready pods",
            f: Fixture {
                current: 5,
                readiness: vec![T, T, T, F, F],
                container: Some("container2"),
                requests: reqs(5, 1.0),
                levels: vec![
                    vec![1000, 100],
                    vec![1000, 300],
                    vec![1000, 500],
                    vec![1000, 250],
                    vec![1000, 250],
                ],
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 2,
            utilization: 30,
            raw: 300,
        },
        ResCase {
            src: "scale down: exclude unscheduled pods",
            f: Fixture {
                current: 5,
                readiness: vec![T, F, F, F, F],
                phase: vec![Running, Pending, Pending, Pending, Pending],
                requests: reqs(5, 1.0),
                levels: lv(&[100]),
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 1,
            utilization: 10,
            raw: N * 100,
        },
        ResCase {
            src: "scale down: container metric excludes unscheduled pods",
            f: Fixture {
                current: 5,
                readiness: vec![T, F, F, F, F],
                phase: vec![Running, Pending, Pending, Pending, Pending],
                container: Some("container2"),
                requests: reqs(5, 1.0),
                levels: vec![
                    vec![1000, 100],
                    vec![1000, 300],
                    vec![1000, 500],
                    vec![1000, 250],
                    vec![1000, 250],
                ],
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 1,
            utilization: 10,
            raw: 100,
        },
        ResCase {
            src: "scale down: ignore hot-CPU pods",
            f: Fixture {
                current: 5,
                start: vec![cool(), cool(), cool(), hot(), hot()],
                requests: reqs(5, 1.0),
                levels: lv(&[100, 300, 500, 250, 250]),
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 2,
            utilization: 30,
            raw: N * 300,
        },
        ResCase {
            src: "scale down: container metric ignores hot-CPU pods",
            f: Fixture {
                current: 5,
                start: vec![cool(), cool(), cool(), hot(), hot()],
                container: Some("container2"),
                requests: reqs(5, 1.0),
                levels: vec![
                    vec![1000, 100],
                    vec![1000, 300],
                    vec![1000, 500],
                    vec![1000, 1000],
                    vec![1000, 1000],
                ],
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 2,
            utilization: 30,
            raw: 300,
        },
        ResCase {
            src: "scale down: failed pods ignored",
            f: Fixture {
                current: 5,
                readiness: vec![T, T, T, T, T, F, F],
                phase: vec![Running, Running, Running, Running, Running, Failed, Failed],
                requests: reqs(7, 1.0),
                levels: lv(&[100, 300, 500, 250, 250]),
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 3,
            utilization: 28,
            raw: N * 280,
        },
        ResCase {
            src: "scale down: container metric with failed pods ignored",
            f: Fixture {
                current: 5,
                readiness: vec![T, T, T, T, T, F, F],
                phase: vec![Running, Running, Running, Running, Running, Failed, Failed],
                container: Some("container2"),
                requests: reqs(7, 1.0),
                levels: vec![
                    vec![1000, 100],
                    vec![1000, 300],
                    vec![1000, 500],
                    vec![1000, 250],
                    vec![1000, 250],
                ],
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 3,
            utilization: 28,
            raw: 280,
        },
        ResCase {
            src: "scale down: pods being deleted are ignored",
            f: Fixture {
                current: 5,
                readiness: vec![T, T, T, T, T, F, F],
                phase: vec![Running; 7],
                deleting: vec![false, false, false, false, false, true, true],
                requests: reqs(7, 1.0),
                levels: lv(&[100, 300, 500, 250, 250]),
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 3,
            utilization: 28,
            raw: N * 280,
        },
        ResCase {
            src: "scale down: still-running pods being deleted are ignored",
            f: Fixture {
                current: 5,
                readiness: vec![T, T, T, T, T, F, F],
                phase: vec![Running; 7],
                deleting: vec![false, false, false, false, false, true, true],
                container: Some("container2"),
                requests: reqs(7, 1.0),
                levels: vec![
                    vec![1000, 100],
                    vec![1000, 300],
                    vec![1000, 500],
                    vec![1000, 250],
                    vec![1000, 250],
                ],
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 3,
            utilization: 28,
            raw: 280,
        },
    ];
    assert_eq!(cases.len(), 24, "{t}: every table entry is ported");
    for c in &cases {
        run_resource(c);
    }
}

/// Single resource cases (`tc.runTest` with `resource`).
#[test]
fn resource_single_cases() {
    let cases = vec![
        // replica_calculator_test.go TestReplicaCalcTolerance
        ResCase {
            src: "TestReplicaCalcTolerance",
            f: Fixture {
                current: 3,
                requests: vec![0.9, 1.0, 1.1],
                levels: lv(&[1010, 1030, 1020]),
                ..Default::default()
            },
            target: 100,
            tol: None,
            replicas: 3,
            utilization: 102,
            raw: N * 1020,
        },
        // replica_calculator_test.go TestReplicaCalcConfigurableTolerance "Outside of a 0% tolerance"
        ResCase {
            src: "TestReplicaCalcConfigurableTolerance/0%",
            f: Fixture {
                current: 3,
                requests: vec![0.9, 1.0, 1.1],
                levels: lv(&[909, 1010, 1111]),
                ..Default::default()
            },
            target: 100,
            tol: Some((0.0, 0.0)),
            replicas: 4,
            utilization: 101,
            raw: N * 1010,
        },
        // replica_calculator_test.go TestReplicaCalcConfigurableTolerance "Within a 200% scale-up tolerance"
        ResCase {
            src: "TestReplicaCalcConfigurableTolerance/200% up",
            f: Fixture {
                current: 3,
                requests: vec![0.9, 1.0, 1.1],
                levels: lv(&[1890, 1910, 1900]),
                ..Default::default()
            },
            target: 100,
            tol: Some((DEFAULT_TOL, 2.0)),
            replicas: 3,
            utilization: 190,
            raw: N * 1900,
        },
        // replica_calculator_test.go TestReplicaCalcConfigurableTolerance "Outside 8% scale-up tolerance (and superfuous scale-down tolerance)"
        ResCase {
            src: "TestReplicaCalcConfigurableTolerance/8% up",
            f: Fixture {
                current: 3,
                requests: vec![0.9, 1.0, 1.1],
                levels: lv(&[1100, 1080, 1090]),
                ..Default::default()
            },
            target: 100,
            tol: Some((2.0, 0.08)),
            replicas: 4,
            utilization: 109,
            raw: N * 1090,
        },
        // replica_calculator_test.go TestReplicaCalcConfigurableTolerance "Within a 36% scale-down tolerance"
        ResCase {
            src: "TestReplicaCalcConfigurableTolerance/36% down",
            f: Fixture {
                current: 3,
                requests: vec![0.9, 1.0, 1.1],
                levels: lv(&[660, 640, 650]),
                ..Default::default()
            },
            target: 100,
            tol: Some((0.36, DEFAULT_TOL)),
            replicas: 3,
            utilization: 65,
            raw: N * 650,
        },
        // replica_calculator_test.go TestReplicaCalcConfigurableTolerance "Outside a 34% scale-down tolerance"
        ResCase {
            src: "TestReplicaCalcConfigurableTolerance/34% down",
            f: Fixture {
                current: 3,
                requests: vec![0.9, 1.0, 1.1],
                levels: lv(&[660, 640, 650]),
                ..Default::default()
            },
            target: 100,
            tol: Some((0.34, DEFAULT_TOL)),
            replicas: 2,
            utilization: 65,
            raw: N * 650,
        },
        // replica_calculator_test.go TestReplicaCalcSuperfluousMetrics
        ResCase {
            src: "TestReplicaCalcSuperfluousMetrics",
            f: Fixture {
                current: 4,
                requests: reqs(4, 1.0),
                levels: lv(&[4000, 9500, 3000, 7000, 3200, 2000]),
                ..Default::default()
            },
            target: 100,
            tol: None,
            replicas: 24,
            utilization: 587,
            raw: N * 5875,
        },
        // replica_calculator_test.go TestReplicaCalcMissingMetrics
        ResCase {
            src: "TestReplicaCalcMissingMetrics",
            f: Fixture {
                current: 4,
                requests: reqs(4, 1.0),
                levels: lv(&[400, 95]),
                ..Default::default()
            },
            target: 100,
            tol: None,
            replicas: 3,
            utilization: 24,
            raw: 495,
        },
        // replica_calculator_test.go TestReplicaCalcMissingMetricsNoChangeEq
        ResCase {
            src: "TestReplicaCalcMissingMetricsNoChangeEq",
            f: Fixture {
                current: 2,
                requests: reqs(2, 1.0),
                levels: lv(&[1000]),
                ..Default::default()
            },
            target: 100,
            tol: None,
            replicas: 2,
            utilization: 100,
            raw: N * 1000,
        },
        // replica_calculator_test.go TestReplicaCalcMissingMetricsNoChangeGt
        ResCase {
            src: "TestReplicaCalcMissingMetricsNoChangeGt",
            f: Fixture {
                current: 2,
                requests: reqs(2, 1.0),
                levels: lv(&[1900]),
                ..Default::default()
            },
            target: 100,
            tol: None,
            replicas: 2,
            utilization: 190,
            raw: N * 1900,
        },
        // replica_calculator_test.go TestReplicaCalcMissingMetricsNoChangeLt
        ResCase {
            src: "TestReplicaCalcMissingMetricsNoChangeLt",
            f: Fixture {
                current: 2,
                requests: reqs(2, 1.0),
                levels: lv(&[600]),
                ..Default::default()
            },
            target: 100,
            tol: None,
            replicas: 2,
            utilization: 60,
            raw: N * 600,
        },
        // replica_calculator_test.go TestReplicaCalcMissingMetricsUnreadyChange
        ResCase {
            src: "TestReplicaCalcMissingMetricsUnreadyChange",
            f: Fixture {
                current: 3,
                readiness: vec![F, T, T],
                requests: reqs(3, 1.0),
                levels: lv(&[100, 450]),
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 3,
            utilization: 45,
            raw: N * 450,
        },
        // replica_calculator_test.go TestReplicaCalcMissingMetricsHotCpuNoChange
        ResCase {
            src: "TestReplicaCalcMissingMetricsHotCpuNoChange",
            f: Fixture {
                current: 3,
                start: vec![hot(), cool(), cool()],
                requests: reqs(3, 1.0),
                levels: lv(&[100, 450]),
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 3,
            utilization: 45,
            raw: N * 450,
        },
        // replica_calculator_test.go TestReplicaCalcMissingMetricsUnreadyScaleUp
        ResCase {
            src: "TestReplicaCalcMissingMetricsUnreadyScaleUp",
            f: Fixture {
                current: 3,
                readiness: vec![F, T, T],
                requests: reqs(3, 1.0),
                levels: lv(&[100, 2000]),
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 4,
            utilization: 200,
            raw: N * 2000,
        },
        // replica_calculator_test.go TestReplicaCalcMissingMetricsHotCpuScaleUp
        ResCase {
            src: "TestReplicaCalcMissingMetricsHotCpuScaleUp",
            f: Fixture {
                current: 3,
                readiness: vec![F, T, T],
                start: vec![hot(), cool(), cool()],
                requests: reqs(3, 1.0),
                levels: lv(&[100, 2000]),
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 4,
            utilization: 200,
            raw: N * 2000,
        },
        // replica_calculator_test.go TestReplicaCalcMissingMetricsUnreadyScaleDown
        ResCase {
            src: "TestReplicaCalcMissingMetricsUnreadyScaleDown",
            f: Fixture {
                current: 4,
                readiness: vec![F, T, T, T],
                requests: reqs(4, 1.0),
                levels: lv(&[100, 100, 100]),
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 3,
            utilization: 10,
            raw: N * 100,
        },
        // replica_calculator_test.go TestReplicaCalcMissingMetricsScaleDownTargetOver100
        ResCase {
            src: "TestReplicaCalcMissingMetricsScaleDownTargetOver100",
            f: Fixture {
                current: 4,
                readiness: vec![F, T, T, T],
                requests: vec![1.0, 1.0, 2.0, 2.0],
                levels: lv(&[200, 100, 100]),
                ..Default::default()
            },
            target: 300,
            tol: None,
            replicas: 2,
            utilization: 6,
            raw: N * 100,
        },
        // replica_calculator_test.go TestReplicaCalcDuringRollingUpdateWithMaxSurge
        ResCase {
            src: "TestReplicaCalcDuringRollingUpdateWithMaxSurge",
            f: Fixture {
                current: 2,
                phase: vec![Running; 3],
                requests: reqs(3, 1.0),
                levels: lv(&[100, 100]),
                ..Default::default()
            },
            target: 50,
            tol: None,
            replicas: 2,
            utilization: 10,
            raw: N * 100,
        },
    ];
    for c in &cases {
        run_resource(c);
    }
}

/// replica_calculator_test.go TestReplicaCalcComputedToleranceAlgImplementation (both runs),
/// with upstream's arithmetic.
#[test]
fn computed_tolerance_alg_implementation() {
    let start_pods: i32 = 10;
    let total_used: i64 = i64::from(start_pods) * 150;
    let total_requested: i32 = 2 * total_used as i32;
    let requested_to_used = f64::from(total_requested / total_used as i32);
    let per_pod_requested = i64::from(total_requested / start_pods);
    let mut target = (1.0 / (requested_to_used * (1.0 - DEFAULT_TOL))).abs() + 0.01;
    let mut final_target = (target * 100.0) as i32;
    let used_ratio = total_used as f64 / (f64::from(total_requested) * target);
    let final_pods = (used_ratio * f64::from(start_pods)).ceil() as i32;
    let offsets = [100, -100, 10, -10, 2, -2, 1, -1, 0, 0];
    let f = Fixture {
        current: start_pods,
        requests: offsets
            .iter()
            .map(|o| (per_pod_requested + o) as f64 / 1000.0)
            .collect(),
        levels: lv(&[total_used / 10; 10]),
        ..Default::default()
    };
    let expected_util = (total_used * 100) as i32 / total_requested;
    run_resource(&ResCase {
        src: "TestReplicaCalcComputedToleranceAlgImplementation/1",
        f: f.clone(),
        target: final_target,
        tol: None,
        replicas: final_pods,
        utilization: expected_util,
        raw: N * total_used / 10,
    });
    target = (1.0 / (requested_to_used * (1.0 - DEFAULT_TOL))).abs() + 0.004;
    final_target = (target * 100.0) as i32;
    run_resource(&ResCase {
        src: "TestReplicaCalcComputedToleranceAlgImplementation/2",
        f,
        target: final_target,
        tol: None,
        replicas: start_pods,
        utilization: expected_util,
        raw: N * total_used / 10,
    });
}

#[test]
fn resource_errors() {
    // replica_calculator_test.go TestReplicaCalcDisjointResourcesMetrics
    let f = Fixture {
        current: 1,
        requests: reqs(1, 1.0),
        levels: lv(&[100]),
        pod_names: vec!["an-older-pod-name"],
        ..Default::default()
    };
    let (pods, names) = (f.pods(), f.names());
    let err = resource_replicas(
        1,
        100,
        "cpu",
        None,
        tol(None),
        &pods,
        &f.resource_metrics(&names),
        &readiness(),
    );
    assert_eq!(
        err,
        Err(CalcError::NoMetricsMatchedKnownPods),
        "TestReplicaCalcDisjointResourcesMetrics"
    );

    // replica_calculator_test.go TestReplicaCalcEmptyCPURequest
    let f = Fixture {
        current: 1,
        requests: vec![],
        levels: lv(&[200]),
        ..Default::default()
    };
    let (pods, names) = (f.pods(), f.names());
    let err = resource_replicas(
        1,
        100,
        "cpu",
        None,
        tol(None),
        &pods,
        &f.resource_metrics(&names),
        &readiness(),
    )
    .expect_err("TestReplicaCalcEmptyCPURequest");
    assert!(
        err.to_string().contains("missing request for"),
        "TestReplicaCalcEmptyCPURequest: {err}"
    );
}

#[derive(Clone, Copy)]
enum Kind {
    Pods,
    Object,
    ObjectPerPod,
    External,
    ExternalPerPod,
}

/// `metricInfo` cases.
struct MetricCase {
    src: &'static str,
    kind: Kind,
    current: i32,
    readiness: Vec<ConditionStatus>,
    start: Vec<f64>,
    phase: Vec<PodPhase>,
    levels: Vec<i64>,
    target: i64,
    tol: Option<(f64, f64)>,
    replicas: i32,
    usage: i64,
}

fn run_metric(c: &MetricCase) {
    let f = Fixture {
        current: c.current,
        readiness: c.readiness.clone(),
        start: c.start.clone(),
        phase: c.phase.clone(),
        ..Default::default()
    };
    let pods = f.pods();
    let t = tol(c.tol);
    let (replicas, usage) = match c.kind {
        Kind::Pods => {
            let names: Vec<String> = (0..c.levels.len())
                .map(|i| format!("test-pod-{i}"))
                .collect();
            let metrics: PodMetrics<'_> = names
                .iter()
                .zip(&c.levels)
                .map(|(n, v)| {
                    (
                        n.as_str(),
                        Sample {
                            value: *v,
                            timestamp_unix_seconds: GO_ZERO,
                            window_seconds: 0.0,
                        },
                    )
                })
                .collect();
            let out =
                plain_metric_replicas(c.current, c.target, t, &pods, &metrics, false, &readiness())
                    .unwrap_or_else(|e| panic!("{}: {e}", c.src));
            (out.replicas, out.average_value)
        }
        Kind::Object => object_replicas(c.current, c.levels[0], c.target, t, &pods)
            .unwrap_or_else(|e| panic!("{}: {e}", c.src)),
        Kind::ObjectPerPod => object_per_pod_replicas(c.current, c.levels[0], c.target, t),
        Kind::External => external_replicas(c.current, &c.levels, c.target, t, &pods)
            .unwrap_or_else(|e| panic!("{}: {e}", c.src)),
        Kind::ExternalPerPod => external_per_pod_replicas(c.current, &c.levels, c.target, t),
    };
    assert_eq!(replicas, c.replicas, "{}: replicas", c.src);
    assert_eq!(usage, c.usage, "{}: usage", c.src);
}

fn mc(
    src: &'static str,
    kind: Kind,
    current: i32,
    levels: &[i64],
    target: i64,
    replicas: i32,
    usage: i64,
) -> MetricCase {
    MetricCase {
        src,
        kind,
        current,
        readiness: vec![],
        start: vec![],
        phase: vec![],
        levels: levels.to_vec(),
        target,
        tol: None,
        replicas,
        usage,
    }
}

#[test]
fn metric_cases() {
    use Kind::*;
    let up = Some((DEFAULT_TOL, 0.01));
    let cases = vec![
        // replica_calculator_test.go TestReplicaCalcScaleUpOverflow
        mc(
            "TestReplicaCalcScaleUpOverflow",
            Object,
            3,
            &[i64::MAX],
            1,
            i32::MAX,
            i64::MAX,
        ),
        // replica_calculator_test.go TestExternalPerPodMetricReplicaOverflow
        mc(
            "TestExternalPerPodMetricReplicaOverflow",
            ExternalPerPod,
            1,
            &[i64::MAX],
            1,
            i32::MAX,
            i64::MAX,
        ),
        // replica_calculator_test.go TestExternalPerPodMetricUsageOverflow
        mc(
            "TestExternalPerPodMetricUsageOverflow",
            ExternalPerPod,
            1,
            &[i64::MAX],
            i64::MAX,
            1,
            i64::MAX,
        ),
        // replica_calculator_test.go TestReplicaCalcExternalMetricUsageOverflow
        mc(
            "TestReplicaCalcExternalMetricUsageOverflow",
            External,
            3,
            &[i64::MAX / 2 + 1, i64::MAX / 2 + 1],
            i64::MAX,
            3,
            i64::MAX,
        ),
        // replica_calculator_test.go TestReplicaCalcScaleUpCM
        mc(
            "TestReplicaCalcScaleUpCM",
            Pods,
            3,
            &[20000, 10000, 30000],
            15000,
            4,
            20000,
        ),
        // replica_calculator_test.go TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale
        MetricCase {
            readiness: vec![T, T, F],
            start: vec![cool(), cool(), hot()],
            ..mc(
                "TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale",
                Pods,
                3,
                &[50000, 10000, 30000],
                15000,
                6,
                30000,
            )
        },
        // replica_calculator_test.go TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown
        MetricCase {
            readiness: vec![F, T, F],
            start: vec![hot(), cool(), hot()],
            ..mc(
                "TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown",
                Pods,
                3,
                &[50000, 15000, 30000],
                15000,
                7,
                31666,
            )
        },
        // replica_calculator_test.go TestReplicaCalcScaleUpCMObject
        mc(
            "TestReplicaCalcScaleUpCMObject",
            Object,
            3,
            &[20000],
            15000,
            4,
            20000,
        ),
        // replica_calculator_test.go TestReplicaCalcScaleUpCMPerPodObject
        mc(
            "TestReplicaCalcScaleUpCMPerPodObject",
            ObjectPerPod,
            3,
            &[20000],
            5000,
            4,
            6667,
        ),
        // replica_calculator_test.go TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods
        MetricCase {
            readiness: vec![F, T, F],
            ..mc(
                "TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods",
                Object,
                3,
                &[50000],
                10000,
                5,
                50000,
            )
        },
        // replica_calculator_test.go TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods
        MetricCase {
            readiness: vec![F, T, F],
            ..mc(
                "TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods",
                External,
                3,
                &[8600],
                4400,
                2,
                8600,
            )
        },
        // replica_calculator_test.go TestReplicaCalcScaleUpPerPodCMExternal
        mc(
            "TestReplicaCalcScaleUpPerPodCMExternal",
            ExternalPerPod,
            3,
            &[8600],
            2150,
            4,
            2867,
        ),
        // replica_calculator_test.go TestReplicaCalcScaleDownCM
        mc(
            "TestReplicaCalcScaleDownCM",
            Pods,
            5,
            &[12000; 5],
            20000,
            3,
            12000,
        ),
        // replica_calculator_test.go TestReplicaCalcScaleDownPerPodCMObject
        mc(
            "TestReplicaCalcScaleDownPerPodCMObject",
            ObjectPerPod,
            5,
            &[6000],
            2000,
            3,
            1200,
        ),
        // replica_calculator_test.go TestReplicaCalcScaleDownCMObject
        mc(
            "TestReplicaCalcScaleDownCMObject",
            Object,
            5,
            &[12000],
            20000,
            3,
            12000,
        ),
        // replica_calculator_test.go TestReplicaCalcScaleDownCMExternal
        mc(
            "TestReplicaCalcScaleDownCMExternal",
            External,
            5,
            &[8600],
            14334,
            3,
            8600,
        ),
        // replica_calculator_test.go TestReplicaCalcScaleDownPerPodCMExternal
        mc(
            "TestReplicaCalcScaleDownPerPodCMExternal",
            ExternalPerPod,
            5,
            &[8600],
            2867,
            3,
            1720,
        ),
        // replica_calculator_test.go TestReplicaCalcToleranceCM
        mc(
            "TestReplicaCalcToleranceCM",
            Pods,
            3,
            &[20000, 21000, 21000],
            20000,
            3,
            20666,
        ),
        // replica_calculator_test.go TestReplicaCalcToleranceCMObject
        mc(
            "TestReplicaCalcToleranceCMObject",
            Object,
            3,
            &[20666],
            20000,
            3,
            20666,
        ),
        // replica_calculator_test.go TestReplicaCalcTolerancePerPodCMObject
        mc(
            "TestReplicaCalcTolerancePerPodCMObject",
            ObjectPerPod,
            4,
            &[20166],
            5000,
            4,
            5042,
        ),
        // replica_calculator_test.go TestReplicaCalcToleranceCMExternal
        mc(
            "TestReplicaCalcToleranceCMExternal",
            External,
            3,
            &[8600],
            8888,
            3,
            8600,
        ),
        // replica_calculator_test.go TestReplicaCalcTolerancePerPodCMExternal
        mc(
            "TestReplicaCalcTolerancePerPodCMExternal",
            ExternalPerPod,
            3,
            &[8600],
            2900,
            3,
            2867,
        ),
        // replica_calculator_test.go TestReplicaCalcConfigurableToleranceCM
        MetricCase {
            tol: up,
            ..mc(
                "TestReplicaCalcConfigurableToleranceCM",
                Pods,
                3,
                &[20000, 21000, 21000],
                20000,
                4,
                20666,
            )
        },
        // replica_calculator_test.go TestReplicaCalcConfigurableToleranceCMObject
        MetricCase {
            tol: up,
            ..mc(
                "TestReplicaCalcConfigurableToleranceCMObject",
                Object,
                3,
                &[20666],
                20000,
                4,
                20666,
            )
        },
        // replica_calculator_test.go TestReplicaCalcConfigurableTolerancePerPodCMObject
        MetricCase {
            tol: up,
            ..mc(
                "TestReplicaCalcConfigurableTolerancePerPodCMObject",
                ObjectPerPod,
                4,
                &[20208],
                5000,
                5,
                5052,
            )
        },
        // replica_calculator_test.go TestReplicaCalcConfigurableToleranceCMExternal
        MetricCase {
            tol: up,
            ..mc(
                "TestReplicaCalcConfigurableToleranceCMExternal",
                External,
                3,
                &[8900],
                8800,
                4,
                8900,
            )
        },
        // replica_calculator_test.go TestReplicaCalcConfigurableTolerancePerPodCMExternal
        MetricCase {
            tol: up,
            ..mc(
                "TestReplicaCalcConfigurableTolerancePerPodCMExternal",
                ExternalPerPod,
                3,
                &[8600],
                2800,
                4,
                2867,
            )
        },
        // replica_calculator_test.go TestPlainMetricReplicaCalcMissingMetricsNoChangeEq
        mc(
            "TestPlainMetricReplicaCalcMissingMetricsNoChangeEq",
            Pods,
            5,
            &[20000, 19000, 21000],
            20000,
            5,
            20000,
        ),
        // replica_calculator_test.go TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM
        MetricCase {
            phase: vec![Running; 3],
            ..mc(
                "TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM",
                Pods,
                2,
                &[10000, 10000],
                17000,
                2,
                10000,
            )
        },
    ];
    for c in &cases {
        run_metric(c);
    }
}

fn gpod(
    name: &str,
    phase: PodPhase,
    start: Option<f64>,
    ready: Option<(ConditionStatus, f64)>,
) -> Pod {
    Pod {
        name: name.into(),
        phase,
        deleting: false,
        start_time_unix_seconds: start,
        ready: ready.map(|(status, t)| ReadyCondition {
            status,
            last_transition_unix_seconds: t,
        }),
        containers: vec![],
        init_containers: vec![],
        requests: BTreeMap::new(),
    }
}

fn sample(ts: f64, window: f64) -> Sample {
    Sample {
        value: 1,
        timestamp_unix_seconds: ts,
        window_seconds: window,
    }
}

/// replica_calculator_test.go TestGroupPods (every table entry).
#[test]
fn group_pods_table() {
    use PodPhase::Succeeded;
    let z = sample(GO_ZERO, 0.0);
    let m = |min: f64| NOW + min * 60.0;
    type Case = (
        &'static str,
        Vec<Pod>,
        Vec<(&'static str, Sample)>,
        bool,
        usize,
        Vec<&'static str>,
        Vec<&'static str>,
        Vec<&'static str>,
    );
    let mut deleted = gpod("deleted", Pending, None, None);
    deleted.deleting = true;
    let cases: Vec<Case> = vec![
        ("void", vec![], vec![], true, 0, vec![], vec![], vec![]),
        (
            "count in a ready pod - memory",
            vec![gpod("bentham", Succeeded, None, None)],
            vec![("bentham", sample(NOW, 60.0))],
            false,
            1,
            vec![],
            vec![],
            vec![],
        ),
        (
            "unready a pod without ready condition - CPU",
            vec![gpod("lucretius", Succeeded, Some(NOW), None)],
            vec![("lucretius", z)],
            true,
            0,
            vec!["lucretius"],
            vec![],
            vec![],
        ),
        (
            "count in a ready pod with fresh metrics during initialization period - CPU",
            vec![gpod(
                "bentham",
                Succeeded,
                Some(m(-1.0)),
                Some((T, NOW - 30.0)),
            )],
            vec![("bentham", sample(NOW, 30.0))],
            true,
            1,
            vec![],
            vec![],
            vec![],
        ),
        (
            "unready a ready pod without fresh metrics during initialization period - CPU",
            vec![gpod(
                "bentham",
                Succeeded,
                Some(m(-1.0)),
                Some((T, NOW - 30.0)),
            )],
            vec![("bentham", sample(NOW, 60.0))],
            true,
            0,
            vec!["bentham"],
            vec![],
            vec![],
        ),
        (
            "unready an unready pod during initialization period - CPU",
            vec![gpod(
                "lucretius",
                Succeeded,
                Some(m(-10.0)),
                Some((F, NOW - 9.0 * 60.0 - 54.0)),
            )],
            vec![("lucretius", z)],
            true,
            0,
            vec!["lucretius"],
            vec![],
            vec![],
        ),
        (
            "count in a ready pod without fresh metrics after initialization period - CPU",
            vec![gpod(
                "bentham",
                Succeeded,
                Some(m(-3.0)),
                Some((T, m(-3.0))),
            )],
            vec![("bentham", sample(m(-2.0), 60.0))],
            true,
            1,
            vec![],
            vec![],
            vec![],
        ),
        (
            "count in an unready pod that was ready after initialization period - CPU",
            vec![gpod(
                "lucretius",
                Succeeded,
                Some(m(-10.0)),
                Some((F, m(-9.0))),
            )],
            vec![("lucretius", z)],
            true,
            1,
            vec![],
            vec![],
            vec![],
        ),
        (
            "unready pod that has never been ready after initialization period - CPU",
            vec![gpod(
                "lucretius",
                Succeeded,
                Some(m(-10.0)),
                Some((F, NOW - 9.0 * 60.0 - 50.0)),
            )],
            vec![("lucretius", z)],
            true,
            1,
            vec![],
            vec![],
            vec![],
        ),
        (
            "a missing pod",
            vec![gpod("epicurus", Succeeded, Some(m(-3.0)), None)],
            vec![],
            true,
            0,
            vec![],
            vec!["epicurus"],
            vec![],
        ),
        (
            "several pods",
            vec![
                gpod("lucretius", Succeeded, Some(NOW), None),
                gpod("niccolo", Succeeded, Some(m(-3.0)), Some((T, m(-3.0)))),
                gpod("epicurus", Succeeded, Some(m(-3.0)), None),
            ],
            vec![("lucretius", z), ("niccolo", z)],
            true,
            1,
            vec!["lucretius"],
            vec!["epicurus"],
            vec![],
        ),
        (
            "pending pods are unreadied",
            vec![gpod("unscheduled", Pending, None, None)],
            vec![],
            true,
            0,
            vec!["unscheduled"],
            vec![],
            vec![],
        ),
        (
            "ignore pods with deletion timestamps",
            vec![deleted],
            vec![("deleted", z)],
            true,
            0,
            vec![],
            vec![],
            vec!["deleted"],
        ),
        (
            "ignore pods in a failed state",
            vec![gpod("failed", Failed, None, None)],
            vec![("failed", z)],
            true,
            0,
            vec![],
            vec![],
            vec!["failed"],
        ),
    ];
    assert_eq!(cases.len(), 14);
    for (name, pods, metrics, is_cpu, ready, unready, missing, ignored) in cases {
        let metrics: PodMetrics<'_> = metrics.into_iter().collect();
        let g = group_pods(&pods, &metrics, is_cpu, &readiness());
        let set = |v: Vec<&'static str>| v.into_iter().collect::<BTreeSet<&str>>();
        assert_eq!(g.ready_count, ready, "TestGroupPods {name}: ready");
        assert_eq!(g.unready, set(unready), "TestGroupPods {name}: unready");
        assert_eq!(g.missing, set(missing), "TestGroupPods {name}: missing");
        assert_eq!(g.ignored, set(ignored), "TestGroupPods {name}: ignored");
    }
}

fn cpu(m: i64) -> BTreeMap<String, f64> {
    BTreeMap::from([("cpu".to_owned(), m as f64 / 1000.0)])
}

fn container(name: &str, req: Option<i64>, always: bool) -> Container {
    Container {
        name: name.into(),
        requests: req.map(cpu).unwrap_or_default(),
        restart_policy_always: always,
    }
}

fn rpod(containers: Vec<Container>, init: Vec<Container>, pod_level: Option<i64>) -> Pod {
    Pod {
        name: "test-pod".into(),
        phase: Running,
        deleting: false,
        start_time_unix_seconds: None,
        ready: None,
        containers,
        init_containers: init,
        requests: pod_level.map(cpu).unwrap_or_default(),
    }
}

/// replica_calculator_test.go TestCalculateRequests (every table entry; Tidal always has
/// pod-level resources enabled, which no entry contradicts) and
/// TestCalculatePodRequestsFromContainers_NonExistentContainer.
#[test]
fn calculate_requests_table() {
    let two = || {
        vec![
            container("container1", Some(100), false),
            container("container2", Some(50), false),
        ]
    };
    type Case = (
        &'static str,
        Vec<Pod>,
        Option<&'static str>,
        Result<Option<i64>, CalcError>,
    );
    let cases: Vec<Case> = vec![
        ("void", vec![], None, Ok(None)),
        (
            "Sum container requests if pod-level feature is disabled",
            vec![rpod(two(), vec![], None)],
            None,
            Ok(Some(150)),
        ),
        (
            "Pod-level resources are enabled, but not set: fallback to sum container requests",
            vec![rpod(two(), vec![], None)],
            None,
            Ok(Some(150)),
        ),
        (
            "Pod-level resources override container requests when feature enabled and pod resources specified",
            vec![rpod(two(), vec![], Some(800))],
            None,
            Ok(Some(800)),
        ),
        (
            "Fail if at least one of the containers is missing requests and pod-level feature/requests are not set",
            vec![rpod(
                vec![
                    container("container1", None, false),
                    container("container2", Some(50), false),
                ],
                vec![],
                None,
            )],
            None,
            Err(CalcError::MissingRequest {
                resource: "cpu".into(),
                container: "container1".into(),
                pod: "test-pod".into(),
            }),
        ),
        (
            "Pod-level resources override missing container requests when feature enabled and pod resources specified",
            vec![rpod(
                vec![
                    container("container1", None, false),
                    container("container2", Some(50), false),
                ],
                vec![],
                Some(800),
            )],
            None,
            Ok(Some(800)),
        ),
        (
            "Container: if a container name is specified, calculate requests only for that container",
            vec![rpod(two(), vec![], None)],
            Some("container1"),
            Ok(Some(100)),
        ),
        (
            "Container: if a container name is specified, calculate requests only for that container and ignore pod-level requests",
            vec![rpod(two(), vec![], Some(800))],
            Some("container1"),
            Ok(Some(100)),
        ),
        (
            "pod with restartable init containers",
            vec![rpod(
                vec![container("container1", Some(100), false)],
                vec![
                    container("init-container1", Some(20), false),
                    container("restartable-container1", Some(50), true),
                ],
                None,
            )],
            None,
            Ok(Some(150)),
        ),
        (
            "TestCalculatePodRequestsFromContainers_NonExistentContainer",
            vec![rpod(
                vec![container("container1", Some(100), false)],
                vec![],
                None,
            )],
            Some("non-existent-container"),
            Err(CalcError::ContainerNotFound {
                container: "non-existent-container".into(),
                pod: "test-pod".into(),
            }),
        ),
    ];
    for (name, pods, c, want) in cases {
        let got = calculate_requests(&pods, c, "cpu").map(|m| m.get("test-pod").copied());
        assert_eq!(got, want, "TestCalculateRequests {name}");
    }
    let err = CalcError::ContainerNotFound {
        container: "non-existent-container".into(),
        pod: "test-pod".into(),
    };
    assert_eq!(
        err.to_string(),
        "container non-existent-container not found in Pod test-pod"
    );
}

#[test]
fn to_milli_rounds_up_like_quantity() {
    assert_eq!(to_milli(0.3), 300);
    assert_eq!(to_milli(1.1), 1100);
    assert_eq!(to_milli(0.0001), 1);
    assert_eq!(to_milli(2.5), 2500);
}

/// The two readiness rules of `types::Pod`: the HPA's `getReadyPodsCount` counts a Running,
/// Ready pod even while it is deleted (upstream reads only `Status.Phase` and
/// `podutil.IsPodReady`); Tidal's consumers leave deleting pods out.
#[test]
fn readiness_rules_differ_only_on_deleting_pods() {
    use crate::types::PodPhase::{Failed, Pending, Running, Succeeded, Unknown};
    let cond = |status| ReadyCondition {
        status,
        last_transition_unix_seconds: NOW,
    };
    let (yes, no, unknown) = (
        Some(ConditionStatus::True),
        Some(ConditionStatus::False),
        Some(ConditionStatus::Unknown),
    );
    // phase, Ready condition, deleting -> (running and ready, consuming)
    let table = [
        (Running, yes, false, (true, true)),
        (Running, yes, true, (true, false)),
        (Running, no, false, (false, false)),
        (Running, unknown, false, (false, false)),
        (Running, None, false, (false, false)),
        (Pending, yes, false, (false, false)),
        (Failed, yes, false, (false, false)),
        (Succeeded, yes, false, (false, false)),
        (Unknown, yes, false, (false, false)),
    ];
    let pod = |phase, ready: Option<ConditionStatus>, deleting| Pod {
        name: format!("{phase:?}-{ready:?}-{deleting}"),
        phase,
        deleting,
        start_time_unix_seconds: None,
        ready: ready.map(cond),
        containers: Vec::new(),
        init_containers: Vec::new(),
        requests: Default::default(),
    };
    for (phase, ready, deleting, want) in table {
        let p = pod(phase, ready, deleting);
        let got = (p.is_running_and_ready(), p.is_consuming());
        assert_eq!(got, want, "{phase:?} {ready:?} deleting={deleting}");
    }
    // getReadyPodsCount over the same rows: the two Running, Ready rows.
    let pods: Vec<Pod> = table
        .iter()
        .map(|&(phase, ready, deleting, _)| pod(phase, ready, deleting))
        .collect();
    assert_eq!(ready_pods_count(&pods), Ok(2));
}

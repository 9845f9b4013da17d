//! The property test of the controller's own decision path ([`super::decide`]): random
//! policies (CPU, Kafka lag, Prometheus, formulas, `minReplicas: 0`), pods and source data
//! (errors, stale agents, incomplete lag, negative and duplicate values), through the same
//! `compile` → `observe::observations` → engine path a cycle runs.
//!
//! The oracle of what is uncertain is the test's own, read from the generated source data, not
//! from the engine's verdict, so a path that silently drops a bad value fails here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::observe::{Gathered, lag_query};
use super::{Facts, compile, decide};
use crate::api::ScalingPolicy;
use crate::engine::types::{self as engine, NextState, Recommendation, ScaleEvent};
use crate::sources::kafka::LagReading;
use crate::sources::prometheus::PromSample;
use crate::sources::{ContainerUsage, PodUsage, SourceError};
use tidal_engine::test_rng::Rng;

const NOW: f64 = 1_800_000_000.0;
const NS: &str = "ns";

fn rfc3339(unix: f64) -> String {
    Timestamp::from_second(unix as i64)
        .expect("in range")
        .to_string()
}

fn random_pod(rng: &mut Rng, i: usize) -> Arc<Pod> {
    let start = NOW - rng.below(900) as f64;
    let phase = *rng.pick(&["Running", "Running", "Running", "Pending", "Failed"]);
    let ready = if rng.chance(85) { "True" } else { "False" };
    let mut pod = json!({
        "metadata": {"name": format!("p-{i}"), "namespace": NS, "labels": {"app": "w"}},
        "spec": {"containers": [{
            "name": "app",
            "resources": {"requests": {"cpu": format!("{}m", 100 + 100 * rng.below(10))}}
        }]},
        "status": {
            "phase": phase,
            "startTime": rfc3339(start),
            "conditions": [{
                "type": "Ready", "status": ready,
                "lastTransitionTime": rfc3339(start + rng.below(60) as f64)
            }]
        }
    });
    if rng.chance(5) {
        pod["metadata"]["deletionTimestamp"] = json!(rfc3339(NOW - 1.0));
    }
    Arc::new(serde_json::from_value(pod).expect("pod"))
}

/// What the test knows about one metric's data before the engine sees it.
#[derive(Default)]
struct Known {
    /// Some metric's source failed, or its value cannot be used (negative, duplicate, no pod
    /// reported): the controller must not scale down.
    uncertain: bool,
    /// Some lag reading was incomplete (an end offset unknown): no scale-down either.
    lag_incomplete: bool,
    /// Some lag metric's value is not known at all (error or not gathered).
    lag_unknown: bool,
}

fn unreachable(backend: &'static str) -> SourceError {
    SourceError::Unreachable {
        backend,
        url: format!("http://{backend}.test"),
        detail: "connection refused".into(),
    }
}

struct Case {
    policy: ScalingPolicy,
    pods: Vec<Arc<Pod>>,
    gathered: Gathered,
    spec_replicas: i32,
    history: Option<NextState>,
    known: Known,
}

fn cpu_metric(rng: &mut Rng) -> Value {
    json!({"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 10 + rng.below(90)}})
}

fn lag_metric(rng: &mut Rng) -> Value {
    json!({"name": "lag", "kafkaLag": {
        "cluster": "main", "group": "g", "topics": ["t"],
        "lagPerReplica": 1 + rng.below(100),
        "activationLagThreshold": rng.below(20),
        "cooldownSeconds": *rng.pick(&[0, 30, 300]),
    }})
}

fn prom_metric(rng: &mut Rng) -> (Value, &'static str, bool) {
    let shape = *rng.pick(&["targetValue", "targetPerReplica", "targetAverageValue"]);
    let allow = rng.chance(20);
    let m = json!({"name": "rps", "prometheus": {
        "query": "sum(rate(requests_total[1m]))",
        shape: (1 + rng.below(100)).to_string(),
        "allowNegative": allow,
    }});
    (m, shape, allow)
}

/// A formula over the declared metrics (always valid: compile errors are tested elsewhere).
fn random_formula(rng: &mut Rng, names: &[&str]) -> String {
    let m = *rng.pick(names);
    let n = *rng.pick(names);
    match rng.below(6) {
        0 => format!("{m}.ratio * replicas"),
        1 => format!("max({m}.ratio * replicas, {n}.value / {n}.target)"),
        2 => format!("{m}.value / {m}.target - 2"),
        3 => format!("clamp({m}.ratio * readyReplicas, 1, 1000)"),
        4 => format!("{m}.value > {m}.target ? replicas + 1 : replicas - 1"),
        // Division by zero when the value is 0: an evaluation error, which holds.
        _ => format!("{m}.target / {m}.value"),
    }
}

fn random_case(rng: &mut Rng) -> Case {
    let mut metrics = Vec::new();
    let mut names = Vec::new();
    let (with_cpu, with_lag, with_prom) = loop {
        let picked = (rng.chance(50), rng.chance(60), rng.chance(40));
        if picked.0 || picked.1 || picked.2 {
            break picked;
        }
    };
    if with_cpu {
        metrics.push(cpu_metric(rng));
        names.push("cpu");
    }
    if with_lag {
        metrics.push(lag_metric(rng));
        names.push("lag");
    }
    let mut prom_shape = None;
    if with_prom {
        let (m, shape, allow) = prom_metric(rng);
        metrics.push(m);
        names.push("rps");
        prom_shape = Some((shape, allow));
    }
    // Scale to zero needs a metric that can say "idle" (the API's rule).
    let can_idle = with_lag || prom_shape.is_some_and(|(shape, _)| shape != "targetAverageValue");
    let min = if can_idle {
        rng.below(3) as i32
    } else {
        1 + rng.below(2) as i32
    };
    let max = min.max(1) + rng.below(20) as i32;
    let mut spec = json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"},
        "minReplicas": min,
        "maxReplicas": max,
        "metrics": metrics,
    });
    if rng.chance(30) {
        spec["formula"] = json!(random_formula(rng, &names));
    }
    if rng.chance(60) {
        spec["behavior"] = json!({
            "scaleUp": {"stabilizationWindowSeconds": rng.below(120),
                        "policies": [{"type": "Percent", "value": 1 + rng.below(300),
                                      "periodSeconds": 15 + rng.below(60)}]},
            "scaleDown": {"stabilizationWindowSeconds": *rng.pick(&[0, 60, 300]),
                          "policies": [{"type": "Pods", "value": 1 + rng.below(5),
                                        "periodSeconds": 15 + rng.below(60)}]},
        });
    }
    let policy: ScalingPolicy = serde_json::from_value(json!({
        "apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy",
        "metadata": {"name": "p", "namespace": NS},
        "spec": spec,
    }))
    .expect("generated policy");

    let spec_replicas = if min == 0 && rng.chance(25) {
        0
    } else if min == 0 && rng.chance(50) {
        1 + rng.below(3) as i32
    } else {
        min.max(1) + rng.below((max - min.max(1) + 1) as u64) as i32
    };
    let pods: Vec<Arc<Pod>> = (0..spec_replicas as usize + rng.below(2) as usize)
        .map(|i| random_pod(rng, i))
        .collect();

    let mut known = Known::default();
    let mut gathered = Gathered::default();
    if with_cpu {
        gathered.usage = match rng.below(10) {
            0 => {
                known.uncertain = true;
                Some(Err(SourceError::Stale {
                    backend: "agent",
                    url: "http://10.0.0.1:9464/metrics".into(),
                    detail: "its data is 9.0s old (bound 3.0s)".into(),
                }))
            }
            1 => {
                known.uncertain = true;
                None
            }
            _ => {
                // A pod whose agent was left out as stale has no usage: a missing pod.
                let usage: HashMap<_, _> = pods
                    .iter()
                    .filter_map(|p| {
                        if !rng.chance(75) {
                            return None;
                        }
                        let name = p.metadata.name.clone().expect("named");
                        let cpu = rng.below(2000) as f64 / 1000.0;
                        let u = PodUsage {
                            containers: BTreeMap::from([(
                                "app".to_string(),
                                ContainerUsage {
                                    cpu_cores: Some(cpu),
                                    memory_working_set_bytes: None,
                                },
                            )]),
                            timestamp_unix_seconds: NOW - rng.below(3) as f64,
                        };
                        Some(((NS.to_string(), name), u))
                    })
                    .collect();
                if usage.is_empty() {
                    known.uncertain = true;
                }
                Some(Ok(usage))
            }
        };
    }
    if with_lag {
        let k = policy
            .spec
            .metrics
            .iter()
            .find_map(|m| m.kafka_lag.as_ref());
        let reading = match rng.below(10) {
            0 => {
                known.uncertain = true;
                known.lag_unknown = true;
                Some(Err(SourceError::Kafka {
                    cluster: "main".into(),
                    group: "g".into(),
                    detail: "the round's deadline passed".into(),
                }))
            }
            1 => {
                known.uncertain = true;
                known.lag_unknown = true;
                None
            }
            _ => {
                let partitions = 1 + rng.below(16) as i64;
                let complete = rng.chance(80);
                known.lag_incomplete |= !complete;
                let total = if rng.chance(40) {
                    0.0
                } else {
                    rng.below(3000) as f64
                };
                Some(Ok(LagReading {
                    total,
                    partitions,
                    partitions_with_lag: if total > 0.0 {
                        1 + rng.below(partitions as u64) as i64
                    } else {
                        0
                    },
                    persistent_lag: 0.0,
                    commit_interval_total: total,
                    consume_rate_per_second: None,
                    produce_rate_per_second: None,
                    complete,
                    timestamp_unix_seconds: NOW,
                }))
            }
        };
        if let (Some(k), Some(r)) = (k, reading) {
            gathered.kafka.insert(lag_query(k), r);
        }
    }
    if let Some((shape, allow)) = prom_shape {
        let query = "sum(rate(requests_total[1m]))".to_string();
        let value = |rng: &mut Rng, known: &mut Known| {
            let v = if rng.chance(10) {
                -(1.0 + rng.below(50) as f64)
            } else {
                rng.below(500) as f64
            };
            if v < 0.0 && !allow {
                known.uncertain = true;
            }
            v
        };
        let samples = if rng.chance(10) {
            known.uncertain = true;
            Err(unreachable("prometheus"))
        } else if shape == "targetAverageValue" {
            let mut out = Vec::new();
            for p in &pods {
                let name = p.metadata.name.clone().expect("named");
                let copies = if rng.chance(4) {
                    known.uncertain = true;
                    2
                } else if rng.chance(80) {
                    1
                } else {
                    0
                };
                for _ in 0..copies {
                    out.push(PromSample {
                        labels: BTreeMap::from([
                            ("namespace".to_string(), NS.to_string()),
                            ("pod".to_string(), name.clone()),
                        ]),
                        value: value(rng, &mut known),
                        timestamp_unix_seconds: NOW,
                    });
                }
            }
            if out.is_empty() {
                known.uncertain = true;
            }
            Ok(out)
        } else {
            Ok(vec![PromSample {
                labels: BTreeMap::new(),
                value: value(rng, &mut known),
                timestamp_unix_seconds: NOW,
            }])
        };
        gathered.prometheus.insert(query, samples);
    }

    let history = rng.chance(50).then(|| NextState {
        recommendations: (0..rng.below(6))
            .map(|_| Recommendation {
                replicas: rng.below(40) as i32,
                at_unix_seconds: NOW - rng.below(600) as f64,
            })
            .collect(),
        scale_events: (0..rng.below(4))
            .map(|_| ScaleEvent {
                replica_change: rng.below(9) as i32 - 4,
                at_unix_seconds: NOW - rng.below(120) as f64,
            })
            .collect(),
        last_active_unix_seconds: rng.chance(50).then(|| NOW - rng.below(600) as f64),
    });
    Case {
        policy,
        pods,
        gathered,
        spec_replicas,
        history,
        known,
    }
}

fn run(case: &Case) -> (engine::State, engine::Decision) {
    let compiled = compile(&case.policy, &engine::ControllerSettings::default())
        .unwrap_or_else(|e| panic!("generated policy does not compile: {e}"));
    let pods: Vec<&Arc<Pod>> = case.pods.iter().collect();
    let facts = Facts {
        namespace: NS,
        pods: &pods,
        spec_replicas: case.spec_replicas,
        status_replicas: Some(case.pods.len() as i32),
        history: case.history.as_ref(),
        gathered: &case.gathered,
    };
    decide(&case.policy.spec, &compiled, &facts, 1.0, NOW)
}

/// Over random cases through the controller's own path:
/// - the count stays within `[minReplicas, maxReplicas]`;
/// - no scale-down when some source failed, was stale, sent a negative value (without
///   `allowNegative`) or two series for one pod, or no pod reported; none on incomplete lag;
/// - no scale to zero unless every lag is known and complete and nothing is uncertain;
/// - the same facts give the same decision.
#[test]
fn property_the_controller_path_never_acts_on_uncertain_data() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let (mut downs, mut zeros, mut held) = (0, 0, 0);
    for i in 0..6000 {
        let case = random_case(&mut rng);
        let (_, d) = run(&case);
        let spec = &case.policy.spec;
        let (min, max, current) = (spec.min_replicas, spec.max_replicas, case.spec_replicas);
        let why = || {
            format!(
                "case {i}: spec {}\ngathered {:?}\ndecision {} -> {} {:?} {:?}",
                serde_json::to_string(spec).expect("json"),
                case.gathered,
                d.current_replicas,
                d.desired_replicas,
                d.limits,
                d.conditions
            )
        };
        assert!(
            (min..=max).contains(&d.desired_replicas) || (current == 0 && d.desired_replicas == 0),
            "outside the bounds: {}",
            why()
        );
        let k = &case.known;
        if k.uncertain || k.lag_incomplete {
            assert!(
                // Over `maxReplicas`, the HPA goes to the max without reading a metric.
                d.desired_replicas >= current.min(max),
                "scaled down on uncertain data: {}",
                why()
            );
            if d.desired_replicas == current && current > min {
                held += 1;
            }
        }
        if d.desired_replicas == 0 && current > 0 {
            assert!(
                !k.uncertain && !k.lag_incomplete && !k.lag_unknown,
                "scaled to zero on unknown lag or uncertain data: {}",
                why()
            );
            zeros += 1;
        }
        if d.desired_replicas < current {
            downs += 1;
        }
        assert_eq!(d.rescale, d.desired_replicas != current, "{}", why());
        assert_eq!(run(&case).1, d, "not deterministic: {}", why());
    }
    // The generator must reach the cases the properties are about.
    eprintln!("{downs} scale-downs, {zeros} scales to zero, {held} holds on uncertain data");
    assert!(
        downs >= 50 && zeros >= 10 && held >= 100,
        "too few cases of interest: {downs} scale-downs, {zeros} scales to zero, {held} holds"
    );
}

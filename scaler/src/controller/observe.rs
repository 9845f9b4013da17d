//! From what the sources gathered this cycle to one policy's engine
//! [`Observation`](crate::engine::Observation)s.
//!
//! - `resource`: one observation per target pod that has usage (from the agents, or from
//!   Prometheus when no agents are configured). A pod without usage gets none: the engine
//!   applies the HPA's missing-pod rules, so it never scales down on missing data.
//! - `kafkaLag`: one observation with the group's total lag and partition counts; an
//!   incomplete round is marked stale (may scale up, never down or to zero).
//! - `prometheus`: per pod (`targetAverageValue`, series with a `pod` label) or one observation
//!   per series (the engine sums them).
//!
//! A source error becomes an observation with `error` set, naming the source: the metric is
//! then invalid and the engine holds (`ScalingActive=False`) unless another metric scales up.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::api::{KafkaLagMetric, OffsetResetPolicy, ResourceName, ScalingPolicySpec};
use crate::engine::types::{KafkaDetail, Observation};
use crate::sources::kafka::{LagQuery, LagReading, ResetPolicyKey};
use crate::sources::prometheus::PromSample;
use crate::sources::{ContainerUsage, PodKey, PodUsage, SourceError};

/// The series a `resource` metric reads through Prometheus when no agents are configured:
/// the agents' per-container series, one query per resource for every target at once. Only
/// Tidal's names, which nothing else exports: the kubelet's cAdvisor series of the working set
/// would otherwise be read beside the agent's. Agents run with `--compatible-metric-names`
/// are read under cAdvisor's name from their own job only (`or` keeps the first where both).
pub fn resource_query(r: ResourceName) -> &'static str {
    match r {
        ResourceName::Cpu => "tidal_agent_container_cpu_usage_cores{container!=\"\"}",
        ResourceName::Memory => {
            "tidal_agent_container_memory_working_set_bytes{container!=\"\"} or \
             container_memory_working_set_bytes{job=\"tidal-agent\", container!=\"\"}"
        }
    }
}

/// Per-pod usage from the two resource queries' results.
pub fn usage_from_prometheus(
    cpu: Option<&[PromSample]>,
    memory: Option<&[PromSample]>,
) -> HashMap<PodKey, PodUsage> {
    let mut out: HashMap<PodKey, PodUsage> = HashMap::new();
    let mut add = |samples: Option<&[PromSample]>, cpu: bool| {
        for s in samples.unwrap_or_default() {
            let (Some(ns), Some(pod), Some(c)) = (
                s.labels.get("namespace"),
                s.labels.get("pod"),
                s.labels.get("container"),
            ) else {
                continue;
            };
            let u = out.entry((ns.clone(), pod.clone())).or_default();
            u.timestamp_unix_seconds = u.timestamp_unix_seconds.max(s.timestamp_unix_seconds);
            let e: &mut ContainerUsage = u.containers.entry(c.clone()).or_default();
            let v = (s.value.is_finite() && s.value >= 0.0).then_some(s.value);
            if cpu {
                e.cpu_cores = v;
            } else {
                e.memory_working_set_bytes = v;
            }
        }
    };
    add(cpu, true);
    add(memory, false);
    out
}

/// The lag query of a `kafkaLag` metric.
pub fn lag_query(m: &KafkaLagMetric) -> LagQuery {
    LagQuery {
        cluster: m.cluster.clone(),
        group: m.group.clone(),
        topics: m.topics.clone(),
        reset: match m.offset_reset_policy {
            OffsetResetPolicy::Latest => ResetPolicyKey::Latest,
            OffsetResetPolicy::Earliest => ResetPolicyKey::Earliest,
            OffsetResetPolicy::Zero => ResetPolicyKey::Zero,
        },
        persistent_window_seconds: u32::try_from(m.persistent_lag_window_seconds).unwrap_or(30),
    }
}

/// What the sources returned this cycle, shared by every policy.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Per-pod usage, when some due policy has a `resource` metric; `Err` when no source of
    /// usage answered (or none is configured).
    pub usage: Option<Result<HashMap<PodKey, PodUsage>, SourceError>>,
    /// By PromQL.
    pub prometheus: HashMap<String, Result<Vec<PromSample>, SourceError>>,
    pub kafka: HashMap<LagQuery, Result<LagReading, SourceError>>,
}

fn failed(metric: &str, e: impl std::fmt::Display) -> Observation {
    Observation {
        metric: metric.to_string(),
        pod: None,
        value: 0.0,
        timestamp_unix_seconds: None,
        window_seconds: None,
        error: Some(e.to_string()),
        stale: false,
        kafka: None,
        invalid: false,
    }
}

/// The source answered, but its value cannot be used: the metric is invalid
/// (`InvalidMetric`), and `why` names the policy field.
fn invalid(metric: &str, why: String) -> Observation {
    Observation {
        invalid: true,
        ..failed(metric, why)
    }
}

/// The observations of one `prometheus` metric (`spec.metrics[i]`) from its query's samples,
/// or why they cannot be used: a negative value (unless `allowNegative`), or, per pod, two
/// series for one pod (the HPA's metrics API has one value per pod; taking either would
/// decide on a guess).
fn prometheus_observations(
    i: usize,
    m: &crate::api::MetricSpec,
    p: &crate::api::PrometheusMetric,
    namespace: &str,
    pods: &[&Arc<Pod>],
    samples: &[PromSample],
) -> Result<Vec<Observation>, String> {
    let field = format!("spec.metrics[{i}].prometheus");
    let observation = |pod: Option<String>, s: &PromSample| Observation {
        metric: m.name.clone(),
        pod,
        value: s.value,
        timestamp_unix_seconds: Some(s.timestamp_unix_seconds),
        window_seconds: None,
        error: None,
        stale: false,
        kafka: None,
        invalid: false,
    };
    let negative = |s: &PromSample, what: &str| {
        format!(
            "{field}.query returned a negative value ({}){what}: a load cannot be below zero, \
             so nothing scales on it; set {field}.allowNegative: true if the query is meant to \
             go below zero",
            s.value
        )
    };
    if p.target_average_value.is_none() {
        if let Some(s) = samples.iter().find(|s| s.value < 0.0 && !p.allow_negative) {
            return Err(negative(s, ""));
        }
        return Ok(samples.iter().map(|s| observation(None, s)).collect());
    }
    let names: BTreeSet<String> = pods.iter().map(|p| p.name_any()).collect();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for s in samples {
        let Some(pod) = s.labels.get("pod") else {
            continue;
        };
        if !names.contains(pod) || s.labels.get("namespace").is_some_and(|ns| ns != namespace) {
            continue;
        }
        if !seen.insert(pod.as_str()) {
            return Err(format!(
                "{field}.query returned more than one series for pod {pod:?}: with \
                 targetAverageValue it must return one series per pod (aggregate it, for \
                 example `sum by (pod) (...)`)"
            ));
        }
        if s.value < 0.0 && !p.allow_negative {
            return Err(negative(s, &format!(" for pod {pod:?}")));
        }
        out.push(observation(Some(pod.clone()), s));
    }
    Ok(out)
}

/// The observations of every metric of `spec` for the target `pods` in `namespace`.
pub fn observations(
    spec: &ScalingPolicySpec,
    namespace: &str,
    pods: &[&Arc<Pod>],
    g: &Gathered,
    sample_window_seconds: f64,
) -> Vec<Observation> {
    let mut out = Vec::new();
    for (i, m) in spec.metrics.iter().enumerate() {
        if let Some(r) = &m.resource {
            match &g.usage {
                Some(Ok(usage)) => {
                    for p in pods {
                        let name = p.name_any();
                        let Some(u) = usage.get(&(namespace.to_string(), name.clone())) else {
                            continue;
                        };
                        let Some(v) = u.value(r.name.as_str(), r.container.as_deref()) else {
                            continue;
                        };
                        out.push(Observation {
                            metric: m.name.clone(),
                            pod: Some(name),
                            value: v,
                            timestamp_unix_seconds: Some(u.timestamp_unix_seconds),
                            window_seconds: Some(sample_window_seconds),
                            error: None,
                            stale: false,
                            kafka: None,
                            invalid: false,
                        });
                    }
                }
                Some(Err(e)) => out.push(failed(&m.name, e)),
                None => out.push(failed(&m.name, "resource usage was not gathered")),
            }
        } else if let Some(k) = &m.kafka_lag {
            match g.kafka.get(&lag_query(k)) {
                Some(Ok(r)) => out.push(Observation {
                    metric: m.name.clone(),
                    pod: None,
                    value: r.total,
                    timestamp_unix_seconds: Some(r.timestamp_unix_seconds),
                    window_seconds: None,
                    error: None,
                    stale: !r.complete,
                    kafka: Some(KafkaDetail {
                        partitions: Some(r.partitions),
                        partitions_with_lag: Some(r.partitions_with_lag),
                        persistent_lag: r.persistent_lag,
                        consume_rate_per_second: r.consume_rate_per_second,
                        produce_rate_per_second: r.produce_rate_per_second,
                        commit_interval_lag: Some(r.commit_interval_total),
                    }),
                    invalid: false,
                }),
                // A cluster the scaler does not know: the policy's field is what to fix.
                Some(Err(e @ SourceError::KafkaClusterNotConfigured { .. })) => out.push(failed(
                    &m.name,
                    format!("spec.metrics[{i}].kafkaLag.cluster: {e}"),
                )),
                Some(Err(e)) => out.push(failed(&m.name, e)),
                None => out.push(failed(&m.name, "lag was not gathered")),
            }
        } else if let Some(p) = &m.prometheus {
            match g.prometheus.get(&p.query) {
                Some(Ok(samples)) => {
                    match prometheus_observations(i, m, p, namespace, pods, samples) {
                        Ok(obs) => out.extend(obs),
                        Err(why) => out.push(invalid(&m.name, why)),
                    }
                }
                Some(Err(e)) => out.push(failed(&m.name, e)),
                None => out.push(failed(&m.name, "the query did not run")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pod(name: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(
                serde_json::json!({"metadata": {"name": name, "namespace": "ns"}}),
            )
            .expect("pod"),
        )
    }

    fn spec(metrics: serde_json::Value) -> ScalingPolicySpec {
        serde_json::from_value(serde_json::json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"},
            "maxReplicas": 10,
            "metrics": metrics
        }))
        .expect("spec")
    }

    fn sample(labels: &[(&str, &str)], value: f64) -> PromSample {
        PromSample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            value,
            timestamp_unix_seconds: 5.0,
        }
    }

    #[test]
    fn resource_observations_skip_pods_without_usage() {
        let s = spec(
            serde_json::json!([{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 50}}]),
        );
        let cpu = [
            sample(
                &[("namespace", "ns"), ("pod", "a"), ("container", "app")],
                0.4,
            ),
            sample(
                &[("namespace", "ns"), ("pod", "b"), ("container", "app")],
                f64::NAN,
            ),
        ];
        let usage = usage_from_prometheus(Some(&cpu), None);
        let g = Gathered {
            usage: Some(Ok(usage)),
            ..Default::default()
        };
        let pods = [pod("a"), pod("b"), pod("c")];
        let refs: Vec<&Arc<Pod>> = pods.iter().collect();
        let obs = observations(&s, "ns", &refs, &g, 1.0);
        assert_eq!(obs.len(), 1, "{obs:?}");
        assert_eq!(obs[0].pod.as_deref(), Some("a"));
        assert_eq!(obs[0].value, 0.4);
    }

    #[test]
    fn source_errors_become_invalid_metrics_naming_the_source() {
        let s = spec(serde_json::json!([
            {"name": "lag", "kafkaLag": {"cluster": "c", "group": "g", "lagPerReplica": 10}},
            {"name": "rps", "prometheus": {"query": "sum(rate(x[1m]))", "targetPerReplica": "5"}}
        ]));
        let mut g = Gathered::default();
        g.kafka.insert(
            lag_query(s.metrics[0].kafka_lag.as_ref().expect("lag")),
            Err(SourceError::Kafka {
                cluster: "c".into(),
                group: "g".into(),
                detail: "no broker reachable".into(),
            }),
        );
        g.prometheus.insert(
            "sum(rate(x[1m]))".into(),
            Err(SourceError::Unreachable {
                backend: "prometheus",
                url: "http://127.0.0.1:1".into(),
                detail: "connection refused".into(),
            }),
        );
        let obs = observations(&s, "ns", &[], &g, 1.0);
        assert_eq!(obs.len(), 2);
        assert!(
            obs[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("no broker"))
        );
        assert!(
            obs[1]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("127.0.0.1:1"))
        );
    }

    #[test]
    fn an_unconfigured_kafka_cluster_names_the_policy_field() {
        let s = spec(serde_json::json!([
            {"name": "rps", "prometheus": {"query": "vector(1)", "targetValue": "1"}},
            {"name": "lag", "kafkaLag": {"cluster": "10.0.0.9:9092", "group": "g", "lagPerReplica": 10}}
        ]));
        let mut g = Gathered::default();
        g.prometheus.insert("vector(1)".into(), Ok(vec![]));
        g.kafka.insert(
            lag_query(s.metrics[1].kafka_lag.as_ref().expect("lag")),
            Err(SourceError::KafkaClusterNotConfigured {
                cluster: "10.0.0.9:9092".into(),
                configured: vec!["main".into()],
            }),
        );
        let obs = observations(&s, "ns", &[], &g, 1.0);
        let e = obs
            .iter()
            .find(|o| o.metric == "lag")
            .and_then(|o| o.error.clone())
            .expect("an error");
        assert!(
            e.starts_with(
                "spec.metrics[1].kafkaLag.cluster: \"10.0.0.9:9092\" is not a Kafka cluster"
            ) && e.contains("--kafka-allow-raw-addresses"),
            "{e}"
        );
    }

    #[test]
    fn prometheus_per_pod_and_summed_shapes() {
        let s = spec(serde_json::json!([
            {"name": "q", "prometheus": {"query": "per_pod", "targetAverageValue": "5"}},
            {"name": "t", "prometheus": {"query": "total", "targetValue": "5"}}
        ]));
        let mut g = Gathered::default();
        g.prometheus.insert(
            "per_pod".into(),
            Ok(vec![
                sample(&[("namespace", "ns"), ("pod", "a")], 3.0),
                sample(&[("namespace", "other"), ("pod", "a")], 99.0),
                sample(&[("pod", "zzz")], 1.0),
            ]),
        );
        g.prometheus
            .insert("total".into(), Ok(vec![sample(&[], 2.0), sample(&[], 4.0)]));
        let pods = [pod("a")];
        let refs: Vec<&Arc<Pod>> = pods.iter().collect();
        let obs = observations(&s, "ns", &refs, &g, 1.0);
        let per_pod: Vec<_> = obs.iter().filter(|o| o.metric == "q").collect();
        assert_eq!(per_pod.len(), 1);
        assert_eq!(per_pod[0].value, 3.0);
        let total: f64 = obs
            .iter()
            .filter(|o| o.metric == "t")
            .map(|o| o.value)
            .sum();
        assert_eq!(total, 6.0);
    }

    #[test]
    fn negative_values_make_the_metric_invalid_unless_allowed() {
        let s = spec(serde_json::json!([
            {"name": "q", "prometheus": {"query": "per_pod", "targetAverageValue": "5"}},
            {"name": "t", "prometheus": {"query": "total", "targetPerReplica": "5"}},
            {"name": "ok", "prometheus": {"query": "total", "targetPerReplica": "5", "allowNegative": true}}
        ]));
        let mut g = Gathered::default();
        g.prometheus
            .insert("per_pod".into(), Ok(vec![sample(&[("pod", "a")], -2.0)]));
        g.prometheus.insert(
            "total".into(),
            Ok(vec![sample(&[], 4.0), sample(&[], -7.0)]),
        );
        let pods = [pod("a")];
        let refs: Vec<&Arc<Pod>> = pods.iter().collect();
        let obs = observations(&s, "ns", &refs, &g, 1.0);
        let of = |name: &str| obs.iter().filter(|o| o.metric == name).collect::<Vec<_>>();
        let q = of("q");
        assert_eq!(q.len(), 1);
        assert!(q[0].invalid, "{q:?}");
        let msg = q[0].error.as_deref().unwrap_or_default();
        assert!(
            msg.starts_with(
                "spec.metrics[0].prometheus.query returned a negative value (-2) for pod \"a\""
            ),
            "{msg}"
        );
        assert!(
            msg.contains("spec.metrics[0].prometheus.allowNegative: true"),
            "{msg}"
        );
        let t = of("t");
        assert!(t.len() == 1 && t[0].invalid, "{t:?}");
        assert!(t[0].error.as_deref().unwrap_or_default().contains("(-7)"));
        // Opted in: both values are used, as before.
        let ok = of("ok");
        assert_eq!(ok.iter().map(|o| o.value).sum::<f64>(), -3.0);
        assert!(ok.iter().all(|o| !o.invalid && o.error.is_none()));
    }

    #[test]
    fn two_series_for_one_pod_make_the_metric_invalid_naming_the_pod() {
        let s = spec(serde_json::json!([
            {"name": "q", "prometheus": {"query": "per_pod", "targetAverageValue": "5"}}
        ]));
        let mut g = Gathered::default();
        g.prometheus.insert(
            "per_pod".into(),
            Ok(vec![
                sample(&[("pod", "a"), ("instance", "x")], 1.0),
                sample(&[("pod", "b")], 1.0),
                sample(&[("pod", "a"), ("instance", "y")], 9.0),
            ]),
        );
        let pods = [pod("a"), pod("b")];
        let refs: Vec<&Arc<Pod>> = pods.iter().collect();
        let obs = observations(&s, "ns", &refs, &g, 1.0);
        assert_eq!(obs.len(), 1, "{obs:?}");
        assert!(obs[0].invalid);
        let msg = obs[0].error.as_deref().unwrap_or_default();
        assert!(
            msg.starts_with(
                "spec.metrics[0].prometheus.query returned more than one series for pod \"a\""
            ),
            "{msg}"
        );
    }
}

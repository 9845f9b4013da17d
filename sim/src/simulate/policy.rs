//! The policy file: a ScalingPolicy (`tidal.dev/v1alpha1`) as YAML, the same document `kubectl
//! apply` takes. Its `spec` becomes the engine's [`Spec`](engine::Spec) exactly as the
//! controller converts it ([`ScalingPolicySpec::to_engine`]), so the replay runs what the
//! cluster would run.
//!
//! Fields the CRD schema does not know are an error naming the field (the apiserver would
//! drop them silently, which hides typos such as `lagPerReplcia`). Memory metrics are refused:
//! the workload model has no memory.

use serde_json::Value;

use tidal_engine::{self as engine, types::MetricSource};
use tidal_scaler::api::{self, ScalingPolicy, ScalingPolicySpec, SpecError};
use tidal_scaler::controller::offline::{OfflineError, OfflinePolicy};

/// Tidal's fast path interval (`--fast-interval-seconds`): the policy compiles with it, and
/// Tidal's replays tick at it (`run` takes it from here, so `policy` does not import `run`).
pub const TIDAL_FAST_SECONDS: u64 = 1;

/// A policy file that cannot be replayed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// Not YAML, or not shaped like a ScalingPolicy (the message has the line and column).
    #[error("{0}")]
    Yaml(String),
    /// `apiVersion` or `kind` is not a ScalingPolicy's.
    #[error("{field}: {found:?} is not {expected:?}")]
    NotAScalingPolicy {
        field: &'static str,
        found: String,
        expected: &'static str,
    },
    /// A field the ScalingPolicy schema does not have.
    #[error("{field}: unknown field")]
    UnknownField { field: String },
    /// The spec breaks a rule of the CRD (the message starts with the field).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A metric the workload model cannot feed.
    #[error("{field}: {reason}")]
    Unsupported { field: String, reason: &'static str },
    /// A `tidal.dev/...` annotation the controller rejects (the message names it).
    #[error("{0}")]
    Annotation(String),
}

impl PolicyError {
    /// A fixed label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Yaml(_) => "yaml",
            Self::NotAScalingPolicy { .. } => "not_a_scaling_policy",
            Self::UnknownField { .. } => "unknown_field",
            Self::Spec(e) => e.label(),
            Self::Unsupported { .. } => "unsupported",
            Self::Annotation(_) => "invalid_annotation",
        }
    }
}

/// A policy ready to replay.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `metadata.name` (empty when unset).
    pub name: String,
    /// The CRD spec as written.
    pub crd: ScalingPolicySpec,
    /// The engine spec (controller defaults).
    pub spec: engine::Spec,
    /// The object as read, compiled and gated by the controller's own code: Tidal's replay
    /// runs a clone of it ([`OfflinePolicy`]), annotations (dry run, pauses) included.
    pub rounds: OfflinePolicy,
}

impl Policy {
    /// Index and settings of the first `kafkaLag` metric.
    pub fn kafka_lag(&self) -> Option<(usize, engine::types::KafkaLag)> {
        self.spec
            .metrics
            .iter()
            .enumerate()
            .find(|(_, m)| m.source == MetricSource::KafkaLag)
            .map(|(i, m)| (i, m.kafka_lag.clone().unwrap_or_default()))
    }

    /// The CPU metric (`resource` named `cpu`), if any.
    pub fn cpu(&self) -> Option<&engine::types::MetricSpec> {
        self.spec.metrics.iter().find(|m| {
            matches!(
                m.source,
                MetricSource::Resource | MetricSource::ContainerResource
            ) && m.name == "cpu"
        })
    }
}

/// Parses and checks a ScalingPolicy YAML document.
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    let value: Value =
        serde_norway::from_str(text).map_err(|e| PolicyError::Yaml(e.to_string()))?;
    for (field, expected) in [
        ("apiVersion", "tidal.dev/v1alpha1"),
        ("kind", "ScalingPolicy"),
    ] {
        let found = value.get(field).and_then(Value::as_str).unwrap_or_default();
        if found != expected {
            return Err(PolicyError::NotAScalingPolicy {
                field,
                found: found.to_owned(),
                expected,
            });
        }
    }
    let crd = serde_json::to_value(api::crd()).map_err(|e| PolicyError::Yaml(e.to_string()))?;
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    if let Some(spec) = value.get("spec") {
        let mut unknown = Vec::new();
        unknown_fields(schema, spec, "spec", &mut unknown);
        if let Some(field) = unknown.into_iter().next() {
            return Err(PolicyError::UnknownField { field });
        }
    }
    let policy: ScalingPolicy =
        serde_norway::from_str(text).map_err(|e| PolicyError::Yaml(e.to_string()))?;
    // The controller's own compilation (spec, formula) and gate, once: what Tidal's replay
    // runs, each replay from a clone of it.
    let rounds = OfflinePolicy::new(
        policy.clone(),
        &engine::types::ControllerSettings::default(),
        TIDAL_FAST_SECONDS as f64,
    )
    .map_err(|e| match e {
        OfflineError::Spec(e) => PolicyError::Spec(e),
        OfflineError::Annotation(m) => PolicyError::Annotation(m),
    })?;
    for (i, m) in policy.spec.metrics.iter().enumerate() {
        if let Some(r) = &m.resource
            && r.name == api::ResourceName::Memory
        {
            return Err(PolicyError::Unsupported {
                field: format!("spec.metrics[{i}].resource.name"),
                reason: "memory is not modelled by simulate (CPU, kafkaLag and prometheus are)",
            });
        }
    }
    Ok(Policy {
        name: policy.metadata.name.clone().unwrap_or_default(),
        crd: policy.spec.clone(),
        spec: rounds.spec().clone(),
        rounds,
    })
}

/// Paths in `value` that `schema` (an OpenAPI v3 structural schema) has no property for.
fn unknown_fields(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                // A free-form object (additionalProperties) or a quantity: anything goes.
                return;
            };
            for (k, v) in map {
                match props.get(k) {
                    Some(s) => unknown_fields(s, v, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    unknown_fields(s, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "\
apiVersion: tidal.dev/v1alpha1
kind: ScalingPolicy
metadata:
  name: worker
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: worker}
  minReplicas: 2
  maxReplicas: 20
  metrics:
    - name: cpu
      resource: {name: cpu, targetUtilization: 70}
    - name: lag
      kafkaLag: {cluster: main, group: g, lagPerReplica: 250}
";

    #[test]
    fn parses_a_scaling_policy() {
        let p = parse(POLICY).expect("valid");
        assert_eq!(p.name, "worker");
        assert_eq!(p.spec.min_replicas, 2);
        let (i, lag) = p.kafka_lag().expect("a lag metric");
        assert_eq!((i, lag.lag_per_replica), (1, 250.0));
        assert_eq!(p.cpu().and_then(|m| m.target.average_utilization), Some(70));
        assert!(p.rounds.formula().is_none());
    }

    #[test]
    fn the_shipped_policy_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../traces/policy.yaml");
        let text = std::fs::read_to_string(path).expect("traces/policy.yaml is readable");
        let p = parse(&text).unwrap_or_else(|e| panic!("traces/policy.yaml: {e}"));
        assert!(
            p.cpu().is_some() && p.kafka_lag().is_some(),
            "CPU and kafkaLag both matter"
        );
        assert!(p.spec.behavior.is_some());
    }

    #[test]
    fn errors_name_the_field_or_the_line() {
        let typo = POLICY.replace("lagPerReplica", "lagPerReplcia");
        let e = parse(&typo).expect_err("unknown field");
        assert_eq!(
            e.to_string(),
            "spec.metrics[1].kafkaLag.lagPerReplcia: unknown field"
        );
        let e = parse(&POLICY.replace("maxReplicas: 20", "maxReplicas: 1")).expect_err("min>max");
        assert!(e.to_string().starts_with("spec.minReplicas"), "{e}");
        let e =
            parse(&POLICY.replace("kind: ScalingPolicy", "kind: Deployment")).expect_err("kind");
        assert_eq!(
            e.to_string(),
            "kind: \"Deployment\" is not \"ScalingPolicy\""
        );
        let e = parse(&POLICY.replace("maxReplicas: 20", "maxReplicas: many")).expect_err("type");
        assert!(matches!(e, PolicyError::Yaml(_)), "{e:?}");
        assert!(e.to_string().contains("line"), "{e}");
        let e = parse("spec: [unclosed").expect_err("syntax");
        assert!(e.to_string().contains("line"), "{e}");
        let memory = POLICY
            .replace(
                "{name: cpu, targetUtilization: 70}",
                "{name: memory, targetUtilization: 70}",
            )
            .replace("- name: cpu", "- name: memory");
        let paused = POLICY.replace(
            "  name: worker\n",
            "  name: worker\n  annotations: {tidal.dev/paused: \"yes\"}\n",
        );
        let e = parse(&paused).expect_err("annotation");
        assert_eq!(e.kind(), "invalid_annotation");
        assert!(e.to_string().contains("tidal.dev/paused"), "{e}");
        let e = parse(&memory).expect_err("memory");
        assert_eq!(e.kind(), "unsupported");
        assert!(
            e.to_string().starts_with("spec.metrics[0].resource.name"),
            "{e}"
        );
    }
}

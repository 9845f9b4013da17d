//! The committed CRD is what `tidal-scaler crdgen` prints, and the sample policy (also the
//! example in docs/crd.md) is valid: every field is in the schema, and it converts to an
//! engine spec, and it passes every CEL rule of the schema (evaluated with cel-rust; the
//! apiserver is the final judge).

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use tidal_scaler::api::{self, ScalingPolicy};

const REGENERATE: &str =
    "cargo run -q -p tidal-scaler -- crdgen > manifests/crd/scalingpolicy.yaml";

fn repo_file(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

#[test]
fn committed_crd_is_up_to_date() {
    let out = Command::new(env!("CARGO_BIN_EXE_tidal-scaler"))
        .arg("crdgen")
        .output()
        .expect("tidal-scaler runs");
    assert!(
        out.status.success(),
        "crdgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("UTF-8");
    let committed = repo_file(api::CRD_PATH);
    if generated != committed {
        let line = generated
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the end".to_owned(), |i| format!("line {}", i + 1));
        panic!(
            "{} is stale (first difference at {line}): the CRD types in scaler/src/api changed. \
             Regenerate it from the repository root with:\n\n    {REGENERATE}\n",
            api::CRD_PATH
        );
    }
    // And it is the two CRDs themselves, readable as YAML.
    let parsed: Vec<Value> = serde_norway::Deserializer::from_str(&committed)
        .map(|d| Value::deserialize(d).expect("the CRD file is YAML"))
        .collect();
    assert_eq!(
        parsed,
        [
            serde_json::to_value(api::crd()).expect("CRD as JSON"),
            serde_json::to_value(api::checkpoint_crd()).expect("CRD as JSON"),
        ]
    );
}

/// Fields of `value` that `schema` does not declare (the apiserver would prune them silently).
fn unknown_fields(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in map {
                match props.and_then(|p| p.get(k)) {
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

fn sample() -> String {
    repo_file("manifests/samples/scalingpolicy.yaml")
}

#[test]
fn sample_policy_is_valid() {
    let text = sample();
    let value: Value = serde_norway::from_str(&text).expect("the sample is YAML");
    let crd = serde_json::to_value(api::crd()).expect("CRD as JSON");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut unknown = Vec::new();
    unknown_fields(
        &schema["properties"]["spec"],
        &value["spec"],
        "spec",
        &mut unknown,
    );
    assert!(unknown.is_empty(), "not in the schema: {unknown:?}");

    let policy: ScalingPolicy = serde_norway::from_str(&text).expect("a ScalingPolicy");
    assert_eq!(value["apiVersion"], "tidal.dev/v1alpha1");
    assert_eq!(value["kind"], "ScalingPolicy");
    let spec = tidal_scaler::engine::Spec::try_from(&policy.spec)
        .unwrap_or_else(|e| panic!("the sample converts: {e}"));
    assert_eq!(spec.metrics.len(), policy.spec.metrics.len());
    assert_eq!(spec.min_replicas, 0);
}

#[test]
fn docs_show_the_sample() {
    let doc = repo_file("docs/crd.md");
    assert!(
        doc.contains(&sample()),
        "docs/crd.md must contain manifests/samples/scalingpolicy.yaml verbatim"
    );
}

/// JSON as the apiserver hands it to CEL: integers are `int`, objects are maps.
fn cel_value(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::from(a.iter().map(cel_value).collect::<Vec<_>>()),
        Value::Object(o) => cel::Value::from(
            o.iter()
                .map(|(k, v)| (k.clone(), cel_value(v)))
                .collect::<HashMap<String, cel::Value>>(),
        ),
    }
}

/// Evaluate every `x-kubernetes-validations` rule of `schema` on the matching part of
/// `value`; returns the messages of the rules that do not hold.
fn broken_rules(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if value.is_null() {
        return;
    }
    for rule in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let src = rule["rule"].as_str().unwrap_or_default();
        let program = cel::Program::compile(src).unwrap_or_else(|e| panic!("{src}: {e:?}"));
        let mut ctx = cel::Context::default();
        ctx.add_variable_from_value("self", cel_value(value));
        match program.execute(&ctx) {
            Ok(cel::Value::Bool(true)) => {}
            other => out.push(format!("{path}: {} ({other:?})", rule["message"])),
        }
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if let Some(s) = schema.get("properties").and_then(|p| p.get(k)) {
                    broken_rules(s, v, &format!("{path}.{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    broken_rules(s, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[test]
fn sample_policy_passes_the_cel_rules() {
    let crd = serde_json::to_value(api::crd()).expect("CRD as JSON");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let value: Value = serde_norway::from_str(&sample()).expect("the sample is YAML");
    let mut broken = Vec::new();
    broken_rules(schema, &value["spec"], "spec", &mut broken);
    assert!(broken.is_empty(), "{broken:#?}");

    // And the rules do catch a broken copy of it.
    let mut bad = value["spec"].clone();
    bad["minReplicas"] = serde_json::json!(40);
    bad["metrics"][1]["prometheus"] = serde_json::json!({"query": "up", "targetValue": 1});
    bad["metrics"][2]["prometheus"]["targetPerReplica"] = serde_json::json!("1");
    broken_rules(schema, &bad, "spec", &mut broken);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].starts_with("spec: \"minReplicas must be less than or equal"));
    assert!(broken[1].starts_with("spec.metrics[1]: \"exactly one of resource, kafkaLag"));
    assert!(broken[2].starts_with("spec.metrics[2].prometheus: \"exactly one of targetValue"));
}

/// The sample as kube-apiserver v1.35.4 returned it after `kubectl apply` and a status patch
/// (defaults filled in, integer quantities, `managedFields` left out): it reads back into the
/// Rust types and converts.
const STORED: &str = r#"{
  "apiVersion": "tidal.dev/v1alpha1",
  "kind": "ScalingPolicy",
  "metadata": {
    "creationTimestamp": "2026-11-23T19:00:05Z",
    "generation": 1,
    "name": "orders-worker",
    "namespace": "shop",
    "resourceVersion": "196",
    "uid": "444e06b4-4136-4da4-8c1c-105fcc041b31"
  },
  "spec": {
    "behavior": {
      "scaleDown": {
        "policies": [
          {
            "periodSeconds": 60,
            "type": "Percent",
            "value": 20
          }
        ],
        "selectPolicy": "Max",
        "stabilizationWindowSeconds": 300,
        "tolerance": 0.05
      },
      "scaleUp": {
        "policies": [
          {
            "periodSeconds": 60,
            "type": "Pods",
            "value": 4
          },
          {
            "periodSeconds": 60,
            "type": "Percent",
            "value": 100
          }
        ],
        "selectPolicy": "Max",
        "stabilizationWindowSeconds": 0
      }
    },
    "dryRun": false,
    "formula": "max(cpu.ratio, lag.ratio) * replicas",
    "maxReplicas": 30,
    "metrics": [
      {
        "name": "cpu",
        "resource": {
          "name": "cpu",
          "targetUtilization": 60
        }
      },
      {
        "kafkaLag": {
          "activationLagThreshold": 10,
          "allowIdleConsumers": false,
          "cluster": "main",
          "cooldownSeconds": 300,
          "persistentLagWindowSeconds": 30,
          "excludePersistentLag": false,
          "group": "orders-worker",
          "lagPerReplica": 100,
          "limitToPartitionsWithLag": false,
          "offsetResetPolicy": "latest",
          "topics": [
            "orders",
            "orders-retry"
          ]
        },
        "name": "lag"
      },
      {
        "name": "p99",
        "prometheus": {
          "query": "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job=\"orders-worker\"}[2m])))",
          "targetValue": "250m"
        }
      }
    ],
    "minReplicas": 0,
    "targetRef": {
      "apiVersion": "apps/v1",
      "kind": "Deployment",
      "name": "orders-worker"
    },
    "vertical": {
      "containerPolicies": [
        {
          "containerName": "app",
          "controlledResources": [
            "cpu",
            "memory"
          ],
          "maxAllowed": {
            "cpu": 2,
            "memory": "2Gi"
          },
          "minAllowed": {
            "cpu": "100m",
            "memory": "128Mi"
          }
        }
      ],
      "estimator": "histogram",
      "mode": "Recommend"
    }
  },
  "status": {
    "conditions": [
      {
        "lastTransitionTime": "2026-11-23T19:00:00Z",
        "message": "ok",
        "reason": "ReadyForNewScale",
        "status": "True",
        "type": "AbleToScale"
      },
      {
        "message": "m",
        "reason": "ScaleUpLimit",
        "status": "True",
        "type": "ScalingLimited"
      }
    ],
    "currentMetrics": [
      {
        "name": "cpu",
        "proposedReplicas": 5,
        "target": 60,
        "value": 84
      },
      {
        "name": "lag",
        "target": "100",
        "value": "243334m"
      }
    ],
    "currentReplicas": 3,
    "desiredReplicas": 7,
    "lastDecision": {
      "dominantMetric": "lag",
      "reasons": [
        "lag proposed 8",
        "rate: 8 -> 7 (ScaleUpLimit)"
      ]
    },
    "lastScaleTime": "2026-11-23T19:00:00Z",
    "observedGeneration": 1,
    "recommendations": [
      {
        "containerName": "app",
        "target": {
          "cpu": "250m",
          "memory": "300Mi"
        }
      }
    ]
  }
}"#;

#[test]
fn object_as_the_apiserver_returns_it_reads_back() {
    let policy: ScalingPolicy = serde_json::from_str(STORED).expect("a stored ScalingPolicy");
    let status = policy.status.as_ref().expect("status");
    assert_eq!(status.desired_replicas, Some(7));
    assert_eq!(
        status
            .last_decision
            .as_ref()
            .and_then(|d| d.dominant_metric.as_deref()),
        Some("lag")
    );
    let k = policy.spec.metrics[1].kafka_lag.as_ref().expect("kafkaLag");
    assert_eq!(k.cooldown_seconds, 300);
    tidal_scaler::engine::Spec::try_from(&policy.spec).expect("converts");
    // Writing it back gives the same object (nothing is lost or added on the way), except
    // that integer quantities are written as strings, as Kubernetes' own types do.
    let back = serde_json::to_value(&policy).expect("serializes");
    let mut original: Value = serde_json::from_str(STORED).expect("JSON");
    original["spec"]["vertical"]["containerPolicies"][0]["maxAllowed"]["cpu"] = "2".into();
    original["status"]["currentMetrics"][0]["value"] = "84".into();
    original["status"]["currentMetrics"][0]["target"] = "60".into();
    assert_eq!(back, original);
}

//! `autoscaling/v2` HorizontalPodAutoscaler -> ScalingPolicy.
//!
//! | HPA | ScalingPolicy |
//! |---|---|
//! | `scaleTargetRef` | `targetRef` |
//! | `minReplicas` (default 1), `maxReplicas` | the same |
//! | no `metrics` | `cpu` at 80% utilization, the HPA's default |
//! | `Resource` / `ContainerResource`, `Utilization` or `AverageValue` | `resource` (with `container`) |
//! | `Pods`, `AverageValue` | `prometheus` with `targetAverageValue` (review: the query) |
//! | `Object`, `Value` / `AverageValue` | `prometheus` with `targetValue` / `targetPerReplica` (review) |
//! | `External`, `Value` / `AverageValue` | `prometheus` with `targetValue` / `targetPerReplica` (review) |
//! | `behavior` | `behavior`, field for field |
//!
//! `Pods`, `Object` and `External` metrics come from a metrics adapter whose naming `import`
//! cannot see; the query written is prometheus-adapter's default (the series of the metric's
//! name, selected by namespace, by the selector's labels and, for `Object`, by the object's
//! kind and name), and a note asks to check it.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use super::source::{Field, Refusal};
use super::{Imported, Note, NoteKind, behavior, metric_name, policy_like};
use crate::api::{
    MetricSpec, PrometheusMetric, ResourceMetric, ResourceName, ScalingPolicySpec, TargetRef,
};

/// The HPA's fields `import` reads; any other `spec` field gets a note.
const KNOWN: &[&str] = &[
    "scaleTargetRef",
    "minReplicas",
    "maxReplicas",
    "metrics",
    "behavior",
];

pub(super) fn import(doc: &Value) -> Result<Imported, Refusal> {
    let root = Field::root(doc);
    let spec = root.get("spec");
    let ns = doc["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let mut notes = Vec::new();
    let target = spec.get("scaleTargetRef");
    let target_ref = TargetRef {
        api_version: target
            .get("apiVersion")
            .text()
            .unwrap_or_else(|| "apps/v1".into()),
        kind: target.get("kind").required_text()?,
        name: target.get("name").required_text()?,
    };
    let min_replicas = spec.get("minReplicas").int32()?.unwrap_or(1);
    let max_replicas = spec
        .get("maxReplicas")
        .int32()?
        .ok_or_else(|| spec.get("maxReplicas").refuse("is required"))?;
    let mut taken = Vec::new();
    let mut metrics = Vec::new();
    for m in spec.get("metrics").items() {
        if let Some(metric) = metric(&m, ns, &mut taken, &mut notes)? {
            metrics.push(metric);
        }
    }
    if spec.get("metrics").items().is_empty() {
        metrics.push(resource(ResourceName::Cpu, None, Some(80), None));
    } else if metrics.is_empty() {
        return Err(spec.get("metrics").refuse("no metric has an equivalent"));
    }
    let behavior = behavior(&spec.get("behavior"))?;
    for key in spec.keys() {
        if !KNOWN.contains(&key) {
            notes.push(Note {
                field: spec.get(key).path,
                kind: NoteKind::NoEquivalent,
                message: "not read by import".into(),
            });
        }
    }
    let policy = policy_like(
        doc,
        ScalingPolicySpec {
            target_ref,
            min_replicas,
            max_replicas,
            metrics,
            formula: None,
            behavior,
            vertical: None,
            dry_run: false,
        },
        &format!("HorizontalPodAutoscaler/{name}"),
    );
    Ok(Imported {
        source: format!("HorizontalPodAutoscaler {ns}/{name}"),
        policy,
        notes,
    })
}

pub(super) fn resource(
    name: ResourceName,
    container: Option<String>,
    utilization: Option<i32>,
    average: Option<Quantity>,
) -> MetricSpec {
    MetricSpec {
        name: name.as_str().to_string(),
        resource: Some(ResourceMetric {
            name,
            container,
            target_utilization: utilization,
            target_average_value: average,
        }),
        kafka_lag: None,
        prometheus: None,
    }
}

fn resource_name(f: &Field) -> Result<ResourceName, Refusal> {
    match f.required_text()?.as_str() {
        "cpu" => Ok(ResourceName::Cpu),
        "memory" => Ok(ResourceName::Memory),
        other => Err(f.refuse(format!("{other:?}: only cpu and memory have an equivalent"))),
    }
}

/// One `spec.metrics[i]`; `None` (with a note) when it has no equivalent.
fn metric(
    m: &Field,
    ns: &str,
    taken: &mut Vec<String>,
    notes: &mut Vec<Note>,
) -> Result<Option<MetricSpec>, Refusal> {
    let kind = m.get("type").required_text()?;
    let quantity = |f: Field| f.required_text().map(Quantity);
    match kind.as_str() {
        "Resource" | "ContainerResource" => {
            let body = m.get(if kind == "Resource" {
                "resource"
            } else {
                "containerResource"
            });
            let name = resource_name(&body.get("name"))?;
            let container = (kind == "ContainerResource")
                .then(|| body.get("container").required_text())
                .transpose()?;
            let target = body.get("target");
            let spec = match target.get("type").required_text()?.as_str() {
                "Utilization" => resource(
                    name,
                    container,
                    target.get("averageUtilization").int32()?,
                    None,
                ),
                "AverageValue" => resource(
                    name,
                    container,
                    None,
                    Some(quantity(target.get("averageValue"))?),
                ),
                other => {
                    notes.push(Note {
                        field: target.get("type").path,
                        kind: NoteKind::NoEquivalent,
                        message: format!(
                            "{other:?} for a resource metric (the HPA refuses it too); metric left out"
                        ),
                    });
                    return Ok(None);
                }
            };
            if spec
                .resource
                .as_ref()
                .is_some_and(|r| r.target_utilization.is_none() && r.target_average_value.is_none())
            {
                return Err(target.get("averageUtilization").refuse("is required"));
            }
            if taken.contains(&spec.name) {
                // A policy's resource metric is named after its resource, once.
                return Err(body.get("name").refuse(format!(
                    "a second {} metric: a ScalingPolicy has one per resource",
                    spec.name
                )));
            }
            taken.push(spec.name.clone());
            Ok(Some(spec))
        }
        "Pods" | "Object" | "External" => {
            let body = m.get(match kind.as_str() {
                "Pods" => "pods",
                "Object" => "object",
                _ => "external",
            });
            let metric = body.get("metric");
            let metric_name_text = metric.get("name").required_text()?;
            let mut labels: Vec<String> = Vec::new();
            if kind != "External" && !ns.is_empty() {
                labels.push(format!("namespace=\"{ns}\""));
            }
            if kind == "Object" {
                let described = body.get("describedObject");
                let k = described.get("kind").required_text()?.to_ascii_lowercase();
                let n = described.get("name").required_text()?;
                labels.push(format!("{k}=\"{n}\""));
            }
            let selector = metric.get("selector");
            if let Some(match_labels) = selector.value["matchLabels"].as_object() {
                for (k, v) in match_labels {
                    labels.push(format!(
                        "{}=\"{}\"",
                        label_name(k),
                        v.as_str().unwrap_or_default()
                    ));
                }
            }
            if selector.get("matchExpressions").is_set() {
                notes.push(Note {
                    field: selector.get("matchExpressions").path,
                    kind: NoteKind::NoEquivalent,
                    message: "not carried into the query: add the matchers by hand".into(),
                });
            }
            // A custom metric's name may hold `-`; a Prometheus series name may not.
            let series = label_name(&metric_name_text);
            let query = if labels.is_empty() {
                series
            } else {
                format!("{series}{{{}}}", labels.join(","))
            };
            // One series per pod for Pods (prometheus-adapter sums by pod too); one total
            // otherwise.
            let query = if kind == "Pods" {
                format!("sum by (pod) ({query})")
            } else {
                format!("sum({query})")
            };
            let target = body.get("target");
            let target_type = target.get("type").required_text()?;
            let mut p = PrometheusMetric {
                query: query.clone(),
                target_value: None,
                target_average_value: None,
                target_per_replica: None,
                allow_negative: false,
            };
            match (kind.as_str(), target_type.as_str()) {
                ("Pods", "AverageValue") => {
                    p.target_average_value = Some(quantity(target.get("averageValue"))?)
                }
                (_, "Value") if kind != "Pods" => {
                    p.target_value = Some(quantity(target.get("value"))?)
                }
                (_, "AverageValue") => {
                    p.target_per_replica = Some(quantity(target.get("averageValue"))?)
                }
                (_, other) => {
                    notes.push(Note {
                        field: target.get("type").path,
                        kind: NoteKind::NoEquivalent,
                        message: format!("{other:?} for a {kind} metric; metric left out"),
                    });
                    return Ok(None);
                }
            }
            notes.push(Note {
                field: metric.get("name").path,
                kind: NoteKind::Review,
                message: format!(
                    "a {kind} metric served by a metrics adapter; the query {query:?} assumes \
                     prometheus-adapter's default naming: check it against your adapter's rules"
                ),
            });
            Ok(Some(MetricSpec {
                name: metric_name(&metric_name_text, taken),
                resource: None,
                kafka_lag: None,
                prometheus: Some(p),
            }))
        }
        other => Err(m
            .get("type")
            .refuse(format!("{other:?} is not an autoscaling/v2 metric type"))),
    }
}

/// A Kubernetes label key as a Prometheus label name (`app.kubernetes.io/name` ->
/// `app_kubernetes_io_name`, as kube-state-metrics and prometheus-adapter write them).
fn label_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

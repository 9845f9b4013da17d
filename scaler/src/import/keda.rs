//! `keda.sh/v1alpha1` ScaledObject -> ScalingPolicy (KEDA v2 field names and defaults, from
//! KEDA's ScaledObject and scaler documentation: keda.sh/docs/2.x/reference/scaledobject-spec,
//! keda.sh/docs/2.x/scalers/apache-kafka, .../cpu, .../memory, .../prometheus).
//!
//! | ScaledObject | ScalingPolicy |
//! |---|---|
//! | `scaleTargetRef` (kind Deployment, apps/v1 by default) | `targetRef` |
//! | `minReplicaCount` (0), `maxReplicaCount` (100) | `minReplicas`, `maxReplicas` |
//! | `cooldownPeriod` (300) | `kafkaLag.cooldownSeconds` |
//! | `advanced.horizontalPodAutoscalerConfig.behavior` | `behavior` |
//! | annotations `autoscaling.keda.sh/paused`, `paused-replicas` | `tidal.dev/paused`, `tidal.dev/paused-replicas` |
//! | trigger `kafka` | `kafkaLag` (`lagThreshold` -> `lagPerReplica`, the KEDA options by name) |
//! | trigger `cpu` / `memory` (`metricType`, `value`, `containerName`) | `resource` |
//! | trigger `prometheus` (`query`, `threshold`, `metricType`) | `prometheus` (`targetPerReplica`, or `targetValue` for `Value`) |
//!
//! `pollingInterval`, `fallback`, `idleReplicaCount`, `restoreToOriginalReplicaCount`,
//! `scalingModifiers` and the other triggers get a note saying what Tidal does instead.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use super::hpa::resource;
use super::source::{Field, Refusal};
use super::{ImportOptions, Imported, Note, NoteKind, behavior, metric_name, note, policy_like};
use crate::api::{
    KafkaLagMetric, LagSampling, MetricSpec, OffsetResetPolicy, PrometheusMetric, ResourceName,
    ScalingPolicySpec, TargetRef,
};
use crate::engine::limits::PERSISTENT_LAG_WINDOW_SECONDS;

/// KEDA's defaults.
const DEFAULT_MIN: i32 = 0;
const DEFAULT_MAX: i32 = 100;
const DEFAULT_COOLDOWN: i32 = 300;
const DEFAULT_LAG_THRESHOLD: i64 = 10;
const DEFAULT_POLLING: i32 = 30;

/// The Kafka cluster name written when `--kafka-cluster` is not given.
const DEFAULT_CLUSTER: &str = "kafka";

/// The fields `import` reads (or notes by name); any other gets a "not read" note, so
/// `--strict` never passes a lossy conversion.
const SPEC_KEYS: &[&str] = &[
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "fallback",
    "advanced",
    "triggers",
];
const ADVANCED_KEYS: &[&str] = &[
    "restoreToOriginalReplicaCount",
    "horizontalPodAutoscalerConfig",
    "scalingModifiers",
];
const HPA_CONFIG_KEYS: &[&str] = &["name", "behavior"];
const TRIGGER_KEYS: &[&str] = &[
    "type",
    "name",
    "metadata",
    "metricType",
    "authenticationRef",
];
const KAFKA_KEYS: &[&str] = &[
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "limitToPartitionsWithLag",
    "excludePersistentLag",
    "scaleToZeroOnInvalidOffset",
    "partitionLimitation",
    "sasl",
    "tls",
    "version",
];
const RESOURCE_KEYS: &[&str] = &["value", "type", "containerName"];
const PROMETHEUS_KEYS: &[&str] = &[
    "serverAddress",
    "query",
    "threshold",
    "activationThreshold",
    "ignoreNullValues",
    "customHeaders",
    "unsafeSsl",
    "namespace",
    "metricName",
];

/// A note for every key of `f` that `known` does not list.
fn unread(notes: &mut Vec<Note>, f: &Field, known: &[&str]) {
    for key in f.keys() {
        if !known.contains(&key) {
            note(
                notes,
                &f.get(key),
                NoteKind::NoEquivalent,
                "not read by import".into(),
            );
        }
    }
}

/// KEDA reads its pause annotations with Go's `strconv.ParseBool`; Tidal's gate takes `true`
/// or `false`.
fn keda_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub(super) fn import(doc: &Value, options: &ImportOptions) -> Result<Imported, Refusal> {
    let root = Field::root(doc);
    let spec = root.get("spec");
    let ns = doc["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let mut notes = Vec::new();
    let mut no_equivalent =
        |f: &Field, message: &str| note(&mut notes, f, NoteKind::NoEquivalent, message.into());

    let target = spec.get("scaleTargetRef");
    let target_ref = TargetRef {
        api_version: target
            .get("apiVersion")
            .text()
            .unwrap_or_else(|| "apps/v1".into()),
        kind: target
            .get("kind")
            .text()
            .unwrap_or_else(|| "Deployment".into()),
        name: target.get("name").required_text()?,
    };
    no_equivalent(
        &target.get("envSourceContainerName"),
        "Tidal reads no settings from the target's environment",
    );
    let polling = spec.get("pollingInterval").int32()?;
    no_equivalent(
        &spec.get("pollingInterval"),
        "Tidal reads lag and resources every cycle (1 s) and Prometheus every \
         --prometheus-interval-seconds",
    );
    let cooldown = spec
        .get("cooldownPeriod")
        .int32()?
        .unwrap_or(DEFAULT_COOLDOWN);
    no_equivalent(
        &spec.get("idleReplicaCount"),
        "Tidal scales between minReplicas and maxReplicas only",
    );
    let fallback = spec.get("fallback");
    no_equivalent(
        &fallback,
        "Tidal never scales on missing data: it holds the current count and says why in the \
         status, instead of moving to fallback.replicas",
    );
    let advanced = spec.get("advanced");
    no_equivalent(
        &advanced.get("restoreToOriginalReplicaCount"),
        "deleting a policy leaves the replica count where it is",
    );
    no_equivalent(
        &advanced.get("scalingModifiers"),
        "write the composition as spec.formula over the metrics' values (docs/crd.md)",
    );
    let hpa_config = advanced.get("horizontalPodAutoscalerConfig");
    no_equivalent(
        &hpa_config.get("name"),
        "Tidal makes no HPA, so there is none to name",
    );
    let behavior = behavior(&hpa_config.get("behavior"))?;
    for (f, known) in [
        (&spec, SPEC_KEYS),
        (&advanced, ADVANCED_KEYS),
        (&hpa_config, HPA_CONFIG_KEYS),
    ] {
        unread(&mut notes, f, known);
    }

    let mut taken = Vec::new();
    let mut metrics = Vec::new();
    for t in spec.get("triggers").items() {
        if let Some(m) = trigger(&t, options, cooldown, polling, &mut taken, &mut notes)? {
            metrics.push(m);
        }
    }
    if metrics.is_empty() {
        return Err(spec
            .get("triggers")
            .refuse("no trigger has an equivalent (kafka, cpu, memory, prometheus)"));
    }
    let mut min_replicas = spec.get("minReplicaCount").int32()?.unwrap_or(DEFAULT_MIN);
    if metrics.iter().any(|m| m.prometheus.is_some()) && min_replicas == 0 {
        notes.push(Note {
            field: spec.get("cooldownPeriod").path,
            kind: NoteKind::NoEquivalent,
            message: format!(
                "{cooldown} s before scaling to zero: Tidal's cooldown is kafkaLag's only; a \
                 prometheus metric goes to zero under behavior.scaleDown (its stabilization \
                 window) alone"
            ),
        });
    }
    let max_replicas = spec.get("maxReplicaCount").int32()?.unwrap_or(DEFAULT_MAX);
    let wakes = metrics
        .iter()
        .any(|m| m.kafka_lag.is_some() || m.prometheus.is_some());
    if min_replicas == 0 && !wakes {
        notes.push(Note {
            field: spec.get("minReplicaCount").path,
            kind: NoteKind::NoEquivalent,
            message: "0 with only cpu or memory triggers (KEDA refuses it too): minReplicas 1"
                .into(),
        });
        min_replicas = 1;
    }

    let mut policy = policy_like(
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
        &format!("ScaledObject/{name}"),
    );
    let annotations = root.get("metadata").get("annotations");
    let mut carried = BTreeMap::new();
    let paused = annotations.get("autoscaling.keda.sh/paused");
    if let Some(v) = paused.value.as_str() {
        let on = keda_bool(v.trim()).unwrap_or_else(|| {
            note(
                &mut notes,
                &paused,
                NoteKind::Review,
                format!("{v:?} is not a boolean, which KEDA reads as paused: written as true"),
            );
            true
        });
        carried.insert("tidal.dev/paused".to_string(), on.to_string());
    }
    if let Some(v) = annotations.value["autoscaling.keda.sh/paused-replicas"].as_str() {
        carried.insert(
            "tidal.dev/paused-replicas".to_string(),
            v.trim().to_string(),
        );
        // KEDA pins with paused-replicas alone; Tidal pins when paused is true.
        carried
            .entry("tidal.dev/paused".to_string())
            .or_insert_with(|| "true".to_string());
    }
    if !carried.is_empty() {
        policy
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .extend(carried);
    }
    Ok(Imported {
        source: format!("ScaledObject {ns}/{name}"),
        policy,
        notes,
    })
}

/// One `spec.triggers[i]`; `None` (with a note) when it has no equivalent.
fn trigger(
    t: &Field,
    options: &ImportOptions,
    cooldown: i32,
    polling: Option<i32>,
    taken: &mut Vec<String>,
    notes: &mut Vec<Note>,
) -> Result<Option<MetricSpec>, Refusal> {
    let kind = t.get("type").required_text()?;
    let md = t.get("metadata");
    let wanted = t.get("name").text();
    let auth = t.get("authenticationRef");
    unread(notes, t, TRIGGER_KEYS);
    match kind.as_str() {
        "kafka" => {
            unread(notes, &md, KAFKA_KEYS);
            let servers = md.get("bootstrapServers").required_text()?;
            let group = md.get("consumerGroup").required_text()?;
            let topics = md
                .get("topic")
                .text()
                .filter(|s| !s.is_empty())
                .map(|s| vec![s])
                .unwrap_or_default();
            let cluster = match &options.kafka_cluster {
                Some(c) => c.clone(),
                None => {
                    notes.push(Note {
                        field: md.get("bootstrapServers").path,
                        kind: NoteKind::Review,
                        message: format!(
                            "written as cluster {DEFAULT_CLUSTER:?}: run the scaler with \
                             --kafka-cluster '{DEFAULT_CLUSTER}={}' (or a --kafka-config cluster of \
                             that name), or import with --kafka-cluster <name>",
                            servers.replace(',', ";")
                        ),
                    });
                    DEFAULT_CLUSTER.to_string()
                }
            };
            let lag_per_replica = md
                .get("lagThreshold")
                .int()?
                .unwrap_or(DEFAULT_LAG_THRESHOLD);
            if lag_per_replica < 1 {
                return Err(md.get("lagThreshold").refuse("must be at least 1"));
            }
            let offset_reset_policy = match md.get("offsetResetPolicy").text().as_deref() {
                None | Some("latest") => OffsetResetPolicy::Latest,
                Some("earliest") => OffsetResetPolicy::Earliest,
                Some(other) => {
                    return Err(md
                        .get("offsetResetPolicy")
                        .refuse(format!("{other:?} is not latest or earliest")));
                }
            };
            let exclude_persistent_lag = md.get("excludePersistentLag").flag()?;
            for (key, message) in [
                (
                    "scaleToZeroOnInvalidOffset",
                    "a partition without a committed offset counts by offsetResetPolicy",
                ),
                (
                    "partitionLimitation",
                    "every partition of the listed topic counts",
                ),
                (
                    "sasl",
                    "configure SASL in the scaler's --kafka-config (docs/secured-sources.md)",
                ),
                (
                    "tls",
                    "configure TLS in the scaler's --kafka-config (docs/secured-sources.md)",
                ),
                ("version", "the scaler negotiates versions with ApiVersions"),
            ] {
                note(notes, &md.get(key), NoteKind::NoEquivalent, message.into());
            }
            note(
                notes,
                &auth,
                NoteKind::Review,
                "the TriggerAuthentication's secrets go into the scaler's --kafka-config \
                 (docs/secured-sources.md)"
                    .into(),
            );
            Ok(Some(MetricSpec {
                name: metric_name(wanted.as_deref().unwrap_or("lag"), taken),
                resource: None,
                kafka_lag: Some(KafkaLagMetric {
                    cluster,
                    group,
                    topics,
                    lag_per_replica,
                    activation_lag_threshold: md
                        .get("activationLagThreshold")
                        .int()?
                        .unwrap_or(0)
                        .max(0),
                    offset_reset_policy,
                    allow_idle_consumers: md.get("allowIdleConsumers").flag()?,
                    limit_to_partitions_with_lag: md.get("limitToPartitionsWithLag").flag()?,
                    exclude_persistent_lag,
                    // KEDA compares a partition's offset with its previous poll (the CRD
                    // allows up to an hour).
                    persistent_lag_window_seconds: polling.unwrap_or(DEFAULT_POLLING).clamp(
                        PERSISTENT_LAG_WINDOW_SECONDS.min,
                        PERSISTENT_LAG_WINDOW_SECONDS.max,
                    ),
                    cooldown_seconds: cooldown,
                    predictive: None,
                    // KEDA sizes on the lag of each poll.
                    lag_sampling: LagSampling::Latest,
                }),
                prometheus: None,
            }))
        }
        "cpu" | "memory" => {
            unread(notes, &md, RESOURCE_KEYS);
            let name = if kind == "cpu" {
                ResourceName::Cpu
            } else {
                ResourceName::Memory
            };
            // `metricType` on the trigger; the deprecated `metadata.type` before KEDA 2.10.
            let metric_type = t
                .get("metricType")
                .text()
                .or_else(|| md.get("type").text())
                .unwrap_or_else(|| "Utilization".into());
            let value = md.get("value").required_text()?;
            let container = md.get("containerName").text();
            let spec = match metric_type.as_str() {
                "Utilization" => {
                    let v = value.trim().parse::<i32>().map_err(|_| {
                        md.get("value")
                            .refuse(format!("{value:?} is not a whole percentage"))
                    })?;
                    resource(name, container, Some(v), None)
                }
                "AverageValue" => resource(name, container, None, Some(Quantity(value))),
                other => {
                    return Err(t.get("metricType").refuse(format!(
                        "{other:?}: cpu and memory take Utilization or AverageValue"
                    )));
                }
            };
            if taken.contains(&spec.name) {
                return Err(t.refuse(format!("a second {kind} trigger: one per resource")));
            }
            taken.push(spec.name.clone());
            Ok(Some(spec))
        }
        "prometheus" => {
            unread(notes, &md, PROMETHEUS_KEYS);
            let query = md.get("query").required_text()?;
            let threshold = Quantity(md.get("threshold").required_text()?);
            let metric_type = t
                .get("metricType")
                .text()
                .unwrap_or_else(|| "AverageValue".into());
            let mut p = PrometheusMetric {
                query,
                target_value: None,
                target_average_value: None,
                target_per_replica: None,
                allow_negative: false,
            };
            match metric_type.as_str() {
                "AverageValue" => p.target_per_replica = Some(threshold),
                "Value" => p.target_value = Some(threshold),
                other => {
                    return Err(t.get("metricType").refuse(format!(
                        "{other:?}: a prometheus trigger takes AverageValue or Value"
                    )));
                }
            }
            note(
                notes,
                &md.get("serverAddress"),
                NoteKind::Review,
                "the scaler queries its own --prometheus-url: make it this server".into(),
            );
            note(
                notes,
                &md.get("activationThreshold"),
                NoteKind::NoEquivalent,
                "a prometheus metric wakes from zero above 0".into(),
            );
            if md.get("ignoreNullValues").text().as_deref() != Some("false") {
                // KEDA's default (true) reads an empty result as 0.
                notes.push(Note {
                    field: md.get("ignoreNullValues").path,
                    kind: NoteKind::NoEquivalent,
                    message: "KEDA reads an empty result as 0 (its default); Tidal holds on it, \
                              as KEDA does with ignoreNullValues: false"
                        .into(),
                });
            }
            for key in ["customHeaders", "unsafeSsl", "namespace"] {
                note(
                    notes,
                    &md.get(key),
                    NoteKind::NoEquivalent,
                    "the scaler's --prometheus-* flags apply to every query".into(),
                );
            }
            note(
                notes,
                &auth,
                NoteKind::Review,
                "the TriggerAuthentication's secrets go into the scaler's --prometheus-* file \
                 flags (docs/secured-sources.md)"
                    .into(),
            );
            Ok(Some(MetricSpec {
                name: metric_name(wanted.as_deref().unwrap_or("prometheus"), taken),
                resource: None,
                kafka_lag: None,
                prometheus: Some(p),
            }))
        }
        other => {
            notes.push(Note {
                field: t.get("type").path,
                kind: NoteKind::NoEquivalent,
                message: format!(
                    "the {other:?} scaler: trigger left out (import reads kafka, cpu, memory \
                     and prometheus; another source can often be read through a prometheus \
                     metric)"
                ),
            });
            Ok(None)
        }
    }
}

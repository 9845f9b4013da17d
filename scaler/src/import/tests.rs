//! `import` on the upstream examples, each cited, and the imported policies run through the
//! engine on the same data as the HPA and KEDA examples describe.

use serde_json::{Value, json};

use super::*;
use crate::api::{OffsetResetPolicy, ResourceName};
use crate::engine;

fn one(yaml: &str, options: &ImportOptions) -> Imported {
    let mut all = import_all(yaml, options).expect("imports").imported;
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn fields(i: &Imported) -> Vec<(String, NoteKind)> {
    i.notes.iter().map(|n| (n.field.clone(), n.kind)).collect()
}

/// The engine's decision for `policy` with `state` and `observations` (decide's JSON).
fn decide(i: &Imported, state: Value, observations: Value) -> i32 {
    let spec = i
        .policy
        .spec
        .to_engine(engine::types::ControllerSettings::default())
        .expect("valid");
    let input: engine::Input = serde_json::from_value(json!({
        "spec": serde_json::to_value(spec).expect("spec"),
        "state": state,
        "observations": observations,
        "now_unix_seconds": 10_000.0
    }))
    .expect("input");
    engine::decide(&input).expect("decides").desired_replicas
}

/// Three ready pods of one container requesting `cpu` cores, started long ago.
fn pods(n: usize, cpu: f64) -> Value {
    let pods: Vec<Value> = (0..n)
        .map(|i| {
            json!({"name": format!("p{i}"), "start_time_unix_seconds": 1000.0,
                   "ready": {"status": "True", "last_transition_unix_seconds": 1100.0},
                   "containers": [{"name": "app", "requests": {"cpu": cpu}}]})
        })
        .collect();
    json!({"spec_replicas": n, "pods": pods})
}

// https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale-walkthrough/
// (`kubectl autoscale deployment php-apache --cpu-percent=50 --min=1 --max=10`, as YAML).
const WALKTHROUGH: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: php-apache
  namespace: default
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: php-apache
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: Resource
    resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: 50
"#;

#[test]
fn the_hpa_walkthrough_is_exact_and_decides_as_the_hpa() {
    let i = one(WALKTHROUGH, &ImportOptions::default());
    assert!(i.notes.is_empty(), "{:?}", i.notes);
    assert_eq!(i.source, "HorizontalPodAutoscaler default/php-apache");
    let p = &i.policy;
    assert_eq!(p.metadata.name.as_deref(), Some("php-apache"));
    assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(
        (p.spec.min_replicas, p.spec.max_replicas),
        (1, 10),
        "bounds"
    );
    assert_eq!(p.spec.target_ref.name, "php-apache");
    let r = p.spec.metrics[0].resource.as_ref().expect("resource");
    assert_eq!(
        (r.name, r.target_utilization),
        (ResourceName::Cpu, Some(50))
    );
    // Three pods requesting 200m use 150m each: 75% against 50%, ratio 1.5: the HPA's
    // ceil(1.5 * 3) = 5.
    let obs: Vec<Value> = (0..3)
        .map(|i| json!({"metric": "cpu", "pod": format!("p{i}"), "value": 0.15}))
        .collect();
    assert_eq!(decide(&i, pods(3, 0.2), json!(obs)), 5);
    let yaml = render(&i).expect("yaml");
    assert!(yaml.starts_with("# Imported from HorizontalPodAutoscaler default/php-apache"));
    assert!(
        yaml.contains("# Every field has an exact equivalent."),
        "{yaml}"
    );
    assert!(yaml.contains("kind: ScalingPolicy"), "{yaml}");
}

// The same page, "Autoscaling on multiple metrics and custom metrics".
const MULTIPLE: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: php-apache
  namespace: shop
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: php-apache
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: Resource
    resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: 50
  - type: Pods
    pods:
      metric:
        name: packets-per-second
      target:
        type: AverageValue
        averageValue: 1k
  - type: Object
    object:
      metric:
        name: requests-per-second
      describedObject:
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        name: main-route
      target:
        type: Value
        value: 10k
  - type: External
    external:
      metric:
        name: queue_messages_ready
        selector:
          matchLabels:
            queue: "worker_tasks"
      target:
        type: AverageValue
        averageValue: 30
"#;

#[test]
fn adapter_metrics_become_queries_to_review() {
    let i = one(MULTIPLE, &ImportOptions::default());
    let m = &i.policy.spec.metrics;
    assert_eq!(m.len(), 4);
    let q = |k: usize| m[k].prometheus.as_ref().expect("prometheus");
    assert_eq!(m[1].name, "packets_per_second");
    assert_eq!(
        q(1).query,
        r#"sum by (pod) (packets_per_second{namespace="shop"})"#
    );
    assert_eq!(
        q(1).target_average_value.as_ref().map(|v| v.0.as_str()),
        Some("1k")
    );
    assert_eq!(m[2].name, "requests_per_second");
    assert_eq!(
        q(2).query,
        r#"sum(requests_per_second{namespace="shop",ingress="main-route"})"#
    );
    assert_eq!(
        q(2).target_value.as_ref().map(|v| v.0.as_str()),
        Some("10k")
    );
    assert_eq!(
        q(3).query,
        r#"sum(queue_messages_ready{queue="worker_tasks"})"#
    );
    assert_eq!(
        q(3).target_per_replica.as_ref().map(|v| v.0.as_str()),
        Some("30")
    );
    assert_eq!(
        fields(&i),
        vec![
            (
                "spec.metrics[1].pods.metric.name".to_string(),
                NoteKind::Review
            ),
            (
                "spec.metrics[2].object.metric.name".to_string(),
                NoteKind::Review
            ),
            (
                "spec.metrics[3].external.metric.name".to_string(),
                NoteKind::Review
            ),
        ]
    );
}

// https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#configurable-scaling-behavior
// (the "scale down at most 10% a minute" and "disable scale down" examples together).
const BEHAVIOR: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: StatefulSet, name: web}
  maxReplicas: 20
  behavior:
    scaleDown:
      policies:
      - type: Percent
        value: 10
        periodSeconds: 60
      - type: Pods
        value: 5
        periodSeconds: 60
      selectPolicy: Min
    scaleUp:
      stabilizationWindowSeconds: 0
      selectPolicy: Disabled
"#;

#[test]
fn behavior_carries_over_field_for_field() {
    let i = one(BEHAVIOR, &ImportOptions::default());
    assert!(i.notes.is_empty(), "{:?}", i.notes);
    let p = &i.policy.spec;
    assert_eq!(p.target_ref.kind, "StatefulSet");
    assert_eq!(p.min_replicas, 1, "the HPA's default");
    let r = p.metrics[0].resource.as_ref().expect("the default metric");
    assert_eq!(
        (r.name, r.target_utilization),
        (ResourceName::Cpu, Some(80))
    );
    let b = serde_json::to_value(&p.behavior).expect("behavior");
    let source: Value = serde_norway::from_str(BEHAVIOR).expect("yaml");
    assert_eq!(b, source["spec"]["behavior"]);
}

// https://keda.sh/docs/2.18/scalers/apache-kafka/ (the example ScaledObject).
const KEDA_KAFKA: &str = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: kafka-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    name: azure-functions-deployment
  pollingInterval: 30
  triggers:
  - type: kafka
    metadata:
      bootstrapServers: localhost:9092
      consumerGroup: my-group
      topic: test-topic
      # Optional
      lagThreshold: '5'
      offsetResetPolicy: latest
"#;

#[test]
fn the_keda_kafka_example_becomes_kafka_lag_and_decides_as_keda() {
    let i = one(KEDA_KAFKA, &ImportOptions::default());
    let p = &i.policy.spec;
    assert_eq!(
        (
            p.target_ref.api_version.as_str(),
            p.target_ref.kind.as_str()
        ),
        ("apps/v1", "Deployment"),
        "KEDA's defaults"
    );
    assert_eq!(
        (p.min_replicas, p.max_replicas),
        (0, 100),
        "KEDA's defaults"
    );
    let k = p.metrics[0].kafka_lag.as_ref().expect("kafkaLag");
    assert_eq!(p.metrics[0].name, "lag");
    assert_eq!(k.cluster, "kafka");
    assert_eq!(
        (k.group.as_str(), k.topics.as_slice()),
        ("my-group", &["test-topic".to_string()][..])
    );
    assert_eq!(k.lag_per_replica, 5);
    assert_eq!(k.offset_reset_policy, OffsetResetPolicy::Latest);
    assert_eq!(k.cooldown_seconds, 300);
    assert_eq!(
        fields(&i),
        vec![
            ("spec.pollingInterval".to_string(), NoteKind::NoEquivalent),
            (
                "spec.triggers[0].metadata.bootstrapServers".to_string(),
                NoteKind::Review
            ),
        ]
    );
    assert!(
        i.notes[1]
            .message
            .contains("--kafka-cluster 'kafka=localhost:9092'"),
        "{}",
        i.notes[1]
    );
    // Lag 23 at 5 per replica on 10 partitions: KEDA's ceil(23 / 5) = 5 from 3 replicas.
    let obs = json!([{"metric": "lag", "value": 23.0,
                      "kafka": {"partitions": 10, "partitions_with_lag": 10}}]);
    assert_eq!(decide(&i, json!({"spec_replicas": 3}), obs.clone()), 5);
    // From 1: KEDA's HPA has no behavior, so the HPA's legacy limit max(2 * 1, 4) = 4 holds
    // the first step, and the imported policy (no behavior either) does the same.
    assert_eq!(decide(&i, json!({"spec_replicas": 1}), obs), 4);
    let named = one(
        KEDA_KAFKA,
        &ImportOptions {
            kafka_cluster: Some("orders".into()),
        },
    );
    assert_eq!(
        named.policy.spec.metrics[0]
            .kafka_lag
            .as_ref()
            .map(|k| k.cluster.as_str()),
        Some("orders")
    );
    assert_eq!(named.notes.len(), 1, "{:?}", named.notes);
}

// https://keda.sh/docs/2.18/scalers/cpu/ and .../memory/ and .../prometheus/ (their examples
// in one object), with the ScaledObject spec's fallback and advanced sections
// (https://keda.sh/docs/2.18/reference/scaledobject-spec/).
const KEDA_MIXED: &str = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: mixed
  namespace: shop
  annotations:
    autoscaling.keda.sh/paused-replicas: "2"
spec:
  scaleTargetRef:
    name: web
  minReplicaCount: 2
  maxReplicaCount: 12
  cooldownPeriod: 120
  fallback:
    failureThreshold: 3
    replicas: 6
  advanced:
    restoreToOriginalReplicaCount: true
    horizontalPodAutoscalerConfig:
      name: keda-hpa-web-custom
      behavior:
        scaleDown:
          stabilizationWindowSeconds: 300
          policies:
          - type: Percent
            value: 100
            periodSeconds: 15
  triggers:
  - type: cpu
    metricType: Utilization
    metadata:
      value: "60"
  - type: memory
    metricType: AverageValue
    metadata:
      value: "512Mi"
      containerName: app
  - type: prometheus
    metadata:
      serverAddress: http://prometheus-host:9090
      metricName: http_requests_total
      threshold: '100.50'
      activationThreshold: '5.5'
      query: sum(rate(http_requests_total{deployment="my-deployment"}[2m]))
  - type: rabbitmq
    metadata:
      queueName: tasks
      value: "20"
"#;

#[test]
fn keda_triggers_fallback_and_advanced_say_what_maps_and_what_does_not() {
    let i = one(KEDA_MIXED, &ImportOptions::default());
    let p = &i.policy.spec;
    assert_eq!((p.min_replicas, p.max_replicas), (2, 12));
    let names: Vec<&str> = p.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["cpu", "memory", "prometheus"]);
    let cpu = p.metrics[0].resource.as_ref().expect("cpu");
    assert_eq!(cpu.target_utilization, Some(60));
    let mem = p.metrics[1].resource.as_ref().expect("memory");
    assert_eq!(
        (
            mem.container.as_deref(),
            mem.target_average_value.as_ref().map(|q| q.0.as_str())
        ),
        (Some("app"), Some("512Mi"))
    );
    let prom = p.metrics[2].prometheus.as_ref().expect("prometheus");
    assert_eq!(
        prom.target_per_replica.as_ref().map(|q| q.0.as_str()),
        Some("100.50"),
        "KEDA's default metricType is AverageValue"
    );
    let down = p
        .behavior
        .as_ref()
        .and_then(|b| b.scale_down.as_ref())
        .expect("behavior");
    assert_eq!(down.stabilization_window_seconds, Some(300));
    let annotations = i.policy.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("tidal.dev/paused-replicas")
            .map(String::as_str),
        Some("2")
    );
    assert_eq!(
        annotations.get("tidal.dev/paused").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        annotations
            .get("tidal.dev/imported-from")
            .map(String::as_str),
        Some("ScaledObject/mixed")
    );
    assert_eq!(
        fields(&i),
        vec![
            ("spec.fallback".to_string(), NoteKind::NoEquivalent),
            (
                "spec.advanced.restoreToOriginalReplicaCount".to_string(),
                NoteKind::NoEquivalent
            ),
            (
                "spec.advanced.horizontalPodAutoscalerConfig.name".to_string(),
                NoteKind::NoEquivalent
            ),
            (
                "spec.triggers[2].metadata.serverAddress".to_string(),
                NoteKind::Review
            ),
            (
                "spec.triggers[2].metadata.activationThreshold".to_string(),
                NoteKind::NoEquivalent
            ),
            (
                "spec.triggers[2].metadata.ignoreNullValues".to_string(),
                NoteKind::NoEquivalent
            ),
            ("spec.triggers[3].type".to_string(), NoteKind::NoEquivalent),
        ]
    );
    let yaml = render(&i).expect("yaml");
    for line in [
        "# spec.fallback: no equivalent: Tidal never scales on missing data",
        "# spec.triggers[3].type: no equivalent: the \"rabbitmq\" scaler: trigger left out",
    ] {
        assert!(yaml.contains(line), "{line}\n{yaml}");
    }
}

#[test]
fn served_details_carry_over_or_are_named() {
    // A served HPA writes tolerance as a quantity (k8s.io/api autoscaling/v2 HPAScalingRules).
    let hpa = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: t}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: t}
  maxReplicas: 4
  behavior:
    scaleUp: {tolerance: 50m}
  unknownField: 1
"#;
    let i = one(hpa, &ImportOptions::default());
    let up = i
        .policy
        .spec
        .behavior
        .as_ref()
        .and_then(|b| b.scale_up.as_ref())
        .expect("scaleUp");
    assert_eq!(up.tolerance, Some(0.05));
    assert_eq!(
        fields(&i),
        vec![("spec.unknownField".to_string(), NoteKind::NoEquivalent)]
    );
    // KEDA's pause annotations, read as KEDA reads them; unknown fields named.
    let so = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: s
  annotations: {autoscaling.keda.sh/paused: "True"}
spec:
  scaleTargetRef: {name: w}
  minReplicaCount: 0
  initialCooldownPeriod: 60
  triggers:
  - type: prometheus
    useCachedMetrics: true
    metadata: {query: "vector(1)", threshold: "1", ignoreNullValues: "false", queryParameters: "a=b"}
"#;
    let i = one(so, &ImportOptions::default());
    let annotations = i.policy.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("tidal.dev/paused").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        fields(&i),
        vec![
            (
                "spec.initialCooldownPeriod".to_string(),
                NoteKind::NoEquivalent
            ),
            (
                "spec.triggers[0].useCachedMetrics".to_string(),
                NoteKind::NoEquivalent
            ),
            (
                "spec.triggers[0].metadata.queryParameters".to_string(),
                NoteKind::NoEquivalent
            ),
            ("spec.cooldownPeriod".to_string(), NoteKind::NoEquivalent),
        ]
    );
}

#[test]
fn what_cannot_be_imported_is_refused_naming_the_field() {
    let cases = [
        (
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: a}\nspec: {scaleTargetRef: {kind: Deployment, name: w}, maxReplicas: 3, metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}, {type: ContainerResource, containerResource: {name: cpu, container: app, target: {type: Utilization, averageUtilization: 60}}}]}",
            "HorizontalPodAutoscaler a: spec.metrics[1].containerResource.name: a second cpu metric",
        ),
        (
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: a}\nspec: {scaleTargetRef: {kind: Deployment, name: w}, maxReplicas: 3, behavior: {scaleUp: {selectPolicy: Sometimes}}}",
            "HorizontalPodAutoscaler a: spec.behavior.scaleUp.selectPolicy: unknown variant",
        ),
        (
            "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: a}\nspec: {}",
            "HorizontalPodAutoscaler a: apiVersion: \"autoscaling/v1\": only autoscaling/v2",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}",
            "ConfigMap c: kind: v1/ConfigMap is neither",
        ),
        (
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: a}\nspec: {scaleTargetRef: {kind: Deployment, name: w}}",
            "HorizontalPodAutoscaler a: spec.maxReplicas: is required",
        ),
        (
            "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: s}\nspec: {scaleTargetRef: {name: w}, triggers: [{type: kafka, metadata: {bootstrapServers: k, consumerGroup: g, lagThreshold: ten}}]}",
            "ScaledObject s: spec.triggers[0].metadata.lagThreshold: \"ten\" is not an integer",
        ),
        (
            "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: s}\nspec: {scaleTargetRef: {name: w}, triggers: [{type: cron, metadata: {}}]}",
            "ScaledObject s: spec.triggers: no trigger has an equivalent",
        ),
        (
            "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: s}\nspec: {scaleTargetRef: {name: w}, minReplicaCount: 5, maxReplicaCount: 2, triggers: [{type: cpu, metricType: Utilization, metadata: {value: '50'}}]}",
            "ScaledObject s: spec.minReplicas: the imported policy is invalid",
        ),
    ];
    for (yaml, want) in cases {
        let e = import_all(yaml, &ImportOptions::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with(want), "{yaml}\n  -> {e}\n  wanted {want}");
    }
}

#[test]
fn a_list_and_several_documents_are_all_imported() {
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}\n",
        serde_json::to_string(&serde_norway::from_str::<Value>(WALKTHROUGH).expect("yaml"))
            .expect("json")
    );
    assert_eq!(
        import_all(&list, &ImportOptions::default())
            .expect("list")
            .imported
            .len(),
        1
    );
    // The HPA KEDA makes for a ScaledObject is left out, saying why.
    let keda_hpa = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: keda-hpa-orders
  ownerReferences:
  - {apiVersion: keda.sh/v1alpha1, kind: ScaledObject, name: orders, uid: x}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: orders}
  maxReplicas: 6
  metrics:
  - type: External
    external:
      metric: {name: s0-kafka-orders}
      target: {type: AverageValue, averageValue: "10"}
"#;
    let run = import_all(
        &format!("{keda_hpa}---\n{KEDA_KAFKA}"),
        &ImportOptions::default(),
    )
    .expect("run");
    assert_eq!(run.imported.len(), 1);
    assert_eq!(
        run.skipped,
        [
            "HorizontalPodAutoscaler keda-hpa-orders: made by KEDA for ScaledObject orders; import the ScaledObject instead"
        ]
    );
    let stream = format!("{WALKTHROUGH}---\n{KEDA_KAFKA}---\n");
    let all = import_all(&stream, &ImportOptions::default())
        .expect("stream")
        .imported;
    let sources: Vec<&str> = all.iter().map(|i| i.source.as_str()).collect();
    assert_eq!(
        sources,
        [
            "HorizontalPodAutoscaler default/php-apache",
            "ScaledObject default/kafka-scaledobject"
        ]
    );
}

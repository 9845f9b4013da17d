//! The generated CRD: names, columns, a structural schema, and CEL rules that parse and hold.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::*;

fn schema() -> Value {
    let crd = serde_json::to_value(crd()).expect("CRD serializes");
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1);
    versions[0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn names_scope_and_subresources() {
    let crd = serde_json::to_value(crd()).expect("CRD serializes");
    assert_eq!(crd["metadata"]["name"], "scalingpolicies.tidal.dev");
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "tidal.dev");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "ScalingPolicy");
    assert_eq!(spec["names"]["plural"], "scalingpolicies");
    assert_eq!(spec["names"]["shortNames"], json!(["sp"]));
    let v = &spec["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["served"], true);
    assert_eq!(v["storage"], true);
    assert_eq!(v["subresources"]["status"], json!({}));
}

#[test]
fn printer_columns() {
    let crd = serde_json::to_value(crd()).expect("CRD serializes");
    let cols = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("columns");
    let got: Vec<(&str, &str)> = cols
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["jsonPath"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("Reference", ".status.reference"),
            ("Targets", ".status.targets"),
            ("Min", ".spec.minReplicas"),
            ("Max", ".spec.maxReplicas"),
            ("Replicas", ".status.currentReplicas"),
            ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
            (
                "Active",
                ".status.conditions[?(@.type==\"ScalingActive\")].status"
            ),
            ("Paused", ".metadata.annotations.tidal\\.dev/paused"),
            ("Desired", ".status.desiredReplicas"),
            ("Metric", ".status.lastDecision.dominantMetric"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}

/// Keywords a structural schema may not use (`apiextensions` `validateStructural`), or that
/// the apiserver rejects in a CRD.
const FORBIDDEN: &[&str] = &[
    "$ref",
    "$schema",
    "definitions",
    "$defs",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "const",
    "uniqueItems",
    "examples",
    "additionalItems",
    "patternProperties",
    "dependencies",
    "propertyNames",
    "$id",
];

/// Walk every schema node: each has a `type` (or is int-or-string), and none uses a keyword a
/// structural schema forbids. Returns the number of nodes seen.
fn check_structural(path: &str, node: &Value, problems: &mut Vec<String>) -> usize {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: not an object"));
        return 0;
    };
    for k in FORBIDDEN {
        if obj.contains_key(*k) {
            problems.push(format!("{path}: uses {k}"));
        }
    }
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&json!(true));
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if !obj.contains_key("type") && !int_or_string && !preserve {
        problems.push(format!("{path}: no type"));
    }
    if obj.contains_key("properties") && obj.get("type") != Some(&json!("object")) {
        problems.push(format!("{path}: properties on a non-object"));
    }
    let mut n = 1;
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            n += check_structural(&format!("{path}.{k}"), v, problems);
        }
    }
    if let Some(items) = obj.get("items") {
        n += check_structural(&format!("{path}[]"), items, problems);
    }
    if let Some(ap) = obj.get("additionalProperties") {
        if ap.is_object() {
            n += check_structural(&format!("{path}{{}}"), ap, problems);
        } else {
            problems.push(format!("{path}: boolean additionalProperties"));
        }
    }
    n
}

#[test]
fn schema_is_structural() {
    let s = schema();
    let mut problems = Vec::new();
    let nodes = check_structural("", &s, &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(nodes > 60, "only {nodes} schema nodes");
}

/// Every `x-kubernetes-validations` rule with the path of the schema node holding it.
fn rules(path: &str, node: &Value, out: &mut Vec<(String, String, String)>) {
    if let Some(list) = node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for r in list {
            out.push((
                path.to_owned(),
                r["rule"].as_str().unwrap_or_default().to_owned(),
                r["message"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            rules(&format!("{path}.{k}"), v, out);
        }
    }
    if let Some(items) = node.get("items") {
        rules(&format!("{path}[]"), items, out);
    }
}

fn all_rules() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    rules("", &schema(), &mut out);
    out
}

fn rule_at<'a>(all: &'a [(String, String, String)], path: &str, message: &str) -> &'a str {
    all.iter()
        .find(|(p, _, m)| p == path && m.contains(message))
        .map(|(_, r, _)| r.as_str())
        .unwrap_or_else(|| panic!("no rule at {path} about {message:?} in {all:#?}"))
}

#[test]
fn schema_carries_the_validations() {
    let s = schema();
    let spec = &s["properties"]["spec"];
    assert_eq!(spec["required"], json!(["maxReplicas", "targetRef"]));
    assert_eq!(
        spec["properties"]["minReplicas"]["minimum"].as_f64(),
        Some(0.0)
    );
    assert_eq!(spec["properties"]["minReplicas"]["default"], 1);
    assert_eq!(
        spec["properties"]["maxReplicas"]["minimum"].as_f64(),
        Some(1.0)
    );
    let metrics = &spec["properties"]["metrics"];
    assert_eq!(metrics["x-kubernetes-list-type"], "map");
    assert_eq!(metrics["x-kubernetes-list-map-keys"], json!(["name"]));
    let item = &metrics["items"]["properties"];
    assert_eq!(item["name"]["pattern"], "^[a-z][a-z0-9_]*$");
    assert_eq!(
        item["resource"]["properties"]["name"]["enum"],
        json!(["cpu", "memory"])
    );
    assert_eq!(
        item["kafkaLag"]["properties"]["offsetResetPolicy"]["enum"],
        json!(["latest", "earliest", "zero"])
    );
    assert_eq!(
        item["kafkaLag"]["properties"]["lagPerReplica"]["minimum"].as_f64(),
        Some(1.0)
    );
    let rules = &spec["properties"]["behavior"]["properties"]["scaleUp"]["properties"];
    assert_eq!(
        rules["selectPolicy"]["enum"],
        json!(["Max", "Min", "Disabled"])
    );
    let policy = &rules["policies"]["items"]["properties"];
    assert_eq!(policy["type"]["enum"], json!(["Pods", "Percent"]));
    assert_eq!(policy["periodSeconds"]["maximum"].as_f64(), Some(1800.0));
    let vertical = &spec["properties"]["vertical"]["properties"];
    assert_eq!(
        vertical["mode"]["enum"],
        json!(["Off", "Recommend", "InPlace", "Template"])
    );
    assert_eq!(
        vertical["estimator"]["enum"],
        json!(["histogram", "meanVariance"])
    );
    let status = &s["properties"]["status"]["properties"];
    assert_eq!(
        status["conditions"]["items"]["properties"]["type"]["enum"],
        json!(["AbleToScale", "ScalingActive", "ScalingLimited", "Ready"])
    );
    assert_eq!(
        status["lastScaleTime"]["format"], "date-time",
        "{}",
        status["lastScaleTime"]
    );

    let all = all_rules();
    rule_at(
        &all,
        ".spec",
        "minReplicas must be less than or equal to maxReplicas",
    );
    rule_at(
        &all,
        ".spec.metrics[]",
        "exactly one of resource, kafkaLag, prometheus",
    );
    rule_at(
        &all,
        ".spec.metrics[].resource",
        "exactly one of targetUtilization",
    );
    rule_at(
        &all,
        ".spec.metrics[].prometheus",
        "exactly one of targetValue",
    );
    // Quantities are int-or-string without CEL (see `schema::quantity`).
    let q = &item["resource"]["properties"]["targetAverageValue"];
    assert_eq!(q["x-kubernetes-int-or-string"], true, "{q}");
    assert!(q.get("x-kubernetes-validations").is_none(), "{q}");
}

/// JSON as CEL sees it: integers are `int`, objects are maps.
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

/// Evaluate one rule with `self` bound to `value`, as the apiserver does.
fn holds(rule: &str, value: &Value) -> bool {
    let program = cel::Program::compile(rule).unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    let mut ctx = cel::Context::default();
    ctx.add_variable_from_value("self", cel_value(value));
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => b,
        other => panic!("{rule} on {value}: {other:?}"),
    }
}

/// Every rule parses as CEL. (The apiserver also type-checks them and estimates their cost;
/// applying the CRD to a real kube-apiserver is the test of that.)
#[test]
fn every_rule_parses_as_cel() {
    let all = all_rules();
    assert!(all.len() >= 6, "{all:#?}");
    for (path, rule, _) in &all {
        cel::Program::compile(rule).unwrap_or_else(|e| panic!("{path}: {rule}: {e:?}"));
    }
}

#[test]
fn spec_rules_hold_where_they_should() {
    let all = all_rules();
    let bounds = rule_at(&all, ".spec", "minReplicas must be less than or equal");
    let zero = rule_at(&all, ".spec", "scale to zero");
    let lag =
        json!({"name": "lag", "kafkaLag": {"cluster": "c", "group": "g", "lagPerReplica": 5}});
    let cpu = json!({"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 60}});
    let per_pod = json!({"name": "q", "prometheus": {"query": "q", "targetAverageValue": "1"}});
    let total = json!({"name": "q", "prometheus": {"query": "q", "targetValue": "1"}});
    let spec = |min: i64, max: i64, metrics: Value| json!({"minReplicas": min, "maxReplicas": max, "metrics": metrics});
    assert!(holds(bounds, &spec(1, 1, json!([]))));
    assert!(holds(bounds, &spec(2, 10, json!([]))));
    assert!(!holds(bounds, &spec(3, 2, json!([]))));
    assert!(holds(zero, &spec(1, 3, json!([cpu]))));
    assert!(!holds(zero, &spec(0, 3, json!([cpu]))));
    assert!(!holds(zero, &spec(0, 3, json!([cpu, per_pod]))));
    assert!(holds(zero, &spec(0, 3, json!([cpu, lag]))));
    assert!(holds(zero, &spec(0, 3, json!([total]))));
}

#[test]
fn metric_rules_hold_where_they_should() {
    let all = all_rules();
    let one = rule_at(&all, ".spec.metrics[]", "exactly one of resource");
    let named = rule_at(&all, ".spec.metrics[]", "named after its resource");
    let cpu = json!({"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 60}});
    let lag = json!({"name": "lag", "kafkaLag": {"cluster": "c"}});
    let both = json!({"name": "x", "resource": {"name": "cpu"}, "prometheus": {"query": "q"}});
    assert!(holds(one, &cpu));
    assert!(holds(one, &lag));
    assert!(!holds(one, &json!({"name": "x"})));
    assert!(!holds(one, &both));
    assert!(holds(named, &cpu));
    assert!(holds(named, &lag));
    assert!(!holds(
        named,
        &json!({"name": "web", "resource": {"name": "cpu"}})
    ));

    let target = rule_at(&all, ".spec.metrics[].resource", "exactly one of");
    assert!(holds(
        target,
        &json!({"name": "cpu", "targetUtilization": 50})
    ));
    assert!(holds(
        target,
        &json!({"name": "cpu", "targetAverageValue": "1"})
    ));
    assert!(!holds(target, &json!({"name": "cpu"})));
    assert!(!holds(
        target,
        &json!({"name": "cpu", "targetUtilization": 50, "targetAverageValue": "1"})
    ));

    let prom = rule_at(&all, ".spec.metrics[].prometheus", "exactly one of");
    assert!(holds(prom, &json!({"query": "q", "targetPerReplica": 5})));
    assert!(!holds(prom, &json!({"query": "q"})));
    assert!(!holds(
        prom,
        &json!({"query": "q", "targetValue": 1, "targetPerReplica": 5})
    ));
}

#[test]
fn crd_yaml_has_a_header_and_reads_back() {
    let yaml = crd_yaml().expect("YAML");
    assert!(yaml.starts_with("# Generated by `tidal-scaler crdgen`"));
    let back: Vec<Value> = serde_norway::Deserializer::from_str(&yaml)
        .map(|d| Value::deserialize(d).expect("YAML parses"))
        .collect();
    let want = [
        serde_json::to_value(crd()).expect("JSON"),
        serde_json::to_value(super::checkpoint_crd()).expect("JSON"),
    ];
    assert_eq!(
        back, want,
        "the ScalingPolicy CRD, then the ScalingPolicyCheckpoint CRD"
    );
}

#[test]
fn status_round_trips_and_summarizes_a_decision() {
    let st: ScalingPolicyStatus = serde_json::from_value(json!({
        "observedGeneration": 3,
        "currentReplicas": 3,
        "desiredReplicas": 7,
        "lastScaleTime": "2026-11-23T18:00:00Z",
        "conditions": [{"type": "ScalingLimited", "status": "True", "reason": "ScaleUpLimit",
                        "message": "m", "lastTransitionTime": "2026-11-23T18:00:00Z"}],
        "currentMetrics": [{"name": "cpu", "value": "84", "target": "60", "proposedReplicas": 5}],
        "recommendations": [{"containerName": "app", "target": {"cpu": "250m", "memory": "300Mi"}}],
        "lastDecision": {"dominantMetric": "lag", "reasons": ["lag proposed 8"]}
    }))
    .expect("status");
    assert_eq!(st.conditions[0].kind, ConditionType::ScalingLimited);
    assert_eq!(st.conditions[0].status, ConditionStatus::True);
    let again: ScalingPolicyStatus =
        serde_json::from_value(serde_json::to_value(&st).expect("ser")).expect("de");
    assert_eq!(again, st);

    // The Kafka half of the docs/decide.md example: 730 lag at 100 per replica wants 8, the
    // scale-up policy allows 3 + 4 = 7.
    let input: crate::engine::Input = serde_json::from_value(json!({
        "spec": {
            "min_replicas": 2,
            "max_replicas": 20,
            "metrics": [{"name": "kafka_lag", "type": "external",
                         "target": {"type": "average_value", "average_value": 100}}],
            "behavior": {"scale_up": {"policies": [{"type": "Pods", "value": 4, "period_seconds": 60}]}}
        },
        "state": {"spec_replicas": 3, "recommendations": [{"replicas": 3, "at_unix_seconds": 1700003540}]},
        "observations": [{"metric": "kafka_lag", "value": 730}],
        "now_unix_seconds": 1700003600
    }))
    .expect("an engine input");
    let d = crate::engine::decide(&input).expect("decides");
    let last = LastDecision::from_decision(&d);
    assert_eq!(last.dominant_metric.as_deref(), Some("kafka_lag"));
    assert!(
        last.reasons
            .iter()
            .any(|r| r == "rate: 8 -> 7 (ScaleUpLimit)"),
        "{:?}",
        last.reasons
    );
    let now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time =
        serde_json::from_value(json!("2026-11-23T19:00:00Z")).expect("a time");
    let mut st = ScalingPolicyStatus::default();
    st.record_decision(&d, &input.spec, &now);
    assert_eq!(
        (st.current_replicas, st.desired_replicas),
        (Some(3), Some(7))
    );
    assert_eq!(st.current_metrics.len(), 1);
    let m = &st.current_metrics[0];
    assert_eq!(m.name, "kafka_lag");
    assert_eq!(m.value.as_ref().map(|q| q.0.as_str()), Some("243334m"));
    assert_eq!(m.target.as_ref().map(|q| q.0.as_str()), Some("100"));
    assert_eq!(m.proposed_replicas, Some(8));
    assert_eq!(st.targets.as_deref(), Some("kafka_lag: 243334m/100"));
    // The engine's three, then Ready.
    assert_eq!(st.conditions.len(), 4);
    assert_eq!(st.conditions[3].kind, ConditionType::Ready);
    assert_eq!(st.conditions[3].status, ConditionStatus::True);
    let last = st.last_decision.as_ref().expect("last decision");
    assert_eq!(last.time, Some(now));
    assert_eq!(last.dominant_metric.as_deref(), Some("kafka_lag"));
    let conds: Vec<_> = d
        .conditions
        .iter()
        .map(ScalingCondition::from_engine)
        .collect();
    assert_eq!(conds[0].kind, ConditionType::AbleToScale);
    assert_eq!(conds[2].reason.as_deref(), Some("ScaleUpLimit"));
}

#[test]
fn conditions_keep_their_transition_time_while_the_status_holds() {
    let t = |s: &str| -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
        serde_json::from_value(json!(s)).expect("a time")
    };
    let cond = |kind, status: bool, reason: &str| crate::engine::types::Condition {
        kind,
        status,
        reason: reason.to_owned(),
        message: String::new(),
    };
    use crate::engine::types::ConditionType as E;
    let mut st = ScalingPolicyStatus::default();
    let t0 = t("2026-11-23T18:00:00Z");
    st.set_conditions(
        &[
            cond(E::AbleToScale, true, "ReadyForNewScale"),
            cond(E::ScalingActive, true, "ValidMetricFound"),
        ],
        &t0,
    );
    assert_eq!(st.conditions.len(), 3, "AbleToScale, ScalingActive, Ready");
    assert!(
        st.conditions
            .iter()
            .all(|c| c.last_transition_time == Some(t0.clone()))
    );

    let t1 = t("2026-11-23T18:01:00Z");
    st.set_conditions(
        &[
            cond(E::AbleToScale, true, "SucceededRescale"),
            cond(E::ScalingActive, false, "FailedGetExternalMetric"),
            cond(E::ScalingLimited, true, "ScaleUpLimit"),
        ],
        &t1,
    );
    let at_in = |st: &ScalingPolicyStatus, k: ConditionType| {
        st.conditions
            .iter()
            .find(|c| c.kind == k)
            .expect("condition")
            .clone()
    };
    let at = |k: ConditionType| at_in(&st, k);
    let able = at(ConditionType::AbleToScale);
    assert_eq!(
        able.last_transition_time,
        Some(t0.clone()),
        "status unchanged"
    );
    assert_eq!(able.reason.as_deref(), Some("SucceededRescale"));
    let active = at(ConditionType::ScalingActive);
    assert_eq!(active.status, ConditionStatus::False);
    assert_eq!(
        active.last_transition_time,
        Some(t1.clone()),
        "status changed"
    );
    assert_eq!(
        at(ConditionType::ScalingLimited).last_transition_time,
        Some(t1.clone()),
        "new condition"
    );
    // Ready follows ScalingActive: False, with its reason, since t1.
    let ready = at(ConditionType::Ready);
    assert_eq!(ready.status, ConditionStatus::False);
    assert_eq!(ready.reason.as_deref(), Some("FailedGetExternalMetric"));
    assert_eq!(ready.last_transition_time, Some(t1.clone()));

    // A hold on purpose (a pause): Ready is True again, with its reason.
    let t2 = t("2026-11-23T18:02:00Z");
    let paused = [
        cond(E::AbleToScale, true, "SucceededRescale"),
        cond(E::ScalingActive, false, "ScalingPaused"),
        cond(E::ScalingLimited, true, "ScaleUpLimit"),
    ];
    st.set_conditions(&paused, &t2);
    assert_eq!(st.conditions.len(), 4);
    let ready = at_in(&st, ConditionType::Ready);
    assert_eq!(ready.status, ConditionStatus::True);
    assert_eq!(ready.reason.as_deref(), Some("ScalingPaused"));
    assert_eq!(ready.last_transition_time, Some(t2.clone()));
    assert_eq!(
        at_in(&st, ConditionType::AbleToScale).last_transition_time,
        Some(t0)
    );
    // Held again at the next cycle: every time stays.
    let t3 = t("2026-11-23T18:03:00Z");
    let before = st.conditions.clone();
    st.set_conditions(&paused, &t3);
    assert_eq!(st.conditions, before);
}

#[test]
fn ready_is_false_exactly_when_the_policy_cannot_do_its_work() {
    use crate::engine::types::ConditionType as E;
    let cond = |kind, status: bool, reason: &str| crate::engine::types::Condition {
        kind,
        status,
        reason: reason.to_owned(),
        message: format!("because {reason}"),
    };
    let now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time =
        serde_json::from_value(json!("2026-11-23T18:00:00Z")).expect("a time");
    for (able, active, limited, expected) in [
        (
            (true, "ReadyForNewScale"),
            (true, "ValidMetricFound"),
            (false, "DesiredWithinRange"),
            (true, "Reconciled"),
        ),
        // Rate-limited or at a bound is still healthy.
        (
            (true, "ScaleUpStabilized"),
            (true, "ValidMetricFound"),
            (true, "TooManyReplicas"),
            (true, "Reconciled"),
        ),
        (
            (false, "FailedGetScale"),
            (false, "FailedGetScale"),
            (false, "DesiredWithinRange"),
            (false, "FailedGetScale"),
        ),
        (
            (false, "FailedUpdateScale"),
            (true, "ValidMetricFound"),
            (false, "DesiredWithinRange"),
            (false, "FailedUpdateScale"),
        ),
        (
            (true, "SucceededGetScale"),
            (false, "InvalidFormula"),
            (false, "DesiredWithinRange"),
            (false, "InvalidFormula"),
        ),
        (
            (true, "SucceededGetScale"),
            (false, "ConflictingAutoscaler"),
            (false, "DesiredWithinRange"),
            (false, "ConflictingAutoscaler"),
        ),
        // Scaled to zero by someone else (the HPA's ScalingDisabled), or paused: healthy.
        (
            (true, "SucceededGetScale"),
            (false, "ScalingDisabled"),
            (false, "DesiredWithinRange"),
            (true, "Reconciled"),
        ),
        (
            (true, "SucceededGetScale"),
            (false, "ScalingPaused"),
            (false, "DesiredWithinRange"),
            (true, "ScalingPaused"),
        ),
    ] {
        let mut st = ScalingPolicyStatus::default();
        st.set_conditions(
            &[
                cond(E::AbleToScale, able.0, able.1),
                cond(E::ScalingActive, active.0, active.1),
                cond(E::ScalingLimited, limited.0, limited.1),
            ],
            &now,
        );
        let r = st.conditions.last().expect("Ready");
        assert_eq!(r.kind, ConditionType::Ready);
        let status = if expected.0 {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        assert_eq!(
            (r.status, r.reason.as_deref()),
            (status, Some(expected.1)),
            "{able:?} {active:?}"
        );
        if !expected.0 {
            assert_eq!(
                r.message.as_deref(),
                Some(format!("because {}", expected.1).as_str())
            );
        }
    }
}

#[test]
fn values_become_quantities_rounded_up_to_a_milli_unit() {
    let q = |v: f64| quantity_from_f64(v).map(|q| q.0);
    assert_eq!(q(84.0).as_deref(), Some("84"));
    assert_eq!(q(243.334).as_deref(), Some("243334m"));
    assert_eq!(q(0.3).as_deref(), Some("300m"));
    assert_eq!(q(0.0004).as_deref(), Some("1m"));
    assert_eq!(q(0.0).as_deref(), Some("0"));
    assert_eq!(q(-1.5).as_deref(), Some("-1500m"));
    assert_eq!(
        q(2.0 * 1024.0 * 1024.0 * 1024.0).as_deref(),
        Some("2147483648")
    );
    assert_eq!(q(f64::NAN), None);
    assert_eq!(q(f64::INFINITY), None);
    assert_eq!(q(1e300), None);
    // And back: the parser reads what this writes.
    for v in [84.0, 243.334, 0.3, 12.5] {
        let s = q(v).expect("finite");
        assert!(
            (parse_quantity(&s).expect("parses") - v).abs() < 1e-9,
            "{s}"
        );
    }
}

#[test]
fn every_integer_field_of_the_crd_has_a_maximum_and_a_minimum() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    fn walk(path: &str, s: &JSONSchemaProps, found: &mut Vec<String>) {
        if s.type_.as_deref() == Some("integer") {
            assert!(s.maximum.is_some(), "{path} has no maximum");
            assert!(s.minimum.is_some(), "{path} has no minimum");
            if s.format.as_deref() == Some("int32") {
                assert!(
                    s.maximum.unwrap_or(f64::MAX) <= f64::from(i32::MAX),
                    "{path}"
                );
            }
            found.push(path.to_string());
        }
        for (k, p) in s.properties.iter().flatten() {
            walk(&format!("{path}.{k}"), p, found);
        }
        if let Some(JSONSchemaPropsOrArray::Schema(items)) = &s.items {
            walk(&format!("{path}[]"), items, found);
        }
        if let Some(JSONSchemaPropsOrBool::Schema(v)) = &s.additional_properties {
            walk(&format!("{path}{{}}"), v, found);
        }
    }
    let crd = super::crd();
    let mut found = Vec::new();
    for v in &crd.spec.versions {
        let schema = v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("a schema");
        walk("", schema, &mut found);
    }
    for field in [
        ".spec.maxReplicas",
        ".spec.minReplicas",
        ".spec.metrics[].kafkaLag.lagPerReplica",
    ] {
        assert!(
            found.iter().any(|f| f == field),
            "{field} not found in {found:?}"
        );
    }
    // Bounds the fields set themselves are kept (periodSeconds: 1..=1800).
    let period = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| {
            s.properties
                .as_ref()?
                .get("spec")?
                .properties
                .as_ref()?
                .get("behavior")?
                .properties
                .as_ref()?
                .get("scaleUp")?
                .properties
                .as_ref()?
                .get("policies")?
                .items
                .as_ref()
                .cloned()
        })
        .and_then(|i| match i {
            JSONSchemaPropsOrArray::Schema(s) => {
                s.properties.as_ref()?.get("periodSeconds").cloned()
            }
            _ => None,
        })
        .expect("periodSeconds");
    assert_eq!((period.minimum, period.maximum), (Some(1.0), Some(1800.0)));
}

/// The schema takes its bounds from `engine::limits`; the field descriptions (doc comments,
/// which cannot name a constant) spell the same numbers.
#[test]
fn schema_descriptions_spell_the_engine_limits() {
    use crate::engine::limits::{POLICY_PERIOD_SECONDS as P, STABILIZATION_WINDOW_SECONDS as W};
    let yaml = super::crd_yaml().expect("yaml");
    for text in [
        format!(
            "Seconds of past recommendations to consider ({} to {}).",
            W.min, W.max
        ),
        format!("The period, {} to {} seconds.", P.min, P.max),
    ] {
        assert!(yaml.contains(&text), "{text}");
    }
}

#[test]
fn targets_read_like_the_hpa_column() {
    use crate::api::status::targets;
    let spec: crate::api::ScalingPolicySpec = serde_json::from_value(json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "maxReplicas": 10,
        "metrics": [
            {"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 80}},
            {"name": "lag", "kafkaLag": {"cluster": "c", "group": "g", "lagPerReplica": 10}},
            {"name": "q", "prometheus": {"query": "vector(1)", "targetValue": "2"}},
            {"name": "memory", "resource": {"name": "memory", "targetAverageValue": "100Mi"}}
        ]
    }))
    .expect("spec");
    let spec = crate::engine::types::Spec::try_from(&spec).expect("converts");
    let m = |name: &str, value: Option<&str>, target: &str| MetricStatus {
        name: name.into(),
        value: value.map(|v| k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.into())),
        target: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
            target.into(),
        )),
        proposed_replicas: None,
        error: None,
    };
    let all = [
        m("cpu", Some("45"), "80"),
        m("lag", Some("30"), "10"),
        m("q", None, "2"),
        m("memory", Some("50Mi"), "100Mi"),
    ];
    assert_eq!(
        targets(&all[..3], &spec),
        "cpu: 45%/80%, lag: 30/10, q: <unknown>/2"
    );
    assert_eq!(
        targets(&all, &spec),
        "cpu: 45%/80%, lag: 30/10, q: <unknown>/2, + 1 more..."
    );
    assert_eq!(targets(&[], &spec), "");
}

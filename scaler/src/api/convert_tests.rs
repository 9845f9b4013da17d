//! Conversion of a ScalingPolicy spec to the engine's spec, its errors, and quantities.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;

use super::*;
use crate::api::policy::ScalingPolicySpec;
use crate::engine::types::{MetricSource, PolicyType, SelectPolicy, TargetType};

fn spec(v: serde_json::Value) -> ScalingPolicySpec {
    serde_json::from_value(v).expect("a ScalingPolicy spec")
}

/// A spec with every source, a formula and a behavior.
fn full() -> serde_json::Value {
    json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"},
        "minReplicas": 0,
        "maxReplicas": 20,
        "metrics": [
            {"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 60}},
            {"name": "memory", "resource": {"name": "memory", "container": "app", "targetAverageValue": "512Mi"}},
            {"name": "lag", "kafkaLag": {
                "cluster": "main", "group": "workers", "topics": ["orders"],
                "lagPerReplica": 100, "activationLagThreshold": 5,
                "offsetResetPolicy": "earliest", "limitToPartitionsWithLag": true,
                "cooldownSeconds": 120, "predictive": {"targetDrainSeconds": 60, "lookaheadSeconds": 30}
            }},
            {"name": "rps", "prometheus": {"query": "sum(rate(http_requests_total[1m]))", "targetPerReplica": "50"}},
            {"name": "queue", "prometheus": {"query": "max(queue_depth)", "targetValue": 1000}},
            {"name": "inflight", "prometheus": {"query": "inflight", "targetAverageValue": "500m"}}
        ],
        "formula": "max(cpu.ratio, lag.ratio) * replicas",
        "behavior": {
            "scaleUp": {"policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}], "tolerance": 0.05},
            "scaleDown": {"stabilizationWindowSeconds": 600, "selectPolicy": "Min",
                          "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]}
        },
        "vertical": {"mode": "Recommend", "estimator": "meanVariance", "containerPolicies": [
            {"containerName": "app", "minAllowed": {"cpu": "100m", "memory": "128Mi"},
             "maxAllowed": {"cpu": 2, "memory": "4Gi"}, "controlledResources": ["cpu"]}
        ]},
        "dryRun": true
    })
}

fn err(v: serde_json::Value) -> SpecError {
    engine::Spec::try_from(&spec(v)).expect_err("invalid spec")
}

#[test]
fn full_spec_converts_metric_by_metric() {
    let s = spec(full());
    assert!(s.dry_run);
    let e = engine::Spec::try_from(&s).expect("valid");
    assert_eq!((e.min_replicas, e.max_replicas), (0, 20));
    assert_eq!(
        e.formula.as_deref(),
        Some("max(cpu.ratio, lag.ratio) * replicas")
    );
    assert_eq!(e.controller, engine::ControllerSettings::default());
    let m = &e.metrics;
    assert_eq!(m.len(), 6);

    assert_eq!(
        (m[0].name.as_str(), m[0].source),
        ("cpu", MetricSource::Resource)
    );
    assert_eq!(m[0].target.kind, TargetType::Utilization);
    assert_eq!(m[0].target.average_utilization, Some(60));

    assert_eq!(m[1].source, MetricSource::ContainerResource);
    assert_eq!(m[1].container.as_deref(), Some("app"));
    assert_eq!(m[1].target.kind, TargetType::AverageValue);
    assert_eq!(m[1].target.average_value, Some(512.0 * 1024.0 * 1024.0));

    assert_eq!(m[2].source, MetricSource::KafkaLag);
    let k = m[2].kafka_lag.as_ref().expect("kafka settings");
    assert_eq!(k.lag_per_replica, 100.0);
    assert_eq!(k.activation_lag_threshold, 5.0);
    assert!(k.limit_to_partitions_with_lag);
    assert!(
        !k.allow_idle_consumers,
        "the partition cap is on by default"
    );
    assert_eq!(k.cooldown_seconds, 120.0);
    let p = k.predictive.as_ref().expect("predictive");
    assert_eq!(p.target_drain_seconds, 60.0);
    assert_eq!(p.lookahead_seconds, 30.0);
    assert!(!p.bypass_rate_limits);

    assert_eq!(m[3].source, MetricSource::External);
    assert_eq!(m[3].target.kind, TargetType::AverageValue);
    assert_eq!(m[3].target.average_value, Some(50.0));

    assert_eq!(m[4].source, MetricSource::External);
    assert_eq!(m[4].target.kind, TargetType::Value);
    assert_eq!(m[4].target.value, Some(1000.0));

    assert_eq!(m[5].source, MetricSource::Pods);
    assert_eq!(m[5].target.average_value, Some(0.5));

    let b = e.behavior.expect("behavior");
    let up = b.scale_up.expect("scaleUp");
    assert_eq!(up.tolerance, Some(0.05));
    assert_eq!(up.stabilization_window_seconds, None);
    let ups = up.policies.expect("policies");
    assert_eq!(ups[0].kind, PolicyType::Pods);
    assert_eq!((ups[0].value, ups[0].period_seconds), (4, 60));
    let down = b.scale_down.expect("scaleDown");
    assert_eq!(down.stabilization_window_seconds, Some(600));
    assert_eq!(down.select_policy, Some(SelectPolicy::Min));
    assert_eq!(
        down.policies.expect("policies")[0].kind,
        PolicyType::Percent
    );
}

#[test]
fn defaults_follow_the_hpa() {
    let s = spec(json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
        "maxReplicas": 3
    }));
    assert_eq!(s.min_replicas, 1);
    assert!(!s.dry_run);
    let e = engine::Spec::try_from(s).expect("valid");
    assert!(
        e.metrics.is_empty(),
        "the engine applies the CPU 80% default"
    );
    assert!(e.behavior.is_none());
    assert!(e.formula.is_none());
}

#[test]
fn kafka_lag_defaults() {
    let s = spec(json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"},
        "maxReplicas": 3,
        "metrics": [{"name": "lag", "kafkaLag": {"cluster": "c", "group": "g", "lagPerReplica": 10}}]
    }));
    let k = s.metrics[0].kafka_lag.as_ref().expect("kafkaLag");
    assert_eq!(k.offset_reset_policy, crate::api::OffsetResetPolicy::Latest);
    assert_eq!(k.cooldown_seconds, 300);
    assert!(k.topics.is_empty());
    let e = engine::Spec::try_from(&s).expect("valid");
    let ek = e.metrics[0].kafka_lag.as_ref().expect("engine kafka_lag");
    assert_eq!(ek.cooldown_seconds, 300.0);
    assert_eq!(ek.activation_lag_threshold, 0.0);
    assert!(ek.predictive.is_none());
    assert_eq!(k.lag_sampling, crate::api::LagSampling::Latest);
    assert_eq!(ek.lag_sampling, engine::LagSampling::Latest);
}

#[test]
fn lag_sampling_reaches_the_engine_and_an_unknown_value_is_refused() {
    let mut v = full();
    v["metrics"][2]["kafkaLag"]["lagSampling"] = json!("commitInterval");
    let e = engine::Spec::try_from(&spec(v.clone())).expect("valid");
    let ek = e.metrics[2].kafka_lag.as_ref().expect("engine kafka_lag");
    assert_eq!(ek.lag_sampling, engine::LagSampling::CommitInterval);
    v["metrics"][2]["kafkaLag"]["lagSampling"] = json!("peak");
    let e = serde_json::from_value::<ScalingPolicySpec>(v)
        .expect_err("not a sampling")
        .to_string();
    assert!(
        e.contains("unknown variant `peak`") && e.contains("commitInterval"),
        "{e}"
    );
}

#[test]
fn predictive_lookahead_is_range_checked() {
    let mut v = full();
    v["metrics"][2]["kafkaLag"]["predictive"]["lookaheadSeconds"] = json!(3601);
    let e = err(v).to_string();
    assert!(
        e.starts_with("spec.metrics[2].kafkaLag.predictive.lookaheadSeconds: 3601")
            && e.contains("must be between 0 and 3600"),
        "{e}"
    );
}

#[test]
fn exactly_one_source_per_metric() {
    let mut v = full();
    v["metrics"][1] = json!({"name": "memory"});
    let e = err(v);
    assert_eq!(
        e.to_string(),
        "spec.metrics[1]: exactly one of resource, kafkaLag, prometheus must be set"
    );
    assert_eq!(e.label(), "exactly_one");
    assert_eq!(e.field(), "spec.metrics[1]");

    let mut v = full();
    v["metrics"][3]["kafkaLag"] = json!({"cluster": "c", "group": "g", "lagPerReplica": 1});
    assert_eq!(
        err(v).to_string(),
        "spec.metrics[3]: exactly one of resource, kafkaLag, prometheus must be set"
    );
}

#[test]
fn exactly_one_target() {
    let mut v = full();
    v["metrics"][0]["resource"]["targetAverageValue"] = json!("500m");
    assert_eq!(
        err(v).to_string(),
        "spec.metrics[0].resource: exactly one of targetUtilization, targetAverageValue must be set"
    );
    let mut v = full();
    v["metrics"][0]["resource"] = json!({"name": "cpu"});
    assert_eq!(err(v).label(), "exactly_one");

    let mut v = full();
    v["metrics"][4]["prometheus"]["targetPerReplica"] = json!(3);
    assert_eq!(
        err(v).to_string(),
        "spec.metrics[4].prometheus: exactly one of targetValue, targetAverageValue, targetPerReplica must be set"
    );
    let mut v = full();
    v["metrics"][4]["prometheus"] = json!({"query": "up"});
    assert_eq!(err(v).field(), "spec.metrics[4].prometheus");
}

#[test]
fn bad_and_non_positive_quantities_name_the_field() {
    let mut v = full();
    v["metrics"][1]["resource"]["targetAverageValue"] = json!("12 apples");
    let e = err(v);
    assert_eq!(e.label(), "quantity");
    assert_eq!(
        e.to_string(),
        "spec.metrics[1].resource.targetAverageValue: \"12 apples\" is not a quantity (e.g. 500m, 2Gi, 1.5, 1e3)"
    );

    let mut v = full();
    v["metrics"][3]["prometheus"]["targetPerReplica"] = json!("0");
    assert_eq!(
        err(v).to_string(),
        "spec.metrics[3].prometheus.targetPerReplica: \"0\" must be at least 1m (0.001)"
    );

    let mut v = full();
    v["metrics"][4]["prometheus"]["targetValue"] = json!(-3);
    assert_eq!(
        err(v).to_string(),
        "spec.metrics[4].prometheus.targetValue: \"-3\" must not be negative"
    );

    let mut v = full();
    v["vertical"]["containerPolicies"][0]["maxAllowed"]["memory"] = json!("4Gb");
    assert_eq!(
        err(v).field(),
        "spec.vertical.containerPolicies[0].maxAllowed.memory"
    );
}

#[test]
fn replica_bounds() {
    let mut v = full();
    v["minReplicas"] = json!(5);
    v["maxReplicas"] = json!(4);
    let e = err(v);
    assert_eq!(
        e.to_string(),
        "spec.minReplicas: must be less than or equal to maxReplicas (5 > 4)"
    );
    let mut v = full();
    v["maxReplicas"] = json!(0);
    v["minReplicas"] = json!(0);
    assert_eq!(err(v).to_string(), "spec.maxReplicas: 0 must be at least 1");
    let mut v = full();
    v["minReplicas"] = json!(-1);
    assert_eq!(
        err(v).to_string(),
        "spec.minReplicas: -1 must be at least 0"
    );
}

#[test]
fn scale_to_zero_needs_a_metric_that_can_wake_the_target() {
    let mut v = full();
    let metrics = v["metrics"].as_array().expect("metrics").clone();
    v["formula"] = json!("cpu.ratio * replicas");
    // CPU, memory and a per-pod Prometheus metric cannot see anything at zero pods.
    v["metrics"] = json!([metrics[0], metrics[1], metrics[5]]);
    let e = err(v.clone());
    assert_eq!(e.field(), "spec.minReplicas");
    assert!(e.to_string().contains("scale to zero"), "{e}");
    v["minReplicas"] = json!(1);
    engine::Spec::try_from(&spec(v.clone())).expect("min 1 is fine");
    v["minReplicas"] = json!(0);
    v["metrics"] = json!([metrics[0], metrics[4]]);
    engine::Spec::try_from(&spec(v)).expect("a total Prometheus value wakes it");
}

#[test]
fn metric_names() {
    let mut v = full();
    v["metrics"][4]["name"] = json!("rps");
    let e = err(v);
    assert_eq!(
        e.to_string(),
        "spec.metrics[4].name: duplicate name \"rps\""
    );
    assert_eq!(e.label(), "duplicate");

    let mut v = full();
    v["metrics"][0]["name"] = json!("web_cpu");
    assert_eq!(
        err(v).to_string(),
        "spec.metrics[0].name: a resource metric is named after its resource: \"cpu\", not \"web_cpu\""
    );

    let mut v = full();
    v["metrics"][3]["name"] = json!("Requests-Per-Second");
    assert_eq!(err(v).field(), "spec.metrics[3].name");
}

#[test]
fn source_settings() {
    let mut v = full();
    v["metrics"][2]["kafkaLag"]["lagPerReplica"] = json!(0);
    assert_eq!(
        err(v).to_string(),
        "spec.metrics[2].kafkaLag.lagPerReplica: 0 must be at least 1"
    );
    let mut v = full();
    v["metrics"][2]["kafkaLag"]["topics"] = json!(["a", ""]);
    assert_eq!(
        err(v).to_string(),
        "spec.metrics[2].kafkaLag.topics[1]: must not be empty"
    );
    let mut v = full();
    v["metrics"][2]["kafkaLag"]["activationLagThreshold"] = json!(-1);
    assert_eq!(
        err(v).field(),
        "spec.metrics[2].kafkaLag.activationLagThreshold"
    );
    // The CRD's schema bounds it on the API server; `decide`, `tidal-sim simulate` and `import` read
    // specs the API server never saw.
    for bad in [0, -5, 3601] {
        let mut v = full();
        v["metrics"][2]["kafkaLag"]["persistentLagWindowSeconds"] = json!(bad);
        assert_eq!(
            err(v).to_string(),
            format!(
                "spec.metrics[2].kafkaLag.persistentLagWindowSeconds: {bad} must be between 1 and 3600"
            )
        );
    }
    let mut v = full();
    v["metrics"][3]["prometheus"]["query"] = json!("  ");
    assert_eq!(
        err(v).to_string(),
        "spec.metrics[3].prometheus.query: must not be empty"
    );
    let mut v = full();
    v["metrics"][0]["resource"]["targetUtilization"] = json!(0);
    assert_eq!(
        err(v).to_string(),
        "spec.metrics[0].resource.targetUtilization: 0 must be at least 1 (percent)"
    );
    let mut v = full();
    v["formula"] = json!("");
    assert_eq!(
        err(v).to_string(),
        "spec.formula: must not be empty when set"
    );
    let mut v = full();
    v["formula"] = json!("max(cpu.ratio, latency.ratio) * replicas");
    let e = err(v);
    assert_eq!(e.label(), "formula");
    assert_eq!(e.field(), "spec.formula");
    assert!(
        e.to_string()
            .starts_with("spec.formula: unknown variable \"latency\""),
        "{e}"
    );
    let mut v = full();
    v["formula"] = json!("max(cpu.ratio,");
    assert!(err(v).to_string().starts_with("spec.formula: syntax error"));
    let mut v = full();
    v["targetRef"]["name"] = json!("");
    assert_eq!(err(v).to_string(), "spec.targetRef.name: must not be empty");
}

#[test]
fn behavior_ranges_name_the_field() {
    let mut v = full();
    v["behavior"]["scaleDown"]["policies"][0]["periodSeconds"] = json!(1801);
    let e = err(v);
    assert_eq!(
        e.to_string(),
        "spec.behavior.scaleDown.policies[0].periodSeconds: 1801 must be between 1 and 1800"
    );
    assert_eq!(e.label(), "out_of_range");
    let mut v = full();
    v["behavior"]["scaleUp"]["policies"][0]["value"] = json!(0);
    assert_eq!(err(v).field(), "spec.behavior.scaleUp.policies[0].value");
    let mut v = full();
    v["behavior"]["scaleUp"]["stabilizationWindowSeconds"] = json!(3601);
    assert_eq!(
        err(v).field(),
        "spec.behavior.scaleUp.stabilizationWindowSeconds"
    );
    let mut v = full();
    v["behavior"]["scaleUp"]["tolerance"] = json!(-0.1);
    assert_eq!(err(v).field(), "spec.behavior.scaleUp.tolerance");
}

#[test]
fn behavior_converts_field_by_field() {
    let b = crate::api::Behavior {
        scale_up: None,
        scale_down: Some(crate::api::ScalingRules {
            stabilization_window_seconds: Some(30),
            policies: Some(vec![crate::api::HpaScalingPolicy {
                kind: PolicyType::Pods,
                value: 2,
                period_seconds: 15,
            }]),
            select_policy: Some(SelectPolicy::Disabled),
            tolerance: None,
        }),
    };
    let e = engine::Behavior::from(&b);
    assert!(e.scale_up.is_none());
    let d = e.scale_down.expect("scale_down");
    assert_eq!(d.stabilization_window_seconds, Some(30));
    assert_eq!(d.select_policy, Some(SelectPolicy::Disabled));
    assert_eq!(
        d.policies,
        Some(vec![engine::RatePolicy {
            kind: PolicyType::Pods,
            value: 2,
            period_seconds: 15
        }])
    );
    assert_eq!(d.tolerance, None);
}

#[test]
fn container_policies() {
    let mut v = full();
    v["vertical"]["containerPolicies"][0]["minAllowed"]["cpu"] = json!("3");
    assert_eq!(
        err(v).to_string(),
        "spec.vertical.containerPolicies[0].minAllowed.cpu: must be less than or equal to maxAllowed.cpu"
    );
    let mut v = full();
    let p = v["vertical"]["containerPolicies"][0].clone();
    v["vertical"]["containerPolicies"] = json!([p, p]);
    assert_eq!(err(v).label(), "duplicate");
}

#[test]
fn controller_settings_are_passed_through() {
    let settings = engine::ControllerSettings {
        tolerance: 0.2,
        ..Default::default()
    };
    let e = spec(full()).to_engine(settings.clone()).expect("valid");
    assert_eq!(e.controller, settings);
}

#[test]
fn quantities_parse_like_upstream() {
    let cases: &[(&str, f64)] = &[
        ("0", 0.0),
        ("12", 12.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("5.", 5.0),
        ("+5k", 5000.0),
        ("-2", -2.0),
        ("500m", 0.5),
        ("250u", 0.000_25),
        ("3n", 3e-9),
        ("2M", 2e6),
        ("1G", 1e9),
        ("1T", 1e12),
        ("1P", 1e15),
        ("2E", 2e18),
        ("1Ki", 1024.0),
        ("1.5Mi", 1.5 * 1024.0 * 1024.0),
        ("2Gi", 2.0 * 1024f64.powi(3)),
        ("1Ti", 1024f64.powi(4)),
        ("1Pi", 1024f64.powi(5)),
        ("1Ei", 1024f64.powi(6)),
        ("1e3", 1000.0),
        ("1E3", 1000.0),
        ("25e-2", 0.25),
        ("1e+2", 100.0),
    ];
    for (s, want) in cases {
        let got = parse_quantity(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(
            (got - want).abs() <= want.abs() * 1e-12,
            "{s}: {got} != {want}"
        );
    }
    for bad in [
        "", "m", "1.2.3", "1 Gi", "1gi", "1Kb", "abc", "1e", "1e+", "inf", "NaN", "--1",
    ] {
        assert!(parse_quantity(bad).is_err(), "{bad:?} parsed");
    }
    assert!(parse_quantity("1e400").is_err(), "overflow");
}

/// Found by fuzzing (`fuzz/`, target `quantity`, against the agent's parser): the mantissa was
/// multiplied by `10^exp`, which underflowed to 0 (or overflowed) for large exponents.
#[test]
fn decimal_exponents_are_rounded_once_not_underflowed() {
    let s = format!("{}10e-311", "5".repeat(46));
    let want: f64 = s.parse().expect("a float");
    assert!(want > 0.0);
    assert_eq!(parse_quantity(&s), Ok(want));
    assert_eq!(parse_quantity("0.001e310"), Ok(1e307));
    assert_eq!(parse_quantity("-1000e-310"), Ok(-1e-307));
    assert_eq!(parse_quantity("1.5e-2"), Ok(0.015));
}

#[test]
fn quantities_accept_integers_on_the_wire() {
    let q: Quantity = serde_json::from_value(json!(3)).expect("int");
    assert_eq!(parse_quantity(&q.0), Ok(3.0));
}

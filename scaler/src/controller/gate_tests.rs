//! The gate's table: annotations, dry runs and other autoscalers of the same workload.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use serde_json::json;

use super::gate::{Gate, Other, gate};
use crate::api::ScalingPolicy;

fn policy(annotations: &[(&str, &str)], dry_run: bool) -> ScalingPolicy {
    let annotations: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "tidal.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "p", "namespace": "team", "annotations": annotations},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 10,
            "dryRun": dry_run
        }
    }))
    .expect("policy")
}

fn hpa(
    namespace: &str,
    name: &str,
    target: serde_json::Value,
    keda: Option<&str>,
) -> HorizontalPodAutoscaler {
    let mut h = json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"scaleTargetRef": target, "maxReplicas": 5}
    });
    if let Some(so) = keda {
        h["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": so,
            "uid": "u-1", "controller": true
        }]);
    }
    serde_json::from_value(h).expect("hpa")
}

fn web() -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
}

fn hpa_web() -> Other {
    Other {
        kind: "HorizontalPodAutoscaler",
        namespace: "team".into(),
        name: "web".into(),
        via: None,
    }
}

#[test]
fn no_other_autoscaler_and_no_annotation_writes() {
    let unrelated = [
        hpa("other-ns", "web", web(), None),
        hpa(
            "team",
            "api",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}),
            None,
        ),
        hpa(
            "team",
            "web-sts",
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web"}),
            None,
        ),
        hpa(
            "team",
            "web-x",
            json!({"apiVersion": "example.com/v1", "kind": "Deployment", "name": "web"}),
            None,
        ),
    ];
    assert_eq!(gate(&policy(&[], false), &unrelated), Gate::Write);
}

#[test]
fn an_hpa_of_the_same_workload_is_a_conflict() {
    let hpas = [hpa("team", "web", web(), None)];
    assert_eq!(gate(&policy(&[], false), &hpas), Gate::Conflict(hpa_web()));
    // Another version of the same group, or none at all, is the same workload.
    for target in [
        json!({"apiVersion": "apps/v1beta2", "kind": "Deployment", "name": "web"}),
        json!({"kind": "Deployment", "name": "web"}),
    ] {
        let hpas = [hpa("team", "web", target.clone(), None)];
        assert_eq!(
            gate(&policy(&[], false), &hpas),
            Gate::Conflict(hpa_web()),
            "{target}"
        );
    }
}

#[test]
fn a_keda_hpa_is_reported_as_its_scaled_object() {
    let hpas = [hpa("team", "keda-hpa-orders", web(), Some("orders"))];
    let Gate::Conflict(other) = gate(&policy(&[], false), &hpas) else {
        panic!("expected a conflict");
    };
    assert_eq!(other.key(), "ScaledObject/orders");
    assert_eq!(
        other.to_string(),
        "KEDA ScaledObject team/orders (through its HorizontalPodAutoscaler keda-hpa-orders)"
    );
}

#[test]
fn take_over_names_the_other_autoscaler() {
    let hpas = [hpa("team", "web", web(), None)];
    let over = |v: &str| gate(&policy(&[("tidal.dev/take-over", v)], false), &hpas);
    assert_eq!(
        over("HorizontalPodAutoscaler/web"),
        Gate::TakenOver(hpa_web())
    );
    assert_eq!(
        over("ScaledObject/x, HorizontalPodAutoscaler/web"),
        Gate::TakenOver(hpa_web())
    );
    // Another name does not take this one over.
    assert_eq!(
        over("HorizontalPodAutoscaler/api"),
        Gate::Conflict(hpa_web())
    );
    // Two others: both must be named.
    let two = [
        hpa("team", "web", web(), None),
        hpa("team", "keda-hpa-orders", web(), Some("orders")),
    ];
    let g = gate(
        &policy(
            &[("tidal.dev/take-over", "HorizontalPodAutoscaler/web")],
            false,
        ),
        &two,
    );
    assert!(
        matches!(&g, Gate::Conflict(o) if o.key() == "ScaledObject/orders"),
        "{g:?}"
    );
}

#[test]
fn a_dry_run_never_conflicts() {
    let hpas = [hpa("team", "web", web(), None)];
    assert_eq!(gate(&policy(&[], true), &hpas), Gate::DryRun);
}

#[test]
fn pause_annotations() {
    let none: [HorizontalPodAutoscaler; 0] = [];
    let g = |a: &[(&str, &str)]| gate(&policy(a, false), &none);
    assert_eq!(
        g(&[("tidal.dev/paused", "true")]),
        Gate::Paused { replicas: None }
    );
    assert_eq!(g(&[("tidal.dev/paused", "false")]), Gate::Write);
    assert_eq!(
        g(&[("tidal.dev/paused-replicas", "3")]),
        Gate::Paused { replicas: Some(3) }
    );
    assert_eq!(
        g(&[
            ("tidal.dev/paused", "true"),
            ("tidal.dev/paused-replicas", "0")
        ]),
        Gate::Paused { replicas: Some(0) }
    );
    // Pausing at a count is a write: another autoscaler still blocks it; a plain pause
    // writes nothing, so it does not.
    let hpas = [hpa("team", "web", web(), None)];
    assert_eq!(
        gate(&policy(&[("tidal.dev/paused-replicas", "3")], false), &hpas),
        Gate::Conflict(hpa_web())
    );
    assert_eq!(
        gate(&policy(&[("tidal.dev/paused", "true")], false), &hpas),
        Gate::Paused { replicas: None }
    );
}

#[test]
fn malformed_annotations_name_the_policy_and_the_annotation() {
    let none: [HorizontalPodAutoscaler; 0] = [];
    for (key, value, expected) in [
        ("tidal.dev/paused", "yes", "expected \"true\" or \"false\""),
        ("tidal.dev/paused-replicas", "-1", "an integer, 0 or more"),
        (
            "tidal.dev/paused-replicas",
            "three",
            "an integer, 0 or more",
        ),
        (
            "tidal.dev/take-over",
            "web",
            "HorizontalPodAutoscaler/<name>",
        ),
        (
            "tidal.dev/take-over",
            "Deployment/web",
            "HorizontalPodAutoscaler/<name>",
        ),
        (
            "tidal.dev/take-over",
            "HorizontalPodAutoscaler/",
            "HorizontalPodAutoscaler/<name>",
        ),
    ] {
        let Gate::Invalid(message) = gate(&policy(&[(key, value)], false), &none) else {
            panic!("{key}={value}: expected Invalid");
        };
        assert!(
            message.starts_with(&format!(
                "ScalingPolicy team/p: metadata.annotations[{key}]: "
            )) && message.contains(expected)
                && message.contains(&format!("{value:?}")),
            "{message}"
        );
    }
}

#[test]
fn the_cycle_index_gives_the_gate_the_same_hpas_as_the_whole_cache() {
    use std::sync::Arc;

    use super::gate::HpaIndex;

    let all = [
        hpa("team", "web", web(), None),
        hpa("team", "keda-hpa-orders", web(), Some("orders")),
        hpa("other", "web", web(), None),
        hpa(
            "team",
            "sts",
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web"}),
            None,
        ),
        hpa(
            "team",
            "api",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}),
            None,
        ),
    ];
    let index = HpaIndex::build(all.iter().cloned().map(Arc::new).collect());
    for annotations in [
        vec![],
        vec![("tidal.dev/take-over", "HorizontalPodAutoscaler/web")],
        vec![(
            "tidal.dev/take-over",
            "HorizontalPodAutoscaler/web,ScaledObject/orders",
        )],
    ] {
        let p = policy(&annotations, false);
        let whole = gate(&p, all.iter());
        let indexed = gate(&p, index.targeting("team", &p.spec.target_ref));
        assert_eq!(whole, indexed, "{annotations:?}");
    }
    let seen: Vec<String> = index
        .targeting("team", &policy(&[], false).spec.target_ref)
        .map(|h| h.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(seen, ["web", "keda-hpa-orders"]);
}

/// A policy named `name` on `team/web` (or `target`), created at `created`.
fn rival(name: &str, created: &str, target: serde_json::Value, dry_run: bool) -> ScalingPolicy {
    serde_json::from_value(json!({
        "apiVersion": "tidal.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": "team", "creationTimestamp": created},
        "spec": {"targetRef": target, "maxReplicas": 10, "dryRun": dry_run}
    }))
    .expect("policy")
}

/// Two policies of one workload: the first one writes, the later one holds naming it; a dry
/// run, another workload or another group is no rival; the earlier one's name breaks a tie.
#[test]
fn a_second_policy_of_the_same_workload_holds_naming_the_first() {
    use super::gate::{POLICY, gate_among};
    let first = rival("first", "2026-01-01T00:00:00Z", web(), false);
    let second = rival("second", "2026-01-02T00:00:00Z", web(), false);
    let both = [first.clone(), second.clone()];
    let no_hpas: Vec<HorizontalPodAutoscaler> = Vec::new();
    assert_eq!(gate_among(&first, &no_hpas, &both), Gate::Write);
    // Through the cycle's index, as the controller asks: the same answer.
    let index = super::gate::PolicyIndex::build(vec![
        std::sync::Arc::new(first.clone()),
        std::sync::Arc::new(second.clone()),
        std::sync::Arc::new(rival(
            "api",
            "2025-01-01T00:00:00Z",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}),
            false,
        )),
    ]);
    assert_eq!(
        gate_among(
            &second,
            &no_hpas,
            index.targeting("team", &second.spec.target_ref)
        ),
        gate_among(&second, &no_hpas, &both)
    );
    assert_eq!(index.targeting("team", &second.spec.target_ref).count(), 2);
    let g = gate_among(&second, &no_hpas, &both);
    assert_eq!(
        g,
        Gate::Conflict(Other {
            kind: POLICY,
            namespace: "team".into(),
            name: "first".into(),
            via: None,
        })
    );
    let (reason, message) = g.holding(&second.spec.target_ref).expect("holds");
    assert_eq!(reason, "ConflictingAutoscaler");
    assert!(
        message
            .starts_with("ScalingPolicy team/first also scales Deployment web and was there first"),
        "{message}"
    );
    // A pinned count is a write too; a plain pause and a dry run write nothing.
    let mut pinned = second.clone();
    pinned.metadata.annotations = Some([("tidal.dev/paused-replicas".into(), "3".into())].into());
    assert!(matches!(
        gate_among(&pinned, &no_hpas, &both),
        Gate::Conflict(_)
    ));
    let mut paused = second.clone();
    paused.metadata.annotations = Some([("tidal.dev/paused".into(), "true".into())].into());
    assert_eq!(
        gate_among(&paused, &no_hpas, &both),
        Gate::Paused { replicas: None }
    );
    let dry_second = rival("second", "2026-01-02T00:00:00Z", web(), true);
    assert_eq!(gate_among(&dry_second, &no_hpas, &both), Gate::DryRun);
    // A dry run that came first is no rival.
    let dry_first = rival("first", "2026-01-01T00:00:00Z", web(), true);
    assert_eq!(
        gate_among(&second, &no_hpas, &[dry_first, second.clone()]),
        Gate::Write
    );
    // Another workload, another group: no rival.
    let other_target = rival(
        "first",
        "2026-01-01T00:00:00Z",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}),
        false,
    );
    let other_group = rival(
        "first",
        "2026-01-01T00:00:00Z",
        json!({"apiVersion": "example.com/v1", "kind": "Deployment", "name": "web"}),
        false,
    );
    assert_eq!(
        gate_among(&second, &no_hpas, &[other_target, other_group]),
        Gate::Write
    );
    // Created in the same second: the name decides, the same way for both.
    let a = rival("a", "2026-01-01T00:00:00Z", web(), false);
    let b = rival("b", "2026-01-01T00:00:00Z", web(), false);
    let ab = [a.clone(), b.clone()];
    assert_eq!(gate_among(&a, &no_hpas, &ab), Gate::Write);
    assert!(matches!(gate_among(&b, &no_hpas, &ab), Gate::Conflict(o) if o.name == "a"));
    // An HPA conflict is reported before a policy one: it is the older kind of writer.
    let hpas = [hpa("team", "web", web(), None)];
    assert_eq!(gate_among(&second, &hpas, &both), Gate::Conflict(hpa_web()));
}

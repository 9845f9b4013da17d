//! [`OfflinePolicy`] rounds: a real policy on CPU utilization, real pods with requests and
//! agent usage go in; the write the gate allows, the status and the history come out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;
use crate::sources::{ContainerUsage, PodUsage};

const NOW: f64 = 1_800_000_000.0;

/// A policy on Deployment `web` at 50% CPU, 1..=10 replicas, with `annotations` and the
/// spec's `extra` fields.
fn policy(annotations: serde_json::Value, extra: serde_json::Value) -> ScalingPolicy {
    let mut spec = json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1,
        "maxReplicas": 10,
        "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 50}}],
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy",
        "metadata": {"name": "p", "namespace": "shop", "generation": 1, "uid": "u-1",
                     "annotations": annotations},
        "spec": spec,
    }))
    .expect("policy")
}

/// Ready pod `web-<i>`, one container `app` requesting 1 core, started long before [`NOW`].
fn pod(i: usize) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{i}"), "namespace": "shop"},
            "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "1"}}}]},
            "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
                       "conditions": [{"type": "Ready", "status": "True",
                                       "lastTransitionTime": "2026-01-01T00:00:10Z"}]},
        }))
        .expect("pod"),
    )
}

/// `n` pods, each using `cores`, sampled at `now`.
fn cluster(n: usize, cores: f64, now: f64) -> (Vec<Arc<Pod>>, Gathered) {
    let pods: Vec<Arc<Pod>> = (0..n).map(pod).collect();
    let usage = (0..n)
        .map(|i| {
            let u = PodUsage {
                containers: BTreeMap::from([(
                    "app".to_string(),
                    ContainerUsage {
                        cpu_cores: Some(cores),
                        memory_working_set_bytes: Some(1e8),
                    },
                )]),
                timestamp_unix_seconds: now,
            };
            (("shop".to_string(), format!("web-{i}")), u)
        })
        .collect::<HashMap<_, _>>();
    let gathered = Gathered {
        usage: Some(Ok(usage)),
        ..Default::default()
    };
    (pods, gathered)
}

fn offline(p: ScalingPolicy) -> OfflinePolicy {
    OfflinePolicy::new(p, &Default::default(), 1.0).expect("valid policy")
}

#[test]
fn a_writing_policy_scales_by_the_hpa_formula_and_checkpoints_its_history() {
    let mut o = offline(policy(json!({}), json!({})));
    assert_eq!(o.gate(), "write");
    // 2 pods at 100% of their request, target 50%: ceil(2 * 100 / 50) = 4.
    let (pods, gathered) = cluster(2, 1.0, NOW);
    let r = o.round(&pods, 2, &gathered, NOW);
    assert_eq!(r.scaled_to, Some(4), "{:?}", r.decision);
    assert!(!r.held);
    assert_eq!(o.status().last_scale_time, Some(time_of(NOW)));
    let checkpoint = o.status().checkpoint.as_ref().expect("a checkpoint");
    assert!(!checkpoint.to_engine().recommendations.is_empty());
    // At 4 pods and 50%, nothing changes, and nothing is written.
    let (pods, gathered) = cluster(4, 0.5, NOW + 1.0);
    let r = o.round(&pods, 4, &gathered, NOW + 1.0);
    assert_eq!((r.scaled_to, r.held), (None, false));
}

#[test]
fn a_dry_run_decides_but_never_writes() {
    let mut o = offline(policy(json!({}), json!({"dryRun": true})));
    assert_eq!(o.gate(), "dryRun");
    let (pods, gathered) = cluster(2, 1.0, NOW);
    let r = o.round(&pods, 2, &gathered, NOW);
    assert_eq!(r.decision.desired_replicas, 4);
    assert_eq!((r.scaled_to, r.held), (None, true));
    assert_eq!(o.status().last_scale_time, None);
    let reasons = &o
        .status()
        .last_decision
        .as_ref()
        .expect("a decision")
        .reasons;
    assert!(
        reasons
            .iter()
            .any(|r| r.ends_with("would scale 2 -> 4 (not applied)")),
        "{reasons:?}"
    );
}

#[test]
fn paused_replicas_are_written_whatever_the_load() {
    let mut o = offline(policy(json!({(gate::PAUSED_REPLICAS): "3"}), json!({})));
    assert_eq!(o.gate(), "paused");
    let (pods, gathered) = cluster(5, 1.0, NOW);
    let r = o.round(&pods, 5, &gathered, NOW);
    assert_eq!(r.scaled_to, Some(3));
    let (pods, gathered) = cluster(3, 1.0, NOW + 1.0);
    assert_eq!(o.round(&pods, 3, &gathered, NOW + 1.0).scaled_to, None);
}

#[test]
fn missing_usage_never_scales_down() {
    let mut o = offline(policy(json!({}), json!({})));
    // 4 pods, 1 with usage far below the target, 3 without any: the HPA's missing-pod rule
    // assumes 100% for the missing ones on a scale-down, so the count holds.
    let (pods, mut gathered) = cluster(4, 0.05, NOW);
    if let Some(Ok(usage)) = gathered.usage.as_mut() {
        usage.retain(|(_, pod), _| pod == "web-0");
    }
    let r = o.round(&pods, 4, &gathered, NOW);
    assert_eq!(r.scaled_to, None, "{:?}", r.decision);
}

#[test]
fn an_invalid_annotation_or_spec_is_refused_with_its_name() {
    let e = OfflinePolicy::new(
        policy(json!({(gate::PAUSED): "yes"}), json!({})),
        &Default::default(),
        1.0,
    )
    .expect_err("refused");
    assert!(e.to_string().contains(gate::PAUSED), "{e}");
    let e = OfflinePolicy::new(
        policy(json!({}), json!({"minReplicas": 5, "maxReplicas": 2})),
        &Default::default(),
        1.0,
    )
    .expect_err("refused");
    assert!(e.to_string().contains("maxReplicas"), "{e}");
}

//! Every branch of a policy's horizontal evaluation, as [`plan`], [`apply`] and [`settle`]
//! run it in a cycle, without a cluster: a real policy, real pods and a gathered Prometheus
//! value go in; the planned write, the final status, the history and the outcome come out.
//! [`apply`] runs against a recording fake of [`Actuate`].

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::discovery::ApiResource;
use serde_json::json;

use super::*;
use crate::actuators::Grant;
use crate::api::{ConditionStatus, ConditionType};
use crate::controller::fake::Recorder;
use crate::controller::gate::Other;
use crate::controller::observe::Gathered;
use crate::controller::{compile, time_of};
use crate::sources::prometheus::PromSample;

const NOW: f64 = 1_800_000_000.0;
const QUERY: &str = "sum(rate(requests_total[1m]))";

/// A policy on Deployment `web` with one Prometheus metric, 100 requests/s per replica, that
/// scales up by at most 4 pods a minute.
fn policy(extra: serde_json::Value) -> ScalingPolicy {
    let mut spec = json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1,
        "maxReplicas": 20,
        "metrics": [{"name": "rps", "prometheus": {"query": QUERY, "targetPerReplica": "100"}}],
        // With a behavior, the history keeps scale events (for its rate policies).
        "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0,
                                 "policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]}},
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy",
        "metadata": {"name": "p", "namespace": "shop", "generation": 3, "uid": "u-1"},
        "spec": spec,
    }))
    .expect("policy")
}

fn pod(i: usize) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{i}"), "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running", "startTime": "2027-01-15T07:00:00Z",
                       "conditions": [{"type": "Ready", "status": "True",
                                       "lastTransitionTime": "2027-01-15T07:00:10Z"}]},
        }))
        .expect("pod"),
    )
}

/// The gathered data: `rps` requests/s in total, sampled now.
fn gathered(rps: f64) -> Gathered {
    Gathered {
        prometheus: HashMap::from([(
            QUERY.to_string(),
            Ok(vec![PromSample {
                labels: Default::default(),
                value: rps,
                timestamp_unix_seconds: NOW,
            }]),
        )]),
        ..Default::default()
    }
}

/// Plans one evaluation of `p` at 2 replicas (2 ready pods) on `rps`, behind `gate`.
fn planned(p: &ScalingPolicy, gate: &Gate, rps: f64) -> Planned {
    let compiled = compile(p, &Default::default()).expect("valid policy");
    let pods = [pod(0), pod(1)];
    let pods: Vec<&Arc<Pod>> = pods.iter().collect();
    let gathered = gathered(rps);
    let old = ScalingPolicyStatus::default();
    plan(&PlanInput {
        policy: p,
        compiled: &compiled,
        gate,
        facts: Facts {
            namespace: "shop",
            pods: &pods,
            spec_replicas: 2,
            status_replicas: Some(2),
            history: None,
            gathered: &gathered,
        },
        old: &old,
        sample_window_seconds: 1.0,
        now: NOW,
    })
}

fn settled(
    p: &ScalingPolicy,
    gate: &Gate,
    rps: f64,
    written: Option<Result<ScaleOutcome, ActuateError>>,
) -> Settled {
    let planned = planned(p, gate, rps);
    settle(
        planned,
        written.as_ref(),
        gate,
        p,
        &ScalingPolicyStatus::default(),
        &time_of(NOW),
    )
}

fn hpa() -> Other {
    Other {
        kind: "HorizontalPodAutoscaler",
        namespace: "shop".into(),
        name: "web".into(),
        via: None,
    }
}

fn reasons(s: &ScalingPolicyStatus) -> Vec<String> {
    s.last_decision
        .as_ref()
        .map(|d| d.reasons.clone())
        .unwrap_or_default()
}

fn condition(s: &ScalingPolicyStatus, kind: ConditionType) -> (ConditionStatus, String, String) {
    let c = s
        .conditions
        .iter()
        .find(|c| c.kind == kind)
        .expect("condition");
    (
        c.status,
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

fn forbidden() -> ActuateError {
    ActuateError::Forbidden {
        verb: "update",
        object: "deployments/web/scale in namespace shop".into(),
        detail: "no".into(),
        grant: Grant::Base,
    }
}

#[test]
fn a_writing_gate_plans_the_decisions_scale() {
    let p = policy(json!({}));
    let planned = planned(&p, &Gate::Write, 400.0);
    assert_eq!(planned.decision.desired_replicas, 4);
    let intent = planned.scale.expect("a scale to write");
    assert_eq!((intent.from, intent.to), (2, 4));
    assert_eq!(
        Some(intent.reason.as_str()),
        planned.decision.rescale_reason.as_deref()
    );
    assert_eq!(planned.outcome, Outcome::Unchanged);
    assert_eq!(planned.warning, None);
    assert_eq!(planned.status.observed_generation, Some(3));
    assert_eq!(planned.status.desired_replicas, Some(4));
}

#[test]
fn no_change_plans_no_write() {
    let p = policy(json!({}));
    for gate in [Gate::Write, Gate::DryRun, Gate::Paused { replicas: None }] {
        let planned = planned(&p, &gate, 200.0);
        assert!(!planned.decision.rescale, "{gate:?}");
        assert_eq!(planned.scale, None, "{gate:?}");
        assert_eq!(planned.outcome, Outcome::Unchanged, "{gate:?}");
    }
}

#[test]
fn an_applied_scale_claims_the_scale_and_checkpoints_its_event() {
    let p = policy(json!({}));
    let s = settled(
        &p,
        &Gate::Write,
        400.0,
        Some(Ok(ScaleOutcome::Applied { attempts: 1 })),
    );
    assert!(s.scaled && !s.failed && !s.decide_again);
    assert_eq!(s.outcome, Outcome::ScaledUp);
    assert_eq!(s.status.last_scale_time, Some(time_of(NOW)));
    assert_eq!(s.next.scale_events.len(), 1);
    let checkpoint = s.status.checkpoint.expect("checkpoint");
    assert_eq!(checkpoint.to_engine(), s.next);
    assert_eq!(s.warning, None);
}

#[test]
fn an_already_scaled_target_is_unchanged() {
    let p = policy(json!({}));
    let s = settled(&p, &Gate::Write, 400.0, Some(Ok(ScaleOutcome::Unchanged)));
    assert!(!s.scaled && !s.failed);
    assert_eq!(s.outcome, Outcome::Unchanged);
    assert_eq!(s.status.last_scale_time, None);
}

#[test]
fn a_dry_run_decides_and_writes_nothing_nor_counts_it() {
    let p = policy(json!({"dryRun": true}));
    let planned = planned(&p, &Gate::DryRun, 400.0);
    assert!(planned.decision.rescale);
    assert_eq!(planned.scale, None);
    assert_eq!(planned.outcome, Outcome::NotApplied);
    assert!(
        planned.next.scale_events.is_empty(),
        "not the decision's write"
    );
    assert!(
        reasons(&planned.status).contains(&"dryRun: would scale 2 -> 4 (not applied)".into()),
        "{:?}",
        reasons(&planned.status)
    );
    let s = settled(&p, &Gate::DryRun, 400.0, None);
    assert_eq!(s.outcome, Outcome::NotApplied);
    assert!(!s.scaled);
    assert!(
        s.status
            .checkpoint
            .expect("checkpoint")
            .scale_events
            .is_empty()
    );
}

#[test]
fn a_pause_at_a_count_writes_only_that_count() {
    let p = policy(json!({}));
    let planned_at_3 = planned(&p, &Gate::Paused { replicas: Some(3) }, 400.0);
    let intent = planned_at_3.scale.expect("the paused count");
    assert_eq!((intent.from, intent.to), (2, 3));
    assert_eq!(
        intent.reason,
        "paused at 3 replicas (tidal.dev/paused-replicas)"
    );
    assert_eq!(planned_at_3.outcome, Outcome::NotApplied);
    assert!(planned_at_3.next.scale_events.is_empty());
    let (status, reason, _) = condition(&planned_at_3.status, ConditionType::ScalingActive);
    assert_eq!(
        (status, reason.as_str()),
        (ConditionStatus::False, "ScalingPaused")
    );
    // Already at the paused count, or paused without one: nothing to write.
    for gate in [
        Gate::Paused { replicas: Some(2) },
        Gate::Paused { replicas: None },
    ] {
        assert_eq!(planned(&p, &gate, 400.0).scale, None, "{gate:?}");
    }
    // The paused count, once written, is a scale down from the decision's point of view too.
    let s = settled(
        &p,
        &Gate::Paused { replicas: Some(1) },
        400.0,
        Some(Ok(ScaleOutcome::Applied { attempts: 1 })),
    );
    assert_eq!(s.outcome, Outcome::ScaledDown);
    assert!(s.scaled);
}

#[test]
fn another_autoscaler_holds_the_policy_with_one_warning() {
    let p = policy(json!({}));
    let planned = planned(&p, &Gate::Conflict(hpa()), 400.0);
    assert_eq!(planned.scale, None);
    assert_eq!(planned.outcome, Outcome::NotApplied);
    let (reason, message) = planned.warning.clone().expect("a warning");
    assert_eq!(reason, "ConflictingAutoscaler");
    assert!(message.contains("tidal.dev/take-over"), "{message}");
    let (status, reason, text) = condition(&planned.status, ConditionType::ScalingActive);
    assert_eq!(status, ConditionStatus::False);
    assert_eq!(reason, "ConflictingAutoscaler");
    assert_eq!(text, message);
    assert_eq!(
        condition(&planned.status, ConditionType::Ready).0,
        ConditionStatus::False
    );
}

#[test]
fn a_taken_over_target_is_written_and_says_whose_it_was() {
    let p = policy(json!({}));
    let planned = planned(&p, &Gate::TakenOver(hpa()), 400.0);
    assert!(planned.scale.is_some());
    let s = settled(
        &p,
        &Gate::TakenOver(hpa()),
        400.0,
        Some(Ok(ScaleOutcome::Applied { attempts: 1 })),
    );
    assert_eq!(s.outcome, Outcome::ScaledUp);
    let r = reasons(&s.status);
    assert!(
        r.iter()
            .any(|r| r.starts_with("took over ") && r.contains("tidal.dev/take-over")),
        "{r:?}"
    );
}

#[test]
fn a_superseded_write_holds_and_decides_again_at_once() {
    let p = policy(json!({}));
    let e = ActuateError::Superseded {
        object: "deployments/web/scale in namespace shop".into(),
        expected: 2,
        found: 7,
    };
    let s = settled(&p, &Gate::Write, 400.0, Some(Err(e)));
    assert!(s.decide_again && !s.scaled && !s.failed);
    assert_eq!(s.outcome, Outcome::NotApplied);
    assert_eq!(s.status.desired_replicas, Some(7));
    assert_eq!(s.status.last_scale_time, None);
    assert!(s.next.scale_events.is_empty());
    assert_eq!(s.warning, None);
    assert!(
        reasons(&s.status)
            .iter()
            .any(|r| r.starts_with("not applied: ") && r.contains("from 2 to 7")),
        "{:?}",
        reasons(&s.status)
    );
}

#[test]
fn a_lost_lease_writes_nothing_and_claims_nothing() {
    let p = policy(json!({}));
    let e = ActuateError::NotLeader {
        what: "deployments/web/scale in namespace shop".into(),
    };
    let s = settled(&p, &Gate::Write, 400.0, Some(Err(e)));
    assert!(!s.decide_again && !s.scaled && !s.failed);
    assert_eq!(s.outcome, Outcome::NotApplied);
    assert_eq!(s.warning, None);
    assert!(s.next.scale_events.is_empty());
    assert_eq!(s.status.last_scale_time, None);
}

#[test]
fn a_refused_write_fails_with_the_error_in_able_to_scale() {
    let p = policy(json!({}));
    let s = settled(&p, &Gate::Write, 400.0, Some(Err(forbidden())));
    assert!(s.failed && !s.scaled && !s.decide_again);
    assert_eq!(s.outcome, Outcome::Failed);
    let (reason, message) = s.warning.clone().expect("a warning");
    assert_eq!(reason, "FailedRescale");
    assert_eq!(message, forbidden().to_string());
    let (status, reason, text) = condition(&s.status, ConditionType::AbleToScale);
    assert_eq!(status, ConditionStatus::False);
    assert_eq!(reason, "FailedUpdateScale");
    assert_eq!(
        text,
        format!(
            "the scaler was unable to update the target scale: {}",
            forbidden()
        )
    );
    assert!(s.next.scale_events.is_empty());
}

#[test]
fn a_deprecated_vertical_mode_is_named_in_the_reasons() {
    let p = policy(json!({"vertical": {"mode": "Recommend"}}));
    let s = settled(&p, &Gate::Write, 200.0, None);
    assert!(
        reasons(&s.status)
            .iter()
            .any(|r| r.starts_with("spec.vertical.mode Recommend is deprecated")),
        "{:?}",
        reasons(&s.status)
    );
    let p = policy(json!({"vertical": {"mode": "Off"}}));
    let s = settled(&p, &Gate::Write, 200.0, None);
    assert!(
        !reasons(&s.status).iter().any(|r| r.contains("deprecated")),
        "{:?}",
        reasons(&s.status)
    );
}

fn web() -> (ScaleTarget, ObservedScale) {
    (
        ScaleTarget {
            resource: ApiResource::erase::<Deployment>(&()),
            namespace: "shop".into(),
            name: "web".into(),
        },
        ObservedScale {
            replicas: 2,
            resource_version: Some("41".into()),
        },
    )
}

fn intent() -> ScaleIntent {
    ScaleIntent {
        from: 2,
        to: 4,
        reason: "rps above target".into(),
    }
}

#[tokio::test]
async fn apply_scales_then_records_the_rescale_event() {
    let (target, observed) = web();
    let p = policy(json!({}));
    let fake = Recorder::new(Ok(ScaleOutcome::Applied { attempts: 2 }), Ok(()));
    let applied = apply(&intent(), &target, &observed, &p, &fake).await;
    assert_eq!(applied.scale, Ok(ScaleOutcome::Applied { attempts: 2 }));
    assert!(applied.event.is_none());
    assert_eq!(
        fake.calls(),
        [
            "scale deployments/web/scale in namespace shop from 2 to 4".to_string(),
            format!(
                "event p false SuccessfulRescale ScaleTo4: {}",
                rescale_note(4, "rps above target")
            ),
        ]
    );
}

#[tokio::test]
async fn apply_records_no_event_for_a_write_that_did_not_change_the_target() {
    let (target, observed) = web();
    let p = policy(json!({}));
    for answer in [Ok(ScaleOutcome::Unchanged), Err(forbidden())] {
        let fake = Recorder::new(answer.clone(), Ok(()));
        let applied = apply(&intent(), &target, &observed, &p, &fake).await;
        assert_eq!(applied.scale, answer);
        assert_eq!(fake.calls().len(), 1, "{:?}", fake.calls());
    }
}

#[tokio::test]
async fn a_failed_event_does_not_undo_the_scale() {
    let (target, observed) = web();
    let p = policy(json!({}));
    let fake = Recorder::new(Ok(ScaleOutcome::Applied { attempts: 1 }), Err(forbidden()));
    let applied = apply(&intent(), &target, &observed, &p, &fake).await;
    assert_eq!(applied.scale, Ok(ScaleOutcome::Applied { attempts: 1 }));
    assert_eq!(applied.event, Some(forbidden()));
    let s = settle(
        planned(&p, &Gate::Write, 400.0),
        Some(&applied.scale),
        &Gate::Write,
        &p,
        &ScalingPolicyStatus::default(),
        &time_of(NOW),
    );
    assert!(s.scaled && !s.failed);
    assert_eq!(s.warning, None);
}

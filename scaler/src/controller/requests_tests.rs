//! A round of vertical writes without a cluster: which writes [`request_writes`] plans for
//! each mode, what [`apply_requests`] asks the recording fake for and reports, and where the
//! histograms live after each checkpoint write result.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;
use crate::actuators::Grant;
use crate::actuators::replicas::ScaleOutcome;
use crate::actuators::resources::TemplateKind;
use crate::api::VerticalMode;
use crate::controller::fake::Recorder;
use crate::controller::target::Workload;
use crate::controller::vertical::request_writes;
use crate::engine::vertical::{ContainerRecommendation, Resources};

const MI: f64 = 1024.0 * 1024.0;

/// `app`: CPU 250m in [200m, 400m], memory 150Mi in [100Mi, 200Mi], on `samples` samples.
fn rec(samples: u64) -> ContainerRecommendation {
    let r = |cpu: f64, mem: f64| Resources {
        cpu_cores: Some(cpu),
        memory_bytes: Some(mem * MI),
    };
    ContainerRecommendation {
        container: "app".into(),
        target: r(0.25, 150.0),
        lower_bound: r(0.2, 100.0),
        upper_bound: r(0.4, 200.0),
        uncapped_target: r(0.25, 150.0),
        coordinated: vec![],
        capped: vec![],
        confidence: 1.0,
        total_samples: samples,
    }
}

/// A container spec with these requests.
fn app(cpu: &str, memory: &str) -> serde_json::Value {
    json!({"name": "app", "resources": {"requests": {"cpu": cpu, "memory": memory}}})
}

fn deployment(cpu: &str) -> Workload {
    Workload::Deployment(Arc::new(
        serde_json::from_value::<Deployment>(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [app(cpu, "128Mi")]}}},
        }))
        .expect("deployment"),
    ))
}

fn pod(name: &str, cpu: &str, terminating: bool) -> Arc<Pod> {
    let mut pod = json!({
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"containers": [app(cpu, "128Mi")]},
    });
    if terminating {
        pod["metadata"]["deletionTimestamp"] = json!("2027-01-15T07:00:00Z");
    }
    Arc::new(serde_json::from_value(pod).expect("pod"))
}

fn policy() -> ScalingPolicy {
    serde_json::from_value(json!({
        "apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "maxReplicas": 5,
                 "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 60}}],
                 "vertical": {"mode": "InPlace"}},
    }))
    .expect("policy")
}

fn forbidden(object: &str) -> ActuateError {
    ActuateError::Forbidden {
        verb: "patch",
        object: object.into(),
        detail: "no".into(),
        grant: Grant::VerticalInPlace,
    }
}

#[test]
fn template_mode_patches_the_template_once_its_requests_leave_the_bounds() {
    let w = deployment("100m");
    let writes = request_writes(VerticalMode::Template, Some(&w), "web", &[], &[rec(60)], 60);
    let [
        RequestWrite::Template {
            kind,
            name,
            changes,
            note,
        },
    ] = writes.as_slice()
    else {
        panic!("one template write: {writes:?}");
    };
    assert_eq!((*kind, name.as_str()), (TemplateKind::Deployment, "web"));
    assert_eq!(note, "app: cpu 100m -> 250m");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].requests.get("cpu"), Some(&0.25));
    assert_eq!(
        changes[0].requests.get("memory"),
        None,
        "memory is in bounds"
    );

    // In bounds, too few samples, or no template: nothing.
    let inside = deployment("300m");
    for (w, samples) in [(Some(&inside), 60), (Some(&w), 59), (None, 60)] {
        let writes = request_writes(VerticalMode::Template, w, "web", &[], &[rec(samples)], 60);
        assert!(writes.is_empty(), "{writes:?}");
    }
}

#[test]
fn in_place_mode_resizes_each_live_pod_outside_the_bounds() {
    let (a, b, c) = (
        pod("web-a", "100m", false),
        pod("web-b", "300m", false),
        pod("web-c", "100m", true),
    );
    let pods = [&a, &b, &c];
    let writes = request_writes(VerticalMode::InPlace, None, "web", &pods, &[rec(60)], 60);
    let [RequestWrite::Resize { pod, note, changes }] = writes.as_slice() else {
        panic!("one resize (web-b is in bounds, web-c is terminating): {writes:?}");
    };
    assert_eq!(pod, "web-a");
    assert_eq!(note, "web-a: app: cpu 100m -> 250m");
    assert_eq!(changes[0].requests.get("cpu"), Some(&0.25));
}

#[test]
fn recommending_modes_write_nothing() {
    let w = deployment("100m");
    let a = pod("web-a", "100m", false);
    for mode in [VerticalMode::Off, VerticalMode::Recommend] {
        let writes = request_writes(mode, Some(&w), "web", &[&a], &[rec(600)], 60);
        assert!(writes.is_empty(), "{mode:?}: {writes:?}");
    }
}

#[tokio::test]
async fn a_round_writes_in_order_and_the_first_refusal_speaks_for_it() {
    let (a, b, c) = (
        pod("web-a", "100m", false),
        pod("web-b", "50m", false),
        pod("web-c", "90m", false),
    );
    let writes = request_writes(
        VerticalMode::InPlace,
        None,
        "web",
        &[&a, &b, &c],
        &[rec(60)],
        60,
    );
    assert_eq!(writes.len(), 3);
    let refused_b = forbidden("pods/web-b/resize in namespace shop");
    let refused_c = forbidden("pods/web-c/resize in namespace shop");
    let fake = Recorder::new(Ok(ScaleOutcome::Unchanged), Ok(())).answering_requests(vec![
        Ok(()),
        Err(refused_b.clone()),
        Err(refused_c.clone()),
    ]);
    let done = apply_requests(&writes, "shop", &policy(), &fake).await;
    assert!(done.applied);
    assert_eq!(
        done.failed,
        Some(VerticalWriteFailure {
            reason: "FailedResize",
            message: format!("web-b: {refused_b}"),
        })
    );
    assert_eq!(done.write_errors, [refused_b.clone(), refused_c.clone()]);
    assert!(done.event_errors.is_empty());
    assert_eq!(
        fake.calls(),
        [
            "resize shop/web-a: app cpu=0.25".to_string(),
            "event p false ResizedInPlace Scale: web-a: app: cpu 100m -> 250m".into(),
            "resize shop/web-b: app cpu=0.25".into(),
            format!("event p true FailedResize Scale: web-b: {refused_b}"),
            "resize shop/web-c: app cpu=0.25".into(),
            format!("event p true FailedResize Scale: web-c: {refused_c}"),
        ]
    );
}

#[tokio::test]
async fn a_lost_lease_ends_the_round_quietly() {
    let (a, b) = (pod("web-a", "100m", false), pod("web-b", "50m", false));
    let writes = request_writes(
        VerticalMode::InPlace,
        None,
        "web",
        &[&a, &b],
        &[rec(60)],
        60,
    );
    assert_eq!(writes.len(), 2);
    let lost = ActuateError::NotLeader {
        what: "pods/web-a/resize in namespace shop".into(),
    };
    let fake = Recorder::new(Ok(ScaleOutcome::Unchanged), Ok(()))
        .answering_requests(vec![Err(lost.clone()), Ok(())]);
    let done = apply_requests(&writes, "shop", &policy(), &fake).await;
    assert!(!done.applied);
    assert_eq!(
        done.failed, None,
        "a lost Lease is no failure of the policy"
    );
    assert_eq!(done.write_errors, [lost]);
    assert_eq!(
        fake.calls(),
        ["resize shop/web-a: app cpu=0.25".to_string()],
        "no Event, and no write after it"
    );
}

#[tokio::test]
async fn a_refused_template_patch_fails_the_round_and_events_are_never_fatal() {
    let w = deployment("100m");
    let writes = request_writes(VerticalMode::Template, Some(&w), "web", &[], &[rec(60)], 60);
    let refused = forbidden("deployments/web in namespace shop");
    let event_refused = forbidden("events for shop/p");
    let fake = Recorder::new(Ok(ScaleOutcome::Unchanged), Err(event_refused.clone()))
        .answering_requests(vec![Err(refused.clone())]);
    let done = apply_requests(&writes, "shop", &policy(), &fake).await;
    assert!(!done.applied);
    assert_eq!(
        done.failed,
        Some(VerticalWriteFailure {
            reason: "FailedUpdateRequests",
            message: refused.to_string(),
        })
    );
    assert_eq!(done.event_errors, [event_refused]);
    assert_eq!(
        fake.calls(),
        [
            "patch template Deployment shop/web: app cpu=0.25".to_string(),
            format!("event p true FailedUpdateRequests Scale: {refused}"),
        ]
    );
    // Nothing to write: nothing asked, nothing reported.
    let done = apply_requests(&[], "shop", &policy(), &fake).await;
    assert!(!done.applied && done.failed.is_none() && done.write_errors.is_empty());
}

#[test]
fn where_the_histograms_live_after_a_checkpoint_write() {
    use CheckpointWrite::{Create, Replace};
    let conflict = ActuateError::Conflict {
        verb: "create",
        object: "scalingpolicycheckpoints/p in namespace shop".into(),
        attempts: 1,
        detail: "already exists".into(),
    };
    let not_leader = ActuateError::NotLeader {
        what: "scalingpolicycheckpoints/p in namespace shop".into(),
    };
    let no_crd = ActuateError::NotFound {
        verb: "patch",
        object: "scalingpolicycheckpoints/p in namespace shop".into(),
        detail: "the server could not find the requested resource".into(),
    };
    // The last column: whether the attempt restarts the checkpoint interval. Only a lapsed
    // Lease leaves it where it was, so the next leading cycle writes the checkpoint.
    type Row = (
        CheckpointWrite,
        Result<(), ActuateError>,
        AfterCheckpoint,
        bool,
    );
    let table: [Row; 7] = [
        (Create, Ok(()), AfterCheckpoint::Stored, true),
        (Replace, Ok(()), AfterCheckpoint::Stored, true),
        // A create that finds an object the read did not see never replaces it.
        (Create, Err(conflict.clone()), AfterCheckpoint::Reread, true),
        (Replace, Err(conflict), AfterCheckpoint::InStatus, true),
        (Create, Err(no_crd.clone()), AfterCheckpoint::InStatus, true),
        (Replace, Err(no_crd), AfterCheckpoint::InStatus, true),
        (Replace, Err(not_leader), AfterCheckpoint::NotLeader, false),
    ];
    for (how, result, want, restarts) in table {
        let after = after_checkpoint(how, &result);
        assert_eq!(after, want, "{how:?} {result:?}");
        assert_eq!(after.restarts_interval(), restarts, "{how:?} {result:?}");
    }
}

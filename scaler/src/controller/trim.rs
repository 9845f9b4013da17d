//! What the watch caches keep of each object.
//!
//! The caches hold every pod, Deployment, StatefulSet and ScalingPolicy the scaler watches,
//! for the life of the process, so their size is the scaler's memory. Most of an object is
//! never read: managed fields, annotations (a `last-applied-configuration` copies the whole
//! object), images, commands, env, probes, volumes, container statuses. Each function keeps
//! exactly the fields the controller reads (the tests check that every reader gives the same
//! answer on a trimmed object) and drops the rest as the object enters the cache.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodCondition,
    PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::ScalingPolicy;

fn meta(m: &mut ObjectMeta) {
    m.managed_fields = None;
    m.annotations = None;
    m.finalizers = None;
    m.owner_references = None;
}

fn container(c: Container) -> Container {
    Container {
        name: c.name,
        resources: c.resources,
        restart_policy: c.restart_policy,
        ..Container::default()
    }
}

fn pod_spec(s: PodSpec) -> PodSpec {
    PodSpec {
        containers: s.containers.into_iter().map(container).collect(),
        init_containers: s
            .init_containers
            .map(|cs| cs.into_iter().map(container).collect()),
        resources: s.resources,
        node_name: s.node_name,
        ..PodSpec::default()
    }
}

fn template(t: &mut PodTemplateSpec) {
    if let Some(m) = t.metadata.as_mut() {
        meta(m);
    }
    t.spec = t.spec.take().map(pod_spec);
}

/// An `OOMKilled` termination, reduced to its reason and end (what
/// [`super::vertical::oom_kills`] reads); any other state is dropped.
fn oom_state(s: Option<ContainerState>) -> Option<ContainerState> {
    let t = s?
        .terminated
        .filter(|t| t.reason.as_deref() == Some("OOMKilled"))?;
    Some(ContainerState {
        terminated: Some(ContainerStateTerminated {
            reason: t.reason,
            finished_at: t.finished_at,
            exit_code: t.exit_code,
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    })
}

/// The container statuses that show an OOM kill (state or last state), with their name and
/// that termination only; `None` when no container was OOM-killed (the common case).
fn oom_statuses(cs: Option<Vec<ContainerStatus>>) -> Option<Vec<ContainerStatus>> {
    let kept: Vec<ContainerStatus> = cs?
        .into_iter()
        .filter_map(|c| {
            let state = oom_state(c.state);
            let last_state = oom_state(c.last_state);
            (state.is_some() || last_state.is_some()).then(|| ContainerStatus {
                name: c.name,
                state,
                last_state,
                ..ContainerStatus::default()
            })
        })
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// A pod: identity, labels and deletion; containers' names, resources and restart policy;
/// phase, start time, IPs, the Ready condition and the containers' OOM kills.
pub fn pod(p: &mut Pod) {
    meta(&mut p.metadata);
    p.spec = p.spec.take().map(pod_spec);
    p.status = p.status.take().map(|s| PodStatus {
        phase: s.phase,
        start_time: s.start_time,
        pod_ip: s.pod_ip,
        conditions: s.conditions.map(|cs| {
            cs.into_iter()
                .filter(|c| c.type_ == "Ready")
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    last_transition_time: c.last_transition_time,
                    ..PodCondition::default()
                })
                .collect()
        }),
        container_statuses: oom_statuses(s.container_statuses),
        ..PodStatus::default()
    });
}

/// A Deployment: metadata without annotations, its spec with a trimmed pod template, its
/// status.
pub fn deployment(d: &mut Deployment) {
    meta(&mut d.metadata);
    if let Some(s) = d.spec.as_mut() {
        template(&mut s.template);
    }
}

/// A StatefulSet, likewise (its volume claim templates are never read).
pub fn statefulset(s: &mut StatefulSet) {
    meta(&mut s.metadata);
    if let Some(spec) = s.spec.as_mut() {
        template(&mut spec.template);
        spec.volume_claim_templates = None;
    }
}

/// A ScalingPolicy: everything but managed fields and the annotations the controller does not
/// read (it reads only [`super::gate::ANNOTATIONS`]).
pub fn policy(p: &mut ScalingPolicy) {
    p.metadata.managed_fields = None;
    if let Some(a) = p.metadata.annotations.as_mut() {
        a.retain(|k, _| super::gate::ANNOTATIONS.contains(&k.as_str()));
    }
    if p.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.is_empty())
    {
        p.metadata.annotations = None;
    }
}

/// An HPA: its name, namespace, owner references (a KEDA ScaledObject's) and
/// `spec.scaleTargetRef`; the gate reads nothing else.
pub fn hpa(h: &mut HorizontalPodAutoscaler) {
    let owners = h.metadata.owner_references.take();
    meta(&mut h.metadata);
    h.metadata.owner_references = owners;
    h.metadata.labels = None;
    h.status = None;
    if let Some(s) = h.spec.as_mut() {
        s.metrics = None;
        s.behavior = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::controller::target::engine_pod;
    use crate::controller::vertical::{oom_kills, template_requests};
    use serde_json::json;

    fn full_pod() -> Pod {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {
                "name": "web-1", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
                "labels": {"app": "web"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-x", "uid": "r1"}],
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                "deletionTimestamp": "2026-11-26T00:01:00Z"
            },
            "spec": {
                "nodeName": "n1",
                "containers": [{
                    "name": "app", "image": "registry.invalid/app:1", "command": ["/app"],
                    "env": [{"name": "A", "value": "b"}],
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}
                }],
                "initContainers": [{"name": "proxy", "image": "x", "restartPolicy": "Always",
                                    "resources": {"requests": {"cpu": "50m"}}}],
                "volumes": [{"name": "v", "emptyDir": {}}],
                "tolerations": [{"key": "k", "operator": "Exists"}]
            },
            "status": {
                "phase": "Running", "startTime": "2026-11-26T00:00:00Z", "podIP": "10.0.0.7",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-26T00:00:10Z",
                     "message": "m"}
                ],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "x", "imageID": "y"}]
            }
        }))
        .expect("pod");
        // As `kubectl apply` leaves it: a copy of the applied object.
        let applied = serde_json::to_string(&pod).expect("json");
        pod.metadata.annotations = Some(
            [(
                "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                applied,
            )]
            .into(),
        );
        pod
    }

    /// Every reader of a cached pod gives the same answer on the trimmed pod, and the
    /// trimmed pod is much smaller.
    #[test]
    fn a_trimmed_pod_reads_the_same() {
        let full = full_pod();
        let mut small = full.clone();
        pod(&mut small);
        assert_eq!(engine_pod(&small), engine_pod(&full));
        assert_eq!(small.metadata.labels, full.metadata.labels);
        assert_eq!(small.metadata.uid, full.metadata.uid);
        assert_eq!(
            small.metadata.deletion_timestamp,
            full.metadata.deletion_timestamp
        );
        let c = &small.spec.as_ref().expect("spec").containers[0];
        assert_eq!(
            c.resources,
            full.spec.as_ref().expect("spec").containers[0].resources
        );
        assert!(c.image.is_none() && c.env.is_none());
        assert!(small.metadata.annotations.is_none() && small.metadata.managed_fields.is_none());
        assert_eq!(
            small
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .as_deref(),
            Some("10.0.0.7")
        );
        let len = |p: &Pod| serde_json::to_string(p).expect("json").len();
        assert!(
            len(&small) * 2 < len(&full),
            "{} vs {}",
            len(&small),
            len(&full)
        );
    }

    /// The OOM reader gives the same answer on a trimmed pod; only the OOM-killed
    /// container's status is kept, reduced to that termination.
    #[test]
    fn a_trimmed_pod_keeps_its_oom_kills_only() {
        let mut full = full_pod();
        full.status = Some(
            serde_json::from_value(json!({
                "phase": "Running",
                "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 2, "image": "x", "imageID": "y",
                     "state": {"running": {"startedAt": "2026-11-26T00:00:30Z"}},
                     "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                        "startedAt": "2026-11-26T00:00:00Z", "finishedAt": "2026-11-26T00:00:20Z",
                        "containerID": "containerd://abc"}}},
                    {"name": "proxy", "ready": true, "restartCount": 1, "image": "x", "imageID": "y",
                     "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                        "finishedAt": "2026-11-26T00:00:20Z"}}}
                ]
            }))
            .expect("status"),
        );
        let mut small = full.clone();
        pod(&mut small);
        let (f, s) = (Arc::new(full), Arc::new(small.clone()));
        let kills = oom_kills(&[&s]);
        assert_eq!(kills, oom_kills(&[&f]));
        assert_eq!(kills.len(), 1, "{kills:?}");
        assert_eq!(kills[0].container, "app");
        assert_eq!(kills[0].pod_uid, "u1");
        assert_eq!(kills[0].memory_request_bytes, 64.0 * 1024.0 * 1024.0);
        assert_eq!(kills[0].at, 1_795_651_220.0);
        let statuses = small
            .status
            .and_then(|s| s.container_statuses)
            .expect("the OOM-killed container's status");
        assert_eq!(statuses.len(), 1);
        assert!(statuses[0].state.is_none(), "{statuses:?}");
        let t = statuses[0]
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("terminated");
        assert!(t.container_id.is_none() && t.started_at.is_none());
    }

    #[test]
    fn a_trimmed_deployment_keeps_scale_selector_and_template_requests() {
        let full: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "9",
                         "annotations": {"deployment.kubernetes.io/revision": "3"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                    "spec": {"containers": [{"name": "app", "image": "x",
                        "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}]}
                }
            },
            "status": {"replicas": 3, "readyReplicas": 2}
        }))
        .expect("deployment");
        let mut small = full.clone();
        deployment(&mut small);
        let (s, f) = (
            small.spec.as_ref().expect("spec"),
            full.spec.as_ref().expect("spec"),
        );
        assert_eq!(s.replicas, f.replicas);
        assert_eq!(s.selector, f.selector);
        assert_eq!(
            template_requests(&s.template),
            template_requests(&f.template)
        );
        assert_eq!(small.status, full.status);
        assert_eq!(
            small.metadata.resource_version,
            full.metadata.resource_version
        );
        assert!(
            s.template.spec.as_ref().expect("spec").containers[0]
                .image
                .is_none()
        );
    }

    #[test]
    fn a_trimmed_policy_keeps_only_the_annotations_the_gate_reads() {
        let mut p: ScalingPolicy = serde_json::from_value(json!({
            "apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy",
            "metadata": {"name": "p", "namespace": "shop", "annotations": {
                "tidal.dev/paused": "true",
                "tidal.dev/paused-replicas": "2",
                "tidal.dev/take-over": "HorizontalPodAutoscaler/web",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}"
            }, "managedFields": [{"manager": "kubectl"}]},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "maxReplicas": 3}
        }))
        .expect("policy");
        let full = p.clone();
        policy(&mut p);
        let kept: Vec<&str> = p
            .metadata
            .annotations
            .iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            kept,
            [
                "tidal.dev/paused",
                "tidal.dev/paused-replicas",
                "tidal.dev/take-over"
            ]
        );
        assert!(p.metadata.managed_fields.is_none());
        let none: [HorizontalPodAutoscaler; 0] = [];
        assert_eq!(
            crate::controller::gate::gate(&p, &none),
            crate::controller::gate::gate(&full, &none)
        );
        // Without any of them, no annotations at all.
        let mut bare = full.clone();
        bare.metadata.annotations =
            Some([("a".to_string(), "b".to_string())].into_iter().collect());
        policy(&mut bare);
        assert!(bare.metadata.annotations.is_none());
    }

    #[test]
    fn a_trimmed_hpa_gives_the_gate_the_same_answer() {
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
            "metadata": {"name": "keda-hpa-orders", "namespace": "shop",
                         "labels": {"app": "x"}, "annotations": {"a": "b"},
                         "ownerReferences": [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                                              "name": "orders", "uid": "u"}]},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "maxReplicas": 4,
                     "metrics": [{"type": "External", "external": {"metric": {"name": "m"},
                                  "target": {"type": "AverageValue", "averageValue": "1"}}}]},
            "status": {"currentReplicas": 2, "desiredReplicas": 2}
        }))
        .expect("hpa");
        let mut small = hpa.clone();
        self::hpa(&mut small);
        assert!(small.status.is_none() && small.metadata.annotations.is_none());
        let p: ScalingPolicy = serde_json::from_value(json!({
            "apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy",
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "maxReplicas": 3}
        }))
        .expect("policy");
        let full = crate::controller::gate::gate(&p, [&hpa]);
        assert!(
            matches!(&full, crate::controller::gate::Gate::Conflict(o) if o.key() == "ScaledObject/orders")
        );
        assert_eq!(crate::controller::gate::gate(&p, [&small]), full);
    }
}

//! Container requests: in place through the pod `resize` subresource (GA in Kubernetes 1.35),
//! or in the workload's pod template (which rolls the pods).
//!
//! Both are strategic-merge patches keyed by container name that set only
//! `resources.requests` of the named containers, under the field manager `tidal-scaler`.
//! Limits are left alone: a request above an existing limit is refused by the API server
//! (422), and that error is reported, never worked around by raising the limit.
//!
//! Neither right is in the base RBAC: a 403 names the overlay that grants it
//! ([`Grant::VerticalInPlace`], [`Grant::VerticalTemplate`]).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::{ActuateError, FIELD_MANAGER, Grant, Writer};
use crate::api::quantity_from_f64;

/// New requests for one container, in base units (`cpu` cores, `memory` bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRequests {
    pub container: String,
    pub requests: BTreeMap<String, f64>,
}

/// The strategic-merge patch body `{"spec": {"containers": [...]}}` for `changes`.
/// Memory is rounded up to whole bytes, CPU to whole millicores (as quantities).
pub fn containers_patch(changes: &[ContainerRequests]) -> Value {
    let containers: Vec<Value> = changes
        .iter()
        .map(|c| {
            let requests: serde_json::Map<String, Value> = c
                .requests
                .iter()
                .filter_map(|(k, v)| {
                    let v = if k == "memory" { v.ceil() } else { *v };
                    quantity_from_f64(v).map(|q| (k.clone(), Value::String(q.0)))
                })
                .collect();
            json!({"name": c.container, "resources": {"requests": requests}})
        })
        .collect();
    json!({ "spec": { "containers": containers } })
}

/// The workload kinds whose pod template can be patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    Deployment,
    StatefulSet,
}

impl Writer {
    /// Resize one running pod in place (`pods/<name>/resize`).
    pub async fn resize_pod(
        &self,
        namespace: &str,
        pod: &str,
        changes: &[ContainerRequests],
    ) -> Result<(), ActuateError> {
        let object = format!("pods/{pod}/resize in namespace {namespace}");
        self.ensure_leader(|| object.clone())?;
        let api: Api<Pod> = Api::namespaced(self.client().clone(), namespace);
        self.metrics().request("patch_resize");
        api.patch_resize(
            pod,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Strategic(containers_patch(changes)),
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            ActuateError::from_kube_granted_by("patch", &object, e, Grant::VerticalInPlace)
        })
    }

    /// Set the requests in a Deployment's or StatefulSet's pod template.
    pub async fn patch_template(
        &self,
        kind: TemplateKind,
        namespace: &str,
        name: &str,
        changes: &[ContainerRequests],
    ) -> Result<(), ActuateError> {
        let body = json!({"spec": {"template": containers_patch(changes)}});
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.metrics().request("patch_template");
        match kind {
            TemplateKind::Deployment => {
                let object = format!("deployments/{name} in namespace {namespace}");
                self.ensure_leader(|| object.clone())?;
                let api: Api<Deployment> = Api::namespaced(self.client().clone(), namespace);
                api.patch(name, &pp, &Patch::Strategic(body))
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        ActuateError::from_kube_granted_by(
                            "patch",
                            &object,
                            e,
                            Grant::VerticalTemplate,
                        )
                    })
            }
            TemplateKind::StatefulSet => {
                let object = format!("statefulsets/{name} in namespace {namespace}");
                self.ensure_leader(|| object.clone())?;
                let api: Api<StatefulSet> = Api::namespaced(self.client().clone(), namespace);
                api.patch(name, &pp, &Patch::Strategic(body))
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        ActuateError::from_kube_granted_by(
                            "patch",
                            &object,
                            e,
                            Grant::VerticalTemplate,
                        )
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_sets_only_the_named_containers_requests() {
        let p = containers_patch(&[ContainerRequests {
            container: "app".into(),
            requests: [
                ("cpu".to_string(), 0.25),
                ("memory".to_string(), 134_217_728.4),
            ]
            .into_iter()
            .collect(),
        }]);
        assert_eq!(
            p,
            json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {
                "cpu": "250m", "memory": "134217729"}}}]}})
        );
    }
}

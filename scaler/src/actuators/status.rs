//! The ScalingPolicy status, written with server-side apply on the status subresource under
//! the field manager `tidal-scaler`: the whole status is sent each time, so fields the scaler
//! stopped setting are removed, and nothing else's fields are touched.

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{ActuateError, FIELD_MANAGER, Writer};
use crate::api::{ScalingPolicy, ScalingPolicyStatus};

impl Writer {
    /// Replace `namespace/name`'s status.
    pub async fn status(
        &self,
        namespace: &str,
        name: &str,
        status: &ScalingPolicyStatus,
    ) -> Result<(), ActuateError> {
        let object = format!("scalingpolicies/{name}/status in namespace {namespace}");
        self.ensure_leader(|| object.clone())?;
        let api: Api<ScalingPolicy> = Api::namespaced(self.client().clone(), namespace);
        let patch = json!({
            "apiVersion": "tidal.dev/v1alpha1",
            "kind": "ScalingPolicy",
            "status": status,
        });
        self.metrics().request("patch_status");
        api.patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map(|_| ())
        .map_err(|e| ActuateError::from_kube("patch", &object, e))
    }
}

//! A policy's ScalingPolicyCheckpoint (the vertical histograms, `api::checkpoint`), written
//! with server-side apply under the field manager `tidal-scaler`: created on the first write,
//! replaced whole after. It is owned by the policy, so it goes when the policy goes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{ActuateError, FIELD_MANAGER, Writer};
use crate::api::{ScalingPolicy, ScalingPolicyCheckpoint, ScalingPolicyCheckpointSpec};
use crate::engine::vertical::VerticalCheckpoint;

impl Writer {
    /// Write `policy`'s vertical history, stamped `update_time` (RFC 3339).
    pub async fn checkpoint(
        &self,
        policy: &ScalingPolicy,
        vertical: &VerticalCheckpoint,
        update_time: String,
    ) -> Result<(), ActuateError> {
        let namespace = policy.namespace().unwrap_or_default();
        let name = policy.name_any();
        let object = format!("scalingpolicycheckpoints/{name} in namespace {namespace}");
        self.ensure_leader(|| object.clone())?;
        let owner = OwnerReference {
            api_version: ScalingPolicy::api_version(&()).into_owned(),
            kind: ScalingPolicy::kind(&()).into_owned(),
            name: name.clone(),
            uid: policy.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        let spec = ScalingPolicyCheckpointSpec {
            policy_name: name.clone(),
            update_time: Some(update_time),
            vertical: vertical.clone(),
        };
        let patch = json!({
            "apiVersion": ScalingPolicyCheckpoint::api_version(&()),
            "kind": ScalingPolicyCheckpoint::kind(&()),
            "metadata": {"name": name, "ownerReferences": [owner]},
            "spec": spec,
        });
        let api: Api<ScalingPolicyCheckpoint> = Api::namespaced(self.client().clone(), &namespace);
        self.metrics().request("apply_checkpoint");
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map(|_| ())
        .map_err(|e| ActuateError::from_kube("apply", &object, e))
    }
}

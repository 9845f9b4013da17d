//! A policy's ScalingPolicyCheckpoint (the vertical histograms, `api::checkpoint`), under the
//! field manager `tidal-scaler`: created (a plain create, which fails with 409 rather than
//! overwrite an object the controller's read did not see), then replaced whole with
//! server-side apply. It is owned by the policy, so it goes when the policy goes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};

use super::{ActuateError, FIELD_MANAGER, Writer};
use crate::api::{ScalingPolicy, ScalingPolicyCheckpoint, ScalingPolicyCheckpointSpec};
use crate::engine::vertical::VerticalCheckpoint;

/// How [`Writer::checkpoint`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointWrite {
    /// No object is known to exist: create it, or fail with 409 if one does.
    Create,
    /// Replace the policy's object (server-side apply).
    Replace,
}

impl Writer {
    /// Write `policy`'s vertical history, stamped `update_time` (RFC 3339).
    pub async fn checkpoint(
        &self,
        policy: &ScalingPolicy,
        vertical: &VerticalCheckpoint,
        update_time: String,
        how: CheckpointWrite,
    ) -> Result<(), ActuateError> {
        let namespace = policy.namespace().unwrap_or_default();
        let name = policy.name_any();
        let object = format!("scalingpolicycheckpoints/{name} in namespace {namespace}");
        self.ensure_leader(|| object.clone())?;
        let mut c = ScalingPolicyCheckpoint::new(
            &name,
            ScalingPolicyCheckpointSpec {
                policy_name: name.clone(),
                update_time: Some(update_time),
                vertical: vertical.clone(),
            },
        );
        c.metadata.owner_references = Some(vec![OwnerReference {
            api_version: ScalingPolicy::api_version(&()).into_owned(),
            kind: ScalingPolicy::kind(&()).into_owned(),
            name: name.clone(),
            uid: policy.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        let api: Api<ScalingPolicyCheckpoint> = Api::namespaced(self.client().clone(), &namespace);
        match how {
            CheckpointWrite::Create => {
                self.metrics().request("create_checkpoint");
                let pp = PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PostParams::default()
                };
                api.create(&pp, &c)
                    .await
                    .map(|_| ())
                    .map_err(|e| ActuateError::from_kube("create", &object, e))
            }
            CheckpointWrite::Replace => {
                self.metrics().request("apply_checkpoint");
                api.patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&c),
                )
                .await
                .map(|_| ())
                .map_err(|e| ActuateError::from_kube("apply", &object, e))
            }
        }
    }
}

//! The ScalingPolicyCheckpoint custom resource (`tidal.dev/v1alpha1`, namespaced, short name
//! `spcp`): a policy's vertical recommender histograms, kept out of the policy's status (as the
//! VPA keeps its histograms in VerticalPodAutoscalerCheckpoints, not in the VPA), so that
//! `kubectl describe sp` shows the decision, the conditions and the recommendations only.
//!
//! One object per policy with `spec.vertical`, with the policy's name, in its namespace, owned
//! by it (`ownerReferences`, so the garbage collector removes it with the policy). Only the
//! scaler writes it (server-side apply, field manager `tidal-scaler`, leader only); a new
//! leader restores the histograms from it. `docs/vertical.md` ("Checkpoints") describes it.

use kube::CustomResource;
use kube::ResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ScalingPolicy;
use super::schema;
use crate::engine::vertical::VerticalCheckpoint;

/// The vertical recommender's history of one ScalingPolicy.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "tidal.dev",
    version = "v1alpha1",
    kind = "ScalingPolicyCheckpoint",
    namespaced,
    shortname = "spcp",
    category = "tidal",
    derive = "PartialEq",
    doc = "ScalingPolicyCheckpoint holds the vertical recommender's histograms of the ScalingPolicy of the same name, written by tidal-scaler.",
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policyName"),
    printcolumn(name = "Updated", type_ = "date", json_path = ".spec.updateTime")
)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicyCheckpointSpec {
    /// The ScalingPolicy, in the same namespace, whose history this is.
    #[schemars(length(min = 1, max = 253))]
    pub policy_name: String,
    /// When the scaler last wrote it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::time")]
    pub update_time: Option<String>,
    /// The histograms and moment accumulators per container, weights normalized as the VPA's
    /// checkpoints are (`docs/vertical.md`).
    #[schemars(schema_with = "schema::opaque_object")]
    pub vertical: VerticalCheckpoint,
}

/// Where a policy's vertical history is restored from, when its scaler starts or takes over.
#[derive(Debug, Clone, PartialEq)]
pub enum Restore<'a> {
    /// Its own ScalingPolicyCheckpoint.
    Object(&'a VerticalCheckpoint),
    /// `status.checkpoint.vertical`, where versions before the ScalingPolicyCheckpoint kept it
    /// (and where the scaler keeps it while it cannot write the object). It is moved to the
    /// object on the next write.
    Status(&'a VerticalCheckpoint),
    /// Nothing to restore: a new history.
    Fresh,
}

/// The history to restore `policy` from: its ScalingPolicyCheckpoint if that is the policy's
/// own (owned by this policy's UID: a policy deleted and created again under the same name
/// does not inherit the old one's history), or else what its status holds. When both hold
/// one, the one with the later last sample wins (the status copy is newer after object
/// writes failed for a while; the object is, for the moments between its write and the next
/// status write that drops the copy); a tie goes to the object.
pub fn restore_from<'a>(
    policy: &'a ScalingPolicy,
    object: Option<&'a ScalingPolicyCheckpoint>,
) -> Restore<'a> {
    let owned = |c: &ScalingPolicyCheckpoint| {
        let uid = policy.uid();
        uid.is_some()
            && c.owner_references()
                .iter()
                .any(|o| o.kind == "ScalingPolicy" && Some(&o.uid) == uid.as_ref())
    };
    let in_status = policy
        .status
        .as_ref()
        .and_then(|s| s.checkpoint.as_ref())
        .and_then(|c| c.vertical.as_ref());
    match (object.filter(|c| owned(c)), in_status) {
        (Some(o), Some(s)) if last_sample(s) > last_sample(&o.spec.vertical) => Restore::Status(s),
        (Some(o), _) => Restore::Object(&o.spec.vertical),
        (None, Some(s)) => Restore::Status(s),
        (None, None) => Restore::Fresh,
    }
}

/// The latest sample any container's histograms hold (Unix seconds; `-inf` for none).
fn last_sample(v: &VerticalCheckpoint) -> f64 {
    v.containers
        .values()
        .filter_map(|c| c.last_sample_unix_seconds)
        .fold(f64::NEG_INFINITY, f64::max)
}

/// A policy and its checkpoint object, for tests here and in the controller.
#[cfg(test)]
pub(crate) mod fixtures {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use serde_json::json;

    use super::*;
    use crate::api::{Checkpoint, ScalingPolicyStatus};

    /// Policy `shop/web` (uid `uid`, `spec.vertical` Off), with `in_status` as its status's
    /// histograms.
    pub(crate) fn policy(uid: &str, in_status: Option<VerticalCheckpoint>) -> ScalingPolicy {
        let mut p: ScalingPolicy = serde_json::from_value(json!({
            "apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy",
            "metadata": {"name": "web", "namespace": "shop", "uid": uid},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "maxReplicas": 3,
                "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 80}}],
                "vertical": {"mode": "Off"}
            }
        }))
        .expect("policy");
        p.status = in_status.map(|v| ScalingPolicyStatus {
            checkpoint: Some(Checkpoint {
                vertical: Some(v),
                ..Checkpoint::default()
            }),
            ..ScalingPolicyStatus::default()
        });
        p
    }

    /// Policy `web`'s checkpoint object, owned by the policy of uid `owner_uid`.
    pub(crate) fn object(owner_uid: &str, v: VerticalCheckpoint) -> ScalingPolicyCheckpoint {
        let mut c = ScalingPolicyCheckpoint::new(
            "web",
            ScalingPolicyCheckpointSpec {
                policy_name: "web".into(),
                update_time: None,
                vertical: v,
            },
        );
        c.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "tidal.dev/v1alpha1".into(),
            kind: "ScalingPolicy".into(),
            name: "web".into(),
            uid: owner_uid.into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{object, policy};
    use super::*;

    /// A checkpoint told apart by `version`, with no sample.
    fn vertical(version: u32) -> VerticalCheckpoint {
        sampled(version, None)
    }

    /// A checkpoint whose one container's last sample is at `last` (Unix seconds).
    fn sampled(version: u32, last: Option<f64>) -> VerticalCheckpoint {
        let container = crate::engine::vertical::ContainerCheckpoint {
            last_sample_unix_seconds: last,
            ..Default::default()
        };
        VerticalCheckpoint {
            version,
            containers: [("app".to_string(), container)].into(),
        }
    }

    /// Case by case: the object wins when it is the policy's own; a foreign or missing object
    /// falls back to the status; nothing gives a fresh history.
    #[test]
    fn the_policys_own_object_then_its_status_then_nothing() {
        let own = object("u1", vertical(1));
        let foreign = object("u0", vertical(7));
        let older = object("u1", sampled(3, Some(100.0)));
        let newer_in_status = sampled(4, Some(160.0));
        let older_in_status = sampled(5, Some(40.0));
        type Case<'a> = (
            &'a str,
            ScalingPolicy,
            Option<&'a ScalingPolicyCheckpoint>,
            Restore<'a>,
        );
        let v2 = vertical(2);
        let cases: [Case; 8] = [
            (
                "own object",
                policy("u1", Some(vertical(2))),
                Some(&own),
                Restore::Object(&own.spec.vertical),
            ),
            (
                "own object, empty status",
                policy("u1", None),
                Some(&own),
                Restore::Object(&own.spec.vertical),
            ),
            (
                "another policy's object (same name, deleted)",
                policy("u1", None),
                Some(&foreign),
                Restore::Fresh,
            ),
            (
                "another policy's object, a status copy",
                policy("u1", Some(vertical(2))),
                Some(&foreign),
                Restore::Status(&v2),
            ),
            (
                "legacy status only",
                policy("u1", Some(vertical(2))),
                None,
                Restore::Status(&v2),
            ),
            (
                "the status copy is newer (object writes failed)",
                policy("u1", Some(newer_in_status.clone())),
                Some(&older),
                Restore::Status(&newer_in_status),
            ),
            (
                "the object is newer",
                policy("u1", Some(older_in_status)),
                Some(&older),
                Restore::Object(&older.spec.vertical),
            ),
            ("nothing", policy("u1", None), None, Restore::Fresh),
        ];
        for (what, p, o, want) in cases {
            assert_eq!(restore_from(&p, o), want, "{what}");
        }
        // Without a UID (never stored), no object is the policy's own.
        let mut p = policy("u1", None);
        p.metadata.uid = None;
        assert_eq!(restore_from(&p, Some(&own)), Restore::Fresh);
    }
}

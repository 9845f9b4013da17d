//! The ScalingPolicy custom resource (`tidal.dev/v1alpha1`, namespaced, short name `sp`).
//!
//! - [`policy`]: the `spec` types, with the schema validation (bounds, enums, CEL rules).
//! - [`status`]: the `status` types (HPA-style conditions, current metrics, last decision).
//! - [`convert`]: the conversion of a spec into the engine's [`Spec`](crate::engine::Spec),
//!   with a typed error naming the field, and the quantity parser.
//! - [`bounds`]: `ResourceBounds`, the CPU and memory quantities of the spec and the status.
//! - [`checkpoint`]: the ScalingPolicyCheckpoint resource, where the vertical histograms are
//!   kept, and where a policy's history is restored from.
//! - [`vertical`]: `spec.vertical` into the recommender's config, and a recommendation into
//!   the status (on this side, so the engine uses no Kubernetes type).
//! - [`yaml`]: the YAML writer for the generated CRD (quotes `Off` for kubectl's YAML 1.1).
//!
//! `manifests/crd/scalingpolicy.yaml` (both CRDs, one file, so that one `kubectl apply -f`
//! installs them) is generated from these types by `tidal-scaler crdgen` ([`crd_yaml`],
//! written by [`yaml`]); a test fails when the file is stale. `docs/crd.md`
//! describes the fields.

pub mod bounds;
pub mod checkpoint;
pub mod convert;
pub mod policy;
pub mod status;
pub mod vertical;
pub mod yaml;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

pub use checkpoint::{ScalingPolicyCheckpoint, ScalingPolicyCheckpointSpec};
pub use convert::{SpecError, parse_quantity};
pub use policy::{
    Behavior, ContainerPolicy, Estimator, HpaScalingPolicy, KafkaLagMetric, LagSampling,
    MetricSpec, OffsetResetPolicy, PredictiveLag, PrometheusMetric, ResourceBounds, ResourceMetric,
    ResourceName, ScalingPolicy, ScalingPolicySpec, ScalingRules, TargetRef, VerticalMode,
    VerticalSpec,
};
pub use status::{
    Checkpoint, CheckpointRecommendation, CheckpointScaleEvent, ConditionStatus, ConditionType,
    ContainerRecommendationStatus, LastDecision, MetricStatus, ScalingCondition,
    ScalingPolicyStatus, quantity_from_f64,
};

/// Where the generated CRD lives in the repository.
pub const CRD_PATH: &str = "manifests/crd/scalingpolicy.yaml";

/// The ScalingPolicy CustomResourceDefinition.
///
/// schemars lists `null` among the `enum` values of an optional enum (`selectPolicy`); it is
/// removed here, as `nullable: true` already allows null and controller-gen never emits it.
/// Every integer field is bounded by its Rust type ([`bound_integers`]).
pub fn crd() -> CustomResourceDefinition {
    finish(ScalingPolicy::crd())
}

/// The ScalingPolicyCheckpoint CustomResourceDefinition ([`checkpoint`]).
pub fn checkpoint_crd() -> CustomResourceDefinition {
    finish(ScalingPolicyCheckpoint::crd())
}

fn finish(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            drop_null_from_enums(schema);
            bound_integers(schema);
        }
    }
    crd
}

/// The largest integer an `int64` field accepts: 2^53 − 1, the largest a JSON number carries
/// exactly through every client (far above any lag or threshold).
pub const INT64_FIELD_MAX: i64 = (1 << 53) - 1;

/// Gives every `int32` and `int64` field the `minimum` and `maximum` of its Rust type where
/// the field has none of its own. The API server does not enforce `format: int32`, so without
/// this a policy with `maxReplicas: 3000000000` would be stored, and then fail to deserialize
/// in the scaler's watch, where one bad object fails the whole list (kube-rs issue #774): every
/// policy would stop.
fn bound_integers(s: &mut JSONSchemaProps) {
    let bounds = match (s.type_.as_deref(), s.format.as_deref()) {
        (Some("integer"), Some("int32")) => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
        (Some("integer"), Some("int64")) => {
            Some((-(INT64_FIELD_MAX as f64), INT64_FIELD_MAX as f64))
        }
        _ => None,
    };
    if let Some((min, max)) = bounds {
        s.minimum.get_or_insert(min);
        s.maximum.get_or_insert(max);
    }
    for p in s.properties.iter_mut().flat_map(|m| m.values_mut()) {
        bound_integers(p);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &mut s.items {
        bound_integers(items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = &mut s.additional_properties {
        bound_integers(values);
    }
}

fn drop_null_from_enums(s: &mut JSONSchemaProps) {
    if let Some(values) = &mut s.enum_ {
        values.retain(|v| !v.0.is_null());
    }
    for p in s.properties.iter_mut().flat_map(|m| m.values_mut()) {
        drop_null_from_enums(p);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &mut s.items {
        drop_null_from_enums(items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = &mut s.additional_properties {
        drop_null_from_enums(values);
    }
}

/// Both CRDs as one YAML stream (ScalingPolicy, then ScalingPolicyCheckpoint), with a header
/// saying how it was made. This is what `tidal-scaler crdgen` prints and what
/// `manifests/crd/scalingpolicy.yaml` holds. Ambiguous strings (`Off`) are quoted for
/// kubectl's YAML 1.1 parser (see [`yaml`]).
pub fn crd_yaml() -> Result<String, serde_json::Error> {
    let policy = yaml::to_yaml(&serde_json::to_value(crd())?);
    let checkpoint = yaml::to_yaml(&serde_json::to_value(checkpoint_crd())?);
    Ok(format!(
        "# Generated by `tidal-scaler crdgen` from scaler/src/api; do not edit.\n\
         # Regenerate: cargo run -q -p tidal-scaler -- crdgen > {CRD_PATH}\n{policy}---\n{checkpoint}"
    ))
}

/// Schemas for fields whose Rust type has none (or a too generic one) of its own.
pub(crate) mod schema {
    use schemars::{Schema, SchemaGenerator, json_schema};

    /// A Kubernetes quantity (`500m`, `2Gi`, `100`): an integer or a string, as the built-in
    /// types have it. The syntax is checked by [`parse_quantity`](super::parse_quantity) when
    /// the spec is converted, not by a CEL rule: the apiserver estimates the cost of CEL on an
    /// int-or-string as on a 3 MB string, which would exceed the CRD's cost budget.
    pub fn quantity(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true
        })
    }

    /// An object the controller alone writes and reads (the vertical histograms): kept as
    /// is. Its shape (bucket-index keys) has no structural schema the apiserver accepts.
    pub fn opaque_object(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }

    /// `metav1.Time`: an RFC 3339 timestamp.
    pub fn time(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "date-time"
        })
    }
}

#[cfg(test)]
mod tests;

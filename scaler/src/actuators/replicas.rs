//! `spec.replicas` through the scale subresource.
//!
//! The write is a PUT of the Scale conditional on the resourceVersion the decision was based
//! on, so a change made meanwhile (a `kubectl scale`, another controller) turns into a 409
//! instead of being overwritten blindly. On a 409 the scale is read again: if it already has
//! the desired count nothing is written, otherwise the write is retried on the fresh
//! resourceVersion, at most [`MAX_ATTEMPTS`] times. Writing the count a target already has is
//! skipped, so repeated decisions are idempotent.

use std::time::Instant;

use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;

use super::{ActuateError, FIELD_MANAGER, Writer};

/// Writes per decision, the first included.
pub const MAX_ATTEMPTS: u32 = 3;

/// The object whose scale subresource is written.
#[derive(Debug, Clone)]
pub struct ScaleTarget {
    pub resource: ApiResource,
    pub namespace: String,
    pub name: String,
}

impl ScaleTarget {
    /// `deployments/web/scale in namespace shop`, for errors.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}/scale in namespace {}",
            self.resource.plural, self.name, self.namespace
        )
    }

    fn api(&self, client: kube::Client) -> Api<DynamicObject> {
        Api::namespaced_with(client, &self.namespace, &self.resource)
    }
}

/// What the decision was based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedScale {
    pub replicas: i32,
    /// The target's resourceVersion when read (the scale subresource shares it).
    pub resource_version: Option<String>,
}

/// What a scale write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleOutcome {
    /// Written; `attempts` counts the PUTs (more than 1 after a 409).
    Applied { attempts: u32 },
    /// The target already had the desired count (nothing written).
    Unchanged,
}

impl Writer {
    /// Set `target`'s replicas to `desired`; see the module docs.
    pub async fn scale(
        &self,
        target: &ScaleTarget,
        observed: &ObservedScale,
        desired: i32,
    ) -> Result<ScaleOutcome, ActuateError> {
        self.ensure_leader(|| target.describe())?;
        let started = Instant::now();
        let out = put_scale(
            &target.api(self.client().clone()),
            target,
            observed,
            desired,
            |verb| self.metrics().request(verb),
        )
        .await;
        self.metrics()
            .actuation_duration
            .observe(started.elapsed().as_secs_f64());
        out
    }
}

/// The conditional PUT with the 409 retry, on any `Api` (used by [`Writer::scale`] and tests).
pub async fn put_scale(
    api: &Api<DynamicObject>,
    target: &ScaleTarget,
    observed: &ObservedScale,
    desired: i32,
    count: impl Fn(&'static str),
) -> Result<ScaleOutcome, ActuateError> {
    if observed.replicas == desired {
        return Ok(ScaleOutcome::Unchanged);
    }
    let pp = PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_string()),
    };
    let mut resource_version = observed.resource_version.clone();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let scale = Scale {
            metadata: ObjectMeta {
                name: Some(target.name.clone()),
                namespace: Some(target.namespace.clone()),
                resource_version: resource_version.clone(),
                ..Default::default()
            },
            spec: Some(ScaleSpec {
                replicas: Some(desired),
            }),
            status: None,
        };
        count("put_scale");
        match api.replace_scale(&target.name, &pp, &scale).await {
            Ok(_) => return Ok(ScaleOutcome::Applied { attempts }),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                if attempts >= MAX_ATTEMPTS {
                    return Err(ActuateError::Conflict {
                        verb: "update",
                        object: target.describe(),
                        attempts,
                        detail: s.message,
                    });
                }
                tracing::debug!(target = %target.describe(), attempts, "409 conflict: reading the scale again");
                count("get_scale");
                let fresh = api
                    .get_scale(&target.name)
                    .await
                    .map_err(|e| ActuateError::from_kube("get", &target.describe(), e))?;
                if fresh.spec.as_ref().and_then(|s| s.replicas) == Some(desired) {
                    return Ok(ScaleOutcome::Unchanged);
                }
                resource_version = fresh.metadata.resource_version;
            }
            Err(e) => return Err(ActuateError::from_kube("update", &target.describe(), e)),
        }
    }
}

//! `spec.replicas` through the scale subresource, fenced.
//!
//! The write is a PUT of the Scale conditional on the resourceVersion the decision was based
//! on, so a change made meanwhile (a `kubectl scale`, another controller) turns into a 409
//! instead of being overwritten blindly. On a 409 the scale is read again ([`after_conflict`]):
//!
//! - if `spec.replicas` is no longer the count the decision was based on, someone else
//!   scaled the target: nothing is written and the write ends with
//!   [`ActuateError::Superseded`] (the controller decides again on the next cycle, from the
//!   new count), as the HPA does;
//! - otherwise only something else changed (labels, the template, the deployment
//!   controller's bookkeeping): the same decision still holds and is retried on the fresh
//!   resourceVersion, at most [`MAX_ATTEMPTS`] writes.
//!
//! Leadership is checked before **every** attempt, not only the first: a replica that lost
//! the Lease during a retry stops with [`ActuateError::NotLeader`]. Writing the count a
//! target already has is skipped, so repeated decisions are idempotent.

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

/// What to do after a 409, given the fresh read of the scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterConflict {
    /// `spec.replicas` is still what the decision saw: write again on this resourceVersion.
    Retry { resource_version: Option<String> },
    /// Someone else changed `spec.replicas`: do not write.
    Superseded { found: i32 },
    /// Out of attempts.
    GiveUp,
}

/// The fence's decision after a 409 on attempt `attempts`: `observed` is what the decision
/// was based on, `fresh_replicas`/`fresh_version` the scale as read again. Pure.
pub fn after_conflict(
    observed: &ObservedScale,
    fresh_replicas: Option<i32>,
    fresh_version: Option<String>,
    attempts: u32,
) -> AfterConflict {
    // A scale without spec.replicas means 0 (the API server defaults it; be strict anyway).
    let found = fresh_replicas.unwrap_or(0);
    if found != observed.replicas {
        AfterConflict::Superseded { found }
    } else if attempts >= MAX_ATTEMPTS {
        AfterConflict::GiveUp
    } else {
        AfterConflict::Retry {
            resource_version: fresh_version,
        }
    }
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
            || self.is_leader(),
            |verb| self.metrics().request(verb),
        )
        .await;
        self.metrics()
            .actuation_duration
            .observe(started.elapsed().as_secs_f64());
        out
    }
}

/// The fenced conditional PUT (see the module docs), on any `Api` (used by [`Writer::scale`]
/// and tests). `is_leader` is asked before every attempt.
pub async fn put_scale(
    api: &Api<DynamicObject>,
    target: &ScaleTarget,
    observed: &ObservedScale,
    desired: i32,
    is_leader: impl Fn() -> bool,
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
        if !is_leader() {
            return Err(ActuateError::NotLeader {
                what: target.describe(),
            });
        }
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
        let detail = match api.replace_scale(&target.name, &pp, &scale).await {
            Ok(_) => return Ok(ScaleOutcome::Applied { attempts }),
            Err(kube::Error::Api(s)) if s.code == 409 => s.message,
            Err(e) => return Err(ActuateError::from_kube("update", &target.describe(), e)),
        };
        tracing::debug!(target = %target.describe(), attempts, "409 conflict: reading the scale again");
        count("get_scale");
        let fresh = api
            .get_scale(&target.name)
            .await
            .map_err(|e| ActuateError::from_kube("get", &target.describe(), e))?;
        match after_conflict(
            observed,
            fresh.spec.as_ref().and_then(|s| s.replicas),
            fresh.metadata.resource_version,
            attempts,
        ) {
            AfterConflict::Retry {
                resource_version: fresh,
            } => resource_version = fresh,
            AfterConflict::Superseded { found } => {
                return Err(ActuateError::Superseded {
                    object: target.describe(),
                    expected: observed.replicas,
                    found,
                });
            }
            AfterConflict::GiveUp => {
                return Err(ActuateError::Conflict {
                    verb: "update",
                    object: target.describe(),
                    attempts,
                    detail,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(replicas: i32) -> ObservedScale {
        ObservedScale {
            replicas,
            resource_version: Some("10".into()),
        }
    }

    #[test]
    fn a_conflict_with_unchanged_replicas_is_retried_on_the_fresh_version() {
        assert_eq!(
            after_conflict(&observed(2), Some(2), Some("11".into()), 1),
            AfterConflict::Retry {
                resource_version: Some("11".into())
            }
        );
        assert_eq!(
            after_conflict(&observed(2), Some(2), Some("12".into()), MAX_ATTEMPTS - 1),
            AfterConflict::Retry {
                resource_version: Some("12".into())
            }
        );
    }

    #[test]
    fn a_conflict_after_someone_else_scaled_is_superseded_never_retried() {
        // Another writer scaled 2 -> 5 while we wanted 4: not overwritten.
        assert_eq!(
            after_conflict(&observed(2), Some(5), Some("11".into()), 1),
            AfterConflict::Superseded { found: 5 }
        );
        // Even when it chose our own desired count, the basis changed: no write either.
        assert_eq!(
            after_conflict(&observed(2), Some(4), Some("11".into()), 1),
            AfterConflict::Superseded { found: 4 }
        );
        // A scale to zero (or a missing spec.replicas) is a change too.
        assert_eq!(
            after_conflict(&observed(2), None, None, 1),
            AfterConflict::Superseded { found: 0 }
        );
        // Superseded wins over running out of attempts: the reason is the change.
        assert_eq!(
            after_conflict(&observed(2), Some(3), None, MAX_ATTEMPTS),
            AfterConflict::Superseded { found: 3 }
        );
    }

    #[test]
    fn conflicts_give_up_after_max_attempts() {
        assert_eq!(
            after_conflict(&observed(2), Some(2), Some("13".into()), MAX_ATTEMPTS),
            AfterConflict::GiveUp
        );
    }

    /// No request is sent when this replica does not lead, and leadership is asked again
    /// before each attempt (an API server that does not exist would fail any request).
    #[tokio::test]
    async fn no_attempt_without_leadership() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        let target = ScaleTarget {
            resource: ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
            namespace: "shop".into(),
            name: "web".into(),
        };
        let api = target.api(client);
        let asked = std::sync::atomic::AtomicU32::new(0);
        let sent = std::sync::Mutex::new(Vec::new());
        let out = put_scale(
            &api,
            &target,
            &observed(2),
            4,
            || {
                asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                false
            },
            |verb| sent.lock().expect("lock").push(verb),
        )
        .await;
        assert!(
            matches!(out, Err(ActuateError::NotLeader { .. })),
            "{out:?}"
        );
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(sent.lock().expect("lock").is_empty(), "nothing sent");
    }
}

#[cfg(test)]
#[path = "replicas_tests.rs"]
mod fake_server_tests;

//! Actuators: the scaler's only writers to the API server (`docs/design.md`, "Core seams").
//!
//! [`Writer`] is the single entry point. Every write checks leadership first (only the Lease
//! holder writes), uses the one field manager `tidal-scaler`, and maps API errors to a typed
//! [`ActuateError`] naming the object and the verb.
//!
//! - [`replicas`]: `spec.replicas` through the scale subresource, conditional on the
//!   resourceVersion read (fenced): a 409 Conflict is retried on a fresh read only while
//!   nobody else changed `spec.replicas` ([`ActuateError::Superseded`] otherwise), and
//!   leadership is checked again before every attempt.
//! - [`status`]: the ScalingPolicy status (server-side apply on the status subresource).
//! - [`checkpoint`]: the policy's ScalingPolicyCheckpoint (its vertical histograms).
//! - [`resources`]: container requests, in place (pod `resize`) or in the pod template.
//! - [`events`]: Kubernetes Events on the policy, as the HPA emits them.
//!
//! Dry-run policies never reach [`Writer::scale`]; the controller records their decision in
//! the status only.

pub mod checkpoint;
pub mod events;
pub mod replicas;
pub mod resources;
pub mod status;

use tidal_core::lease::Leadership;

use crate::metrics::Metrics;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "tidal-scaler";

/// Why a write did not happen. Each variant has a fixed label for
/// `tidal_scaler_errors_total{reason}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActuateError {
    /// This replica does not hold the Lease: it must not write.
    #[error("not the leader: {what} not written")]
    NotLeader { what: String },
    /// 403: the scaler's RBAC does not allow it; `grant` says which manifest grants it.
    #[error("{verb} {object}: forbidden (403): {detail}; {grant}")]
    Forbidden {
        verb: &'static str,
        object: String,
        detail: String,
        grant: Grant,
    },
    /// 404.
    #[error("{verb} {object}: not found (404): {detail}")]
    NotFound {
        verb: &'static str,
        object: String,
        detail: String,
    },
    /// 409, and the fresh read shows that someone else changed `spec.replicas` since the
    /// decision read it: the decision's premise is gone, so nothing is written (the
    /// controller holds this cycle and decides again on the next one).
    #[error(
        "{object}: spec.replicas changed from {expected} to {found} by another writer since the \
         decision read it; not overwritten, deciding again next cycle"
    )]
    Superseded {
        object: String,
        expected: i32,
        found: i32,
    },
    /// 409 after every retry.
    #[error("{verb} {object}: conflict (409) after {attempts} attempts: {detail}")]
    Conflict {
        verb: &'static str,
        object: String,
        attempts: u32,
        detail: String,
    },
    /// 422 and other 4xx/5xx answers.
    #[error("{verb} {object}: HTTP {code}: {detail}")]
    Api {
        verb: &'static str,
        object: String,
        code: u16,
        detail: String,
    },
    /// No answer (connection refused, timeout, TLS).
    #[error("{verb} {object}: API server unreachable: {detail}")]
    Unreachable {
        verb: &'static str,
        object: String,
        detail: String,
    },
}

/// Where the right a 403 lacks is granted: the base ClusterRole, or an opt-in overlay (the
/// vertical writes, which the base deliberately leaves out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The ClusterRole `tidal-scaler` of `manifests/base/scaler/rbac.yaml`.
    Base,
    /// `spec.vertical.mode: Template`: `patch` on deployments and statefulsets, granted by
    /// `manifests/overlays/vertical-template`.
    VerticalTemplate,
    /// `spec.vertical.mode: InPlace`: `patch` on `pods/resize`, granted by
    /// `manifests/overlays/vertical-inplace`.
    VerticalInPlace,
}

impl Grant {
    /// The overlay that grants the right, if it is not in the base.
    pub fn overlay(self) -> Option<&'static str> {
        match self {
            Self::Base => None,
            Self::VerticalTemplate => Some("manifests/overlays/vertical-template"),
            Self::VerticalInPlace => Some("manifests/overlays/vertical-inplace"),
        }
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self, self.overlay()) {
            (Self::VerticalTemplate, Some(o)) => write!(
                f,
                "spec.vertical.mode Template needs it and the base does not grant it: apply the \
                 overlay {o} (kubectl apply -k {o}; ClusterRole tidal-scaler-vertical-template)"
            ),
            (Self::VerticalInPlace, Some(o)) => write!(
                f,
                "spec.vertical.mode InPlace needs it and the base does not grant it: apply the \
                 overlay {o} (kubectl apply -k {o}; ClusterRole tidal-scaler-vertical-inplace)"
            ),
            _ => f.write_str(
                "grant it with the ClusterRole tidal-scaler (manifests/base/scaler/rbac.yaml)",
            ),
        }
    }
}

impl ActuateError {
    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotLeader { .. } => "not_leader",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::Superseded { .. } => "superseded",
            Self::Api { .. } => "api_error",
            Self::Unreachable { .. } => "api_unreachable",
        }
    }

    /// Maps a kube error of `verb` on `object` (a right of the base ClusterRole).
    pub fn from_kube(verb: &'static str, object: &str, e: kube::Error) -> Self {
        Self::from_kube_granted_by(verb, object, e, Grant::Base)
    }

    /// Maps a kube error of `verb` on `object`, a right that `grant` gives (a 403 names it).
    pub fn from_kube_granted_by(
        verb: &'static str,
        object: &str,
        e: kube::Error,
        grant: Grant,
    ) -> Self {
        let object = object.to_string();
        match e {
            kube::Error::Api(s) => {
                let detail = s.message.clone();
                match s.code {
                    403 => Self::Forbidden {
                        verb,
                        object,
                        detail,
                        grant,
                    },
                    404 => Self::NotFound {
                        verb,
                        object,
                        detail,
                    },
                    409 => Self::Conflict {
                        verb,
                        object,
                        attempts: 1,
                        detail,
                    },
                    code => Self::Api {
                        verb,
                        object,
                        code,
                        detail,
                    },
                }
            }
            other => Self::Unreachable {
                verb,
                object,
                detail: other.to_string(),
            },
        }
    }
}

/// The single writer: leadership-gated, one field manager, counted.
#[derive(Clone)]
pub struct Writer {
    client: kube::Client,
    leadership: Leadership,
    metrics: Metrics,
    recorder: events::Events,
}

impl Writer {
    /// `identity` names this replica in the Events it emits.
    pub fn new(
        client: kube::Client,
        leadership: Leadership,
        metrics: Metrics,
        identity: &str,
    ) -> Self {
        Self {
            recorder: events::Events::new(client.clone(), identity),
            client,
            leadership,
            metrics,
        }
    }

    /// The client (for reads).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Metrics, to count requests and errors.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// True while this replica may write.
    pub fn is_leader(&self) -> bool {
        self.leadership.is_leader()
    }

    fn ensure_leader(&self, what: impl FnOnce() -> String) -> Result<(), ActuateError> {
        if self.leadership.is_leader() {
            Ok(())
        } else {
            Err(ActuateError::NotLeader { what: what() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("denied by policy", "Forbidden")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn kube_errors_map_to_typed_errors_naming_the_object() {
        let e = ActuateError::from_kube("patch", "deployments/web/scale in ns", api(403));
        assert_eq!(e.label(), "forbidden");
        let msg = e.to_string();
        assert!(
            msg.contains("deployments/web/scale in ns") && msg.contains("403"),
            "{msg}"
        );
        assert_eq!(
            ActuateError::from_kube("get", "x", api(404)).label(),
            "not_found"
        );
        assert_eq!(
            ActuateError::from_kube("put", "x", api(409)).label(),
            "conflict"
        );
        assert_eq!(
            ActuateError::from_kube("put", "x", api(422)).label(),
            "api_error"
        );
    }

    #[test]
    fn a_forbidden_vertical_write_names_its_overlay_not_the_base() {
        let e = ActuateError::from_kube_granted_by(
            "patch",
            "deployments/web in namespace shop",
            api(403),
            Grant::VerticalTemplate,
        );
        assert_eq!(e.label(), "forbidden");
        let msg = e.to_string();
        assert!(
            msg.starts_with("patch deployments/web in namespace shop: forbidden (403)")
                && msg.contains("kubectl apply -k manifests/overlays/vertical-template")
                && !msg.contains("manifests/base"),
            "{msg}"
        );
        let e = ActuateError::from_kube_granted_by(
            "patch",
            "pods/web-1/resize in namespace shop",
            api(403),
            Grant::VerticalInPlace,
        );
        assert_eq!(e.label(), "forbidden");
        assert!(
            e.to_string()
                .contains("kubectl apply -k manifests/overlays/vertical-inplace"),
            "{e}"
        );
        let e = ActuateError::from_kube("patch", "deployments/web/scale in ns", api(403));
        assert!(
            e.to_string().contains("manifests/base/scaler/rbac.yaml"),
            "{e}"
        );
    }

    #[test]
    fn superseded_has_its_own_label_and_names_both_counts() {
        let e = ActuateError::Superseded {
            object: "deployments/web/scale in namespace shop".into(),
            expected: 2,
            found: 5,
        };
        assert_eq!(e.label(), "superseded");
        let msg = e.to_string();
        assert!(
            msg.contains("deployments/web/scale in namespace shop")
                && msg.contains("from 2 to 5")
                && msg.contains("not overwritten"),
            "{msg}"
        );
    }
}

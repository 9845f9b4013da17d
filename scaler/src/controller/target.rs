//! The scaled workload as the engine needs it: its scale (`spec.replicas`, `status.replicas`,
//! the selector) and its pods.
//!
//! Deployments and StatefulSets are read from the controller's watch caches, so a cycle sends
//! no reads for them; any other kind with a scale subresource is resolved once through API
//! discovery and its scale is read with one GET per evaluation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Container, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};
use kube::core::{Expression, GroupVersionKind, Selector};
use kube::discovery::ApiResource;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::actuators::replicas::{ObservedScale, ScaleTarget};
use crate::actuators::resources::TemplateKind;
use crate::api::{TargetRef, parse_quantity};
use crate::engine::types as engine;

/// Why the target could not be read. The message names the target and the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    #[error("spec.targetRef: {kind} {namespace}/{name} not found")]
    NotFound {
        kind: String,
        namespace: String,
        name: String,
    },
    #[error("spec.targetRef: {api_version} {kind}: {detail}")]
    Discovery {
        api_version: String,
        kind: String,
        detail: String,
    },
    #[error("spec.targetRef: {kind} {namespace}/{name}: reading its scale failed: {detail}")]
    Scale {
        kind: String,
        namespace: String,
        name: String,
        detail: String,
    },
    #[error(
        "spec.targetRef: {kind} {namespace}/{name}: selector {selector:?} is invalid: {detail}"
    )]
    Selector {
        kind: String,
        namespace: String,
        name: String,
        selector: String,
        detail: String,
    },
}

impl TargetError {
    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "target_not_found",
            Self::Discovery { .. } => "target_discovery",
            Self::Scale { .. } => "target_scale",
            Self::Selector { .. } => "target_selector",
        }
    }
}

/// The target's scale and the pods its selector matches.
#[derive(Debug, Clone)]
pub struct Target {
    pub scale: ScaleTarget,
    pub observed: ObservedScale,
    pub status_replicas: Option<i32>,
    pub selector: Selector,
    /// The cached workload, for Deployments and StatefulSets (vertical `Template` mode).
    pub workload: Option<Workload>,
}

/// A cached Deployment or StatefulSet (an `Arc`: no copy per cycle).
#[derive(Debug, Clone)]
pub enum Workload {
    Deployment(Arc<Deployment>),
    StatefulSet(Arc<StatefulSet>),
}

impl Workload {
    /// Its kind, for the template patch.
    pub fn kind(&self) -> TemplateKind {
        match self {
            Self::Deployment(_) => TemplateKind::Deployment,
            Self::StatefulSet(_) => TemplateKind::StatefulSet,
        }
    }

    /// Its pod template.
    pub fn template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Self::Deployment(d) => d.spec.as_ref().map(|s| &s.template),
            Self::StatefulSet(s) => s.spec.as_ref().map(|s| &s.template),
        }
    }
}

/// The watch caches the controller keeps.
#[derive(Clone)]
pub struct Caches {
    pub pods: Store<Pod>,
    pub deployments: Store<Deployment>,
    pub statefulsets: Store<StatefulSet>,
    /// Other autoscalers, to hold rather than fight them (see `gate`).
    pub hpas: Store<HorizontalPodAutoscaler>,
}

fn selector_of(
    t: &TargetRef,
    namespace: &str,
    ls: Option<&LabelSelector>,
) -> Result<Selector, TargetError> {
    let bad = |detail: String, selector: String| TargetError::Selector {
        kind: t.kind.clone(),
        namespace: namespace.to_string(),
        name: t.name.clone(),
        selector,
        detail,
    };
    let Some(ls) = ls else {
        return Err(bad("the target has no selector".into(), String::new()));
    };
    Selector::try_from(ls.clone()).map_err(|e| bad(e.to_string(), format!("{ls:?}")))
}

fn is_apps(t: &TargetRef, kind: &str) -> bool {
    t.api_version == "apps/v1" && t.kind == kind
}

/// Reads the target: from the caches for Deployments and StatefulSets, else through the
/// scale subresource (`resources` caches discovery per apiVersion/kind).
pub async fn resolve(
    client: &kube::Client,
    caches: &Caches,
    resources: &mut BTreeMap<(String, String), ApiResource>,
    namespace: &str,
    t: &TargetRef,
    count: impl Fn(&'static str),
) -> Result<Target, TargetError> {
    let not_found = || TargetError::NotFound {
        kind: t.kind.clone(),
        namespace: namespace.to_string(),
        name: t.name.clone(),
    };
    let key = |kind: &str| (t.api_version.clone(), kind.to_string());
    if is_apps(t, "Deployment") {
        let d = caches
            .deployments
            .get(&ObjectRef::new(&t.name).within(namespace))
            .ok_or_else(not_found)?;
        let spec = d.spec.as_ref();
        return Ok(Target {
            scale: ScaleTarget {
                resource: ApiResource::erase::<Deployment>(&()),
                namespace: namespace.to_string(),
                name: t.name.clone(),
            },
            observed: ObservedScale {
                replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
                resource_version: d.resource_version(),
            },
            status_replicas: d.status.as_ref().and_then(|s| s.replicas),
            selector: selector_of(t, namespace, spec.map(|s| &s.selector))?,
            workload: Some(Workload::Deployment(d.clone())),
        });
    }
    if is_apps(t, "StatefulSet") {
        let s = caches
            .statefulsets
            .get(&ObjectRef::new(&t.name).within(namespace))
            .ok_or_else(not_found)?;
        let spec = s.spec.as_ref();
        return Ok(Target {
            scale: ScaleTarget {
                resource: ApiResource::erase::<StatefulSet>(&()),
                namespace: namespace.to_string(),
                name: t.name.clone(),
            },
            observed: ObservedScale {
                replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
                resource_version: s.resource_version(),
            },
            status_replicas: s.status.as_ref().map(|s| s.replicas),
            selector: selector_of(t, namespace, spec.map(|s| &s.selector))?,
            workload: Some(Workload::StatefulSet(s.clone())),
        });
    }
    // Anything else with a scale subresource.
    let resource = match resources.get(&key(&t.kind)) {
        Some(r) => r.clone(),
        None => {
            let (group, version) = match t.api_version.split_once('/') {
                Some((g, v)) => (g, v),
                None => ("", t.api_version.as_str()),
            };
            count("discovery");
            let (ar, caps) = kube::discovery::pinned_kind(
                client,
                &GroupVersionKind::gvk(group, version, &t.kind),
            )
            .await
            .map_err(|e| TargetError::Discovery {
                api_version: t.api_version.clone(),
                kind: t.kind.clone(),
                detail: e.to_string(),
            })?;
            if !caps.subresources.iter().any(|(r, _)| r.plural == "scale")
                && !caps.subresources.is_empty()
            {
                return Err(TargetError::Discovery {
                    api_version: t.api_version.clone(),
                    kind: t.kind.clone(),
                    detail: "the kind has no scale subresource".into(),
                });
            }
            resources.insert(key(&t.kind), ar.clone());
            ar
        }
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    count("get_scale");
    let scale = api.get_scale(&t.name).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => not_found(),
        kube::Error::Api(s) if s.code == 403 => TargetError::Scale {
            kind: t.kind.clone(),
            namespace: namespace.to_string(),
            name: t.name.clone(),
            detail: format!(
                "forbidden (403): the scaler may not get {}/scale; grant get and update on it \
                 with the ClusterRole tidal-scaler (manifests/base/scaler/rbac.yaml): {}",
                resource.plural, s.message
            ),
        },
        e => TargetError::Scale {
            kind: t.kind.clone(),
            namespace: namespace.to_string(),
            name: t.name.clone(),
            detail: e.to_string(),
        },
    })?;
    let status = scale.status.as_ref();
    let sel = status.and_then(|s| s.selector.clone()).unwrap_or_default();
    let selector = parse_selector(&sel).map_err(|e| TargetError::Selector {
        kind: t.kind.clone(),
        namespace: namespace.to_string(),
        name: t.name.clone(),
        selector: sel.clone(),
        detail: e.to_string(),
    })?;
    Ok(Target {
        scale: ScaleTarget {
            resource,
            namespace: namespace.to_string(),
            name: t.name.clone(),
        },
        observed: ObservedScale {
            replicas: scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            resource_version: scale.metadata.resource_version.clone(),
        },
        status_replicas: status.map(|s| s.replicas),
        selector,
        workload: None,
    })
}

/// Parses a label selector string as the scale subresource reports it (`status.selector`):
/// `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, comma separated.
pub fn parse_selector(s: &str) -> Result<Selector, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    let mut exprs = Vec::new();
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let set = |rest: &str| -> Result<BTreeSet<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("{part:?}: expected a (value, ...) list"))?;
            Ok(inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect())
        };
        let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
        let expr = if let [key, rest] = words[..]
            && let Some(list) = rest.trim_start().strip_prefix("notin")
        {
            Expression::NotIn(key.to_string(), set(list)?)
        } else if let [key, rest] = words[..]
            && let Some(list) = rest.trim_start().strip_prefix("in")
        {
            Expression::In(key.to_string(), set(list)?)
        } else if let Some((k, v)) = part.split_once("!=") {
            Expression::NotEqual(k.trim().to_string(), v.trim().to_string())
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Expression::Equal(k.trim().to_string(), v.trim().to_string())
        } else if let Some(k) = part.strip_prefix('!') {
            Expression::DoesNotExist(k.trim().to_string())
        } else if part.contains(char::is_whitespace) {
            return Err(format!("{part:?}: not a selector requirement"));
        } else {
            Expression::Exists(part.to_string())
        };
        exprs.push(expr);
    }
    Ok(exprs.into_iter().collect())
}

fn unix(t: &Time) -> f64 {
    t.0.as_millisecond() as f64 / 1000.0
}

fn requests(c: &Container) -> BTreeMap<String, f64> {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(|req| {
            req.iter()
                .filter_map(|(k, q)| parse_quantity(&q.0).ok().map(|v| (k.clone(), v)))
                .collect()
        })
        .unwrap_or_default()
}

/// A Kubernetes Pod as the engine sees it (`groupPods` inputs and requests).
pub fn engine_pod(p: &Pod) -> engine::Pod {
    let status = p.status.as_ref();
    let spec = p.spec.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Pending") => engine::PodPhase::Pending,
        Some("Running") => engine::PodPhase::Running,
        Some("Succeeded") => engine::PodPhase::Succeeded,
        Some("Failed") => engine::PodPhase::Failed,
        Some(_) => engine::PodPhase::Unknown,
        None => engine::PodPhase::Pending,
    };
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| engine::ReadyCondition {
            status: match c.status.as_str() {
                "True" => engine::ConditionStatus::True,
                "False" => engine::ConditionStatus::False,
                _ => engine::ConditionStatus::Unknown,
            },
            last_transition_unix_seconds: c.last_transition_time.as_ref().map_or(0.0, unix),
        });
    engine::Pod {
        name: p.name_any(),
        phase,
        deleting: p.metadata.deletion_timestamp.is_some(),
        start_time_unix_seconds: status.and_then(|s| s.start_time.as_ref()).map(unix),
        ready,
        containers: spec
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| engine::Container {
                        name: c.name.clone(),
                        requests: requests(c),
                        restart_policy_always: false,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        init_containers: spec
            .and_then(|s| s.init_containers.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| engine::Container {
                        name: c.name.clone(),
                        requests: requests(c),
                        restart_policy_always: c.restart_policy.as_deref() == Some("Always"),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        requests: spec
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .map(|req| {
                req.iter()
                    .filter_map(|(k, q)| parse_quantity(&q.0).ok().map(|v| (k.clone(), v)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::SelectorExt;
    use serde_json::json;

    #[test]
    fn selector_strings_parse_like_the_apiserver_writes_them() {
        let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "a")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (sel, want) in [
            ("app=web", true),
            ("app==web,tier=a", true),
            ("app!=web", false),
            ("tier in (a, b),app", true),
            ("tier notin (a,b)", false),
            ("!missing", true),
            ("missing", false),
        ] {
            let s = parse_selector(sel).expect(sel);
            assert_eq!(s.matches(&labels), want, "{sel}");
        }
        assert!(parse_selector("tier in a").is_err());
        assert!(parse_selector("a b c").is_err());
    }

    #[test]
    fn pods_convert_with_phase_readiness_and_requests() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {
                "containers": [{"name": "app", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}],
                "initContainers": [{"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}}]
            },
            "status": {
                "phase": "Running",
                "startTime": "2026-11-26T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-26T00:00:10Z"}]
            }
        }))
        .expect("pod");
        let e = engine_pod(&p);
        assert_eq!(e.name, "web-1");
        assert_eq!(e.phase, engine::PodPhase::Running);
        assert_eq!(e.containers[0].requests["cpu"], 0.25);
        assert_eq!(e.containers[0].requests["memory"], 64.0 * 1024.0 * 1024.0);
        assert!(e.init_containers[0].restart_policy_always);
        let ready = e.ready.expect("ready condition");
        assert_eq!(ready.status, engine::ConditionStatus::True);
        assert_eq!(
            ready.last_transition_unix_seconds - e.start_time_unix_seconds.expect("start"),
            10.0
        );
    }
}

//! `spec.vertical` at run time: feed each cycle's per-container usage to the policy's
//! [`VerticalState`], compute the recommendations, and decide which requests to change.
//!
//! A request is changed only when it lies outside the recommendation's `[lowerBound,
//! upperBound]` (the VPA updater's rule), only for controlled resources, and only once the
//! container has at least `min_samples` samples, so a fresh policy does not resize on a few
//! seconds of data. The change sets the request to the recommendation's target.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod, PodTemplateSpec};
use kube::ResourceExt;

use crate::actuators::resources::ContainerRequests;
use crate::api::parse_quantity;
use crate::engine::types as engine;
use crate::engine::vertical::{
    ContainerRecommendation, Resource, Resources, VerticalConfig, VerticalError, VerticalState,
    horizontal_targets,
};
use crate::sources::{PodKey, PodUsage};

/// A container's requests in base units.
pub fn requests_of(c: &Container) -> Resources {
    let get = |name: &str| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(name))
            .and_then(|q| parse_quantity(&q.0).ok())
    };
    Resources {
        cpu_cores: get("cpu"),
        memory_bytes: get("memory"),
    }
}

/// The requests of every container of a pod template, by name.
pub fn template_requests(t: &PodTemplateSpec) -> BTreeMap<String, Resources> {
    t.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), requests_of(c)))
                .collect()
        })
        .unwrap_or_default()
}

/// Feeds this cycle's usage of the target's running pods into `state`; returns how many
/// samples were rejected (bad numbers are errors in the state's terms, never zeros).
pub fn observe(
    state: &mut VerticalState,
    namespace: &str,
    pods: &[&Arc<Pod>],
    usage: &HashMap<PodKey, PodUsage>,
) -> Vec<VerticalError> {
    let mut errors = Vec::new();
    for p in pods {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = p.name_any();
        let Some(u) = usage.get(&(namespace.to_string(), name.clone())) else {
            continue;
        };
        for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
            let Some(cu) = u.containers.get(&c.name) else {
                continue;
            };
            let sample = Resources {
                cpu_cores: cu.cpu_cores,
                memory_bytes: cu.memory_working_set_bytes,
            };
            if let Err(e) = state.observe(
                &name,
                &c.name,
                &sample,
                &requests_of(c),
                u.timestamp_unix_seconds,
            ) {
                errors.push(e);
            }
        }
    }
    errors
}

/// The recommendations for the policy, sized with the horizontal/vertical rule for the
/// resources the policy also scales on horizontally.
pub fn recommend(
    state: &VerticalState,
    config: &VerticalConfig,
    spec: &engine::Spec,
    now: f64,
) -> Result<Vec<ContainerRecommendation>, VerticalError> {
    state.recommend(config, &horizontal_targets(spec), now)
}

/// The change one container needs, if a controlled request lies outside the recommendation's
/// bounds (and the recommendation rests on at least `min_samples` samples).
pub fn change_for(
    container: &str,
    current: &Resources,
    rec: &ContainerRecommendation,
    min_samples: u64,
) -> Option<ContainerRequests> {
    if rec.total_samples < min_samples {
        return None;
    }
    let mut requests = BTreeMap::new();
    for r in [Resource::Cpu, Resource::Memory] {
        let (Some(target), Some(lower), Some(upper)) = (
            rec.target.get(r),
            rec.lower_bound.get(r),
            rec.upper_bound.get(r),
        ) else {
            continue;
        };
        let outside = match current.get(r) {
            Some(now) => now < lower || now > upper,
            // No request at all: set one.
            None => true,
        };
        if outside && target > 0.0 {
            let key = match r {
                Resource::Cpu => "cpu",
                Resource::Memory => "memory",
            };
            requests.insert(key.to_string(), target);
        }
    }
    (!requests.is_empty()).then(|| ContainerRequests {
        container: container.to_string(),
        requests,
    })
}

/// The changes for a set of containers (a pod's, or a template's).
pub fn changes(
    current: &BTreeMap<String, Resources>,
    recs: &[ContainerRecommendation],
    min_samples: u64,
) -> Vec<ContainerRequests> {
    recs.iter()
        .filter_map(|rec| {
            let now = current.get(&rec.container)?;
            change_for(&rec.container, now, rec, min_samples)
        })
        .collect()
}

/// One line per change, for the Event (`app: cpu 100m -> 250m`).
pub fn describe(current: &BTreeMap<String, Resources>, changes: &[ContainerRequests]) -> String {
    let fmt = |k: &str, v: Option<f64>| match (k, v) {
        (_, None) => "none".to_string(),
        ("cpu", Some(v)) => format!("{:.0}m", v * 1000.0),
        (_, Some(v)) => format!("{:.0}Mi", v / (1024.0 * 1024.0)),
    };
    changes
        .iter()
        .flat_map(|c| {
            c.requests.iter().map(move |(k, v)| {
                let before = current.get(&c.container).and_then(|r| {
                    r.get(if k == "cpu" {
                        Resource::Cpu
                    } else {
                        Resource::Memory
                    })
                });
                format!(
                    "{}: {k} {} -> {}",
                    c.container,
                    fmt(k, before),
                    fmt(k, Some(*v))
                )
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(target: f64, lower: f64, upper: f64, samples: u64) -> ContainerRecommendation {
        ContainerRecommendation {
            container: "app".into(),
            target: Resources {
                cpu_cores: Some(target),
                memory_bytes: None,
            },
            lower_bound: Resources {
                cpu_cores: Some(lower),
                memory_bytes: None,
            },
            upper_bound: Resources {
                cpu_cores: Some(upper),
                memory_bytes: None,
            },
            uncapped_target: Resources {
                cpu_cores: Some(target),
                memory_bytes: None,
            },
            coordinated: vec![],
            capped: vec![],
            confidence: 1.0,
            total_samples: samples,
        }
    }

    fn cpu(v: f64) -> Resources {
        Resources {
            cpu_cores: Some(v),
            memory_bytes: Some(1.0),
        }
    }

    #[test]
    fn only_requests_outside_the_bounds_change_and_only_with_enough_samples() {
        let r = rec(0.5, 0.4, 0.8, 100);
        assert_eq!(
            change_for("app", &cpu(0.6), &r, 60),
            None,
            "inside the band"
        );
        let c = change_for("app", &cpu(0.1), &r, 60).expect("below the lower bound");
        assert_eq!(c.requests["cpu"], 0.5);
        assert!(
            change_for("app", &cpu(2.0), &r, 60).is_some(),
            "above the upper bound"
        );
        assert_eq!(
            change_for("app", &cpu(0.1), &r, 101),
            None,
            "too few samples"
        );
        // Memory has no recommendation here (not controlled): never touched.
        assert!(!c.requests.contains_key("memory"));
        let current: BTreeMap<String, Resources> = [("app".to_string(), cpu(0.1))].into();
        assert_eq!(describe(&current, &[c]), "app: cpu 100m -> 500m");
    }
}

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

use crate::actuators::resources::{ContainerRequests, TemplateKind};
use crate::api::VerticalMode;
use crate::api::parse_quantity;
use crate::controller::target::Workload;
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

/// One OOM kill seen in a pod's status: a container whose `state.terminated` or
/// `lastState.terminated` has reason `OOMKilled` (the VPA's OOM observer reads the same).
#[derive(Debug, Clone, PartialEq)]
pub struct OomKill {
    pub pod_uid: String,
    pub pod: String,
    pub container: String,
    /// The container's memory request (the VPA passes it: `used = max(request, peak)`);
    /// 0 without one.
    pub memory_request_bytes: f64,
    /// `terminated.finishedAt`, in Unix seconds.
    pub at: f64,
}

/// The OOM kills the pods' statuses show, at most one per container (its latest).
pub fn oom_kills(pods: &[&Arc<Pod>]) -> Vec<OomKill> {
    let mut kills = Vec::new();
    for p in pods {
        let (Some(spec), Some(status)) = (p.spec.as_ref(), p.status.as_ref()) else {
            continue;
        };
        for cs in status.container_statuses.iter().flatten() {
            let at = [cs.state.as_ref(), cs.last_state.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(|s| s.terminated.as_ref())
                .filter(|t| t.reason.as_deref() == Some("OOMKilled"))
                .filter_map(|t| t.finished_at.as_ref())
                .map(|t| t.0.as_millisecond() as f64 / 1000.0)
                .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
            let Some(at) = at else { continue };
            let request = spec
                .containers
                .iter()
                .find(|c| c.name == cs.name)
                .and_then(|c| requests_of(c).memory_bytes)
                .unwrap_or(0.0);
            kills.push(OomKill {
                pod_uid: p.uid().unwrap_or_default(),
                pod: p.name_any(),
                container: cs.name.clone(),
                memory_request_bytes: request,
                at,
            });
        }
    }
    kills
}

/// The kills of `kills` not recorded yet: each (pod uid, container) is recorded once per
/// `finishedAt`, and not at all when it ended before `floor` (the load of a restored
/// history, which may hold it already). `seen` keeps the pods still showing a kill.
pub fn new_oom_kills(
    seen: &mut HashMap<(String, String), f64>,
    floor: Option<f64>,
    kills: Vec<OomKill>,
) -> Vec<OomKill> {
    seen.retain(|(uid, _), _| kills.iter().any(|k| &k.pod_uid == uid));
    kills
        .into_iter()
        .filter(|k| {
            let key = (k.pod_uid.clone(), k.container.clone());
            if seen.get(&key).is_some_and(|t| *t >= k.at) {
                return false;
            }
            seen.insert(key, k.at);
            floor.is_none_or(|f| k.at >= f)
        })
        .collect()
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

/// One write of container requests that a round of `InPlace` or `Template` makes.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestWrite {
    /// Patch the workload's pod template (`Template`).
    Template {
        kind: TemplateKind,
        name: String,
        changes: Vec<ContainerRequests>,
        /// The Event's note (`app: cpu 100m -> 250m`).
        note: String,
    },
    /// Resize one running pod (`InPlace`).
    Resize {
        pod: String,
        changes: Vec<ContainerRequests>,
        /// The Event's note, with the pod's name first.
        note: String,
    },
}

/// The writes of one round (pure): `Template` patches the workload's template when one of its
/// containers' requests lies outside the bounds; `InPlace` resizes each such pod that is not
/// terminating; any other mode writes nothing.
pub fn request_writes(
    mode: VerticalMode,
    workload: Option<&Workload>,
    target_name: &str,
    pods: &[&Arc<Pod>],
    recs: &[ContainerRecommendation],
    min_samples: u64,
) -> Vec<RequestWrite> {
    match mode {
        VerticalMode::Template => workload
            .and_then(|w| Some((w.kind(), w.template()?)))
            .and_then(|(kind, t)| {
                let current = template_requests(t);
                let changes = changes(&current, recs, min_samples);
                (!changes.is_empty()).then(|| RequestWrite::Template {
                    kind,
                    name: target_name.to_string(),
                    note: describe(&current, &changes),
                    changes,
                })
            })
            .into_iter()
            .collect(),
        VerticalMode::InPlace => pods
            .iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .filter_map(|pod| {
                let current: BTreeMap<String, Resources> = pod
                    .spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .map(|c| (c.name.clone(), requests_of(c)))
                    .collect();
                let changes = changes(&current, recs, min_samples);
                (!changes.is_empty()).then(|| RequestWrite::Resize {
                    pod: pod.name_any(),
                    note: format!("{}: {}", pod.name_any(), describe(&current, &changes)),
                    changes,
                })
            })
            .collect(),
        VerticalMode::Off | VerticalMode::Recommend => Vec::new(),
    }
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
    use serde_json::json;

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

    fn oom_pod(uid: &str, last: Option<&str>, now: Option<&str>) -> Arc<Pod> {
        let term = |at: &str| json!({"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": at}});
        let mut cs =
            json!({"name": "app", "image": "x", "imageID": "y", "ready": false, "restartCount": 1});
        if let Some(at) = last {
            cs["lastState"] = term(at);
        }
        if let Some(at) = now {
            cs["state"] = term(at);
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("web-{uid}"), "uid": uid},
                "spec": {"containers": [{"name": "app", "resources": {
                    "requests": {"memory": "160Mi"}, "limits": {"memory": "160Mi"}}}]},
                "status": {"containerStatuses": [cs]}
            }))
            .expect("pod"),
        )
    }

    /// A kill is found in `lastState` (restarted) or `state` (not restarted yet), the later
    /// one wins, and the request passed is the container's memory request.
    #[test]
    fn oom_kills_are_read_from_the_container_statuses() {
        let a = oom_pod("a", Some("2026-11-26T00:00:20Z"), None);
        let b = oom_pod(
            "b",
            Some("2026-11-26T00:00:20Z"),
            Some("2026-11-26T00:01:00Z"),
        );
        let c = oom_pod("c", None, None);
        let kills = oom_kills(&[&a, &b, &c]);
        assert_eq!(kills.len(), 2, "{kills:?}");
        assert_eq!(
            (kills[0].pod.as_str(), kills[0].at),
            ("web-a", 1_795_651_220.0)
        );
        assert_eq!(
            (kills[1].pod.as_str(), kills[1].at),
            ("web-b", 1_795_651_260.0)
        );
        assert_eq!(kills[0].memory_request_bytes, 160.0 * 1024.0 * 1024.0);
    }

    /// Each kill is recorded once, a later kill of the same container again, and kills that
    /// ended before a restored history was loaded never.
    #[test]
    fn each_oom_kill_is_recorded_once() {
        let mut seen = HashMap::new();
        let first = oom_pod("a", Some("2026-11-26T00:00:20Z"), None);
        assert_eq!(
            new_oom_kills(&mut seen, None, oom_kills(&[&first])).len(),
            1
        );
        assert!(new_oom_kills(&mut seen, None, oom_kills(&[&first])).is_empty());
        let again = oom_pod("a", Some("2026-11-26T00:01:20Z"), None);
        assert_eq!(
            new_oom_kills(&mut seen, None, oom_kills(&[&again])).len(),
            1
        );

        let mut seen = HashMap::new();
        let floor = Some(1_795_651_230.0);
        assert!(new_oom_kills(&mut seen, floor, oom_kills(&[&first])).is_empty());
        assert_eq!(
            new_oom_kills(&mut seen, floor, oom_kills(&[&again])).len(),
            1
        );
        // A pod without a kill any more is forgotten.
        let clean = oom_pod("a", None, None);
        assert!(new_oom_kills(&mut seen, floor, oom_kills(&[&clean])).is_empty());
        assert!(seen.is_empty());
    }

    /// End to end through the engine: an OOM at a 160Mi request records
    /// max(160Mi + 100Mi, 160Mi * 1.2) = 260Mi, and the memory target rises above the pod
    /// minimum (250Mi) to that peak's bucket plus the 15% margin.
    #[test]
    fn a_recorded_oom_raises_the_memory_recommendation() {
        use crate::engine::vertical::{ModelConfig, OomOutcome};
        let mut state = VerticalState::new(ModelConfig::default()).expect("state");
        let mib = 1024.0 * 1024.0;
        let t = 1_795_651_220.0;
        state
            .observe(
                "web-a",
                "app",
                &Resources {
                    cpu_cores: Some(0.01),
                    memory_bytes: Some(mib),
                },
                &Resources {
                    cpu_cores: Some(0.1),
                    memory_bytes: Some(160.0 * mib),
                },
                t - 10.0,
            )
            .expect("sample");
        let cfg = VerticalConfig::default();
        let before = state.recommend(&cfg, &[], t).expect("recommend")[0]
            .target
            .memory_bytes
            .expect("memory");
        assert_eq!(before, 250.0 * mib, "the pod minimum");
        let kill = &oom_kills(&[&oom_pod("a", Some("2026-11-26T00:00:20Z"), None)])[0];
        let outcome = state
            .record_oom(
                &kill.pod,
                &kill.container,
                kill.memory_request_bytes,
                kill.at,
            )
            .expect("oom");
        assert_eq!(
            outcome,
            OomOutcome::Recorded {
                memory_bytes: 260.0 * mib
            }
        );
        let after = state.recommend(&cfg, &[], t).expect("recommend")[0]
            .target
            .memory_bytes
            .expect("memory");
        assert!(
            after >= 260.0 * mib * 1.15 && after <= 260.0 * mib * 1.05 * 1.15 + 1.0,
            "{after}"
        );
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

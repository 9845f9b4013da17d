//! Whether a policy may write its decision this cycle: the one place that reads the policy's
//! annotations (`tidal.dev/paused`, `tidal.dev/paused-replicas`, `tidal.dev/take-over`) and
//! looks for another autoscaler of the same workload.
//!
//! Another autoscaler is an `autoscaling/v2` HorizontalPodAutoscaler whose `scaleTargetRef`
//! names the policy's target. KEDA drives every active ScaledObject through such an HPA, which
//! it owns (`keda-hpa-<name>`); that HPA is reported as its ScaledObject. Two writers of one
//! replica count undo each other's changes, so the policy holds (nothing written, `Ready`
//! False, reason `ConflictingAutoscaler`) until the other is removed or the policy takes it
//! over by name. A dry run writes nothing, so it never conflicts: it is the way to watch
//! Tidal's decisions beside the HPA before a migration (docs/migration.md).
//!
//! Two ScalingPolicies of one workload conflict the same way: the first (the older by
//! `creationTimestamp`, then by name) writes, the later one holds with
//! `ConflictingAutoscaler` naming it ([`gate_among`]). Dry runs write nothing and count for
//! neither side.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::ResourceExt;

use crate::api::{ScalingPolicy, TargetRef};

/// Pauses the policy: `"true"` or `"false"`.
pub const PAUSED: &str = "tidal.dev/paused";
/// Pauses the policy at this replica count (it implies `tidal.dev/paused`).
pub const PAUSED_REPLICAS: &str = "tidal.dev/paused-replicas";
/// Comma-separated `Kind/name` of the other autoscalers this policy takes over
/// (`HorizontalPodAutoscaler/web`, `ScaledObject/web`).
pub const TAKE_OVER: &str = "tidal.dev/take-over";

/// The annotations the controller reads; `trim::policy` keeps these and drops the rest.
pub const ANNOTATIONS: [&str; 3] = [PAUSED, PAUSED_REPLICAS, TAKE_OVER];

/// Another autoscaler of the same workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Other {
    /// `HorizontalPodAutoscaler`, `ScaledObject` or `ScalingPolicy`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// For a ScaledObject: the HPA through which it was seen.
    pub via: Option<String>,
}

impl Other {
    /// The value of `tidal.dev/take-over` that takes this one over.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

impl fmt::Display for Other {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.via, self.kind) {
            (Some(hpa), _) => write!(
                f,
                "KEDA ScaledObject {}/{} (through its HorizontalPodAutoscaler {hpa})",
                self.namespace, self.name
            ),
            (None, kind) => write!(f, "{kind} {}/{}", self.namespace, self.name),
        }
    }
}

/// What the policy may do this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Write the decision.
    Write,
    /// `spec.dryRun`: decide and report, write nothing.
    DryRun,
    /// Paused: write nothing, or only bring the count to `replicas`.
    Paused { replicas: Option<i32> },
    /// Another autoscaler scales the target: write nothing.
    Conflict(Other),
    /// Write the decision, although `Other` also scales the target: the policy took it over.
    TakenOver(Other),
    /// An annotation's value is malformed: write nothing. The message names it.
    Invalid(String),
}

impl Gate {
    /// The policy's own decisions may be written: replica counts and (`InPlace`, `Template`)
    /// container requests. Otherwise nothing is, but a pinned count
    /// (`Paused { replicas: Some(_) }`).
    pub fn writes(&self) -> bool {
        matches!(self, Self::Write | Self::TakenOver(_))
    }

    /// A short name for logs and the decision's reasons.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::DryRun => "dryRun",
            Self::Paused { .. } => "paused",
            Self::Conflict(_) => "ConflictingAutoscaler",
            Self::TakenOver(_) => "takenOver",
            Self::Invalid(_) => "InvalidAnnotation",
        }
    }

    /// When the gate holds the policy on purpose: the `ScalingActive` reason and message
    /// (`Ready` follows from it: False for a conflict, True for a pause).
    pub fn holding(&self, target: &TargetRef) -> Option<(&'static str, String)> {
        match self {
            Self::Conflict(other) if other.kind == POLICY => Some((
                "ConflictingAutoscaler",
                format!(
                    "{other} also scales {} {} and was there first: holding, nothing written; \
                     delete one of the two policies, or set spec.dryRun on this one",
                    target.kind, target.name
                ),
            )),
            Self::Conflict(other) => Some((
                "ConflictingAutoscaler",
                format!(
                    "{other} also scales {} {}: holding, nothing written; remove it, or take it \
                     over with the annotation {TAKE_OVER}: {}",
                    target.kind,
                    target.name,
                    other.key()
                ),
            )),
            Self::Paused { replicas: None } => Some((
                "ScalingPaused",
                format!("paused by the annotation {PAUSED}: nothing written"),
            )),
            Self::Paused { replicas: Some(n) } => Some((
                "ScalingPaused",
                format!("paused at {n} replicas by the annotation {PAUSED_REPLICAS}"),
            )),
            _ => None,
        }
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The HPA's target is the policy's: same namespace, kind and name, and the same API group
/// when the HPA gives one (the version may differ).
fn same_target(hpa: &HorizontalPodAutoscaler, namespace: &str, t: &TargetRef) -> bool {
    let Some(spec) = hpa.spec.as_ref() else {
        return false;
    };
    let r = &spec.scale_target_ref;
    hpa.namespace().as_deref() == Some(namespace)
        && r.kind == t.kind
        && r.name == t.name
        && r.api_version
            .as_deref()
            .is_none_or(|v| group_of(v) == group_of(&t.api_version))
}

/// The autoscaler behind `hpa`: its owning ScaledObject if KEDA made it, else the HPA.
fn owner_of(hpa: &HorizontalPodAutoscaler) -> Other {
    let namespace = hpa.namespace().unwrap_or_default();
    let keda = hpa
        .owner_references()
        .iter()
        .find(|o| o.kind == "ScaledObject" && group_of(&o.api_version) == "keda.sh");
    match keda {
        Some(o) => Other {
            kind: "ScaledObject",
            namespace,
            name: o.name.clone(),
            via: Some(hpa.name_any()),
        },
        None => Other {
            kind: "HorizontalPodAutoscaler",
            namespace,
            name: hpa.name_any(),
            via: None,
        },
    }
}

fn annotation<'a>(p: &'a ScalingPolicy, key: &str) -> Option<&'a str> {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(|v| v.trim())
}

fn invalid(p: &ScalingPolicy, key: &str, value: &str, expected: &str) -> Gate {
    Gate::Invalid(format!(
        "ScalingPolicy {}/{}: metadata.annotations[{key}]: {expected}, got {value:?}",
        p.namespace().unwrap_or_default(),
        p.name_any()
    ))
}

/// Objects of one cycle by what they scale (`namespace`, `kind`, `name`), built once per
/// cycle like the pod index, so a policy's gate looks at the few of its own target and does
/// not copy the whole cache: the HPAs ([`HpaIndex`]) and the policies ([`PolicyIndex`]).
pub struct TargetIndex<T>(HashMap<(String, String, String), Vec<Arc<T>>>);

impl<T> Default for TargetIndex<T> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<T: ResourceExt> TargetIndex<T> {
    /// Indexes `items` by the `(kind, name)` that `target` reads (none: left out).
    fn build_by(items: Vec<Arc<T>>, target: impl Fn(&T) -> Option<(&str, &str)>) -> Self {
        let mut index: HashMap<_, Vec<_>> = HashMap::new();
        for item in items {
            let Some((kind, name)) = target(&item) else {
                continue;
            };
            let key = (
                item.namespace().unwrap_or_default(),
                kind.to_string(),
                name.to_string(),
            );
            index.entry(key).or_default().push(item);
        }
        Self(index)
    }

    /// The objects of `namespace` whose target has this kind and name (any group: [`gate`]
    /// and [`gate_among`] compare it).
    pub fn targeting(&self, namespace: &str, t: &TargetRef) -> impl Iterator<Item = &T> {
        self.0
            .get(&(namespace.to_string(), t.kind.clone(), t.name.clone()))
            .into_iter()
            .flatten()
            .map(|o| &**o)
    }
}

/// The HPAs by `spec.scaleTargetRef`.
pub type HpaIndex = TargetIndex<HorizontalPodAutoscaler>;

impl HpaIndex {
    pub fn build(hpas: Vec<Arc<HorizontalPodAutoscaler>>) -> Self {
        Self::build_by(hpas, |h| {
            let r = &h.spec.as_ref()?.scale_target_ref;
            Some((r.kind.as_str(), r.name.as_str()))
        })
    }
}

/// The ScalingPolicies by `spec.targetRef` (a policy finds itself there too).
pub type PolicyIndex = TargetIndex<ScalingPolicy>;

impl PolicyIndex {
    pub fn build(policies: Vec<Arc<ScalingPolicy>>) -> Self {
        Self::build_by(policies, |p| {
            Some((
                p.spec.target_ref.kind.as_str(),
                p.spec.target_ref.name.as_str(),
            ))
        })
    }
}

/// The kind of [`Other`] for another ScalingPolicy.
pub const POLICY: &str = "ScalingPolicy";

/// The order in which policies of one workload came: creation time, then name.
fn arrival(
    p: &ScalingPolicy,
) -> (
    Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    String,
) {
    (p.metadata.creation_timestamp.as_ref(), p.name_any())
}

/// The first policy, other than `p` and not a dry run, that scales `p`'s target and came
/// before it.
fn first_policy<'a>(
    p: &ScalingPolicy,
    policies: impl IntoIterator<Item = &'a ScalingPolicy>,
) -> Option<Other> {
    let namespace = p.namespace().unwrap_or_default();
    let t = &p.spec.target_ref;
    policies
        .into_iter()
        .filter(|o| {
            !o.spec.dry_run
                && o.name_any() != p.name_any()
                && o.namespace().as_deref() == Some(namespace.as_str())
                && o.spec.target_ref.kind == t.kind
                && o.spec.target_ref.name == t.name
                && group_of(&o.spec.target_ref.api_version) == group_of(&t.api_version)
                && arrival(o) < arrival(p)
        })
        .min_by(|a, b| arrival(a).cmp(&arrival(b)))
        .map(|o| Other {
            kind: POLICY,
            namespace: namespace.clone(),
            name: o.name_any(),
            via: None,
        })
}

/// [`gate`], and then: a policy that would write holds when another ScalingPolicy of the
/// same workload came first (two writers of one replica count undo each other's changes).
pub fn gate_among<'a, 'b>(
    p: &ScalingPolicy,
    hpas: impl IntoIterator<Item = &'a HorizontalPodAutoscaler>,
    policies: impl IntoIterator<Item = &'b ScalingPolicy>,
) -> Gate {
    let g = gate(p, hpas);
    let would_write = g.writes() || matches!(g, Gate::Paused { replicas: Some(_) });
    match first_policy(p, policies) {
        Some(other) if would_write => Gate::Conflict(other),
        _ => g,
    }
}

/// The gate for `p`, given every HPA the scaler sees (any namespace; only those of `p`'s
/// namespace can match).
pub fn gate<'a>(
    p: &ScalingPolicy,
    hpas: impl IntoIterator<Item = &'a HorizontalPodAutoscaler>,
) -> Gate {
    let paused = match annotation(p, PAUSED) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => return invalid(p, PAUSED, v, "expected \"true\" or \"false\""),
    };
    let replicas = match annotation(p, PAUSED_REPLICAS) {
        None => None,
        Some(v) => match v.parse::<i32>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                return invalid(
                    p,
                    PAUSED_REPLICAS,
                    v,
                    "expected a replica count (an integer, 0 or more)",
                );
            }
        },
    };
    let mut taken: Vec<&str> = Vec::new();
    if let Some(v) = annotation(p, TAKE_OVER) {
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let ok = item.split_once('/').is_some_and(|(k, n)| {
                matches!(k, "HorizontalPodAutoscaler" | "ScaledObject") && !n.is_empty()
            });
            if !ok {
                return invalid(
                    p,
                    TAKE_OVER,
                    v,
                    "expected a comma-separated list of HorizontalPodAutoscaler/<name> or ScaledObject/<name>",
                );
            }
            taken.push(item);
        }
    }
    if p.spec.dry_run {
        return Gate::DryRun;
    }
    if paused && replicas.is_none() {
        return Gate::Paused { replicas: None };
    }
    let namespace = p.namespace().unwrap_or_default();
    let mut others: Vec<Other> = hpas
        .into_iter()
        .filter(|h| same_target(h, &namespace, &p.spec.target_ref))
        .map(owner_of)
        .collect();
    others.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    if let Some(other) = others.iter().find(|o| !taken.contains(&o.key().as_str())) {
        return Gate::Conflict(other.clone());
    }
    if replicas.is_some() {
        return Gate::Paused { replicas };
    }
    match others.into_iter().next() {
        Some(other) => Gate::TakenOver(other),
        None => Gate::Write,
    }
}

//! Horizontal and vertical scaling on the same resource (autoscaler#6060).
//!
//! When the HPA scales on a resource's utilization (`resource` or `container_resource` metric
//! with a `utilization` target `T`), it compares the pods' mean usage with `T%` of their
//! requests. A vertical recommender that sizes that request on its own (a high percentile plus
//! a margin) makes the HPA see `mean / (1.15 * p90)` instead of `T%`, which is rarely inside
//! the tolerance: the HPA scales out (or in), per-pod usage moves, the next recommendation
//! follows it, and the HPA moves again. The two fight. (With 10 pods at 0.40..0.55 cores and
//! `T = 60`, p90 + 15% is 0.671 cores and the HPA, seeing 70%, goes from 10 to 12 pods; see
//! `coordination_tests.rs`.)
//!
//! The rule: size such a resource from the **mean per-pod usage the HPA averages**, at the
//! target utilization,
//!
//! ```text
//! request = mean usage / (T / 100)
//! ```
//!
//! so that after the resize the HPA sees `usage / request = T` and leaves the replica count
//! alone (its ratio is 1, inside any tolerance). The request is truncated to a millicore, so
//! the HPA's integer utilization `floor(usage * 100 / request)` is exactly `T`. The HPA keeps
//! reading the pods' *current* requests until they are resized, so until then it scales as
//! usual. Any request where the HPA's ratio stays inside its tolerance is a horizontal fixed
//! point; that band is the recommendation's lower and upper bound:
//!
//! ```text
//! lower = mean / ((T / 100) * (1 + tolerance_up))     below: the HPA would scale out
//! upper = mean / ((T / 100) * (1 - tolerance_down))   above: the HPA would scale in
//! ```
//!
//! While the HPA is in control, per-pod usage hovers at `T%` of whatever the request is, so
//! the rule keeps the request where it is: the HPA owns that resource. The vertical side moves
//! it only when the HPA cannot: at `minReplicas` with little load (the request shrinks) and at
//! `maxReplicas` with too much (it grows). With several utilization targets on one resource the
//! lowest `T` (the largest request) is used, so no metric's ratio exceeds 1. `AverageValue`
//! targets do not depend on requests and need no coordination.

use serde::{Deserialize, Serialize};

use super::amount::Resource;
use crate::horizontal::tolerances;
use crate::types::{MetricSource, Spec, TargetType};

/// A horizontal utilization target on a resource (from `spec.metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HorizontalTarget {
    /// The resource the HPA scales on.
    pub resource: Resource,
    /// `container_resource`: only this container; `None` (`resource`): the whole pod, so every
    /// container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Target utilization, percent of the request.
    pub target_utilization_percent: i32,
    /// The HPA's scale-down tolerance (0.1).
    #[serde(default = "default_tolerance")]
    pub tolerance_down: f64,
    /// The HPA's scale-up tolerance (0.1).
    #[serde(default = "default_tolerance")]
    pub tolerance_up: f64,
}

fn default_tolerance() -> f64 {
    0.1
}

impl HorizontalTarget {
    /// Whether this target covers `resource` of `container`.
    pub fn covers(&self, container: &str, resource: Resource) -> bool {
        self.resource == resource && self.container.as_deref().is_none_or(|c| c == container)
    }
}

/// The utilization targets of a horizontal spec, with its tolerances. An empty
/// `spec.metrics` is the HPA's default, CPU at 80%.
pub fn horizontal_targets(spec: &Spec) -> Vec<HorizontalTarget> {
    let tol = tolerances(spec);
    let target = |resource, container: Option<&String>, t: i32| HorizontalTarget {
        resource,
        container: container.cloned(),
        target_utilization_percent: t,
        tolerance_down: tol.scale_down,
        tolerance_up: tol.scale_up,
    };
    if spec.metrics.is_empty() {
        return vec![target(Resource::Cpu, None, 80)];
    }
    spec.metrics
        .iter()
        .filter_map(|m| {
            let resource = match m.name.as_str() {
                "cpu" => Resource::Cpu,
                "memory" => Resource::Memory,
                _ => return None,
            };
            let container = match m.source {
                MetricSource::Resource => None,
                MetricSource::ContainerResource => Some(m.container.as_ref()?),
                _ => return None,
            };
            let t = m.target.average_utilization?;
            (m.target.kind == TargetType::Utilization && t > 0)
                .then(|| target(resource, container, t))
        })
        .collect()
}

/// A coordinated request band in base units (cores or bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// `mean / (T / 100)`.
    pub target: f64,
    /// The smallest request at which the HPA does not scale out.
    pub lower_bound: f64,
    /// The largest request at which the HPA does not scale in (infinite with a scale-down
    /// tolerance of 1 or more).
    pub upper_bound: f64,
    /// The `T` used (the lowest covering target).
    pub target_utilization_percent: i32,
}

/// The rule for `resource` of `container`: `None` when no horizontal utilization target
/// covers it, else the band around `mean_usage / (T / 100)` (`mean_usage` in base units, the
/// mean per-pod usage the HPA averages).
pub fn coordinate(
    resource: Resource,
    container: &str,
    mean_usage: f64,
    horizontal: &[HorizontalTarget],
) -> Option<Band> {
    let t = horizontal
        .iter()
        .filter(|h| h.covers(container, resource) && h.target_utilization_percent > 0)
        .min_by_key(|h| h.target_utilization_percent)?;
    let fraction = f64::from(t.target_utilization_percent) / 100.0;
    let usage = mean_usage.max(0.0);
    let down = 1.0 - t.tolerance_down;
    Some(Band {
        target: usage / fraction,
        lower_bound: usage / (fraction * (1.0 + t.tolerance_up.max(0.0))),
        upper_bound: if down > 0.0 {
            usage / (fraction * down)
        } else {
            f64::INFINITY
        },
        target_utilization_percent: t.target_utilization_percent,
    })
}

#[cfg(test)]
#[path = "coordination_tests.rs"]
mod tests;

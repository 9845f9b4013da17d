//! Container policies applied to a recommendation (`pkg/utils/vpa/capping.go` `ApplyVPAPolicy`,
//! `api.go` `GetContainerResourcePolicy`, `logic/recommender.go` `FilterControlledResources`).
//!
//! - The policy of a container is the one with its name, else the one named `*`, else none.
//! - Only controlled resources are recommended (both when the policy does not say).
//! - Each of target, lower bound and upper bound is raised to `min_allowed`, then lowered to
//!   `max_allowed` (so `max_allowed` wins when they cross). A zero or absent bound is no
//!   bound. The target before this step is the uncapped target.
//!
//! Bounds arrive in base units and are compared as amounts, rounded up like
//! `Quantity.MilliValue()` (CPU) and `Quantity.Value()` (memory).

use super::amount::{MAX_RESOURCE_AMOUNT, PartialAmounts, Resource, Resources};
use super::config::ContainerPolicy;
use crate::replica_calc::to_milli;

/// `DefaultContainerResourcePolicy`: the policy name matching every container.
pub const DEFAULT_CONTAINER_POLICY: &str = "*";

/// `GetContainerResourcePolicy`: the policy named `container`, else `*`, else none.
pub fn container_policy<'a>(
    container: &str,
    policies: &'a [ContainerPolicy],
) -> Option<&'a ContainerPolicy> {
    let mut default = None;
    for p in policies {
        if p.container_name == container {
            return Some(p);
        }
        if p.container_name == DEFAULT_CONTAINER_POLICY {
            default = Some(p);
        }
    }
    default
}

/// `GetControlledResources`: the policy's list, or both when the policy does not say.
pub fn controlled_resources(policy: Option<&ContainerPolicy>) -> Vec<Resource> {
    match policy.and_then(|p| p.controlled_resources.as_ref()) {
        Some(list) => list.clone(),
        None => Resource::ALL.to_vec(),
    }
}

/// `FilterControlledResources`: keep the listed resources only.
pub fn filter_controlled(cpu: i64, memory: i64, controlled: &[Resource]) -> PartialAmounts {
    PartialAmounts {
        cpu: controlled.contains(&Resource::Cpu).then_some(cpu),
        memory: controlled.contains(&Resource::Memory).then_some(memory),
    }
}

/// `applyVPAPolicy` on one of target, lower or upper bound. Returns upstream's capping
/// annotations (`cpu capped to minAllowed`, `memory capped to maxAllowed`).
pub fn apply_policy(rec: &mut PartialAmounts, policy: Option<&ContainerPolicy>) -> Vec<String> {
    let mut notes = Vec::new();
    let Some(policy) = policy else {
        return notes;
    };
    for r in Resource::ALL {
        let Some(mut v) = rec.get(r) else { continue };
        if let Some(min) = bound(r, &policy.min_allowed)
            && v < min
        {
            v = min;
            notes.push(format!("{} capped to minAllowed", r.as_str()));
        }
        if let Some(max) = bound(r, &policy.max_allowed)
            && v > max
        {
            v = max;
            notes.push(format!("{} capped to maxAllowed", r.as_str()));
        }
        rec.set(r, Some(v));
    }
    notes
}

/// A bound as an amount; `None` when absent or zero (`IsZero()` bounds are ignored).
fn bound(r: Resource, b: &Resources) -> Option<i64> {
    let v = b.get(r)?;
    let a = match r {
        Resource::Cpu => to_milli(v),
        Resource::Memory => {
            let nearest = v.round();
            if (v - nearest).abs() < 1e-6 {
                nearest as i64
            } else {
                v.ceil() as i64
            }
        }
    };
    (a > 0).then_some(a.min(MAX_RESOURCE_AMOUNT))
}

#[cfg(test)]
#[path = "capping_tests.rs"]
mod tests;

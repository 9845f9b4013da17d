//! One container's recommendation from its aggregate, the steps in upstream's order
//! (`logic/recommender.go` `GetRecommendedPodResources`, `routines/recommender.go`
//! `getCappedRecommendation`): the three estimates, the horizontal/vertical rule for covered
//! resources, the pod minimum, `FilterControlledResources`, the uncapped target, then
//! `ApplyVPAPolicy`.

use serde::{Deserialize, Serialize};

use super::aggregate::AggregateState;
use super::amount::{Amounts, Resource, Resources};
use super::capping::{apply_policy, container_policy, controlled_resources, filter_controlled};
use super::config::VerticalConfig;
use super::coordination::{HorizontalTarget, coordinate};
use super::estimator::{Estimators, at_least, confidence, scale_by_confidence};

/// The recommended requests of one container, in base units. Resources that are not
/// controlled are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecommendation {
    /// The container name.
    pub container: String,
    /// The requests to set, within the container policy's bounds.
    pub target: Resources,
    /// Requests below this are too small (the updater's resize threshold).
    pub lower_bound: Resources,
    /// Requests above this are wasteful.
    pub upper_bound: Resources,
    /// The target before `min_allowed`/`max_allowed`.
    pub uncapped_target: Resources,
    /// Resources sized for a horizontal utilization target (see
    /// [`super::coordination`]); the others come from the estimator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coordinated: Vec<Resource>,
    /// Upstream's capping annotations for the target (`cpu capped to minAllowed`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<String>,
    /// Days of history at one sample a minute (`getConfidence`).
    pub confidence: f64,
    /// CPU samples aggregated (`TotalSamplesCount`).
    pub total_samples: u64,
}

/// One container: estimate, coordinate, minimum, filter, cap.
pub(crate) fn recommend_container(
    config: &VerticalConfig,
    est: &Estimators,
    horizontal: &[HorizontalTarget],
    min: Amounts,
    name: &str,
    agg: &AggregateState,
) -> ContainerRecommendation {
    let conf = confidence(agg, config.confidence_interval_seconds);
    let mut target = est.target.estimate(agg, conf);
    let mut lower = est.lower_bound.estimate(agg, conf);
    let mut upper = est.upper_bound.estimate(agg, conf);
    let mut coordinated = Vec::new();
    for r in Resource::ALL {
        let mean = match r {
            Resource::Cpu => agg.cpu_moments().mean(),
            Resource::Memory => agg.memory_usage().mean(),
        };
        let Some(band) = mean.and_then(|m| coordinate(r, name, m, horizontal)) else {
            continue;
        };
        target.set(r, r.amount_from_base(band.target));
        let lo = config.lower_bound_confidence;
        lower.set(
            r,
            scale_by_confidence(r.amount_from_base(band.lower_bound), lo, conf, None),
        );
        let up = config.upper_bound_confidence;
        let max = config.max_upper_bound_multiplier;
        upper.set(
            r,
            scale_by_confidence(r.amount_from_base(band.upper_bound), up, conf, max),
        );
        coordinated.push(r);
    }
    let policy = container_policy(name, &config.container_policies);
    let controlled = controlled_resources(policy);
    let filtered = |a: Amounts| {
        let a = at_least(a, min);
        filter_controlled(a.cpu, a.memory, &controlled)
    };
    let mut target = filtered(target);
    let mut lower = filtered(lower);
    let mut upper = filtered(upper);
    let uncapped = target;
    let capped = apply_policy(&mut target, policy);
    apply_policy(&mut lower, policy);
    apply_policy(&mut upper, policy);
    coordinated.retain(|r| controlled.contains(r));
    ContainerRecommendation {
        container: name.to_owned(),
        target: target.to_resources(),
        lower_bound: lower.to_resources(),
        upper_bound: upper.to_resources(),
        uncapped_target: uncapped.to_resources(),
        coordinated,
        capped,
        confidence: conf,
        total_samples: agg.total_samples(),
    }
}

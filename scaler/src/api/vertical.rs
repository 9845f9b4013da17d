//! Between the ScalingPolicy CRD and the vertical recommender: `spec.vertical` into a
//! [`VerticalConfig`] (quantities parsed, an error naming the field), and a
//! [`ContainerRecommendation`] into a `status.recommendations[]` entry
//! ([`api::ContainerRecommendationStatus`]). It lives on the API side so that the engine
//! (`crate::engine`) uses no Kubernetes type (issue #13).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::api::{self, ResourceBounds, ResourceName, parse_quantity, quantity_from_f64};
use crate::engine::vertical::config::{ContainerPolicy, EstimatorKind, VerticalConfig};
use crate::engine::vertical::{
    ContainerRecommendation, Resource, Resources, VerticalError, invalid,
};

impl TryFrom<&api::VerticalSpec> for VerticalConfig {
    type Error = VerticalError;

    /// The VPA's defaults plus the spec's estimator and container policies.
    fn try_from(spec: &api::VerticalSpec) -> Result<Self, Self::Error> {
        let mut policies = Vec::with_capacity(spec.container_policies.len());
        for (i, p) in spec.container_policies.iter().enumerate() {
            let at = |rest: &str| format!("spec.vertical.containerPolicies[{i}].{rest}");
            policies.push(ContainerPolicy {
                container_name: p.container_name.clone(),
                min_allowed: bounds(&at("minAllowed"), p.min_allowed.as_ref())?,
                max_allowed: bounds(&at("maxAllowed"), p.max_allowed.as_ref())?,
                controlled_resources: p.controlled_resources.as_ref().map(|list| {
                    list.iter()
                        .map(|r| match r {
                            ResourceName::Cpu => Resource::Cpu,
                            ResourceName::Memory => Resource::Memory,
                        })
                        .collect()
                }),
            });
        }
        let cfg = VerticalConfig {
            estimator: match spec.estimator {
                api::Estimator::Histogram => EstimatorKind::Histogram,
                api::Estimator::MeanVariance => EstimatorKind::MeanVariance,
            },
            container_policies: policies,
            ..VerticalConfig::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

fn bounds(field: &str, b: Option<&ResourceBounds>) -> Result<Resources, VerticalError> {
    let Some(b) = b else {
        return Ok(Resources::default());
    };
    let one = |name: &str, q: &Option<Quantity>| -> Result<Option<f64>, VerticalError> {
        let Some(q) = q else { return Ok(None) };
        match parse_quantity(&q.0) {
            Ok(v) if v >= 0.0 => Ok(Some(v)),
            Ok(v) => Err(VerticalError::Negative {
                field: format!("{field}.{name}"),
                value: v,
            }),
            Err(problem) => Err(invalid(
                format!("{field}.{name}"),
                format!("{:?} {problem}", q.0),
            )),
        }
    };
    Ok(Resources {
        cpu_cores: one("cpu", &b.cpu)?,
        memory_bytes: one("memory", &b.memory)?,
    })
}

/// The `status.recommendations[]` entry of an engine recommendation: quantities rounded up
/// to a milli-unit (CPU as `250m`, memory in bytes).
impl From<&ContainerRecommendation> for api::ContainerRecommendationStatus {
    fn from(r: &ContainerRecommendation) -> Self {
        let q = |r: &Resources| {
            let b = ResourceBounds {
                cpu: r.cpu_cores.and_then(quantity_from_f64),
                memory: r.memory_bytes.and_then(quantity_from_f64),
            };
            (b.cpu.is_some() || b.memory.is_some()).then_some(b)
        };
        api::ContainerRecommendationStatus {
            container_name: r.container.clone(),
            target: q(&r.target),
            lower_bound: q(&r.lower_bound),
            upper_bound: q(&r.upper_bound),
            uncapped_target: q(&r.uncapped_target),
        }
    }
}

#[cfg(test)]
#[path = "vertical_tests.rs"]
mod tests;

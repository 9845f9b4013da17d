//! [`VerticalState`]: what the controller keeps per workload and calls each cycle.
//!
//! ```text
//! state.observe(pod, container, &usage, &requests, now)?;   // every sample, every pod
//! state.record_oom(pod, container, memory_request, now)?;   // every OOM kill
//! let recs = state.recommend(&config, &horizontal_targets(&spec), now)?;
//! state.prune(now);                                          // forget what expired
//! let cp = state.checkpoint();                               // serde, into the status
//! ```
//!
//! One [`AggregateState`] per container name (all pods of the workload together, as the VPA
//! merges containers of the same name), and per pod a small [`InstanceState`] for the memory
//! window and duplicate detection. The checkpoint holds the aggregates only, as the VPA's
//! `VerticalPodAutoscalerCheckpoint`; after a restart each pod opens a new memory interval.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::aggregate::AggregateState;
pub use super::aggregate::ContainerCheckpoint;
use super::amount::{Resource, Resources, cpu_amount_from_cores, memory_amount_from_bytes};
use super::config::{ModelConfig, VerticalConfig, field_name};
use super::coordination::HorizontalTarget;
use super::estimator::{Estimators, container_minimum};
use super::instance::{InstanceState, OomRejected};
pub use super::recommend::ContainerRecommendation;
use super::recommend::recommend_container;
use super::{VerticalError, finite, invalid, non_negative};

/// The checkpoint format version (upstream's `SupportedCheckpointVersion` is `v3`; this is
/// Tidal's own format).
pub const CHECKPOINT_VERSION: u32 = 1;

/// The history of every container of one workload.
#[derive(Debug, Clone, PartialEq)]
pub struct VerticalState {
    model: ModelConfig,
    containers: BTreeMap<String, ContainerState>,
}

/// One container name: its aggregate and its per-pod trackers.
#[derive(Debug, Clone, PartialEq)]
struct ContainerState {
    aggregate: AggregateState,
    pods: BTreeMap<String, InstanceState>,
}

/// Which parts of a sample were kept. A part is dropped, as upstream drops it, when it is not
/// later than the previous one of the same pod and container (CPU) or earlier (memory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub cpu: bool,
    pub memory: bool,
}

/// What became of an OOM.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OomOutcome {
    /// Recorded as a memory sample of this many bytes.
    Recorded { memory_bytes: f64 },
    /// More than a memory aggregation interval before the pod's last memory sample: dropped
    /// (upstream: "too old").
    TooOld,
}

/// A [`VerticalState`] as stored in the ScalingPolicy status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerticalCheckpoint {
    /// [`CHECKPOINT_VERSION`].
    pub version: u32,
    /// Per container name.
    #[serde(default)]
    pub containers: BTreeMap<String, ContainerCheckpoint>,
}

impl VerticalState {
    /// An empty state aggregating samples as `model` says.
    pub fn new(model: ModelConfig) -> Result<Self, VerticalError> {
        model.validate()?;
        Ok(Self {
            model,
            containers: BTreeMap::new(),
        })
    }

    /// How samples are aggregated.
    pub fn model(&self) -> &ModelConfig {
        &self.model
    }

    /// The containers with history, by name.
    pub fn containers(&self) -> impl Iterator<Item = &str> {
        self.containers.keys().map(String::as_str)
    }

    /// The aggregated history of one container.
    pub fn aggregate(&self, container: &str) -> Option<&AggregateState> {
        self.containers.get(container).map(|c| &c.aggregate)
    }

    /// One usage sample of `container` in `pod` at `now`, with the container's requests at
    /// that time (the CPU request weighs the sample; none counts as 0.1 core). Absent usage
    /// parts are skipped. Non-finite or negative numbers are errors, never zeros.
    pub fn observe(
        &mut self,
        pod: &str,
        container: &str,
        usage: &Resources,
        requests: &Resources,
        now: f64,
    ) -> Result<Observed, VerticalError> {
        let at = |what: &str, r: Resource| {
            format!("observe {container} in {pod}: {what}.{}", field_name(r))
        };
        names(pod, container)?;
        finite(|| format!("observe {container} in {pod}: now"), now)?;
        let mut cpu = None;
        let mut request_cpu = 0;
        let mut memory = None;
        for r in Resource::ALL {
            if let Some(v) = usage.get(r) {
                let v = non_negative(|| at("usage", r), v)?;
                match r {
                    Resource::Cpu => cpu = Some(cpu_amount_from_cores(v)),
                    Resource::Memory => memory = Some(memory_amount_from_bytes(v)),
                }
            }
            if let Some(v) = requests.get(r) {
                let v = non_negative(|| at("requests", r), v)?;
                if r == Resource::Cpu {
                    request_cpu = cpu_amount_from_cores(v);
                }
            }
        }
        let interval = self.model.memory_aggregation_interval_seconds;
        self.with_instance(container, pod, now, |inst, agg| Observed {
            cpu: cpu.is_some_and(|u| inst.add_cpu_sample(agg, u, request_cpu, now)),
            memory: memory.is_some_and(|m| inst.add_memory_sample(agg, m, now, false, interval)),
        })
    }

    /// An OOM kill of `container` in `pod` at `now`. `memory_bytes` is the container's memory
    /// request at the time (what upstream passes), or the usage an eviction reported. Recorded
    /// as a memory peak of `max(used + 100Mi, used * 1.2)`, `used` being the larger of
    /// `memory_bytes` and the pod's usage peak in the current interval. A pod or container
    /// seen for the first time is added (upstream drops the OOM of a container it does not
    /// know yet, which hides OOM loops that never produce a usage sample).
    pub fn record_oom(
        &mut self,
        pod: &str,
        container: &str,
        memory_bytes: f64,
        now: f64,
    ) -> Result<OomOutcome, VerticalError> {
        names(pod, container)?;
        finite(|| format!("record_oom {container} in {pod}: now"), now)?;
        let requested = memory_amount_from_bytes(non_negative(
            || format!("record_oom {container} in {pod}: memory_bytes"),
            memory_bytes,
        )?);
        let model = self.model.clone();
        self.with_instance(container, pod, now, |inst, agg| {
            match inst.record_oom(agg, now, requested, &model) {
                Ok(bytes) => OomOutcome::Recorded {
                    memory_bytes: bytes as f64,
                },
                // `Invalid` needs a negative amount, which validation excludes.
                Err(OomRejected::TooOld | OomRejected::Invalid) => OomOutcome::TooOld,
            }
        })
    }

    /// The recommendation of every container that has not expired, by name.
    ///
    /// `horizontal` are the policy's horizontal utilization targets
    /// ([`super::horizontal_targets`]); a resource they cover is sized by the
    /// horizontal/vertical rule ([`super::coordination`]) instead of the estimator. The pod
    /// minimum is split over the containers returned.
    pub fn recommend(
        &self,
        config: &VerticalConfig,
        horizontal: &[HorizontalTarget],
        now: f64,
    ) -> Result<Vec<ContainerRecommendation>, VerticalError> {
        config.validate()?;
        finite(|| "recommend: now".into(), now)?;
        for (i, h) in horizontal.iter().enumerate() {
            non_negative(
                || format!("horizontal[{i}].tolerance_down"),
                h.tolerance_down,
            )?;
            non_negative(|| format!("horizontal[{i}].tolerance_up"), h.tolerance_up)?;
            if h.target_utilization_percent <= 0 {
                return Err(invalid(
                    format!("horizontal[{i}].target_utilization_percent"),
                    "must be at least 1",
                ));
            }
        }
        let window = self.model.memory_aggregation_window_seconds();
        let live: Vec<(&String, &AggregateState)> = self
            .containers
            .iter()
            .filter(|(_, c)| !c.aggregate.is_expired(now, window))
            .map(|(name, c)| (name, &c.aggregate))
            .collect();
        let min = container_minimum(config, live.len());
        let est = Estimators::from_config(config);
        Ok(live
            .into_iter()
            .map(|(name, agg)| recommend_container(config, &est, horizontal, min, name, agg))
            .collect())
    }

    /// Forget containers without a CPU sample for the memory aggregation window (8 days;
    /// upstream's `isExpired` garbage collection) and pods silent for an aggregation interval
    /// (24h). Returns the forgotten container names.
    pub fn prune(&mut self, now: f64) -> Vec<String> {
        let window = self.model.memory_aggregation_window_seconds();
        let interval = self.model.memory_aggregation_interval_seconds;
        let expired: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, c)| c.aggregate.is_expired(now, window))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &expired {
            self.containers.remove(name);
        }
        for c in self.containers.values_mut() {
            c.pods
                .retain(|_, p| p.last_sample().is_some_and(|t| now - t < interval));
        }
        expired
    }

    /// Forget a deleted pod's trackers (its samples stay in the aggregates).
    pub fn remove_pod(&mut self, pod: &str) {
        for c in self.containers.values_mut() {
            c.pods.remove(pod);
        }
    }

    /// The aggregates, for the status (the VPA's checkpoint; histograms normalized to 10000).
    pub fn checkpoint(&self) -> VerticalCheckpoint {
        VerticalCheckpoint {
            version: CHECKPOINT_VERSION,
            containers: self
                .containers
                .iter()
                .map(|(name, c)| (name.clone(), c.aggregate.checkpoint()))
                .collect(),
        }
    }

    /// A state from [`Self::checkpoint`]'s output. Per-pod trackers start empty.
    pub fn from_checkpoint(
        model: ModelConfig,
        cp: &VerticalCheckpoint,
    ) -> Result<Self, VerticalError> {
        if cp.version != CHECKPOINT_VERSION {
            return Err(VerticalError::Checkpoint {
                field: "version".into(),
                problem: format!(
                    "unsupported version {}, this build reads {CHECKPOINT_VERSION}",
                    cp.version
                ),
            });
        }
        let mut state = Self::new(model)?;
        for (name, c) in &cp.containers {
            if name.is_empty() {
                return Err(VerticalError::Checkpoint {
                    field: "containers".into(),
                    problem: "a container name is empty".into(),
                });
            }
            let aggregate = AggregateState::from_checkpoint(&state.model, c)?;
            state.containers.insert(
                name.clone(),
                ContainerState {
                    aggregate,
                    pods: BTreeMap::new(),
                },
            );
        }
        Ok(state)
    }

    /// Run `f` on the tracker of `pod` and the aggregate of `container`, creating them (at
    /// `now`) when missing, without allocating names for known ones.
    fn with_instance<T>(
        &mut self,
        container: &str,
        pod: &str,
        now: f64,
        f: impl FnOnce(&mut InstanceState, &mut AggregateState) -> T,
    ) -> Result<T, VerticalError> {
        if let Some(c) = self.containers.get_mut(container) {
            return Ok(c.with_pod(pod, f));
        }
        let mut c = ContainerState {
            aggregate: AggregateState::new(&self.model, now)?,
            pods: BTreeMap::new(),
        };
        let out = c.with_pod(pod, f);
        self.containers.insert(container.to_owned(), c);
        Ok(out)
    }
}

impl ContainerState {
    fn with_pod<T>(
        &mut self,
        pod: &str,
        f: impl FnOnce(&mut InstanceState, &mut AggregateState) -> T,
    ) -> T {
        if let Some(inst) = self.pods.get_mut(pod) {
            return f(inst, &mut self.aggregate);
        }
        let mut inst = InstanceState::default();
        let out = f(&mut inst, &mut self.aggregate);
        self.pods.insert(pod.to_owned(), inst);
        out
    }
}

fn names(pod: &str, container: &str) -> Result<(), VerticalError> {
    if pod.is_empty() {
        return Err(invalid("pod", "must not be empty"));
    }
    if container.is_empty() {
        return Err(invalid("container", "must not be empty"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

//! Plain data types of the engine: what goes in ([`Spec`], [`State`], [`Observation`]) and what
//! comes out ([`Decision`]). They are serde structs so `tidal-scaler decide` can read and write
//! them as JSON, and so the ScalingPolicy CRD can embed [`Spec`] later.
//!
//! Units are in the field names. Metric values and requests are in base units (cores, bytes,
//! messages) as `f64`; the engine converts them to Kubernetes milli-units (`i64`, rounded up
//! like `Quantity.MilliValue()`) before doing any arithmetic, so results match the HPA exactly.
//! Times are seconds since the Unix epoch (`*_unix_seconds`), always passed in, never read.
//!
//! The policy side ([`Spec`] and what it contains) also derives `JsonSchema`, so the
//! ScalingPolicy CRD (kube-derive) can embed it as its `spec` without a second set of types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Everything `decide` needs: the policy, the world, the samples, and the time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub spec: Spec,
    pub state: State,
    #[serde(default)]
    pub observations: Vec<Observation>,
    /// The evaluation time. The engine never reads a clock.
    pub now_unix_seconds: f64,
}

/// What to scale towards: the HPA v2 `spec` (metrics, bounds, behavior) plus the controller-wide
/// settings that kube-controller-manager takes as flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `spec.minReplicas` (default 1). 0 allows scale to zero for Object/External metrics.
    #[serde(default = "default_min_replicas")]
    pub min_replicas: i32,
    /// `spec.maxReplicas`.
    pub max_replicas: i32,
    /// `spec.metrics`. Empty means the HPA default: CPU at 80% utilization.
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    /// `spec.behavior`. `None` selects the legacy path (5-minute highest recommendation,
    /// scale-up limited to `max(2*current, 4)`).
    #[serde(default)]
    pub behavior: Option<Behavior>,
    /// Controller flags (`--horizontal-pod-autoscaler-*`).
    #[serde(default)]
    pub controller: ControllerSettings,
    /// `spec.formula`: a CEL expression whose (ceiled) result replaces the highest per-metric
    /// proposal, e.g. `max(cpu.ratio, lag.ratio) * replicas` (see `engine::formula`). Unset
    /// means the HPA path, `ceil(current / target * replicas)` per metric, highest wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula: Option<String>,
}

fn default_min_replicas() -> i32 {
    1
}

/// kube-controller-manager flags that shape the HPA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerSettings {
    /// `--horizontal-pod-autoscaler-tolerance` (0.1).
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (5m).
    pub cpu_initialization_period_seconds: f64,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (30s).
    pub initial_readiness_delay_seconds: f64,
    /// `--horizontal-pod-autoscaler-downscale-stabilization` (5m).
    pub downscale_stabilization_window_seconds: i32,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self {
            tolerance: 0.1,
            cpu_initialization_period_seconds: 300.0,
            initial_readiness_delay_seconds: 30.0,
            downscale_stabilization_window_seconds: 300,
        }
    }
}

/// One entry of `spec.metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    /// Observations refer to the metric by this name. For `resource` and `container_resource`
    /// it is also the resource name (`cpu`, `memory`, ...) used to look up pod requests.
    pub name: String,
    #[serde(rename = "type")]
    pub source: MetricSource,
    /// Container name, required for `container_resource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Required except for `kafka_lag`, whose target is `kafka_lag.lag_per_replica`.
    #[serde(default)]
    pub target: MetricTarget,
    /// Settings of a `kafka_lag` metric (KEDA's Kafka scaler); defaults when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_lag: Option<KafkaLag>,
}

/// A `kafka_lag` metric: consumer-group lag, scaled like KEDA's Kafka scaler (an External
/// AverageValue metric with target `lag_per_replica`), capped at the partition count, with
/// activation and scale to zero after a cooldown. Offset-reset handling (`offsetResetPolicy`,
/// `scaleToZeroOnInvalidOffset`) happens upstream, in the Source computing the lag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaLag {
    /// KEDA `lagThreshold` (10): lag one replica is expected to handle.
    pub lag_per_replica: f64,
    /// KEDA `activationLagThreshold` (0): active while total lag is above it.
    pub activation_lag_threshold: f64,
    /// KEDA `allowIdleConsumers`: do not cap at the partition count.
    pub allow_idle_consumers: bool,
    /// KEDA `limitToPartitionsWithLag`: cap at the partitions that have lag.
    pub limit_to_partitions_with_lag: bool,
    /// KEDA `excludePersistentLag`: lag on partitions whose committed offset has not moved
    /// (`observations[].kafka.persistent_lag`) counts 0 for sizing but still activates.
    pub exclude_persistent_lag: bool,
    /// KEDA `cooldownPeriod` (300s): inactive this long before scaling to zero.
    pub cooldown_seconds: f64,
    /// Size replicas from rates to drain the backlog in a target time (one step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictive: Option<Predictive>,
    /// Which lag sizes: the latest reading (KEDA's), or each partition's lag averaged over its
    /// last commit interval (`observations[].kafka.commit_interval_lag`). Activation and scale
    /// to zero always use the latest.
    #[serde(skip_serializing_if = "LagSampling::is_latest")]
    pub lag_sampling: LagSampling,
}

/// The lag a `kafka_lag` metric sizes on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LagSampling {
    /// The lag read this round, as KEDA reads it at each poll.
    #[default]
    Latest,
    /// Each partition's committed lag averaged over its last commit interval: the mean of the
    /// sawtooth that periodic commits draw (`tidal_core::kafka::PartitionHistory::
    /// commit_interval_lag`), the latest where the source has no average.
    CommitInterval,
}

impl LagSampling {
    fn is_latest(&self) -> bool {
        *self == LagSampling::Latest
    }
}

impl Default for KafkaLag {
    fn default() -> Self {
        Self {
            lag_per_replica: 10.0,
            activation_lag_threshold: 0.0,
            allow_idle_consumers: false,
            limit_to_partitions_with_lag: false,
            exclude_persistent_lag: false,
            cooldown_seconds: 300.0,
            predictive: None,
            lag_sampling: LagSampling::Latest,
        }
    }
}

/// Predictive lag sizing (`engine/lag.rs`, `predictive_need`): the replicas that sustain the
/// produce rate and drain the backlog above `lag_per_replica` per consumer within
/// `target_drain_seconds`, the backlog projected `lookahead_seconds` ahead at the lag's current
/// growth rate, at the observed per-consumer consume rate; the HPA tolerance applies to
/// `need / status_replicas`, and the count is capped like the lag path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Predictive {
    /// Drain the current backlog within this many seconds.
    pub target_drain_seconds: f64,
    /// Skip the behavior rate policies (not stabilization or min/max) when this metric is
    /// chosen, so the target steps straight to the count (one rebalance).
    #[serde(default)]
    pub bypass_rate_limits: bool,
    /// Project the backlog this far ahead at its current growth rate (`produce - consume`),
    /// typically the time a new consumer takes to start consuming (pod start-up plus the
    /// group rebalance), since that much more lag builds up before new replicas help. 0: off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lookahead_seconds: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// `MetricSourceType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricSource {
    /// Per-pod resource usage against requests (`Resource`).
    Resource,
    /// Per-pod usage of one container (`ContainerResource`).
    ContainerResource,
    /// Per-pod custom metric (`Pods`), target `average_value`.
    Pods,
    /// One value describing one object (`Object`).
    Object,
    /// One or more values from outside the cluster (`External`), summed.
    External,
    /// Kafka consumer-group lag with KEDA's Kafka scaler semantics (`engine::lag`): the
    /// observations are summed (one per partition, or one total).
    KafkaLag,
}

/// `MetricTarget`: exactly the field matching `type` must be set. The default (an
/// `average_value` target with no value) is only valid for `kafka_lag`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricTarget {
    #[serde(rename = "type")]
    pub kind: TargetType,
    /// Percent of request, for `utilization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
    /// Base units per pod, for `average_value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<f64>,
    /// Base units in total, for `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

impl Default for MetricTarget {
    fn default() -> Self {
        Self {
            kind: TargetType::AverageValue,
            average_utilization: None,
            average_value: None,
            value: None,
        }
    }
}

/// `MetricTargetType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetType {
    Utilization,
    AverageValue,
    Value,
}

/// `spec.behavior`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Behavior {
    #[serde(default)]
    pub scale_up: Option<ScalingRules>,
    #[serde(default)]
    pub scale_down: Option<ScalingRules>,
}

/// `HPAScalingRules`. Unset fields take the upstream defaults (`autoscaling/v2/defaults.go`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScalingRules {
    #[serde(default)]
    pub stabilization_window_seconds: Option<i32>,
    #[serde(default)]
    pub select_policy: Option<SelectPolicy>,
    #[serde(default)]
    pub policies: Option<Vec<RatePolicy>>,
    /// Per-direction tolerance (KEP-4951), overrides `controller.tolerance`.
    #[serde(default)]
    pub tolerance: Option<f64>,
}

/// `ScalingPolicySelect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

/// A rate rule of a scaling direction (`HPAScalingPolicy`): at most `value` pods or percent
/// per `period_seconds`. Named `RatePolicy` here, apart from the ScalingPolicy CRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatePolicy {
    #[serde(rename = "type")]
    pub kind: PolicyType,
    pub value: i32,
    pub period_seconds: i32,
}

/// `HPAScalingPolicyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PolicyType {
    Pods,
    Percent,
}

/// The world as the controller sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// `scale.spec.replicas`: the HPA's `currentReplicas`.
    pub spec_replicas: i32,
    /// `scale.status.replicas` (defaults to `spec_replicas`); used by AverageValue
    /// Object/External metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_replicas: Option<i32>,
    /// Pods matched by the target's selector.
    #[serde(default)]
    pub pods: Vec<Pod>,
    /// Earlier unstabilized recommendations (from `Decision.next.recommendations`). Absent
    /// means the target was never seen: like HPA's `recordInitialRecommendation`, the current
    /// replica count is then recorded at `now` first, so a fresh controller does not scale down
    /// before a full stabilization window has passed. Present and empty means no history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendations: Option<Vec<Recommendation>>,
    /// Earlier scale events (from `Decision.next.scale_events`); only used with a behavior.
    #[serde(default)]
    pub scale_events: Vec<ScaleEvent>,
    /// When a `kafka_lag` metric was last active (from `Decision.next`); scale to zero waits
    /// `cooldown_seconds` after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_unix_seconds: Option<f64>,
}

/// The parts of a Pod the HPA looks at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    pub name: String,
    #[serde(default)]
    pub phase: PodPhase,
    /// `metadata.deletionTimestamp` is set.
    #[serde(default)]
    pub deleting: bool,
    /// `status.startTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_unix_seconds: Option<f64>,
    /// The `Ready` condition, if the pod has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ReadyCondition>,
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    /// Pod-level requests (`spec.resources.requests`, KEP-2837), base units by resource name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, f64>,
}

/// Which pods count as ready, in one place. Two rules, on purpose:
///
/// - [`Pod::is_running_and_ready`]: phase Running and `Ready=True`. The HPA's
///   `getReadyPodsCount` (kubernetes `pkg/controller/podautoscaler/replica_calculator.go`),
///   which multiplies a usage ratio for External, Object and Pods AverageValue metrics. It
///   counts a pod being deleted (upstream does not look at `deletionTimestamp` there), and the
///   HPA-exact engine keeps that. (The HPA's `groupPods`, for the per-pod averages, ignores
///   deleting pods: `replica_calc::group_pods`.)
/// - [`Pod::is_consuming`]: the same and not being deleted. Tidal's own count of the pods that
///   do work: the consumers of a predictive `kafkaLag` metric and the ready replicas of a
///   formula. A terminating consumer has left its group, so it does not drain the lag.
impl Pod {
    /// Phase Running and `Ready=True` (the HPA's `getReadyPodsCount`).
    pub fn is_running_and_ready(&self) -> bool {
        self.phase == PodPhase::Running
            && self
                .ready
                .is_some_and(|r| r.status == ConditionStatus::True)
    }

    /// Running, Ready and not being deleted: a pod that does work.
    pub fn is_consuming(&self) -> bool {
        !self.deleting && self.is_running_and_ready()
    }
}

/// `status.phase`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    Pending,
    #[default]
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// The pod's `Ready` condition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadyCondition {
    pub status: ConditionStatus,
    pub last_transition_unix_seconds: f64,
}

/// `ConditionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// A container and its requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    pub name: String,
    /// `resources.requests`, base units by resource name (`cpu` in cores, `memory` in bytes).
    #[serde(default)]
    pub requests: BTreeMap<String, f64>,
    /// For init containers: `restartPolicy: Always` (a sidecar), whose requests count.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_policy_always: bool,
}

/// One sample of one metric, from a Source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// `MetricSpec.name` this sample belongs to.
    pub metric: String,
    /// The pod, for per-pod metrics (`resource`, `container_resource`, `pods`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Base units. For `resource` CPU, cores; memory, bytes.
    #[serde(default)]
    pub value: f64,
    /// When the sample was taken (defaults to `now_unix_seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_unix_seconds: Option<f64>,
    /// The window the sample averages over (metrics-server `window`, default 15s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
    /// Set when the source failed to get this metric; the metric is then invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The source could not refresh this value (e.g. lag older than its poll interval): the
    /// metric may still scale up but blocks scale-down and scale to zero.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// Partition details of a `kafka_lag` sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaDetail>,
    /// With `error`: the source answered, but with a value that cannot be used (a negative
    /// load, two series for one pod). The metric is invalid with reason `InvalidMetric`
    /// instead of the HPA's `FailedGet…Metric`, which means the source did not answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invalid: bool,
}

/// What a `kafka_lag` observation knows besides its lag (`value`). Either send one
/// observation per partition (value = that partition's lag; `partitions` defaults to the
/// number of observations and partitions with lag to those with a value above 0), or one total
/// with `partitions` and `partitions_with_lag` set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaDetail {
    /// Partitions of the topic(s) the group consumes (the cap; the maximum over observations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i64>,
    /// Partitions with lag above 0 (summed over observations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions_with_lag: Option<i64>,
    /// Part of `value` on partitions whose committed offset has not moved (summed).
    pub persistent_lag: f64,
    /// Messages per second the group consumes now (summed), for the predictive option.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consume_rate_per_second: Option<f64>,
    /// Messages per second produced to the partitions (summed), for the predictive option.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub produce_rate_per_second: Option<f64>,
    /// `value` with each partition's lag averaged over its last commit interval (summed), for
    /// `lag_sampling: commit_interval`; `value` where unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_interval_lag: Option<f64>,
}

/// An unstabilized recommendation, as HPA keeps in `recommendations[key]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recommendation {
    pub replicas: i32,
    pub at_unix_seconds: f64,
}

/// A scale event: positive `replica_change` for scale-up, negative for scale-down.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleEvent {
    pub replica_change: i32,
    pub at_unix_seconds: f64,
}

/// The engine's answer, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// `scale.spec.replicas` on input.
    pub current_replicas: i32,
    /// What the target should have.
    pub desired_replicas: i32,
    /// `desired_replicas != current_replicas`.
    pub rescale: bool,
    /// HPA's rescale reason (for the Event), when rescaling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rescale_reason: Option<String>,
    /// Tolerances in force (after behavior overrides).
    pub tolerances: Tolerances,
    /// One proposal per metric, in `spec.metrics` order.
    pub proposals: Vec<Proposal>,
    /// The metric whose proposal was chosen (the highest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen_metric: Option<String>,
    /// The chosen proposal before stabilization and limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric_replicas: Option<i32>,
    /// Each step that changed the number, in order.
    pub limits: Vec<Limit>,
    /// HPA-style status conditions.
    pub conditions: Vec<Condition>,
    /// What to store and pass back in `State` next time if this decision is applied.
    pub next: NextState,
}

/// Scale-down and scale-up tolerance around a usage ratio of 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerances {
    pub scale_down: f64,
    pub scale_up: f64,
}

/// The replica count one metric proposes, or why it could not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub metric: String,
    #[serde(rename = "type")]
    pub source: MetricSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The current value, as HPA reports it in `status.currentMetrics`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<CurrentValue>,
    /// How the pods were grouped (per-pod metrics only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodCounts>,
    /// HPA condition reason when the metric is invalid (e.g. `FailedGetResourceMetric`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Some observation was stale: this proposal cannot lower the count.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// How a `kafka_lag` proposal was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<LagOutcome>,
}

/// How the lag proposal was reached, reported in `Proposal.lag`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LagOutcome {
    /// The proposed replica count.
    pub replicas: i32,
    /// Total lag above `activation_lag_threshold` (persistent lag included).
    pub active: bool,
    /// Lag used for sizing (persistent lag excluded when configured).
    pub lag: f64,
    /// The replica cap (partitions, or partitions with lag), unless idle consumers are allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<i32>,
    /// The HPA path's count before the cap (what KEDA's tolerance and integer cap would give
    /// is in the tests as `keda_desired`).
    pub uncapped: i32,
    /// The predictive option sized this proposal.
    pub predictive: bool,
    /// Inactive for at least the cooldown: the proposal is 0.
    pub scale_to_zero: bool,
    /// The average HPA reports for the metric: `ceil(capped lag / status replicas)`.
    pub average_value: f64,
}

/// `MetricValueStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurrentValue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub average_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// Pod grouping of `groupPods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodCounts {
    pub ready: usize,
    pub unready: usize,
    pub missing: usize,
    pub ignored: usize,
}

/// A step that moved the recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub stage: LimitStage,
    pub from: i32,
    pub to: i32,
    pub reason: String,
}

/// Where a [`Limit`] was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitStage {
    /// Current replicas outside `[min, max]` before any metric was read.
    Bounds,
    /// Stabilization window.
    Stabilization,
    /// Rate policies and min/max clamps.
    Rate,
    /// Invalid metrics prevented the change.
    InvalidMetrics,
    /// A stale metric prevented a scale-down.
    StaleMetrics,
    /// `spec.formula` replaced the highest proposal.
    Formula,
}

/// An HPA status condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: ConditionType,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// HPA condition types, in the order HPA lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConditionType {
    AbleToScale,
    ScalingActive,
    ScalingLimited,
}

/// History to keep for the next decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NextState {
    pub recommendations: Vec<Recommendation>,
    pub scale_events: Vec<ScaleEvent>,
    /// When a `kafka_lag` metric was last active, to pass back in `State`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_unix_seconds: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy types produce a JSON schema a CRD can embed, with the required fields.
    #[test]
    fn spec_has_a_json_schema_for_the_crd() {
        let schema = serde_json::to_value(schemars::schema_for!(Spec)).expect("schema serializes");
        let required = schema["required"].as_array().expect("required list");
        assert!(required.iter().any(|v| v == "max_replicas"), "{schema}");
        assert!(
            !required.iter().any(|v| v == "min_replicas"),
            "min_replicas has a default"
        );
        assert!(schema["properties"]["metrics"].is_object());
    }

    /// Input JSON round-trips, and unknown fields are rejected naming the field.
    #[test]
    fn spec_rejects_unknown_fields() {
        let ok: Spec = serde_json::from_str(r#"{"max_replicas": 3}"#).expect("minimal spec");
        assert_eq!(ok.min_replicas, 1);
        assert_eq!(ok.controller, ControllerSettings::default());
        let err = serde_json::from_str::<Spec>(r#"{"max_replicas": 3, "maxReplicas": 4}"#)
            .expect_err("unknown field");
        assert!(err.to_string().contains("maxReplicas"), "{err}");
    }
}

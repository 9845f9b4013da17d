//! The `spec` of the ScalingPolicy custom resource (`tidal.dev/v1alpha1`).
//!
//! Field names are camelCase on the wire, as in every Kubernetes API. Validation that the
//! apiserver can do is in the schema: `minimum`/`maximum`, `enum`s, patterns, list-map keys
//! (unique metric and container names) and CEL rules (`x-kubernetes-validations`) for the
//! cross-field checks: `minReplicas <= maxReplicas`, exactly one source per metric and exactly
//! one target per source. [`crate::api::convert`] checks the same again (for objects that never
//! went through an apiserver) and parses the quantities. `docs/crd.md` describes every field.
//!
//! "Exactly one of" is a set of optional fields plus a CEL rule, never an untagged enum or
//! `oneOf`: those do not give a structural schema.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::limits::{
    COOLDOWN_SECONDS, LOOKAHEAD_SECONDS, PERSISTENT_LAG_WINDOW_SECONDS, POLICY_PERIOD_SECONDS,
    POLICY_VALUE, STABILIZATION_WINDOW_SECONDS, TARGET_DRAIN_SECONDS,
};
use crate::engine::types::{PolicyType, SelectPolicy};

pub use super::bounds::ResourceBounds;
use super::schema;
use super::status::ScalingPolicyStatus;

/// A ScalingPolicy scales one workload (anything with a scale subresource) on the metrics it
/// names, and optionally right-sizes its containers.
// The printer columns repeat `type_ = "integer"`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "tidal.dev",
    version = "v1alpha1",
    kind = "ScalingPolicy",
    namespaced,
    shortname = "sp",
    category = "tidal",
    status = "ScalingPolicyStatus",
    derive = "PartialEq",
    doc = "ScalingPolicy scales a workload with a scale subresource on resource, Kafka lag and Prometheus metrics, and can right-size its containers.",
    printcolumn(
        name = "Reference",
        type_ = "string",
        description = "The scaled workload (Kind/name)",
        json_path = ".status.reference"
    ),
    printcolumn(
        name = "Targets",
        type_ = "string",
        description = "Each metric's current value and target",
        json_path = ".status.targets"
    ),
    printcolumn(name = "Min", type_ = "integer", json_path = ".spec.minReplicas"),
    printcolumn(name = "Max", type_ = "integer", json_path = ".spec.maxReplicas"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.currentReplicas"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Active",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ScalingActive\")].status"
    ),
    printcolumn(
        name = "Paused",
        type_ = "string",
        json_path = ".metadata.annotations.tidal\\.dev/paused"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas",
        priority = 1
    ),
    printcolumn(
        name = "Metric",
        type_ = "string",
        description = "The metric that chose the last decision",
        json_path = ".status.lastDecision.dominantMetric",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.minReplicas <= self.maxReplicas",
        "message": "minReplicas must be less than or equal to maxReplicas",
        "fieldPath": ".minReplicas",
        "reason": "FieldValueInvalid"
    },
    {
        "rule": "self.minReplicas > 0 || self.metrics.exists(m, has(m.kafkaLag) || (has(m.prometheus) && !has(m.prometheus.targetAverageValue)))",
        "message": "minReplicas 0 (scale to zero) needs a kafkaLag metric or a prometheus metric with targetValue or targetPerReplica",
        "fieldPath": ".minReplicas",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct ScalingPolicySpec {
    /// The workload to scale: a Deployment, a StatefulSet, or any resource with a scale
    /// subresource, in the policy's namespace.
    pub target_ref: TargetRef,
    /// Lower bound of the replica count. 0 allows scale to zero; it needs a `kafkaLag` metric
    /// or a `prometheus` metric with `targetValue` or `targetPerReplica`, which wake the
    /// workload up (activation).
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
    /// Upper bound of the replica count.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// The metrics to scale on; the highest proposal wins. Empty means CPU at 80% utilization,
    /// as the HPA defaults.
    #[serde(default)]
    #[schemars(length(max = 20))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub metrics: Vec<MetricSpec>,
    /// A CEL expression over the named metrics and the current state giving the desired
    /// replica count, replacing "the highest proposal wins".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub formula: Option<String>,
    /// Scale-up and scale-down rules (stabilization windows and rate limits), as in the HPA's
    /// `behavior`. Absent means the HPA's legacy behavior.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<Behavior>,
    /// Vertical right-sizing of the target's containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertical: Option<VerticalSpec>,
    /// Compute and report decisions (status, Events, metrics) without changing the workload.
    #[serde(default)]
    pub dry_run: bool,
}

fn default_min_replicas() -> i32 {
    1
}

/// The scaled workload (`autoscaling/v2` `CrossVersionObjectReference`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// API version of the target, e.g. `apps/v1`.
    #[schemars(length(min = 1, max = 253))]
    pub api_version: String,
    /// Kind of the target, e.g. `Deployment` or `StatefulSet`; it must have a scale
    /// subresource.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// Name of the target, in the policy's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One metric: a name plus exactly one source (`resource`, `kafkaLag` or `prometheus`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.resource) ? 1 : 0) + (has(self.kafkaLag) ? 1 : 0) + (has(self.prometheus) ? 1 : 0) == 1",
        "message": "exactly one of resource, kafkaLag, prometheus must be set"
    },
    {
        "rule": "!has(self.resource) || self.name == self.resource.name",
        "message": "a resource metric is named after its resource (cpu or memory)",
        "fieldPath": ".name",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct MetricSpec {
    /// The metric's name: unique in the policy, usable as an identifier in `formula`. A
    /// `resource` metric is named after its resource (`cpu` or `memory`).
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub name: String,
    /// Per-pod CPU or memory usage against the pods' requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetric>,
    /// Lag of a Kafka consumer group, shared out over the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_lag: Option<KafkaLagMetric>,
    /// The result of a PromQL query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
}

/// `resource`: CPU or memory of the target's pods, with exactly one target.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.targetUtilization) != has(self.targetAverageValue)",
    "message": "exactly one of targetUtilization, targetAverageValue must be set"
}]))]
pub struct ResourceMetric {
    /// `cpu` or `memory`.
    pub name: ResourceName,
    /// Only this container's usage and requests (the HPA's `ContainerResource`); absent means
    /// the whole pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub container: Option<String>,
    /// Target average utilization, in percent of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_utilization: Option<i32>,
    /// Target average usage per pod, as a quantity (`500m` CPU, `1Gi` memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::quantity")]
    pub target_average_value: Option<Quantity>,
}

/// A resource the engine can scale on.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ResourceName {
    Cpu,
    Memory,
}

impl ResourceName {
    /// The Kubernetes resource name (`cpu`, `memory`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
        }
    }
}

/// `kafkaLag`: the summed lag of a consumer group, with a lag budget per replica.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaLagMetric {
    /// The Kafka cluster: a cluster name configured in `tidal-scaler`, or a comma-separated
    /// bootstrap server list (`host:port,...`).
    #[schemars(length(min = 1, max = 1024))]
    pub cluster: String,
    /// The consumer group.
    #[schemars(length(min = 1, max = 255))]
    pub group: String,
    /// Topics to count; empty means every topic the group has committed offsets for.
    #[serde(default)]
    #[schemars(length(max = 100), inner(length(min = 1, max = 249)))]
    pub topics: Vec<String>,
    /// Lag (messages) one replica is expected to handle: desired = ceil(lag / lagPerReplica).
    #[schemars(range(min = 1))]
    pub lag_per_replica: i64,
    /// With `minReplicas: 0`: the workload is woken from zero only once the lag exceeds
    /// this, and scaled to zero when it is at or below it.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub activation_lag_threshold: i64,
    /// How to count the lag of a partition without a committed offset: `latest` (0, the
    /// consumer will start at the end), `earliest` (everything retained), `zero` (the whole
    /// log end offset).
    #[serde(default)]
    pub offset_reset_policy: OffsetResetPolicy,
    /// Never propose more replicas than there are partitions, since a consumer beyond that
    /// is idle (the partition cap), unless this is true (KEDA's `allowIdleConsumers`).
    #[serde(default)]
    pub allow_idle_consumers: bool,
    /// Cap at the number of partitions that have lag instead of all partitions (KEDA's
    /// `limitToPartitionsWithLag`).
    #[serde(default)]
    pub limit_to_partitions_with_lag: bool,
    /// Lag on partitions whose committed offset has not moved counts 0 for sizing but still
    /// activates (KEDA's `excludePersistentLag`).
    #[serde(default)]
    pub exclude_persistent_lag: bool,
    /// With `excludePersistentLag`: a partition's lag is persistent once its committed
    /// offset has not moved for this long. Make it at least the consumers' commit interval
    /// (KEDA compares with its previous poll, 30 s by default).
    #[serde(default = "default_persistent_lag_window_seconds")]
    #[schemars(range(min = PERSISTENT_LAG_WINDOW_SECONDS.min, max = PERSISTENT_LAG_WINDOW_SECONDS.max))]
    pub persistent_lag_window_seconds: i32,
    /// With `minReplicas: 0`: scale to zero only after the lag was at or below
    /// `activationLagThreshold` for this long (KEDA's `cooldownPeriod`).
    #[serde(default = "default_cooldown_seconds")]
    #[schemars(range(min = COOLDOWN_SECONDS.min, max = COOLDOWN_SECONDS.max))]
    pub cooldown_seconds: i32,
    /// Size from the produce and consume rates to drain the backlog in a target time, in one
    /// step, instead of `lag / lagPerReplica`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictive: Option<PredictiveLag>,
    /// Which lag sizes: `latest` (the default, KEDA's: the lag read this round) or
    /// `commitInterval` (each partition's lag averaged over its consumers' last commit
    /// interval, so the sawtooth that periodic commits draw is sized on its mean, not on
    /// whichever point of it a round lands). Activation and scale to zero read the latest.
    #[serde(default, skip_serializing_if = "LagSampling::is_latest")]
    pub lag_sampling: LagSampling,
}

/// `kafkaLag.lagSampling`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LagSampling {
    #[default]
    Latest,
    CommitInterval,
}

impl LagSampling {
    fn is_latest(&self) -> bool {
        *self == LagSampling::Latest
    }
}

fn default_persistent_lag_window_seconds() -> i32 {
    30
}

fn default_cooldown_seconds() -> i32 {
    300
}

/// `kafkaLag.predictive`: the replicas that sustain the produce rate and drain the lag above
/// `lagPerReplica` per consumer within `targetDrainSeconds` (projected `lookaheadSeconds`
/// ahead), at the per-consumer consume rate, with the tolerance; capped like the lag path.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictiveLag {
    /// Drain the current backlog within this many seconds.
    #[schemars(range(min = TARGET_DRAIN_SECONDS.min, max = TARGET_DRAIN_SECONDS.max))]
    pub target_drain_seconds: i32,
    /// Skip the `behavior` rate policies (not stabilization or min/max) when this metric is
    /// chosen, so the target steps straight to the count (one consumer-group rebalance).
    #[serde(default)]
    pub bypass_rate_limits: bool,
    /// Project the backlog this many seconds ahead at its current growth rate (produce minus
    /// consume rate): set it to the time a new consumer takes to start consuming (pod
    /// start-up plus the group rebalance). 0 (the default) turns the projection off.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = LOOKAHEAD_SECONDS.min, max = LOOKAHEAD_SECONDS.max))]
    pub lookahead_seconds: i32,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// Lag of a partition that has no committed offset.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OffsetResetPolicy {
    #[default]
    Latest,
    Earliest,
    Zero,
}

/// `prometheus`: a PromQL query with exactly one target.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.targetValue) ? 1 : 0) + (has(self.targetAverageValue) ? 1 : 0) + (has(self.targetPerReplica) ? 1 : 0) == 1",
    "message": "exactly one of targetValue, targetAverageValue, targetPerReplica must be set"
}]))]
pub struct PrometheusMetric {
    /// PromQL instant query. With `targetAverageValue` it returns one series per pod (with a
    /// `pod` label); otherwise its series are summed.
    #[schemars(length(min = 1, max = 8192))]
    pub query: String,
    /// The whole result against a total target (HPA `External`/`Value`):
    /// desired = ceil(ready replicas * value / targetValue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::quantity")]
    pub target_value: Option<Quantity>,
    /// The per-pod series averaged over the pods (HPA `Pods`/`AverageValue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::quantity")]
    pub target_average_value: Option<Quantity>,
    /// The whole result shared out over the replicas (HPA `External`/`AverageValue`, the KEDA
    /// path): desired = ceil(value / targetPerReplica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::quantity")]
    pub target_per_replica: Option<Quantity>,
    /// Use negative values. By default a negative value (a load cannot be below zero, so it
    /// is a broken query or exporter) makes the metric invalid (`InvalidMetric`): nothing
    /// scales on it, where it would otherwise drive the count to `minReplicas`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_negative: bool,
}

/// `behavior` (`HorizontalPodAutoscalerBehavior`).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Behavior {
    /// Rules for scaling up. Unset fields take the HPA defaults (no stabilization; 4 pods or
    /// 100% per 15s, whichever is more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRules>,
    /// Rules for scaling down. Unset fields take the HPA defaults (300s stabilization; 100%
    /// per 15s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
}

/// `HPAScalingRules`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// Seconds of past recommendations to consider (0 to 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = STABILIZATION_WINDOW_SECONDS.min, max = STABILIZATION_WINDOW_SECONDS.max))]
    pub stabilization_window_seconds: Option<i32>,
    /// Rate limits; which one applies is chosen by `selectPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub policies: Option<Vec<HpaScalingPolicy>>,
    /// `Max` (the policy allowing the biggest change, the default), `Min`, or `Disabled` (no
    /// scaling in this direction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<SelectPolicy>,
    /// Usage ratio change ignored in this direction (e.g. 0.05 for 5%), overriding the
    /// controller's tolerance (0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub tolerance: Option<f64>,
}

/// `HPAScalingPolicy`: at most `value` pods, or `value` percent, per `periodSeconds`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HpaScalingPolicy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub kind: PolicyType,
    /// Pods or percent allowed per period; more than 0.
    #[schemars(range(min = POLICY_VALUE.min))]
    pub value: i32,
    /// The period, 1 to 1800 seconds.
    #[schemars(range(min = POLICY_PERIOD_SECONDS.min, max = POLICY_PERIOD_SECONDS.max))]
    pub period_seconds: i32,
}

/// `vertical`: right-sizing of container requests.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerticalSpec {
    /// `Off` (recommendations in the status, nothing applied: the VPA's `Off`), `InPlace`
    /// (resize running pods), or `Template` (patch the workload's pod template, which rolls
    /// the pods). `Recommend` is a deprecated name of `Off`. Without `vertical`, nothing is
    /// recommended.
    #[serde(default)]
    pub mode: VerticalMode,
    /// Per-container bounds; containers not listed are right-sized without bounds. The name
    /// `*` applies to every container not listed by name.
    #[serde(default)]
    #[schemars(length(max = 50))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["containerName"]))]
    pub container_policies: Vec<ContainerPolicy>,
    /// How usage becomes a recommendation: `histogram` (decaying histogram percentiles, as
    /// the VPA) or `meanVariance` (mean plus a multiple of the standard deviation).
    #[serde(default)]
    pub estimator: Estimator,
}

/// `vertical.mode`. The one name Tidal shares with the VPA's `updateMode`, `Off`, means
/// what it means there (`docs/vertical.md`, "Modes").
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
pub enum VerticalMode {
    /// Recommendations in the status, none applied (the VPA's `Off`).
    #[default]
    Off,
    /// Deprecated: the name `Off` had before it took the VPA's meaning. The same as `Off`.
    Recommend,
    /// Running pods resized in place (`pods/resize`), no restart.
    InPlace,
    /// The workload's pod template patched (the workload rolls its pods).
    Template,
}

impl VerticalMode {
    /// The mode a deprecated name stands for (`Recommend` is `Off`).
    pub fn effective(self) -> Self {
        match self {
            Self::Recommend => Self::Off,
            m => m,
        }
    }

    /// Why this name is deprecated, for the policy's status; `None` for a current name.
    pub fn deprecation(self) -> Option<&'static str> {
        match self {
            Self::Recommend => Some(
                "spec.vertical.mode Recommend is deprecated: use \"Off\", which now means the \
                 same (recommendations, nothing applied), as the VPA's Off does",
            ),
            _ => None,
        }
    }
}

/// `vertical.estimator`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Estimator {
    #[default]
    Histogram,
    MeanVariance,
}

/// Bounds for one container. `minAllowed <= maxAllowed` is checked when the spec is
/// converted (a CEL rule comparing quantities costs too much on an int-or-string).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPolicy {
    /// The container's name, or `*` for every container not listed by name.
    #[schemars(length(min = 1, max = 63))]
    pub container_name: String,
    /// Never recommend less than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_allowed: Option<ResourceBounds>,
    /// Never recommend more than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_allowed: Option<ResourceBounds>,
    /// The resources to right-size; absent means both `cpu` and `memory`, empty means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub controlled_resources: Option<Vec<ResourceName>>,
}

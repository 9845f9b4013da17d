//! The `status` of a ScalingPolicy: HPA-style conditions, replica counts, the current value of
//! each metric, the per-container recommendations and why the last decision was taken.
//!
//! The controller fills it from an engine [`Decision`](crate::engine::Decision); the
//! conversions that need no clock or cluster state are here ([`ConditionType`],
//! [`LastDecision::from_decision`]).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::types as engine;

use super::schema;

/// `status` of a ScalingPolicy.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicyStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `AbleToScale`, `ScalingActive` and `ScalingLimited`, with the HPA's reasons, and
    /// `Ready` (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<ScalingCondition>,
    /// The target as `Kind/name`, as the HPA's REFERENCE column shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Each metric's current value and target, as the HPA's TARGETS column shows them:
    /// `lag: 30/10, cpu: 45%/80%` (`<unknown>` for a value the last decision lacked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<String>,
    /// The target's replica count (`scale.spec.replicas`) when last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    /// The replica count the last decision asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// When the replica count was last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::time")]
    pub last_scale_time: Option<Time>,
    /// The last value of each metric, in `spec.metrics` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub current_metrics: Vec<MetricStatus>,
    /// Per-container request recommendations (with `spec.vertical`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["containerName"]))]
    pub recommendations: Vec<ContainerRecommendationStatus>,
    /// Why the last decision was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<LastDecision>,
    /// The stabilization and rate-limit history the next decision needs, so a restarted or
    /// failed-over scaler carries on where the last leader stopped (the HPA keeps it in
    /// memory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
}

/// The engine history (`Decision.next`) kept in the status.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Unstabilized recommendations inside the longest stabilization window.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub recommendations: Vec<CheckpointRecommendation>,
    /// Replica changes inside the longest rate-policy period.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub scale_events: Vec<CheckpointScaleEvent>,
    /// When a `kafkaLag` metric was last active (Unix seconds), for the scale-to-zero cooldown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_unix_seconds: Option<f64>,
    /// The vertical recommender's histograms (with `spec.vertical`), weights normalized as
    /// the VPA's checkpoints are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::opaque_object")]
    pub vertical: Option<crate::engine::vertical::VerticalCheckpoint>,
}

/// One recommendation of the history.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRecommendation {
    pub replicas: i32,
    /// Unix seconds.
    pub at: f64,
}

/// One applied replica change of the history.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointScaleEvent {
    /// Positive for scale-up, negative for scale-down.
    pub replica_change: i32,
    /// Unix seconds.
    pub at: f64,
}

impl Checkpoint {
    /// From the engine's history.
    pub fn from_engine(next: &engine::NextState) -> Self {
        Self {
            recommendations: next
                .recommendations
                .iter()
                .map(|r| CheckpointRecommendation {
                    replicas: r.replicas,
                    at: r.at_unix_seconds,
                })
                .collect(),
            scale_events: next
                .scale_events
                .iter()
                .map(|e| CheckpointScaleEvent {
                    replica_change: e.replica_change,
                    at: e.at_unix_seconds,
                })
                .collect(),
            last_active_unix_seconds: next.last_active_unix_seconds,
            vertical: None,
        }
    }

    /// Back to the engine's history.
    pub fn to_engine(&self) -> engine::NextState {
        engine::NextState {
            recommendations: self
                .recommendations
                .iter()
                .map(|r| engine::Recommendation {
                    replicas: r.replicas,
                    at_unix_seconds: r.at,
                })
                .collect(),
            scale_events: self
                .scale_events
                .iter()
                .map(|e| engine::ScaleEvent {
                    replica_change: e.replica_change,
                    at_unix_seconds: e.at,
                })
                .collect(),
            last_active_unix_seconds: self.last_active_unix_seconds,
        }
    }
}

impl ScalingPolicyStatus {
    /// Record an engine decision taken at `now` for `spec` (the engine spec it was taken
    /// with): replica counts, one entry per metric, the conditions and the last decision. The
    /// controller sets `lastScaleTime` and `observedGeneration` itself, once it has applied
    /// the change.
    pub fn record_decision(&mut self, d: &engine::Decision, spec: &engine::Spec, now: &Time) {
        self.current_replicas = Some(d.current_replicas);
        self.desired_replicas = Some(d.desired_replicas);
        self.current_metrics = d
            .proposals
            .iter()
            .map(|p| match spec.metrics.iter().find(|m| m.name == p.metric) {
                Some(m) => MetricStatus::from_proposal(p, m),
                None => MetricStatus {
                    name: p.metric.clone(),
                    value: None,
                    target: None,
                    proposed_replicas: p.replicas,
                    error: p.invalid_reason.clone(),
                },
            })
            .collect();
        self.targets = Some(targets(&self.current_metrics, spec));
        self.set_conditions(&d.conditions, now);
        self.last_decision = Some(LastDecision {
            time: Some(now.clone()),
            ..LastDecision::from_decision(d)
        });
    }

    /// Replace the conditions with the engine's, keeping `lastTransitionTime` of a condition
    /// whose status did not change and setting it to `now` for one that did (or is new), as
    /// `meta.SetStatusCondition` does. The time is an argument: nothing here reads a clock.
    /// `Ready` follows from the others (see [`ready`]).
    pub fn set_conditions(&mut self, conditions: &[engine::Condition], now: &Time) {
        let mut next: Vec<ScalingCondition> = conditions
            .iter()
            .map(|c| self.transitioned(ScalingCondition::from_engine(c), now))
            .collect();
        next.push(self.transitioned(ready(&next), now));
        self.conditions = next;
    }

    /// Derives `Ready` again from the other conditions, after one was changed in place; its
    /// `lastTransitionTime` is `since`'s `Ready`'s when the status is the same (`since` is the
    /// status this one replaces).
    pub fn refresh_ready(&mut self, since: &ScalingPolicyStatus, now: &Time) {
        let r = since.transitioned(ready(&self.conditions), now);
        self.conditions.retain(|c| c.kind != ConditionType::Ready);
        self.conditions.push(r);
    }

    /// `new` with the `lastTransitionTime` of the current condition of its type when its
    /// status did not change, else `now`.
    fn transitioned(&self, mut new: ScalingCondition, now: &Time) -> ScalingCondition {
        new.last_transition_time = match self.conditions.iter().find(|o| o.kind == new.kind) {
            Some(old) if old.status == new.status => old
                .last_transition_time
                .clone()
                .or_else(|| Some(now.clone())),
            _ => Some(now.clone()),
        };
        new
    }
}

/// How many metrics the TARGETS column lists before `+ N more...` (as kubectl prints an HPA's).
const TARGETS_SHOWN: usize = 3;

/// The TARGETS column: `name: value/target` per metric, `%` for utilization.
pub fn targets(metrics: &[MetricStatus], spec: &engine::Spec) -> String {
    let show = |q: &Option<Quantity>| q.as_ref().map_or("<unknown>", |q| q.0.as_str()).to_string();
    let mut parts: Vec<String> = metrics
        .iter()
        .take(TARGETS_SHOWN)
        .map(|m| {
            let percent = spec.metrics.iter().any(|s| {
                s.name == m.name
                    && s.source != engine::MetricSource::KafkaLag
                    && s.target.kind == engine::TargetType::Utilization
            });
            let unit = if percent { "%" } else { "" };
            format!(
                "{}: {}{unit}/{}{unit}",
                m.name,
                show(&m.value),
                show(&m.target)
            )
        })
        .collect();
    if metrics.len() > TARGETS_SHOWN {
        parts.push(format!("+ {} more...", metrics.len() - TARGETS_SHOWN));
    }
    parts.join(", ")
}

/// `ScalingActive` reasons under which the policy is still healthy: the target was scaled to
/// zero by someone else (as the HPA says), or the policy is paused on purpose.
const HEALTHY_INACTIVE: [&str; 2] = ["ScalingDisabled", "ScalingPaused"];

/// The kstatus-style `Ready` condition: False with the reason and message of the first of
/// `AbleToScale` or `ScalingActive` that says the policy cannot do its work, else True.
pub fn ready(conditions: &[ScalingCondition]) -> ScalingCondition {
    let failing = conditions.iter().find(|c| {
        c.status == ConditionStatus::False
            && match c.kind {
                ConditionType::AbleToScale => true,
                ConditionType::ScalingActive => !c
                    .reason
                    .as_deref()
                    .is_some_and(|r| HEALTHY_INACTIVE.contains(&r)),
                _ => false,
            }
    });
    let paused = conditions.iter().find(|c| {
        c.kind == ConditionType::ScalingActive && c.reason.as_deref() == Some("ScalingPaused")
    });
    let (status, reason, message) = match (failing, paused) {
        (Some(c), _) => (ConditionStatus::False, c.reason.clone(), c.message.clone()),
        (None, Some(c)) => (ConditionStatus::True, c.reason.clone(), c.message.clone()),
        (None, None) => (
            ConditionStatus::True,
            Some("Reconciled".into()),
            Some("the scaler evaluated the policy at its current generation".into()),
        ),
    };
    ScalingCondition {
        kind: ConditionType::Ready,
        status,
        reason,
        message,
        last_transition_time: None,
    }
}

/// An HPA-style condition.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingCondition {
    /// `AbleToScale`, `ScalingActive` or `ScalingLimited` (as the HPA), or `Ready` (kstatus:
    /// False when the policy cannot do its work, with the reason of the condition that says
    /// why).
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase reason, e.g. `ScaleUpLimit` or `FailedGetExternalMetric`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::time")]
    pub last_transition_time: Option<Time>,
}

impl ScalingCondition {
    /// The condition as the engine reports it, without a transition time (the controller sets
    /// it when `status` changes).
    pub fn from_engine(c: &engine::Condition) -> Self {
        Self {
            kind: c.kind.into(),
            status: if c.status {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            },
            reason: Some(c.reason.clone()),
            message: Some(c.message.clone()),
            last_transition_time: None,
        }
    }
}

/// HPA condition types.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum ConditionType {
    AbleToScale,
    ScalingActive,
    ScalingLimited,
    Ready,
}

impl ConditionType {
    /// Every type, in the order the status lists them.
    pub const ALL: [Self; 4] = [
        Self::AbleToScale,
        Self::ScalingActive,
        Self::ScalingLimited,
        Self::Ready,
    ];

    /// Its name, as in the status and the `condition` label of `tidal_scaler_condition`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AbleToScale => "AbleToScale",
            Self::ScalingActive => "ScalingActive",
            Self::ScalingLimited => "ScalingLimited",
            Self::Ready => "Ready",
        }
    }
}

impl From<engine::ConditionType> for ConditionType {
    fn from(t: engine::ConditionType) -> Self {
        match t {
            engine::ConditionType::AbleToScale => Self::AbleToScale,
            engine::ConditionType::ScalingActive => Self::ScalingActive,
            engine::ConditionType::ScalingLimited => Self::ScalingLimited,
        }
    }
}

/// `ConditionStatus`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// The last value of one metric.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// `spec.metrics[].name`.
    pub name: String,
    /// The current value as the HPA reports it: percent for `targetUtilization`, otherwise a
    /// quantity (average per pod or total, matching the target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::quantity")]
    pub value: Option<Quantity>,
    /// The target the value is compared with, in the same unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::quantity")]
    pub target: Option<Quantity>,
    /// The replica count this metric proposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_replicas: Option<i32>,
    /// Why the metric gave no proposal (e.g. `FailedGetExternalMetric`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl MetricStatus {
    /// One metric's proposal as the status shows it: the current value and the target in the
    /// target's unit (percent for utilization, base units otherwise; lag per replica for
    /// `kafka_lag`), the proposed replica count, or the reason it has none.
    pub fn from_proposal(p: &engine::Proposal, m: &engine::MetricSpec) -> Self {
        let current = p.current.unwrap_or(engine::CurrentValue {
            average_utilization: None,
            average_value: None,
            value: None,
        });
        let t = &m.target;
        let (value, target) = if m.source == engine::MetricSource::KafkaLag {
            let per_replica = m.kafka_lag.clone().unwrap_or_default().lag_per_replica;
            (current.average_value, Some(per_replica))
        } else {
            match t.kind {
                engine::TargetType::Utilization => (
                    current.average_utilization.map(f64::from),
                    t.average_utilization.map(f64::from),
                ),
                engine::TargetType::AverageValue => (current.average_value, t.average_value),
                engine::TargetType::Value => (current.value, t.value),
            }
        };
        Self {
            name: p.metric.clone(),
            value: value.and_then(quantity_from_f64),
            target: target.and_then(quantity_from_f64),
            proposed_replicas: p.replicas,
            error: p.invalid_reason.clone(),
        }
    }
}

/// A value in base units as a quantity, rounded up to a milli-unit like the engine's inputs
/// (`Quantity.MilliValue()`): `84.0` is `84`, `243.334` is `243334m`, `0.0004` is `1m`.
/// `None` for a value that is not finite or does not fit.
pub fn quantity_from_f64(v: f64) -> Option<Quantity> {
    let milli = v * 1000.0;
    let nearest = milli.round();
    // Within 1e-6 milli of an integer is that integer (0.3 is 300m, not 301m).
    let milli = if (milli - nearest).abs() < 1e-6 {
        nearest
    } else {
        milli.ceil()
    };
    // i64::MAX is not exactly representable; stay strictly inside the range.
    if !milli.is_finite() || milli.abs() >= 9.2e18 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    let milli = milli as i64;
    Some(Quantity(if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }))
}

/// The recommended requests for one container.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecommendationStatus {
    /// The container.
    pub container_name: String,
    /// The recommended requests, within the container policy's bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<super::bounds::ResourceBounds>,
    /// The lowest requests that are still safe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_bound: Option<super::bounds::ResourceBounds>,
    /// Above this the requests are wasteful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_bound: Option<super::bounds::ResourceBounds>,
    /// The recommendation before the bounds were applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncapped_target: Option<super::bounds::ResourceBounds>,
}

/// Why the last decision was taken.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastDecision {
    /// The metric whose proposal was chosen (the highest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dominant_metric: Option<String>,
    /// Each step from the metrics to the answer, e.g. `kafka_lag proposed 8`,
    /// `rate: 8 -> 7 (ScaleUpLimit)`.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// When the decision was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::time")]
    pub time: Option<Time>,
}

impl LastDecision {
    /// Summarize an engine decision: the chosen metric and one reason per proposal and limit.
    pub fn from_decision(d: &engine::Decision) -> Self {
        let mut reasons = Vec::with_capacity(d.proposals.len() + d.limits.len() + 1);
        for p in &d.proposals {
            match (p.replicas, &p.invalid_reason) {
                (Some(r), _) => reasons.push(format!("{} proposed {r}", p.metric)),
                (None, Some(why)) => reasons.push(format!("{} invalid ({why})", p.metric)),
                (None, None) => reasons.push(format!("{} gave no proposal", p.metric)),
            }
        }
        for l in &d.limits {
            // The stage's wire name (`rate`, `stabilization`, ...), whatever stages exist.
            let stage = serde_json::to_value(l.stage)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            reasons.push(format!("{stage}: {} -> {} ({})", l.from, l.to, l.reason));
        }
        if let Some(r) = &d.rescale_reason {
            reasons.push(r.clone());
        }
        Self {
            dominant_metric: d.chosen_metric.clone(),
            reasons,
            time: None,
        }
    }
}

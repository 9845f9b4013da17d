//! HPA scaling behavior, ported from kubernetes/kubernetes
//! `pkg/controller/podautoscaler/horizontal.go` (`stabilizeRecommendation`,
//! `stabilizeRecommendationWithBehaviors`, `convertDesiredReplicasWithBehaviorRate`,
//! `convertDesiredReplicasWithRules`, `calculateScaleUpLimitWithScalingRules`,
//! `calculateScaleDownLimitWithBehaviors`, `getReplicasChangePerPeriod`) and the defaults of
//! `pkg/apis/autoscaling/v2/defaults.go` (`GenerateHPAScaleUpRules`,
//! `GenerateHPAScaleDownRules`).
//!
//! Upstream keeps recommendations and scale events in controller memory and reads
//! `time.Now()`; here both come in as arguments.

use super::types::{
    PolicyType, RatePolicy, Recommendation, ScaleEvent, ScalingRules, SelectPolicy,
};

/// Condition reasons and messages, as upstream spells them.
pub mod reason {
    pub const SCALE_UP_LIMIT: &str = "ScaleUpLimit";
    pub const SCALE_DOWN_LIMIT: &str = "ScaleDownLimit";
    pub const TOO_MANY_REPLICAS: &str = "TooManyReplicas";
    pub const TOO_FEW_REPLICAS: &str = "TooFewReplicas";
    pub const DESIRED_WITHIN_RANGE: &str = "DesiredWithinRange";
    pub const SCALE_UP_STABILIZED: &str = "ScaleUpStabilized";
    pub const SCALE_DOWN_STABILIZED: &str = "ScaleDownStabilized";
    pub const READY_FOR_NEW_SCALE: &str = "ReadyForNewScale";

    /// The message upstream pairs with a reason.
    pub fn message(reason: &str) -> &'static str {
        match reason {
            SCALE_UP_LIMIT => {
                "the desired replica count is increasing faster than the maximum scale rate"
            }
            SCALE_DOWN_LIMIT => {
                "the desired replica count is decreasing faster than the maximum scale rate"
            }
            TOO_MANY_REPLICAS => "the desired replica count is more than the maximum replica count",
            TOO_FEW_REPLICAS => "the desired replica count is less than the minimum replica count",
            DESIRED_WITHIN_RANGE => "the desired count is within the acceptable range",
            SCALE_UP_STABILIZED => {
                "recent recommendations were lower than current one, applying the lowest recent recommendation"
            }
            SCALE_DOWN_STABILIZED => {
                "recent recommendations were higher than current one, applying the highest recent recommendation"
            }
            READY_FOR_NEW_SCALE => "recommended size matches current size",
            _ => "",
        }
    }
}

/// Scaling rules with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRules {
    pub stabilization_window_seconds: i32,
    pub select_policy: SelectPolicy,
    pub policies: Vec<RatePolicy>,
    pub tolerance: Option<f64>,
}

impl ResolvedRules {
    /// The longest `periodSeconds` (how long scale events matter).
    pub fn longest_period_seconds(&self) -> i32 {
        self.policies
            .iter()
            .map(|p| p.period_seconds)
            .max()
            .unwrap_or(0)
    }
}

fn copy_rules(from: Option<&ScalingRules>, mut to: ResolvedRules) -> ResolvedRules {
    if let Some(from) = from {
        if let Some(s) = from.select_policy {
            to.select_policy = s;
        }
        if let Some(w) = from.stabilization_window_seconds {
            to.stabilization_window_seconds = w;
        }
        if let Some(p) = &from.policies {
            to.policies = p.clone();
        }
        if from.tolerance.is_some() {
            to.tolerance = from.tolerance;
        }
    }
    to
}

/// `GenerateHPAScaleUpRules`: stabilization 0s, Max of 4 Pods/15s and 100 Percent/15s.
pub fn scale_up_rules(rules: Option<&ScalingRules>) -> ResolvedRules {
    copy_rules(
        rules,
        ResolvedRules {
            stabilization_window_seconds: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![
                RatePolicy {
                    kind: PolicyType::Pods,
                    value: 4,
                    period_seconds: 15,
                },
                RatePolicy {
                    kind: PolicyType::Percent,
                    value: 100,
                    period_seconds: 15,
                },
            ],
            tolerance: None,
        },
    )
}

/// `GenerateHPAScaleDownRules`: 100 Percent/15s; the stabilization window defaults to the
/// controller's `--horizontal-pod-autoscaler-downscale-stabilization` (300s).
pub fn scale_down_rules(
    rules: Option<&ScalingRules>,
    default_window_seconds: i32,
) -> ResolvedRules {
    copy_rules(
        rules,
        ResolvedRules {
            stabilization_window_seconds: default_window_seconds,
            select_policy: SelectPolicy::Max,
            policies: vec![RatePolicy {
                kind: PolicyType::Percent,
                value: 100,
                period_seconds: 15,
            }],
            tolerance: None,
        },
    )
}

/// `getReplicasChangePerPeriod`: the replicas added (`up`) or removed (`!up`) by events strictly
/// newer than `now - period`.
pub fn replicas_change_per_period(
    period_seconds: i32,
    events: &[ScaleEvent],
    up: bool,
    now: f64,
) -> i32 {
    let cutoff = now - f64::from(period_seconds);
    events
        .iter()
        .filter(|e| e.at_unix_seconds > cutoff)
        .filter(|e| {
            if up {
                e.replica_change > 0
            } else {
                e.replica_change < 0
            }
        })
        .fold(0i32, |acc, e| {
            acc.saturating_add(e.replica_change.saturating_abs())
        })
}

fn period_start(current: i32, policy: &RatePolicy, events: &[ScaleEvent], now: f64) -> i32 {
    let added = replicas_change_per_period(policy.period_seconds, events, true, now);
    let removed = replicas_change_per_period(policy.period_seconds, events, false, now);
    current.saturating_sub(added).saturating_add(removed)
}

/// `calculateScaleUpLimitWithScalingRules`: the most replicas the policies allow.
pub fn scale_up_limit(current: i32, events: &[ScaleEvent], rules: &ResolvedRules, now: f64) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MAX, std::cmp::min),
        SelectPolicy::Max => (i32::MIN, std::cmp::max),
    };
    for policy in &rules.policies {
        let start = period_start(current, policy, events, now);
        let proposed = match policy.kind {
            PolicyType::Pods => start.saturating_add(policy.value),
            // Rounded up so a small percentage still adds a pod.
            PolicyType::Percent => {
                (f64::from(start) * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// `calculateScaleDownLimitWithBehaviors`: the fewest replicas the policies allow.
pub fn scale_down_limit(
    current: i32,
    events: &[ScaleEvent],
    rules: &ResolvedRules,
    now: f64,
) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MIN, std::cmp::max),
        SelectPolicy::Max => (i32::MAX, std::cmp::min),
    };
    for policy in &rules.policies {
        let start = period_start(current, policy, events, now);
        let proposed = match policy.kind {
            PolicyType::Pods => start.saturating_sub(policy.value),
            // Truncated toward zero, as Go's int32(float64) conversion.
            PolicyType::Percent => {
                (f64::from(start) * (1.0 - f64::from(policy.value) / 100.0)) as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// `stabilizeRecommendationWithBehaviors`: keep the recommendation between the lowest
/// recommendation of the scale-up window and the highest of the scale-down window (both
/// windows include the new recommendation; older entries count when strictly newer than the
/// cutoff). Returns the stabilized count and the reason to use if it differs from `desired`.
pub fn stabilize_with_behaviors(
    current: i32,
    desired: i32,
    up_window_seconds: i32,
    down_window_seconds: i32,
    recommendations: &[Recommendation],
    now: f64,
) -> (i32, &'static str) {
    let up_cutoff = now - f64::from(up_window_seconds);
    let down_cutoff = now - f64::from(down_window_seconds);
    let mut up = desired;
    let mut down = desired;
    for rec in recommendations {
        if rec.at_unix_seconds > up_cutoff {
            up = up.min(rec.replicas);
        }
        if rec.at_unix_seconds > down_cutoff {
            down = down.max(rec.replicas);
        }
    }
    let recommendation = current.max(up).min(down);
    let reason = if desired >= current {
        reason::SCALE_UP_STABILIZED
    } else {
        reason::SCALE_DOWN_STABILIZED
    };
    (recommendation, reason)
}

/// `stabilizeRecommendation` (no behavior): the highest recommendation not older than the
/// downscale stabilization window (entries exactly at the cutoff count).
pub fn stabilize_legacy(
    desired: i32,
    recommendations: &[Recommendation],
    window_seconds: i32,
    now: f64,
) -> i32 {
    let cutoff = now - f64::from(window_seconds);
    recommendations
        .iter()
        .filter(|r| r.at_unix_seconds >= cutoff)
        .fold(desired, |acc, r| acc.max(r.replicas))
}

#[allow(clippy::too_many_arguments)]
/// `convertDesiredReplicasWithBehaviorRate`: apply the policies' rate limits and min/max.
pub fn convert_with_behavior_rate(
    current: i32,
    desired: i32,
    min_replicas: i32,
    max_replicas: i32,
    up: &ResolvedRules,
    down: &ResolvedRules,
    events: &[ScaleEvent],
    now: f64,
) -> (i32, &'static str) {
    if desired > current {
        // Recent scale-ups can push the limit below current: do not go further, but never down.
        let limit = scale_up_limit(current, events, up, now).max(current);
        let (maximum, why) = if max_replicas > limit {
            (limit, reason::SCALE_UP_LIMIT)
        } else {
            (max_replicas, reason::TOO_MANY_REPLICAS)
        };
        if desired > maximum {
            return (maximum, why);
        }
    } else if desired < current {
        let limit = scale_down_limit(current, events, down, now).min(current);
        let (minimum, why) = if min_replicas < limit {
            (limit, reason::SCALE_DOWN_LIMIT)
        } else {
            (min_replicas, reason::TOO_FEW_REPLICAS)
        };
        if desired < minimum {
            return (minimum, why);
        }
    }
    (desired, reason::DESIRED_WITHIN_RANGE)
}

/// `calculateScaleUpLimit`: `max(2*current, 4)`.
pub fn legacy_scale_up_limit(current: i32) -> i32 {
    (2.0 * f64::from(current)).max(4.0) as i32
}

/// `convertDesiredReplicasWithRules` (no behavior): clamp to `[min, min(max, 2*current or 4)]`.
pub fn convert_with_rules(
    current: i32,
    desired: i32,
    min_replicas: i32,
    max_replicas: i32,
) -> (i32, &'static str) {
    let limit = legacy_scale_up_limit(current);
    let (maximum, why) = if max_replicas > limit {
        (limit, reason::SCALE_UP_LIMIT)
    } else {
        (max_replicas, reason::TOO_MANY_REPLICAS)
    };
    if desired < min_replicas {
        return (min_replicas, reason::TOO_FEW_REPLICAS);
    }
    if desired > maximum {
        return (maximum, why);
    }
    (desired, reason::DESIRED_WITHIN_RANGE)
}

#[cfg(test)]
#[path = "behavior_tests.rs"]
mod tests;

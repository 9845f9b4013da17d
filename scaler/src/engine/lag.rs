//! Kafka consumer-lag scaling with KEDA's Kafka scaler semantics
//! (kedacore/keda `pkg/scalers/kafka_scaler.go`, `getTotalLag`), and Tidal's fixes.
//!
//! KEDA exposes the total lag as an External metric with an AverageValue target of
//! `lagThreshold`, so the HPA computes `desired = ceil(totalLag / lagThreshold)` against
//! `status.replicas` with the usual tolerance. Before that, unless `allowIdleConsumers`, KEDA
//! caps the lag with integer division:
//!
//! ```text
//! if totalLag / lagThreshold > upperBound { totalLag = upperBound * lagThreshold }
//! ```
//!
//! which lets the HPA go one above the partition count (lag 105 with 10 partitions and a
//! threshold of 10: `105 / 10 = 10` is not above 10, so the HPA gets 105 and proposes 11) and,
//! through the tolerance, stall one below it (9 replicas and lag 95: `95 / 90 = 1.055` is within
//! 0.1, so the HPA stays at 9 though 10 replicas are warranted; KEDA #2908, #4791).
//!
//! Tidal runs the same HPA path ([`replica_calc::external_per_pod_replicas`]) and then caps the
//! replica count, not the lag: `min(hpa, cap)`, and when `ceil(lag / lagPerReplica) >= cap`
//! it goes to the cap whatever the tolerance says. Everything below the cap is exactly KEDA.
//!
//! Pure: no I/O, no clock reads; `now` and the last active time are inputs.

use serde::{Deserialize, Serialize};

use super::replica_calc::{self, to_milli};
use super::types::{KafkaLag, Tolerances};

/// The lag of one consumer group at one time, aggregated over its observations.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LagInput {
    /// Total lag over all partitions (messages).
    pub total_lag: f64,
    /// Part of `total_lag` on partitions whose committed offset has not moved.
    pub persistent_lag: f64,
    /// Partitions of the consumed topics.
    pub partitions: i64,
    /// Partitions with lag above 0.
    pub partitions_with_lag: i64,
    /// Observed consumption, messages per second (predictive option).
    pub consume_rate_per_second: Option<f64>,
    /// Observed production, messages per second (predictive option).
    pub produce_rate_per_second: Option<f64>,
}

impl LagInput {
    /// From per-partition lags: partitions = `lags.len()`, partitions with lag = those above 0.
    pub fn from_partitions(lags: &[f64]) -> Self {
        Self {
            total_lag: lags.iter().sum(),
            partitions: lags.len() as i64,
            partitions_with_lag: lags.iter().filter(|l| **l > 0.0).count() as i64,
            ..Self::default()
        }
    }
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

/// Whether the group is active: total lag above the activation threshold (KEDA
/// `activationLagThreshold`; persistent lag counts here even when excluded from sizing).
pub fn is_active(cfg: &KafkaLag, input: &LagInput) -> bool {
    input.total_lag > cfg.activation_lag_threshold
}

/// The replica cap: partitions (or partitions with lag), unless idle consumers are allowed.
/// Like KEDA, `limit_to_partitions_with_lag` applies even with `allow_idle_consumers`.
pub fn cap(cfg: &KafkaLag, input: &LagInput) -> Option<i32> {
    if cfg.allow_idle_consumers && !cfg.limit_to_partitions_with_lag {
        return None;
    }
    let upper = if cfg.limit_to_partitions_with_lag {
        input.partitions_with_lag
    } else {
        input.partitions
    };
    Some(upper.clamp(0, i64::from(i32::MAX)) as i32)
}

fn ceil_sat(x: f64) -> i32 {
    let c = x.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else if c <= 0.0 {
        0
    } else {
        c as i32
    }
}

/// The predictive count: `ceil((lag / drain + produce_rate) / (consume_rate / status))`, or
/// `None` when the rates cannot size it (no consume rate, nothing consumed, no replicas).
pub fn predictive_replicas(
    lag: f64,
    target_drain_seconds: f64,
    consume_rate_per_second: Option<f64>,
    produce_rate_per_second: Option<f64>,
    status_replicas: i32,
) -> Option<i32> {
    let consume = consume_rate_per_second?;
    if status_replicas <= 0 || consume <= 0.0 || target_drain_seconds <= 0.0 {
        return None;
    }
    let per_replica = consume / f64::from(status_replicas);
    let need = (lag.max(0.0) / target_drain_seconds + produce_rate_per_second.unwrap_or(0.0))
        / per_replica;
    need.is_finite().then(|| ceil_sat(need))
}

/// One `kafka_lag` proposal.
///
/// - Inactive (lag at or below the activation threshold) and the cooldown has passed since
///   `last_active` (or it was never active): 0, scale to zero. Inactive within the cooldown:
///   at least 1.
/// - Active, predictive configured and rates known: the predictive count, capped.
/// - Otherwise the HPA External AverageValue path on the (possibly persistent-excluded) lag,
///   then `min(hpa, cap)`, and the cap itself when `ceil(lag / lag_per_replica) >= cap`.
/// - Active never proposes less than 1.
pub fn lag_replicas(
    cfg: &KafkaLag,
    input: &LagInput,
    status_replicas: i32,
    tolerances: Tolerances,
    last_active_unix_seconds: Option<f64>,
    now: f64,
) -> LagOutcome {
    let active = is_active(cfg, input);
    let lag = if cfg.exclude_persistent_lag {
        (input.total_lag - input.persistent_lag).max(0.0)
    } else {
        input.total_lag.max(0.0)
    };
    let cap = cap(cfg, input);
    let per_replica = to_milli(cfg.lag_per_replica).max(1);
    // The usage HPA sees: the lag, capped at cap * lagPerReplica (reported, not for sizing).
    let lag_milli = to_milli(lag);
    let reported = cap.map_or(lag_milli, |c| {
        lag_milli.min(per_replica.saturating_mul(i64::from(c)))
    });
    let (hpa, _) = replica_calc::external_per_pod_replicas(
        status_replicas,
        &[lag_milli],
        per_replica,
        tolerances,
    );
    let average_value = if status_replicas > 0 {
        (reported as f64 / f64::from(status_replicas)).ceil() / 1000.0
    } else {
        reported as f64 / 1000.0
    };
    let mut out = LagOutcome {
        replicas: hpa,
        active,
        lag,
        cap,
        uncapped: hpa,
        predictive: false,
        scale_to_zero: false,
        average_value,
    };
    if !active {
        let cooled = last_active_unix_seconds.is_none_or(|t| now - t >= cfg.cooldown_seconds);
        if cooled {
            out.replicas = 0;
            out.scale_to_zero = true;
            return out;
        }
    }
    let predicted = cfg.predictive.as_ref().and_then(|p| {
        predictive_replicas(
            lag,
            p.target_drain_seconds,
            input.consume_rate_per_second,
            input.produce_rate_per_second,
            status_replicas,
        )
    });
    let mut replicas = match predicted {
        Some(r) => {
            out.predictive = true;
            out.uncapped = r;
            cap.map_or(r, |c| r.min(c))
        }
        None => {
            let needed = ceil_sat(lag_milli as f64 / per_replica as f64);
            match cap {
                Some(c) if needed >= c => c,
                Some(c) => hpa.min(c),
                None => hpa,
            }
        }
    };
    // Active, or inactive within the cooldown: keep at least one consumer.
    replicas = replicas.max(1);
    out.replicas = replicas;
    out
}

#[cfg(test)]
#[path = "lag_tests.rs"]
mod tests;

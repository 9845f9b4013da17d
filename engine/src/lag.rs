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

use super::replica_calc::{self, to_milli};
use super::types::{KafkaLag, LagOutcome, LagSampling, Predictive, Tolerances};

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
    /// Replicas consuming now (Running and Ready), for the predictive option's per-consumer
    /// rate; `None` (no pods known) uses the status replicas.
    pub consumers: Option<i32>,
    /// `total_lag` with each partition's lag averaged over its last commit interval, for
    /// `LagSampling::CommitInterval`; `None`: `total_lag`.
    pub commit_interval_lag: Option<f64>,
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

/// What the predictive option sized, before the tolerance and the cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictiveNeed {
    /// Replicas needed, not rounded.
    pub replicas: f64,
    /// The backlog to drain: the lag above what the consumers are expected to carry
    /// (`lag_per_replica` each), projected `lookahead_seconds` ahead.
    pub backlog: f64,
    /// Observed consumption per consuming replica (messages per second).
    pub per_consumer: f64,
    /// Replicas consuming now.
    pub consumers: i32,
}

/// The predictive size, or `None` when the KEDA path sizes instead: no consume rate, nothing
/// consumed, no consumers, or a group that is not falling behind. Falling behind takes both
/// signals: production above consumption, and a lag above the accepted lag.
///
/// ```text
/// consumers    = ready replicas (the status replicas when no pods are known)
/// accepted     = lag_per_replica * consumers        (the lag on target: commit trail, in flight)
/// falling behind: produce_rate > consume_rate  and  lag > accepted
/// growth       = produce_rate - consume_rate        (how fast the lag grows now)
/// backlog      = lag - accepted + growth * lookahead_seconds
/// per_consumer = consume_rate / consumers
/// replicas     = (backlog / target_drain_seconds + produce_rate) / per_consumer
/// ```
///
/// Why the gate. Only a group that falls behind consumes at its capacity, so only then does
/// the consume rate per consumer measure what a replica can do: a group that keeps up
/// consumes what is produced whatever its spare capacity, and sizing from that would hold the
/// count while utilization creeps up (the KEDA path, `lag / lag_per_replica`, follows it).
/// The lag condition makes noise in the two rates harmless where the KEDA path has settled
/// (`lag <= accepted`). And the accepted lag is not a backlog: the commit trail (about
/// `consume_rate * auto.commit.interval / 2`) never drains, and sizing to drain it asked for
/// `trail / target_drain_seconds` more of the current count at every evaluation, which
/// ratcheted to the cap.
pub fn predictive_need(
    lag: f64,
    lag_per_replica: f64,
    p: &Predictive,
    input: &LagInput,
    status_replicas: i32,
) -> Option<PredictiveNeed> {
    let consume = input.consume_rate_per_second?;
    let consumers = input
        .consumers
        .filter(|c| *c > 0)
        .unwrap_or(status_replicas);
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if consumers <= 0 || !positive(consume) || !positive(p.target_drain_seconds) {
        return None;
    }
    let produce = input.produce_rate_per_second.unwrap_or(0.0).max(0.0);
    let above = (lag.max(0.0) - lag_per_replica.max(0.0) * f64::from(consumers)).max(0.0);
    if produce <= consume || above <= 0.0 {
        return None;
    }
    let growth = (produce - consume).max(0.0);
    let backlog = above + growth * p.lookahead_seconds.max(0.0);
    let per_consumer = consume / f64::from(consumers);
    let replicas = (backlog / p.target_drain_seconds + produce) / per_consumer;
    replicas.is_finite().then_some(PredictiveNeed {
        replicas,
        backlog,
        per_consumer,
        consumers,
    })
}

/// The predictive count against `status_replicas`, with the HPA's tolerance: the current
/// count while `need / status` is within it (`Tolerances.isWithin`), else `ceil(need)`; and
/// never below the current count while some replicas are still starting (`consumers <
/// status`), whose capacity the consume rate cannot show yet. From zero replicas,
/// `ceil(need)`.
pub fn predictive_replicas(
    need: &PredictiveNeed,
    status_replicas: i32,
    tolerances: Tolerances,
) -> i32 {
    if status_replicas <= 0 {
        return ceil_sat(need.replicas);
    }
    if tolerances.is_within(need.replicas / f64::from(status_replicas)) {
        return status_replicas;
    }
    let r = ceil_sat(need.replicas);
    if need.consumers < status_replicas {
        r.max(status_replicas)
    } else {
        r
    }
}

/// The lag that sizes: the latest total, or with [`LagSampling::CommitInterval`] the total
/// averaged over each partition's commit interval (the latest where it is unknown).
/// Activation ([`is_active`]) always reads the latest: an average that trails a burst must
/// not scale to zero.
pub fn sized_lag(cfg: &KafkaLag, input: &LagInput) -> f64 {
    match cfg.lag_sampling {
        LagSampling::Latest => input.total_lag,
        LagSampling::CommitInterval => input.commit_interval_lag.unwrap_or(input.total_lag),
    }
}

/// One `kafka_lag` proposal.
///
/// - Inactive (lag at or below the activation threshold) and the cooldown has passed since
///   `last_active` (or it was never active): 0, scale to zero. Inactive within the cooldown:
///   at least 1.
/// - Active, predictive configured, rates known and the group falling behind: the
///   predictive count ([`predictive_need`]) within the tolerance ([`predictive_replicas`]),
///   capped.
/// - Otherwise the HPA External AverageValue path on the (possibly persistent-excluded)
///   [`sized_lag`],
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
    let sampled = sized_lag(cfg, input);
    let lag = if cfg.exclude_persistent_lag {
        (sampled - input.persistent_lag).max(0.0)
    } else {
        sampled.max(0.0)
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
        predictive_need(lag, cfg.lag_per_replica, p, input, status_replicas)
            .map(|need| predictive_replicas(&need, status_replicas, tolerances))
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

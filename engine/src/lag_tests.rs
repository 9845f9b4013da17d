//! `kafka_lag` proposals: KEDA's Kafka scaler as a reference (`keda_desired`), Tidal's exact
//! cap, activation and cooldown, the predictive option, and end-to-end decisions. Every
//! expected number is worked out by hand in the comment beside it.

use super::*;
use crate::horizontal::{decide, desired};
use crate::types::{Input, Predictive};

const NOW: f64 = 1_700_000_000.0;

fn tol() -> Tolerances {
    Tolerances::symmetric(0.1)
}

fn cfg(threshold: f64) -> KafkaLag {
    KafkaLag {
        lag_per_replica: threshold,
        ..KafkaLag::default()
    }
}

fn input(total: f64, partitions: i64, with_lag: i64) -> LagInput {
    LagInput {
        total_lag: total,
        partitions,
        partitions_with_lag: with_lag,
        ..LagInput::default()
    }
}

/// KEDA v2 `kafka_scaler.go` `getTotalLag` (int64 arithmetic) followed by the HPA's External
/// AverageValue path (`GetExternalPerPodMetricReplicas`) with the default 0.1 tolerance.
#[allow(clippy::too_many_arguments)]
fn keda_desired(
    total_lag: i64,
    partitions: i64,
    partitions_with_lag: i64,
    lag_threshold: i64,
    allow_idle_consumers: bool,
    limit_to_partitions_with_lag: bool,
    status_replicas: i32,
) -> i32 {
    let mut total = total_lag;
    if !allow_idle_consumers || limit_to_partitions_with_lag {
        let upper = if limit_to_partitions_with_lag {
            partitions_with_lag
        } else {
            partitions
        };
        // Integer division, as in KEDA.
        if total / lag_threshold > upper {
            total = upper * lag_threshold;
        }
    }
    let (r, _) = replica_calc::external_per_pod_replicas(
        status_replicas,
        &[total * 1000],
        lag_threshold * 1000,
        tol(),
    );
    r
}

fn tidal(total: f64, partitions: i64, with_lag: i64, c: &KafkaLag, status: i32) -> LagOutcome {
    lag_replicas(
        c,
        &input(total, partitions, with_lag),
        status,
        tol(),
        Some(NOW),
        NOW,
    )
}

/// The cap cases: 10 partitions, lagThreshold 10.
#[test]
fn keda_stalls_below_and_overshoots_the_partition_count_tidal_reaches_it_exactly() {
    // (lag, status replicas, KEDA, Tidal)
    let cases: &[(i64, i32, i32, i32)] = &[
        // 95/10 = 9 (int) is not > 10: no cap. HPA: 95 / (10*9) = 1.0556, within 0.1 -> stays
        // at 9 (KEDA #2908). Tidal: ceil(95/10) = 10 >= cap 10 -> 10.
        (95, 9, 9, 10),
        // 98 / 90 = 1.0889, within -> KEDA 9. Tidal: ceil(9.8) = 10 -> 10.
        (98, 9, 9, 10),
        // 99 / 90 = 1.1, within (<= 1.1) -> KEDA 9. Tidal 10.
        (99, 9, 9, 10),
        // 100/10 = 10 not > 10: 100 / 90 = 1.111 outside -> ceil(100/10) = 10. Both 10.
        (100, 9, 10, 10),
        // 105/10 = 10 (int), not > 10: no cap. 105 / 90 = 1.167 -> ceil(10.5) = 11 > 10
        // partitions: one idle consumer. Tidal: ceil(10.5) = 11 >= 10 -> 10.
        (105, 9, 11, 10),
        // 109 from 5 replicas: 109 / 50 = 2.18 -> ceil(10.9) = 11 (KEDA). Tidal 10.
        (109, 5, 11, 10),
        // 110/10 = 11 > 10: capped to 100. 100 / 50 = 2 -> ceil(10) = 10. Both 10.
        (110, 5, 10, 10),
        // 5000 from 1: capped to 100 -> 10. Both 10.
        (5000, 1, 10, 10),
        // At the cap: 95 / 100 = 0.95 within -> 10. Both hold 10.
        (95, 10, 10, 10),
        // At the cap, 85 / 100 = 0.85 outside -> ceil(8.5) = 9. Both 9 (below the cap: KEDA).
        (85, 10, 9, 9),
    ];
    let c = cfg(10.0);
    for &(lag, status, keda, want) in cases {
        assert_eq!(
            keda_desired(lag, 10, 10, 10, false, false, status),
            keda,
            "KEDA lag={lag} status={status}"
        );
        let out = tidal(lag as f64, 10, 10, &c, status);
        assert_eq!(out.replicas, want, "Tidal lag={lag} status={status}");
        assert_eq!(out.cap, Some(10));
        assert!(out.active);
    }
}

/// Below the cap Tidal is exactly KEDA, tolerance included (same HPA path).
#[test]
fn below_the_cap_tidal_matches_keda() {
    let c = cfg(10.0);
    for status in 1..=12 {
        for lag in 1..=130i64 {
            let keda = keda_desired(lag, 10, 10, 10, false, false, status);
            let needed = (lag + 9) / 10; // ceil(lag / 10)
            let out = tidal(lag as f64, 10, 10, &c, status);
            if needed >= 10 {
                assert_eq!(out.replicas, 10, "lag={lag} status={status}");
            } else {
                assert_eq!(
                    out.replicas,
                    keda.min(10),
                    "lag={lag} status={status} keda={keda}"
                );
            }
        }
    }
    // A tolerance hold below the cap stays a hold, as in KEDA: 5 replicas, lag 54:
    // 54 / 50 = 1.08 within -> 5 (not ceil(5.4) = 6).
    assert_eq!(keda_desired(54, 10, 10, 10, false, false, 5), 5);
    assert_eq!(tidal(54.0, 10, 10, &c, 5).replicas, 5);
}

#[test]
fn allow_idle_consumers_and_limit_to_partitions_with_lag() {
    let idle = KafkaLag {
        allow_idle_consumers: true,
        ..cfg(10.0)
    };
    // No cap: ceil(500/10) = 50 from 4 (500/40 = 12.5 outside). KEDA 50 too.
    assert_eq!(keda_desired(500, 10, 3, 10, true, false, 4), 50);
    let out = tidal(500.0, 10, 3, &idle, 4);
    assert_eq!((out.replicas, out.cap), (50, None));

    let limited = KafkaLag {
        limit_to_partitions_with_lag: true,
        ..cfg(10.0)
    };
    // 3 partitions with lag: 500/10 = 50 > 3 -> 30; 30 / 40 = 0.75 -> ceil(3) = 3. Tidal 3.
    assert_eq!(keda_desired(500, 10, 3, 10, false, true, 4), 3);
    assert_eq!(tidal(500.0, 10, 3, &limited, 4).replicas, 3);
    // 3 partitions with lag, lag 29 from 2 replicas: 29/10 = 2 not > 3; 29 / 20 = 1.45 ->
    // ceil(2.9) = 3. Both 3.
    assert_eq!(keda_desired(29, 10, 3, 10, false, true, 2), 3);
    assert_eq!(tidal(29.0, 10, 3, &limited, 2).replicas, 3);
    // 33 from 2: KEDA 33/10 = 3 not > 3 -> 33 / 20 = 1.65 -> ceil(3.3) = 4 > 3. Tidal 3.
    assert_eq!(keda_desired(33, 10, 3, 10, false, true, 2), 4);
    assert_eq!(tidal(33.0, 10, 3, &limited, 2).replicas, 3);
    // With allow_idle_consumers too, KEDA still limits to the partitions with lag.
    let both = KafkaLag {
        allow_idle_consumers: true,
        ..limited
    };
    assert_eq!(tidal(500.0, 10, 3, &both, 4).replicas, 3);
}

#[test]
fn per_partition_input_counts_partitions_and_partitions_with_lag() {
    let i = LagInput::from_partitions(&[0.0, 40.0, 0.0, 25.0, 5.0]);
    assert_eq!(i.total_lag, 70.0);
    assert_eq!((i.partitions, i.partitions_with_lag), (5, 3));
}

#[test]
fn activation_threshold_and_cooldown() {
    let c = KafkaLag {
        activation_lag_threshold: 50.0,
        ..cfg(10.0)
    };
    // Lag 50 is not above 50: inactive. Last active 100s ago, cooldown 300s: keep >= 1.
    // HPA: 50 / (10*3) = 1.667 -> ceil(5) = 5.
    let i = input(50.0, 10, 10);
    let out = lag_replicas(&c, &i, 3, tol(), Some(NOW - 100.0), NOW);
    assert!(!out.active);
    assert_eq!((out.replicas, out.scale_to_zero), (5, false));
    // Lag 0 within the cooldown: HPA ceil(0) = 0, kept at 1.
    let out = lag_replicas(&c, &input(0.0, 10, 0), 3, tol(), Some(NOW - 299.0), NOW);
    assert_eq!((out.replicas, out.scale_to_zero), (1, false));
    // Exactly the cooldown later (300s): scale to zero.
    let out = lag_replicas(&c, &input(0.0, 10, 0), 3, tol(), Some(NOW - 300.0), NOW);
    assert_eq!((out.replicas, out.scale_to_zero), (0, true));
    // Inactive with lag 50 after the cooldown: 0 as well (KEDA: below activation).
    let out = lag_replicas(&c, &i, 3, tol(), Some(NOW - 600.0), NOW);
    assert_eq!(out.replicas, 0);
    // Never active: scale to zero at once (the horizontal stabilization window still
    // delays it for a fresh target).
    let out = lag_replicas(&c, &input(0.0, 10, 0), 3, tol(), None, NOW);
    assert_eq!(out.replicas, 0);
    // Active from zero: lag 51 > 50, status 0 -> ceil(51/10) = 6.
    let out = lag_replicas(&c, &input(51.0, 10, 10), 0, tol(), None, NOW);
    assert_eq!((out.replicas, out.active), (6, true));
    // Active with lag below one replica's worth: 5 > 0 with threshold 10 -> at least 1.
    let out = lag_replicas(&cfg(10.0), &input(5.0, 10, 1), 0, tol(), None, NOW);
    assert_eq!(out.replicas, 1);
}

#[test]
fn persistent_lag_is_excluded_from_sizing_but_activates() {
    let c = KafkaLag {
        exclude_persistent_lag: true,
        ..cfg(10.0)
    };
    // Total 400 of which 400 persistent: sizing lag 0 -> ceil(0) = 0, but active -> 1.
    let mut i = input(400.0, 10, 2);
    i.persistent_lag = 400.0;
    let out = lag_replicas(&c, &i, 4, tol(), None, NOW);
    assert_eq!((out.active, out.lag, out.replicas), (true, 0.0, 1));
    // Total 400, 340 persistent: 60 / (10*4) = 1.5 -> ceil(6) = 6.
    i.persistent_lag = 340.0;
    let out = lag_replicas(&c, &i, 4, tol(), None, NOW);
    assert_eq!((out.lag, out.replicas), (60.0, 6));
}

fn predictive(drain: f64, lookahead: f64) -> Predictive {
    Predictive {
        target_drain_seconds: drain,
        bypass_rate_limits: false,
        lookahead_seconds: lookahead,
    }
}

/// A lag input with rates (and no pods known: the consumers are the status replicas).
fn rated(lag: f64, consume: f64, produce: f64, partitions: i64) -> LagInput {
    LagInput {
        consume_rate_per_second: Some(consume),
        produce_rate_per_second: Some(produce),
        ..input(lag, partitions, partitions)
    }
}

#[test]
fn predictive_sizes_from_rates_and_caps() {
    // Falling behind (production above consumption, lag above the accepted lag).
    // (lag, lagPerReplica, drain s, consume/s, produce/s, status, partitions, want)
    type Case = (f64, f64, f64, f64, f64, i32, i64, i32);
    let cases: &[Case] = &[
        // per consumer 300/3 = 100/s; backlog 60000 - 3 * 1000 = 57000;
        // need (57000/120 + 400) / 100 = 8.75 -> 9.
        (60_000.0, 1000.0, 120.0, 300.0, 400.0, 3, 12, 9),
        // (597000/60 + 400) / 100 = 103.5 -> 104 -> cap 12.
        (600_000.0, 1000.0, 60.0, 300.0, 400.0, 3, 12, 12),
        // per consumer 125/s; backlog 1000 - 2 * 10 = 980; (980/10 + 300) / 125 = 3.18 -> 4.
        (1_000.0, 10.0, 10.0, 250.0, 300.0, 2, 8, 4),
        // 4 consumers at 100/s, 900/s produced, backlog 5000 - 4000 = 1000:
        // (1000/60 + 900) / 100 = 9.17 -> 10.
        (5_000.0, 1000.0, 60.0, 400.0, 900.0, 4, 16, 10),
    ];
    for &(lag, per_replica, drain, consume, produce, status, partitions, want) in cases {
        let c = KafkaLag {
            predictive: Some(predictive(drain, 0.0)),
            ..cfg(per_replica)
        };
        let out = lag_replicas(
            &c,
            &rated(lag, consume, produce, partitions),
            status,
            tol(),
            None,
            NOW,
        );
        assert!(out.predictive, "{lag}");
        assert_eq!(out.replicas, want, "lag={lag}");
    }
    // Not falling behind: the KEDA path sizes it.
    let c = KafkaLag {
        predictive: Some(predictive(60.0, 30.0)),
        activation_lag_threshold: -1.0,
        ..cfg(175.0)
    };
    // Draining: 12 consume 1200/s, 800/s produced, lag 12000: ceil(12000/175) = 69 -> cap 12.
    let out = lag_replicas(
        &c,
        &rated(12_000.0, 1200.0, 800.0, 12),
        12,
        tol(),
        None,
        NOW,
    );
    assert_eq!((out.predictive, out.replicas), (false, 12));
    // Production above consumption but no lag above the accepted 4 * 175 = 700 (the rates
    // run ahead of the lag, or are noisy): 600 / 700 = 0.86 -> ceil(600/175) = 4.
    let out = lag_replicas(&c, &rated(600.0, 400.0, 900.0, 16), 4, tol(), None, NOW);
    assert_eq!((out.predictive, out.replicas), (false, 4));
    // Without a consume rate: ceil(60000/1000) = 60 -> cap 12.
    let c = KafkaLag {
        predictive: Some(predictive(120.0, 0.0)),
        ..cfg(1000.0)
    };
    let out = lag_replicas(&c, &input(60_000.0, 12, 12), 3, tol(), None, NOW);
    assert_eq!((out.predictive, out.replicas), (false, 12));
    let p = predictive(10.0, 0.0);
    assert_eq!(
        predictive_need(100.0, 1.0, &p, &rated(100.0, 50.0, 80.0, 4), 0),
        None,
        "no replicas: no per-consumer rate"
    );
    assert_eq!(
        predictive_need(100.0, 1.0, &p, &rated(100.0, 0.0, 80.0, 4), 2),
        None,
        "nothing consumed"
    );
}

/// Open point (a) of #5: the commit trail. A group that keeps up still reports
/// `consume * 2.5 s` of lag (auto-commit every 5 s). The old predictive size,
/// `(lag / drain + produce) / (consume / replicas)`, is then `replicas * (1 + 2.5 / drain)`,
/// always above the count: one more replica at every evaluation, up to the cap. Replayed
/// here for 30 evaluations, each from the count the previous one chose, at a steady 360/s
/// (lag 900 whatever the count), with the rates exact, noisy (+-5% on production,
/// alternating) or biased (production read 5% high every time).
#[test]
fn predictive_steady_lag_with_commit_trail_does_not_ratchet() {
    let consume = 360.0;
    let trail = consume * 2.5;
    let exact = |_: usize| consume;
    let noisy = |i: usize| if i.is_multiple_of(2) { 378.0 } else { 342.0 };
    let biased = |_: usize| 378.0;
    let rates: [(&str, &dyn Fn(usize) -> f64); 3] =
        [("exact", &exact), ("noisy", &noisy), ("biased", &biased)];
    for (drain, lookahead) in [(30.0, 30.0), (60.0, 0.0), (5.0, 30.0)] {
        let c = KafkaLag {
            predictive: Some(predictive(drain, lookahead)),
            ..cfg(175.0)
        };
        for (name, produce) in &rates {
            for start in [4, 8, 12] {
                let mut replicas = start;
                let mut seen = Vec::new();
                for i in 0..30 {
                    let out = lag_replicas(
                        &c,
                        &rated(trail, consume, produce(i), 12),
                        replicas,
                        tol(),
                        Some(NOW),
                        NOW,
                    );
                    replicas = out.replicas;
                    seen.push(replicas);
                }
                // Every run settles within two evaluations, never above the KEDA path's
                // count, ceil(900 / 175) = 6 (at 6 the consumers accept 1050 >= 900: not
                // falling behind). E.g. biased from 4, drain 30: lag 900 > 700,
                // (200 + 18 * 30) / 30 + 378 = 402.7, / 90 = 4.47 (1.12, outside) -> 5;
                // then (25 + 540) / 30 + 378 = 396.8, / 72 = 5.51 (1.10, outside) -> 6.
                // Biased from 4 with drain 60 and no lookahead, the tolerance holds 4:
                // (200/60 + 378) / 90 = 4.24 (1.06). Exact or noisy rates end at 6.
                let settled = seen[2];
                assert!(
                    seen.iter().skip(2).all(|r| *r == settled) && seen.iter().all(|r| *r <= 6),
                    "drain {drain}, lookahead {lookahead}, {name} rates, from {start}: {seen:?}"
                );
                if *name != "biased" {
                    assert_eq!(settled, 6, "{name}, from {start}: {seen:?}");
                }
            }
        }
    }
    // The old rule, for contrast: from 4, one more at each evaluation up to the cap.
    let mut old = 4;
    for _ in 0..30 {
        let need = (trail / 60.0 + consume) / (consume / f64::from(old));
        old = (need.ceil() as i32).min(12);
    }
    assert_eq!(old, 12, "the old rule ratchets to the cap");
}

/// Open point (b): a real growth in lag still scales up at once, in one step.
#[test]
fn predictive_real_lag_growth_scales_up_promptly() {
    let c = KafkaLag {
        predictive: Some(predictive(30.0, 30.0)),
        ..cfg(175.0)
    };
    // A step from 300/s to 800/s on 4 replicas of 100/s: the first second saturates them
    // (consume 400/s), lag 400 + 400 * 2.5 = 1400. Accepted 700, backlog 700, growing at
    // 400/s: projected 700 + 400 * 30 = 12700. (12700/30 + 800) / 100 = 12.23 -> 13 -> cap 12.
    let out = lag_replicas(&c, &rated(1400.0, 400.0, 800.0, 12), 4, tol(), None, NOW);
    assert_eq!((out.predictive, out.replicas), (true, 12));
    // Without the lookahead: (700/30 + 800) / 100 = 8.23 -> 9, still in one step.
    let c0 = KafkaLag {
        predictive: Some(predictive(30.0, 0.0)),
        ..cfg(175.0)
    };
    let out = lag_replicas(&c0, &rated(1400.0, 400.0, 800.0, 12), 4, tol(), None, NOW);
    assert_eq!(out.replicas, 9);
    // Production 9% above consumption (10.9 / 10, within the tolerance on its own), one
    // second after the lag left the accepted 1750 of 10 consumers at 100/s: lag 1840,
    // backlog 90 + 90 * 30 = 2790, (2790/30 + 1090) / 100 = 11.83 -> 12 (1.18, outside).
    let out = lag_replicas(&c, &rated(1840.0, 1000.0, 1090.0, 24), 10, tol(), None, NOW);
    assert_eq!((out.predictive, out.replicas), (true, 12));
    // A growing backlog keeps scaling up from where it is: 12 consumers, 1200/s consumed,
    // 1500/s produced, backlog 20000 - 2100 = 17900 + 300 * 30 = 26900:
    // (26900/30 + 1500) / 100 = 23.97 -> 24 (cap 24).
    let out = lag_replicas(
        &c,
        &rated(20_000.0, 1200.0, 1500.0, 24),
        12,
        tol(),
        None,
        NOW,
    );
    assert_eq!(out.replicas, 24);
    // Replicas still starting: 3 of 12 ready, consuming 300/s (100/s each), 1000/s produced,
    // lag 1000: the 3 accept 525, backlog 475 + 700 * 30 = 21475,
    // (21475/30 + 1000) / 100 = 17.2 -> cap 12. With 320/s produced the need is
    // (475 + 20 * 30) / 30 + 320 = 355.8, / 100 = 3.56 (0.30, outside), but the count is not
    // lowered while 9 replicas are still starting: their capacity does not show in the
    // consume rate yet.
    let mut starting = rated(1000.0, 300.0, 1000.0, 12);
    starting.consumers = Some(3);
    assert_eq!(
        lag_replicas(&c, &starting, 12, tol(), None, NOW).replicas,
        12
    );
    starting.produce_rate_per_second = Some(320.0);
    let out = lag_replicas(&c, &starting, 12, tol(), None, NOW);
    assert_eq!((out.predictive, out.replicas), (true, 12));
    // Once all are ready (25/s each) the group keeps up: lag 1000 < 12 * 175, the KEDA path:
    // ceil(1000/175) = 6.
    starting.consumers = Some(12);
    let out = lag_replicas(&c, &starting, 12, tol(), None, NOW);
    assert_eq!((out.predictive, out.replicas), (false, 6));
}

/// The tolerance is the HPA's, per direction (`behavior.scale*.tolerance`).
#[test]
fn predictive_tolerance_is_the_hpa_tolerance() {
    let c = KafkaLag {
        predictive: Some(predictive(120.0, 0.0)),
        ..cfg(10.0)
    };
    // 10 consumers at 100/s, 1005/s produced, backlog 6000 - 100 = 5900:
    // (5900/120 + 1005) / 100 = 10.54, ratio 1.054: within 0.1 -> 10; not within 0.05 -> 11.
    let i = rated(6000.0, 1000.0, 1005.0, 24);
    assert_eq!(lag_replicas(&c, &i, 10, tol(), None, NOW).replicas, 10);
    let tight = Tolerances {
        scale_up: 0.05,
        scale_down: 0.1,
    };
    assert_eq!(lag_replicas(&c, &i, 10, tight, None, NOW).replicas, 11);
}

/// Open point (c): predictive or not, unknown lag never scales to zero.
#[test]
fn predictive_never_scales_to_zero_on_unknown_lag() {
    let behavior = serde_json::json!({ "scale_down": { "stabilization_window_seconds": 0 } });
    let kafka_lag = serde_json::json!({ "lag_per_replica": 175,
        "predictive": { "target_drain_seconds": 30, "lookahead_seconds": 30 } });
    let long_ago = NOW - 3600.0;
    for (obs, why) in [
        (serde_json::json!([]), "no observation"),
        (
            serde_json::json!([{ "metric": "lag", "error": "broker unreachable" }]),
            "a source error",
        ),
        (
            serde_json::json!([{ "metric": "lag", "value": 0, "stale": true,
                "kafka": { "partitions": 12, "consume_rate_per_second": 0, "produce_rate_per_second": 0 } }]),
            "stale lag",
        ),
    ] {
        let i = lag_input_json(
            3,
            obs,
            kafka_lag.clone(),
            serde_json::json!({ "spec": { "behavior": behavior },
                "state": { "last_active_unix_seconds": long_ago } }),
        );
        let d = run(&i);
        assert_eq!(d.desired_replicas, 3, "{why}: {d:#?}");
    }
    // Known lag of 0, inactive past the cooldown: 0 (the existing rule, with minReplicas 0).
    let obs = serde_json::json!([{ "metric": "lag", "value": 0,
        "kafka": { "partitions": 12, "consume_rate_per_second": 0, "produce_rate_per_second": 0 } }]);
    let i = lag_input_json(
        3,
        obs,
        kafka_lag,
        serde_json::json!({ "spec": { "behavior": behavior },
            "state": { "last_active_unix_seconds": long_ago } }),
    );
    assert_eq!(run(&i).desired_replicas, 0);
}

// ---- End to end through `horizontal::desired` ----

fn case(json: serde_json::Value) -> Input {
    serde_json::from_value(json).expect("valid input")
}

fn lag_input_json(
    spec_replicas: i32,
    lag_obs: serde_json::Value,
    kafka_lag: serde_json::Value,
    extra: serde_json::Value,
) -> Input {
    let mut v = serde_json::json!({
        "spec": {
            "min_replicas": 0,
            "max_replicas": 50,
            "metrics": [ { "name": "lag", "type": "kafka_lag", "kafka_lag": kafka_lag } ]
        },
        "state": { "spec_replicas": spec_replicas, "recommendations": [] },
        "observations": lag_obs,
        "now_unix_seconds": NOW
    });
    if let (Some(dst), Some(src)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in src {
            if k == "state" || k == "spec" {
                let obj = dst
                    .get_mut(k)
                    .and_then(|x| x.as_object_mut())
                    .expect("object");
                for (k2, v2) in val.as_object().expect("object") {
                    obj.insert(k2.clone(), v2.clone());
                }
            } else {
                dst.insert(k.clone(), val.clone());
            }
        }
    }
    case(v)
}

fn run(i: &Input) -> crate::types::Decision {
    decide(i).expect("valid")
}

#[test]
fn end_to_end_reaches_the_partition_count() {
    // 10 partitions as per-partition observations, lag 95 in total, 9 replicas, default
    // behavior: KEDA would stay at 9; Tidal goes to 10.
    let obs: Vec<serde_json::Value> = (0..10)
        .map(|p| serde_json::json!({ "metric": "lag", "value": if p < 5 { 19 } else { 0 } }))
        .collect();
    let i = lag_input_json(
        9,
        serde_json::Value::Array(obs),
        serde_json::json!({}),
        serde_json::json!({ "spec": { "behavior": {} } }),
    );
    let d = run(&i);
    assert_eq!(d.desired_replicas, 10, "{d:#?}");
    let lag = d.proposals[0].lag.expect("lag outcome");
    assert_eq!((lag.cap, lag.uncapped, lag.lag), (Some(10), 9, 95.0));
    assert_eq!(d.next.last_active_unix_seconds, Some(NOW));
}

#[test]
fn end_to_end_scale_to_zero_after_cooldown_only_when_lag_is_known() {
    let lag0 = serde_json::json!([{ "metric": "lag", "value": 0, "kafka": { "partitions": 6 } }]);
    let behavior = serde_json::json!({
        "scale_down": { "stabilization_window_seconds": 0 }
    });
    // Last active 200s ago: within the 300s cooldown -> 1 (from 3: 100% per 15s allows it).
    let i = lag_input_json(
        3,
        lag0.clone(),
        serde_json::json!({}),
        serde_json::json!({ "spec": { "behavior": behavior }, "state": { "last_active_unix_seconds": NOW - 200.0 } }),
    );
    let d = run(&i);
    assert_eq!(d.desired_replicas, 1);
    assert_eq!(d.next.last_active_unix_seconds, Some(NOW - 200.0));
    // 300s after: 0.
    let i = lag_input_json(
        3,
        lag0,
        serde_json::json!({}),
        serde_json::json!({ "spec": { "behavior": behavior }, "state": { "last_active_unix_seconds": NOW - 300.0 } }),
    );
    assert_eq!(run(&i).desired_replicas, 0);
    // Stale lag of 0: may not scale down, let alone to zero.
    let stale = serde_json::json!([{ "metric": "lag", "value": 0, "stale": true, "kafka": { "partitions": 6 } }]);
    let i = lag_input_json(
        3,
        stale,
        serde_json::json!({}),
        serde_json::json!({ "spec": { "behavior": behavior }, "state": { "last_active_unix_seconds": NOW - 900.0 } }),
    );
    let d = run(&i);
    assert_eq!(d.desired_replicas, 3, "{d:#?}");
    assert!(
        d.limits
            .iter()
            .any(|l| l.stage == crate::types::LimitStage::StaleMetrics)
    );
    // No lag observation at all: invalid metric, nothing changes.
    let i = lag_input_json(
        3,
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!({ "spec": { "behavior": behavior }, "state": { "last_active_unix_seconds": NOW - 900.0 } }),
    );
    let d = run(&i);
    assert_eq!(d.desired_replicas, 3);
    assert_eq!(
        d.proposals[0].invalid_reason.as_deref(),
        Some("FailedGetExternalMetric")
    );
    // A source error: the same.
    let err = serde_json::json!([{ "metric": "lag", "error": "broker unreachable" }]);
    let i = lag_input_json(
        3,
        err,
        serde_json::json!({}),
        serde_json::json!({ "spec": { "behavior": behavior }, "state": { "last_active_unix_seconds": NOW - 900.0 } }),
    );
    assert_eq!(run(&i).desired_replicas, 3);
}

#[test]
fn end_to_end_stale_lag_still_scales_up() {
    // Stale lag 400 with 10 per replica, 16 partitions, 2 replicas: 400 / 20 = 20 -> ceil(40)
    // -> cap 16; the default scale-up policy allows max(2 + 4, 2 * 2) = 6.
    let obs = serde_json::json!([{ "metric": "lag", "value": 400, "stale": true, "kafka": { "partitions": 16 } }]);
    let i = lag_input_json(
        2,
        obs,
        serde_json::json!({}),
        serde_json::json!({ "spec": { "behavior": {} } }),
    );
    let d = run(&i);
    assert_eq!(d.metric_replicas, Some(16));
    assert_eq!(d.desired_replicas, 6);
}

#[test]
fn end_to_end_predictive_steps_straight_or_obeys_the_behavior() {
    // 24 partitions, lag 150000, lagPerReplica 1000, drain 120s, 3 replicas consuming 300/s
    // in total (100/s each), producing 400/s: backlog 150000 - 3000 = 147000,
    // (1225 + 400) / 100 = 16.25 -> 17. The default scale-up allows max(3 + 4, 3 * 2) = 7.
    let obs = serde_json::json!([{ "metric": "lag", "value": 150000,
        "kafka": { "partitions": 24, "consume_rate_per_second": 300, "produce_rate_per_second": 400 } }]);
    let with = |bypass: bool| {
        lag_input_json(
            3,
            obs.clone(),
            serde_json::json!({ "lag_per_replica": 1000,
                "predictive": { "target_drain_seconds": 120, "bypass_rate_limits": bypass } }),
            serde_json::json!({ "spec": { "behavior": {} } }),
        )
    };
    let d = run(&with(false));
    assert_eq!((d.metric_replicas, d.desired_replicas), (Some(17), 7));
    let d = run(&with(true));
    assert_eq!((d.metric_replicas, d.desired_replicas), (Some(17), 17));
    assert!(d.proposals[0].lag.expect("lag").predictive);
    // KEDA path for comparison: ceil(150000/1000) = 150 -> cap 24, limited to 7.
    let i = lag_input_json(
        3,
        obs,
        serde_json::json!({ "lag_per_replica": 1000 }),
        serde_json::json!({ "spec": { "behavior": {} } }),
    );
    let d = run(&i);
    assert_eq!((d.metric_replicas, d.desired_replicas), (Some(24), 7));
}

#[test]
fn validation_names_the_kafka_lag_fields() {
    let i = lag_input_json(
        3,
        serde_json::json!([]),
        serde_json::json!({ "lag_per_replica": 0 }),
        serde_json::json!({}),
    );
    let e = decide(&i).expect_err("invalid").to_string();
    assert!(
        e.contains("spec.metrics[0].kafka_lag.lag_per_replica"),
        "{e}"
    );
    let mut i = lag_input_json(
        3,
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!({}),
    );
    i.spec.metrics[0].target.average_value = Some(10.0);
    let e = decide(&i).expect_err("invalid").to_string();
    assert!(e.contains("spec.metrics[0].target"), "{e}");
    let i = lag_input_json(
        3,
        serde_json::json!([{ "metric": "lag", "value": 1, "kafka": { "consume_rate_per_second": -1 } }]),
        serde_json::json!({}),
        serde_json::json!({}),
    );
    let e = decide(&i).expect_err("invalid").to_string();
    assert!(
        e.contains("observations[0].kafka.consume_rate_per_second"),
        "{e}"
    );
    // `desired` without validation still never panics on the same input.
    let _ = desired(&i.spec, &i.state, &i.observations, NOW);
    let i = lag_input_json(
        3,
        serde_json::json!([{ "metric": "lag", "value": 1, "kafka": { "commit_interval_lag": -1e9 } }]),
        serde_json::json!({ "lag_sampling": "commit_interval" }),
        serde_json::json!({}),
    );
    let e = decide(&i).expect_err("invalid").to_string();
    assert!(
        e.contains("observations[0].kafka.commit_interval_lag")
            && e.contains("must not be negative"),
        "{e}"
    );
    for (lookahead, why) in [
        (-1.0, "must be between 0 and 3600"),
        (3601.0, "must be between 0 and 3600"),
    ] {
        let i = lag_input_json(
            3,
            serde_json::json!([]),
            serde_json::json!({ "predictive": { "target_drain_seconds": 30, "lookahead_seconds": lookahead } }),
            serde_json::json!({}),
        );
        let e = decide(&i).expect_err("invalid").to_string();
        assert!(
            e.contains("spec.metrics[0].kafka_lag.predictive.lookahead_seconds") && e.contains(why),
            "{e}"
        );
    }
}

/// End to end, the per-consumer rate and the accepted lag count the Ready pods only: 4 pods
/// of which 2 are Ready, consuming 200/s (100/s each), 400/s produced, lag 550 above the
/// 2 * 175 accepted: (200/30 + 400) / 100 = 4.07, ratio 1.02: stays at 4. Counting all four
/// (50/s each, 700 accepted) would not see the group falling behind at all.
#[test]
fn end_to_end_predictive_counts_ready_consumers() {
    let pod = |name: &str, ready: bool| {
        serde_json::json!({ "name": name, "phase": "Running",
            "start_time_unix_seconds": NOW - 600.0,
            "ready": { "status": if ready { "True" } else { "False" },
                "last_transition_unix_seconds": NOW - 500.0 } })
    };
    let obs = serde_json::json!([{ "metric": "lag", "value": 550,
        "kafka": { "partitions": 12, "consume_rate_per_second": 200, "produce_rate_per_second": 400 } }]);
    let i = lag_input_json(
        4,
        obs,
        serde_json::json!({ "lag_per_replica": 175,
            "predictive": { "target_drain_seconds": 30 } }),
        serde_json::json!({ "state": { "pods": [pod("a", true), pod("b", true), pod("c", false), pod("d", false)] } }),
    );
    let d = run(&i);
    let lag = d.proposals[0].lag.expect("lag");
    assert!(lag.predictive, "{d:#?}");
    assert_eq!((d.metric_replicas, d.desired_replicas), (Some(4), 4));
}

/// Over a grid of partitions, thresholds, replicas and lags: Tidal never exceeds the cap,
/// reaches it whenever `ceil(lag / threshold) >= cap`, and otherwise equals KEDA (which is
/// then below the cap).
#[test]
fn grid_tidal_is_keda_capped_exactly() {
    for partitions in [1i64, 2, 3, 7, 10, 16] {
        for threshold in [1i64, 7, 10, 100] {
            let c = cfg(threshold as f64);
            for status in 0..=20 {
                for lag in (1..=threshold * (partitions + 3)).step_by(threshold.max(3) as usize / 3)
                {
                    let keda =
                        keda_desired(lag, partitions, partitions, threshold, false, false, status);
                    let out = tidal(lag as f64, partitions, partitions, &c, status);
                    let needed = (lag + threshold - 1) / threshold;
                    let cap = partitions as i32;
                    let want = if needed >= partitions {
                        cap
                    } else {
                        keda.clamp(1, cap)
                    };
                    assert_eq!(
                        out.replicas, want,
                        "partitions={partitions} threshold={threshold} status={status} lag={lag} keda={keda}"
                    );
                    assert!(out.replicas <= cap);
                }
            }
        }
    }
}

#[test]
fn end_to_end_scale_from_zero_and_legacy_path() {
    // 0 replicas, min 0, lag 35 with threshold 10 over 8 partitions: active, status 0 ->
    // ceil(35/10) = 4. Without a behavior the legacy limit is max(2*0, 4) = 4.
    let obs = serde_json::json!([{ "metric": "lag", "value": 35, "kafka": { "partitions": 8 } }]);
    let i = lag_input_json(0, obs, serde_json::json!({}), serde_json::json!({}));
    let d = run(&i);
    assert_eq!(
        (d.metric_replicas, d.desired_replicas),
        (Some(4), 4),
        "{d:#?}"
    );
    assert_eq!(d.next.last_active_unix_seconds, Some(NOW));
    // Lag 0 at 0 replicas, never active: stays at 0.
    let obs = serde_json::json!([{ "metric": "lag", "value": 0, "kafka": { "partitions": 8 } }]);
    let i = lag_input_json(0, obs, serde_json::json!({}), serde_json::json!({}));
    let d = run(&i);
    assert_eq!(d.desired_replicas, 0);
    assert_eq!(d.next.last_active_unix_seconds, None);
    // Predictive with bypass on the legacy path: 2 replicas consuming 200/s (100/s each),
    // 300/s produced, lag 90000, lagPerReplica 1000: backlog 88000,
    // (88000/60 + 300) / 100 = 17.67 -> 18 > legacy limit max(4, 4) = 4, bypassed -> 18
    // (cap 20).
    let obs = serde_json::json!([{ "metric": "lag", "value": 90000,
        "kafka": { "partitions": 20, "consume_rate_per_second": 200, "produce_rate_per_second": 300 } }]);
    let i = lag_input_json(
        2,
        obs,
        serde_json::json!({ "lag_per_replica": 1000,
            "predictive": { "target_drain_seconds": 60, "bypass_rate_limits": true } }),
        serde_json::json!({}),
    );
    let d = run(&i);
    assert_eq!(
        (d.metric_replicas, d.desired_replicas),
        (Some(18), 18),
        "{d:#?}"
    );
}

#[test]
fn commit_interval_sampling_sizes_on_the_average_and_activates_on_the_latest() {
    // A sawtooth's peak of 150 against its mean of 75, lagPerReplica 18, 60 partitions, 4
    // replicas: the latest sizes ceil(150/18) = 9 (KEDA's path: 150/72 = 2.08 -> 9); the
    // average ceil(75/18) = 5 (75/72 = 1.04 is within the 0.1 tolerance of 4: stays 4).
    let peak = LagInput {
        commit_interval_lag: Some(75.0),
        ..input(150.0, 60, 60)
    };
    let latest = cfg(18.0);
    let averaged = KafkaLag {
        lag_sampling: LagSampling::CommitInterval,
        ..cfg(18.0)
    };
    assert_eq!(sized_lag(&latest, &peak), 150.0);
    assert_eq!(sized_lag(&averaged, &peak), 75.0);
    assert_eq!(
        lag_replicas(&latest, &peak, 4, tol(), None, NOW).replicas,
        9
    );
    let out = lag_replicas(&averaged, &peak, 4, tol(), None, NOW);
    assert_eq!((out.replicas, out.lag), (4, 75.0));
    // No average from the source: the latest.
    let no_average = input(150.0, 60, 60);
    assert_eq!(sized_lag(&averaged, &no_average), 150.0);
    // A burst whose average is still 0 (the rounds before it were idle): active on the latest,
    // so not scaled to zero at 0 replicas' cooldown, and at least one replica.
    let burst = LagInput {
        commit_interval_lag: Some(0.0),
        ..input(40.0, 60, 1)
    };
    let out = lag_replicas(&averaged, &burst, 0, tol(), None, NOW);
    assert!(out.active && !out.scale_to_zero, "{out:?}");
    assert_eq!(out.replicas, 1);
}

#[test]
fn commit_interval_sampling_reaches_the_engine_from_the_observations() {
    // Two observations (two topics' readings): one with an average, one without, which counts
    // its latest. 300 + 40 = 340 averaged against 500 + 40 = 540 latest, lagPerReplica 100,
    // 10 partitions, 2 replicas: ceil(340/100) = 4 against ceil(540/100) = 6.
    let obs = serde_json::json!([
        { "metric": "lag", "value": 500, "kafka": { "partitions": 10, "commit_interval_lag": 300 } },
        { "metric": "lag", "value": 40, "kafka": { "partitions": 10 } }
    ]);
    for (sampling, want) in [("latest", 6), ("commit_interval", 4)] {
        let i = lag_input_json(
            2,
            obs.clone(),
            serde_json::json!({ "lag_per_replica": 100, "lag_sampling": sampling }),
            serde_json::json!({}),
        );
        let d = run(&i);
        assert_eq!(d.metric_replicas, Some(want), "{sampling}: {d:#?}");
    }
}

//! The replay part's rows and paragraph in the section "Peers side by side (issue #15)"
//! (the figures of [`super::driver::replay`]).

use serde_json::Value;

use crate::py::{fixed, fixed_of, str as pstr};

const PEERS: [(&str, &str); 3] = [
    ("tidal", "Tidal"),
    ("hpa", "HPA + metrics-server"),
    ("keda-lag", "KEDA `kafka` trigger"),
];

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// The peer (the HPA or KEDA) with the fewest violation seconds (then the fewest
/// replica-seconds) of one trace's figures, as `(name, violation s, replica-s)`.
pub fn best_peer(t: &Value) -> Option<(&'static str, f64, f64)> {
    ["hpa", "keda-lag"]
        .into_iter()
        .filter_map(|n| {
            let p = &t["peers"][n];
            Some((
                n,
                p["slo_violation_seconds"].as_f64()?,
                p["replica_seconds"].as_f64()?,
            ))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.2.total_cmp(&b.2)))
}

/// Whether Tidal met the target on one trace: at most half the best peer's violation seconds
/// (or none when the best peer had none), at no more replica-seconds.
pub fn met(t: &Value) -> Option<bool> {
    let (_, v, rs) = best_peer(t)?;
    let me = &t["peers"]["tidal"];
    let (tv, trs) = (
        me["slo_violation_seconds"].as_f64()?,
        me["replica_seconds"].as_f64()?,
    );
    Some((tv <= 0.5 * v || tv == 0.0) && trs <= rs)
}

fn cell(p: &Value) -> String {
    format!(
        "{} s / {} replica-s",
        fixed_of(&p["slo_violation_seconds"], 0),
        fixed_of(&p["replica_seconds"], 0)
    )
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{}×", fixed(a / b, 2))
    } else if a == 0.0 {
        "0 = 0".into()
    } else {
        "(peer 0)".into()
    }
}

/// One comparison row per trace.
pub fn comparison(replay: &Value, w: &mut impl FnMut(String)) {
    for t in replay["traces"].as_array().into_iter().flatten() {
        let p = &t["peers"];
        let me = &p["tidal"];
        let r = |n: &str| {
            format!(
                "{} / {}",
                ratio(
                    num(&me["slo_violation_seconds"]),
                    num(&p[n]["slo_violation_seconds"])
                ),
                ratio(num(&me["replica_seconds"]), num(&p[n]["replica_seconds"]))
            )
        };
        let verdict = match met(t) {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "?",
        };
        w(format!(
            "| Trace replay with real load, `{}` ({} s, compressed {}×): SLO-violation seconds / replica-seconds | {} | {} | {} | {} | {} | ≤ 0.5× the best peer's violation seconds, at no more replica-seconds | {verdict} |",
            pstr(&t["trace"]),
            pstr(&t["seconds"]),
            fixed_of(&t["factor"], 0),
            cell(me),
            cell(&p["hpa"]),
            cell(&p["keda-lag"]),
            r("hpa"),
            r("keda-lag"),
        ));
    }
}

/// `spec.behavior` of a ScalingPolicy or HPA (or `spec.advanced...behavior` of a
/// ScaledObject), in words: windows and limits, "defaults" where unset.
fn behavior(spec: &Value) -> String {
    let b = if spec["behavior"].is_object() {
        &spec["behavior"]
    } else if spec["spec"]["behavior"].is_object() {
        &spec["spec"]["behavior"]
    } else {
        return "the HPA's default behavior (scale-up: no window, 100 % or 4 pods per 15 s; scale-down: a 300 s window, 100 % per 15 s)".into();
    };
    let side = |d: &Value, name: &str| {
        let limits: Vec<String> = d["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let unit = if p["type"] == "Percent" {
                    " %"
                } else {
                    " pods"
                };
                format!(
                    "{}{unit} per {} s",
                    pstr(&p["value"]),
                    pstr(&p["periodSeconds"])
                )
            })
            .collect();
        format!(
            "{name}: a {} s window, {}",
            pstr(&d["stabilizationWindowSeconds"]),
            limits.join(" or ")
        )
    };
    format!(
        "{}; {}",
        side(&b["scaleUp"], "scale-up"),
        side(&b["scaleDown"], "scale-down")
    )
}

/// Where each trace's load rose most, and what each copy held and did there (the figures of
/// [`super::driver::replay::rise`]); nothing for a run recorded without them.
fn rises(replay: &Value, w: &mut impl FnMut(String)) {
    let traces: Vec<&Value> = replay["traces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["rise"].is_object())
        .collect();
    let Some(first) = traces.first() else {
        return;
    };
    w(format!(
        "**Where the load rose most.** Where the load rises, how many seconds are violated depends first on the replicas a copy holds when it begins: the pods an autoscaler adds must start, then join the group in a rebalance that stops every member (the model allows {} s for both), and the backlog built meanwhile drains only at the capacity above the load. For each trace, the run of rising seconds around its largest one-second rise; the replicas when it began; the first reading (one a second) that saw more; the violated seconds in the window (the {} s from its start, or to the trace's end) and in the rest of the trace.",
        pstr(&first["simulate"]["pod_start_seconds"]),
        super::driver::replay::RISE_WINDOW,
    ));
    w(String::new());
    w("| Trace | the rise | window | Autoscaler | replicas when it began | more replicas seen within | violated s in the window | violated s elsewhere |".into());
    w("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |".into());
    for t in traces {
        let r = &t["rise"];
        let when = format!(
            "second {} over {} s, {} → {} messages/s",
            pstr(&r["second"]),
            pstr(&r["seconds"]),
            fixed_of(&r["from"], 0),
            fixed_of(&r["to"], 0)
        );
        for (n, label) in PEERS {
            let p = &r["peers"][n];
            let (before, within) = match (
                p["replicas_before"].as_f64(),
                p["first_more_within_seconds"].as_u64(),
            ) {
                (None, _) => ("?".into(), "?".into()),
                (Some(b), Some(s)) => (fixed(b, 0), format!("{s} s")),
                (Some(b), None) => (fixed(b, 0), "never".into()),
            };
            w(format!(
                "| `{}` | {when} | {} s | {label} | {before} | {within} | {} | {} |",
                pstr(&t["trace"]),
                pstr(&r["window_seconds"]),
                pstr(&p["violation_seconds"]),
                pstr(&p["violation_seconds_elsewhere"]),
            ));
        }
    }
    w(String::new());
}

/// The paragraph and the table of measured and predicted figures.
pub fn detail(replay: &Value, w: &mut impl FnMut(String)) {
    let specs = &replay["specs"];
    let t0 = &replay["traces"][0];
    w(format!(
        "**Trace replay with real load.** `traces/step.csv` and `traces/flash-sale.csv`, each compressed to {} s (second i replays the trace's second i × the factor) and scaled to {} message a second per unit of load, produced by the driver round-robin over the {} partitions of one topic (5 per replica at the most, so that every count of consumers shares them almost evenly). One namespace per autoscaler, each with its own consumer group on that topic and a Deployment of real consumers (`tidal-bench-consumer`: librdkafka with its defaults, eager rebalances and offsets committed every 5 s; a 10 s session timeout), which spend {} ms of CPU on each message with a CPU request and limit of {}: with the client's own CPU, about {} messages a second per pod at 100 % of the request (what each served is the last column × the request). Each copy starts at the replicas `tidal-sim simulate` starts from (the fewest that serve the first second at or below 90 %) and runs {} s at the first second's load with its autoscaler attached before second 0. The autoscalers, {}..{} replicas, each as `traces/policy.yaml` describes the consumer:",
        pstr(&replay["replay_seconds"]),
        pstr(&replay["load_scale"]),
        pstr(&replay["partitions"]),
        pstr(&replay["cpu_ms_per_message"]),
        pstr(&replay["cpu_request"]),
        pstr(&replay["capacity_per_replica"]),
        pstr(&t0["warm_up_seconds"]),
        pstr(&replay["min_replicas"]),
        pstr(&replay["max_replicas"]),
    ));
    w(format!(
        "- **Tidal**: that policy (CPU at 70 %, `lagPerReplica` {} — its 175 scaled like the load —, the lag predictive), its behavior ({});",
        pstr(&replay["lag_per_replica"]),
        behavior(&specs["tidal"]),
    ));
    w(format!(
        "- **the HPA**: CPU at 70 % (it has no lag metric), {};",
        behavior(&specs["hpa"]["spec"])
    ));
    w(format!(
        "- **KEDA**: the `kafka` trigger, `lagThreshold` {}, its defaults (`pollingInterval` 30 s; from 2 replicas up its HPA asks for the lag at each 15 s sync) and {}.",
        pstr(&replay["lag_per_replica"]),
        behavior(&specs["keda-lag"]["spec"]["advanced"]["horizontalPodAutoscalerConfig"])
    ));
    w(String::new());
    w(format!(
        "Every second, each copy's `spec.replicas` (replica-seconds add them up, ready or not, as the model does), its Ready pods' CPU from their cgroups, the committed lag its autoscaler sees, and the true backlog: the end offsets minus the positions its consumers commit every 250 ms to a second group that nobody reads. A second violates the SLO when the pods' mean CPU is above {} % of their request or the backlog is above {} messages: the rule of `tidal-sim simulate`, whose prediction for the same compressed trace, policy and model (capacity {}/s, pod start {} s, commit trail 2.5 s) stands beside each figure.",
        fixed(100.0 * num(&replay["slo_utilization"]), 0),
        pstr(&replay["slo_lag"]),
        pstr(&replay["capacity_per_replica"]),
        pstr(&t0["simulate"]["pod_start_seconds"]),
    ));
    w(String::new());
    w("| Trace | Autoscaler | SLO-violation s | predicted | replica-s | predicted | max replicas (predicted) | max backlog | max committed lag | mean CPU of request | busiest pod, max | idle CPU a pod | messages per CPU-second |".into());
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |".into());
    for t in replay["traces"].as_array().into_iter().flatten() {
        for (n, label) in PEERS {
            let m = &t["peers"][n];
            let s = &t["simulate"][n];
            w(format!(
                "| `{}` | {label} | {} | {} | {} | {} | {} ({}) | {} | {} | {} % | {} % | {}m | {} |",
                pstr(&t["trace"]),
                fixed_of(&m["slo_violation_seconds"], 0),
                fixed_of(&s["slo_violation_seconds"], 0),
                fixed_of(&m["replica_seconds"], 0),
                fixed_of(&s["replica_seconds"], 0),
                fixed_of(&m["max_replicas"], 0),
                fixed_of(&s["max_replicas"], 0),
                fixed_of(&m["max_backlog"], 0),
                fixed_of(&m["max_lag"], 0),
                fixed(100.0 * num(&m["mean_utilization"]), 0),
                fixed(100.0 * num(&m["max_hottest_pod"]), 0),
                fixed_of(&m["idle_millicores_per_pod"], 1),
                fixed_of(&m["messages_per_cpu_second"], 0),
            ));
        }
    }
    w(String::new());
    rises(replay, w);
    w("What the model leaves out, and the real run has: the consumers' own CPU (librdkafka's threads, fetches, heartbeats and the position commits: the idle column), which the work per message is calibrated against but which varies with the partitions a pod holds and its fetches; the 5 s auto-commit, whose committed lag saws between 0 and 5 s of consumption where the model keeps a steady 2.5 s (the lag-based autoscalers size on its peaks); a rebalance of the whole group at each change of the replica count, during which no member consumes (and re-processes what it had not committed); the pods' real start, and metrics-server's and the HPA's real timings instead of the model's fixed 15 s loops.".into());
    w(String::new());
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::peers::lines;

    fn trace(t: (u64, u64), hpa: (u64, u64), keda: (u64, u64)) -> Value {
        let p = |(v, rs): (u64, u64)| json!({"slo_violation_seconds": v, "replica_seconds": rs});
        json!({"peers": {"tidal": p(t), "hpa": p(hpa), "keda-lag": p(keda)}})
    }

    #[test]
    fn the_best_peer_has_the_fewest_violations_then_the_fewest_replica_seconds() {
        let cases = [
            // (Tidal, HPA, KEDA), the best peer
            (trace((1, 10), (50, 100), (20, 300)), "keda-lag"),
            (trace((1, 10), (20, 100), (20, 300)), "hpa"),
            (trace((1, 10), (20, 400), (20, 300)), "keda-lag"),
            (trace((1, 10), (0, 400), (3, 300)), "hpa"),
        ];
        for (t, best) in cases {
            assert_eq!(best_peer(&t).map(|b| b.0), Some(best), "{t}");
        }
    }

    #[test]
    fn the_target_is_half_the_best_peers_violations_at_no_more_replica_seconds() {
        let cases = [
            // (Tidal, HPA, KEDA), met
            (trace((10, 300), (20, 300), (40, 200)), true),
            (trace((11, 300), (20, 300), (40, 200)), false),
            (trace((10, 301), (20, 300), (40, 200)), false),
            (trace((0, 100), (0, 100), (0, 100)), true),
            (trace((0, 101), (0, 100), (0, 200)), false),
            (trace((1, 100), (0, 100), (0, 200)), false),
        ];
        for (t, ok) in cases {
            assert_eq!(met(&t), Some(ok), "{t}");
        }
        assert_eq!(met(&json!({"peers": {}})), None);
    }

    #[test]
    fn a_row_per_trace_with_the_ratios_to_each_peer() {
        let mut t = trace((10, 300), (20, 600), (40, 200));
        t["trace"] = json!("step");
        t["seconds"] = json!(601);
        t["factor"] = json!(2.995);
        let mut rows = Vec::new();
        comparison(&json!({"traces": [t]}), &mut |l| rows.push(l));
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert!(row.contains("`step` (601 s, compressed 3×)"), "{row}");
        assert!(
            row.contains("| 10 s / 300 replica-s | 20 s / 600 replica-s | 40 s / 200 replica-s |"),
            "{row}"
        );
        assert!(row.contains("| 0.50× / 0.50× | 0.25× / 1.50× |"), "{row}");
        // The best peer is the HPA (20 s): half of it, at fewer replica-seconds.
        assert!(row.ends_with("| met |"), "{row}");
    }
    #[test]
    fn the_detail_states_each_autoscalers_behavior_and_the_prediction_beside_the_figure() {
        use crate::peers::driver::replay::tidal_spec;
        let peer = |v: u64, rs: u64| {
            json!({"slo_violation_seconds": v, "replica_seconds": rs, "max_replicas": 12,
                   "max_backlog": 250.0, "max_lag": 400.0, "mean_utilization": 0.5,
                   "max_hottest_pod": 1.02, "idle_millicores_per_pod": 1.5,
                   "messages_per_cpu_second": 430.0})
        };
        let sim = |v: u64, rs: u64| json!({"slo_violation_seconds": v, "replica_seconds": rs, "max_replicas": 9});
        let replay = json!({
            "replay_seconds": 600, "load_scale": 0.1, "partitions": 60, "cpu_ms_per_message": 2.0,
            "cpu_request": "20m", "capacity_per_replica": 10.0, "min_replicas": 2, "max_replicas": 12,
            "lag_per_replica": 18, "slo_utilization": 0.9, "slo_lag": 100.0,
            "specs": {
                "tidal": tidal_spec("g", "t"),
                "hpa": {"spec": {"minReplicas": 2}},
                "keda-lag": {"spec": {"minReplicaCount": 2}},
            },
            "traces": [{
                "trace": "step", "seconds": 601, "factor": 3.0, "warm_up_seconds": 30,
                "peers": {"tidal": peer(5, 4000), "hpa": peer(40, 3000), "keda-lag": peer(30, 3500)},
                "simulate": {"pod_start_seconds": 5.0, "tidal": sim(7, 3900), "hpa": sim(41, 2900),
                             "keda-lag": sim(20, 3600)},
            }],
        });
        let text = lines(|w| detail(&replay, &mut |l| w(l))).join("\n");
        for want in [
            "compressed to 600 s",
            "the 60 partitions of one topic",
            "- **Tidal**: that policy (CPU at 70 %, `lagPerReplica` 18",
            "scale-up: a 0 s window, 100 % per 15 s or 12 pods per 15 s; scale-down: a 60 s window, 20 % per 30 s",
            "- **the HPA**: CPU at 70 % (it has no lag metric), the HPA's default behavior",
            "| `step` | Tidal | 5 | 7 | 4000 | 3900 | 12 (9) | 250 | 400 | 50 % | 102 % | 1.5m | 430 |",
            "| `step` | KEDA `kafka` trigger | 30 | 20 | 3500 | 3600 | 12 (9) |",
            "What the model leaves out",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(!text.contains("Where the load rose most"), "{text}");
    }

    #[test]
    fn the_rise_shows_each_copys_replicas_reaction_and_violations_there() {
        let peer = |before: u64, within: Value, v: u64, e: u64| {
            json!({"replicas_before": before as f64, "first_more_within_seconds": within,
                   "violation_seconds": v, "violation_seconds_elsewhere": e})
        };
        let replay = json!({"traces": [{
            "trace": "step", "simulate": {"pod_start_seconds": 5.0},
            "rise": {"second": 100, "seconds": 1, "from": 30.0, "to": 80.0, "window_seconds": 60,
                     "peers": {"tidal": peer(6, json!(1), 13, 1),
                               "hpa": peer(4, json!(31), 60, 70),
                               "keda-lag": peer(6, Value::Null, 12, 0)}},
        }]});
        let text = lines(|w| rises(&replay, &mut |l| w(l))).join("\n");
        for want in [
            "(the model allows 5.0 s for both)",
            "(the 60 s from its start, or to the trace's end)",
            "| `step` | second 100 over 1 s, 30 → 80 messages/s | 60 s | Tidal | 6 | 1 s | 13 | 1 |",
            "| `step` | second 100 over 1 s, 30 → 80 messages/s | 60 s | HPA + metrics-server | 4 | 31 s | 60 | 70 |",
            "| KEDA `kafka` trigger | 6 | never | 12 | 0 |",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }
}

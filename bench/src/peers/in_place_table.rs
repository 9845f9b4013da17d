//! The inplace part's row and paragraph in the section "Peers side by side (issue #15)" (the
//! figures of [`super::driver::in_place`]).

use serde_json::Value;

use crate::cells::secs;
use crate::py::{fixed, str as pstr};

const COPIES: [(&str, &str); 2] = [
    ("tidal", "Tidal `InPlace`"),
    ("vpa", "the VPA `InPlaceOrRecreate`"),
];

fn s0(v: &Value) -> String {
    secs(v, 0)
}

/// `120m / 250 MiB`, or `?`.
fn requests(cpu: &Value, memory: &Value) -> String {
    match (cpu.as_f64(), memory.as_f64()) {
        (Some(c), Some(m)) => format!(
            "{}m / {} MiB",
            fixed(1000.0 * c, 0),
            fixed(m / 1_048_576.0, 0)
        ),
        _ => "?".into(),
    }
}

/// The comparison table's row: the time until every pod ran with new requests.
pub fn comparison(v: &Value, w: &mut impl FnMut(String)) {
    let t = &v["copies"]["tidal"];
    let p = &v["copies"]["vpa"];
    let ratio = match (
        t["all_changed_seconds"].as_f64(),
        p["all_changed_seconds"].as_f64(),
    ) {
        (Some(a), Some(b)) if b > 0.0 => format!("{}× the VPA's", fixed(a / b, 2)),
        _ => String::new(),
    };
    let disruption = |c: &Value| {
        format!(
            "{} in place, {} new, {} restarts",
            pstr(&c["resized_in_place"]),
            pstr(&c["new_pods"]),
            pstr(&c["restarts"])
        )
    };
    w(format!(
        "| Vertical in place: every one of {} pods running with new requests | {} | VPA {} | | {} | | (none set) | Tidal {}; VPA {} |",
        pstr(&v["replicas"]),
        s0(&t["all_changed_seconds"]),
        s0(&p["all_changed_seconds"]),
        ratio,
        disruption(t),
        disruption(p)
    ));
}

/// The paragraph and table: each copy's timeline and what it reached.
pub fn detail(v: &Value, w: &mut impl FnMut(String)) {
    w(format!(
        "**Vertical in place.** Two copies of one Deployment, each in its own namespace: {} pods (the VPA updater's `--min-replicas`) of a container in a duty cycle (5k steps of shell arithmetic, then 100 ms asleep; the CPU each recommender's target came to is the table's last column), requesting {} CPU and {} memory, no limits, below both recommenders' floors (25m, 250Mi), so outside any recommendation's range. At the same moment, a ScalingPolicy with `vertical.mode: InPlace` (the in-cluster scaler; it changes requests once a recommendation rests on 60 usage samples, `--vertical-min-samples`, which 2 pods read every second give in 30 s, and at most one round a minute) on one copy, and a VerticalPodAutoscaler with `updateMode: InPlaceOrRecreate` on the other (the recommender's 1 min loop, then the updater's 1 min loop, which resizes through `pods/resize` and would evict if a resize could not be done, one pod of the two per loop by its `--eviction-tolerance` 0.5; the admission controller sets the requests of any pod created afterwards). Pods read every second for at most {} min; a pod counts once its spec has new requests and the kubelet reports them applied.",
        pstr(&v["replicas"]),
        pstr(&v["request"]["cpu"]),
        pstr(&v["request"]["memory"]),
        pstr(&v["minutes"])
    ));
    w(String::new());
    w("| | first pod resized | every pod resized | resized in place | new pods | restarts | requests reached (CPU / memory) | its recommender's target |".into());
    w("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |".into());
    for (key, name) in COPIES {
        let c = &v["copies"][key];
        let reached: Vec<String> = c["pods"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| requests(&r["cpu"], &r["memory"]))
                    .collect()
            })
            .unwrap_or_default();
        w(format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            s0(&c["first_change_seconds"]),
            s0(&c["all_changed_seconds"]),
            pstr(&c["resized_in_place"]),
            pstr(&c["new_pods"]),
            pstr(&c["restarts"]),
            if reached.is_empty() {
                "?".into()
            } else {
                reached.join(", ")
            },
            requests(&c["target"]["cpu"], &c["target"]["memory"])
        ));
    }
    w(String::new());
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::peers::lines;

    #[test]
    fn the_row_and_the_table_give_each_copys_figures() {
        let pod = |cpu: f64, original: bool, restarts: i64| json!({"cpu": cpu, "memory": 262_144_000.0, "original": original, "applied": true, "restarts": restarts});
        let v = json!({
            "kind": "inplace", "minutes": 6, "replicas": 2,
            "request": {"cpu": "10m", "memory": "16Mi"},
            "copies": {
                "tidal": {"first_change_seconds": 61.2, "all_changed_seconds": 61.9,
                          "resized_in_place": 2, "new_pods": 0, "restarts": 0,
                          "pods": [pod(0.126, true, 0), pod(0.126, true, 0)],
                          "target": {"cpu": 0.126, "memory": 262_144_000.0}},
                "vpa": {"first_change_seconds": 118.0, "all_changed_seconds": 178.4,
                        "resized_in_place": 1, "new_pods": 1, "restarts": 0,
                        "pods": [pod(0.109, true, 0), pod(0.109, false, 0)],
                        "target": {"cpu": 0.109, "memory": 262_144_000.0}}
            }
        });
        let row = lines(|w| comparison(&v, &mut |l| w(l)));
        assert_eq!(
            row,
            [
                "| Vertical in place: every one of 2 pods running with new requests | 62 s | VPA 178 s | | 0.35× the VPA's | | (none set) | Tidal 2 in place, 0 new, 0 restarts; VPA 1 in place, 1 new, 0 restarts |"
            ]
        );
        let table = lines(|w| detail(&v, &mut |l| w(l)));
        assert_eq!(
            table[4],
            "| Tidal `InPlace` | 61 s | 62 s | 2 | 0 | 0 | 126m / 250 MiB, 126m / 250 MiB | 126m / 250 MiB |"
        );
        assert_eq!(
            table[5],
            "| the VPA `InPlaceOrRecreate` | 118 s | 178 s | 1 | 1 | 0 | 109m / 250 MiB, 109m / 250 MiB | 109m / 250 MiB |"
        );
    }

    #[test]
    fn a_copy_that_never_finished_shows_a_dash_and_no_ratio() {
        let v = json!({
            "replicas": 2,
            "copies": {"tidal": {"all_changed_seconds": 70.0}, "vpa": {"all_changed_seconds": null}}
        });
        let row = lines(|w| comparison(&v, &mut |l| w(l)));
        assert!(row[0].starts_with("| Vertical in place: every one of 2 pods running with new requests | 70 s | VPA – | |  | |"), "{}", row[0]);
    }
}

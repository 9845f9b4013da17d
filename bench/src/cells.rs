//! The cells the sections share: a figure in seconds or `–`, a summary's spread, and the
//! run's conditions as the node's and the peers' sections read them.

use serde_json::Value;

use crate::py::{self, str as pstr, truthy};

/// A figure as a float, NaN when it is missing or `null`.
pub fn float(v: &Value) -> f64 {
    py::num(v).unwrap_or(f64::NAN)
}

/// A figure formatted by `fmt`, or `–` when it was not measured (`null` or NaN).
pub fn or_dash(v: &Value, fmt: impl Fn(f64) -> String) -> String {
    match py::num(v) {
        Some(x) if !x.is_nan() => fmt(x),
        _ => "–".into(),
    }
}

/// Seconds with `digits` decimals (`1.25 s`), or `–`.
pub fn secs(v: &Value, digits: usize) -> String {
    or_dash(v, |x| format!("{} s", py::fixed(x, digits)))
}

/// A summary's `p50 | p95 | max | min | mean`, in seconds with 2 decimals.
pub fn spread(v: &Value) -> String {
    ["p50", "p95", "max", "min", "mean"]
        .iter()
        .map(|k| secs(&v[k], 2))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The first entry's `conditions` that has any (or `{}`), and its `node_info` (or `{}`).
pub fn conditions<'a>(entries: &'a [Value], empty: &'a Value) -> (&'a Value, &'a Value) {
    let c = entries
        .iter()
        .filter_map(|r| r.get("conditions"))
        .find(|c| truthy(c))
        .unwrap_or(empty);
    let info = c.get("node_info").filter(|i| truthy(i)).unwrap_or(empty);
    (c, info)
}

/// Each distinct `run`, in the order of their first entry.
pub fn runs(entries: &[Value]) -> Vec<&Value> {
    let mut seen: Vec<(String, &Value)> = Vec::new();
    for r in entries {
        let key = py::dumps(&r["run"]);
        if !seen.iter().any(|(k, _)| *k == key) {
            seen.push((key, &r["run"]));
        }
    }
    seen.into_iter().map(|(_, r)| r).collect()
}

/// "`command` on date (N CPUs, kernel K; load average ...; tree `v`)" for each distinct run.
pub fn describe_runs(entries: &[Value]) -> String {
    runs(entries)
        .into_iter()
        .map(|r| {
            format!(
                "`{}` on {} ({} CPUs, kernel {}; load average {} at the start, {} at the end; tree `{}`)",
                pstr(&r["command"]),
                pstr(&r["date"]),
                pstr(&r["cpus"]),
                pstr(&r["kernel"]),
                pstr(&r["load"][0]),
                pstr(&r["load"][1]),
                pstr(&r["version"])
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

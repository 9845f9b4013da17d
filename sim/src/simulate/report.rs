//! What a replay reports: a table (standard output), JSON (`--json`), an SVG chart
//! (`--output-svg`, drawn by [`crate::plot`]) and the per-second series as CSV
//! (`--output-csv`, which `tidal-sim plot` draws).

use std::fmt::Write as _;

use serde::Serialize;

use crate::plot::{Chart, Series};

use super::run::{Algorithm, Run, Setup, Summary};

/// The goal the comparison is held to: at most this fraction of a peer's SLO-violation
/// seconds, at no more replica-seconds.
pub const GOAL_VIOLATION_FRACTION: f64 = 0.5;

/// Tidal against one peer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GoalCheck {
    pub peer: Algorithm,
    /// Tidal's SLO-violation seconds over the peer's (`None` when the peer has none).
    pub slo_violation_ratio: Option<f64>,
    /// Tidal's replica-seconds over the peer's (`None` when the peer has none).
    pub replica_seconds_ratio: Option<f64>,
    /// At most half the SLO-violation seconds and no more replica-seconds.
    pub met: bool,
}

/// Every replay of one trace and policy.
#[derive(Debug, Clone)]
pub struct Report {
    /// Where the trace came from (for the output).
    pub trace: String,
    /// Where the policy came from.
    pub policy: String,
    pub setup: Setup,
    pub seconds: usize,
    pub peak_load: f64,
    pub mean_load: f64,
    /// Tidal first, then the peers in `--compare` order.
    pub runs: Vec<Run>,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl Report {
    /// One summary per run.
    pub fn summaries(&self) -> Vec<Summary> {
        self.runs.iter().map(Run::summary).collect()
    }

    /// Tidal against each peer (empty without `--compare` or without a Tidal run).
    pub fn goal(&self) -> Vec<GoalCheck> {
        let all = self.summaries();
        let Some(tidal) = all.iter().find(|s| s.algorithm == Algorithm::Tidal) else {
            return Vec::new();
        };
        all.iter()
            .filter(|s| s.algorithm != Algorithm::Tidal)
            .map(|peer| GoalCheck {
                peer: peer.algorithm,
                slo_violation_ratio: ratio(tidal.slo_violation_seconds, peer.slo_violation_seconds),
                replica_seconds_ratio: ratio(tidal.replica_seconds, peer.replica_seconds),
                met: tidal.slo_violation_seconds as f64
                    <= GOAL_VIOLATION_FRACTION * peer.slo_violation_seconds as f64
                    && tidal.replica_seconds <= peer.replica_seconds,
            })
            .collect()
    }

    /// The `--json` document.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "trace": self.trace,
            "policy": self.policy,
            "seconds": self.seconds,
            "peak_load": self.peak_load,
            "mean_load": self.mean_load,
            "setup": self.setup,
            "results": self.summaries(),
            "goal": self.goal(),
        })
    }

    /// The table printed without `--json`.
    pub fn table(&self) -> String {
        let m = &self.setup.model;
        let mut out = String::new();
        // `write!` to a String cannot fail.
        let _ = writeln!(
            out,
            "trace {}: {} s, load mean {:.0}/s, peak {:.0}/s; policy {}",
            self.trace, self.seconds, self.mean_load, self.peak_load, self.policy
        );
        let _ = writeln!(
            out,
            "model: {}/s per replica, ready {} s after start, {} initial replicas, {} partitions; \
             SLO: utilization <= {}, backlog <= {}",
            m.capacity_per_replica,
            m.pod_start_seconds,
            self.setup.initial_replicas,
            self.setup.partitions,
            m.slo_utilization,
            m.slo_lag
        );
        let _ = writeln!(
            out,
            "\n{:<9} {:>9} {:>17} {:>16} {:>13} {:>13} {:>12} {:>10}",
            "algorithm",
            "interval",
            "SLO-violation s",
            "replica-seconds",
            "scale events",
            "max replicas",
            "max backlog",
            "mean util"
        );
        for s in self.summaries() {
            let _ = writeln!(
                out,
                "{:<9} {:>8}s {:>17} {:>16} {:>13} {:>13} {:>12.0} {:>10.3}",
                s.algorithm.name(),
                s.interval_seconds,
                s.slo_violation_seconds,
                s.replica_seconds,
                s.scale_events,
                s.max_replicas,
                s.max_lag,
                s.mean_utilization
            );
        }
        let goal = self.goal();
        if !goal.is_empty() {
            let _ = writeln!(
                out,
                "\ngoal: Tidal has at most half the SLO-violation seconds at no more replica-seconds"
            );
            let fmt = |r: Option<f64>| r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}"));
            for g in goal {
                let _ = writeln!(
                    out,
                    "  vs {:<5} {} (SLO-violation seconds x{}, replica-seconds x{})",
                    g.peer.name(),
                    if g.met { "met" } else { "NOT met" },
                    fmt(g.slo_violation_ratio),
                    fmt(g.replica_seconds_ratio)
                );
            }
        }
        out
    }

    /// The chart: load and each run's backlog on the left axis, replicas on the right.
    pub fn chart(&self, title: &str) -> Chart {
        let mut series = Vec::with_capacity(1 + 2 * self.runs.len());
        if let Some(first) = self.runs.first() {
            series.push(Series {
                name: "load".to_owned(),
                points: first.seconds.iter().map(|s| (s.t, s.load)).collect(),
                right_axis: false,
                step: false,
            });
        }
        for run in &self.runs {
            series.push(Series {
                name: format!("{} lag", run.algorithm.name()),
                points: run.seconds.iter().map(|s| (s.t, s.queue)).collect(),
                right_axis: false,
                step: false,
            });
        }
        for run in &self.runs {
            series.push(Series {
                name: format!("{} replicas", run.algorithm.name()),
                points: run
                    .seconds
                    .iter()
                    .map(|s| (s.t, s.replicas as f64))
                    .collect(),
                right_axis: true,
                step: true,
            });
        }
        Chart {
            title: title.to_owned(),
            x_label: "time (s)".to_owned(),
            y_label: "load (per second), lag (messages in backlog)".to_owned(),
            y2_label: Some("replicas".to_owned()),
            series,
        }
    }

    /// The per-second series as CSV for `tidal-sim plot`: `t,load,<alg> lag,...,<alg>
    /// replicas@right,...`.
    pub fn csv(&self) -> String {
        let mut out = String::from("t,load");
        for run in &self.runs {
            let _ = write!(out, ",{} lag", run.algorithm.name());
        }
        for run in &self.runs {
            let _ = write!(out, ",{} replicas@right", run.algorithm.name());
        }
        out.push('\n');
        for i in 0..self.seconds {
            let Some(first) = self.runs.first().and_then(|r| r.seconds.get(i)) else {
                break;
            };
            let _ = write!(out, "{},{}", first.t, first.load);
            for run in &self.runs {
                let q = run.seconds.get(i).map_or(0.0, |s| s.queue);
                let _ = write!(out, ",{q}");
            }
            for run in &self.runs {
                let r = run.seconds.get(i).map_or(0, |s| s.replicas);
                let _ = write!(out, ",{r}");
            }
            out.push('\n');
        }
        out
    }
}

//! `tidal-bench scaler`: the scaler benchmark of issue #6 ([`driver`]) and the section
//! "Scaler (issue #6)" of bench/RESULTS.md.
//!
//! After each part (the reaction, each size of the scale run) its figures are folded into
//! the section at once, so a run stopped later keeps what it measured; a part not run keeps
//! its earlier figures (one JSON per `<!-- scaler:data ... -->` line). A part that stopped
//! early with nothing measured writes nothing (its earlier figures stay; the run says so on
//! stderr and exits non-zero), and a results file that cannot be written ends the run.

pub mod driver;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::cells::{float as f, runs, secs as s, spread};
use crate::drive::{Ended, Interrupted, Sink, json_lines, note, step, work_dir};
use crate::parts::{AgentBin, Io};
use crate::py::{self, fixed_of, str as pstr, thousands, truthy};
use crate::results::{Section, Target};
use crate::run::{Host, Run, Started};

pub const SECTION: Section = Section {
    name: Some("scaler"),
    heading: "## Scaler (issue #6)",
};

const MIB: f64 = 1024.0 * 1024.0;

/// Which measurement a record is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Reaction,
    Scale,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Reaction => "reaction",
            Kind::Scale => "scale",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which parts run, a comma list.
    #[arg(
        long,
        env = "TIDAL_BENCH_SCALER_PARTS",
        value_delimiter = ',',
        default_value = "reaction,scale"
    )]
    parts: Vec<Kind>,
    /// Reaction steps.
    #[arg(long, env = "TIDAL_BENCH_SCALER_STEPS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=200))]
    steps: u64,
    /// The agent's sampling interval in the reaction part, seconds.
    #[arg(long, env = "TIDAL_BENCH_SCALER_AGENT_INTERVAL", default_value_t = 0.5)]
    agent_interval: f64,
    /// The reaction policy's scale-down stabilization window, seconds.
    #[arg(long, env = "TIDAL_BENCH_SCALER_WINDOW", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=300))]
    window: u32,
    /// Policy counts of the scale part, each run in a fresh namespace (the controller-manager
    /// needs ~4 min per 1,000 Deployments at its 20 requests/s).
    #[arg(long, env = "TIDAL_BENCH_SCALER_SIZES", value_delimiter = ',', default_value = "1000",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    sizes: Vec<u64>,
    /// The measured window per size, seconds (extended to hold at least 5 cycles, up to
    /// 600 s).
    #[arg(long, env = "TIDAL_BENCH_SCALER_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(10..=600))]
    seconds: u64,
    /// Where the scale part's pods go.
    #[arg(
        long,
        env = "TIDAL_BENCH_SCALER_PODS",
        value_enum,
        default_value = "pending"
    )]
    pods: driver::Pods,
    /// The release tidal-scaler.
    #[arg(long, env = "TIDAL_BENCH_SCALER_BIN", hide_env_values = true)]
    scaler: Option<PathBuf>,
    /// The release tidal-agent (the reaction part).
    #[command(flatten)]
    agent: AgentBin,
    /// --from-json takes one part's JSON lines: --part, with --size for a scale run.
    #[command(flatten)]
    io: Io,
    /// With --from-json: the part the figures are for.
    #[arg(long, requires = "from_json", default_value = "reaction")]
    part: Kind,
    /// With --from-json: the size of a scale run.
    #[arg(long, requires = "from_json")]
    size: Option<u64>,
    /// With --from-json: why the run stopped early.
    #[arg(long, requires = "from_json")]
    reason: Option<String>,
}

/// The section after one part: its fresh figures (each with `run`) replace the same part's
/// earlier ones (a scale run: the same size's). `Err` when nothing was measured (a part that
/// stopped early, `reason`, before its first figure): the part's earlier figures are kept, and
/// the file is left as it was. `doc` is the whole results file.
pub fn record(
    doc: &str,
    kind: Kind,
    fresh: Vec<Value>,
    reason: Option<&str>,
    size: Option<u64>,
    run: &Run,
) -> anyhow::Result<String> {
    if fresh.is_empty() {
        anyhow::bail!(
            "nothing measured{}",
            reason
                .filter(|r| !r.is_empty())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
    let run_json = run.short_json();
    let fresh: Vec<Value> = fresh
        .into_iter()
        .map(|mut r| {
            r["run"] = run_json.clone();
            r
        })
        .collect();
    let size_json = match kind {
        Kind::Scale => json!(size),
        Kind::Reaction => Value::Null,
    };
    let same = |r: &Value| {
        r["kind"] == kind.name()
            && (kind == Kind::Reaction || r.get("policies") == Some(&size_json))
    };
    let mut entries: Vec<Value> = SECTION.entries(doc)?;
    entries.retain(|r| !same(r));
    entries.extend(fresh);
    entries.sort_by(|a, b| {
        sort_key(a)
            .partial_cmp(&sort_key(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(SECTION.replace(doc, &render(&entries, &run.host)))
}

/// `(kind != "reaction", policies or 0)`.
fn sort_key(r: &Value) -> (bool, f64) {
    (
        r["kind"] != "reaction",
        py::num(&r["policies"]).unwrap_or(0.0),
    )
}

fn ok(value: Option<f64>, limit: f64) -> &'static str {
    match value {
        Some(v) if !v.is_nan() => {
            if v < limit {
                "met"
            } else {
                "**missed**"
            }
        }
        _ => "not measured",
    }
}

/// The section, from every entry (reaction first, then the scale runs by size).
pub fn render(entries: &[Value], host: &Host) -> String {
    let failed = |r: &&Value| truthy(&r["failed"]);
    let reaction = entries
        .iter()
        .find(|r| r["kind"] == "reaction" && !failed(r));
    let reaction_failed = entries
        .iter()
        .any(|r| r["kind"] == "reaction" && failed(&r));
    let scales: Vec<&Value> = entries
        .iter()
        .filter(|r| r["kind"] == "scale" && !failed(r))
        .collect();
    let failed_sizes: Vec<&Value> = entries
        .iter()
        .filter(|r| r["kind"] == "scale" && failed(r))
        .map(|r| &r["policies"])
        .collect();

    let mut out: Vec<String> = Vec::new();
    let mut w = |line: String| out.push(line);
    w("<!-- scaler:begin (written by scripts/bench-scaler.sh) -->".into());
    w("## Scaler (issue #6)".into());
    w(String::new());
    let runs = runs(entries);
    let describe = |r: &Value| {
        format!(
            "{} (load average {} at the start, {} at the end; tree `{}`)",
            pstr(&r["date"]),
            pstr(&r["load"][0]),
            pstr(&r["load"][1]),
            pstr(&r["version"])
        )
    };
    w(format!(
        "Generated by `scripts/bench-scaler.sh`: {} CPUs, kernel {}; {}{}. The machine is shared with other builds. The stack's real kube-apiserver, controller-manager, KWOK nodes and Kafka broker; release `tidal-scaler` and `tidal-agent` built from this tree, the scaler run with exactly the manifests' RBAC (a ServiceAccount token) and leader election on.",
        host.cpus,
        host.kernel,
        if runs.len() == 1 { "run " } else { "runs " },
        runs.iter()
            .map(|r| describe(r))
            .collect::<Vec<_>>()
            .join("; "),
    ));
    for r in entries.iter().filter(|r| failed(r)) {
        let what = if r["kind"] == "reaction" {
            "reaction".to_string()
        } else {
            format!("{}-policy", thousands(&r["policies"]))
        };
        w(String::new());
        w(format!(
            "**Incomplete:** the {what} run of {} stopped early ({}); see the script's output.",
            pstr(&r["run"]["date"]),
            pstr(&r["reason"])
        ));
    }
    w(String::new());
    w("| Measure | Target | Measured | |".into());
    w("| --- | --- | --- | --- |".into());
    if let Some(reaction) = reaction {
        let u = &reaction["up_seconds"];
        w(format!(
            "| Reaction time, load step in a pod's cgroup → scale write on the API server, fast path, p95 over {} steps | < 3 s | **{}** (p50 {}, min {}, max {}) | {} |",
            pstr(&u["n"]),
            s(&u["p95"], 2),
            s(&u["p50"], 2),
            s(&u["min"], 2),
            s(&u["max"], 2),
            ok(py::num(&u["p95"]), 3.0)
        ));
    }
    for r in &scales {
        let n = thousands(&r["policies"]);
        let c = &r["cycle_seconds"];
        w(format!(
            "| {n} ScalingPolicies: cycle time, p95 of the measured cycles | < 1 s | **{}** (mean {}, p50 {}, max {}) | {} |",
            s(&c["p95"], 3),
            s(&r["cycle_mean_seconds"], 3),
            s(&c["p50"], 3),
            s(&c["max"], 3),
            ok(py::num(&c["p95"]), 1.0)
        ));
        let rss = f(&r["peak_rss_bytes"]) / MIB;
        w(format!(
            "| {n} ScalingPolicies: scaler RSS, peak (`VmHWM`) | < 150 MiB | **{} MiB** | {} |",
            py::fixed(rss, 1),
            ok(Some(rss), 150.0)
        ));
        let reqs = requests(r);
        let total: f64 = reqs.iter().map(|(_, v)| v).sum();
        let mut sorted = reqs.clone();
        sorted.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        let by: Vec<String> = sorted
            .iter()
            .filter(|(_, v)| *v > 0.0)
            .map(|(k, v)| format!("`{k}` {}", py::fixed(*v, 1)))
            .collect();
        w(format!(
            "| {n} ScalingPolicies: API requests per cycle | report | **{}** ({}; {}/s) | reported |",
            py::fixed(total, 1),
            if by.is_empty() {
                "none".to_string()
            } else {
                by.join(", ")
            },
            fixed_of(&r["requests_per_second"], 1)
        ));
    }
    if reaction_failed {
        w("| Reaction time, fast path, p95 over 20 steps | < 3 s | not measured (the run stopped early) | not measured |".into());
    }
    for n in &failed_sizes {
        w(format!(
            "| {} ScalingPolicies: cycle time, RSS, requests per cycle | < 1 s, < 150 MiB | not measured (the run stopped early) | not measured |",
            thousands(n)
        ));
    }
    w(String::new());
    if let Some(reaction) = reaction {
        render_reaction(reaction, &mut w);
    }
    if !scales.is_empty() {
        render_scale(&scales, &mut w);
    }
    for r in entries {
        w(SECTION.data_line(r));
    }
    w("<!-- scaler:end -->".into());
    out.join("\n")
}

/// `requests_per_cycle` by verb, in the entry's order.
fn requests(r: &Value) -> Vec<(String, f64)> {
    r["requests_per_cycle"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), f(v))).collect())
        .unwrap_or_default()
}

fn render_reaction(reaction: &Value, w: &mut impl FnMut(String)) {
    let (u, d) = (&reaction["up_seconds"], &reaction["down_seconds"]);
    let window = pstr(&reaction["scale_down_window_seconds"]);
    w(format!(
        "**Reaction.** One KWOK Deployment (1 pod, 100m CPU request) under a ScalingPolicy on CPU (target 50%, min 1, max 2, scale-down stabilization {window} s). The release agent samples this host's real cgroups every {} s; the scaler scrapes it directly (`--agent-url`) and evaluates every {} s. Each step waits 0.2–1.2 s (a random phase against both intervals), starts a real busy loop (`spawn_burner`) in the pod's cgroup and takes the time until a watch on the Deployment sees `spec.replicas` become 2 (the scale write, as the API server serves it); then it gives the new pod its cgroup, stops the loop and takes the time until the replicas are back to 1 (the window runs from the last evaluation that saw the load, which can precede the load's end by up to an evaluation interval, so this can be a little under the window). Percentiles are nearest-rank over the {} steps ({} s in all).",
        pstr(&reaction["agent_interval_seconds"]),
        py::g(f(&reaction["fast_interval_seconds"])),
        pstr(&u["n"]),
        fixed_of(&reaction["run_seconds"], 0)
    ));
    w(String::new());
    w("| | p50 | p95 | max | min | mean |".into());
    w("| --- | ---: | ---: | ---: | ---: | ---: |".into());
    w(format!("| load on → 2 replicas | {} |", spread(u)));
    w(format!(
        "| load off → back to 1 (includes the {window} s window) | {} |",
        spread(d)
    ));
    w(String::new());
    let order = reaction.get("up_order").unwrap_or(&u["values"]);
    let steps: Vec<String> = order
        .as_array()
        .map(|a| a.iter().map(|v| fixed_of(v, 2)).collect())
        .unwrap_or_default();
    w(format!(
        "Every step in order (load on → 2 replicas): {} s.",
        steps.join(", ")
    ));
    w(String::new());
    w("Anchors, documented and not measured here: the HPA reacts in about 15–55 s (its 15 s sync period on top of metrics-server's 15 s scrape and the kubelet's 10–15 s cAdvisor housekeeping); KEDA polls its scalers every 30 s by default (`pollingInterval`).".into());
    w(String::new());
}

fn render_scale(scales: &[&Value], w: &mut impl FnMut(String)) {
    let placement = if scales[0].get("pods") == Some(&json!("kwok")) {
        "bound with `nodeName` to the 2 KWOK nodes in turn, past their 110-pod capacity, which KWOK does not enforce"
    } else {
        "left Pending on no node, their `schedulerName` names no scheduler. Bound to the stack's 2 KWOK nodes (110 pods each), 1,000 pods overfill them: the scheduler then preempted them for a concurrent test's system-node-critical DaemonSet, and would leave any ordinary pod Pending. The scaler's caches still hold every pod and its selectors still run over them; a Pending pod's status is smaller than a running one's (`TIDAL_BENCH_SCALER_PODS=kwok` binds them anyway)"
    };
    w(format!(
        "**Scale.** N ScalingPolicies, each targeting its own Deployment (1 replica, 10m CPU), all on the lag of one Kafka consumer group (one 3-partition topic, lag 5, 10 per replica: every policy wants the 1 replica it has, so the steady state writes no scale). One Kafka round per cycle serves every policy. Pods: {placement}. Each size runs in a fresh namespace; before the scaler starts, the controller-manager makes every ReplicaSet and pod (its client is limited to 20 requests/s, events included) and, up to 1,000 policies, writes every Deployment's status, so it does not compete with the run; above 1,000 the run starts once every pod exists, while it may still write statuses (waiting would double the setup). A fresh scaler per size (`--namespace`, so its watch caches hold exactly these policies, Deployments and pods); its first statuses (one per policy, written off the cycle by the status queue) are reported apart, and the window starts once every one is written; then {} s measured (longer for a size whose cycles are long: at least 5 cycles, up to 600 s). Each cycle's duration is the delta of `tidal_scaler_cycle_duration_seconds_sum` between two scrapes 200 ms apart that saw one new cycle (when a cycle overruns the 1 s tick the next starts at once, and a pair of scrapes can see two: those are split with the histogram's buckets and counted as *estimated*); requests per cycle are deltas of `tidal_scaler_api_requests_total` (watches and the Lease are not counted) over deltas of the cycle count. After the window, with the scaler stopped, 50 status applies like the scaler's (its field manager, forced, each with a new decision time) are timed.",
        fixed_of(&scales[0]["window_seconds"], 0)
    ));
    w(String::new());
    w(format!(
        "| | {} |",
        scales
            .iter()
            .map(|r| format!("{} policies", thousands(&r["policies"])))
            .collect::<Vec<_>>()
            .join(" | ")
    ));
    w(format!("| --- |{}", " ---: |".repeat(scales.len())));
    let mut row = |label: &str, cell: &dyn Fn(&Value) -> String| {
        let cells: Vec<String> = scales.iter().map(|r| cell(r)).collect();
        w(format!("| {label} | {} |", cells.join(" | ")));
    };
    let settled = json!("settled");
    row("the run started once", &|r| {
        if py::get_or(r, "waited_for", &settled) == "settled" {
            "every Deployment was done".into()
        } else {
            "every pod was made".into()
        }
    });
    row(
        "Deployments the controller-manager was done with, at the start / end",
        &|r| {
            format!(
                "{} / {}",
                thousands(&r["deployments_settled"]),
                thousands(py::get_or(
                    r,
                    "deployments_settled_after",
                    &r["deployments_settled"]
                ))
            )
        },
    );
    row("setup (create + controller-manager)", &|r| {
        format!("{} s", fixed_of(&r["setup_seconds"], 0))
    });
    row("scaler start → caches synced", &|r| {
        s(&r["scaler_ready_seconds"], 1)
    });
    row("first two cycles (time in the cycles)", &|r| {
        s(&r["first_cycles_seconds"], 2)
    });
    row(
        "every policy's first status written, after the caches synced",
        &|r| match r.get("first_statuses_seconds") {
            Some(v) => s(v, 1),
            None => "in the first cycles".into(),
        },
    );
    row(
        "statuses queued at the end of the window",
        &|r| match r.get("status_queue_end") {
            Some(v) => fixed_of(v, 0),
            None => "—".into(),
        },
    );
    row("cycles measured", &|r| {
        format!(
            "{} in {} s",
            fixed_of(&r["cycles"], 0),
            fixed_of(&r["window_seconds"], 0)
        )
    });
    row("cycle mean (sum / count)", &|r| {
        s(&r["cycle_mean_seconds"], 3)
    });
    row("cycle p50 / p95 / max", &|r| {
        let c = &r["cycle_seconds"];
        format!(
            "{} / {} / {}",
            s(&c["p50"], 3),
            s(&c["p95"], 3),
            s(&c["max"], 3)
        )
    });
    row("cycles over 1 s", &|r| pstr(&r["cycles_over_1s"]));
    row("cycles split with the buckets (*estimated*)", &|r| {
        pstr(&r["cycles_estimated"])
    });
    row("p95 from the histogram alone (histogram_quantile)", &|r| {
        s(&r["histogram_p95_seconds"], 3)
    });
    row("decisions per cycle", &|r| {
        fixed_of(&r["decisions_per_cycle"], 0)
    });
    let mut verbs: Vec<String> = scales
        .iter()
        .flat_map(|r| requests(r).into_iter().map(|(k, _)| k))
        .collect();
    verbs.sort();
    verbs.dedup();
    for v in &verbs {
        row(&format!("requests per cycle: `{v}`"), &|r| {
            py::fixed(py::num(&r["requests_per_cycle"][v]).unwrap_or(0.0), 2)
        });
    }
    row("API requests per second", &|r| {
        fixed_of(&r["requests_per_second"], 1)
    });
    row("scale writes in the window", &|r| {
        fixed_of(&r["scale_events"], 0)
    });
    row("errors in the window", &|r| {
        let errors: Vec<String> = r["errors"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {}", fixed_of(v, 0)))
                    .collect()
            })
            .unwrap_or_default();
        if errors.is_empty() {
            "0".into()
        } else {
            errors.join(", ")
        }
    });
    row("scaler CPU (cores, average)", &|r| {
        fixed_of(&r["cpu_cores"], 3)
    });
    row(
        "one status apply on this API server, p50 / p95 (50 in a row, scaler stopped)",
        &|r| {
            let a = &r["status_apply_seconds"];
            format!(
                "{} / {} ms",
                py::fixed(f(&a["p50"]) * 1e3, 1),
                py::fixed(f(&a["p95"]) * 1e3, 1)
            )
        },
    );
    row(
        "status writes per cycle × that p50 (their cost one after another)",
        &|r| {
            let st = py::num(&r["requests_per_cycle"]["patch_status"]).unwrap_or(0.0);
            s(&json!(st * f(&r["status_apply_seconds"]["p50"])), 3)
        },
    );
    row("scaler RSS peak (`VmHWM`) / at the end", &|r| {
        format!(
            "{} / {} MiB",
            py::fixed(f(&r["peak_rss_bytes"]) / MIB, 1),
            py::fixed(f(&r["rss_bytes"]) / MIB, 1)
        )
    });
    w(String::new());
    let mut notes = Vec::new();
    for r in scales {
        let st = py::num(&r["requests_per_cycle"]["patch_status"]).unwrap_or(0.0);
        let per_s = st * f(&r["cycles"]) / f(&r["window_seconds"]);
        if per_s > 0.0 {
            notes.push(format!(
                "{} policies: {} status writes per cycle, {}/s, one per policy every {} s",
                thousands(&r["policies"]),
                py::fixed(st, 1),
                py::fixed(per_s, 1),
                py::fixed(f(&r["policies"]) / per_s, 0)
            ));
        }
    }
    let slow: Vec<&&Value> = scales
        .iter()
        .filter(|r| f(&r["decisions_per_cycle"]) < 0.95 * f(&r["policies"]))
        .collect();
    if !slow.is_empty() {
        let each: Vec<String> = slow
            .iter()
            .map(|r| {
                format!(
                    "{} of {}",
                    fixed_of(&r["decisions_per_cycle"], 0),
                    thousands(&r["policies"])
                )
            })
            .collect();
        w(format!(
            "Each policy is due every 1 s, yet a cycle evaluated only {} policies on average: a policy's next due time is the start of the cycle that evaluated it plus 1 s, and the next tick can fire a little before that, so when cycles are short a policy is often skipped for one tick (evaluated every 2 s).",
            each.join(", ")
        ));
        w(String::new());
    }
    if !notes.is_empty() {
        w(format!(
            "Where the requests come from: the controller rewrites a policy's status when it changes, and otherwise at most every 15 s (`Settings::status_refresh`, carrying the checkpoint and metric values) within a budget of `--status-refresh-per-second` (50), one server-side apply each, written off the cycle by the status queue, `STATUS_WRITES_IN_FLIGHT` at a time ({}). Reads come from the watch caches.",
            notes.join("; ")
        ));
        w(String::new());
    }
}

/// Folds one part's figures into the section and writes the file. A part that measured
/// nothing leaves the section as it was (the part's earlier figures stay) and is counted in
/// `failed` (the run fails); a write that fails ends the run (`Err`).
#[allow(clippy::too_many_arguments)]
fn record_into(
    target: &mut Target,
    kind: Kind,
    fresh: Vec<Value>,
    reason: Option<&str>,
    size: Option<u64>,
    run: &Run,
    failed: &mut Vec<String>,
    label: &str,
) -> anyhow::Result<()> {
    let what = match size {
        Some(n) => format!("the {} part ({n} policies)", kind.name()),
        None => format!("the {} part", kind.name()),
    };
    if fresh.is_empty() {
        eprintln!(
            "ERROR: nothing measured in {what}{}: nothing written for it ({} keeps its earlier figures)",
            reason.map(|r| format!(" ({r})")).unwrap_or_default(),
            target.path().display()
        );
        if !failed.iter().any(|f| f == label) {
            failed.push(label.to_string());
        }
        return Ok(());
    }
    let doc = record(target.doc(), kind, fresh, reason, size, run)
        .with_context(|| format!("recording the results of {what}"))?;
    target.update(doc).with_context(|| {
        format!(
            "writing the results of {what} to {}",
            target.path().display()
        )
    })?;
    if target.writes() {
        note(format!(
            "results of {what} written to {}",
            target.path().display()
        ));
    } else {
        note(format!(
            "results of {what} recorded (TIDAL_BENCH_WRITE=0: printed only)"
        ));
    }
    Ok(())
}

/// The reaction part's time limit, seconds.
fn reaction_limit(args: &Args) -> u64 {
    300 + args.steps * (u64::from(args.window) + 90)
}

/// A scale size's time limit, seconds: the controller-manager's setup, the scaler's first
/// cycles and the measured window.
fn scale_limit(n: u64) -> u64 {
    (n / 2).max(600) + 900 + 600
}

/// What a part's cleanup may take, seconds (cluster RBAC, namespaces, the Kafka topic).
const CLEANUP: u64 = 60;

/// The whole run's time limit, seconds: each part's limit and cleanup, and the waits for the
/// benchmark namespaces to go (before each size and at the end).
pub fn limit(args: &Args) -> u64 {
    let wait = driver::NAMESPACES_WAIT.as_secs();
    let mut total = wait;
    if args.parts.contains(&Kind::Reaction) {
        total += reaction_limit(args) + CLEANUP;
    }
    if args.parts.contains(&Kind::Scale) {
        total += args
            .sizes
            .iter()
            .map(|&n| scale_limit(n) + CLEANUP + wait)
            .sum::<u64>();
    }
    total
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    let mut target = args.io.results.open()?;
    if let Some(file) = &args.io.from_json {
        let fresh = json_lines(file)?;
        let run = Started::now().finish(None);
        let doc = record(
            target.doc(),
            args.part,
            fresh,
            args.reason.as_deref(),
            args.size,
            &run,
        )?;
        target.update(doc)?;
        target.print(&SECTION);
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(
        args.agent_interval.is_finite() && args.agent_interval > 0.0,
        "TIDAL_BENCH_SCALER_AGENT_INTERVAL (--agent-interval) must be a number of seconds, got {}",
        args.agent_interval
    );
    let scaler = args.scaler.clone().ok_or_else(|| {
        anyhow::anyhow!("TIDAL_BENCH_SCALER_BIN (or --scaler) must name the release tidal-scaler")
    })?;
    let (work, temporary) = work_dir(args.io.work.clone(), "scaler")?;
    let started = Started::now();
    let mut failed: Vec<String> = Vec::new();
    let sink = Sink::default();
    let result = async {
        if args.parts.contains(&Kind::Reaction) {
            let agent = args.agent.get()?.to_path_buf();
            step(format!(
                "reaction time: {} load steps (agent every {}s, scaler every 1s, window {}s)",
                args.steps, args.agent_interval, args.window
            ));
            let limit = reaction_limit(&args);
            let part = driver::Part::Reaction {
                steps: args.steps as usize,
                agent_interval: args.agent_interval,
                window: args.window,
                scaler: scaler.clone(),
                agent,
            };
            let reason = run_part(&work, &sink, &part, limit, &mut failed, "reaction").await?;
            record_into(
                &mut target,
                Kind::Reaction,
                sink.take(),
                reason.as_deref(),
                None,
                &started.finish(None),
                &mut failed,
                "reaction",
            )?;
        }
        if args.parts.contains(&Kind::Scale) {
            for &n in &args.sizes {
                let limit = scale_limit(n);
                step(format!(
                    "scale: {n} ScalingPolicies on Deployments ({} pods), {}s measured (at most {limit}s)",
                    args.pods.name(),
                    args.seconds
                ));
                driver::wait_namespaces().await?;
                // Above 1,000 the run starts once every Deployment has its pod, while the
                // controller-manager may still be writing Deployment statuses (at most 20/s):
                // waiting for it would double a 5,000 setup (~20 minutes).
                let part = driver::Part::Scale {
                    sizes: vec![n as usize],
                    seconds: args.seconds,
                    pods: args.pods,
                    wait_settled: n <= 1000,
                    scaler: scaler.clone(),
                };
                let what = format!("scale {n}");
                let reason = run_part(&work, &sink, &part, limit, &mut failed, &what).await?;
                record_into(
                    &mut target,
                    Kind::Scale,
                    sink.take(),
                    reason.as_deref(),
                    Some(n),
                    &started.finish(None),
                    &mut failed,
                    &what,
                )?;
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if temporary {
        let _ = std::fs::remove_dir_all(&work);
    }
    match result {
        Ok(()) => {}
        // Interrupted: what was measured is written; the script exits with 130.
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            eprintln!("tidal-bench scaler: {e:#}");
            return Ok(ExitCode::from(130));
        }
        Err(e) => return Err(e),
    }
    step("results");
    target.print(&SECTION);
    step("waiting for the benchmark namespaces to be deleted");
    if let Err(e) = driver::wait_namespaces().await {
        eprintln!("tidal-bench scaler: {e}");
        return Ok(ExitCode::from(130));
    }
    if !failed.is_empty() {
        let parts: Vec<String> = failed.iter().map(|p| format!("[{p}] ")).collect();
        eprintln!(
            "ERROR: incomplete: {}failed (the other parts' figures were written)",
            parts.concat()
        );
        return Ok(ExitCode::FAILURE);
    }
    step("done");
    Ok(ExitCode::SUCCESS)
}

/// Runs one part; `Ok(Some(reason))` when it stopped early, `Err` when interrupted.
async fn run_part(
    work: &std::path::Path,
    sink: &Sink,
    part: &driver::Part,
    limit: u64,
    failed: &mut Vec<String>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    match driver::drive(work, part, sink, Duration::from_secs(limit)).await {
        Ended::Done => Ok(None),
        Ended::Failed(reason) => {
            note(format!("the driver failed ({reason}): {what}"));
            failed.push(what.to_string());
            Ok(Some(reason))
        }
        Ended::Interrupted(s) => Err(Interrupted(s).into()),
    }
}

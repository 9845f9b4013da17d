//! `tidal-bench node`: the real-node benchmark of issue #17 ([`driver`]) and the section "The
//! real node (issue #17)" of bench/RESULTS.md. A part not run this time keeps its earlier
//! figures (one JSON per `<!-- node:data ... -->` line).

pub mod driver;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use crate::drive::{Ended, Sink, note, step};
use crate::py::{self, fixed, fixed_of, get_or, str as pstr, truthy};
use crate::results::{Section, Target, fold_parts};
use crate::run::{Run, Started};

pub const SECTION: Section = Section {
    name: Some("node"),
    heading: "## The real node (issue #17)",
};

const MIB: f64 = 1024.0 * 1024.0;

/// The knobs the command line of a run states, when set.
const VARS: [&str; 5] = [
    "TIDAL_BENCH_NODE_STEPS",
    "TIDAL_BENCH_NODE_WINDOW",
    "TIDAL_BENCH_NODE_COST_SECONDS",
    "TIDAL_BENCH_NODE_LOCK_SECONDS",
    "TIDAL_BENCH_NODE_PARTS",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Cost,
    Reaction,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Cost => "cost",
            Part::Reaction => "reaction",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which parts run, a comma list.
    #[arg(
        long,
        env = "TIDAL_BENCH_NODE_PARTS",
        value_delimiter = ',',
        default_value = "cost,reaction"
    )]
    parts: Vec<Part>,
    /// Reaction steps.
    #[arg(long, env = "TIDAL_BENCH_NODE_STEPS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=200))]
    steps: u64,
    /// The policy's scale-down stabilization window, seconds.
    #[arg(long, env = "TIDAL_BENCH_NODE_WINDOW", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=60))]
    window: u32,
    /// The agent's measured window, seconds.
    #[arg(long, env = "TIDAL_BENCH_NODE_COST_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(60..=600))]
    cost_seconds: u64,
    /// The longest wait for the node tests to release the real node, seconds.
    #[arg(long, env = "TIDAL_BENCH_NODE_LOCK_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    lock_seconds: u64,
    /// A directory for the list of what was created (default: a new temporary directory).
    #[arg(long)]
    work: Option<PathBuf>,
    /// The results file.
    #[arg(long, default_value_os_t = crate::results::default_path())]
    results: PathBuf,
    /// How the section names the command (after the knobs that were set).
    #[arg(
        long,
        env = "TIDAL_BENCH_INVOKED_AS",
        default_value = "tidal-bench node"
    )]
    invoked_as: String,
    /// Record the driver's JSON lines in FILE (for the parts of --parts) instead of measuring.
    #[arg(long, value_name = "FILE", conflicts_with = "render")]
    from_json: Option<PathBuf>,
    /// With --from-json: why the run stopped early.
    #[arg(long, requires = "from_json")]
    reason: Option<String>,
    /// Write the section again from its own figures, measuring nothing.
    #[arg(long)]
    render: bool,
}

/// The results file after a run of `parts` (`fresh`: the driver's figures; `reason`: why it
/// stopped early). `Err` when nothing was measured (the file is then left as it was).
pub fn record(
    doc: &str,
    fresh: Vec<Value>,
    reason: Option<&str>,
    parts: &[&str],
    run: &Run,
) -> anyhow::Result<String> {
    let entries = fold_parts(
        SECTION.entries(doc)?,
        fresh,
        &run.full_json(),
        reason,
        parts,
    )
    .map_err(anyhow::Error::msg)?;
    rewrite(doc, entries)
}

/// The results file with the section written again from its own figures.
pub fn render_again(doc: &str) -> anyhow::Result<String> {
    rewrite(doc, SECTION.entries(doc)?)
}

fn rewrite(doc: &str, mut entries: Vec<Value>) -> anyhow::Result<String> {
    anyhow::ensure!(!entries.is_empty(), "no figures to write");
    entries.sort_by_key(|r| r["kind"] != "reaction");
    Ok(SECTION.replace(doc, &render(&entries)))
}

fn ok(value: f64, limit: f64) -> &'static str {
    if value.is_nan() {
        "not measured"
    } else if value < limit {
        "met"
    } else {
        "**missed**"
    }
}

fn s(v: &Value) -> String {
    match py::num(v) {
        Some(f) if !f.is_nan() => format!("{} s", fixed(f, 2)),
        _ => "–".into(),
    }
}

fn mib(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        v => format!("{} MiB", fixed(f(v) / MIB, 1)),
    }
}

fn f(v: &Value) -> f64 {
    py::num(v).unwrap_or(f64::NAN)
}

/// The section, from every entry (the reaction first).
pub fn render(entries: &[Value]) -> String {
    let failed = |r: &&Value| truthy(&r["failed"]);
    let reaction = entries
        .iter()
        .find(|r| r["kind"] == "reaction" && !failed(r));
    let cost = entries.iter().find(|r| r["kind"] == "cost" && !failed(r));
    let empty = json!({});
    let unknown = json!("?");

    let mut out: Vec<String> = Vec::new();
    let mut w = |line: String| out.push(line);
    w("<!-- node:begin (written by scripts/bench-node.sh) -->".into());
    w("## The real node (issue #17)".into());
    w(String::new());
    let c = entries
        .iter()
        .map(|r| r.get("conditions").unwrap_or(&Value::Null))
        .find(|c| truthy(c))
        .unwrap_or(&empty);
    let info = match c.get("node_info") {
        Some(i) if truthy(i) => i,
        _ => &empty,
    };
    let q = |d: &Value, k: &str| pstr(get_or(d, k, &unknown));
    w(format!(
        "Generated by {}. The machine is shared with other builds and sessions, so absolute times are noisy. Tidal installed in-cluster as a user installs it (`kubectl apply -k manifests/overlays/local`) on the stack's real node `{}` (kubelet {}, {}, runc, cgroup v1 with the cgroupfs driver, kernel {}): the agent DaemonSet sampling every {} s, and the scaler Deployment ({} replicas, leader election; `{}` led) evaluating fast-path policies every {} s from the agents' usage documents (`/v1/usage`, the same snapshot as their `/metrics`). The benchmark held the real node exclusively (`NodeLock`), so no node test ran pods on it meanwhile (the cgroups KWOK tests make under this host's `/kubepods`, if any, were sampled too: counted below).",
        describe_runs(entries),
        q(c, "node"),
        q(info, "kubelet"),
        q(info, "runtime"),
        q(info, "kernel"),
        q(c, "agent_interval_seconds"),
        q(c, "scaler_replicas"),
        q(c, "scaler_leader"),
        q(c, "scaler_fast_interval_seconds"),
    ));
    for r in entries.iter().filter(|r| failed(r)) {
        w(String::new());
        w(format!(
            "**Incomplete:** the {} part of {} failed ({}); see the script's output.",
            pstr(&r["kind"]),
            pstr(&r["run"]["date"]),
            pstr(&r["reason"])
        ));
    }
    w(String::new());
    w("| Measure | Target | Measured | |".into());
    w("| --- | --- | --- | --- |".into());
    if let Some(reaction) = reaction {
        let (u, x) = (&reaction["up_seconds"], &reaction["exec_on_seconds"]);
        w(format!(
            "| Reaction time, load on in a real container (`kubectl exec`) → scale write seen by a watch on the API server, in-cluster agent and scaler, p95 over {} steps | < 3 s | **{}** (p50 {}, max {}) | {} |",
            pstr(&u["n"]),
            s(&u["p95"]),
            s(&u["p50"]),
            s(&u["max"]),
            ok(f(&u["p95"]), 3.0)
        ));
        w(format!(
            "| of which the `kubectl exec` that turns the load on | report | p50 {}, p95 {}, max {} | reported |",
            s(&x["p50"]),
            s(&x["p95"]),
            s(&x["max"])
        ));
    }
    if let Some(cost) = cost {
        let b = &cost["sampled_before"];
        w(format!(
            "| Agent pod CPU per sampling round (its pod cgroup's `cpuacct.usage` over {} s / {} rounds), {} containers sampled | < 20 ms (issue #3) | **{} ms** | {} |",
            fixed_of(&cost["window_seconds"], 0),
            fixed_of(&cost["rounds"], 0),
            pstr(&b["containers"]),
            fixed_of(&cost["pod_cpu_ms_per_round"], 2),
            ok(f(&cost["pod_cpu_ms_per_round"]), 20.0)
        ));
        let m = &cost["memory_end"];
        w(format!(
            "| Agent RSS: process `VmHWM` (peak) / `VmRSS`; container cgroup `total_rss` | < 30 MiB (issue #3) | **{}** / {}; cgroup {} | {} |",
            mib(&m["vm_hwm_bytes"]),
            mib(&m["vm_rss_bytes"]),
            mib(&m["container_total_rss_bytes"]),
            ok(f(&m["vm_hwm_bytes"]) / MIB, 30.0)
        ));
    }
    w(String::new());
    if let Some(reaction) = reaction {
        render_reaction(reaction, c, &mut w);
    }
    if let Some(cost) = cost {
        render_cost(cost, &mut w);
    }
    for r in entries {
        w(SECTION.data_line(r));
    }
    w("<!-- node:end -->".into());
    out.join("\n")
}

/// "`command` on date (N CPUs, kernel K; load average ...; tree `v`)" for each distinct run.
pub(crate) fn describe_runs(entries: &[Value]) -> String {
    crate::scaler::runs(entries)
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

fn render_reaction(reaction: &Value, c: &Value, w: &mut impl FnMut(String)) {
    let (u, x, d, g) = (
        &reaction["up_seconds"],
        &reaction["exec_on_seconds"],
        &reaction["down_seconds"],
        &reaction["up_minus_exec_seconds"],
    );
    let empty = json!({});
    let (req, lim) = (get_or(c, "request", &empty), get_or(c, "limit", &empty));
    let win = pstr(&reaction["scale_down_window_seconds"]);
    let fifty = json!(50);
    w(format!(
        "**Reaction.** A Deployment of real busybox pods on the node ({} CPU requested, {} limit), each a shell loop that burns CPU up to the limit while `/tmp/load` exists, under a ScalingPolicy labelled for the in-cluster scaler: CPU at {} % of the request, 1..2 replicas, scale-up stabilization 0 s (and the default rate limits), scale-down stabilization {win} s (100 % per 5 s). Each step starts at 1 replica with the load off and the pod exported by the agent, waits 1–2 s (a random phase against the agent's and the scaler's cycles), takes t0 and runs `kubectl exec <pod> -c burn -- /bin/sh -c 'touch /tmp/load'` (API server → kubelet → containerd → runc; t0 is taken before the exec is sent, so the figure includes its latency and is conservative), and takes t1 when a watch on the Deployment sees `spec.replicas` become 2: the in-cluster agent must sample the busy cgroup twice (a rate), the leader scrape it, evaluate and write the scale. Then `rm -f /tmp/load` and the time until the watch sees 1 again: the new pod must start and be exported by the agent (the scaler does not scale down over a pod it has no data for), then the window runs. Percentiles are nearest-rank over the {} steps ({} s in all).",
        pstr(req.get("cpu").unwrap_or(&Value::Null)),
        pstr(lim.get("cpu").unwrap_or(&Value::Null)),
        pstr(get_or(c, "target_utilization", &fifty)),
        pstr(&u["n"]),
        fixed_of(&reaction["run_seconds"], 0)
    ));
    w(String::new());
    w("| | p50 | p95 | max | min | mean |".into());
    w("| --- | ---: | ---: | ---: | ---: | ---: |".into());
    let mut row = |label: &str, v: &Value| {
        w(format!(
            "| {label} | {} | {} | {} | {} | {} |",
            s(&v["p50"]),
            s(&v["p95"]),
            s(&v["max"]),
            s(&v["min"]),
            s(&v["mean"])
        ))
    };
    row("load on (t0 before `kubectl exec`) → 2 replicas", u);
    row(
        "the `kubectl exec` itself (touch /tmp/load), start to exit",
        x,
    );
    row("load on → 2 replicas, minus that step's exec", g);
    row(
        &format!(
            "load off (exec included) → back to 1 (new pod started and measured, then the {win} s window)"
        ),
        d,
    );
    w(String::new());
    let rows = reaction["rows"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let col = |k: &str| {
        rows.iter()
            .map(|r| fixed_of(&r[k], 2))
            .collect::<Vec<_>>()
            .join(", ")
    };
    w(format!(
        "Every step in order (load on → 2 replicas): {} s; the exec: {} s. In {} of {} steps the scale write was seen before `kubectl exec` had returned.",
        col("up_seconds"),
        col("exec_on_seconds"),
        pstr(&reaction["writes_before_exec_returned"]),
        pstr(&u["n"])
    ));
    let ev = reaction
        .get("scale_events")
        .filter(|v| truthy(v))
        .unwrap_or(&empty);
    let errs = reaction
        .get("scaler_errors")
        .filter(|v| truthy(v))
        .unwrap_or(&empty);
    let errors: Vec<String> = errs
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("`{k}` {}", fixed_of(v, 0)))
                .collect()
        })
        .unwrap_or_default();
    let zero = json!(0);
    w(String::new());
    w(format!(
        "The scalers counted {} scale-ups and {} scale-downs for the benchmark's namespace (`tidal_scaler_scale_events_total`); their errors during the steps: {}. The leader was `{}` at the start and `{}` at the end.",
        fixed_of(get_or(ev, "up", &zero), 0),
        fixed_of(get_or(ev, "down", &zero), 0),
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(", ")
        },
        pstr(reaction.get("leader_at_start").unwrap_or(&Value::Null)),
        pstr(reaction.get("leader_at_end").unwrap_or(&Value::Null))
    ));
    w(String::new());
}

fn render_cost(cost: &Value, w: &mut impl FnMut(String)) {
    let (b, a) = (&cost["sampled_before"], &cost["sampled_after"]);
    let (m, p) = (&cost["memory_end"], &cost["memory_peak"]);
    let empty = json!({});
    let sd = get_or(b, "sampler_duration_seconds", &empty);
    let sd2 = get_or(a, "sampler_duration_seconds", &empty);
    w(format!(
        "**The agent's cost.** The in-cluster agent pod `{}` over {} s before the steps, the workload idle at 1 replica; its loop starts a round every {} s, so the window holds {} rounds. Its CPU includes everything the pod did meanwhile: sampling, and serving the leading scaler's scrape every second and Prometheus's. CPU from the cgroups the kubelet made for it (`cpuacct.usage`, ns) and from the `sampler` thread's `/proc/<pid>/task/<tid>/schedstat`; memory read every 5 s. What it sampled comes from its own `/metrics` (the `tidal_agent_container_cpu_usage_seconds_total` series), scraped just before and just after the window: the kubelet's pods on the node (with pod metadata from the API server) and the cgroups other test sessions make under this host's `/kubepods` (no pod metadata). A node this small is cheap to sample: the cost grows with the containers (issue #3's agent benchmark: 11.5 ms of sampling per round on 1,000 synthetic containers).",
        pstr(&cost["agent_pod"]),
        fixed_of(&cost["window_seconds"], 1),
        py::g(f(&cost["interval_seconds"])),
        fixed_of(&cost["rounds"], 0)
    ));
    w(String::new());
    w("| | |".into());
    w("| --- | --- |".into());
    let names = |v: &Value| -> Vec<String> {
        v.get("names")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(pstr).collect())
            .unwrap_or_default()
    };
    let mut listed = String::new();
    if let Some(before) = b.get("names").and_then(Value::as_array)
        && before.len() <= 12
    {
        let (bn, an) = (names(b), names(a));
        let mut gone: Vec<&String> = bn.iter().filter(|n| !an.contains(n)).collect();
        let mut came: Vec<&String> = an.iter().filter(|n| !bn.contains(n)).collect();
        gone.sort();
        gone.dedup();
        came.sort();
        came.dedup();
        let tick = |v: &[&String]| {
            v.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        listed = format!(
            ": {}",
            bn.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !gone.is_empty() {
            listed += &format!("; gone by the end: {}", tick(&gone));
        }
        if !came.is_empty() {
            listed += &format!("; new by the end: {}", tick(&came));
        }
    }
    w(format!(
        "| containers sampled, before / after | {} / {} ({} / {} in kubelet pods with pod metadata) in {} / {} pods{listed} |",
        pstr(&b["containers"]),
        pstr(&a["containers"]),
        pstr(&b["containers_with_pod_metadata"]),
        pstr(&a["containers_with_pod_metadata"]),
        pstr(&b["pods"]),
        pstr(&a["pods"])
    ));
    w(format!(
        "| CPU per round, agent pod cgroup | **{} ms** ({} s in the window, {} millicores on average) |",
        fixed_of(&cost["pod_cpu_ms_per_round"], 3),
        fixed_of(&cost["pod_cpu_seconds"], 3),
        fixed(f(&cost["pod_cpu_cores"]) * 1000.0, 2)
    ));
    w(format!(
        "| of which the agent container | {} ms |",
        fixed_of(&cost["container_cpu_ms_per_round"], 3)
    ));
    w(format!(
        "| of which the `sampler` thread (the sampling itself) | {} ms |",
        fixed_of(&cost["sampler_thread_cpu_ms_per_round"], 3)
    ));
    let mut keys: Vec<&String> = sd
        .as_object()
        .into_iter()
        .chain(sd2.as_object())
        .flat_map(|m| m.keys())
        .collect();
    keys.sort();
    keys.dedup();
    let durations: Vec<String> = keys
        .iter()
        .map(|k| {
            let ms = |d: &Value| fixed(d.get(k.as_str()).map_or(f64::NAN, f) * 1e3, 2);
            format!("{k} {} / {} ms", ms(sd), ms(sd2))
        })
        .collect();
    w(format!(
        "| last pass of the samplers, wall (`tidal_agent_sampler_duration_seconds`), before / after | {} |",
        durations.join(", ")
    ));
    w(format!(
        "| process `VmRSS` at the end (anonymous + file-backed) / peak `VmHWM` | {} ({} + {}) / {} |",
        mib(&m["vm_rss_bytes"]),
        mib(&m["rss_anon_bytes"]),
        mib(&m["rss_file_bytes"]),
        mib(&m["vm_hwm_bytes"])
    ));
    w(format!(
        "| container cgroup `memory.stat` `total_rss` at the end / highest read | {} / {} |",
        mib(&m["container_total_rss_bytes"]),
        mib(&p["container_total_rss_bytes"])
    ));
    w(format!(
        "| pod cgroup `memory.stat` `total_rss` (sandbox included) at the end | {} |",
        mib(&m["pod_total_rss_bytes"])
    ));
    let kmem = match m.get("container_kmem_usage_bytes") {
        Some(k) if !k.is_null() => format!(" (kernel memory {})", mib(k)),
        _ => String::new(),
    };
    w(format!(
        "| container cgroup `memory.usage_in_bytes` (page cache and kernel memory included) at the end / highest read | {} / {}{kmem} |",
        mib(&m["container_usage_bytes"]),
        mib(&p["container_usage_bytes"])
    ));
    w(format!(
        "| series / bytes per scrape of its `/metrics` | {} / {} |",
        pstr(&b["series"]),
        pstr(&b["bytes"])
    ));
    w(String::new());
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    let mut target = Target::open(Some(args.results.clone()))?;
    let parts: Vec<&str> = args.parts.iter().map(|p| p.name()).collect();
    if args.render {
        let doc = render_again(target.doc())?;
        target.update(doc)?;
        target.print(&SECTION);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(file) = &args.from_json {
        let fresh = crate::scaler::json_lines(file)?;
        let run = Started::now().finish(Some(crate::run::command(&VARS, &args.invoked_as)));
        let doc = record(target.doc(), fresh, args.reason.as_deref(), &parts, &run)?;
        target.update(doc)?;
        target.print(&SECTION);
        return Ok(ExitCode::SUCCESS);
    }
    let command = crate::run::command(&VARS, &args.invoked_as);
    let (work, temporary) = crate::scaler::work_dir(args.work.clone(), "node")?;
    let started = Started::now();
    // Bounded: install and lock wait, the cost window, and a generous minute per step.
    let limit =
        240 + args.lock_seconds + args.cost_seconds + args.steps * (u64::from(args.window) + 55);
    step(format!(
        "the real node: {} (steps {}, scale-down window {}s, agent window {}s; at most {limit}s)",
        parts.join(","),
        args.steps,
        args.window,
        args.cost_seconds
    ));
    let settings = driver::Settings {
        steps: args.steps as usize,
        window: args.window,
        cost_seconds: args.cost_seconds,
        lock_seconds: args.lock_seconds,
        cost: args.parts.contains(&Part::Cost),
        reaction: args.parts.contains(&Part::Reaction),
    };
    let sink = Sink::default();
    let ended = driver::drive(&work, &settings, &sink, Duration::from_secs(limit)).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&work);
    }
    let reason = match ended {
        Ended::Done => None,
        Ended::Failed(reason) => {
            note(format!("the driver failed ({reason})"));
            Some(reason)
        }
        Ended::Interrupted(_) => return Ok(ExitCode::from(130)),
    };
    let run = started.finish(Some(command));
    match record(target.doc(), sink.take(), reason.as_deref(), &parts, &run) {
        Ok(doc) => {
            target.update(doc)?;
            if target.writes() {
                note(format!("results written to {}", target.path().display()));
            }
        }
        Err(e) => {
            eprintln!(
                "ERROR: nothing was measured ({}); {} is unchanged",
                reason.as_deref().unwrap_or(&format!("{e:#}")),
                target.path().display()
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    step("results");
    target.print(&SECTION);
    if let Some(reason) = reason {
        eprintln!("ERROR: incomplete: {reason} (what was measured is in the section above)");
        return Ok(ExitCode::FAILURE);
    }
    step("done");
    Ok(ExitCode::SUCCESS)
}

//! `tidal-bench peers`: Tidal and its peers side by side on the real node (issue #15,
//! [`driver`]) and the section "Peers side by side (issue #15)" of bench/RESULTS.md. A part
//! not run this time keeps its earlier figures (one JSON per `<!-- peers:data ... -->` line).

pub mod driver;
mod in_place_table;
mod replay_table;

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::cells::{conditions, float as f, or_dash, spread};
use crate::parts::{Common, Parts};
use crate::py::{self, fixed, fixed_of, get_or, str as pstr, truthy};
use crate::results::Section;

pub const SECTION: Section = Section {
    name: Some("peers"),
    heading: "## Peers side by side (issue #15)",
};

const NOT: &str = "not measured";

/// The knobs the command line of a run states, when set.
const VARS: [&str; 7] = [
    "TIDAL_BENCH_PEERS_STEPS",
    "TIDAL_BENCH_PEERS_REPLAY_SECONDS",
    "TIDAL_BENCH_PEERS_WINDOW",
    "TIDAL_BENCH_PEERS_READINGS",
    "TIDAL_BENCH_PEERS_MINUTES",
    "TIDAL_BENCH_PEERS_PARTS",
    "TIDAL_BENCH_PEERS_LOCK_SECONDS",
];

/// The parts, in the section's order.
const KINDS: [&str; 6] = ["cpu", "kafka", "replay", "vertical", "inplace", "agreement"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Cpu,
    Kafka,
    /// The trace replay with real load (traces/step.csv and traces/flash-sale.csv, compressed).
    Replay,
    Vertical,
    /// Tidal's `InPlace` and the VPA's `InPlaceOrRecreate` resizing the same workload's copies.
    #[value(name = "inplace")]
    InPlace,
    Agreement,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which parts run, a comma list (in the order given).
    #[arg(
        long,
        env = "TIDAL_BENCH_PEERS_PARTS",
        value_delimiter = ',',
        default_value = "cpu,kafka,replay,vertical,inplace,agreement"
    )]
    parts: Vec<Part>,
    /// The replay part: each trace compressed to about this many seconds.
    #[arg(long, env = "TIDAL_BENCH_PEERS_REPLAY_SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(60..=600))]
    replay_seconds: u64,
    /// CPU steps, and as many Kafka backlog steps.
    #[arg(long, env = "TIDAL_BENCH_PEERS_STEPS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=100))]
    steps: u64,
    /// The scale-down stabilization window for every autoscaler, seconds.
    #[arg(long, env = "TIDAL_BENCH_PEERS_WINDOW", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=300))]
    window: u32,
    /// Agreement readings, 15 s apart.
    #[arg(long, env = "TIDAL_BENCH_PEERS_READINGS", default_value_t = 6,
          value_parser = clap::value_parser!(u64).range(2..=40))]
    readings: u64,
    /// The vertical part's length, and the longest the inplace part waits, minutes.
    #[arg(long, env = "TIDAL_BENCH_PEERS_MINUTES", default_value_t = 6,
          value_parser = clap::value_parser!(u64).range(2..=60))]
    minutes: u64,
    /// The longest wait for the node tests to release the real node, seconds.
    #[arg(long, env = "TIDAL_BENCH_PEERS_LOCK_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    lock_seconds: u64,
    #[command(flatten)]
    common: Common,
}

/// The section's parts, in the order cpu, kafka, replay, vertical, inplace, agreement.
pub const PART: Parts = Parts {
    name: "peers",
    section: SECTION,
    vars: &VARS,
    order: by_kind,
    render,
};

fn by_kind(r: &Value) -> anyhow::Result<usize> {
    KINDS
        .iter()
        .position(|k| r["kind"] == *k)
        .ok_or_else(|| anyhow::anyhow!("an entry of unknown kind {}", r["kind"]))
}

fn s(v: &Value) -> String {
    crate::cells::secs(v, 2)
}

fn s0(v: &Value) -> String {
    crate::cells::secs(v, 0)
}

fn pct(v: &Value) -> String {
    or_dash(v, |x| format!("{} %", fixed(100.0 * x, 1)))
}

fn mcores(v: &Value) -> String {
    or_dash(v, |x| format!("{}m", fixed(1000.0 * x, 1)))
}

fn mib(v: &Value) -> String {
    or_dash(v, |x| format!("{} MiB", fixed(x / 1_048_576.0, 2)))
}

/// `x or 0`.
fn or0(v: &Value) -> f64 {
    if truthy(v) { f(v) } else { 0.0 }
}

fn opt<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&Value::Null)
}

/// The section, from every entry (in the order cpu, kafka, replay, vertical, agreement).
pub fn render(entries: &[Value]) -> String {
    let find = |kind: &str| {
        entries
            .iter()
            .find(|r| r["kind"] == kind && !truthy(&r["failed"]))
    };
    let (cpu, agree, kafka, vert, replay, in_place) = (
        find("cpu"),
        find("agreement"),
        find("kafka"),
        find("vertical"),
        find("replay"),
        find("inplace"),
    );
    let empty = json!({});
    let unknown = json!("?");
    let mut out: Vec<String> = Vec::new();
    let mut w = |line: String| out.push(line);
    w("<!-- peers:begin (written by scripts/bench-peers.sh) -->".into());
    w("## Peers side by side (issue #15)".into());
    w(String::new());
    let (c, info) = conditions(entries, &empty);
    let q = |d: &Value, k: &str| pstr(get_or(d, k, &unknown));
    let or_q = |v: &Value| if truthy(v) { pstr(v) } else { "?".into() };
    w(format!(
        "Generated by {}. Every figure below comes from one run, on the same cluster, the same real node (`{}`: kubelet {}, {}), the same workload and the same load at the same moments, so the machine's noise cancels in the ratios; absolute times are noisy (2 shared cores).",
        crate::cells::describe_runs(entries),
        q(c, "node"),
        q(info, "kubelet"),
        q(info, "runtime")
    ));
    w(String::new());
    w("The peers, as the stack runs them (`scripts/stack/peers.sh`, docs/peers.md):".into());
    w(format!(
        "- **the HPA**: the kube-controller-manager's own controller ({}), its defaults (15 s sync period, 10 % tolerance, 5 min CPU initialization period, scale-up policies 100 % or 4 pods per 15 s), reading `metrics.k8s.io`;",
        q(info, "kubelet")
    ));
    w(format!(
        "- **metrics-server** {}, built from the Go module proxy, with the flags of its own manifest (`--metric-resolution=15s`, `--kubelet-use-node-status-port`, `--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname`) and `--kubelet-insecure-tls` as its README says for a kubelet certificate it cannot verify; a process on this host instead of a pod, and `--node-selector tidal.dev/node=real` (the KWOK nodes have no kubelet);",
        or_q(opt(c, "metrics_server"))
    ));
    w(format!(
        "- **KEDA** {} (operator and metrics API server, built from the Go module proxy; its manifests' settings but one instance without leader election, and certificates from the stack's CA instead of its rotation): in the CPU step a ScaledObject with the `cpu` trigger (`metricType: Utilization`), from which the operator makes an HPA that the same controller-manager runs; in the Kafka step and the trace replay the `kafka` trigger; its defaults (`pollingInterval` 30 s, which the `cpu` trigger does not use);",
        or_q(opt(c, "keda"))
    ));
    w("- **the VPA** v1.8.1 (built from the Go module proxy), its defaults: the recommender; for the inplace part also the updater and the admission controller (a pod on the real node behind its Service `vpa-webhook`, its certificate signed by the stack's CA).".into());
    w(String::new());
    w(format!(
        "Changed from the defaults in the CPU and Kafka steps, for every autoscaler alike: the scale-down stabilization window ({} s instead of the HPA's 300 s), so that a step takes a minute instead of six; the figure measured is the scale-up, which the window does not touch. The trace replay changes nothing: each autoscaler runs with the behavior its paragraph below gives.",
        cpu.map_or("?".into(), |c| pstr(&c["scale_down_window_seconds"]))
    ));
    for r in entries.iter().filter(|r| truthy(&r["failed"])) {
        w(String::new());
        w(format!(
            "**Incomplete:** the {} part of {} failed ({}).",
            pstr(&r["kind"]),
            pstr(&r["run"]["date"]),
            pstr(&r["reason"])
        ));
    }
    w(String::new());
    w("| Comparison | Tidal | HPA + metrics-server | KEDA | Tidal / HPA | Tidal / KEDA | Target | |".into());
    w("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |".into());
    if let Some(cpu) = cpu {
        comparison_cpu(cpu, &mut w);
    }
    if let Some(kafka) = kafka {
        comparison_kafka(kafka, &mut w);
    } else {
        w(format!(
            "| Kafka backlog step → scale write | {NOT} | (no lag metric) | {NOT} | | | ≤ 0.2× KEDA's default | {NOT} |"
        ));
    }
    if let Some(replay) = replay {
        replay_table::comparison(replay, &mut w);
    } else {
        w(format!(
            "| Trace replay (step, flash-sale): SLO-violation seconds, replica-seconds | {NOT} | {NOT} | {NOT} | | | ≤ 0.5× the best peer's | {NOT} |"
        ));
    }
    if let Some(vert) = vert {
        let d = &vert["target_relative_difference"];
        let fr = &vert["first_recommendation_seconds"];
        let worst = d
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|v| !v.is_null())
            .map(f)
            .reduce(py::max);
        w(format!(
            "| Vertical: Tidal's target vs the VPA recommender's after the same {} min (a real OOM kill half-way), CPU / memory | | | | | | within 10 % | {} / {}: {} |",
            pstr(&vert["minutes"]),
            pct(opt(d, "cpu")),
            pct(opt(d, "memory")),
            if worst.is_some_and(|x| x <= 0.1) {
                "met"
            } else {
                "**missed**"
            }
        ));
        let (t, v) = (opt(fr, "tidal"), opt(fr, "vpa"));
        let sooner = !t.is_null() && !v.is_null() && f(t) < f(v);
        w(format!(
            "| Vertical: time to the first recommendation | {} | VPA {} | | | | sooner | {} |",
            s0(t),
            s0(v),
            if sooner { "met" } else { "**missed**" }
        ));
    } else {
        w(format!(
            "| Vertical: target vs the VPA recommender's | | | | | | within 10 % | {NOT} (VPA) |"
        ));
    }
    if let Some(v) = in_place {
        in_place_table::comparison(v, &mut w);
    } else {
        w(format!(
            "| Vertical in place: Tidal `InPlace` and the VPA `InPlaceOrRecreate` | {NOT} | {NOT} (VPA) | | | | (none set) | |"
        ));
    }
    if let Some(agree) = agree {
        comparison_agreement(agree, &mut w);
    }
    w(String::new());
    if let Some(cpu) = cpu {
        detail_cpu(cpu, c, &mut w);
    }
    if let Some(kafka) = kafka {
        detail_kafka(kafka, &mut w);
    }
    if let Some(replay) = replay {
        replay_table::detail(replay, &mut w);
    }
    if let Some(vert) = vert {
        detail_vertical(vert, &mut w);
    }
    if let Some(v) = in_place {
        in_place_table::detail(v, &mut w);
    }
    if let Some(agree) = agree {
        detail_agreement(agree, &mut w);
    }
    for r in entries {
        w(SECTION.data_line(r));
    }
    w("<!-- peers:end -->".into());
    out.join("\n")
}

fn comparison_cpu(cpu: &Value, w: &mut impl FnMut(String)) {
    let peers = &cpu["peers"];
    let (t, h) = (&peers["tidal"]["up_seconds"], &peers["hpa"]["up_seconds"]);
    let keda = opt(peers, "keda");
    let k = if truthy(keda) {
        opt(keda, "up_seconds")
    } else {
        &Value::Null
    };
    let has_k = truthy(k);
    let ratio = |a: &Value, b: &Value| {
        if truthy(b) {
            format!("**{}×**", fixed(f(a) / f(b), 3))
        } else {
            NOT.to_string()
        }
    };
    for (q, target) in [("p50", ""), ("p95", "≤ 0.1× the HPA's and KEDA's")] {
        let mut verdict = String::new();
        if !target.is_empty() {
            let met = f(&t[q]) <= 0.1 * f(&h[q]) && (k.is_null() || f(&t[q]) <= 0.1 * f(&k[q]));
            verdict = format!(
                "{}{}",
                if met { "met" } else { "**missed**" },
                if has_k {
                    String::new()
                } else {
                    format!(" (KEDA {NOT})")
                }
            );
        }
        w(format!(
            "| CPU load step → scale write, {q} over {} steps | {} | {} | {} | {} | {} | {target} | {verdict} |",
            pstr(&t["n"]),
            s(&t[q]),
            s(&h[q]),
            if has_k { s(&k[q]) } else { NOT.into() },
            ratio(&t[q], &h[q]),
            if has_k {
                ratio(&t[q], &k[q])
            } else {
                NOT.into()
            },
        ));
    }
}

const LAG_PEERS: [&str; 3] = ["tidal-lag", "keda-lag", "keda-lag-1s"];

fn comparison_kafka(kafka: &Value, w: &mut impl FnMut(String)) {
    let peers = &kafka["peers"];
    let t = &peers["tidal-lag"]["up_seconds"];
    let k = &peers["keda-lag"]["up_seconds"];
    let fast = &peers["keda-lag-1s"]["up_seconds"];
    for (q, target) in [("p50", ""), ("p95", "≤ 0.2× KEDA's default")] {
        let verdict = if target.is_empty() {
            ""
        } else if f(&t[q]) <= 0.2 * f(&k[q]) {
            "met"
        } else {
            "**missed**"
        };
        w(format!(
            "| Kafka backlog step → scale write, {q} over {} steps | {} | (no lag metric) | {} (1 s polling: {}) | | **{}×** (1 s polling: {}×) | {target} | {verdict} |",
            pstr(&t["n"]),
            s(&t[q]),
            s(&k[q]),
            s(&fast[q]),
            fixed(f(&t[q]) / f(&k[q]), 3),
            fixed(f(&t[q]) / f(&fast[q]), 3),
        ));
    }
    let reach = |n: &str| &peers[n]["reached_replicas"];
    let span = |n: &str| {
        format!(
            "{}–{}",
            fixed_of(&reach(n)["min"], 0),
            fixed_of(&reach(n)["max"], 0)
        )
    };
    let pair = |n: &str| (py::num(&reach(n)["min"]), py::num(&reach(n)["max"]));
    let same = LAG_PEERS.iter().all(|n| pair(n) == pair(LAG_PEERS[0]));
    w(format!(
        "| Replicas reached for lag {} on {} partitions ({} per replica), min–max over the steps | {} | | {} (1 s polling: {}) | | | same | {} |",
        pstr(&kafka["rows"][0]["lag"]),
        pstr(&kafka["partitions"]),
        pstr(&kafka["lag_per_replica"]),
        span("tidal-lag"),
        span("keda-lag"),
        span("keda-lag-1s"),
        if same { "met" } else { "differs" }
    ));
    let cost = &kafka["polling_cost"];
    if truthy(cost) && !truthy(&cost["error"]) {
        let keda = |k: &str| fixed(per_minute(&cost[k], "keda_requests"), 0);
        w(format!(
            "| Kafka requests a minute at lag 0, each alone (the broker's request log) | {} | | {} (1 s polling: {}; 1 s polling at `minReplicaCount: 0`: {}) | | | report | reported |",
            fixed(per_minute(&cost["keda-lag"], "tidal_requests"), 0),
            keda("keda-lag"),
            keda("keda-lag-1s"),
            keda("keda-lag-1s-min0")
        ));
    }
}

const SOURCES: [&str; 3] = ["agent", "cadvisor", "metrics_server"];

fn comparison_agreement(agree: &Value, w: &mut impl FnMut(String)) {
    let pods = agree["pods"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut worst: Vec<(&str, f64)> = Vec::new();
    for p in pods.iter().filter(|p| truthy(&p["loaded"])) {
        for src in SOURCES {
            let v = py::max(
                or0(&p["cpu_relative_error"][src]["max"]),
                or0(&p["working_set_relative_error"][src]["max"]),
            );
            match worst.iter_mut().find(|(k, _)| *k == src) {
                Some(slot) => slot.1 = v,
                None => worst.push((src, v)),
            }
        }
    }
    let ok = worst.iter().all(|(_, v)| *v <= 0.05);
    let get = |src: &str| {
        worst
            .iter()
            .find(|(k, _)| *k == src)
            .map_or(Value::Null, |(_, v)| json!(v))
    };
    w(format!(
        "| Agreement with the container's own cgroup (loaded pod, CPU and working set), worst | agent {} | cAdvisor {}, metrics-server {} | | | | within 5 % | {} |",
        pct(&get("agent")),
        pct(&get("cadvisor")),
        pct(&get("metrics_server")),
        if ok { "met" } else { "**missed**" }
    ));
    let age = |src: &str| {
        pods.iter()
            .map(|p| or0(&p["age_seconds"][src]["max"]))
            .reduce(py::max)
            .map_or(Value::Null, |v| json!(v))
    };
    w(format!(
        "| Age of the newest sample when read, worst | agent {} | metrics-server {} (cAdvisor {}) | | | | report | reported |",
        s(&age("agent")),
        s(&age("metrics_server")),
        s(&age("cadvisor"))
    ));
}

fn table_head(w: &mut impl FnMut(String)) {
    w("| | p50 | p95 | max | min | mean |".into());
    w("| --- | ---: | ---: | ---: | ---: | ---: |".into());
}

fn detail_cpu(cpu: &Value, c: &Value, w: &mut impl FnMut(String)) {
    let empty = json!({});
    w(format!(
        "**CPU load step.** One namespace per autoscaler, each with the same Deployment of real busybox pods on the node ({} CPU requested, {} limit, a shell loop that burns CPU up to the limit while `/tmp/load` exists) and the same target: CPU at {} % of the request, 1..2 replicas. Each step starts with all copies at 1 idle replica whose pod the autoscaler's source already measures (Tidal's agent exports it; metrics-server serves its `PodMetrics`), waits 1–16 s (a random phase against the HPA's 15 s sync and metrics-server's 15 s resolution, and Tidal's 1 s cycles), then turns the load on in every copy at once (one `kubectl exec` each, each t0 taken before its exec is sent) and stops each clock when a watch on that Deployment sees `spec.replicas` become 2. Then load off, and all back to 1. Percentiles are nearest-rank; {} s in all.",
        pstr(opt(get_or(c, "request", &empty), "cpu")),
        pstr(opt(get_or(c, "limit", &empty), "cpu")),
        pstr(opt(c, "target_utilization")),
        fixed_of(&cpu["run_seconds"], 0)
    ));
    w(String::new());
    table_head(w);
    let names: Vec<&str> = ["tidal", "hpa", "keda"]
        .into_iter()
        .filter(|n| cpu["peers"].get(n).is_some())
        .collect();
    let label = |n: &str| match n {
        "tidal" => "Tidal (agent + in-cluster scaler)",
        "hpa" => "HPA + metrics-server",
        _ => "KEDA `cpu` trigger (its HPA + metrics-server)",
    };
    for n in &names {
        w(format!(
            "| {}: load on → 2 replicas | {} |",
            label(n),
            spread(&cpu["peers"][n]["up_seconds"])
        ));
    }
    for n in &names {
        w(format!(
            "| {}: load off → back to 1 (window {} s) | {} |",
            label(n),
            pstr(&cpu["scale_down_window_seconds"]),
            spread(&cpu["peers"][n]["down_seconds"])
        ));
    }
    w(String::new());
    w(format!(
        "Every step in order (load on → 2 replicas), {}: {} s.",
        names.join(" / "),
        steps(&cpu["rows"], &names)
    ));
    w(String::new());
    w("Why the HPA takes this long (its design, not a weakness of this setup): the kubelet's cAdvisor refreshes container stats every 10–15 s, metrics-server scrapes every 15 s and serves a rate over its last two scrapes, and the HPA syncs every 15 s; a step waits for each in turn. KEDA's `cpu` trigger is that same HPA (KEDA only writes it). Tidal's agent reads the cgroup every second and the scaler evaluates fast-path policies every second from the agents' usage documents (`/v1/usage`).".into());
    w(String::new());
}

/// Each row's `up_seconds` of each of `names`, "a / b / c" per row, rows joined by ", ".
fn steps(rows: &Value, names: &[&str]) -> String {
    rows.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            names
                .iter()
                .map(|n| fixed_of(&r[n]["up_seconds"], 2))
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn detail_kafka(kafka: &Value, w: &mut impl FnMut(String)) {
    let partitions = pstr(&kafka["partitions"]);
    w(format!(
        "**Kafka backlog step.** A topic of {partitions} partitions and one consumer group with committed offsets; no consumer runs (the driver commits), so the lag is exactly what it makes. One namespace per autoscaler, each with the same idle Deployment, 1..{partitions} replicas, {} messages of lag per replica, all on the same group: Tidal (`kafkaLag`; the in-cluster scaler's own Kafka client), KEDA's `kafka` trigger at its defaults (`pollingInterval` 30 s) and the same with `pollingInterval: 1`. Each step starts with all at 1 replica, waits 1–16 s, produces 30 messages to every partition (lag 0 → {}) and stops each clock at the first write that raises the Deployment's `spec.replicas`; 20 s later it reads the count each reached, then commits the end offsets (lag 0) and waits for all to come back to 1 (scale-down window {} s for all). {} s in all.",
        pstr(&kafka["lag_per_replica"]),
        pstr(&kafka["rows"][0]["lag"]),
        pstr(&kafka["scale_down_window_seconds"]),
        fixed_of(&kafka["run_seconds"], 0)
    ));
    w(String::new());
    table_head(w);
    for (n, label) in [
        ("tidal-lag", "Tidal"),
        ("keda-lag", "KEDA, `pollingInterval` 30 s (default)"),
        ("keda-lag-1s", "KEDA, `pollingInterval: 1`"),
    ] {
        let p = &kafka["peers"][n];
        w(format!(
            "| {label}: backlog → first scale write | {} |",
            spread(&p["up_seconds"])
        ));
        w(format!(
            "| {label}: lag 0 → back to 1 | {} |",
            spread(&p["down_seconds"])
        ));
    }
    w(String::new());
    w(format!(
        "Every step in order (backlog → first write), Tidal / KEDA / KEDA 1 s: {} s.",
        steps(&kafka["rows"], &LAG_PEERS)
    ));
    let cpu_k = opt(kafka, "keda_operator_cpu_cores");
    w(String::new());
    w(format!(
        "With `minReplicaCount` 1, KEDA's `pollingInterval` has no effect (there is no 0 ↔ 1 activation to decide): the HPA that KEDA made asks KEDA's metrics API server for the lag at each of its 15 s syncs, so both KEDA variants wait for the HPA's sync. The KEDA operator used {} over the steps (both ScaledObjects together).",
        if cpu_k.is_null() {
            "–".to_string()
        } else {
            format!("{} millicores on average", fixed(1000.0 * f(cpu_k), 1))
        }
    ));
    w(String::new());
    detail_polling_cost(&kafka["polling_cost"], w);
}

/// Requests a minute in one polling-cost window.
fn per_minute(window: &Value, key: &str) -> f64 {
    f(&window[key]) * 60.0 / f(&window["seconds"]).max(1e-9)
}

/// `OFFSET_FETCH 60, METADATA 60`: a window's requests by kind, a minute each.
fn by_request(window: &Value, key: &str) -> String {
    let seconds = f(&window["seconds"]).max(1e-9);
    let mut kinds: Vec<(String, f64)> = window[key]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| (k.clone(), f(n) * 60.0 / seconds))
                .collect()
        })
        .unwrap_or_default();
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    kinds
        .iter()
        .map(|(k, n)| format!("{k} {}", fixed(*n, 0)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The polling-cost windows, in the order measured: key, label.
const POLLING_WINDOWS: [(&str, &str); 3] = [
    (
        "keda-lag",
        "KEDA, `pollingInterval` 30 s (default), `minReplicaCount` 1",
    ),
    (
        "keda-lag-1s",
        "KEDA, `pollingInterval: 1`, `minReplicaCount` 1",
    ),
    (
        "keda-lag-1s-min0",
        "KEDA, `pollingInterval: 1`, `minReplicaCount: 0` (at 0 replicas)",
    ),
];

fn detail_polling_cost(cost: &Value, w: &mut impl FnMut(String)) {
    if !truthy(cost) || truthy(&cost["error"]) {
        let why = if truthy(&cost["error"]) {
            format!(" ({})", pstr(&cost["error"]))
        } else {
            String::new()
        };
        w(format!(
            "What `pollingInterval` costs KEDA in requests to the broker: not measured in this run{why}."
        ));
        w(String::new());
        return;
    }
    let none = &cost["both_paused"];
    w(format!(
        "**What `pollingInterval` costs KEDA.** After the steps (lag 0), one of KEDA's two ScaledObjects at a time for {} s each, the other paused (`autoscaling.keda.sh/paused`: its scale loop stopped, its scalers closed, its HPA deleted). The Kafka requests are counted in the broker's own request log (`kafka.request.logger` at DEBUG for this phase only) by client id: `sarama` (KEDA's Kafka scaler) and `tidal-scaler`; the KEDA operator's CPU over each window. With both paused, `sarama` made {} requests in {} s. At `minReplicaCount` 1 (with no `idleReplicaCount`, `useCachedMetrics` or `scalingModifiers`), while its HPA's `ScalingActive` condition is True, KEDA 2.21's scale loop does not query the scaler (`IsPollingIntervalRelevant`, `UsesHPAObservations`): it reuses the HPA's reads, one per 15 s sync, whatever the interval; each window starts once the HPA reads the lag. At `minReplicaCount: 0` the interval decides activation from zero and each poll queries Kafka; at lag 0 KEDA had scaled that copy to 0, so its HPA made no reads.",
        fixed_of(&cost["window_seconds"], 0),
        pstr(&none["keda_requests"]),
        fixed_of(&none["seconds"], 0)
    ));
    w(String::new());
    w(
        "| Alone in its window | Kafka requests a minute | by kind, a minute | KEDA operator CPU |"
            .into(),
    );
    w("| --- | ---: | --- | ---: |".into());
    for (key, label) in POLLING_WINDOWS {
        let win = &cost[key];
        if !truthy(win) {
            continue;
        }
        w(format!(
            "| {label} | {} | {} | {} |",
            fixed(per_minute(win, "keda_requests"), 0),
            by_request(win, "keda_by_request"),
            or_dash(&win["keda_operator_cpu_cores"], |c| format!(
                "{}m",
                fixed(1000.0 * c, 1)
            ))
        ));
    }
    let t = &cost["keda-lag"];
    w(format!(
        "| Tidal (its 1 s rounds), during the `pollingInterval` 30 s window | {} | {} | |",
        fixed(per_minute(t, "tidal_requests"), 0),
        by_request(t, "tidal_by_request")
    ));
    w(String::new());
}

fn detail_vertical(vert: &Value, w: &mut impl FnMut(String)) {
    let oom = opt(vert, "oom_at_seconds");
    w(format!(
        "**Vertical.** One pod ({} CPU and {} requested, limits {} and {}) busy up to its CPU limit, under Tidal's `Recommend` mode (the in-cluster scaler; its VPA estimator fed by the agent every second) and a VerticalPodAutoscaler with `updateMode: \"Off\"` (the VPA recommender's defaults: a 1 min loop on metrics-server's usage), both created at the same moment; {} min of observation, and a real OOM kill half-way (the container reads 400 MiB into a pipe; {}). Recommendations read every 5 s; one snapshot a minute below.",
        pstr(&vert["request"]["cpu"]),
        pstr(&vert["request"]["memory"]),
        pstr(&vert["limit"]["cpu"]),
        pstr(&vert["limit"]["memory"]),
        pstr(&vert["minutes"]),
        if truthy(oom) {
            format!("OOMKilled and restarted {} s in", fixed_of(oom, 0))
        } else {
            "no OOM seen".into()
        }
    ));
    // The VPA's default pod minimum, 25 millicores (Tidal's port keeps it).
    let floor = 0.025;
    let snapshots = vert["snapshots"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let first_above = |side: &str| {
        snapshots
            .iter()
            .find(|x| truthy(&x[side]) && or0(&x[side]["target"]["cpu"]) > floor)
            .map_or(Value::Null, |x| x["at_seconds"].clone())
    };
    w(String::new());
    w(format!(
        "A first recommendation can be the floor alone (25m CPU, 250Mi memory) before any usage was seen: the first snapshot (one a minute) with a CPU target above the floor was Tidal's at {} and the VPA's at {}.{}",
        s0(&first_above("tidal")),
        s0(&first_above("vpa")),
        oom_bump_sentence(vert)
    ));
    w(String::new());
    w("| t | Tidal target (lower – upper) CPU | VPA target (lower – upper) CPU | Tidal target (lower – upper) memory | VPA target (lower – upper) memory |".into());
    w("| ---: | ---: | ---: | ---: | ---: |".into());
    let b = |r: &Value, res: &str, fmt: fn(&Value) -> String| {
        if !truthy(r) {
            return "none yet".to_string();
        }
        format!(
            "{} ({} – {})",
            fmt(&r["target"][res]),
            fmt(&r["lowerBound"][res]),
            fmt(&r["upperBound"][res])
        )
    };
    for snap in snapshots {
        w(format!(
            "| {} s | {} | {} | {} | {} |",
            fixed_of(&snap["at_seconds"], 0),
            b(&snap["tidal"], "cpu", mcores),
            b(&snap["vpa"], "cpu", mcores),
            b(&snap["tidal"], "memory", mib),
            b(&snap["vpa"], "memory", mib)
        ));
    }
    w(String::new());
}

/// What the OOM did to the memory targets (with a leading space; empty when the request is
/// not in Mi). Both sides record an OOM kill as a memory peak of `max(request + 100Mi, 1.2 ×
/// request)` (the VPA's `OOMMinBumpUp` and `OOMBumpUpRatio`, docs/vertical.md), which shows
/// only above the 250Mi pod minimum; the targets are read from the snapshots: the last one
/// before the kill and the last one.
fn oom_bump_sentence(vert: &Value) -> String {
    let Some(mib_requested) = vert["request"]["memory"]
        .as_str()
        .and_then(|r| r.strip_suffix("Mi"))
        .and_then(|n| n.parse::<f64>().ok())
    else {
        return String::new();
    };
    let bump = (mib_requested + 100.0).max(1.2 * mib_requested);
    if bump < 250.0 {
        return format!(
            " Memory stays at the 250Mi floor on both sides here: the pod's working set and its OOM bump (max(request + 100Mi, 1.2 × request) = {}Mi) are both below it.",
            fixed(bump, 0)
        );
    }
    let snapshots = vert["snapshots"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let oom = vert["oom_at_seconds"].as_f64();
    let before = oom.and_then(|t| {
        snapshots
            .iter()
            .rev()
            .find(|x| x["at_seconds"].as_f64().is_some_and(|a| a < t))
    });
    let target = |snap: Option<&Value>, side: &str| {
        snap.map_or("–".to_string(), |x| mib(&x[side]["target"]["memory"]))
    };
    format!(
        " Each side records an OOM kill as a memory peak of max(request + 100Mi, 1.2 × request) = {}Mi (the VPA's rule, which Tidal ports) and sizes memory from its peaks (the target at their 90th percentile, plus the 15 % margin): the memory targets were {} (Tidal) and {} (the VPA) at the last snapshot before the kill, {} and {} at the last one.",
        fixed(bump, 0),
        target(before, "tidal"),
        target(before, "vpa"),
        target(snapshots.last(), "tidal"),
        target(snapshots.last(), "vpa")
    )
}

fn detail_agreement(agree: &Value, w: &mut impl FnMut(String)) {
    w(format!(
        "**Metric agreement.** A Deployment of 2 pods under no autoscaler: one loaded (its busy loop on, 24 MiB held in its `/dev/shm`), one idle. At {} moments {} s apart, each source read one after another: the container's own cgroup (`cpuacct.usage`; `memory.usage_in_bytes` − `total_inactive_file`), Tidal's agent (`tidal_agent_container_cpu_usage_cores`, `tidal_agent_container_memory_working_set_bytes`), the kubelet's cAdvisor (`/metrics/cadvisor` through the API server; CPU as the rate between two readings of its counter, over its own timestamps) and metrics-server (`PodMetrics`). CPU is compared with the cgroup's rate between the same two readings; memory with the cgroup at the reading. The age is how old each source's newest sample was when it was read: the agent's `tidal_agent_snapshot_age_seconds`; cAdvisor's sample timestamp; metrics-server's `timestamp` (the end of its window).",
        pstr(&agree["readings"]),
        pstr(&agree["interval_seconds"])
    ));
    w(String::new());
    w("| Pod | Source | CPU, mean | CPU error vs cgroup, max | working set, last | working-set error vs cgroup, max | age, mean / max |".into());
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: |".into());
    let empty = json!({});
    for p in agree["pods"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let tag = if truthy(&p["loaded"]) {
            "loaded"
        } else {
            "idle"
        };
        let last = p["rows"]
            .as_array()
            .and_then(|r| r.last())
            .unwrap_or(&empty);
        w(format!(
            "| {tag} | cgroup (truth) | {} | | {} | | |",
            mcores(&p["cpu_cores"]["cgroup"]["mean"]),
            mib(opt(last, "cgroup_working_set_bytes"))
        ));
        for (src, label, ws) in [
            ("agent", "Tidal agent", "agent_working_set_bytes"),
            ("cadvisor", "kubelet cAdvisor", "cadvisor_working_set_bytes"),
            (
                "metrics_server",
                "metrics-server",
                "metrics_server_memory_bytes",
            ),
        ] {
            let a = &p["age_seconds"][src];
            w(format!(
                "| {tag} | {label} | {} | {} | {} | {} | {} / {} |",
                mcores(&p["cpu_cores"][src]["mean"]),
                pct(&p["cpu_relative_error"][src]["max"]),
                mib(opt(last, ws)),
                pct(&p["working_set_relative_error"][src]["max"]),
                s(&a["mean"]),
                s(&a["max"])
            ));
        }
    }
    w(String::new());
    w("The idle pod's figures are tiny (about a millicore; its shell wakes every second and forks `sleep`), so its relative errors mostly measure the moments between the reads; the loaded pod is the comparison that counts.".into());
    w(String::new());
}

/// The run's time limit, seconds: install and lock wait, two autoscalers' 180 s per step and
/// the kafka part's polling-cost phase, each replayed trace and its waits (up to 900 s: three
/// workloads' pods, the autoscalers' first metrics, the warm-up, the namespaces' deletion), the
/// vertical and the inplace minutes and 15 s per agreement reading, with room for each part's
/// setup.
pub fn limit(args: &Args) -> u64 {
    240 + args.lock_seconds
        + 2 * args.steps * 180
        + driver::polling_cost::LIMIT.as_secs()
        + driver::replay::TRACES.len() as u64 * (args.replay_seconds + 900)
        + 2 * (args.minutes * 60 + 300)
        + args.readings * 15
        + 120
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    let parts = crate::parts::chosen(&args.parts);
    let limit = limit(&args);
    let what = format!(
        "the peers: {} ({} steps, scale-down window {}s, {} min vertical, {} readings)",
        parts.join(","),
        args.steps,
        args.window,
        args.minutes,
        args.readings
    );
    let settings = driver::Settings {
        replay_seconds: args.replay_seconds,
        steps: args.steps as usize,
        window: args.window,
        readings: args.readings as usize,
        minutes: args.minutes,
        lock_seconds: args.lock_seconds,
        parts: parts.clone(),
    };
    PART.main(
        args.common,
        parts,
        limit,
        what,
        |work, sink, limit| async move { driver::drive(&work, &settings, &sink, limit).await },
    )
    .await
}

/// The lines a renderer writes (for the tests of this module and its tables).
#[cfg(test)]
fn lines(f: impl Fn(&mut dyn FnMut(String))) -> Vec<String> {
    let mut out = Vec::new();
    f(&mut |l| out.push(l));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Value, detail_polling_cost, lines, oom_bump_sentence};

    #[test]
    fn the_oom_sentence_gives_the_bump_and_the_targets_before_and_after_the_kill() {
        let vert = |memory: &str| {
            let snap = |at: f64, t: f64, v: f64| {
                json!({"at_seconds": at, "tidal": {"target": {"memory": t}},
                       "vpa": {"target": {"memory": v}}})
            };
            json!({"request": {"memory": memory}, "oom_at_seconds": 190.0,
                   "snapshots": [snap(60.0, 262_144_000.0, 262_144_000.0),
                                 snap(180.0, 262_144_000.0, 262_144_000.0),
                                 snap(240.0, 503_316_480.0, 498_073_600.0)]})
        };
        // 96Mi: 96 + 100 = 196 > 115.2, under the 250Mi floor.
        let small = oom_bump_sentence(&vert("96Mi"));
        assert!(small.contains("= 196Mi) are both below it"), "{small}");
        // 300Mi: 400 > 360, above it; the targets from the snapshot at 180 s and the last.
        let large = oom_bump_sentence(&vert("300Mi"));
        assert!(large.starts_with(" Each side records"), "{large}");
        assert!(large.contains("= 400Mi (the VPA's rule"), "{large}");
        assert!(
            large.contains("250.00 MiB (Tidal) and 250.00 MiB (the VPA) at the last snapshot before the kill, 480.00 MiB and 475.00 MiB at the last one."),
            "{large}"
        );
        // 1000Mi: 1.2 x 1000 = 1200 > 1100.
        assert!(oom_bump_sentence(&vert("1000Mi")).contains("= 1200Mi"));
        // No OOM seen: no snapshot before it.
        let mut none = vert("300Mi");
        none["oom_at_seconds"] = Value::Null;
        assert!(oom_bump_sentence(&none).contains("were – (Tidal) and – (the VPA)"));
        // Not in Mi: nothing said rather than a wrong figure.
        assert_eq!(oom_bump_sentence(&vert("1Gi")), "");
    }

    #[test]
    fn the_polling_cost_is_a_minute_of_each_window_by_kind_or_not_measured() {
        let win = |keda: u64, tidal: u64| {
            json!({"seconds": 120.0, "keda_requests": keda,
                   "keda_by_request": {"METADATA": keda / 2, "OFFSET_FETCH": keda - keda / 2},
                   "tidal_requests": tidal, "tidal_by_request": {"OFFSET_FETCH": tidal},
                   "keda_operator_cpu_cores": 0.0021})
        };
        let cost = json!({"window_seconds": 120, "both_paused": win(0, 240),
                          "keda-lag": win(24, 240), "keda-lag-1s": win(26, 240),
                          "keda-lag-1s-min0": win(480, 240)});
        let out = lines(|w| detail_polling_cost(&cost, &mut |l| w(l)));
        assert!(
            out[0].contains("`sarama` made 0 requests in 120 s"),
            "{}",
            out[0]
        );
        assert_eq!(
            out[4],
            "| KEDA, `pollingInterval` 30 s (default), `minReplicaCount` 1 | 12 | METADATA 6, OFFSET_FETCH 6 | 2.1m |"
        );
        assert_eq!(
            out[6],
            "| KEDA, `pollingInterval: 1`, `minReplicaCount: 0` (at 0 replicas) | 240 | METADATA 120, OFFSET_FETCH 120 | 2.1m |"
        );
        assert_eq!(
            out[7],
            "| Tidal (its 1 s rounds), during the `pollingInterval` 30 s window | 120 | OFFSET_FETCH 120 | |"
        );
        let failed = lines(|w| detail_polling_cost(&json!({"error": "boom"}), &mut |l| w(l)));
        assert_eq!(
            failed[0],
            "What `pollingInterval` costs KEDA in requests to the broker: not measured in this run (boom)."
        );
        let missing = lines(|w| detail_polling_cost(&Value::Null, &mut |l| w(l)));
        assert!(missing[0].ends_with("not measured in this run."));
    }
}

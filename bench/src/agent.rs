//! `tidal-bench agent`: the agent's side-by-side run of issue #3 and the section "Agent (issue
//! #3)" of bench/RESULTS.md (with the criterion medians `cargo bench -p tidal-agent` left under
//! target/criterion).
//!
//! A synthetic node of 1,000 containers on 100 pods (cgroup v2, systemd driver, written by
//! `tidal-agent`'s `synthetic_tree` example to tmpfs), sampled every 1 s by the release
//! tidal-agent while it, the same binary with no cgroup tree (node series only) and
//! prometheus-node-exporter run side by side and are all scraped every 1 s, with the `Accept`
//! header Prometheus sends. CPU comes from `/proc/<pid>/stat` (and the agent's `sampler`
//! thread), memory from `/proc/<pid>/status`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidal_e2e::ChildGuard;

use crate::drive::{Ended, bounded, note, step};
use crate::parts::{AgentBin, Io};
use crate::process::{clock_ticks_per_second, status_bytes, thread_stat, ticks};
use crate::py::{self, fixed};
use crate::results::Section;
use crate::run::Host;

pub const SECTION: Section = Section {
    name: None,
    heading: "## Agent (issue #3)",
};

const MIB: f64 = 1024.0 * 1024.0;

/// What Prometheus 2.x/3.x sends: OpenMetrics preferred, text 0.0.4 accepted.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,\
                      application/openmetrics-text;version=0.0.1;q=0.4,\
                      text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The length of the side-by-side run, seconds.
    #[arg(long, env = "TIDAL_BENCH_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(5..=600))]
    seconds: u64,
    #[command(flatten)]
    agent: AgentBin,
    /// The synthetic cgroup tree the agent samples.
    #[arg(long, required_unless_present = "from_json")]
    tree: Option<PathBuf>,
    /// prometheus-node-exporter.
    #[arg(long, default_value = "prometheus-node-exporter")]
    node_exporter: PathBuf,
    /// Where `cargo bench` left the criterion results.
    #[arg(long, default_value_os_t = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"))]
    criterion_dir: PathBuf,
    /// --from-json takes the figures of a run as one object (`Measured`).
    #[command(flatten)]
    io: Io,
}

/// One process of the side-by-side run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Process {
    /// utime + stime over the run, in clock ticks.
    pub ticks: u64,
    /// `VmRSS` and `VmHWM` at the end, bytes.
    pub rss: u64,
    pub hwm: u64,
    /// Each scrape's latency, seconds.
    pub latencies: Vec<f64>,
    /// The last scrape: its series (lines that are neither empty nor comments), its bytes and
    /// its `Content-Type`.
    pub series: u64,
    pub bytes: u64,
    pub content_type: String,
}

/// A criterion median and its 95% confidence interval, in nanoseconds.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Estimate {
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
}

/// The criterion medians the section reports (`None`: not measured).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Criterion {
    pub cgroup_v2: Option<Estimate>,
    pub cgroup_v1: Option<Estimate>,
    pub node: Option<Estimate>,
    pub encode_openmetrics: Option<Estimate>,
    pub encode_text: Option<Estimate>,
}

/// Everything the section says, as measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measured {
    pub date: String,
    pub cpus: u64,
    pub kernel: String,
    pub load_start: f64,
    pub load_end: f64,
    /// Clock ticks per second.
    pub hz: u64,
    pub scrapes: u64,
    /// The run's length, seconds.
    pub wall: f64,
    pub agent: Process,
    pub node_only: Process,
    pub exporter: Process,
    /// The agent's `sampler` thread's ticks over the run.
    pub sampler_ticks: u64,
    /// `tidal_agent_sampler_duration_seconds{sampler="cgroup"}` at each scrape.
    pub cgroup_pass: Vec<f64>,
    /// `prometheus-node-exporter --version`, first line.
    pub exporter_version: String,
    pub criterion: Criterion,
}

/// A criterion median from `<dir>/<group>/<name>/new/estimates.json`.
pub fn criterion(dir: &Path, group: &str, name: &str) -> Option<Estimate> {
    let path = dir
        .join(group)
        .join(name)
        .join("new")
        .join("estimates.json");
    let v = py::loads(&std::fs::read_to_string(path).ok()?).ok()?;
    let m = &v["median"];
    let ci = &m["confidence_interval"];
    Some(Estimate {
        point: m["point_estimate"].as_f64()?,
        lower: ci["lower_bound"].as_f64()?,
        upper: ci["upper_bound"].as_f64()?,
    })
}

impl Criterion {
    pub fn read(dir: &Path) -> Self {
        Self {
            cgroup_v2: criterion(dir, "cgroup_round", "v2"),
            cgroup_v1: criterion(dir, "cgroup_round", "v1"),
            node: criterion(dir, "node_round", "proc"),
            encode_openmetrics: criterion(dir, "encode", "openmetrics"),
            encode_text: criterion(dir, "encode", "text_0.0.4"),
        }
    }
}

/// `(ms, lower, upper)` of a criterion median.
fn ms3(e: Option<Estimate>) -> Option<(f64, f64, f64)> {
    e.map(|e| (e.point / 1e6, e.lower / 1e6, e.upper / 1e6))
}

fn ms(v: Option<(f64, f64, f64)>) -> String {
    match v {
        None => "not measured".into(),
        Some((m, lo, hi)) => format!(
            "{} ms (95% CI {}–{})",
            fixed(m, 2),
            fixed(lo, 2),
            fixed(hi, 2)
        ),
    }
}

fn ok(value: Option<f64>, limit: f64) -> &'static str {
    match value {
        Some(v) if !v.is_nan() => {
            if v <= limit {
                "met"
            } else {
                "**missed**"
            }
        }
        _ => "not measured",
    }
}

/// The section (without the blank line after it).
pub fn render(m: &Measured) -> String {
    let hz = m.hz as f64;
    let rounds = m.wall / 1.0; // the agent samples once per --interval-seconds 1
    let (a_cpu, n_cpu, s_cpu) = (
        m.agent.ticks as f64 / hz,
        m.exporter.ticks as f64 / hz,
        m.sampler_ticks as f64 / hz,
    );
    let scrapes = m.scrapes as f64;
    let (a_per, n_per) = (a_cpu / scrapes, n_cpu / scrapes);
    let o_cpu = m.node_only.ticks as f64 / hz;
    let o_per = o_cpu / scrapes;
    let ratio = if n_per > 0.0 { a_per / n_per } else { f64::NAN };
    let o_ratio = if n_per > 0.0 { o_per / n_per } else { f64::NAN };
    let c = &m.criterion;
    let (cg_v2, cg_v1, node) = (ms3(c.cgroup_v2), ms3(c.cgroup_v1), ms3(c.node));
    let (enc_om, enc_txt) = (ms3(c.encode_openmetrics), ms3(c.encode_text));
    let sampler_ms = s_cpu / rounds * 1e3;
    let mib = |b: u64| fixed(b as f64 / MIB, 1);
    let med = |v: &[f64]| fixed(py::median(v) * 1e3, 1);
    let (a, o, n) = (&m.agent, &m.node_only, &m.exporter);
    let per_k = |per: f64, p: &Process| fixed(per * 1e6 / p.series.max(1) as f64, 2);
    let kind = |t: &str| t.split(';').next().unwrap_or_default().to_string();

    let mut out: Vec<String> = Vec::new();
    let mut w = |line: String| out.push(line);
    w(SECTION.heading.into());
    w(String::new());
    w(format!(
        "Generated by `scripts/bench.sh` on {}: {} CPUs, kernel {}, load average {} at the start of the side-by-side run and {} at its end. The machine is shared with other builds, so absolute times are noisy; the ratio comes from one run in which both processes ran at the same time, on the same host, at the same scrape rate.",
        m.date,
        m.cpus,
        m.kernel,
        fixed(m.load_start, 2),
        fixed(m.load_end, 2)
    ));
    w(String::new());
    w("Scenario: a synthetic node of 1,000 container cgroups on 100 pods (10 per pod, the first being the sandbox; Guaranteed/Burstable/BestEffort in turn), cgroup v2 with the systemd driver and containerd names, every interface file a 6.x kernel has (`tidal_agent::synthetic`), written to tmpfs (`/dev/shm`); the real `/proc`; `--interval-seconds 1` and one scrape per second, with the `Accept` header Prometheus sends.".into());
    w(String::new());
    w("| Measure | Target | Measured | |".into());
    w("| --- | --- | --- | --- |".into());
    w(format!(
        "| CPU per sampling round (node + cgroup, live agent: `sampler` thread CPU / rounds) | < 20 ms | {} ms | {} |",
        fixed(sampler_ms, 1),
        ok(Some(sampler_ms), 20.0)
    ));
    // A criterion median against its target, in ms.
    let median = |label: &str, v: Option<(f64, f64, f64)>, target: f64| {
        format!(
            "| {label} | < {target} ms | {} | {} |",
            ms(v),
            ok(v.map(|v| v.0), target)
        )
    };
    w(median(
        "Cgroup sampling round, v2, criterion median (wall time)",
        cg_v2,
        20.0,
    ));
    w(median(
        "Cgroup sampling round, v1 (cgroupfs driver), criterion median",
        cg_v1,
        20.0,
    ));
    w(format!(
        "| Node sampling round over the real `/proc`, criterion median | (part of the round) | {} | |",
        ms(node)
    ));
    w(format!(
        "| Agent RSS at the end (peak `VmHWM`) | < 30 MiB | {} MiB (peak {} MiB) | {} |",
        mib(a.rss),
        mib(a.hwm),
        ok(Some(a.hwm as f64 / MIB), 30.0)
    ));
    w(median(
        "`/metrics` encode, OpenMetrics, criterion median",
        enc_om,
        5.0,
    ));
    w(median(
        "`/metrics` encode, text 0.0.4, criterion median",
        enc_txt,
        5.0,
    ));
    w(format!(
        "| Agent CPU seconds per scrape / node_exporter's (agent on 1,000 containers) | ≤ 0.5 | **{}** ({} ms / {} ms) | {} |",
        fixed(ratio, 2),
        fixed(a_per * 1e3, 1),
        fixed(n_per * 1e3, 1),
        ok(Some(ratio), 0.5)
    ));
    w(format!(
        "| the same, node-only agent (no cgroup tree: node_exporter's job) | ≤ 0.5 | **{}** ({} ms / {} ms) | {} |",
        fixed(o_ratio, 2),
        fixed(o_per * 1e3, 2),
        fixed(n_per * 1e3, 1),
        ok(Some(o_ratio), 0.5)
    ));
    w(String::new());
    w(format!(
        "Side by side, all three running at once, {} scrapes of each over {} s:",
        m.scrapes,
        fixed(m.wall, 1)
    ));
    w(String::new());
    w(
        "| | tidal-agent, 1,000 containers | tidal-agent, node only | prometheus-node-exporter |"
            .into(),
    );
    w("| --- | --- | --- | --- |".into());
    w(format!(
        "| version | release build of this tree | same binary | {} |",
        m.exporter_version
    ));
    w(format!(
        "| CPU seconds over the run (utime + stime) | {} | {} | {} |",
        fixed(a_cpu, 2),
        fixed(o_cpu, 2),
        fixed(n_cpu, 2)
    ));
    w(format!(
        "| CPU per scrape | {} ms | {} ms | {} ms |",
        fixed(a_per * 1e3, 1),
        fixed(o_per * 1e3, 2),
        fixed(n_per * 1e3, 1)
    ));
    w(format!(
        "| of which sampling (`sampler` thread) | {} s ({} ms per round) | | (samples on scrape) |",
        fixed(s_cpu, 2),
        fixed(sampler_ms, 1)
    ));
    w(format!(
        "| CPU cores used on average | {} | {} | {} |",
        fixed(a_cpu / m.wall, 3),
        fixed(o_cpu / m.wall, 4),
        fixed(n_cpu / m.wall, 3)
    ));
    w(format!(
        "| RSS at the end / peak | {} / {} MiB | {} / {} MiB | {} / {} MiB |",
        mib(a.rss),
        mib(a.hwm),
        mib(o.rss),
        mib(o.hwm),
        mib(n.rss),
        mib(n.hwm)
    ));
    w(format!(
        "| scrape latency, median | {} ms | {} ms | {} ms |",
        med(&a.latencies),
        med(&o.latencies),
        med(&n.latencies)
    ));
    w(format!(
        "| series per scrape | {} | {} | {} |",
        a.series, o.series, n.series
    ));
    w(format!(
        "| CPU per scrape per 1,000 series | {} ms | {} ms | {} ms |",
        per_k(a_per, a),
        per_k(o_per, o),
        per_k(n_per, n)
    ));
    w(format!(
        "| bytes per scrape | {} | {} | {} |",
        a.bytes, o.bytes, n.bytes
    ));
    w(format!(
        "| format served | `{}` | same | `{}` |",
        kind(&a.content_type),
        kind(&n.content_type)
    ));
    if !m.cgroup_pass.is_empty() {
        w(format!(
            "| cgroup pass, wall (`tidal_agent_sampler_duration_seconds`), median | {} ms | | |",
            med(&m.cgroup_pass)
        ));
    }
    w(String::new());
    w(format!(
        "Reading the ratio: node_exporter does less than the agent stands in for. It reads `/proc` and `/sys` for node series only and reads no cgroups; the agent replaces node_exporter's node CPU/memory/PSI series *and* cAdvisor's per-container CPU/memory/PSI series for 1,000 containers (about {}× as many series per scrape). The agent's CPU includes sampling every second whether scraped or not. The synthetic files are cheaper to read than a real cgroupfs (whose `memory.stat` the kernel computes on every read), so on a real node with 1,000 containers the cgroup pass costs more than measured here. What a round still costs is mostly one `pread` per file read every round (3 per cgroup on v2, 3,300 here) and, per scrape, writing ~17,000 series: the agent keeps those files open between rounds, which on a real cgroupfs costs about 5.5 KiB of kernel memory per file (~18 MiB here), charged to the agent's cgroup but not in its RSS (`--max-open-files` trades it for CPU; see docs/agent.md). The node-only agent row is the like-for-like comparison: the same binary doing node_exporter's job (node CPU, load, memory, PSI; node_exporter's default collectors export more series).",
        a.series / n.series.max(1)
    ));
    out.join("\n")
}

/// The results file with the section replaced (or appended).
pub fn record(doc: &str, m: &Measured) -> String {
    SECTION.replace(doc, &render(m))
}

/// The series of a scrape: lines neither empty nor comments.
fn series(body: &[u8]) -> u64 {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
        .count() as u64
}

/// `tidal_agent_sampler_duration_seconds{sampler="cgroup"} V` as a line of its own.
fn cgroup_pass(body: &[u8]) -> Option<f64> {
    const PREFIX: &[u8] = b"tidal_agent_sampler_duration_seconds{sampler=\"cgroup\"} ";
    body.split(|b| *b == b'\n').find_map(|l| {
        let v = std::str::from_utf8(l.strip_prefix(PREFIX)?).ok()?;
        (!v.is_empty() && !v.contains(char::is_whitespace))
            .then(|| v.parse().ok())
            .flatten()
    })
}

struct Running {
    child: ChildGuard,
    port: u16,
    log: PathBuf,
    /// The URL path that answers 200 when it is ready.
    ready: &'static str,
    name: &'static str,
}

impl Running {
    fn start(
        name: &'static str,
        cmd: &mut Command,
        port: u16,
        log: PathBuf,
        ready: &'static str,
    ) -> anyhow::Result<Self> {
        let file = std::fs::File::create(&log)?;
        let child = ChildGuard::spawn(cmd.stdout(file.try_clone()?).stderr(file))
            .map_err(|e| anyhow::anyhow!("starting {name}: {e}"))?;
        Ok(Self {
            child,
            port,
            log,
            ready,
            name,
        })
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.0.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            anyhow::bail!("{} exited ({status}); its log:\n{log}", self.name);
        }
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// One scrape: its latency (request to the last byte), body and `Content-Type`.
async fn scrape(http: &reqwest::Client, url: &str) -> anyhow::Result<(f64, Vec<u8>, String)> {
    let t0 = Instant::now();
    let resp = http
        .get(url)
        .header("Accept", ACCEPT)
        .send()
        .await?
        .error_for_status()?;
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.bytes().await?.to_vec();
    Ok((t0.elapsed().as_secs_f64(), body, ctype))
}

/// Starts the three processes, scrapes them every second for `seconds`, and reads their CPU
/// and memory.
async fn measure(args: &Args, agent: &Path, tree: &Path, work: &Path) -> anyhow::Result<Measured> {
    let ne = &args.node_exporter;
    let version = Command::new(ne)
        .arg("--version")
        .output()
        .map_err(|e| anyhow::anyhow!("{}: {e}", ne.display()))?;
    // It prints its version on stderr (older releases) or stdout.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&version.stderr),
        String::from_utf8_lossy(&version.stdout)
    );
    let exporter_version = text.lines().next().unwrap_or_default().to_string();
    let no_cgroups = work.join("no-cgroups");
    std::fs::create_dir_all(&no_cgroups)?;
    let ports = [
        tidal_e2e::free_port()?,
        tidal_e2e::free_port()?,
        tidal_e2e::free_port()?,
    ];
    anyhow::ensure!(
        ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2],
        "could not pick three distinct free ports"
    );
    let agent_cmd = |root: &Path, port: u16, log: &str| {
        let mut c = Command::new(agent);
        c.args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--cgroup-root")
            .arg(root)
            .args(["--proc-root", "/proc", "--interval-seconds", "1"])
            .env_remove("NODE_NAME")
            .env("RUST_LOG", log)
            .stdin(Stdio::null());
        c
    };
    step(format!(
        "starting tidal-agent (127.0.0.1:{}), a node-only tidal-agent (127.0.0.1:{}) and prometheus-node-exporter (127.0.0.1:{})",
        ports[0], ports[1], ports[2]
    ));
    let mut a = Running::start(
        "tidal-agent",
        &mut agent_cmd(tree, ports[0], "warn"),
        ports[0],
        work.join("agent.log"),
        "/readyz",
    )?;
    // The same binary with no cgroup tree: node series only, the same job as node_exporter's.
    let mut o = Running::start(
        "the node-only tidal-agent",
        &mut agent_cmd(&no_cgroups, ports[1], "error"),
        ports[1],
        work.join("agent-node-only.log"),
        "/readyz",
    )?;
    let mut n = Running::start(
        "prometheus-node-exporter",
        Command::new(ne).arg(format!("--web.listen-address=127.0.0.1:{}", ports[2])),
        ports[2],
        work.join("node_exporter.log"),
        "/metrics",
    )?;
    let http = tidal_e2e::http_builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let ready = |r: &Running| {
        let url = r.url(r.ready);
        let http = &http;
        async move {
            http.get(url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    };
    let mut up = false;
    for _ in 0..100 {
        if ready(&a).await && ready(&o).await && ready(&n).await {
            up = true;
            break;
        }
        a.check_alive()?;
        o.check_alive()?;
        n.check_alive()?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(
        up,
        "the agents or prometheus-node-exporter not ready after 10 s"
    );

    step(format!(
        "scraping all three every 1 s for {} s",
        args.seconds
    ));
    let sampler = thread_stat(a.pid(), "sampler")
        .map_err(|_| anyhow::anyhow!("no 'sampler' thread in tidal-agent"))?;
    tokio::time::sleep(Duration::from_secs(2)).await; // let all settle after their first scrape
    let load = || -> f64 {
        crate::run::load1()
            .and_then(|l| l.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let stat = |pid: u32| PathBuf::from(format!("/proc/{pid}/stat"));
    let load_start = load();
    let (a0, n0, s0, o0) = (
        ticks(&stat(a.pid()))?,
        ticks(&stat(n.pid()))?,
        ticks(&sampler)?,
        ticks(&stat(o.pid()))?,
    );
    let w0 = Instant::now();
    let duration = args.seconds;
    let (mut pa, mut pn, mut po) = (Process::default(), Process::default(), Process::default());
    let mut passes = Vec::new();
    let mut scrapes = 0u64;
    let mut next_at = w0;
    let deadline = Duration::from_secs(duration + 5);
    while scrapes < duration && w0.elapsed() < deadline {
        next_at += Duration::from_secs(1);
        for (r, p) in [(&a, &mut pa), (&n, &mut pn), (&o, &mut po)] {
            let (dt, body, ctype) = scrape(&http, &r.url("/metrics")).await?;
            p.latencies.push(dt);
            p.series = series(&body);
            p.bytes = body.len() as u64;
            p.content_type = ctype;
            if std::ptr::eq(r, &a)
                && let Some(v) = cgroup_pass(&body)
            {
                passes.push(v);
            }
        }
        scrapes += 1;
        if scrapes.is_multiple_of(10) {
            note(format!("{scrapes}/{duration} scrapes"));
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(next_at)).await;
    }
    let wall = w0.elapsed().as_secs_f64();
    pa.ticks = ticks(&stat(a.pid()))? - a0;
    pn.ticks = ticks(&stat(n.pid()))? - n0;
    let sampler_ticks = ticks(&sampler)? - s0;
    po.ticks = ticks(&stat(o.pid()))? - o0;
    let load_end = load();
    for (r, p) in [(&a, &mut pa), (&n, &mut pn), (&o, &mut po)] {
        p.rss = status_bytes(r.pid(), "VmRSS");
        p.hwm = status_bytes(r.pid(), "VmHWM");
    }
    let host = Host::this();
    Ok(Measured {
        date: crate::run::utc_minute(),
        cpus: host.cpus,
        kernel: host.kernel,
        load_start,
        load_end,
        hz: clock_ticks_per_second(),
        scrapes,
        wall,
        agent: pa,
        node_only: po,
        exporter: pn,
        sampler_ticks,
        cgroup_pass: passes,
        exporter_version,
        criterion: Criterion::read(&args.criterion_dir),
    })
}

/// The side-by-side run's time limit, seconds: its length and two minutes to start, settle
/// and read the three processes.
pub fn limit(args: &Args) -> u64 {
    args.seconds + 120
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    let mut target = args.io.results.open()?;
    let measured = match &args.io.from_json {
        Some(file) => {
            let text = std::fs::read_to_string(file)?;
            let v = py::loads(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            serde_json::from_value(v).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        }
        None => {
            let agent = args.agent.get()?;
            let Some(tree) = &args.tree else {
                anyhow::bail!("--tree is needed to measure");
            };
            let (work, temporary) = crate::drive::work_dir(args.io.work.clone(), "agent")?;
            let mut measured = None;
            // Bounded; on SIGTERM or SIGINT the run is dropped, and the three processes with it.
            let ended = bounded(Duration::from_secs(limit(&args)), async {
                measured = Some(measure(&args, agent, tree, &work).await?);
                Ok(())
            })
            .await;
            if temporary {
                let _ = std::fs::remove_dir_all(&work);
            }
            match (ended, measured) {
                (Ended::Done, Some(m)) => m,
                (Ended::Interrupted(s), _) => {
                    eprintln!(
                        "tidal-bench agent: interrupted by {s}; the agents and prometheus-node-exporter are stopped; {} is unchanged",
                        target.path().display()
                    );
                    return Ok(ExitCode::from(130));
                }
                (Ended::Failed(reason), _) => anyhow::bail!(
                    "the side-by-side run stopped early ({reason}); {} is unchanged",
                    target.path().display()
                ),
                (Ended::Done, None) => anyhow::bail!("nothing measured"),
            }
        }
    };
    target.update(record(target.doc(), &measured))?;
    target.print(&SECTION);
    if target.writes() {
        note(format!(
            "wrote the agent section of {}",
            target.path().display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_is_read_as_the_script_read_it() {
        let body = b"# HELP a\n# TYPE a gauge\na 1\n\ntidal_agent_sampler_duration_seconds{sampler=\"cgroup\"} 0.0172\ntidal_agent_sampler_duration_seconds{sampler=\"node\"} 0.0001\n";
        assert_eq!(series(body), 3);
        assert_eq!(cgroup_pass(body), Some(0.0172));
        assert_eq!(
            cgroup_pass(b"tidal_agent_sampler_duration_seconds{sampler=\"cgroup\"} 1 2\n"),
            None
        );
        let dir =
            std::env::temp_dir().join(format!("tidal-bench-criterion-{}", std::process::id()));
        let est = dir.join("encode/openmetrics/new");
        std::fs::create_dir_all(&est).expect("a temporary directory");
        std::fs::write(
            est.join("estimates.json"),
            r#"{"mean":{},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":3721000.5,"upper_bound":4830000.0},"point_estimate":4310000.25,"standard_error":1.0}}"#,
        )
        .expect("estimates.json");
        let c = Criterion::read(&dir);
        std::fs::remove_dir_all(&dir).expect("removed");
        assert!(c.cgroup_v2.is_none());
        let e = c.encode_openmetrics.expect("the encode median");
        assert_eq!(
            (e.point, e.lower, e.upper),
            (4310000.25, 3721000.5, 4830000.0)
        );
    }
}

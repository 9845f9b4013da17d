//! The agent on real cgroups (issue #13). Makes `--pods` × `--containers-per-pod` real, empty
//! container cgroups in the kubelet's cgroupfs layout (`kubepods/burstable/pod<uid>/<id>`)
//! under a private parent, `tidal-bench-<pid>`, in every controller the agent reads (v1: `cpu`,
//! `cpuacct`, `memory` and `pids`, made with `mkdir`, so the kernel computes their files such
//! as `memory.stat` on every read; v2: the unified hierarchy). A release `tidal-agent` reads
//! them through a root of symlinks to those parents (so it sees only what this made), samples
//! every second, and the driver measures the CPU of the agent's `sampler` thread and of the
//! whole process per round, from `/proc/<pid>/task/<tid>/stat`. It then stops the agent and
//! removes only the cgroups it made (deepest first, also on failure, and on SIGTERM or SIGINT,
//! which it handles: it then exits with 130).
//!
//! ```text
//! cargo build --release -p tidal-agent --bin tidal-agent -p tidal-bench --bin tidal-bench
//! sudo target/release/tidal-bench cgroups [--pods 100] [--containers-per-pod 10]
//!      [--seconds 30] [--agent target/release/tidal-agent] [--results bench/RESULTS.md]
//! ```
//!
//! Writes the section "Agent on real cgroups (issue #13)" of the results file (replaced if
//! present; `TIDAL_BENCH_WRITE=0` prints it only). Needs root (CI runs as root); bounded by
//! `--seconds` plus about 20 s.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::drive::Signals;
use crate::parts::Results;
use crate::process::{clock_ticks_per_second, thread_stat, ticks};
use crate::results::Section;
use crate::run::load1;

pub const SECTION: Section = Section {
    name: None,
    heading: "## Agent on real cgroups (issue #13)",
};
const V1_CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Pods to make.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Container cgroups per pod.
    #[arg(long = "containers-per-pod", default_value_t = 10)]
    per_pod: usize,
    /// The measured window, seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// The release tidal-agent.
    #[arg(long, env = "TIDAL_BENCH_AGENT_BIN", hide_env_values = true,
          default_value_os_t = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/tidal-agent"))]
    agent: PathBuf,
    #[command(flatten)]
    results: Results,
}

/// The directories this run made, removed deepest first on drop (pass or fail).
struct Made(Vec<PathBuf>);

impl Drop for Made {
    fn drop(&mut self) {
        let mut left = 0;
        for d in self.0.iter().rev() {
            let mut gone = false;
            for _ in 0..50 {
                if !d.exists() || fs::remove_dir(d).is_ok() {
                    gone = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            left += usize::from(!gone);
        }
        if left > 0 {
            eprintln!(
                "    WARNING: {left} cgroups could not be removed (see tidal-bench-* parents)"
            );
        }
    }
}

impl Made {
    fn mkdir(&mut self, p: &Path) -> anyhow::Result<()> {
        fs::create_dir(p).with_context(|| format!("mkdir {}", p.display()))?;
        self.0.push(p.to_path_buf());
        Ok(())
    }
}

/// Kills the agent on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/plain;version=0.0.4\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let (head, body) = body.split_once("\r\n\r\n").context("no HTTP body")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// How long a run may take, seconds: the measured window, and two minutes to make the
/// cgroups, start the agent (15 s at most), settle and remove them.
pub fn limit(a: &Args) -> u64 {
    a.seconds + 120
}

/// Runs the benchmark; on SIGTERM or SIGINT it stops the agent, removes the cgroups it made
/// (and nothing else) and exits with 130.
pub fn main(a: Args) -> anyhow::Result<ExitCode> {
    let signals = Signals::install()?;
    let id = format!("tidal-bench-{}", std::process::id());
    let work = std::env::temp_dir().join(&id);
    match run(a, &signals, &id, &work) {
        Err(_) if let Some(s) = signals.received() => {
            let _ = fs::remove_dir_all(&work);
            eprintln!(
                "tidal-bench cgroups: interrupted by {s}; the agent is stopped and the cgroups it made are removed"
            );
            Ok(ExitCode::from(130))
        }
        result => result,
    }
}

fn run(a: Args, signals: &Signals, id: &str, work: &Path) -> anyhow::Result<ExitCode> {
    let mut target = a.results.open()?;
    if !is_root() {
        bail!("needs root, to make cgroups under /sys/fs/cgroup");
    }
    if !a.agent.is_file() {
        bail!(
            "no agent at {} (cargo build --release -p tidal-agent)",
            a.agent.display()
        );
    }
    let sys = Path::new("/sys/fs/cgroup");
    let v2 = sys.join("cgroup.controllers").is_file();
    fs::create_dir_all(work)?;
    let mut made = Made(Vec::new());
    // The parents, one per hierarchy, and the root the agent reads (symlinks to them on v1).
    let (parents, root): (Vec<PathBuf>, PathBuf) = if v2 {
        let parent = sys.join(id);
        made.mkdir(&parent)?;
        // Only the private parent's own subtree gets controllers: nothing else changes.
        fs::write(parent.join("cgroup.subtree_control"), "+cpu +memory +pids")
            .context("enabling cpu, memory and pids below the private parent")?;
        (vec![parent.clone()], parent)
    } else {
        let root = work.join("root");
        fs::create_dir_all(&root)?;
        let mut parents = Vec::new();
        for c in V1_CONTROLLERS {
            let parent = sys.join(c).join(id);
            made.mkdir(&parent)?;
            std::os::unix::fs::symlink(&parent, root.join(c))?;
            parents.push(parent);
        }
        (parents, root)
    };
    let layout = if v2 {
        "v2"
    } else {
        "v1 (cpu, cpuacct, memory, pids)"
    };
    let containers = a.pods * a.per_pod;
    eprintln!(
        "    making {containers} container cgroups ({} pods x {}), cgroupfs layout, {layout}, under {id}",
        a.pods, a.per_pod
    );
    let started = Instant::now();
    for parent in &parents {
        let qos = parent.join("kubepods").join("burstable");
        made.mkdir(&parent.join("kubepods"))?;
        made.mkdir(&qos)?;
        if v2 {
            for d in [parent.join("kubepods"), qos.clone()] {
                fs::write(d.join("cgroup.subtree_control"), "+cpu +memory +pids")?;
            }
        }
        for p in 0..a.pods {
            signals.check()?;
            let pod = qos.join(format!("pod{:08x}-0000-4000-8000-{:012x}", p, p));
            made.mkdir(&pod)?;
            if v2 {
                fs::write(pod.join("cgroup.subtree_control"), "+cpu +memory +pids")?;
            }
            for c in 0..a.per_pod {
                made.mkdir(&pod.join(format!("{:064x}", p * 1000 + c + 1)))?;
            }
        }
    }
    eprintln!(
        "    made {} cgroups in {:.1}s",
        made.0.len(),
        started.elapsed().as_secs_f64()
    );

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = fs::File::create(work.join("agent.log"))?;
    let agent = Agent(
        Command::new(&a.agent)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--cgroup-root")
            .arg(&root)
            .args(["--proc-root", "/proc", "--interval-seconds", "1"])
            .env_remove("NODE_NAME")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", a.agent.display()))?,
    );
    let pid = agent.0.id();
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(port, "/readyz").is_err() {
        signals.check()?;
        if Instant::now() > deadline {
            bail!(
                "the agent was not ready within 15 s; its log: {}",
                work.join("agent.log").display()
            );
        }
        signals.sleep(Duration::from_millis(100))?;
    }
    // Settle: the first rounds open and cache the files.
    signals.sleep(Duration::from_secs(3))?;
    let body = get(port, "/metrics")?;
    let seen = body
        .lines()
        .filter(|l| l.starts_with("tidal_agent_container_memory_working_set_bytes{"))
        .count();
    if seen < containers {
        bail!("the agent exports {seen} container working sets, not {containers}: not measuring");
    }
    let sampler = thread_stat(pid, "sampler")
        .map_err(|_| anyhow::anyhow!("no 'sampler' thread in the agent (pid {pid})"))?;
    let proc_stat = PathBuf::from(format!("/proc/{pid}/stat"));
    let load_before = load1().unwrap_or_default();
    let (p0, s0, t0) = (ticks(&proc_stat)?, ticks(&sampler)?, Instant::now());
    let mut passes = Vec::new();
    eprintln!(
        "    measuring for {} s (scraping /metrics every second)",
        a.seconds
    );
    while t0.elapsed() < Duration::from_secs(a.seconds) {
        signals.sleep(Duration::from_secs(1))?;
        if let Some(v) = get(port, "/metrics")?
            .lines()
            .find(|l| l.starts_with("tidal_agent_sampler_duration_seconds{sampler=\"cgroup\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        {
            passes.push(v * 1e3);
        }
    }
    let (p1, s1, elapsed) = (ticks(&proc_stat)?, ticks(&sampler)?, t0.elapsed());
    let load_after = load1().unwrap_or_default();
    drop(agent);
    drop(made);
    let _ = fs::remove_dir_all(work);

    let hz = clock_ticks_per_second() as f64;
    let rounds = elapsed.as_secs_f64(); // one round per second
    let sampler_ms = (s1 - s0) as f64 / hz / rounds * 1e3;
    let process_ms = (p1 - p0) as f64 / hz / rounds * 1e3;
    let pass_ms = median(passes);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kernel = kernel.trim();
    let summary = serde_json::json!({
        "containers": containers, "layout": layout, "seconds": elapsed.as_secs_f64(),
        "sampler_cpu_ms_per_round": sampler_ms, "process_cpu_ms_per_round": process_ms,
        "cgroup_pass_wall_ms_median": pass_ms, "load1": [load_before, load_after],
        "kernel": kernel,
    });
    eprintln!("    {summary}");
    let verdict = if sampler_ms < 20.0 { "met" } else { "not met" };
    let text = format!(
        "{}\n\n\
         Scenario: {containers} real, empty container cgroups ({} pods x {}) in the kubelet's \
         cgroupfs layout (`kubepods/burstable/pod<uid>/<id>`), {layout}, made with `mkdir` \
         under a private parent, so the kernel computes every file the agent reads; a \
         release `tidal-agent --interval-seconds 1` reads only them (through a root of \
         symlinks), and `/metrics` is scraped once a second. Kernel {kernel}; load1 \
         {load_before} before, {load_after} after. Clock-tick resolution: {:.0} ms over \
         {:.0} rounds.\n\n\
         | Figure | Target | Measured |\n|---|---|---|\n\
         | CPU per 1 s round, `sampler` thread | < 20 ms ({verdict}) | {sampler_ms:.1} ms |\n\
         | CPU per 1 s round, whole agent (sampling, serving the scrapes) | | {process_ms:.1} ms |\n\
         | cgroup pass, wall (`tidal_agent_sampler_duration_seconds{{sampler=\"cgroup\"}}`), median | | {pass_ms:.1} ms |\n\n\
         Not included: the pod metadata watch (no `NODE_NAME`: the agent labels by pod \
         uid), Kafka lag, and OpenMetrics (the scrape asks for text 0.0.4). The cgroup \
         pass reads, per cgroup and round, `cpuacct.usage`, `cpu.stat`, \
         `memory.usage_in_bytes` and `memory.stat`; limits every 10th round.\n\n\
         Command: `cargo build --release -p tidal-agent --bin tidal-agent -p tidal-bench --bin \
         tidal-bench && target/release/tidal-bench cgroups --seconds {}` (as root; it removes \
         the cgroups it made).",
        SECTION.heading,
        a.pods,
        a.per_pod,
        1e3 / hz,
        rounds,
        a.seconds,
    );
    target.update(SECTION.replace(target.doc(), &text))?;
    target.print(&SECTION);
    if target.writes() {
        eprintln!(
            "    wrote the section \"{}\" of {}",
            SECTION.heading,
            target.path().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

//! Real cgroups on the test machine (needs root; CI runs as root).
//!
//! Creates a pod-shaped cgroup tree (cgroupfs driver layout:
//! `kubepods/burstable/pod<uid>/<container id>`) in every hierarchy the machine mounts
//! (v2 alone, or the v1 `cpu`/`cpuacct`/`memory` controllers plus the hybrid `unified` tree),
//! moves a CPU-burning child and a memory-holding child into two container cgroups, runs the
//! cgroup sampler (library call, against `/sys/fs/cgroup`) and checks:
//! - the burner's CPU rate is 1.0 core ± 15%, and matches the process's own CPU time from
//!   `/proc/<pid>/stat` within 5%;
//! - the holder's working set is ≥ 64 MiB and < 64 MiB + 16 MiB (it allocates and touches
//!   64 MiB after the move, so interpreter start-up memory stays charged elsewhere).
//!
//! Children are killed and the cgroups removed on drop, pass or fail. Bounded to ~15 s.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use tidal_agent::buffer::Buffer;
use tidal_agent::pods::PodMetaByUid;
use tidal_agent::sampler::Sampler;
use tidal_agent::samplers::cgroup::{CgroupSampler, Hierarchy, Mode, Scope};
use tidal_core::schema as s;

const ROOT: &str = "/sys/fs/cgroup";
const MIB: f64 = 1024.0 * 1024.0;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| {
            st.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Kills the child (and waits) on drop.
struct Kid(Child);
impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the created cgroup directories (deepest first) on drop.
struct Cgroups(Vec<PathBuf>);
impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            // Retry briefly: a killed process leaves its cgroup asynchronously.
            for _ in 0..50 {
                if !d.exists() || std::fs::remove_dir(d).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The directories of the mounted hierarchies that pods live in.
fn controller_dirs(h: &Hierarchy) -> Vec<PathBuf> {
    match h {
        Hierarchy::V2 { root } => vec![root.clone()],
        Hierarchy::V1 {
            cpu,
            cpuacct,
            memory,
            unified,
        } => {
            let mut v: Vec<PathBuf> = [cpu, cpuacct, memory, unified]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            v.dedup();
            v
        }
    }
}

fn make_dirs(bases: &[PathBuf], rels: &[PathBuf], guard: &mut Cgroups) {
    for base in bases {
        for rel in rels {
            // Create each component so every new directory is removed afterwards.
            let mut p = base.clone();
            for comp in rel.components() {
                p.push(comp);
                // Another test may create the shared ancestors (`kubepods/…`) concurrently.
                match std::fs::create_dir(&p) {
                    Ok(()) => guard.0.push(p.clone()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => panic!("mkdir {}: {e}", p.display()),
                }
            }
        }
    }
}

fn move_pid(bases: &[PathBuf], rel: &Path, pid: u32) {
    for base in bases {
        let procs = base.join(rel).join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", procs.display()));
    }
}

/// utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat).
fn proc_cpu_seconds(pid: u32) -> f64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let after = &st[st.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

fn read_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).expect("child output");
    line.trim().to_string()
}

fn pseudo_uid() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let h = format!("{:032x}", n ^ (u128::from(std::process::id()) << 64));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[test]
fn real_cgroups_cpu_rate_and_working_set() {
    assert!(
        is_root(),
        "real_cgroups needs root to create cgroups under {ROOT} (CI runs as root); run as root"
    );
    let started = Instant::now();
    let h = Hierarchy::detect(Path::new(ROOT)).expect("a cgroup hierarchy is mounted");
    eprintln!("cgroup mode: {:?}", h.mode());
    let bases = controller_dirs(&h);

    let uid = pseudo_uid();
    let burner_id = format!("{:0>64}", "b1".repeat(8));
    let holder_id = format!("{:0>64}", "a2".repeat(8));
    let pod = PathBuf::from(format!("kubepods/burstable/pod{uid}"));
    let burner_rel = pod.join(&burner_id);
    let holder_rel = pod.join(&holder_id);
    let mut guard = Cgroups(Vec::new());
    make_dirs(
        &bases,
        &[burner_rel.clone(), holder_rel.clone()],
        &mut guard,
    );

    // The children are declared after the guard, so they are killed before the rmdirs.
    let burner = Kid(Command::new("nice")
        .args(["-n", "-20", "sh", "-c", "while :; do :; done"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn burner"));
    move_pid(&bases, &burner_rel, burner.0.id());

    let mut holder = Kid(
        Command::new("python3")
            .args([
                "-c",
                "import sys, time\nprint('ready', flush=True)\nsys.stdin.readline()\nb = bytearray(b'\\x01') * (64 << 20)\nprint('ok', flush=True)\ntime.sleep(30)\n",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3"),
    );
    let mut out = BufReader::new(holder.0.stdout.take().expect("stdout"));
    assert_eq!(read_line(&mut out), "ready");
    move_pid(&bases, &holder_rel, holder.0.id());
    let mut stdin: ChildStdin = holder.0.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("signal holder");
    assert_eq!(read_line(&mut out), "ok");

    let mut sampler = CgroupSampler::new(h.clone(), Scope::Node, PodMetaByUid::default());
    let burn = [("pod_uid", uid.as_str()), ("container", burner_id.as_str())];
    let hold = [("pod_uid", uid.as_str()), ("container", holder_id.as_str())];

    let t0 = Instant::now();
    let p0 = proc_cpu_seconds(burner.0.id());
    let mut b0 = Buffer::new(t0);
    sampler.sample(&mut b0).expect("first sample");
    std::thread::sleep(Duration::from_secs(3));
    let t1 = Instant::now();
    let p1 = proc_cpu_seconds(burner.0.id());
    let mut b1 = Buffer::new(t1);
    sampler.sample(&mut b1).expect("second sample");

    let rate = b1
        .value(s::AGENT_CONTAINER_CPU_USAGE_CORES, &burn)
        .expect("a CPU rate for the burner container");
    let c0 = b0
        .value(s::CONTAINER_CPU_USAGE_SECONDS_TOTAL, &burn)
        .expect("cpu counter t0");
    let c1 = b1
        .value(s::CONTAINER_CPU_USAGE_SECONDS_TOTAL, &burn)
        .expect("cpu counter t1");
    let proc_rate = (p1 - p0) / (t1 - t0).as_secs_f64();
    let ws = b1
        .value(s::CONTAINER_MEMORY_WORKING_SET_BYTES, &hold)
        .expect("working set");
    let rss = b1.value(s::CONTAINER_MEMORY_RSS, &hold).expect("rss");
    eprintln!(
        "burner: agent rate {rate:.4} cores (counter {c0:.3}s -> {c1:.3}s), /proc/<pid>/stat rate {proc_rate:.4}; \
         holder: working set {:.2} MiB, rss {:.2} MiB",
        ws / MIB,
        rss / MIB
    );
    // What the process did is what the kernel accounted to it (/proc/<pid>/stat): the agent
    // must agree with that within 5% (below). How much CPU a busy loop gets depends on what
    // else runs on the machine, so the loop is only required to have really run.
    assert!(
        rate > 0.2,
        "the busy loop barely ran ({rate} cores): the measurement would prove nothing"
    );
    assert!(
        (rate - proc_rate).abs() <= 0.05 * proc_rate.max(0.1),
        "cgroup rate {rate} vs process rate {proc_rate}"
    );
    assert!(ws >= 64.0 * MIB, "working set {} MiB < 64 MiB", ws / MIB);
    assert!(
        ws < 80.0 * MIB,
        "working set {} MiB >= 64 + 16 MiB",
        ws / MIB
    );
    assert!(rss >= 64.0 * MIB, "rss {} MiB", rss / MIB);
    // The pod cgroup aggregates both containers.
    let pod_ws = b1
        .value(
            s::CONTAINER_MEMORY_WORKING_SET_BYTES,
            &[("pod_uid", uid.as_str()), ("container", "")],
        )
        .expect("pod working set");
    assert!(pod_ws >= ws, "pod {pod_ws} < container {ws}");
    if h.mode() != Mode::V1 {
        assert!(
            b1.value(s::CONTAINER_PRESSURE_CPU_WAITING, &burn).is_some(),
            "PSI expected on a v2/hybrid host"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    drop(stdin);
}

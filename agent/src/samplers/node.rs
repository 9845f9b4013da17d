//! The node sampler: CPU seconds by mode, load averages, memory and pressure, from `/proc`.
//!
//! Every path is under `--proc-root`, read through the `procfs` crate's `from_file`
//! constructors (never its `current()` helpers, which hard-code `/proc`).
//!
//! Series (names in `tidal_core::schema`; node_exporter's names, without the `tidal_agent_`
//! prefix, under `--compatible-metric-names`):
//! - `tidal_agent_node_cpu_seconds_total{cpu, mode}`: node_exporter semantics (ticks / `USER_HZ`).
//! - `tidal_agent_node_load1`, `_load5`, `_load15`.
//! - `tidal_agent_node_memory_{total,available,used}_bytes`: `used = MemTotal - MemAvailable`.
//! - `tidal_agent_node_pressure_{cpu,memory,io}_{waiting,stalled}_seconds_total` where
//!   `/proc/pressure` exists.
//! - `tidal_agent_node_cpu_utilization_ratio`: `Δbusy / Δtotal` of the aggregate `cpu` line
//!   between two samples, where `busy = total - idle - iowait` (the `used / total` formula).
//! - `tidal_agent_node_memory_utilization_ratio`: `used / total`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use procfs::prelude::*;
use procfs::{CpuTime, KernelStats, LoadAverage, Meminfo};
use tidal_core::schema;

use crate::buffer::Buffer;
use crate::sampler::{SampleError, Sampler};
use crate::samplers::cgroup;

/// Why the node sampler could not read a file.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: procfs::ProcError,
    },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl NodeError {
    /// The fixed `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            NodeError::Read { source, .. } => match source {
                procfs::ProcError::NotFound(_) => "missing",
                procfs::ProcError::PermissionDenied(_) => "permission_denied",
                procfs::ProcError::Io(..) => "io",
                _ => "parse",
            },
            NodeError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => "missing",
                std::io::ErrorKind::PermissionDenied => "permission_denied",
                _ => "io",
            },
        }
    }
}

/// Samples `/proc/{stat,loadavg,meminfo,pressure/*}` under a root.
#[derive(Debug)]
pub struct NodeSampler {
    proc_root: PathBuf,
    ticks_per_second: f64,
    /// Aggregate (busy, total) CPU seconds of the previous sample.
    prev_cpu: Option<(f64, f64, Instant)>,
}

impl NodeSampler {
    /// A sampler reading under `proc_root` (normally `/proc`).
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        let tps = procfs::ticks_per_second();
        Self {
            proc_root: proc_root.into(),
            ticks_per_second: if tps == 0 { 100.0 } else { tps as f64 },
            prev_cpu: None,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.proc_root.join(rel)
    }

    fn sample_cpu(&mut self, buf: &mut Buffer) -> Result<(), NodeError> {
        let path = self.path("stat");
        // Read once, then parse twice: procfs drops the CPU numbers of the `cpuN` lines, which
        // differ from the line index when a CPU is offline.
        let bytes = std::fs::read(&path).map_err(|source| NodeError::Io {
            path: path.clone(),
            source,
        })?;
        let stat = KernelStats::from_read(bytes.as_slice(), procfs::current_system_info())
            .map_err(|source| NodeError::Read { path, source })?;
        let ids = cpu_ids(&bytes);
        let tps = self.ticks_per_second;
        for (i, cpu) in stat.cpu_time.iter().enumerate() {
            let id = ids.get(i).map_or_else(|| i.to_string(), |n| n.to_string());
            for (mode, ticks) in modes(cpu) {
                buf.counter(
                    schema::NODE_CPU_SECONDS_TOTAL,
                    "Seconds the CPUs spent in each mode.",
                    vec![("cpu", id.clone()), ("mode", mode.to_string())],
                    ticks as f64 / tps,
                );
            }
        }
        let total: u64 = modes(&stat.total).iter().map(|(_, t)| t).sum();
        let idle = stat.total.idle + stat.total.iowait.unwrap_or(0);
        let (busy, total) = (total.saturating_sub(idle) as f64 / tps, total as f64 / tps);
        let now = buf.at();
        if let Some((b0, t0, _)) = self.prev_cpu.replace((busy, total, now))
            && busy >= b0
            && total > t0
        {
            buf.gauge(
                schema::AGENT_NODE_CPU_UTILIZATION,
                "Busy CPU time / all CPU time between the last two samples (0-1).",
                vec![],
                ((busy - b0) / (total - t0)).clamp(0.0, 1.0),
            );
        }
        Ok(())
    }

    fn sample_load(&self, buf: &mut Buffer) -> Result<(), NodeError> {
        let path = self.path("loadavg");
        let load =
            LoadAverage::from_file(&path).map_err(|source| NodeError::Read { path, source })?;
        // Through the decimal text, so 0.63 stays 0.63 rather than f32's 0.6299999952.
        let f = |v: f32| v.to_string().parse::<f64>().unwrap_or(f64::from(v));
        buf.gauge(schema::NODE_LOAD1, "1m load average.", vec![], f(load.one));
        buf.gauge(schema::NODE_LOAD5, "5m load average.", vec![], f(load.five));
        buf.gauge(
            schema::NODE_LOAD15,
            "15m load average.",
            vec![],
            f(load.fifteen),
        );
        Ok(())
    }

    fn sample_memory(&self, buf: &mut Buffer) -> Result<(), NodeError> {
        let path = self.path("meminfo");
        let mem = Meminfo::from_file(&path).map_err(|source| NodeError::Read { path, source })?;
        let total = mem.mem_total as f64;
        // Kernels before 3.14 have no MemAvailable: approximate it as node_exporter users do.
        let available = mem
            .mem_available
            .unwrap_or(mem.mem_free + mem.buffers + mem.cached) as f64;
        let used = (total - available).max(0.0);
        buf.gauge(schema::AGENT_NODE_MEMORY_TOTAL, "MemTotal.", vec![], total);
        buf.gauge(
            schema::AGENT_NODE_MEMORY_AVAILABLE,
            "MemAvailable.",
            vec![],
            available,
        );
        buf.gauge(
            schema::AGENT_NODE_MEMORY_USED,
            "MemTotal - MemAvailable.",
            vec![],
            used,
        );
        if total > 0.0 {
            buf.gauge(
                schema::AGENT_NODE_MEMORY_UTILIZATION,
                "Used / total memory (0-1).",
                vec![],
                (used / total).clamp(0.0, 1.0),
            );
        }
        Ok(())
    }

    /// PSI is optional (kernels without CONFIG_PSI): a missing directory is not an error.
    ///
    /// The files are parsed with [`cgroup::parse_pressure`] (the same format), not `procfs`:
    /// `procfs-core` 0.18 panics on a line that is only `some` or `full` (found by the `proc`
    /// fuzz target).
    fn sample_pressure(&self, buf: &mut Buffer) {
        let dir = self.path("pressure");
        if !dir.is_dir() {
            return;
        }
        let series = [
            ("cpu", schema::NODE_PRESSURE_CPU_WAITING, None),
            (
                "memory",
                schema::NODE_PRESSURE_MEMORY_WAITING,
                Some(schema::NODE_PRESSURE_MEMORY_STALLED),
            ),
            (
                "io",
                schema::NODE_PRESSURE_IO_WAITING,
                Some(schema::NODE_PRESSURE_IO_STALLED),
            ),
        ];
        for (name, waiting, stalled) in series {
            let path = dir.join(name);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    let reason = match e.kind() {
                        std::io::ErrorKind::NotFound => "pressure_missing",
                        std::io::ErrorKind::PermissionDenied => "permission_denied",
                        _ => "io",
                    };
                    buf.error_detail(reason, format!("{}: {e}", path.display()));
                    continue;
                }
            };
            let (some, full) = match cgroup::parse_pressure(&path, &text) {
                Ok(pair) => pair,
                Err(e) => {
                    buf.error_detail("pressure_parse", e);
                    continue;
                }
            };
            // As procfs required: `some` always, `full` for memory and io.
            let (Some(some), Some(full)) = (some, if stalled.is_some() { full } else { some })
            else {
                buf.error_detail(
                    "pressure_parse",
                    format!("{}: missing line", path.display()),
                );
                continue;
            };
            buf.counter(waiting, pressure_help(waiting), vec![], some);
            if let Some(stalled) = stalled {
                buf.counter(stalled, pressure_help(stalled), vec![], full);
            }
        }
    }

    /// The proc root this sampler reads.
    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }
}

fn pressure_help(name: &str) -> &'static str {
    match name {
        schema::NODE_PRESSURE_CPU_WAITING => {
            "Total time in seconds that processes have waited for CPU time."
        }
        schema::NODE_PRESSURE_MEMORY_WAITING => {
            "Total time in seconds that processes have waited for memory."
        }
        schema::NODE_PRESSURE_MEMORY_STALLED => {
            "Total time in seconds no process could make progress due to memory."
        }
        schema::NODE_PRESSURE_IO_WAITING => {
            "Total time in seconds that processes have waited due to IO."
        }
        _ => "Total time in seconds no process could make progress due to IO.",
    }
}

/// The numbers of the `cpuN` lines of `/proc/stat`, in order.
fn cpu_ids(stat: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(stat)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .strip_prefix("cpu")?
                .parse()
                .ok()
        })
        .collect()
}

/// The modes of one `cpu` line, in ticks. `guest` and `guest_nice` are left out: the kernel
/// already counts them inside `user` and `nice` (node_exporter exports them separately as
/// `node_cpu_guest_seconds_total`).
fn modes(c: &CpuTime) -> [(&'static str, u64); 8] {
    [
        ("user", c.user),
        ("nice", c.nice),
        ("system", c.system),
        ("idle", c.idle),
        ("iowait", c.iowait.unwrap_or(0)),
        ("irq", c.irq.unwrap_or(0)),
        ("softirq", c.softirq.unwrap_or(0)),
        ("steal", c.steal.unwrap_or(0)),
    ]
}

impl Sampler for NodeSampler {
    fn name(&self) -> &'static str {
        "node"
    }

    fn sample(&mut self, buf: &mut Buffer) -> Result<(), SampleError> {
        // Each part is independent: a broken file loses its own series only, and the first
        // error fails the run (lowering sampler_success) after the others have been read.
        let cpu = self.sample_cpu(buf);
        let load = self.sample_load(buf);
        let mem = self.sample_memory(buf);
        self.sample_pressure(buf);
        cpu.and(load).and(mem).map_err(SampleError::from)
    }
}

impl From<NodeError> for SampleError {
    fn from(e: NodeError) -> Self {
        SampleError::new(e.reason(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ids_follow_the_line_names() {
        let stat = b"cpu  1 2 3 4\ncpu0 1 1 1 1\ncpu2 1 1 1 1\nintr 5\n";
        assert_eq!(cpu_ids(stat), [0, 2]);
        assert!(cpu_ids(b"garbage").is_empty());
    }

    /// Found by fuzzing (`fuzz/`, target `proc`): a pressure file whose line is only `some`
    /// made `procfs` panic (slicing past the line) inside the sampler.
    #[test]
    fn a_malformed_pressure_file_is_a_sample_error_not_a_panic() {
        let root = std::env::temp_dir().join(format!("tidal-node-psi-{}", std::process::id()));
        let dir = root.join("pressure");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let line = |kind: &str, total: u64| {
            format!("{kind} avg10=0.00 avg60=0.00 avg300=0.00 total={total}\n")
        };
        std::fs::write(dir.join("cpu"), "some\n").expect("write");
        std::fs::write(
            dir.join("memory"),
            line("some", 1_500_000) + &line("full", 500_000),
        )
        .expect("write");
        std::fs::write(dir.join("io"), line("some", 2_000_000)).expect("write");
        let mut buf = Buffer::new(Instant::now());
        NodeSampler::new(&root).sample_pressure(&mut buf);
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(buf.value(schema::NODE_PRESSURE_CPU_WAITING, &[]), None);
        assert_eq!(
            buf.value(schema::NODE_PRESSURE_MEMORY_WAITING, &[]),
            Some(1.5)
        );
        assert_eq!(
            buf.value(schema::NODE_PRESSURE_MEMORY_STALLED, &[]),
            Some(0.5)
        );
        // io without its `full` line: an error, as procfs had it.
        assert_eq!(buf.value(schema::NODE_PRESSURE_IO_WAITING, &[]), None);
        assert_eq!(buf.errors(), ["pressure_parse", "pressure_parse"]);
    }
}

//! Reading one cgroup's interface files: a whole small file at once, or through its held
//! descriptors ([`CachedFile`]), into [`Stats`].

use std::io;
use std::path::{Path, PathBuf};

use crate::fdcache::{CachedFile, FdBudget};

use super::parse::{flat_get, flat_opt, num, parse_cpu_max, parse_pressure, scan_flat};
use super::{CgroupError, CgroupPaths, Hierarchy};

/// Bytes read at once: every cgroup interface file the sampler reads fits.
const READ_CAPACITY: usize = 4096;

/// Reads a whole small file with as few system calls as possible: `open`, one `read`, `close`.
///
/// `std::fs::read_to_string` adds a `statx` for a size hint (cgroupfs reports size 0, which
/// then leads to small probing reads) and a final `read` that returns 0. Here a read that
/// returns less than it was offered is taken as the end of the file: regular files and
/// kernfs/seq_file files (cgroupfs) only return short at their end. A file that fills the
/// buffer is read on to its end.
fn read_file(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut bytes = vec![0u8; READ_CAPACITY];
    let n = loop {
        match file.read(&mut bytes) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    bytes.truncate(n);
    if n == READ_CAPACITY {
        file.read_to_end(&mut bytes)?;
    }
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads a whole small file.
pub(super) fn read(path: &Path) -> Result<String, CgroupError> {
    read_file(path).map_err(|source| CgroupError::Read {
        path: path.into(),
        source,
    })
}

/// What one cgroup reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub cpu_usage_seconds: f64,
    pub cfs_periods: Option<f64>,
    pub cfs_throttled_periods: Option<f64>,
    pub cfs_throttled_seconds: Option<f64>,
    pub memory_usage_bytes: f64,
    pub memory_working_set_bytes: f64,
    pub memory_rss_bytes: f64,
    pub memory_cache_bytes: f64,
    /// CPU limit enforced by the cgroup (quota / period), if any.
    pub cpu_limit_cores: Option<f64>,
    /// Memory limit enforced by the cgroup, if any.
    pub memory_limit_bytes: Option<f64>,
    /// PSI totals in seconds: cpu some/full, memory some/full, io some/full.
    pub pressure: [Option<f64>; 6],
}

/// A v1 memory limit at or above this is "unlimited" (the kernel reports PAGE_COUNTER_MAX).
const V1_UNLIMITED: f64 = (1u64 << 62) as f64;

/// The interface files of one cgroup, each held open while the descriptor budget allows.
/// v2: `cpu.stat`, `memory.current`, `memory.stat` every round; `cpu.max`, `memory.max` and
/// the three PSI files on slow rounds. v1: `cpuacct.usage`, `cpu.stat`,
/// `memory.usage_in_bytes`, `memory.stat`; slow: `cpu.cfs_quota_us`, `cpu.cfs_period_us`,
/// `memory.limit_in_bytes` and the unified tree's PSI files.
pub(super) type Files = [CachedFile; 10];

/// What reading a cgroup needs besides its files: the descriptor budget and a reused buffer.
pub(super) struct Reader<'a> {
    pub(super) budget: &'a FdBudget,
    /// Check held files for an unlink (outside cgroupfs).
    pub(super) verify: bool,
    pub(super) buf: &'a mut Vec<u8>,
}

impl Reader<'_> {
    /// Reads `file` (at `dir/rel/name`) as text; `None` if `optional` and it does not exist.
    /// Files read every round are held open while the budget allows; files read on slow
    /// rounds only are opened and closed (a held cgroupfs file costs ~5.5 KiB of kernel
    /// memory, for a tenth of the saving).
    fn text(
        &mut self,
        file: &mut CachedFile,
        (dir, rel, name): (&Path, &Path, &str),
        optional: bool,
        every_round: bool,
    ) -> Result<Option<&str>, CgroupError> {
        let path = || dir.join(rel).join(name);
        match file.read(path, self.budget, every_round, self.verify, self.buf) {
            Ok(n) => match std::str::from_utf8(&self.buf[..n]) {
                Ok(text) => Ok(Some(text)),
                Err(e) => Err(CgroupError::Read {
                    path: path(),
                    source: io::Error::new(io::ErrorKind::InvalidData, e),
                }),
            },
            Err(e) if optional && e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CgroupError::Read {
                path: path(),
                source,
            }),
        }
    }

    /// A file that must exist.
    fn required(
        &mut self,
        file: &mut CachedFile,
        at: (&Path, &Path, &str),
        every_round: bool,
    ) -> Result<&str, CgroupError> {
        self.text(file, at, false, every_round)
            .map(|t| t.unwrap_or_default())
    }
}

/// Reads the three PSI files under `dir/rel` into `out` (a missing file leaves its pair `None`).
fn read_psi(
    r: &mut Reader<'_>,
    files: [&mut CachedFile; 3],
    dir: &Path,
    rel: &Path,
    out: &mut [Option<f64>; 6],
) -> Result<(), CgroupError> {
    for (i, (name, file)) in ["cpu.pressure", "memory.pressure", "io.pressure"]
        .into_iter()
        .zip(files)
        .enumerate()
    {
        if let Some(text) = r.text(file, (dir, rel, name), true, false)? {
            let (some, full) = parse_pressure(&dir.join(rel).join(name), text)?;
            out[2 * i] = some;
            out[2 * i + 1] = full;
        }
    }
    Ok(())
}

/// Reads the stats of one cgroup (every file), opening and closing each.
pub fn read_stats(h: &Hierarchy, rels: &CgroupPaths) -> Result<Stats, CgroupError> {
    let mut files = Files::default();
    let mut buf = Vec::new();
    let mut r = Reader {
        budget: &FdBudget::with_cap(0),
        verify: true,
        buf: &mut buf,
    };
    read_stats_with(h, rels, true, &mut files, &mut r)
}

/// Reads the stats of one cgroup through its `files`; without `full`, the limit and pressure
/// files are skipped.
pub(super) fn read_stats_with(
    h: &Hierarchy,
    rels: &CgroupPaths,
    full: bool,
    files: &mut Files,
    r: &mut Reader<'_>,
) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    match h {
        Hierarchy::V2 { root } => {
            let [f0, f1, f2, f3, f4, f5, f6, f7, ..] = files;
            let rel = rels.unified.as_path();
            let path = |name: &'static str| move || root.join(rel).join(name);
            let text = r.required(f0, (root, rel, "cpu.stat"), true)?;
            let [usage, periods, throttled, throttled_usec] = scan_flat(
                text,
                ["usage_usec", "nr_periods", "nr_throttled", "throttled_usec"],
            );
            s.cpu_usage_seconds = flat_get(usage, "usage_usec", path("cpu.stat"))? / 1e6;
            s.cfs_periods = flat_opt(periods, path("cpu.stat"))?;
            s.cfs_throttled_periods = flat_opt(throttled, path("cpu.stat"))?;
            s.cfs_throttled_seconds =
                flat_opt(throttled_usec, path("cpu.stat"))?.map(|us| us / 1e6);
            let text = r.required(f1, (root, rel, "memory.current"), true)?;
            s.memory_usage_bytes = num(text, path("memory.current"))?;
            let text = r.required(f2, (root, rel, "memory.stat"), true)?;
            let [inactive, anon, file] = scan_flat(text, ["inactive_file", "anon", "file"]);
            let p = path("memory.stat");
            s.memory_working_set_bytes =
                (s.memory_usage_bytes - flat_get(inactive, "inactive_file", p)?).max(0.0);
            s.memory_rss_bytes = flat_get(anon, "anon", p)?;
            s.memory_cache_bytes = flat_get(file, "file", p)?;
            if !full {
                return Ok(s);
            }
            if let Some(max) = r.text(f3, (root, rel, "cpu.max"), true, false)? {
                s.cpu_limit_cores = parse_cpu_max(&path("cpu.max")(), max)?;
            }
            if let Some(max) = r.text(f4, (root, rel, "memory.max"), true, false)?
                && max.trim() != "max"
            {
                s.memory_limit_bytes = Some(num(max, path("memory.max"))?);
            }
            read_psi(r, [f5, f6, f7], root, rel, &mut s.pressure)?;
        }
        Hierarchy::V1 {
            cpu,
            cpuacct,
            memory,
            unified,
        } => {
            let [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9] = files;
            let acct = cpuacct.as_ref().ok_or(CgroupError::NoHierarchy {
                root: PathBuf::from("cpuacct"),
            })?;
            let rel = rels.cpuacct.as_path();
            let text = r.required(f0, (acct, rel, "cpuacct.usage"), true)?;
            s.cpu_usage_seconds = num(text, || acct.join(rel).join("cpuacct.usage"))? / 1e9;
            if let Some(cpu) = cpu {
                let rel = rels.cpu.as_path();
                let path = |name: &'static str| move || cpu.join(rel).join(name);
                if let Some(text) = r.text(f1, (cpu, rel, "cpu.stat"), true, true)? {
                    let [periods, throttled, time] =
                        scan_flat(text, ["nr_periods", "nr_throttled", "throttled_time"]);
                    let p = path("cpu.stat");
                    s.cfs_periods = flat_opt(periods, p)?;
                    s.cfs_throttled_periods = flat_opt(throttled, p)?;
                    s.cfs_throttled_seconds = flat_opt(time, p)?.map(|ns| ns / 1e9);
                }
                if full {
                    // -1 means no quota.
                    let quota = r
                        .text(f4, (cpu, rel, "cpu.cfs_quota_us"), true, false)?
                        .map(|q| q.trim().parse::<i64>().ok().filter(|q| *q > 0));
                    let period = r.text(f5, (cpu, rel, "cpu.cfs_period_us"), true, false)?;
                    if let (Some(quota), Some(period)) = (quota, period) {
                        let period = num(period, path("cpu.cfs_period_us"))?;
                        if let Some(quota) = quota
                            && period > 0.0
                        {
                            s.cpu_limit_cores = Some(quota as f64 / period);
                        }
                    }
                }
            }
            let mem = memory.as_ref().ok_or(CgroupError::NoHierarchy {
                root: PathBuf::from("memory"),
            })?;
            let rel = rels.memory.as_path();
            let path = |name: &'static str| move || mem.join(rel).join(name);
            let text = r.required(f2, (mem, rel, "memory.usage_in_bytes"), true)?;
            s.memory_usage_bytes = num(text, path("memory.usage_in_bytes"))?;
            let text = r.required(f3, (mem, rel, "memory.stat"), true)?;
            let [inactive, rss, cache] =
                scan_flat(text, ["total_inactive_file", "total_rss", "total_cache"]);
            let p = path("memory.stat");
            s.memory_working_set_bytes =
                (s.memory_usage_bytes - flat_get(inactive, "total_inactive_file", p)?).max(0.0);
            s.memory_rss_bytes = flat_get(rss, "total_rss", p)?;
            s.memory_cache_bytes = flat_get(cache, "total_cache", p)?;
            if !full {
                return Ok(s);
            }
            if let Some(l) = r.text(f6, (mem, rel, "memory.limit_in_bytes"), true, false)? {
                let l = num(l, path("memory.limit_in_bytes"))?;
                s.memory_limit_bytes = (l < V1_UNLIMITED).then_some(l);
            }
            if let Some(u) = unified {
                read_psi(r, [f7, f8, f9], u, &rels.unified, &mut s.pressure)?;
            }
        }
    }
    Ok(s)
}

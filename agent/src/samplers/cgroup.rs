//! The cgroup sampler: CPU, throttling, memory and pressure of every pod and container on
//! the node (or, in sidecar mode, of the agent's own pod), with kubelet/cAdvisor semantics.
//!
//! **Hierarchies.** [`Hierarchy::detect`] looks at `--cgroup-root` once, at start:
//! - v2 (unified): `<root>/cgroup.controllers` exists.
//! - v1: `<root>/{cpu,cpuacct,cpu,cpuacct,memory}` controller directories.
//! - hybrid: v1 plus a cgroup2 mount at `<root>/unified`, read only for pressure (PSI).
//!
//! **Pod layout.** Both kubelet cgroup drivers and the three runtimes' naming are recognised:
//! - cgroupfs: `kubepods/{burstable,besteffort}/pod<uid>/<id>`, guaranteed `kubepods/pod<uid>/<id>`;
//! - systemd: `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/<scope>`,
//!   guaranteed `kubepods.slice/kubepods-pod<uid_>.slice/<scope>`, where `<scope>` is
//!   `cri-containerd-<id>.scope`, `crio-<id>.scope` or `docker-<id>.scope`.
//!
//! **Formulas** (anchors: kubelet `/metrics/resource`, cAdvisor):
//! - CPU seconds: v2 `cpu.stat usage_usec / 1e6`; v1 `cpuacct.usage / 1e9`.
//! - Throttling: v2 `cpu.stat nr_periods, nr_throttled, throttled_usec / 1e6`;
//!   v1 `cpu.stat nr_periods, nr_throttled, throttled_time / 1e9`.
//! - Working set: `max(0, usage - inactive_file)`: v2 `memory.current - memory.stat inactive_file`,
//!   v1 `memory.usage_in_bytes - memory.stat total_inactive_file`.
//! - RSS / cache: v2 `anon` / `file`; v1 `total_rss` / `total_cache`.
//! - Pressure: `total=` (µs) of the `some`/`full` lines of `{cpu,memory,io}.pressure`.
//! - Cadence: counters and memory every round; limits and pressure every
//!   [`SLOW_EVERY_ROUNDS`] rounds per cgroup (staggered), cached in between.
//! - CPU rate: Δusage / Δt between two samples (a counter reset skips the interval).
//! - Utilization: rate / request, rate / limit, working set / request, working set / limit.
//!   Limits come from the pod spec, else from the cgroup (`cpu.max`, `cpu.cfs_quota_us /
//!   cpu.cfs_period_us`, `memory.max`, `memory.limit_in_bytes`).
//!
//! Pod-level series carry `container=""`, as cAdvisor's do. A container that vanishes between
//! listing and reading is counted in `tidal_agent_sample_errors_total{reason="vanished"}` and
//! skipped; it never fails the run.

use std::io;
use std::path::{Path, PathBuf};

use tidal_core::schema;

use crate::buffer::{Buffer, Labels};
use crate::pods::{ContainerMeta, PodIndex, PodMeta};
use crate::rate::RateMap;
use crate::sampler::{SampleError, Sampler};

/// Why the cgroup sampler (or one cgroup of it) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy found under {root}")]
    NoHierarchy { root: PathBuf },
    #[error("listing {path}: {source}")]
    List { path: PathBuf, source: io::Error },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: key {key} is missing")]
    MissingKey { path: PathBuf, key: &'static str },
    #[error("{path}: {value:?} is not a number")]
    NotANumber { path: PathBuf, value: String },
    #[error("{path}: no line for the cgroup hierarchy in use")]
    SelfCgroup { path: PathBuf },
}

impl CgroupError {
    /// The fixed `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            CgroupError::NoHierarchy { .. } => "no_hierarchy",
            CgroupError::List { source, .. } | CgroupError::Read { source, .. } => {
                match source.kind() {
                    io::ErrorKind::NotFound => "vanished",
                    io::ErrorKind::PermissionDenied => "permission_denied",
                    _ => "io",
                }
            }
            CgroupError::MissingKey { .. } => "missing_key",
            CgroupError::NotANumber { .. } => "not_a_number",
            CgroupError::SelfCgroup { .. } => "self_cgroup_unknown",
        }
    }
}

/// Which cgroup version the host runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    V1,
    V2,
    Hybrid,
}

/// The mounted hierarchies the sampler reads, all under `--cgroup-root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v2: one tree.
    V2 { root: PathBuf },
    /// cgroup v1 controllers (the same directory when co-mounted as `cpu,cpuacct`), plus the
    /// cgroup2 tree of a hybrid host.
    V1 {
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
        memory: Option<PathBuf>,
        unified: Option<PathBuf>,
    },
}

fn first_dir(root: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| root.join(n)).find(|p| p.is_dir())
}

impl Hierarchy {
    /// Detects v1, v2 or hybrid under `root`.
    pub fn detect(root: &Path) -> Result<Self, CgroupError> {
        if root.join("cgroup.controllers").is_file() {
            return Ok(Hierarchy::V2 {
                root: root.to_path_buf(),
            });
        }
        let cpu = first_dir(root, &["cpu,cpuacct", "cpuacct,cpu", "cpu"]);
        let cpuacct = first_dir(root, &["cpu,cpuacct", "cpuacct,cpu", "cpuacct"]);
        let memory = first_dir(root, &["memory"]);
        if cpu.is_none() && cpuacct.is_none() && memory.is_none() {
            return Err(CgroupError::NoHierarchy {
                root: root.to_path_buf(),
            });
        }
        let unified = Some(root.join("unified")).filter(|u| u.join("cgroup.controllers").is_file());
        Ok(Hierarchy::V1 {
            cpu,
            cpuacct,
            memory,
            unified,
        })
    }

    /// v1, v2 or hybrid.
    pub fn mode(&self) -> Mode {
        match self {
            Hierarchy::V2 { .. } => Mode::V2,
            Hierarchy::V1 {
                unified: Some(_), ..
            } => Mode::Hybrid,
            Hierarchy::V1 { .. } => Mode::V1,
        }
    }

    /// The tree that is walked to find pods (memory, else cpuacct, else cpu on v1).
    fn walk_root(&self) -> &Path {
        match self {
            Hierarchy::V2 { root } => root,
            Hierarchy::V1 {
                cpu,
                cpuacct,
                memory,
                ..
            } => memory
                .as_deref()
                .or(cpuacct.as_deref())
                .or(cpu.as_deref())
                .unwrap_or(Path::new("/")),
        }
    }

    /// The controller whose line of `/proc/self/cgroup` locates the walked tree (`""` is the
    /// v2 line, `0::<path>`).
    fn self_cgroup_controller(&self) -> &'static str {
        match self {
            Hierarchy::V2 { .. } => "",
            Hierarchy::V1 {
                memory: Some(_), ..
            } => "memory",
            Hierarchy::V1 {
                cpuacct: Some(_), ..
            } => "cpuacct",
            Hierarchy::V1 { .. } => "cpu",
        }
    }
}

/// Kubernetes QoS class, from the cgroup path (the API's `status.qosClass` wins when known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        }
    }
}

/// A pod cgroup found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCgroup {
    /// Path relative to each hierarchy's root.
    pub rel: PathBuf,
    pub uid: String,
    pub qos: Qos,
    pub containers: Vec<ContainerCgroup>,
}

/// A container cgroup found under a pod cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerCgroup {
    pub rel: PathBuf,
    /// The runtime's container ID (as in `status.containerStatuses[].containerID`).
    pub id: String,
}

/// Parses a pod directory name: `pod<uid>` or `kubepods[-<qos>]-pod<uid_>.slice`.
pub fn parse_pod_dir(name: &str) -> Option<String> {
    if let Some(slice) = name.strip_suffix(".slice") {
        let (_, uid) = slice.rsplit_once("-pod")?;
        // `kubepods-…` or, when the kubelet runs under a prefix (kind), `kubelet-kubepods-…`.
        let ok = slice.starts_with("kubepods") || slice.starts_with("kubelet-kubepods");
        return (!uid.is_empty() && ok).then(|| uid.replace('_', "-"));
    }
    let uid = name.strip_prefix("pod")?;
    (!uid.is_empty() && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .then(|| uid.to_string())
}

/// Parses a container directory name: `<id>`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `docker-<id>.scope` (or the same without `.scope`). CRI-O's `crio-conmon-<id>` monitor
/// cgroups are not containers.
pub fn parse_container_dir(name: &str) -> Option<String> {
    let base = name.strip_suffix(".scope").unwrap_or(name);
    if base.starts_with("crio-conmon-") {
        return None;
    }
    let id = ["cri-containerd-", "crio-", "docker-"]
        .iter()
        .find_map(|p| base.strip_prefix(p))
        .unwrap_or(base);
    (id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

fn qos_dir(name: &str) -> Option<Qos> {
    match name {
        "burstable" | "kubepods-burstable.slice" | "kubelet-kubepods-burstable.slice" => {
            Some(Qos::Burstable)
        }
        "besteffort" | "kubepods-besteffort.slice" | "kubelet-kubepods-besteffort.slice" => {
            Some(Qos::BestEffort)
        }
        _ => None,
    }
}

fn subdirs(dir: &Path) -> Result<Vec<String>, CgroupError> {
    let rd = std::fs::read_dir(dir).map_err(|source| CgroupError::List {
        path: dir.into(),
        source,
    })?;
    let mut out: Vec<String> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    Ok(out)
}

/// Lists the containers of the pod cgroup at `root/rel`.
fn containers_of(root: &Path, rel: &Path) -> Result<Vec<ContainerCgroup>, CgroupError> {
    Ok(subdirs(&root.join(rel))?
        .into_iter()
        .filter_map(|n| {
            parse_container_dir(&n).map(|id| ContainerCgroup {
                rel: rel.join(&n),
                id,
            })
        })
        .collect())
}

/// Where the kubelet puts `kubepods`, relative to a hierarchy root: the default for each
/// driver, and the same under a `kubelet` parent (kind, kubelet `--cgroup-root=/kubelet`).
pub const KUBEPODS_ROOTS: [&str; 4] = [
    "kubepods.slice",
    "kubepods",
    "kubelet.slice/kubelet-kubepods.slice",
    "kubelet/kubepods",
];

/// Finds every pod cgroup under `root` (a hierarchy root). A pod that vanishes while being
/// listed is skipped and counted in `errors`.
pub fn discover(root: &Path, errors: &mut Vec<CgroupError>) -> Vec<PodCgroup> {
    let mut pods = Vec::new();
    for top in KUBEPODS_ROOTS {
        let top_rel = PathBuf::from(top);
        if !root.join(&top_rel).is_dir() {
            continue;
        }
        let children = match subdirs(&root.join(&top_rel)) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut candidates: Vec<(PathBuf, String, Qos)> = Vec::new();
        for child in children {
            if let Some(uid) = parse_pod_dir(&child) {
                candidates.push((top_rel.join(&child), uid, Qos::Guaranteed));
            } else if let Some(qos) = qos_dir(&child) {
                let qrel = top_rel.join(&child);
                match subdirs(&root.join(&qrel)) {
                    Ok(grand) => candidates.extend(
                        grand
                            .into_iter()
                            .filter_map(|g| parse_pod_dir(&g).map(|uid| (qrel.join(&g), uid, qos))),
                    ),
                    Err(e) => errors.push(e),
                }
            }
        }
        for (rel, uid, qos) in candidates {
            match containers_of(root, &rel) {
                Ok(containers) => pods.push(PodCgroup {
                    rel,
                    uid,
                    qos,
                    containers,
                }),
                Err(e) => errors.push(e),
            }
        }
    }
    pods
}

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
fn read(path: &Path) -> Result<String, CgroupError> {
    read_file(path).map_err(|source| CgroupError::Read {
        path: path.into(),
        source,
    })
}

/// Like [`read`], but a missing file is `None` (optional interfaces: PSI, throttling).
fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match read_file(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.into(),
            source,
        }),
    }
}

fn number(path: &Path, s: &str) -> Result<f64, CgroupError> {
    s.trim()
        .parse::<u64>()
        .map(|v| v as f64)
        .map_err(|_| CgroupError::NotANumber {
            path: path.into(),
            value: s.trim().to_string(),
        })
}

/// Reads a file holding one unsigned integer.
fn read_number(path: &Path) -> Result<f64, CgroupError> {
    number(path, &read(path)?)
}

/// A flat-keyed file (`key value` per line: `cpu.stat`, `memory.stat`).
///
/// Keys are looked up by scanning the text for lines that start with `<key> `: the sampler
/// wants three or four keys of a file of up to ~60 lines, which is cheaper than splitting and
/// hashing every line. As with a map built from the lines, a repeated key yields its last value.
#[derive(Debug)]
pub struct Flat<'a> {
    path: &'a Path,
    text: &'a str,
}

impl<'a> Flat<'a> {
    /// Parses `text` read from `path`.
    pub fn parse(path: &'a Path, text: &'a str) -> Self {
        Self { path, text }
    }

    /// A key that must be there.
    pub fn get(&self, key: &'static str) -> Result<f64, CgroupError> {
        self.opt(key)?.ok_or(CgroupError::MissingKey {
            path: self.path.into(),
            key,
        })
    }

    /// A key that may be absent (but, if present, must be a number).
    pub fn opt(&self, key: &'static str) -> Result<Option<f64>, CgroupError> {
        self.text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .map(|v| number(self.path, v))
            .transpose()
    }
}

/// `total=` (µs) of the `some` and `full` lines of a PSI file, in seconds.
pub fn parse_pressure(path: &Path, text: &str) -> Result<(Option<f64>, Option<f64>), CgroupError> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let which = parts.next();
        let total = parts.find_map(|p| p.strip_prefix("total="));
        let Some(total) = total else { continue };
        let secs = number(path, total)? / 1e6;
        match which {
            Some("some") => some = Some(secs),
            Some("full") => full = Some(secs),
            _ => {}
        }
    }
    Ok((some, full))
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

/// Paths of one cgroup in each hierarchy (equal for discovered pods; may differ per
/// controller for the agent's own cgroup on v1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rels {
    pub cpu: PathBuf,
    pub cpuacct: PathBuf,
    pub memory: PathBuf,
    pub unified: PathBuf,
}

impl Rels {
    /// The same relative path in every hierarchy.
    pub fn same(rel: &Path) -> Self {
        Self {
            cpu: rel.into(),
            cpuacct: rel.into(),
            memory: rel.into(),
            unified: rel.into(),
        }
    }
}

fn read_psi(dir: &Path, out: &mut [Option<f64>; 6]) -> Result<(), CgroupError> {
    for (i, file) in ["cpu.pressure", "memory.pressure", "io.pressure"]
        .iter()
        .enumerate()
    {
        let path = dir.join(file);
        if let Some(text) = read_opt(&path)? {
            let (some, full) = parse_pressure(&path, &text)?;
            out[2 * i] = some;
            out[2 * i + 1] = full;
        }
    }
    Ok(())
}

/// How often (in rounds) a cgroup's slow-moving files — limits and pressure — are re-read.
/// Counters and memory are read every round; limits change only on a resize and PSI totals
/// are counters whose rates need no 1s resolution. Each cgroup gets a fixed offset so the
/// slow reads spread evenly over the rounds.
pub const SLOW_EVERY_ROUNDS: u64 = 10;

/// The slow-moving part of [`Stats`], cached between full reads.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Slow {
    cpu_limit_cores: Option<f64>,
    memory_limit_bytes: Option<f64>,
    pressure: [Option<f64>; 6],
}

impl Slow {
    fn of(s: &Stats) -> Self {
        Self {
            cpu_limit_cores: s.cpu_limit_cores,
            memory_limit_bytes: s.memory_limit_bytes,
            pressure: s.pressure,
        }
    }
    fn apply(&self, s: &mut Stats) {
        s.cpu_limit_cores = self.cpu_limit_cores;
        s.memory_limit_bytes = self.memory_limit_bytes;
        s.pressure = self.pressure;
    }
}

/// Reads the stats of one cgroup (every file).
pub fn read_stats(h: &Hierarchy, rels: &Rels) -> Result<Stats, CgroupError> {
    read_stats_with(h, rels, true)
}

/// Reads the stats of one cgroup; without `full`, the limit and pressure files are skipped.
fn read_stats_with(h: &Hierarchy, rels: &Rels, full: bool) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    match h {
        Hierarchy::V2 { root } => {
            let dir = root.join(&rels.unified);
            let path = dir.join("cpu.stat");
            let text = read(&path)?;
            let cpu = Flat::parse(&path, &text);
            s.cpu_usage_seconds = cpu.get("usage_usec")? / 1e6;
            s.cfs_periods = cpu.opt("nr_periods")?;
            s.cfs_throttled_periods = cpu.opt("nr_throttled")?;
            s.cfs_throttled_seconds = cpu.opt("throttled_usec")?.map(|us| us / 1e6);
            s.memory_usage_bytes = read_number(&dir.join("memory.current"))?;
            let path = dir.join("memory.stat");
            let text = read(&path)?;
            let mem = Flat::parse(&path, &text);
            s.memory_working_set_bytes =
                (s.memory_usage_bytes - mem.get("inactive_file")?).max(0.0);
            s.memory_rss_bytes = mem.get("anon")?;
            s.memory_cache_bytes = mem.get("file")?;
            if !full {
                return Ok(s);
            }
            if let Some(max) = read_opt(&dir.join("cpu.max"))? {
                s.cpu_limit_cores = parse_cpu_max(&dir.join("cpu.max"), &max)?;
            }
            if let Some(max) = read_opt(&dir.join("memory.max"))?
                && max.trim() != "max"
            {
                s.memory_limit_bytes = Some(number(&dir.join("memory.max"), &max)?);
            }
            read_psi(&dir, &mut s.pressure)?;
        }
        Hierarchy::V1 {
            cpu,
            cpuacct,
            memory,
            unified,
        } => {
            let acct = cpuacct.as_ref().ok_or(CgroupError::NoHierarchy {
                root: PathBuf::from("cpuacct"),
            })?;
            s.cpu_usage_seconds =
                read_number(&acct.join(&rels.cpuacct).join("cpuacct.usage"))? / 1e9;
            if let Some(cpu) = cpu {
                let dir = cpu.join(&rels.cpu);
                let path = dir.join("cpu.stat");
                if let Some(text) = read_opt(&path)? {
                    let st = Flat::parse(&path, &text);
                    s.cfs_periods = st.opt("nr_periods")?;
                    s.cfs_throttled_periods = st.opt("nr_throttled")?;
                    s.cfs_throttled_seconds = st.opt("throttled_time")?.map(|ns| ns / 1e9);
                }
                if !full {
                    // limits: read on full rounds only
                } else if let (Some(q), Some(p)) = (
                    read_opt(&dir.join("cpu.cfs_quota_us"))?,
                    read_opt(&dir.join("cpu.cfs_period_us"))?,
                ) {
                    // -1 means no quota.
                    let quota = q.trim().parse::<i64>().ok().filter(|q| *q > 0);
                    let period = number(&dir.join("cpu.cfs_period_us"), &p)?;
                    if let Some(quota) = quota
                        && period > 0.0
                    {
                        s.cpu_limit_cores = Some(quota as f64 / period);
                    }
                }
            }
            let mem = memory.as_ref().ok_or(CgroupError::NoHierarchy {
                root: PathBuf::from("memory"),
            })?;
            let dir = mem.join(&rels.memory);
            s.memory_usage_bytes = read_number(&dir.join("memory.usage_in_bytes"))?;
            let path = dir.join("memory.stat");
            let text = read(&path)?;
            let st = Flat::parse(&path, &text);
            s.memory_working_set_bytes =
                (s.memory_usage_bytes - st.get("total_inactive_file")?).max(0.0);
            s.memory_rss_bytes = st.get("total_rss")?;
            s.memory_cache_bytes = st.get("total_cache")?;
            if !full {
                return Ok(s);
            }
            if let Some(l) = read_opt(&dir.join("memory.limit_in_bytes"))? {
                let l = number(&dir.join("memory.limit_in_bytes"), &l)?;
                s.memory_limit_bytes = (l < V1_UNLIMITED).then_some(l);
            }
            if let Some(u) = unified {
                read_psi(&u.join(&rels.unified), &mut s.pressure)?;
            }
        }
    }
    Ok(s)
}

/// `cpu.max`: `max <period>` (no limit) or `<quota> <period>`.
fn parse_cpu_max(path: &Path, text: &str) -> Result<Option<f64>, CgroupError> {
    let mut it = text.split_whitespace();
    let (Some(q), Some(p)) = (it.next(), it.next()) else {
        return Err(CgroupError::NotANumber {
            path: path.into(),
            value: text.trim().into(),
        });
    };
    if q == "max" {
        return Ok(None);
    }
    let (q, p) = (number(path, q)?, number(path, p)?);
    Ok((p > 0.0).then_some(q / p))
}

/// Which cgroups the sampler covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every pod under `kubepods` (DaemonSet).
    Node,
    /// Only the agent's own pod, found from `<proc-root>/self/cgroup` (sidecar).
    OwnPod { proc_root: PathBuf },
}

/// One cgroup to read in a pass, with its identity.
#[derive(Clone, Debug)]
struct Target {
    rels: Rels,
    uid: String,
    qos: Option<Qos>,
    /// `None` for the pod-level cgroup.
    container_id: Option<String>,
    /// Outside Kubernetes: the cgroup path, used as the `container` label.
    path_label: Option<String>,
}

/// Reads `/proc/self/cgroup` and returns the paths of this process's cgroup per controller.
pub fn self_cgroup(proc_root: &Path, h: &Hierarchy) -> Result<Rels, CgroupError> {
    let path = proc_root.join("self").join("cgroup");
    let text = read(&path)?;
    // Lines are `id:controllers:path`; v2 is `0::path`.
    let find = |ctrl: &str| -> Option<PathBuf> {
        text.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, p) = (parts.next()?, parts.next()?, parts.next()?);
            let hit = if ctrl.is_empty() {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == ctrl)
            };
            hit.then(|| PathBuf::from(p.trim_start_matches('/')))
        })
    };
    let main =
        find(h.self_cgroup_controller()).ok_or(CgroupError::SelfCgroup { path: path.clone() })?;
    Ok(match h {
        Hierarchy::V2 { .. } => Rels::same(&main),
        Hierarchy::V1 { .. } => Rels {
            cpu: find("cpu").unwrap_or_else(|| main.clone()),
            cpuacct: find("cpuacct").unwrap_or_else(|| main.clone()),
            memory: find("memory").unwrap_or_else(|| main.clone()),
            unified: find("").unwrap_or_else(|| main.clone()),
        },
    })
}

/// Samples pod and container cgroups.
#[derive(Debug)]
pub struct CgroupSampler {
    hierarchy: Hierarchy,
    scope: Scope,
    pods: PodIndex,
    // Keyed by the path's bytes: hashing a `Path` walks its components, which for deep cgroup
    // paths cost ~10% of a round.
    cpu_rates: RateMap<std::ffi::OsString>,
    /// Per cgroup: its offset among the rounds and its last slow values.
    slow: std::collections::HashMap<std::ffi::OsString, (u64, Slow, bool)>,
    round: u64,
    next_offset: u64,
}

const HELP_CPU: &str = "Cumulative cpu time consumed in seconds.";

impl CgroupSampler {
    /// A sampler over `hierarchy`, labelling from `pods`.
    pub fn new(hierarchy: Hierarchy, scope: Scope, pods: PodIndex) -> Self {
        Self {
            hierarchy,
            scope,
            pods,
            cpu_rates: RateMap::default(),
            slow: std::collections::HashMap::new(),
            round: 0,
            next_offset: 0,
        }
    }

    /// The detected hierarchy.
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    fn targets_of(pod: &PodCgroup) -> impl Iterator<Item = Target> + '_ {
        std::iter::once(Target {
            rels: Rels::same(&pod.rel),
            uid: pod.uid.clone(),
            qos: Some(pod.qos),
            container_id: None,
            path_label: None,
        })
        .chain(pod.containers.iter().map(|c| Target {
            rels: Rels::same(&c.rel),
            uid: pod.uid.clone(),
            qos: Some(pod.qos),
            container_id: Some(c.id.clone()),
            path_label: None,
        }))
    }

    fn targets(&self, buf: &mut Buffer) -> Result<Vec<Target>, CgroupError> {
        let root = self.hierarchy.walk_root().to_path_buf();
        match &self.scope {
            Scope::Node => {
                let mut errors = Vec::new();
                let pods = discover(&root, &mut errors);
                for e in &errors {
                    buf.error_detail(e.reason(), e);
                }
                Ok(pods.iter().flat_map(Self::targets_of).collect())
            }
            Scope::OwnPod { proc_root } => {
                let own = self_cgroup(proc_root, &self.hierarchy)?;
                let main = match &self.hierarchy {
                    Hierarchy::V2 { .. } => own.unified.clone(),
                    Hierarchy::V1 {
                        memory: Some(_), ..
                    } => own.memory.clone(),
                    Hierarchy::V1 {
                        cpuacct: Some(_), ..
                    } => own.cpuacct.clone(),
                    Hierarchy::V1 { .. } => own.cpu.clone(),
                };
                // In a pod, our cgroup is a container's and its parent is the pod's.
                let pod_dir = [Some(main.as_path()), main.parent()]
                    .into_iter()
                    .flatten()
                    .find_map(|d| {
                        let uid = parse_pod_dir(d.file_name()?.to_str()?)?;
                        Some((d.to_path_buf(), uid))
                    });
                if let Some((rel, uid)) = pod_dir {
                    let qos = rel
                        .parent()
                        .and_then(|p| p.file_name())
                        .and_then(|n| n.to_str())
                        .and_then(qos_dir)
                        .unwrap_or(Qos::Guaranteed);
                    let containers = containers_of(&root, &rel)?;
                    let pod = PodCgroup {
                        rel,
                        uid,
                        qos,
                        containers,
                    };
                    Ok(Self::targets_of(&pod).collect())
                } else {
                    Ok(vec![Target {
                        path_label: Some(format!("/{}", main.display())),
                        rels: own,
                        uid: String::new(),
                        qos: None,
                        container_id: None,
                    }])
                }
            }
        }
    }

    fn emit(&mut self, buf: &mut Buffer, t: &Target, s: &Stats, meta: Option<&PodMeta>) {
        let cmeta: Option<&ContainerMeta> = meta
            .zip(t.container_id.as_deref())
            .and_then(|(m, id)| m.container_by_id(id));
        let container = match (&t.path_label, &t.container_id, cmeta) {
            (Some(p), _, _) => p.clone(),
            (None, _, Some(c)) => c.name.clone(),
            (None, Some(id), None) => id.clone(),
            (None, None, _) => String::new(),
        };
        let qos = meta
            .map(|m| m.qos_class.clone())
            .filter(|q| !q.is_empty())
            .or_else(|| t.qos.map(|q| q.as_str().to_string()))
            .unwrap_or_default();
        let labels: Labels = vec![
            (
                "namespace",
                meta.map(|m| m.namespace.clone()).unwrap_or_default(),
            ),
            ("pod", meta.map(|m| m.name.clone()).unwrap_or_default()),
            ("container", container),
            ("pod_uid", t.uid.clone()),
            ("qos_class", qos),
        ]
        .into();
        // One allocation of the label set per target; every series shares it.
        let l = || labels.clone();
        buf.counter(
            schema::CONTAINER_CPU_USAGE_SECONDS_TOTAL,
            HELP_CPU,
            l(),
            s.cpu_usage_seconds,
        );
        buf.gauge(
            schema::CONTAINER_MEMORY_WORKING_SET_BYTES,
            "Current working set in bytes (usage - inactive_file).",
            l(),
            s.memory_working_set_bytes,
        );
        buf.gauge(
            schema::CONTAINER_MEMORY_RSS,
            "Size of RSS in bytes.",
            l(),
            s.memory_rss_bytes,
        );
        buf.gauge(
            schema::CONTAINER_MEMORY_CACHE,
            "Number of bytes of page cache memory.",
            l(),
            s.memory_cache_bytes,
        );
        if let Some(v) = s.cfs_periods {
            buf.counter(
                schema::CONTAINER_CPU_CFS_PERIODS_TOTAL,
                "Number of elapsed enforcement period intervals.",
                l(),
                v,
            );
        }
        if let Some(v) = s.cfs_throttled_periods {
            buf.counter(
                schema::CONTAINER_CPU_CFS_THROTTLED_PERIODS_TOTAL,
                "Number of throttled period intervals.",
                l(),
                v,
            );
        }
        if let Some(v) = s.cfs_throttled_seconds {
            buf.counter(
                schema::CONTAINER_CPU_CFS_THROTTLED_SECONDS_TOTAL,
                "Total time duration the container has been throttled.",
                l(),
                v,
            );
        }
        let psi = [
            (
                schema::CONTAINER_PRESSURE_CPU_WAITING,
                "Total time duration tasks waited for CPU.",
            ),
            (
                schema::CONTAINER_PRESSURE_CPU_STALLED,
                "Total time duration no tasks made progress due to CPU.",
            ),
            (
                schema::CONTAINER_PRESSURE_MEMORY_WAITING,
                "Total time duration tasks waited for memory.",
            ),
            (
                schema::CONTAINER_PRESSURE_MEMORY_STALLED,
                "Total time duration no tasks made progress due to memory.",
            ),
            (
                schema::CONTAINER_PRESSURE_IO_WAITING,
                "Total time duration tasks waited for IO.",
            ),
            (
                schema::CONTAINER_PRESSURE_IO_STALLED,
                "Total time duration no tasks made progress due to IO.",
            ),
        ];
        for ((name, help), v) in psi.iter().zip(s.pressure) {
            if let Some(v) = v {
                buf.counter(name, help, l(), v);
            }
        }

        // Requests: the container's own, or for the pod cgroup the pod-level request, else the
        // sum over containers and restartable init containers when all set one (HPA's rule). Limits: the spec's, else what the cgroup enforces.
        let (cpu_req, mem_req, cpu_lim, mem_lim) = match (cmeta, t.container_id.is_none(), meta) {
            (Some(c), _, _) => (
                c.cpu_request_cores,
                c.memory_request_bytes,
                c.cpu_limit_cores.or(s.cpu_limit_cores),
                c.memory_limit_bytes.or(s.memory_limit_bytes),
            ),
            (None, true, Some(m)) => (
                m.cpu_request_cores(),
                m.memory_request_bytes(),
                s.cpu_limit_cores,
                s.memory_limit_bytes,
            ),
            _ => (None, None, s.cpu_limit_cores, s.memory_limit_bytes),
        };
        let rate = self.cpu_rates.update(
            t.rels.cpuacct.clone().into_os_string(),
            s.cpu_usage_seconds,
            buf.at(),
        );
        let ws = s.memory_working_set_bytes;
        if let Some(r) = rate {
            buf.gauge(
                schema::AGENT_CONTAINER_CPU_USAGE_CORES,
                "CPU usage rate between the last two samples, in cores.",
                l(),
                r,
            );
        }
        let pos = |v: Option<f64>| v.filter(|v| *v > 0.0);
        if let Some(req) = pos(cpu_req) {
            buf.gauge(
                schema::AGENT_CONTAINER_CPU_REQUEST_CORES,
                "CPU request in cores.",
                l(),
                req,
            );
            if let Some(r) = rate {
                buf.gauge(
                    schema::AGENT_CONTAINER_CPU_REQUEST_UTILIZATION,
                    "CPU usage rate / request (may exceed 1).",
                    l(),
                    r / req,
                );
            }
        }
        if let Some(lim) = pos(cpu_lim) {
            buf.gauge(
                schema::AGENT_CONTAINER_CPU_LIMIT_CORES,
                "CPU limit in cores.",
                l(),
                lim,
            );
            if let Some(r) = rate {
                buf.gauge(
                    schema::AGENT_CONTAINER_CPU_LIMIT_UTILIZATION,
                    "CPU usage rate / limit.",
                    l(),
                    r / lim,
                );
            }
        }
        if let Some(req) = pos(mem_req) {
            buf.gauge(
                schema::AGENT_CONTAINER_MEMORY_REQUEST_BYTES,
                "Memory request in bytes.",
                l(),
                req,
            );
            buf.gauge(
                schema::AGENT_CONTAINER_MEMORY_REQUEST_UTILIZATION,
                "Working set / memory request (may exceed 1).",
                l(),
                ws / req,
            );
        }
        if let Some(lim) = pos(mem_lim) {
            buf.gauge(
                schema::AGENT_CONTAINER_MEMORY_LIMIT_BYTES,
                "Memory limit in bytes.",
                l(),
                lim,
            );
            buf.gauge(
                schema::AGENT_CONTAINER_MEMORY_LIMIT_UTILIZATION,
                "Working set / memory limit.",
                l(),
                ws / lim,
            );
        }
    }
}

impl Sampler for CgroupSampler {
    fn name(&self) -> &'static str {
        "cgroup"
    }

    fn sample(&mut self, buf: &mut Buffer) -> Result<(), SampleError> {
        let targets = self.targets(buf)?;
        self.round += 1;
        for e in self.slow.values_mut() {
            e.2 = false;
        }
        for t in &targets {
            let key = t.rels.unified.clone().into_os_string();
            let (offset, cached) = match self.slow.get(&key) {
                Some((o, slow, _)) => (*o, Some(*slow)),
                None => {
                    self.next_offset = (self.next_offset + 1) % SLOW_EVERY_ROUNDS;
                    (self.next_offset, None)
                }
            };
            let full = cached.is_none() || (self.round + offset).is_multiple_of(SLOW_EVERY_ROUNDS);
            match read_stats_with(&self.hierarchy, &t.rels, full) {
                Ok(mut stats) => {
                    match (full, cached) {
                        (true, _) => {
                            self.slow.insert(key, (offset, Slow::of(&stats), true));
                        }
                        (false, Some(slow)) => {
                            slow.apply(&mut stats);
                            if let Some(e) = self.slow.get_mut(&key) {
                                e.2 = true;
                            }
                        }
                        (false, None) => {}
                    }
                    let meta = (!t.uid.is_empty()).then(|| self.pods.get(&t.uid)).flatten();
                    self.emit(buf, t, &stats, meta.as_deref());
                }
                Err(e) => {
                    buf.error_detail(e.reason(), e);
                }
            }
        }
        self.cpu_rates.sweep();
        // Forget the cgroups that are gone.
        self.slow.retain(|_, e| e.2);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_dir_names() {
        assert_eq!(parse_pod_dir("pod1234-ab").as_deref(), Some("1234-ab"));
        assert_eq!(
            parse_pod_dir("kubepods-burstable-pod12_34_ab.slice").as_deref(),
            Some("12-34-ab")
        );
        assert_eq!(
            parse_pod_dir("kubepods-pod12_34.slice").as_deref(),
            Some("12-34")
        );
        assert_eq!(parse_pod_dir("kubepods-burstable.slice"), None);
        assert_eq!(
            parse_pod_dir("kubelet-kubepods-besteffort-podab_cd.slice").as_deref(),
            Some("ab-cd"),
            "kind's prefixed slices"
        );
        assert_eq!(
            qos_dir("kubelet-kubepods-besteffort.slice"),
            Some(Qos::BestEffort)
        );
        assert_eq!(parse_pod_dir("podzz"), None);
        assert_eq!(parse_pod_dir("system.slice"), None);
    }

    #[test]
    fn container_dir_names() {
        let id = "0123456789abcdef0123";
        assert_eq!(parse_container_dir(id).as_deref(), Some(id));
        for name in [
            format!("cri-containerd-{id}.scope"),
            format!("crio-{id}.scope"),
            format!("docker-{id}.scope"),
            format!("crio-{id}"),
        ] {
            assert_eq!(parse_container_dir(&name).as_deref(), Some(id), "{name}");
        }
        assert_eq!(
            parse_container_dir(&format!("crio-conmon-{id}.scope")),
            None
        );
        assert_eq!(parse_container_dir("init.scope"), None);
        assert_eq!(parse_container_dir("abc"), None, "too short for an ID");
    }

    #[test]
    fn flat_and_pressure_parsing_rejects_garbage() {
        let p = Path::new("cpu.stat");
        let f = Flat::parse(p, "usage_usec 42\nnr_periods x\n");
        assert_eq!(f.get("usage_usec").ok(), Some(42.0));
        assert_eq!(
            f.get("nr_periods").map_err(|e| e.reason()),
            Err("not_a_number")
        );
        assert_eq!(f.get("absent").map_err(|e| e.reason()), Err("missing_key"));
        assert_eq!(f.opt("absent").ok(), Some(None));
        let (some, full) = parse_pressure(
            p,
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=250\n",
        )
        .expect("valid");
        assert_eq!((some, full), (Some(1.5), Some(0.00025)));
        assert!(parse_pressure(p, "some total=-1\n").is_err());
        assert_eq!(parse_cpu_max(p, "max 100000\n").ok(), Some(None));
        assert_eq!(parse_cpu_max(p, "50000 100000\n").ok(), Some(Some(0.5)));
        assert!(parse_cpu_max(p, "garbage").is_err());
    }
}

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
//!
//! **Cost.** The cgroups found are kept from round to round: the files read every round stay
//! open and are re-read with `pread`, and directories are listed again only after an inotify
//! event on them ([`crate::fdcache`]; `docs/agent.md`, "How the cgroup pass stays cheap").

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tidal_core::schema;

use crate::buffer::{Buffer, Kind, Labels};
use crate::fdcache::{
    CachedDir, CachedFile, DirBuf, DirEntry, FdBudget, Watcher, dir_buf, is_cgroupfs,
};
use crate::pods::{ContainerMeta, PodIndex, PodMeta};
use crate::rate::Rate;
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
    /// Sidecar mode: `/proc/self/cgroup` names a cgroup that `--cgroup-root` does not hold.
    /// A container's own `/sys/fs/cgroup` (cgroup v1 without a cgroup namespace) mounts only
    /// its own cgroup at each controller's root, under the host's path.
    #[error(
        "{path} does not exist: the agent's own cgroup {own} (from /proc/self/cgroup) is not \
         under --cgroup-root. A container's /sys/fs/cgroup shows only its own cgroup; in \
         sidecar mode, mount the host's /sys/fs/cgroup read-only (hostPath) and point \
         --cgroup-root at it"
    )]
    SelfCgroupNotMounted { path: PathBuf, own: String },
}

impl CgroupError {
    /// The fixed `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            CgroupError::NoHierarchy { .. } => "no_hierarchy",
            CgroupError::List { source, .. } | CgroupError::Read { source, .. } => {
                match source.kind() {
                    io::ErrorKind::NotFound => "vanished",
                    // A held file of a removed cgroup (kernfs answers ENODEV).
                    _ if source.raw_os_error() == Some(ENODEV) => "vanished",
                    io::ErrorKind::PermissionDenied => "permission_denied",
                    _ => "io",
                }
            }
            CgroupError::MissingKey { .. } => "missing_key",
            CgroupError::NotANumber { .. } => "not_a_number",
            CgroupError::SelfCgroup { .. } | CgroupError::SelfCgroupNotMounted { .. } => {
                "self_cgroup_unknown"
            }
        }
    }
}

/// `ENODEV`: what reading a held interface file of a removed cgroup returns.
const ENODEV: i32 = 19;

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

    /// The mounted roots in use.
    fn roots(&self) -> impl Iterator<Item = &Path> {
        let (a, b, c, d) = match self {
            Hierarchy::V2 { root } => (Some(root), None, None, None),
            Hierarchy::V1 {
                cpu,
                cpuacct,
                memory,
                unified,
            } => (
                cpu.as_ref(),
                cpuacct.as_ref(),
                memory.as_ref(),
                unified.as_ref(),
            ),
        };
        [a, b, c, d].into_iter().flatten().map(PathBuf::as_path)
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

fn number(path: &Path, s: &str) -> Result<f64, CgroupError> {
    s.trim()
        .parse::<u64>()
        .map(|v| v as f64)
        .map_err(|_| CgroupError::NotANumber {
            path: path.into(),
            value: s.trim().to_string(),
        })
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
        self.line_value(key)
            .map(|v| number(self.path, v))
            .transpose()
    }

    /// The text after `<key> ` on the last line that starts so.
    fn line_value(&self, key: &str) -> Option<&'a str> {
        self.text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
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

/// The interface files of one cgroup, each held open while the descriptor budget allows.
/// v2: `cpu.stat`, `memory.current`, `memory.stat` every round; `cpu.max`, `memory.max` and
/// the three PSI files on slow rounds. v1: `cpuacct.usage`, `cpu.stat`,
/// `memory.usage_in_bytes`, `memory.stat`; slow: `cpu.cfs_quota_us`, `cpu.cfs_period_us`,
/// `memory.limit_in_bytes` and the unified tree's PSI files.
type Files = [CachedFile; 10];

/// What reading a cgroup needs besides its files: the descriptor budget and a reused buffer.
struct Reader<'a> {
    budget: &'a FdBudget,
    /// Check held files for an unlink (outside cgroupfs).
    verify: bool,
    buf: &'a mut Vec<u8>,
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

/// The values of `keys` in a flat-keyed file (`key value` lines), in one pass and without
/// allocating: the same lines [`Flat`] finds (a line starting with `<key> `; a repeated key
/// yields its last value). Line ends are found with a vectorised `memchr`; a line is compared
/// with a key only when their first bytes match.
pub fn scan_flat<'t, const N: usize>(text: &'t str, keys: [&str; N]) -> [Option<&'t str>; N] {
    let bytes = text.as_bytes();
    let mut spans = [None; N];
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
    for end in ends {
        let line = &bytes[start..end];
        if let Some(first) = line.first() {
            for (k, span) in keys.iter().zip(spans.iter_mut()) {
                let k = k.as_bytes();
                if k.first() == Some(first)
                    && line.len() > k.len()
                    && line[k.len()] == b' '
                    && line.starts_with(k)
                {
                    *span = Some((start + k.len() + 1, end));
                    break;
                }
            }
        }
        start = end + 1;
    }
    // Both ends of a span are at ASCII bytes (a space, a newline or the end): valid slices.
    spans.map(|s| s.and_then(|(a, b)| text.get(a..b)))
}

/// A value of a flat-keyed file that must be there.
fn flat_get(
    v: Option<&str>,
    key: &'static str,
    path: impl Fn() -> PathBuf,
) -> Result<f64, CgroupError> {
    let v = v.ok_or_else(|| CgroupError::MissingKey { path: path(), key })?;
    num(v, path)
}

/// A value of a flat-keyed file that may be absent.
fn flat_opt(v: Option<&str>, path: impl Fn() -> PathBuf) -> Result<Option<f64>, CgroupError> {
    v.map(|v| num(v, path)).transpose()
}

/// [`number`], with the path built only for an error.
fn num(s: &str, path: impl Fn() -> PathBuf) -> Result<f64, CgroupError> {
    match s.trim().parse::<u64>() {
        Ok(v) => Ok(v as f64),
        Err(_) => Err(CgroupError::NotANumber {
            path: path(),
            value: s.trim().to_string(),
        }),
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
pub fn read_stats(h: &Hierarchy, rels: &Rels) -> Result<Stats, CgroupError> {
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
fn read_stats_with(
    h: &Hierarchy,
    rels: &Rels,
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

/// `cpu.max`: `max <period>` (no limit) or `<quota> <period>`.
pub fn parse_cpu_max(path: &Path, text: &str) -> Result<Option<f64>, CgroupError> {
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
#[derive(Clone, Debug, PartialEq)]
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

/// Default cap on the descriptors the cgroup sampler holds (`--max-open-files`): the files
/// read every round of ~2,700 cgroups on v2 (3 each) or ~2,000 on v1 (4 each).
pub const DEFAULT_MAX_OPEN_FILES: usize = 8192;

/// One cgroup the sampler reads, kept from round to round: its identity, its held interface
/// files, its CPU counter's last value, its cached slow values and its label set.
#[derive(Debug)]
struct Cg {
    target: Target,
    /// The directory's name and inode number as last listed (sidecar: empty and 0).
    name: String,
    ino: u64,
    files: Files,
    /// Outside cgroupfs: inotify watches on the directories its files are in (`None`: not
    /// set up yet; empty: could not be watched, so held files are checked with `fstat`).
    watches: Option<Vec<i32>>,
    /// Offset among the rounds of its slow reads, and the values of the last one
    /// (`None`: read every file next round).
    offset: u64,
    slow: Option<Slow>,
    rate: Rate,
    /// The pod metadata the labels were built from, and the labels.
    labels: Option<(Option<Arc<PodMeta>>, Labels)>,
}

impl Cg {
    fn new(target: Target, name: String, ino: u64) -> Self {
        Self {
            target,
            name,
            ino,
            files: Files::default(),
            watches: None,
            offset: 0,
            slow: None,
            rate: Rate::default(),
            labels: None,
        }
    }
}

/// A pod directory and its cgroups (the pod's own first, then its containers by name).
#[derive(Debug, Default)]
struct PodDir {
    ino: u64,
    dir: CachedDir,
    cgs: Vec<Cg>,
    /// The round it was last listed in; pods not seen in a round are forgotten.
    round: u64,
}

/// The series the sampler emits, in the order of [`SERIES`].
mod series {
    pub const CPU: usize = 0;
    pub const WORKING_SET: usize = 1;
    pub const RSS: usize = 2;
    pub const CACHE: usize = 3;
    pub const CFS_PERIODS: usize = 4;
    pub const CFS_THROTTLED_PERIODS: usize = 5;
    pub const CFS_THROTTLED_SECONDS: usize = 6;
    /// cpu some/full, memory some/full, io some/full.
    pub const PRESSURE: usize = 7;
    pub const USAGE_CORES: usize = 13;
    pub const CPU_REQUEST: usize = 14;
    pub const CPU_REQUEST_UTILIZATION: usize = 15;
    pub const CPU_LIMIT: usize = 16;
    pub const CPU_LIMIT_UTILIZATION: usize = 17;
    pub const MEMORY_REQUEST: usize = 18;
    pub const MEMORY_REQUEST_UTILIZATION: usize = 19;
    pub const MEMORY_LIMIT: usize = 20;
    pub const MEMORY_LIMIT_UTILIZATION: usize = 21;
    pub const COUNT: usize = 22;
}

/// Name, help and kind of each series the sampler emits.
const SERIES: [(&str, &str, Kind); series::COUNT] = [
    (
        schema::CONTAINER_CPU_USAGE_SECONDS_TOTAL,
        "Cumulative cpu time consumed in seconds.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_MEMORY_WORKING_SET_BYTES,
        "Current working set in bytes (usage - inactive_file).",
        Kind::Gauge,
    ),
    (
        schema::CONTAINER_MEMORY_RSS,
        "Size of RSS in bytes.",
        Kind::Gauge,
    ),
    (
        schema::CONTAINER_MEMORY_CACHE,
        "Number of bytes of page cache memory.",
        Kind::Gauge,
    ),
    (
        schema::CONTAINER_CPU_CFS_PERIODS_TOTAL,
        "Number of elapsed enforcement period intervals.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_CPU_CFS_THROTTLED_PERIODS_TOTAL,
        "Number of throttled period intervals.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_CPU_CFS_THROTTLED_SECONDS_TOTAL,
        "Total time duration the container has been throttled.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_PRESSURE_CPU_WAITING,
        "Total time duration tasks waited for CPU.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_PRESSURE_CPU_STALLED,
        "Total time duration no tasks made progress due to CPU.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_PRESSURE_MEMORY_WAITING,
        "Total time duration tasks waited for memory.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_PRESSURE_MEMORY_STALLED,
        "Total time duration no tasks made progress due to memory.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_PRESSURE_IO_WAITING,
        "Total time duration tasks waited for IO.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_PRESSURE_IO_STALLED,
        "Total time duration no tasks made progress due to IO.",
        Kind::Counter,
    ),
    (
        schema::AGENT_CONTAINER_CPU_USAGE_CORES,
        "CPU usage rate between the last two samples, in cores.",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_CPU_REQUEST_CORES,
        "CPU request in cores.",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_CPU_REQUEST_UTILIZATION,
        "CPU usage rate / request (may exceed 1).",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_CPU_LIMIT_CORES,
        "CPU limit in cores.",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_CPU_LIMIT_UTILIZATION,
        "CPU usage rate / limit.",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_MEMORY_REQUEST_BYTES,
        "Memory request in bytes.",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_MEMORY_REQUEST_UTILIZATION,
        "Working set / memory request (may exceed 1).",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_MEMORY_LIMIT_BYTES,
        "Memory limit in bytes.",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_MEMORY_LIMIT_UTILIZATION,
        "Working set / memory limit.",
        Kind::Gauge,
    ),
];

type Out = [Vec<(Labels, f64)>; series::COUNT];

/// Samples pod and container cgroups.
///
/// The cgroups found are kept from round to round ([`Cg`]), with their interface files held
/// open and their directories re-listed through held descriptors ([`crate::fdcache`]), so a
/// round costs one `pread` per file read and one `getdents64` per directory. Every round still
/// lists every directory and reads every container's counters.
#[derive(Debug)]
pub struct CgroupSampler {
    hierarchy: Hierarchy,
    scope: Scope,
    pods: PodIndex,
    budget: FdBudget,
    /// A hierarchy is not on a cgroup file system (fixture and synthetic trees), where a file
    /// can be removed on its own while held: held files are then dropped on an inotify event
    /// on their directory (or, unwatched, checked with `fstat` before each read).
    verify: bool,
    watcher: Watcher,
    /// Node scope: the kubepods and QoS directories, by path, with the round last listed.
    dirs: HashMap<PathBuf, (CachedDir, u64)>,
    /// Node scope: the pod directories, by path relative to the walked root.
    pod_dirs: HashMap<PathBuf, PodDir>,
    /// Sidecar scope: the agent's own cgroups.
    own: Vec<Cg>,
    buf: Vec<u8>,
    dir_buf: DirBuf,
    out: Out,
    round: u64,
    next_offset: u64,
}

impl CgroupSampler {
    /// A sampler over `hierarchy`, labelling from `pods`; it holds up to
    /// [`DEFAULT_MAX_OPEN_FILES`] descriptors, and at most half of the soft `RLIMIT_NOFILE`
    /// (see [`crate::fdcache::raise_nofile_limit`]).
    pub fn new(hierarchy: Hierarchy, scope: Scope, pods: PodIndex) -> Self {
        Self::with_budget(
            hierarchy,
            scope,
            pods,
            FdBudget::from_rlimit(DEFAULT_MAX_OPEN_FILES),
        )
    }

    /// A sampler holding at most `budget` descriptors (0: open, read and close every file).
    pub fn with_budget(
        hierarchy: Hierarchy,
        scope: Scope,
        pods: PodIndex,
        budget: FdBudget,
    ) -> Self {
        Self {
            verify: !hierarchy.roots().all(is_cgroupfs),
            watcher: Watcher::new(),
            hierarchy: hierarchy.clone(),
            scope,
            pods,
            budget,
            dirs: HashMap::new(),
            pod_dirs: HashMap::new(),
            own: Vec::new(),
            buf: Vec::new(),
            dir_buf: dir_buf(),
            out: Default::default(),
            round: 0,
            next_offset: 0,
        }
    }

    /// The detected hierarchy.
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// Descriptors held now (files and directories).
    pub fn held_descriptors(&self) -> usize {
        self.budget.held()
    }

    /// Lists the subdirectories of `abs` through its cached listing (kept for this round).
    fn list_dir(&mut self, abs: &Path, buf: &mut Buffer) -> Option<Vec<DirEntry>> {
        let (dir, round) = self.dirs.entry(abs.to_path_buf()).or_default();
        *round = self.round;
        match dir.list(abs, &self.budget, &mut self.dir_buf, &mut self.watcher) {
            Ok(_) => Some(dir.entries().to_vec()),
            Err(source) => {
                let e = CgroupError::List {
                    path: abs.into(),
                    source,
                };
                buf.error_detail(e.reason(), e);
                None
            }
        }
    }

    /// Node scope: every pod directory under the kubepods roots, as `discover` finds them,
    /// with the inode of each.
    fn pod_candidates(&mut self, buf: &mut Buffer) -> Vec<(PathBuf, String, Qos, u64)> {
        let root = self.hierarchy.walk_root().to_path_buf();
        let mut candidates = Vec::new();
        for top in KUBEPODS_ROOTS {
            let abs = root.join(top);
            if !abs.is_dir() {
                continue;
            }
            let Some(children) = self.list_dir(&abs, buf) else {
                continue;
            };
            for child in children {
                if let Some(uid) = parse_pod_dir(&child.name) {
                    candidates.push((
                        Path::new(top).join(&child.name),
                        uid,
                        Qos::Guaranteed,
                        child.ino,
                    ));
                } else if let Some(qos) = qos_dir(&child.name) {
                    let qrel = Path::new(top).join(&child.name);
                    let Some(grand) = self.list_dir(&root.join(&qrel), buf) else {
                        continue;
                    };
                    candidates.extend(grand.into_iter().filter_map(|g| {
                        let uid = parse_pod_dir(&g.name)?;
                        Some((qrel.join(&g.name), uid, qos, g.ino))
                    }));
                }
            }
        }
        let round = self.round;
        let watcher = &mut self.watcher;
        self.dirs.retain(|_, (d, r)| {
            let keep = *r == round;
            if !keep {
                d.unwatch(watcher);
            }
            keep
        });
        candidates
    }

    fn sample_node(&mut self, buf: &mut Buffer) {
        let candidates = self.pod_candidates(buf);
        let root = self.hierarchy.walk_root().to_path_buf();
        let Self {
            hierarchy,
            pods,
            budget,
            verify,
            watcher,
            pod_dirs,
            buf: bytes,
            dir_buf,
            out,
            round,
            next_offset,
            ..
        } = self;
        let mut ctx = Ctx {
            hierarchy,
            budget,
            verify: *verify,
            watcher,
            bytes,
            out,
            round: *round,
            next_offset,
        };
        for (rel, uid, qos, ino) in candidates {
            let abs = root.join(&rel);
            let pod = match pod_dirs.get_mut(&rel) {
                Some(p) => p,
                None => pod_dirs.entry(rel.clone()).or_default(),
            };
            if pod.ino != ino {
                // A new directory under the same name: nothing held is valid any more.
                pod.ino = ino;
                pod.dir.unwatch(ctx.watcher);
                pod.dir = CachedDir::default();
                for cg in &mut pod.cgs {
                    cg.files = Files::default();
                    cg.watches = None;
                    cg.slow = None;
                }
            }
            pod.round = *round;
            let changed = match pod.dir.list(&abs, ctx.budget, dir_buf, ctx.watcher) {
                Ok(changed) => changed,
                Err(source) => {
                    // Skipped this round, as if never seen (its rates start again).
                    pod.cgs.clear();
                    let e = CgroupError::List { path: abs, source };
                    buf.error_detail(e.reason(), e);
                    continue;
                }
            };
            if changed || pod.cgs.is_empty() {
                pod.rebuild(&rel, &uid, qos);
            }
            let meta = (!uid.is_empty()).then(|| pods.get(&uid)).flatten();
            for cg in &mut pod.cgs {
                ctx.sample(cg, meta.as_ref(), buf);
            }
        }
        let round = *round;
        pod_dirs.retain(|_, p| {
            let keep = p.round == round;
            if !keep {
                p.dir.unwatch(ctx.watcher);
            }
            keep
        });
    }

    /// Sidecar scope: the agent's own pod (or cgroup), found again every round.
    fn own_targets(&self, proc_root: &Path) -> Result<Vec<Target>, CgroupError> {
        let root = self.hierarchy.walk_root();
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
        if !root.join(&main).is_dir() {
            return Err(CgroupError::SelfCgroupNotMounted {
                path: root.join(&main),
                own: format!("/{}", main.display()),
            });
        }
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
            let containers = containers_of(root, &rel)?;
            let pod = PodCgroup {
                rel,
                uid,
                qos,
                containers,
            };
            Ok(std::iter::once(Target {
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
            .collect())
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

    fn sample_own(&mut self, proc_root: &Path, buf: &mut Buffer) -> Result<(), CgroupError> {
        let targets = self.own_targets(proc_root)?;
        let mut old = std::mem::take(&mut self.own);
        for t in targets {
            let cg = match old.iter().position(|c| c.target == t) {
                Some(i) => old.swap_remove(i),
                None => Cg::new(t, String::new(), 0),
            };
            self.own.push(cg);
        }
        let mut ctx = Ctx {
            hierarchy: &self.hierarchy,
            budget: &self.budget,
            verify: self.verify,
            watcher: &mut self.watcher,
            bytes: &mut self.buf,
            out: &mut self.out,
            round: self.round,
            next_offset: &mut self.next_offset,
        };
        for cg in &mut self.own {
            let uid = &cg.target.uid;
            let meta = (!uid.is_empty()).then(|| self.pods.get(uid)).flatten();
            ctx.sample(cg, meta.as_ref(), buf);
        }
        Ok(())
    }

    /// Moves this round's series into `buf`, family by family.
    fn flush(&mut self, buf: &mut Buffer) {
        for (samples, (name, help, kind)) in self.out.iter_mut().zip(SERIES) {
            let n = samples.len();
            if n > 0 {
                buf.extend(
                    name,
                    help,
                    kind,
                    std::mem::replace(samples, Vec::with_capacity(n)),
                );
            }
        }
    }
}

impl PodDir {
    /// Rebuilds the cgroup list from the directory's new listing, keeping the state of the
    /// cgroups still there.
    fn rebuild(&mut self, rel: &Path, uid: &str, qos: Qos) {
        let mut old = std::mem::take(&mut self.cgs);
        let mut cgs = Vec::with_capacity(self.dir.entries().len() + 1);
        let own = match old.first() {
            Some(c) if c.target.container_id.is_none() => old.remove(0),
            _ => Cg::new(
                Target {
                    rels: Rels::same(rel),
                    uid: uid.to_string(),
                    qos: Some(qos),
                    container_id: None,
                    path_label: None,
                },
                String::new(),
                0,
            ),
        };
        cgs.push(own);
        for e in self.dir.entries() {
            let Some(id) = parse_container_dir(&e.name) else {
                continue;
            };
            match old.iter().position(|c| c.name == e.name) {
                Some(i) => {
                    let mut c = old.swap_remove(i);
                    if c.ino != e.ino {
                        // Recreated under the same name: its files are new ones.
                        c.ino = e.ino;
                        c.files = Files::default();
                        c.watches = None;
                        c.slow = None;
                    }
                    cgs.push(c);
                }
                None => cgs.push(Cg::new(
                    Target {
                        rels: Rels::same(&rel.join(&e.name)),
                        uid: uid.to_string(),
                        qos: Some(qos),
                        container_id: Some(id),
                        path_label: None,
                    },
                    e.name.clone(),
                    e.ino,
                )),
            }
        }
        self.cgs = cgs;
    }
}

/// What reading and emitting one cgroup needs from the sampler.
struct Ctx<'a> {
    hierarchy: &'a Hierarchy,
    budget: &'a FdBudget,
    verify: bool,
    watcher: &'a mut Watcher,
    bytes: &'a mut Vec<u8>,
    out: &'a mut Out,
    round: u64,
    next_offset: &'a mut u64,
}

impl Ctx<'_> {
    /// Reads `cg` (every file on its slow rounds, else the counters and memory) and emits its
    /// series, or records why it could not be read.
    fn sample(&mut self, cg: &mut Cg, meta: Option<&Arc<PodMeta>>, buf: &mut Buffer) {
        if is_sandbox_or_unreported(&cg.target, meta.map(Arc::as_ref)) {
            return;
        }
        if cg.slow.is_none() {
            *self.next_offset = (*self.next_offset + 1) % SLOW_EVERY_ROUNDS;
            cg.offset = *self.next_offset;
        }
        let full = cg.slow.is_none() || (self.round + cg.offset).is_multiple_of(SLOW_EVERY_ROUNDS);
        let verify = self.verify && self.watch_files(cg);
        let mut r = Reader {
            budget: self.budget,
            verify,
            buf: self.bytes,
        };
        match read_stats_with(self.hierarchy, &cg.target.rels, full, &mut cg.files, &mut r) {
            Ok(mut stats) => {
                match (full, &cg.slow) {
                    (true, _) => cg.slow = Some(Slow::of(&stats)),
                    (false, Some(slow)) => slow.apply(&mut stats),
                    (false, None) => {}
                }
                emit(self.out, cg, &stats, meta, buf.at());
            }
            Err(e) => {
                // As if never seen: the next read is a full one, and starts a new rate.
                cg.slow = None;
                cg.rate = Rate::default();
                buf.error_detail(e.reason(), e);
            }
        }
    }
}

impl Ctx<'_> {
    /// Outside cgroupfs: watches the directories of `cg`'s files (before any is opened) and
    /// drops its held files after an event on one of them. True if its held files must still
    /// be checked before each read (a directory could not be watched).
    fn watch_files(&mut self, cg: &mut Cg) -> bool {
        match &cg.watches {
            None => {
                let mut wds = Vec::new();
                for dir in cg_dirs(self.hierarchy, &cg.target.rels) {
                    match self.watcher.watch(&dir) {
                        Some(wd) => wds.push(wd),
                        None => {
                            wds.clear();
                            break;
                        }
                    }
                }
                cg.files = Files::default();
                let unwatched = wds.is_empty();
                cg.watches = Some(wds);
                unwatched
            }
            Some(wds) if wds.is_empty() => true,
            Some(wds) => {
                let changed = wds.iter().any(|wd| self.watcher.changed(*wd));
                if changed {
                    cg.files = Files::default();
                }
                false
            }
        }
    }
}

/// The directories holding a cgroup's interface files, one per hierarchy in use.
fn cg_dirs(h: &Hierarchy, rels: &Rels) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match h {
        Hierarchy::V2 { root } => vec![root.join(&rels.unified)],
        Hierarchy::V1 {
            cpu,
            cpuacct,
            memory,
            unified,
        } => [
            (cpu, &rels.cpu),
            (cpuacct, &rels.cpuacct),
            (memory, &rels.memory),
            (unified, &rels.unified),
        ]
        .into_iter()
        .filter_map(|(root, rel)| Some(root.as_ref()?.join(rel)))
        .collect(),
    };
    dirs.sort();
    dirs.dedup();
    dirs
}

/// True for a container cgroup of a known pod whose ID is none of the pod's containers: the
/// pod's sandbox (pause) container, or a container the API has not reported yet (a new one, or
/// a restart). Such a cgroup gets no series. The kubelet's cAdvisor gives the sandbox
/// `container=""` (seen on the stack's real node, docs/real-node.md); here its usage is already
/// in the pod's own series (`container=""`, the pod cgroup, which contains it), and a series of
/// its own would need a label beyond namespace/pod/container to be told apart. A new
/// container's series start once the API reports its ID, rather than appearing for a moment
/// under its 64-hex ID. Without pod metadata the ID stays the only name there is.
fn is_sandbox_or_unreported(t: &Target, meta: Option<&PodMeta>) -> bool {
    match (meta, t.container_id.as_deref(), &t.path_label) {
        (Some(m), Some(id), None) => m.container_by_id(id).is_none(),
        _ => false,
    }
}

/// The label set of a cgroup's series.
fn labels_of(t: &Target, meta: Option<&PodMeta>) -> Labels {
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
    vec![
        (
            "namespace",
            meta.map(|m| m.namespace.clone()).unwrap_or_default(),
        ),
        ("pod", meta.map(|m| m.name.clone()).unwrap_or_default()),
        ("container", container),
        ("pod_uid", t.uid.clone()),
        ("qos_class", qos),
    ]
    .into()
}

/// Appends the series of one cgroup to `out`.
fn emit(out: &mut Out, cg: &mut Cg, s: &Stats, meta: Option<&Arc<PodMeta>>, at: Instant) {
    use series::*;
    let t = &cg.target;
    // One label set per cgroup, rebuilt only when its pod's metadata changes; every series
    // shares it.
    let labels = match &cg.labels {
        Some((m, l)) if m.as_ref().map(Arc::as_ptr) == meta.map(Arc::as_ptr) => l.clone(),
        _ => {
            let l = labels_of(t, meta.map(Arc::as_ref));
            cg.labels = Some((meta.cloned(), l.clone()));
            l
        }
    };
    let meta = meta.map(Arc::as_ref);
    let cmeta: Option<&ContainerMeta> = meta
        .zip(t.container_id.as_deref())
        .and_then(|(m, id)| m.container_by_id(id));
    let mut put = |i: usize, v: f64| out[i].push((labels.clone(), v));
    put(CPU, s.cpu_usage_seconds);
    put(WORKING_SET, s.memory_working_set_bytes);
    put(RSS, s.memory_rss_bytes);
    put(CACHE, s.memory_cache_bytes);
    if let Some(v) = s.cfs_periods {
        put(CFS_PERIODS, v);
    }
    if let Some(v) = s.cfs_throttled_periods {
        put(CFS_THROTTLED_PERIODS, v);
    }
    if let Some(v) = s.cfs_throttled_seconds {
        put(CFS_THROTTLED_SECONDS, v);
    }
    for (i, v) in s.pressure.iter().enumerate() {
        if let Some(v) = v {
            put(PRESSURE + i, *v);
        }
    }

    // Requests: the container's own, or for the pod cgroup the pod-level request, else the
    // sum over containers and restartable init containers when all set one (HPA's rule).
    // Limits: the spec's, else what the cgroup enforces.
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
    let rate = cg.rate.update(s.cpu_usage_seconds, at);
    let ws = s.memory_working_set_bytes;
    if let Some(r) = rate {
        put(USAGE_CORES, r);
    }
    let pos = |v: Option<f64>| v.filter(|v| *v > 0.0);
    if let Some(req) = pos(cpu_req) {
        put(CPU_REQUEST, req);
        if let Some(r) = rate {
            put(CPU_REQUEST_UTILIZATION, r / req);
        }
    }
    if let Some(lim) = pos(cpu_lim) {
        put(CPU_LIMIT, lim);
        if let Some(r) = rate {
            put(CPU_LIMIT_UTILIZATION, r / lim);
        }
    }
    if let Some(req) = pos(mem_req) {
        put(MEMORY_REQUEST, req);
        put(MEMORY_REQUEST_UTILIZATION, ws / req);
    }
    if let Some(lim) = pos(mem_lim) {
        put(MEMORY_LIMIT, lim);
        put(MEMORY_LIMIT_UTILIZATION, ws / lim);
    }
}

impl Sampler for CgroupSampler {
    fn name(&self) -> &'static str {
        "cgroup"
    }

    fn sample(&mut self, buf: &mut Buffer) -> Result<(), SampleError> {
        self.round += 1;
        self.watcher.drain();
        let result = match &self.scope {
            Scope::Node => {
                self.sample_node(buf);
                Ok(())
            }
            Scope::OwnPod { proc_root } => {
                let proc_root = proc_root.clone();
                self.sample_own(&proc_root, buf)
            }
        };
        self.watcher.end_round();
        result?;
        self.flush(buf);
        Ok(())
    }
}

impl From<CgroupError> for SampleError {
    fn from(e: CgroupError) -> Self {
        SampleError::new(e.reason(), e)
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
    fn scan_flat_finds_what_flat_finds() {
        let keys = ["anon", "file", "inactive_file", "usage_usec"];
        for text in [
            "",
            "anon 1",
            "anon 1\nfile 2\ninactive_file 3\n",
            "file_mapped 9\nfile 2\nanon_thp 7\nanon 1\n",
            "anon 1\nanon 5\n",
            "xanon 1\n anon 2\nanon\t3\nanon  4\n",
            "usage_usec 10\r\nanon x\r\n",
            "inactive_file\nfile \n",
            "\n\nanon 8",
        ] {
            let flat = Flat::parse(Path::new("f"), text);
            let found = scan_flat(text, keys);
            for (k, v) in keys.iter().zip(found) {
                assert_eq!(
                    v.map(str::trim),
                    flat.line_value(k).map(str::trim),
                    "{k} in {text:?}"
                );
            }
        }
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

    fn meta_with(uid: &str, containers: &[(&str, &str)]) -> PodMeta {
        PodMeta {
            namespace: "ns".into(),
            name: "p".into(),
            uid: uid.into(),
            containers: containers
                .iter()
                .map(|(name, id)| ContainerMeta {
                    name: (*name).into(),
                    id: Some((*id).into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn sandbox_and_unreported_containers_get_no_series() {
        let (uid, app, pause) = ("u-1", "a".repeat(64), "b".repeat(64));
        let target = |id: Option<&str>| Target {
            rels: Rels::same(Path::new("kubepods/podu-1")),
            uid: uid.into(),
            qos: Some(Qos::Burstable),
            container_id: id.map(str::to_string),
            path_label: None,
        };
        let meta = meta_with(uid, &[("app", &app)]);
        // A known pod, an ID that is none of its containers': the sandbox (or a container the
        // API has not reported yet).
        assert!(is_sandbox_or_unreported(&target(Some(&pause)), Some(&meta)));
        // A known container of a known pod.
        assert!(!is_sandbox_or_unreported(&target(Some(&app)), Some(&meta)));
        // The pod's own cgroup.
        assert!(!is_sandbox_or_unreported(&target(None), Some(&meta)));
        // No metadata (no API access, or a pod the watch has not seen): the ID is the only
        // name, so the cgroup keeps its series.
        assert!(!is_sandbox_or_unreported(&target(Some(&pause)), None));
        assert!(!is_sandbox_or_unreported(&target(Some(&app)), None));
        // Outside Kubernetes (a path label): never skipped.
        let mut plain = target(Some(&pause));
        plain.path_label = Some("/svc/app".into());
        assert!(!is_sandbox_or_unreported(&plain, Some(&meta)));
    }

    /// Sidecar mode on a cgroup v1 node without a cgroup namespace: `/proc/self/cgroup` names
    /// the host path, but the container's own `/sys/fs/cgroup/<controller>` is its own cgroup
    /// (runc bind-mounts it). The pod's cgroup is not there: the run fails, saying what to
    /// mount, with reason `self_cgroup_unknown` (it used to fail as `vanished`, a benign race,
    /// with only "listing …: No such file or directory").
    #[test]
    fn sidecar_without_the_host_cgroup_tree_says_what_to_mount() {
        let t = std::env::temp_dir().join(format!(
            "tidal-sidecar-unmounted-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&t);
        let cg = t.join("cgroup");
        for ctrl in ["cpu", "cpuacct", "memory"] {
            std::fs::create_dir_all(cg.join(ctrl)).expect("mkdir");
            std::fs::write(cg.join(ctrl).join("cgroup.procs"), "1\n").expect("write");
        }
        let own = format!("/kubelet/kubepods/burstable/pod1234-ab/{}", "c".repeat(64));
        let proc_root = t.join("proc");
        std::fs::create_dir_all(proc_root.join("self")).expect("mkdir");
        std::fs::write(
            proc_root.join("self/cgroup"),
            format!("4:memory:{own}\n2:cpuacct:{own}\n1:cpu:{own}\n0::{own}\n"),
        )
        .expect("write");
        let h = Hierarchy::detect(&cg).expect("v1 detected");
        let sampler = CgroupSampler::new(
            h,
            Scope::OwnPod {
                proc_root: proc_root.clone(),
            },
            PodIndex::default(),
        );
        let err = sampler
            .own_targets(&proc_root)
            .expect_err("the own cgroup is not under --cgroup-root");
        assert_eq!(err.reason(), "self_cgroup_unknown", "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&own) && msg.contains("--cgroup-root") && msg.contains("hostPath"),
            "{msg}"
        );
        // The same tree with the pod's cgroup present (the host's tree mounted) is found.
        let pod_dir = Path::new(&own[1..]).parent().expect("pod dir");
        for ctrl in ["cpu", "cpuacct", "memory"] {
            std::fs::create_dir_all(cg.join(ctrl).join(&own[1..])).expect("mkdir");
        }
        let targets = sampler.own_targets(&proc_root).expect("found");
        assert_eq!(
            targets.len(),
            2,
            "the pod and its one container: {targets:?}"
        );
        assert_eq!(targets[0].rels.memory, pod_dir);
        assert_eq!(targets[0].uid, "1234-ab");
        let _ = std::fs::remove_dir_all(&t);
    }
}

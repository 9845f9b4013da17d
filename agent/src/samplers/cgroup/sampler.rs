//! The cgroup sampler: the cgroups found kept from round to round, read and emitted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::buffer::Buffer;
use crate::fdcache::{CachedDir, DirBuf, DirEntry, FdBudget, Watcher, dir_buf, is_cgroupfs};
use crate::pods::{PodMeta, PodMetaByUid};
use crate::rate::Rate;
use crate::sampler::{SampleError, Sampler};

use super::discover::{Target, containers_of, qos_dir};
use super::hierarchy::cg_dirs;
use super::read::{Files, Reader, read_stats_with};
use super::series::{Out, SERIES, SeriesState, emit, is_sandbox_or_unreported};
use super::{
    CgroupError, CgroupPaths, Hierarchy, KUBEPODS_ROOTS, PodCgroup, Qos, Stats,
    parse_container_dir, parse_pod_dir, self_cgroup,
};

/// How often (in rounds) a cgroup's slow-moving files — limits and pressure — are re-read.
/// Counters and memory are read every round; limits change only on a resize and PSI totals
/// are counters whose rates need no 1s resolution. Each cgroup gets a fixed offset so the
/// slow reads spread evenly over the rounds.
pub const SLOW_EVERY_ROUNDS: u64 = 10;

/// The slow-moving part of [`Stats`], cached between full reads.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct SlowStats {
    cpu_limit_cores: Option<f64>,
    memory_limit_bytes: Option<f64>,
    pressure: [Option<f64>; 6],
}

impl SlowStats {
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

/// Which cgroups the sampler covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every pod under `kubepods` (DaemonSet).
    Node,
    /// Only the agent's own pod, found from `<proc-root>/self/cgroup` (sidecar).
    OwnPod { proc_root: PathBuf },
}

/// Default cap on the descriptors the cgroup sampler holds (`--max-open-files`): the files
/// read every round of ~2,700 cgroups on v2 (3 each) or ~2,000 on v1 (4 each).
pub const DEFAULT_MAX_OPEN_FILES: usize = 8192;

/// One cgroup the sampler reads, kept from round to round: its identity, its held interface
/// files, its cached slow values and what its series keep (its CPU counter's last value and its
/// label set).
#[derive(Debug)]
pub(super) struct TrackedCgroup {
    pub(super) target: Target,
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
    slow: Option<SlowStats>,
    series: SeriesState,
}

impl TrackedCgroup {
    fn new(target: Target, name: String, ino: u64) -> Self {
        Self {
            target,
            name,
            ino,
            files: Files::default(),
            watches: None,
            offset: 0,
            slow: None,
            series: SeriesState::default(),
        }
    }
}

/// A pod directory and its cgroups (the pod's own first, then its containers by name).
#[derive(Debug, Default)]
struct PodDir {
    ino: u64,
    dir: CachedDir,
    cgs: Vec<TrackedCgroup>,
    /// The round it was last listed in; pods not seen in a round are forgotten.
    round: u64,
}

/// Samples pod and container cgroups.
///
/// The cgroups found are kept from round to round ([`TrackedCgroup`]), with their interface files held
/// open and their directories re-listed through held descriptors ([`crate::fdcache`]), so a
/// round costs one `pread` per file read and one `getdents64` per directory. Every round still
/// lists every directory and reads every container's counters.
#[derive(Debug)]
pub struct CgroupSampler {
    hierarchy: Hierarchy,
    scope: Scope,
    pods: PodMetaByUid,
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
    own: Vec<TrackedCgroup>,
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
    pub fn new(hierarchy: Hierarchy, scope: Scope, pods: PodMetaByUid) -> Self {
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
        pods: PodMetaByUid,
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
                rels: CgroupPaths::same(&pod.rel),
                uid: pod.uid.clone(),
                qos: Some(pod.qos),
                container_id: None,
                path_label: None,
            })
            .chain(pod.containers.iter().map(|c| Target {
                rels: CgroupPaths::same(&c.rel),
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
                None => TrackedCgroup::new(t, String::new(), 0),
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
            _ => TrackedCgroup::new(
                Target {
                    rels: CgroupPaths::same(rel),
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
                None => cgs.push(TrackedCgroup::new(
                    Target {
                        rels: CgroupPaths::same(&rel.join(&e.name)),
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
    fn sample(&mut self, cg: &mut TrackedCgroup, meta: Option<&Arc<PodMeta>>, buf: &mut Buffer) {
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
                    (true, _) => cg.slow = Some(SlowStats::of(&stats)),
                    (false, Some(slow)) => slow.apply(&mut stats),
                    (false, None) => {}
                }
                emit(self.out, &cg.target, &mut cg.series, &stats, meta, buf.at());
            }
            Err(e) => {
                // As if never seen: the next read is a full one, and starts a new rate.
                cg.slow = None;
                cg.series.rate = Rate::default();
                buf.error_detail(e.reason(), e);
            }
        }
    }
}

impl Ctx<'_> {
    /// Outside cgroupfs: watches the directories of `cg`'s files (before any is opened) and
    /// drops its held files after an event on one of them. True if its held files must still
    /// be checked before each read (a directory could not be watched).
    fn watch_files(&mut self, cg: &mut TrackedCgroup) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            PodMetaByUid::default(),
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

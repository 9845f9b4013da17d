//! Which cgroup hierarchies are mounted under `--cgroup-root` (v1, v2 or hybrid), and where
//! one cgroup's directories are in each.

use std::path::{Path, PathBuf};

use super::CgroupError;

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
    pub(super) fn roots(&self) -> impl Iterator<Item = &Path> {
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
    pub(super) fn walk_root(&self) -> &Path {
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
    pub(super) fn self_cgroup_controller(&self) -> &'static str {
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

/// Paths of one cgroup in each hierarchy (equal for discovered pods; may differ per
/// controller for the agent's own cgroup on v1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupPaths {
    pub cpu: PathBuf,
    pub cpuacct: PathBuf,
    pub memory: PathBuf,
    pub unified: PathBuf,
}

impl CgroupPaths {
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

/// The directories holding a cgroup's interface files, one per hierarchy in use.
pub(super) fn cg_dirs(h: &Hierarchy, rels: &CgroupPaths) -> Vec<PathBuf> {
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

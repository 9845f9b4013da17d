//! Finding cgroups on disk: pod and container directory names, the kubepods tree of both
//! kubelet cgroup drivers, the agent's own cgroup from `/proc/self/cgroup`, and what the
//! sampler reads of each (`Target`: a cgroup's paths and identity).

use std::path::{Path, PathBuf};

use super::read::read;
use super::{CgroupError, CgroupPaths, Hierarchy};

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

/// One cgroup the sampler reads in a pass, with its identity (what its labels are made of).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Target {
    pub(super) rels: CgroupPaths,
    pub(super) uid: String,
    pub(super) qos: Option<Qos>,
    /// `None` for the pod-level cgroup.
    pub(super) container_id: Option<String>,
    /// Outside Kubernetes: the cgroup path, used as the `container` label.
    pub(super) path_label: Option<String>,
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

pub(super) fn qos_dir(name: &str) -> Option<Qos> {
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
pub(super) fn containers_of(root: &Path, rel: &Path) -> Result<Vec<ContainerCgroup>, CgroupError> {
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

/// Reads `/proc/self/cgroup` and returns the paths of this process's cgroup per controller.
pub fn self_cgroup(proc_root: &Path, h: &Hierarchy) -> Result<CgroupPaths, CgroupError> {
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
        Hierarchy::V2 { .. } => CgroupPaths::same(&main),
        Hierarchy::V1 { .. } => CgroupPaths {
            cpu: find("cpu").unwrap_or_else(|| main.clone()),
            cpuacct: find("cpuacct").unwrap_or_else(|| main.clone()),
            memory: find("memory").unwrap_or_else(|| main.clone()),
            unified: find("").unwrap_or_else(|| main.clone()),
        },
    })
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
}

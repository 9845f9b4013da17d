//! Pod-shaped cgroups on this machine and kubelet-like pod status on KWOK, for tests that run
//! the real agent against real cgroups and real API objects.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};

use crate::wait_for;

/// Removes the created cgroup directories, deepest first.
pub struct CgroupGuard(pub Vec<PathBuf>);
impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The hierarchies pods live in: the v2 root, or the v1 cpu/cpuacct/memory controllers plus
/// a hybrid host's `unified` tree.
pub fn hierarchies(root: &Path) -> Vec<PathBuf> {
    if root.join("cgroup.controllers").is_file() {
        return vec![root.to_path_buf()];
    }
    let mut v: Vec<PathBuf> = ["cpu,cpuacct", "cpu", "cpuacct", "memory", "unified"]
        .iter()
        .map(|n| root.join(n))
        .filter(|p| p.is_dir())
        .collect();
    v.dedup();
    v
}

pub fn mkdirs(bases: &[PathBuf], rel: &Path, guard: &mut CgroupGuard) -> anyhow::Result<()> {
    for base in bases {
        let mut p = base.clone();
        for comp in rel.components() {
            p.push(comp);
            // Another test may create the shared ancestors (`kubepods/…`) concurrently.
            match std::fs::create_dir(&p) {
                Ok(()) => guard.0.push(p.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => anyhow::bail!("mkdir {} (needs root): {e}", p.display()),
            }
        }
    }
    Ok(())
}

/// Waits for KWOK to mark the pod running, then records `containerID` like a kubelet would.
pub async fn set_container_id(pods: &Api<Pod>, name: &str, id: &str) -> anyhow::Result<()> {
    for _ in 0..20 {
        let mut p = wait_for(
            &format!("pod {name} running"),
            Duration::from_secs(60),
            || async {
                let p = pods.get(name).await.ok()?;
                let running = p
                    .status
                    .as_ref()?
                    .container_statuses
                    .as_ref()?
                    .iter()
                    .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
                running.then_some(p)
            },
        )
        .await?;
        if let Some(cs) = p
            .status
            .as_mut()
            .and_then(|s| s.container_statuses.as_mut())
        {
            for c in cs.iter_mut() {
                c.container_id = Some(format!("containerd://{id}"));
            }
        }
        match pods.replace_status(name, &PostParams::default(), &p).await {
            Ok(_) => return Ok(()),
            // A concurrent KWOK update: read again and retry.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("could not set containerID on {name}")
}

//! Pod-shaped cgroups on this machine and kubelet-like pod status on KWOK, for tests that run
//! the real agent against real cgroups and real API objects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};

use crate::{ChildGuard, wait_for};

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

/// A one-container pod (`app`) bound to the KWOK node `node`, tolerating its taint, with the
/// given `resources` (requests/limits JSON).
pub fn kwok_pod(name: &str, node: &str, resources: serde_json::Value) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "app", "image": "registry.invalid/tidal/fake:1", "resources": resources}]
        }
    }))?)
}

/// A container ID shaped like containerd's (64 hex digits), unique per call within a run
/// (`offset` separates IDs made in the same nanosecond).
pub fn container_id(offset: u128) -> anyhow::Result<String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    Ok(format!("{:064x}", nanos + offset))
}

/// A real busy loop (one thread, `nice -20`) moved into the cgroup `rel` of every hierarchy in
/// `bases`; killed when the guard drops (declare it after the [`CgroupGuard`], so it dies
/// before the rmdirs).
pub fn spawn_burner(bases: &[PathBuf], rel: &Path) -> anyhow::Result<ChildGuard> {
    let burner = ChildGuard::spawn(Command::new("nice").args([
        "-n",
        "-20",
        "sh",
        "-c",
        "while :; do :; done",
    ]))?;
    for base in bases {
        let procs = base.join(rel).join("cgroup.procs");
        std::fs::write(&procs, burner.0.id().to_string())
            .map_err(|e| anyhow::anyhow!("moving the burner into {}: {e}", procs.display()))?;
    }
    Ok(burner)
}

/// CPU time (user + system, seconds) the kernel accounted to process `pid` (`/proc/<pid>/stat`).
pub fn proc_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // After the command name: state is field 0, utime 11, stime 12 (clock ticks, 100 Hz).
    let tick = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| anyhow::anyhow!("{path}: no field {i}"))
    };
    Ok((tick(11)? + tick(12)?) / 100.0)
}

/// Creates the directory `rel` (and its missing ancestors) in every hierarchy of `bases`,
/// recording each new directory in `guard`.
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

/// Gives every running pod matching the label `selector` a kubelet-like container ID and the
/// matching cgroup (cgroupfs driver, Burstable: `kubepods/burstable/pod<uid>/<id>` in every
/// hierarchy of `bases`), so an agent reports its usage; records `uid -> container id` in
/// `done`. Runs until aborted.
pub async fn provision_pods(
    pods: Api<Pod>,
    selector: String,
    bases: Vec<PathBuf>,
    guard: Arc<Mutex<CgroupGuard>>,
    done: Arc<Mutex<BTreeMap<String, String>>>,
) {
    let mut offset = 0u128;
    loop {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        for p in list {
            let (Some(name), Some(uid)) = (p.metadata.name.clone(), p.metadata.uid.clone()) else {
                continue;
            };
            if p.metadata.deletion_timestamp.is_some()
                || done.lock().map(|d| d.contains_key(&uid)).unwrap_or(true)
            {
                continue;
            }
            offset += 1;
            let Ok(cid) = container_id(offset) else {
                continue;
            };
            let rel = PathBuf::from(format!("kubepods/burstable/pod{uid}/{cid}"));
            let made = match guard.lock() {
                Ok(mut g) => mkdirs(&bases, &rel, &mut g).is_ok(),
                Err(_) => false,
            };
            if made
                && set_container_id(&pods, &name, &cid).await.is_ok()
                && let Ok(mut d) = done.lock()
            {
                d.insert(uid, cid);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

//! The real-node benchmark of issue #17 (part 6): `tidal-bench node`, run by
//! `scripts/bench-node.sh` (`--steps 20 --window 5 --cost-seconds 60 --lock-seconds 300
//! --parts cost,reaction`).
//!
//! Tidal runs in-cluster on the stack's real node (manifests/overlays/local: the agent
//! DaemonSet and the scaler Deployment with leader election, `RealNode::installed` applies it
//! when it is missing). Nothing Tidal-side is started here: the driver makes a Deployment of
//! real busybox pods that the kubelet starts with containerd and runc (100m CPU requested,
//! 400m at most, a busy loop on while `/tmp/load` exists) under a ScalingPolicy labelled for
//! the in-cluster scaler (CPU at 50 % of the request, 1..2 replicas, scale-up stabilization
//! 0 s, scale-down stabilization `--window` s), then measures, holding the real node
//! exclusively (`NodeLock`, so no test runs its pods meanwhile):
//!
//! 1. `cost`: the agent pod's cost over `--cost-seconds` with the workload idle at 1 replica:
//!    the delta of its pod cgroup's `cpuacct.usage` divided by the sampling rounds in the
//!    window (window / the agent's `--interval-seconds`; the agent's loop starts a round every
//!    interval), its container's and its `sampler` thread's share (`/proc/<pid>/task/*/
//!    schedstat`), its memory (the container cgroup's `memory.stat` `total_rss`, the pod's,
//!    `memory.usage_in_bytes`, and the process's `VmRSS`/`VmHWM`), sampled every 5 s, and the
//!    containers it was sampling (its `tidal_agent_container_cpu_usage_seconds_total` series, scraped just
//!    before and just after the window).
//! 2. `reaction`: `--steps` load steps. Each step starts at 1 idle replica (the agent exports
//!    the pod), waits 1.0–2.0 s (a random phase against the agent's and the scaler's 1 s
//!    cycles), takes t0 and runs `kubectl exec ... touch /tmp/load` in the pod (t0 is taken
//!    before the exec is sent, so the figure includes the exec's latency; the exec's own
//!    duration is recorded too), and takes t1 when a watch on the API server sees the
//!    Deployment's `spec.replicas` become 2. Then `rm -f /tmp/load` and the time until the
//!    watch sees 1 again (the new pod must start and be measured before the scaler scales
//!    down: the scale-down waits for data on every pod, then for the window).
//!
//! Puts one JSON object per part in the [`Sink`] (`{"kind": "cost" | "reaction", ...}`, with
//! `"failed": true` and a `reason` when a part failed); progress goes to stderr. The namespace
//! it makes is listed in `WORK/created` so that the script can delete it if this process is
//! killed; at the end, and on SIGTERM or SIGINT, it deletes it itself (in the background; the
//! script waits).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use tidal_e2e::bench::{
    Created, change_after, delta, exec, failed, jitter, label, progress, ready_pods, summary,
    wait_exported, wait_policy_active,
};
use tidal_e2e::builders::policy;
use tidal_e2e::realnode::{
    BURNER_SCRIPT, RealNode, TIDAL_NAMESPACE, get_text, pod_ip, pod_ready, read_stat, read_u64,
};
use tidal_e2e::scaler::{ReplicaHistory, samples};
use tidal_e2e::{Stack, wait_for};
use tidal_scaler::api::ScalingPolicy;

use crate::drive::{Ended, Sink, bounded};
use crate::parts::{OnStack, hold_node};

type R<T> = anyhow::Result<T>;

/// The label every benchmark namespace carries (the script waits for them to be gone).
const BENCH_LABEL: (&str, &str) = ("tidal.dev/bench", "node");
/// What the in-cluster scaler is labelled to act on (manifests/overlays/local/scaler.yaml).
const SCALER_LABEL: (&str, &str) = ("tidal.dev/scaler", "in-cluster");
/// The workload: its Deployment, its `app` label and its container.
const APP: &str = "web";
const BURN: &str = "burn";
const REQUEST: (&str, &str) = ("100m", "16Mi");
const LIMIT: (&str, &str) = ("400m", "64Mi");
const TARGET_UTILIZATION: u32 = 50;
/// The scale write follows the load within this, or the step fails.
const UP_TIMEOUT: Duration = Duration::from_secs(30);
const SCALE_EVENTS: &str = "tidal_scaler_scale_events_total";
const ERRORS: &str = "tidal_scaler_errors_total";

// ------------------------------------------------------------------------------------------
// the conditions

/// `--flag=value` or `--flag value` in a container's args, or `env` in its environment.
fn setting(c: &Container, flag: &str, env: &str) -> Option<String> {
    let args = c.args.clone().unwrap_or_default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
            return Some(v.to_string());
        }
        if a == flag {
            return it.next().cloned();
        }
    }
    c.env
        .as_ref()?
        .iter()
        .find(|e| e.name == env)?
        .value
        .clone()
}

/// What Tidal runs with on the node, read from the live objects.
async fn conditions(admin: &kube::Client, node: &RealNode) -> R<Value> {
    let ds: Api<DaemonSet> = Api::namespaced(admin.clone(), TIDAL_NAMESPACE);
    let deploys: Api<Deployment> = Api::namespaced(admin.clone(), TIDAL_NAMESPACE);
    let agent = ds.get("tidal-agent").await?;
    let scaler = deploys.get("tidal-scaler").await?;
    let first = |p: Option<k8s_openapi::api::core::v1::PodSpec>| {
        p.and_then(|p| p.containers.into_iter().next())
            .ok_or_else(|| anyhow::anyhow!("no container"))
    };
    let ac = first(agent.spec.and_then(|s| s.template.spec))?;
    let replicas = scaler.spec.as_ref().and_then(|s| s.replicas);
    let sc = first(scaler.spec.and_then(|s| s.template.spec))?;
    let num = |v: Option<String>, default: f64| -> R<f64> {
        v.map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| anyhow::anyhow!("not a number: {v:?}"))
        })
    };
    let agent_interval = num(
        setting(&ac, "--interval-seconds", "TIDAL_AGENT_INTERVAL_SECONDS"),
        1.0,
    )?;
    let fast = num(
        setting(
            &sc,
            "--fast-interval-seconds",
            "TIDAL_SCALER_FAST_INTERVAL_SECONDS",
        ),
        1.0,
    )?;
    let res = |c: &Container| serde_json::to_value(&c.resources).unwrap_or_default();
    let nodes: Api<Node> = Api::all(admin.clone());
    let info = nodes
        .get(&node.name)
        .await?
        .status
        .and_then(|s| s.node_info)
        .map(|i| {
            json!({"kubelet": i.kubelet_version, "runtime": i.container_runtime_version,
                   "kernel": i.kernel_version, "os": i.os_image})
        })
        .unwrap_or_default();
    Ok(json!({
        "node": node.name, "node_info": info,
        "agent_interval_seconds": agent_interval, "agent_image": ac.image, "agent_resources": res(&ac),
        "scaler_fast_interval_seconds": fast, "scaler_replicas": replicas,
        "scaler_image": sc.image, "scaler_resources": res(&sc),
        "scaler_leader": holder(admin).await,
    }))
}

/// The scaler Lease's holder (a scaler pod's name).
async fn holder(admin: &kube::Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(admin.clone(), TIDAL_NAMESPACE);
    leases.get("tidal-scaler").await.ok()?.spec?.holder_identity
}

// ------------------------------------------------------------------------------------------
// the workload

fn workload(node: &RealNode) -> Deployment {
    let container = node.busybox(BURN, BURNER_SCRIPT, Some(REQUEST), Some(LIMIT));
    node.deployment(APP, 1, container)
}

fn policy_spec(window: u32) -> Value {
    json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
        "minReplicas": 1, "maxReplicas": 2,
        "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": TARGET_UTILIZATION}}],
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 0},
            "scaleDown": {"stabilizationWindowSeconds": window,
                          "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}]}
        }
    })
}

fn labelled_policy(window: u32) -> R<ScalingPolicy> {
    let mut p = policy(APP, policy_spec(window))?;
    p.metadata.labels = Some(BTreeMap::from([(
        SCALER_LABEL.0.to_string(),
        SCALER_LABEL.1.to_string(),
    )]));
    Ok(p)
}

/// `tidal_scaler_scale_events_total` of namespace `ns` by direction, summed over the Ready
/// scaler pods (the leader counts them; a replica that led earlier keeps its counts), and
/// `tidal_scaler_errors_total` by reason.
async fn scaler_counts(
    admin: &kube::Client,
    ns: &str,
) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), TIDAL_NAMESPACE);
    let lp = ListParams::default().labels("app.kubernetes.io/name=tidal-scaler");
    let ips: Vec<String> = pods
        .list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
        .filter_map(|p| pod_ip(p).map(str::to_string))
        .collect();
    let (mut events, mut errors) = (BTreeMap::new(), BTreeMap::new());
    for ip in ips {
        let Ok(body) = get_text(&format!("http://{ip}:9465/metrics")).await else {
            continue;
        };
        for (l, v) in samples(&body, SCALE_EVENTS) {
            if label(&l, "namespace") == Some(ns) {
                let dir = label(&l, "direction").unwrap_or("?").to_string();
                *events.entry(dir).or_insert(0.0) += v;
            }
        }
        for (l, v) in samples(&body, ERRORS) {
            let reason = label(&l, "reason").unwrap_or("?").to_string();
            *errors.entry(reason).or_insert(0.0) += v;
        }
    }
    (events, errors)
}

// ------------------------------------------------------------------------------------------
// the agent's cost

/// What the agent's `/metrics` says about what it samples.
fn sampled(body: &str) -> Value {
    let series = samples(body, tidal_core::schema::CONTAINER_CPU_USAGE_SECONDS_TOTAL);
    let (mut containers, mut pods, mut named_containers, mut named_pods) = (0, 0, 0, 0);
    let mut uids = BTreeSet::new();
    let mut names = Vec::new();
    for l in series.keys() {
        let named = label(l, "namespace").is_some_and(|n| !n.is_empty());
        if let Some(uid) = label(l, "pod_uid") {
            uids.insert(uid.to_string());
        }
        if let Some(c) = label(l, "container").filter(|c| !c.is_empty()) {
            containers += 1;
            named_containers += usize::from(named);
            names.push(if named {
                format!(
                    "{}/{}/{c}",
                    label(l, "namespace").unwrap_or_default(),
                    label(l, "pod").unwrap_or_default()
                )
            } else {
                // A cgroup with no pod behind it (a KWOK test's): its pod UID.
                format!("pod{}", label(l, "pod_uid").unwrap_or("?"))
            });
        } else {
            pods += 1;
            named_pods += usize::from(named);
        }
    }
    let durations: BTreeMap<String, f64> = samples(body, "tidal_agent_sampler_duration_seconds")
        .into_iter()
        .filter_map(|(l, v)| Some((label(&l, "sampler")?.to_string(), v)))
        .collect();
    json!({
        "containers": containers, "pods": pods,
        "containers_with_pod_metadata": named_containers, "pods_with_pod_metadata": named_pods,
        "pod_uids": uids.len(), "names": names,
        "series": body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count(),
        "bytes": body.len(),
        "sampler_duration_seconds": durations,
    })
}

/// The agent process's pid in its container cgroup (`comm` tidal-agent).
fn agent_pid(cgroup: &Path) -> R<u32> {
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .map_err(|e| anyhow::anyhow!("reading {}/cgroup.procs: {e}", cgroup.display()))?;
    procs
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "tidal-agent")
        })
        .ok_or_else(|| anyhow::anyhow!("no tidal-agent process in {}", cgroup.display()))
}

/// A `Key:   N kB` line of /proc/<pid>/status, in bytes.
fn proc_status_kb(pid: u32, key: &str) -> R<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/status has no {key}"))
}

/// CPU time (ns on the CPU, from `schedstat`) of the process's threads named `name`.
fn thread_cpu_ns(pid: u32, name: &str) -> R<u64> {
    let mut total = 0;
    let mut found = false;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = t?.path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == name) {
            let stat = std::fs::read_to_string(dir.join("schedstat"))?;
            total += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| anyhow::anyhow!("{}: {stat:?}", dir.display()))?;
            found = true;
        }
    }
    anyhow::ensure!(found, "no thread named {name} in process {pid}");
    Ok(total)
}

#[derive(Default)]
struct Memory {
    container_rss: u64,
    container_mapped_file: u64,
    container_usage: u64,
    container_kmem: Option<u64>,
    pod_rss: u64,
    vm_rss: u64,
    vm_hwm: u64,
    rss_anon: u64,
    rss_file: u64,
}

impl Memory {
    fn read(ctr: &Path, pod: &Path, pid: u32) -> R<Self> {
        let stat = ctr.join("memory.stat");
        Ok(Self {
            container_rss: read_stat(&stat, "total_rss")?,
            container_mapped_file: read_stat(&stat, "total_mapped_file")?,
            container_usage: read_u64(&ctr.join("memory.usage_in_bytes"))?,
            container_kmem: read_u64(&ctr.join("memory.kmem.usage_in_bytes")).ok(),
            pod_rss: read_stat(&pod.join("memory.stat"), "total_rss")?,
            vm_rss: proc_status_kb(pid, "VmRSS")?,
            vm_hwm: proc_status_kb(pid, "VmHWM")?,
            rss_anon: proc_status_kb(pid, "RssAnon")?,
            rss_file: proc_status_kb(pid, "RssFile")?,
        })
    }

    fn json(&self) -> Value {
        json!({
            "container_total_rss_bytes": self.container_rss,
            "container_total_mapped_file_bytes": self.container_mapped_file,
            "container_usage_bytes": self.container_usage,
            "container_kmem_usage_bytes": self.container_kmem,
            "pod_total_rss_bytes": self.pod_rss,
            "vm_rss_bytes": self.vm_rss, "vm_hwm_bytes": self.vm_hwm,
            "rss_anon_bytes": self.rss_anon, "rss_file_bytes": self.rss_file,
        })
    }
}

async fn cost(admin: &kube::Client, node: &RealNode, seconds: u64, interval: f64) -> R<Value> {
    let agent = node.agent_pod(admin, Duration::from_secs(60)).await?;
    let name = agent.metadata.name.clone().unwrap_or_default();
    let uid = agent.metadata.uid.clone();
    let restarts = |p: &Pod| -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0)
    };
    let restarts0 = restarts(&agent);
    let ip = pod_ip(&agent)
        .ok_or_else(|| anyhow::anyhow!("the agent pod has no IP"))?
        .to_string();
    let missing = |what: &str| anyhow::anyhow!("the agent pod's {what} cgroup is unknown");
    let cpu_pod = node
        .pod_cgroup("cpuacct", &agent)
        .ok_or_else(|| missing("cpuacct"))?;
    let cpu_ctr = node
        .container_cgroup("cpuacct", &agent, "agent")
        .ok_or_else(|| missing("cpuacct container"))?;
    let mem_pod = node
        .pod_cgroup("memory", &agent)
        .ok_or_else(|| missing("memory"))?;
    let mem_ctr = node
        .container_cgroup("memory", &agent, "agent")
        .ok_or_else(|| missing("memory container"))?;
    let pid = agent_pid(&mem_ctr)?;
    let url = format!("http://{ip}:9464/metrics");
    progress(format!(
        "agent {name} (pid {pid} on the host): {seconds} s measured, its cgroup {}",
        cpu_pod.display()
    ));

    let before = sampled(&get_text(&url).await?);
    let (p0, c0) = (
        read_u64(&cpu_pod.join("cpuacct.usage"))?,
        read_u64(&cpu_ctr.join("cpuacct.usage"))?,
    );
    let s0 = thread_cpu_ns(pid, "sampler")?;
    let a0 = Instant::now();
    let mut peak = Memory::read(&mem_ctr, &mem_pod, pid)?;
    let mut readings = 1;
    let window = Duration::from_secs(seconds);
    while a0.elapsed() < window {
        let left = window.saturating_sub(a0.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(5))).await;
        let m = Memory::read(&mem_ctr, &mem_pod, pid)?;
        peak.container_rss = peak.container_rss.max(m.container_rss);
        peak.container_usage = peak.container_usage.max(m.container_usage);
        peak.pod_rss = peak.pod_rss.max(m.pod_rss);
        peak.vm_rss = peak.vm_rss.max(m.vm_rss);
        readings += 1;
        if a0.elapsed() >= window {
            let (p1, c1) = (
                read_u64(&cpu_pod.join("cpuacct.usage"))?,
                read_u64(&cpu_ctr.join("cpuacct.usage"))?,
            );
            let s1 = thread_cpu_ns(pid, "sampler")?;
            let elapsed = a0.elapsed().as_secs_f64();
            let after = sampled(&get_text(&url).await?);
            let now = node.agent_pod(admin, Duration::from_secs(10)).await?;
            anyhow::ensure!(
                now.metadata.uid == uid && restarts(&now) == restarts0,
                "the agent pod was replaced or restarted during the window"
            );
            let rounds = elapsed / interval;
            let ms = |ns: u64| ns as f64 / 1e6;
            let (pod_ns, ctr_ns, sampler_ns) = (p1 - p0, c1 - c0, s1 - s0);
            return Ok(json!({
                "kind": "cost", "agent_pod": name, "window_seconds": elapsed,
                "interval_seconds": interval, "rounds": rounds,
                "pod_cpu_ms_per_round": ms(pod_ns) / rounds,
                "container_cpu_ms_per_round": ms(ctr_ns) / rounds,
                "sampler_thread_cpu_ms_per_round": ms(sampler_ns) / rounds,
                "pod_cpu_cores": pod_ns as f64 / 1e9 / elapsed,
                "pod_cpu_seconds": pod_ns as f64 / 1e9,
                "memory_end": m.json(), "memory_peak": peak.json(), "memory_readings": readings,
                "sampled_before": before, "sampled_after": after,
            }));
        }
    }
    anyhow::bail!("the window ended without a reading")
}

// ------------------------------------------------------------------------------------------
// the reaction

#[allow(clippy::too_many_arguments)]
async fn reaction(
    stack: &Stack,
    admin: &kube::Client,
    node: &RealNode,
    ns: &str,
    history: &ReplicaHistory,
    steps: usize,
    window: u32,
) -> R<Value> {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(admin.clone(), ns);
    let (events0, errors0) = scaler_counts(admin, ns).await;
    let leader0 = holder(admin).await;
    let mut rows = Vec::new();
    let mut exported: Option<String> = None;
    let started = Instant::now();
    let down_timeout = Duration::from_secs(u64::from(window) + 120);
    for step in 1..=steps {
        // 1 replica, one Ready pod, measured by the agent; the load is off in it.
        let pod = wait_for(
            "1 replica and exactly one Ready pod",
            Duration::from_secs(120),
            || async {
                if history.current() != Some(1) {
                    return None;
                }
                let names = ready_pods(&pods, APP).await.ok()?;
                (names.len() == 1).then(|| names[0].clone())
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("step {step}: {e}; {}", history.render()))?;
        if exported.as_deref() != Some(&pod) {
            wait_exported(admin, node, ns, &pod, BURN, Duration::from_secs(60)).await?;
            exported = Some(pod.clone());
        }
        // A random phase against the agent's sampling and the scaler's cycle.
        tokio::time::sleep(Duration::from_secs_f64(1.0 + jitter())).await;
        anyhow::ensure!(
            history.current() == Some(1),
            "step {step}: replicas moved while idle; {}",
            history.render()
        );

        let t0 = history.started.elapsed();
        let exec_on = exec(stack, ns, &pod, BURN, "touch /tmp/load").await?;
        let up = change_after(history, t0, 2, UP_TIMEOUT)
            .await
            .map_err(|e| anyhow::anyhow!("step {step}: {e}"))?;
        let up_s = up.at.saturating_sub(t0).as_secs_f64();

        let t_off = history.started.elapsed();
        let exec_off = exec(stack, ns, &pod, BURN, "rm -f /tmp/load").await?;
        let down = change_after(history, t_off, 1, down_timeout)
            .await
            .map_err(|e| anyhow::anyhow!("step {step}: {e}"))?;
        let down_s = down.at.saturating_sub(t_off).as_secs_f64();
        let during: Vec<i32> = history
            .changes()
            .iter()
            .filter(|c| c.at > t0 && c.at <= down.at)
            .map(|c| c.replicas)
            .collect();
        anyhow::ensure!(
            during == [2, 1],
            "step {step}: wrong actuation {during:?}; {}",
            history.render()
        );
        progress(format!(
            "step {step:2}/{steps}: load on -> 2 replicas in {up_s:.2} s (the exec took {exec_on:.2} s); \
             load off -> 1 replica in {down_s:.2} s"
        ));
        rows.push(json!({
            "step": step, "pod": pod, "up_seconds": up_s, "exec_on_seconds": exec_on,
            "exec_off_seconds": exec_off, "down_seconds": down_s,
            "write_before_exec_returned": up_s < exec_on,
        }));
    }
    let total = started.elapsed().as_secs_f64();
    // The last scale-down's event is counted at once; a moment for the scrape to show it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (events1, errors1) = scaler_counts(admin, ns).await;
    let col = |k: &str| -> Vec<f64> { rows.iter().filter_map(|r| r[k].as_f64()).collect() };
    let status = policies
        .get(APP)
        .await
        .ok()
        .and_then(|p| serde_json::to_value(p.status).ok())
        .unwrap_or_default();
    Ok(json!({
        "kind": "reaction", "steps": steps, "scale_down_window_seconds": window,
        "up_seconds": summary(&col("up_seconds")),
        "exec_on_seconds": summary(&col("exec_on_seconds")),
        "exec_off_seconds": summary(&col("exec_off_seconds")),
        "down_seconds": summary(&col("down_seconds")),
        "up_minus_exec_seconds": summary(
            &rows.iter().filter_map(|r| Some(r["up_seconds"].as_f64()? - r["exec_on_seconds"].as_f64()?)).collect::<Vec<_>>()
        ),
        "writes_before_exec_returned": rows.iter().filter(|r| r["write_before_exec_returned"] == true).count(),
        "rows": rows, "run_seconds": total,
        "scale_events": delta(&events0, &events1), "scaler_errors": delta(&errors0, &errors1),
        "leader_at_start": leader0, "leader_at_end": holder(admin).await,
        "policy_conditions": status["conditions"],
    }))
}

// ------------------------------------------------------------------------------------------

/// What one run measures.
pub struct Settings {
    pub steps: usize,
    pub window: u32,
    pub cost_seconds: u64,
    pub lock_seconds: u64,
    pub cost: bool,
    pub reaction: bool,
}

async fn run(
    stack: &Stack,
    admin: &kube::Client,
    created: &Created,
    settings: &Settings,
    sink: &Sink,
) -> R<()> {
    let &Settings {
        steps,
        window,
        cost_seconds,
        lock_seconds,
        ..
    } = settings;
    progress(
        "Tidal in-cluster on the real node (RealNode::installed: applies manifests/overlays/local if needed)",
    );
    let node = RealNode::installed(stack).await?;
    progress(format!(
        "taking the real node exclusively (NodeLock; at most {lock_seconds} s)"
    ));
    let waited = Instant::now();
    let _lock = hold_node(stack, Duration::from_secs(lock_seconds))
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the real node stayed held by tests for {lock_seconds} s (NodeLock); try again later"
            )
        })?;
    let lock_wait = waited.elapsed().as_secs_f64();
    let mut conds = conditions(admin, &node).await?;
    conds["lock_wait_seconds"] = json!(lock_wait);
    conds["request"] = json!({"cpu": REQUEST.0, "memory": REQUEST.1});
    conds["limit"] = json!({"cpu": LIMIT.0, "memory": LIMIT.1});
    conds["target_utilization"] = json!(TARGET_UTILIZATION);
    conds["policy"] = policy_spec(window);
    let interval = conds["agent_interval_seconds"].as_f64().unwrap_or(1.0);
    progress(format!(
        "agent every {interval} s, scaler fast path every {} s, leader {}",
        conds["scaler_fast_interval_seconds"], conds["scaler_leader"]
    ));

    let ns = created.namespace(admin, "bench-node", BENCH_LABEL).await?;
    let deploys: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(admin.clone(), &ns);
    deploys
        .create(&PostParams::default(), &workload(&node))
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), APP).await?;
    let first = wait_for(
        "the workload's pod Ready",
        Duration::from_secs(120),
        || async { ready_pods(&pods, APP).await.ok().filter(|p| p.len() == 1) },
    )
    .await?;
    wait_exported(admin, &node, &ns, &first[0], BURN, Duration::from_secs(60)).await?;
    policies
        .create(&PostParams::default(), &labelled_policy(window)?)
        .await?;
    wait_policy_active(&policies, APP, SCALER_LABEL, 1, Duration::from_secs(60)).await?;
    progress(format!(
        "{ns}/{APP}: 1 Ready pod on {}, the in-cluster scaler acts on its policy",
        node.name
    ));

    let mut errors = Vec::new();
    if settings.cost {
        match cost(admin, &node, cost_seconds, interval).await {
            Ok(mut v) => {
                v["conditions"] = conds.clone();
                sink.emit(v);
            }
            Err(e) => {
                progress(format!("the cost part failed: {e:#}"));
                sink.emit(failed("cost", &e, &conds));
                errors.push(format!("cost: {e:#}"));
            }
        }
    }
    if settings.reaction {
        progress(format!(
            "{steps} steps: load on (kubectl exec) -> 2 replicas, load off -> 1 (window {window} s)"
        ));
        match reaction(stack, admin, &node, &ns, &history, steps, window).await {
            Ok(mut v) => {
                v["conditions"] = conds.clone();
                sink.emit(v);
            }
            Err(e) => {
                progress(format!("the reaction part failed: {e:#}"));
                sink.emit(failed("reaction", &e, &conds));
                errors.push(format!("reaction: {e:#}"));
            }
        }
    }
    let _ = policies.delete(APP, &DeleteParams::default()).await;
    anyhow::ensure!(errors.is_empty(), "{}", errors.join("; "));
    Ok(())
}

/// Runs the parts of `settings` for at most `limit`, their figures to `sink`; then deletes
/// the namespace it made (also when it failed or was interrupted).
pub async fn drive(work: &Path, settings: &Settings, sink: &Sink, limit: Duration) -> Ended {
    let on = match OnStack::new(work, "node").await {
        Ok(on) => on,
        Err(ended) => return ended,
    };
    let body = run(&on.stack, &on.admin, &on.created, settings, sink);
    let ended = bounded(limit, body).await;
    on.finish(ended).await
}

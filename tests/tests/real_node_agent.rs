//! tidal-agent on the stack's real node (docs/real-node.md): real pods that a real kubelet
//! starts with containerd and runc, measured three ways at the same moments.
//!
//! - the agent DaemonSet in tidal-system (manifests/overlays/local), scraped at its pod IP;
//! - the kernel's own accounting in the kubelet-made cgroups (`cpuacct.usage`, in ns;
//!   working set = `memory.usage_in_bytes - memory.stat total_inactive_file`);
//! - the kubelet's cAdvisor (`/api/v1/nodes/<node>/proxy/metrics/cadvisor`, through the API
//!   server), for the counters it exports with their own timestamps.
//!
//! And the agent as a sidecar (`--mode sidecar`) inside a real pod.
//!
//! An agent counter is read at the start of the agent's sampling round, which is
//! `tidal_agent_snapshot_age_seconds` before the scrape answered; the kernel's counter is read
//! right after the scrape. Rates are therefore taken over each source's own window, and a
//! counter compared at one moment is carried to the other source's moment with the kernel's
//! rate (a CPU-limited busy loop runs at a steady rate).
//!
//! Needs the stack with its real node (`scripts/stack.sh up`) and Tidal installed in-cluster;
//! reads the node's cgroups, so it runs on the node's host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tidal_e2e::realnode::{
    CadvisorSample, NodeLock, RealNode, TIDAL_IMAGE, TIDAL_NAMESPACE, cadvisor, get_text,
    parse_labels, pod_ip, read_stat, read_u64, wait_ready,
};
use tidal_e2e::scaler::samples;
use tidal_e2e::{Stack, in_namespace, wait_for};

type R = anyhow::Result<()>;

/// The agent's series (Tidal's names: the kubelet's cAdvisor exports the upstream ones).
const CPU: &str = tidal_core::schema::CONTAINER_CPU_USAGE_SECONDS_TOTAL;
const WORKING_SET: &str = tidal_core::schema::CONTAINER_MEMORY_WORKING_SET_BYTES;
/// cAdvisor's name for the same CPU counter.
const CADVISOR_CPU: &str = "container_cpu_usage_seconds_total";
const USAGE_CORES: &str = "tidal_agent_container_cpu_usage_cores";
/// The agreement the tests ask of every pair of measurements.
const TOLERANCE_PCT: f64 = 5.0;
/// Seconds between the two moments of a rate.
const WINDOW: Duration = Duration::from_secs(10);
const POD_TIMEOUT: Duration = Duration::from_secs(90);

/// A busy loop: its CPU limit (300m) makes its rate steady.
const BURN: &str = "while :; do :; done";
/// Holds ~20 MiB of anonymous memory in a shell variable, then idles (a loop, so the shell
/// never `exec`s its last command and drops the memory).
const HOLD: &str = "x=$(head -c 20971520 /dev/zero | tr '\\0' x); echo holding ${#x} bytes; \
                    while :; do sleep 3600; done";

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// `|a - b| / b`, in percent.
fn pct(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        return f64::INFINITY;
    }
    (a - b).abs() / b.abs() * 100.0
}

/// Every sample of `metric` in an agent page, with its labels.
fn series(body: &str, metric: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    samples(body, metric)
        .into_iter()
        .map(|(l, v)| (parse_labels(&l), v))
        .collect()
}

/// The sample of `metric` for one container (`""`: the pod) of one pod.
fn value(body: &str, metric: &str, ns: &str, pod: &str, container: &str) -> Option<f64> {
    series(body, metric).into_iter().find_map(|(l, v)| {
        (l.get("namespace").map(String::as_str) == Some(ns)
            && l.get("pod").map(String::as_str) == Some(pod)
            && l.get("container").map(String::as_str) == Some(container))
        .then_some(v)
    })
}

fn must(body: &str, metric: &str, ns: &str, pod: &str, container: &str) -> anyhow::Result<f64> {
    value(body, metric, ns, pod, container).ok_or_else(|| {
        anyhow::anyhow!(
            "the agent exports no {metric}{{namespace={ns:?},pod={pod:?},container={container:?}}}"
        )
    })
}

/// One scrape of an agent, and the kernel's CPU counters (ns) of `cpu_dirs` read right after.
struct Moment {
    body: String,
    /// Wall time (Unix seconds) of the agent's sampling round this page holds.
    agent_at: f64,
    kernel_at: f64,
    kernel_ns: Vec<u64>,
}

async fn moment(url: &str, cpu_dirs: &[&Path]) -> anyhow::Result<Moment> {
    // The agent writes the age as it answers; the kernel is read after the answer arrives.
    // On a loaded 2-core host an answer can take a second to arrive, which would shift the
    // kernel's moment by as much: keep the quickest of a few tries (most take milliseconds).
    let mut best: Option<(f64, Moment)> = None;
    for _ in 0..10 {
        let t0 = unix_now();
        let body = get_text(url).await?;
        let t1 = unix_now();
        let kernel_ns = cpu_dirs
            .iter()
            .map(|d| read_u64(&d.join("cpuacct.usage")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let t2 = unix_now();
        let age = samples(&body, "tidal_agent_snapshot_age_seconds")
            .get("")
            .copied()
            .ok_or_else(|| anyhow::anyhow!("{url} has no tidal_agent_snapshot_age_seconds"))?;
        let took = t2 - t0;
        let m = Moment {
            agent_at: t1 - age,
            body,
            kernel_at: (t1 + t2) / 2.0,
            kernel_ns,
        };
        if best.as_ref().is_none_or(|(b, _)| took < *b) {
            best = Some((took, m));
        }
        if took < 0.05 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (took, m) = best.ok_or_else(|| anyhow::anyhow!("no scrape of {url}"))?;
    if took >= 0.05 {
        eprintln!("note: the quickest scrape of {url} and read of the kernel took {took:.3}s");
    }
    Ok(m)
}

/// Two moments [`WINDOW`] apart.
async fn window(url: &str, cpu_dirs: &[&Path]) -> anyhow::Result<(Moment, Moment)> {
    let a = moment(url, cpu_dirs).await?;
    tokio::time::sleep(WINDOW).await;
    let b = moment(url, cpu_dirs).await?;
    Ok((a, b))
}

/// CPU of one container over a window, as the agent and the kernel saw it.
#[derive(Debug)]
struct CpuPair {
    /// Cores: Δ agent counter / Δ agent round time.
    agent_rate: f64,
    /// Cores: Δ cpuacct.usage / Δ read time.
    kernel_rate: f64,
    /// The agent's counter at its second round (s).
    agent_counter: f64,
    /// The kernel's counter carried back to that round's time (s).
    kernel_counter: f64,
}

fn cpu_pair(
    (a, b): (&Moment, &Moment),
    i: usize,
    ns: &str,
    pod: &str,
    container: &str,
) -> anyhow::Result<CpuPair> {
    let (c0, c1) = (
        must(&a.body, CPU, ns, pod, container)?,
        must(&b.body, CPU, ns, pod, container)?,
    );
    let (k0, k1) = (a.kernel_ns[i] as f64 / 1e9, b.kernel_ns[i] as f64 / 1e9);
    let kernel_rate = (k1 - k0) / (b.kernel_at - a.kernel_at);
    Ok(CpuPair {
        agent_rate: (c1 - c0) / (b.agent_at - a.agent_at),
        kernel_rate,
        agent_counter: c1,
        kernel_counter: k1 - kernel_rate * (b.kernel_at - b.agent_at),
    })
}

/// The working set the kernel reports for a v1 memory cgroup.
fn kernel_working_set(dir: &Path) -> anyhow::Result<f64> {
    let usage = read_u64(&dir.join("memory.usage_in_bytes"))? as f64;
    let inactive = read_stat(&dir.join("memory.stat"), "total_inactive_file")? as f64;
    Ok((usage - inactive).max(0.0))
}

fn cgroup(
    node: &RealNode,
    ctrl: &str,
    pod: &Pod,
    container: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let dir = match container {
        Some(c) => node.container_cgroup(ctrl, pod, c),
        None => node.pod_cgroup(ctrl, pod),
    }
    .ok_or_else(|| anyhow::anyhow!("no {ctrl} cgroup for {container:?} (pod status incomplete)"))?;
    anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    Ok(dir)
}

/// The in-cluster agent's metrics URL.
async fn agent_url(node: &RealNode, client: &kube::Client) -> anyhow::Result<String> {
    let agent = node.agent_pod(client, POD_TIMEOUT).await?;
    let ip = pod_ip(&agent).ok_or_else(|| anyhow::anyhow!("the agent pod has no IP"))?;
    Ok(format!("http://{ip}:9464/metrics"))
}

/// Waits until the agent at `url` exports the CPU counter of every one of `containers` of
/// `pod` (the pod watch has seen their IDs) and a rate for each; returns that page.
async fn wait_for_series(
    url: &str,
    ns: &str,
    pod: &str,
    containers: &[&str],
) -> anyhow::Result<String> {
    let last = std::sync::Mutex::new(String::new());
    let found = wait_for(
        &format!("{url} to export {CPU} and {USAGE_CORES} of {ns}/{pod} {containers:?}"),
        Duration::from_secs(60),
        || async {
            let body = get_text(url).await.ok()?;
            let ok = containers.iter().all(|c| {
                value(&body, CPU, ns, pod, c).is_some()
                    && value(&body, USAGE_CORES, ns, pod, c).is_some()
            });
            if ok {
                Some(body)
            } else {
                *last.lock().ok()? = body;
                None
            }
        },
    )
    .await;
    found.map_err(|e| {
        let last = last.lock().map(|l| l.clone()).unwrap_or_default();
        let ours: Vec<&str> = last
            .lines()
            .filter(|l| l.contains(pod) && l.starts_with(CPU))
            .collect();
        anyhow::anyhow!("{e}; the last page's {CPU} lines for the pod: {ours:#?}")
    })
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The `container` label of every series of `ns/pod` on an agent page, with its metric.
fn container_labels(body: &str, ns: &str, pod: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((metric, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, _)) = rest.rsplit_once('}') else {
            continue;
        };
        let l = parse_labels(labels);
        if l.get("namespace").map(String::as_str) == Some(ns)
            && l.get("pod").map(String::as_str) == Some(pod)
            && let Some(c) = l.get("container")
        {
            out.entry(c.clone()).or_default().insert(metric.to_string());
        }
    }
    out
}

fn label<'a>(l: &'a BTreeMap<String, String>, k: &str) -> &'a str {
    l.get(k).map(String::as_str).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------

/// The DaemonSet agent's CPU rate and working set of real containers agree with the kernel's
/// own accounting of their kubelet-made cgroups within 5%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_cpu_and_memory_match_the_kernel() -> R {
    let stack = Stack::load()?;
    let _lock = NodeLock::shared(&stack).await?;
    let node = RealNode::installed(&stack).await?;
    let client = stack.admin_client().await?;
    in_namespace(&client, "rn-agent-acc", |ns| {
        accuracy(node.clone(), client.clone(), ns)
    })
    .await
}

async fn accuracy(node: RealNode, client: kube::Client, ns: String) -> R {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let name = "burn";
    let spec = node.pod(
        name,
        &[],
        vec![
            node.busybox(
                "burner",
                BURN,
                Some(("100m", "16Mi")),
                Some(("300m", "64Mi")),
            ),
            node.busybox(
                "holder",
                HOLD,
                Some(("10m", "48Mi")),
                Some(("100m", "96Mi")),
            ),
        ],
    );
    pods.create(&PostParams::default(), &spec).await?;
    let pod = wait_ready(&pods, name, POD_TIMEOUT).await?;
    let burner_cpu = cgroup(&node, "cpuacct", &pod, Some("burner"))?;
    let holder_cpu = cgroup(&node, "cpuacct", &pod, Some("holder"))?;
    let holder_mem = cgroup(&node, "memory", &pod, Some("holder"))?;

    // The holder has its 20 MiB (the kernel says so) before anything is compared.
    wait_for(
        "the holder container to hold 20 MiB",
        Duration::from_secs(60),
        || async {
            (kernel_working_set(&holder_mem).ok()? >= 20.0 * 1024.0 * 1024.0).then_some(())
        },
    )
    .await?;
    let url = agent_url(&node, &client).await?;
    wait_for_series(&url, &ns, name, &["burner", "holder"]).await?;

    let (a, b) = window(&url, &[&burner_cpu, &holder_cpu]).await?;
    let kernel_ws = kernel_working_set(&holder_mem)?;
    let cpu = cpu_pair((&a, &b), 0, &ns, name, "burner")?;
    let agent_ws = must(&b.body, WORKING_SET, &ns, name, "holder")?;
    let gauge = must(&b.body, USAGE_CORES, &ns, name, "burner")?;
    let holder = cpu_pair((&a, &b), 1, &ns, name, "holder")?;
    eprintln!(
        "burner CPU over {:.2}s: agent {:.4} cores, kernel {:.4} cores ({:.2}% apart); \
         counter at the agent's round: agent {:.4}s, kernel {:.4}s ({:.3}% apart); \
         {USAGE_CORES} (last 1s) {gauge:.4}",
        b.agent_at - a.agent_at,
        cpu.agent_rate,
        cpu.kernel_rate,
        pct(cpu.agent_rate, cpu.kernel_rate),
        cpu.agent_counter,
        cpu.kernel_counter,
        pct(cpu.agent_counter, cpu.kernel_counter),
    );
    eprintln!(
        "holder working set: agent {agent_ws} B, kernel {kernel_ws} B ({:.3}% apart); holder CPU \
         counter: agent {:.4}s, kernel {:.4}s",
        pct(agent_ws, kernel_ws),
        holder.agent_counter,
        holder.kernel_counter,
    );

    anyhow::ensure!(
        cpu.kernel_rate > 0.1,
        "the burner used only {:.4} cores by the kernel's count: not a CPU test",
        cpu.kernel_rate
    );
    anyhow::ensure!(
        pct(cpu.agent_rate, cpu.kernel_rate) <= TOLERANCE_PCT,
        "burner CPU rate: agent {:.4} cores vs kernel cpuacct.usage {:.4} cores ({:.2}% apart, > {TOLERANCE_PCT}%)",
        cpu.agent_rate,
        cpu.kernel_rate,
        pct(cpu.agent_rate, cpu.kernel_rate)
    );
    anyhow::ensure!(
        pct(cpu.agent_counter, cpu.kernel_counter) <= TOLERANCE_PCT,
        "burner CPU counter: agent {:.4}s vs kernel {:.4}s at the agent's round",
        cpu.agent_counter,
        cpu.kernel_counter
    );
    anyhow::ensure!(
        pct(agent_ws, kernel_ws) <= TOLERANCE_PCT,
        "holder working set: agent {agent_ws} B vs kernel usage_in_bytes - total_inactive_file {kernel_ws} B ({:.2}% apart, > {TOLERANCE_PCT}%)",
        pct(agent_ws, kernel_ws)
    );
    Ok(())
}

/// The pod's sandbox (pause) container has a cgroup of its own on the node but no series of
/// its own from the agent: the pod's container labels are exactly `""` and its containers'
/// names. The pod-level series (`container=""`) is the pod cgroup, which holds the sandbox,
/// and matches the kernel's pod cgroup; the containers' counters match the kubelet's cAdvisor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_is_in_the_pod_series_and_cadvisor_agrees() -> R {
    let stack = Stack::load()?;
    let _lock = NodeLock::shared(&stack).await?;
    let node = RealNode::installed(&stack).await?;
    let client = stack.admin_client().await?;
    in_namespace(&client, "rn-agent-sbx", |ns| {
        sandbox(stack.clone(), node.clone(), client.clone(), ns)
    })
    .await
}

async fn sandbox(stack: Stack, node: RealNode, client: kube::Client, ns: String) -> R {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let name = "sbx";
    let spec = node.pod(
        name,
        &[],
        vec![
            node.busybox(
                "burner",
                BURN,
                Some(("100m", "16Mi")),
                Some(("300m", "64Mi")),
            ),
            node.busybox(
                "idle",
                "while :; do sleep 3600; done",
                Some(("10m", "8Mi")),
                None,
            ),
        ],
    );
    pods.create(&PostParams::default(), &spec).await?;
    let pod = wait_ready(&pods, name, POD_TIMEOUT).await?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pod_cpu = cgroup(&node, "cpuacct", &pod, None)?;
    let burner_cpu = cgroup(&node, "cpuacct", &pod, Some("burner"))?;

    // The sandbox: the one container cgroup of the pod that is none of its containers.
    let ids: BTreeSet<String> = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|s| Some(s.container_id.as_deref()?.split_once("://")?.1.to_string()))
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(&pod_cpu)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_hex64(n))
        .collect();
    let sandboxes: Vec<&String> = on_disk.difference(&ids).collect();
    anyhow::ensure!(
        sandboxes.len() == 1 && ids.is_subset(&on_disk),
        "expected the 2 containers {ids:?} and one sandbox under {}, found {on_disk:?}",
        pod_cpu.display()
    );
    let sandbox_id = sandboxes[0].clone();

    let url = agent_url(&node, &client).await?;
    wait_for_series(&url, &ns, name, &["burner", "idle", ""]).await?;
    let (a, b) = window(&url, &[&pod_cpu, &burner_cpu]).await?;

    // Labels: exactly the pod and its two containers; no 64-hex ID, the sandbox's least of all.
    let labels = container_labels(&b.body, &ns, name);
    let names: BTreeSet<&str> = labels.keys().map(String::as_str).collect();
    eprintln!("container labels of {ns}/{name}: {names:?} (sandbox {sandbox_id})");
    let hex: Vec<(&String, &BTreeSet<String>)> =
        labels.iter().filter(|(c, _)| is_hex64(c)).collect();
    anyhow::ensure!(
        hex.is_empty(),
        "series with a container ID as their container label: {hex:?}"
    );
    anyhow::ensure!(
        !b.body.contains(&sandbox_id),
        "the sandbox's ID {sandbox_id} appears on the agent's page"
    );
    anyhow::ensure!(
        names == BTreeSet::from(["", "burner", "idle"]),
        "container labels of {ns}/{name}: {names:?}, expected {{\"\", burner, idle}}"
    );
    // The pod level has the usage series (its limits only if the pod cgroup has one: `idle`
    // sets none, so this pod's has none).
    for m in [CPU, WORKING_SET, USAGE_CORES] {
        anyhow::ensure!(labels[""].contains(m), "no pod-level {m}: {labels:?}");
    }

    // The pod level against the kernel's pod cgroup (which holds the sandbox's cgroup).
    let pod_level = cpu_pair((&a, &b), 0, &ns, name, "")?;
    eprintln!(
        "pod-level CPU: agent {:.4} cores, kernel {:.4} cores ({:.2}% apart); counter at the \
         agent's round: agent {:.4}s, kernel {:.4}s ({:.3}% apart)",
        pod_level.agent_rate,
        pod_level.kernel_rate,
        pct(pod_level.agent_rate, pod_level.kernel_rate),
        pod_level.agent_counter,
        pod_level.kernel_counter,
        pct(pod_level.agent_counter, pod_level.kernel_counter),
    );
    anyhow::ensure!(
        pct(pod_level.agent_rate, pod_level.kernel_rate) <= TOLERANCE_PCT,
        "pod-level CPU rate: agent {:.4} cores vs the pod cgroup's cpuacct.usage {:.4} cores",
        pod_level.agent_rate,
        pod_level.kernel_rate
    );
    anyhow::ensure!(
        pct(pod_level.agent_counter, pod_level.kernel_counter) <= TOLERANCE_PCT,
        "pod-level CPU counter: agent {:.4}s vs the pod cgroup's {:.4}s",
        pod_level.agent_counter,
        pod_level.kernel_counter
    );

    // The kubelet's cAdvisor, whose samples carry the time it read them: wait for a
    // housekeeping pass after the window opened, scrape the agent once more, and compare
    // cAdvisor's counter with the agent's interpolated between its rounds around that time
    // (and with the kernel's, likewise).
    let pod_id = format!("/{}/kubepods/burstable/pod{uid}", node.cgroup_root);
    let fresh = |s: &CadvisorSample| s.at.is_some_and(|t| t >= a.agent_at);
    let cad = wait_for(
        "a cAdvisor housekeeping pass of the pod after the window opened",
        Duration::from_secs(60),
        || async {
            let ours: Vec<CadvisorSample> = cadvisor(&stack, &node, CADVISOR_CPU)
                .ok()?
                .into_iter()
                .filter(|s| label(&s.labels, "namespace") == ns && label(&s.labels, "pod") == name)
                .collect();
            let burner = ours
                .iter()
                .any(|s| label(&s.labels, "container") == "burner" && fresh(s));
            let pod = ours
                .iter()
                .any(|s| label(&s.labels, "id") == pod_id && fresh(s));
            (burner && pod).then_some(ours)
        },
    )
    .await?;
    let c = moment(&url, &[&pod_cpu, &burner_cpu]).await?;
    // cAdvisor's convention for the sandbox: `container=""`, `name=<id>`, the pause image.
    let pause = cad.iter().find(|s| label(&s.labels, "name") == sandbox_id);
    eprintln!("cAdvisor's sandbox series: {pause:?}");
    anyhow::ensure!(
        pause.is_some_and(|s| label(&s.labels, "container").is_empty()),
        "the kubelet's cAdvisor gives the sandbox {sandbox_id} no container=\"\" series: {cad:#?}"
    );
    let lerp =
        |(t0, v0): (f64, f64), (t1, v1): (f64, f64), t: f64| v0 + (v1 - v0) * (t - t0) / (t1 - t0);
    let compare = |what: &str,
                   s: &CadvisorSample,
                   container: &str,
                   i: usize|
     -> anyhow::Result<()> {
        let at = s.at.unwrap_or(c.agent_at);
        let agent = lerp(
            (a.agent_at, must(&a.body, CPU, &ns, name, container)?),
            (c.agent_at, must(&c.body, CPU, &ns, name, container)?),
            at,
        );
        let kernel = lerp(
            (a.kernel_at, a.kernel_ns[i] as f64 / 1e9),
            (c.kernel_at, c.kernel_ns[i] as f64 / 1e9),
            at,
        );
        eprintln!(
            "{what} CPU counter at cAdvisor's timestamp ({:.2}s into a {:.2}s span of agent \
             rounds): cAdvisor {:.4}s, agent {agent:.4}s ({:.3}% apart), kernel {kernel:.4}s \
             ({:.3}% from cAdvisor)",
            at - a.agent_at,
            c.agent_at - a.agent_at,
            s.value,
            pct(agent, s.value),
            pct(kernel, s.value),
        );
        anyhow::ensure!(
            pct(agent, s.value) <= TOLERANCE_PCT,
            "{what}: the agent's CPU counter {agent:.4}s vs the kubelet's cAdvisor {:.4}s at {at} \
             (kernel {kernel:.4}s)",
            s.value
        );
        Ok(())
    };
    let c_burner = cad
        .iter()
        .find(|s| label(&s.labels, "container") == "burner")
        .ok_or_else(|| anyhow::anyhow!("cAdvisor has no burner series"))?;
    compare("burner", c_burner, "burner", 1)?;
    let c_pod = cad
        .iter()
        .find(|s| label(&s.labels, "id") == pod_id)
        .ok_or_else(|| anyhow::anyhow!("cAdvisor has no series with id={pod_id}: {cad:#?}"))?;
    anyhow::ensure!(label(&c_pod.labels, "container").is_empty(), "{c_pod:?}");
    compare("pod level", c_pod, "", 0)?;
    Ok(())
}

/// `tidal-agent --mode sidecar` in a real pod: it exports its own pod's cgroups only, named
/// from the API, and the app container's CPU as the kernel counts it.
///
/// On this node (cgroup v1, no cgroup namespace) a container's own `/sys/fs/cgroup` holds
/// only its own cgroup, under the host's path that `/proc/self/cgroup` names: the sidecar
/// needs the host's cgroup tree (hostPath, read-only, `--cgroup-root`), plus `NODE_NAME` and
/// read access to pods to name its series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_exports_its_own_pod_only() -> R {
    let stack = Stack::load()?;
    let _lock = NodeLock::shared(&stack).await?;
    let node = RealNode::installed(&stack).await?;
    let client = stack.admin_client().await?;
    in_namespace(&client, "rn-agent-sidecar", |ns| {
        sidecar_with_binding(stack.clone(), node.clone(), client.clone(), ns)
    })
    .await
}

/// Binds the namespace's `sidecar` ServiceAccount to the agent's ClusterRole (read pods) for
/// the test, and removes the binding whatever the outcome.
async fn sidecar_with_binding(stack: Stack, node: RealNode, client: kube::Client, ns: String) -> R {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "sidecar"}}))?,
    )
    .await?;
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    let crb: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "tidal-agent"},
        "subjects": [{"kind": "ServiceAccount", "name": "sidecar", "namespace": ns}],
    }))?;
    crbs.create(&PostParams::default(), &crb).await?;
    let result = sidecar(stack, node, client, ns.clone()).await;
    if let Err(e) = crbs.delete(&ns, &DeleteParams::default()).await {
        eprintln!("cleanup: deleting ClusterRoleBinding {ns} failed: {e}");
    }
    result
}

async fn sidecar(stack: Stack, node: RealNode, client: kube::Client, ns: String) -> R {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let name = "app";
    let (host, port) = stack
        .var("TIDAL_POD_APISERVER")?
        .trim_start_matches("https://")
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .ok_or_else(|| anyhow::anyhow!("TIDAL_POD_APISERVER is not https://host:port"))?;
    let agent: Container = serde_json::from_value(json!({
        "name": "agent",
        "image": TIDAL_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["/usr/local/bin/tidal-agent"],
        "args": [
            "--mode=sidecar",
            "--listen=0.0.0.0:9464",
            "--interval-seconds=1",
            "--cgroup-root=/host/sys/fs/cgroup",
        ],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            // The stack runs no kube-proxy (docs/real-node.md).
            {"name": "KUBERNETES_SERVICE_HOST", "value": host},
            {"name": "KUBERNETES_SERVICE_PORT", "value": port},
            {"name": "RUST_LOG", "value": "info"},
        ],
        "ports": [{"name": "metrics", "containerPort": 9464}],
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "96Mi"}},
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 1},
        "volumeMounts": [{"name": "cgroup", "mountPath": "/host/sys/fs/cgroup", "readOnly": true}],
    }))?;
    let mut spec = node.pod(
        name,
        &[],
        vec![
            node.busybox("app", BURN, Some(("50m", "16Mi")), Some(("200m", "64Mi"))),
            agent,
        ],
    );
    if let Some(s) = spec.spec.as_mut() {
        s.service_account_name = Some("sidecar".into());
        s.volumes = Some(vec![serde_json::from_value(json!({
            "name": "cgroup",
            "hostPath": {"path": "/sys/fs/cgroup", "type": "Directory"},
        }))?]);
    }
    pods.create(&PostParams::default(), &spec).await?;
    let pod = wait_ready(&pods, name, POD_TIMEOUT).await?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let app_cpu = cgroup(&node, "cpuacct", &pod, Some("app"))?;
    let ip = pod_ip(&pod).ok_or_else(|| anyhow::anyhow!("the pod has no IP"))?;
    let url = format!("http://{ip}:9464/metrics");

    wait_for_series(&url, &ns, name, &["app", "agent", ""]).await?;
    let (a, b) = window(&url, &[&app_cpu]).await?;
    let synced = samples(&b.body, "tidal_agent_pod_metadata_synced")
        .get("")
        .copied();
    let cgroup_ok = samples(&b.body, "tidal_agent_sampler_success")
        .get("{sampler=\"cgroup\"}")
        .copied();
    anyhow::ensure!(
        synced == Some(1.0) && cgroup_ok == Some(1.0),
        "sidecar: tidal_agent_pod_metadata_synced {synced:?}, cgroup sampler success {cgroup_ok:?}"
    );

    // Its own pod only: every container series is this pod's, and no other pod's is there
    // (the watch knows every pod of the node, tidal-system's included).
    let all = series(&b.body, CPU);
    let foreign: Vec<&BTreeMap<String, String>> = all
        .iter()
        .map(|(l, _)| l)
        .filter(|l| {
            label(l, "pod_uid") != uid || label(l, "namespace") != ns || label(l, "pod") != name
        })
        .collect();
    anyhow::ensure!(
        foreign.is_empty(),
        "the sidecar exports other pods' series: {foreign:#?}"
    );
    anyhow::ensure!(
        !b.body.contains(&format!("namespace=\"{TIDAL_NAMESPACE}\"")),
        "the sidecar's page has {TIDAL_NAMESPACE} series"
    );
    let names: BTreeSet<&str> = all.iter().map(|(l, _)| label(l, "container")).collect();
    anyhow::ensure!(
        names == BTreeSet::from(["", "agent", "app"]),
        "sidecar container labels {names:?}, expected {{\"\", agent, app}}"
    );
    for (l, _) in &all {
        anyhow::ensure!(label(l, "qos_class") == "Burstable", "qos_class of {l:?}");
    }

    let app = cpu_pair((&a, &b), 0, &ns, name, "app")?;
    eprintln!(
        "sidecar: app CPU {:.4} cores (kernel {:.4}, {:.2}% apart); counter {:.4}s (kernel {:.4}s)",
        app.agent_rate,
        app.kernel_rate,
        pct(app.agent_rate, app.kernel_rate),
        app.agent_counter,
        app.kernel_counter
    );
    anyhow::ensure!(
        app.agent_counter > 0.0 && app.agent_rate > 0.05,
        "the sidecar's app CPU: counter {:.4}s, rate {:.4} cores",
        app.agent_counter,
        app.agent_rate
    );
    anyhow::ensure!(
        pct(app.agent_rate, app.kernel_rate) <= TOLERANCE_PCT,
        "the sidecar's app CPU rate {:.4} vs the kernel's {:.4} cores",
        app.agent_rate,
        app.kernel_rate
    );
    Ok(())
}

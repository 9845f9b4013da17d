//! The scaler benchmark of issue #6 (`tidal-bench scaler`, run by `scripts/bench-scaler.sh`).
//!
//! The binaries come from `TIDAL_BENCH_SCALER_BIN` / `TIDAL_BENCH_AGENT_BIN` (the script sets
//! them, so that no command line names `tidal-scaler`: a `pkill -f tidal-scaler` elsewhere on
//! the machine would end the benchmark in the middle of a 20-minute setup).
//!
//! [`Part::Reaction`] (`--steps 20 --agent-interval 0.5 --window 5`): the fast path's reaction
//! time. One KWOK Deployment (1 pod, 100m CPU request) under a ScalingPolicy on CPU (target
//! 50%, min 1, max 2, scale-down stabilization `--window` seconds); the release tidal-agent
//! samples the host's real cgroups every `--agent-interval` seconds and the release scaler
//! scrapes it (`--agent-url`) every 1 s. Each step starts a real busy loop in the pod's cgroup
//! (at a random phase of the sampling and evaluation cycles) and takes the time until a watch
//! on the API server sees the Deployment's `spec.replicas` become 2; then stops the loop and
//! takes the time until it is back to 1.
//!
//! [`Part::Scale`] (`--sizes 1000 --seconds 60 --pods pending|kwok`, each size in a fresh
//! namespace, `settled` up to 1,000 policies and `pods` above): N ScalingPolicies, each
//! targeting its own Deployment (1 replica), all on the lag of one Kafka consumer group (lag 5,
//! 10 per replica: one Kafka round per cycle and no scale writes in the steady state). The pods
//! are Pending on no node by default, or bound to the stack's two KWOK nodes (see [`Pods`] for
//! why that is not the default). For each size (cumulative when one run has several: the next
//! size adds objects) it waits until the controller-manager is done with every Deployment,
//! starts a fresh release scaler, lets the first cycles (one status write per policy) pass,
//! then scrapes the scaler's `/metrics` every 200 ms for `--seconds`: per-cycle durations from
//! the deltas of `tidal_scaler_cycle_duration_seconds_{sum,count}`, API requests per cycle by
//! verb, decisions per cycle, CPU, and peak RSS (`VmHWM`) (the window is extended to hold at
//! least 5 cycles, up to 600 s); then, with the scaler stopped, times 50 status applies like
//! the scaler's.
//!
//! Both run the scaler with exactly the manifests' RBAC (a ServiceAccount token bound to the
//! rendered ClusterRole and Role) and leader election on. Each measurement goes to the
//! [`Sink`] as one JSON object; progress goes to stderr. Everything created is listed in
//! `WORK/created` before it is made (namespaces, the cluster-wide RBAC objects, cgroup
//! directories, the scale run's Kafka topic and group) so that the script can remove it even
//! if this process is killed (all but the Kafka topic and group); at the end of each part, and
//! on SIGTERM or SIGINT, [`drive`] removes it itself (the Kafka topic and group best effort,
//! within 30 s). Namespaces are deleted in the background:
//! [`wait_namespaces`] waits for them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tidal_e2e::bench::{jitter, label, progress};
use tidal_e2e::builders::{KwokDeployment, Placement, policy};
use tidal_e2e::cgroups::{
    CgroupGuard, container_id, hierarchies, mkdirs, proc_cpu_seconds, set_container_id,
    spawn_burner,
};
use tidal_e2e::kafka::{commit, create_topic, delete_topic_and_group, produce};
use tidal_e2e::manifests::{ScalerRbac, ensure_crd, kubectl, token_kubeconfig};
use tidal_e2e::{ChildGuard, Stack, free_port, unique, wait_for};
use tidal_scaler::api::ScalingPolicy;

use crate::drive::{Ended, Interrupted, Sink, bounded, note};

type R<T> = anyhow::Result<T>;

/// The scale run's window is extended until it holds this many cycles...
const MIN_CYCLES: f64 = 5.0;
/// ... but not past this.
const MAX_WINDOW: Duration = Duration::from_secs(600);

/// The longest wait for the benchmark namespaces to be deleted ([`wait_namespaces`]).
pub const NAMESPACES_WAIT: Duration = Duration::from_secs(600);

/// The label every benchmark namespace carries (the script waits for them to be gone).
const BENCH_LABEL: (&str, &str) = ("tidal.dev/bench", "scaler");

/// What one run of the driver measures.
pub enum Part {
    Reaction {
        steps: usize,
        agent_interval: f64,
        window: u32,
        scaler: PathBuf,
        agent: PathBuf,
    },
    Scale {
        sizes: Vec<usize>,
        seconds: u64,
        pods: Pods,
        /// Start once every Deployment is settled (else once every pod exists).
        wait_settled: bool,
        scaler: PathBuf,
    },
}

/// What this run created, for the cleanup (here, or by the script from `DIR/created`).
struct Created {
    file: PathBuf,
    namespaces: Vec<String>,
    /// The cluster RBAC's names, recorded before it is applied ...
    cluster_rbac: Vec<String>,
    /// ... and each install that completed.
    rbac: Vec<ScalerRbac>,
    /// `(bootstrap, topic, group)`.
    kafka: Vec<(String, String, String)>,
}

type Shared = Arc<Mutex<Created>>;

fn record(created: &Shared, line: &str) {
    let Ok(c) = created.lock() else { return };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&c.file)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Deletes the namespaces (in the background: the script waits for them), the RBAC and the
/// Kafka topic and group (best effort, bounded).
async fn clean_up(stack: &Stack, admin: &kube::Client, created: &Shared) {
    let (namespaces, cluster_rbac, rbac, kafka) = match created.lock() {
        Ok(mut c) => (
            std::mem::take(&mut c.namespaces),
            std::mem::take(&mut c.cluster_rbac),
            std::mem::take(&mut c.rbac),
            std::mem::take(&mut c.kafka),
        ),
        Err(_) => return,
    };
    for r in &rbac {
        if let Err(e) = r.remove(stack) {
            progress(format!("cleanup: removing {}: {e}", r.cluster_name));
        }
    }
    // An install cancelled half-way may have applied its cluster RBAC: deleted by name.
    for name in cluster_rbac
        .iter()
        .filter(|n| !rbac.iter().any(|r| &r.cluster_name == *n))
    {
        let (role, binding) = (
            format!("clusterrole/{name}"),
            format!("clusterrolebinding/{name}"),
        );
        let args = [
            "delete",
            &binding,
            &role,
            "--ignore-not-found",
            "--wait=false",
        ];
        if let Err(e) = kubectl(stack, &args, None) {
            progress(format!("cleanup: removing {name}: {e}"));
        }
    }
    for (bootstrap, topic, group) in kafka {
        delete_topic_and_group(&bootstrap, &topic, &group).await;
        progress(format!(
            "Kafka topic {topic} and group {group}: deleted (best effort)"
        ));
    }
    let api: Api<Namespace> = Api::all(admin.clone());
    for ns in namespaces {
        match api.delete(&ns, &DeleteParams::background()).await {
            Ok(_) => progress(format!("namespace {ns}: deletion started")),
            Err(e) => progress(format!("cleanup: deleting namespace {ns}: {e}")),
        }
    }
}

/// A labelled namespace whose `default` ServiceAccount exists.
async fn namespace(admin: &kube::Client, created: &Shared, prefix: &str) -> R<String> {
    let name = unique(prefix);
    record(created, &format!("namespace {name}"));
    let api: Api<Namespace> = Api::all(admin.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {BENCH_LABEL.0: BENCH_LABEL.1}}
    }))?;
    api.create(&PostParams::default(), &ns).await?;
    if let Ok(mut c) = created.lock() {
        c.namespaces.push(name.clone());
    }
    let sa: Api<ServiceAccount> = Api::namespaced(admin.clone(), &name);
    wait_for(
        "the namespace's default ServiceAccount",
        Duration::from_secs(60),
        || async { sa.get_opt("default").await.ok().flatten() },
    )
    .await?;
    Ok(name)
}

/// The manifests' scaler RBAC in `ns`, recorded for the cleanup before it is applied (a run
/// stopped in the middle of the install still removes it).
async fn rbac(stack: &Stack, admin: &kube::Client, created: &Shared, ns: &str) -> R<()> {
    let name = unique("tidal-scaler-e2e");
    record(created, &format!("clusterrole {name}"));
    record(created, &format!("clusterrolebinding {name}"));
    if let Ok(mut c) = created.lock() {
        c.cluster_rbac.push(name.clone());
    }
    let r = ScalerRbac::install_named(stack, admin, ns, &name).await?;
    if let Ok(mut c) = created.lock() {
        c.rbac.push(r);
    }
    Ok(())
}

/// Where the scale benchmark's pods go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pods {
    /// Never scheduled: `schedulerName` names no scheduler, so each pod stays Pending on no
    /// node (no kubelet, no scheduler, no preemption: nothing else on the stack notices them).
    Pending,
    /// Bound with `nodeName` to the stack's KWOK nodes in turn, past their 110-pod capacity:
    /// KWOK runs them, but the scheduler then sees full nodes, so any pod it schedules there
    /// preempts them (a concurrent test's system-node-critical DaemonSet did) and any pod of
    /// lower priority stays Pending.
    Kwok,
}

impl Pods {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Kwok => "kwok",
        }
    }
}

/// A Deployment of the scale benchmark (1 replica, 10m CPU), its pod placed per `pods`.
fn scale_deployment(name: &str, pods: Pods, node: &str) -> R<Deployment> {
    let mut d = KwokDeployment::new(name, Placement::Node(node))
        .requests("10m", "16Mi")
        .build()?;
    if let Some(spec) = d.spec.as_mut() {
        // No Progressing=False rewrite of every Deployment in the middle of a run.
        spec.progress_deadline_seconds = Some(86_400);
        if pods == Pods::Pending
            && let Some(ps) = spec.template.spec.as_mut()
        {
            ps.node_name = None;
            ps.scheduler_name = Some("tidal-bench-unscheduled".into());
        }
    }
    Ok(d)
}

/// A running release `tidal-scaler run` with the RBAC's token, logging to a file.
struct Scaler {
    child: ChildGuard,
    log: PathBuf,
    base: String,
    http: reqwest::Client,
}

impl Scaler {
    /// Starts the scaler in `ns` with a fresh token (tokens last 10 minutes; a setup can be
    /// longer than that).
    async fn start(
        bin: &Path,
        stack: &Stack,
        admin: &kube::Client,
        ns: &str,
        work: &Path,
        name: &str,
        args: &[&str],
    ) -> R<Self> {
        anyhow::ensure!(bin.exists(), "{} is missing", bin.display());
        let dir = work.join(name);
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = token_kubeconfig(stack, admin, ns, "tidal-scaler", &dir).await?;
        let port = free_port()?;
        let log = dir.join("scaler.log");
        let file = std::fs::File::create(&log)?;
        let child = ChildGuard::spawn(
            Command::new(bin)
                .arg("run")
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--namespace", ns, "--lease-namespace", ns])
                .args(["--identity", name])
                .args(args)
                .env("KUBECONFIG", &kubeconfig)
                .env("RUST_LOG", "info")
                .stdout(file.try_clone()?)
                .stderr(file),
        )?;
        let s = Self {
            child,
            log,
            base: format!("http://127.0.0.1:{port}"),
            http: tidal_e2e::http_builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        };
        Ok(s)
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        let code = resp.status().as_u16();
        Some((code, resp.text().await.ok()?))
    }

    async fn scrape(&self) -> Option<Scrape> {
        match self.get("/metrics").await {
            Some((200, body)) => Some(Scrape::parse(&body)),
            _ => None,
        }
    }

    /// Waits until `/readyz` answers 200 (the watch caches are synced).
    async fn ready(&mut self, timeout: Duration) -> R<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                anyhow::bail!("the scaler exited ({status}); log:\n{}", self.tail());
            }
            if matches!(self.get("/readyz").await, Some((200, _))) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "the scaler was not ready after {timeout:?}; log:\n{}",
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The scaler series the benchmark reads.
#[derive(Debug, Clone, Default)]
struct Scrape {
    cycle_count: f64,
    cycle_sum: f64,
    /// `le` -> cumulative count.
    cycle_buckets: Vec<(f64, f64)>,
    requests: BTreeMap<String, f64>,
    decisions: f64,
    errors: BTreeMap<String, f64>,
    scale_events: f64,
    leader: f64,
    active_policies: f64,
    /// `tidal_scaler_status_queue`: statuses waiting to be written.
    status_queue: f64,
}

impl Scrape {
    fn parse(body: &str) -> Self {
        let mut s = Self::default();
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let name = series.split('{').next().unwrap_or_default();
            match name {
                "tidal_scaler_cycle_duration_seconds_count" => s.cycle_count = v,
                "tidal_scaler_cycle_duration_seconds_sum" => s.cycle_sum = v,
                "tidal_scaler_cycle_duration_seconds_bucket" => {
                    let le = match label(series, "le") {
                        Some("+Inf") => f64::INFINITY,
                        Some(x) => x.parse().unwrap_or(f64::NAN),
                        None => f64::NAN,
                    };
                    s.cycle_buckets.push((le, v));
                }
                "tidal_scaler_api_requests_total" => {
                    let verb = label(series, "verb").unwrap_or("?").to_string();
                    s.requests.insert(verb, v);
                }
                "tidal_scaler_decision_duration_seconds_count" => s.decisions = v,
                "tidal_scaler_errors_total" => {
                    let reason = label(series, "reason").unwrap_or("?").to_string();
                    s.errors.insert(reason, v);
                }
                "tidal_scaler_scale_events_total" => s.scale_events += v,
                "tidal_scaler_leader" => s.leader = v,
                "tidal_scaler_status_queue" => s.status_queue = v,
                "tidal_scaler_policies" if label(series, "state") == Some("active") => {
                    s.active_policies = v
                }
                _ => {}
            }
        }
        s
    }
}

/// `VmHWM` and `VmRSS` of `pid`, in bytes.
fn memory(pid: u32) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(f64::NAN, |k| k * 1024.0)
    };
    (kib("VmHWM:"), kib("VmRSS:"))
}

/// n, min, p50, p95, max, mean, and the sorted values.
fn summary(values: &[f64]) -> Value {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mut s = tidal_e2e::bench::summary(&v);
    s["values"] = json!(v);
    s
}

/// Aborts a spawned task when dropped (so a cancelled run stops it, and its guards drop).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ------------------------------------------------------------------------------------------
// reaction

/// Gives every running pod of `app` a kubelet-like container ID and the matching cgroup
/// (cgroupfs driver, Burstable), so the agent reports its usage. Runs until aborted.
async fn provision(
    pods: Api<Pod>,
    app: String,
    bases: Vec<PathBuf>,
    guard: Arc<Mutex<CgroupGuard>>,
    done: Arc<Mutex<BTreeMap<String, (String, String)>>>,
    created: Shared,
) {
    let mut offset = 0u128;
    loop {
        let list = pods
            .list(&ListParams::default().labels(&format!("app={app}")))
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
                Ok(mut g) => {
                    let before = g.0.len();
                    let ok = mkdirs(&bases, &rel, &mut g).is_ok();
                    for d in &g.0[before..] {
                        record(&created, &format!("cgroup {}", d.display()));
                    }
                    ok
                }
                Err(_) => false,
            };
            if made
                && set_container_id(&pods, &name, &cid).await.is_ok()
                && let Ok(mut d) = done.lock()
            {
                d.insert(uid, (name, rel.display().to_string()));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends `(when seen, spec.replicas)` for every change of the Deployment's replicas.
async fn watch_replicas(
    deploys: Api<Deployment>,
    name: String,
    tx: tokio::sync::mpsc::UnboundedSender<(Instant, i32)>,
) {
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(deploys, cfg).default_backoff().applied_objects();
    futures::pin_mut!(stream);
    let mut last = None;
    while let Some(ev) = stream.next().await {
        let Ok(d) = ev else { continue };
        let seen = Instant::now();
        let r = d.spec.and_then(|s| s.replicas);
        if let Some(r) = r
            && last != Some(r)
        {
            last = Some(r);
            if tx.send((seen, r)).is_err() {
                return;
            }
        }
    }
}

/// Waits for the replicas to become `want`; returns when the watch saw it.
async fn replicas_become(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(Instant, i32)>,
    current: &mut i32,
    want: i32,
    timeout: Duration,
) -> R<Instant> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((at, r))) => {
                *current = r;
                if r == want {
                    return Ok(at);
                }
            }
            Ok(None) => anyhow::bail!("the Deployment watch ended"),
            Err(_) => {
                anyhow::bail!("replicas did not become {want} within {timeout:?} (now {current})")
            }
        }
    }
}

fn spawn_agent(
    bin: &Path,
    stack: &Stack,
    node: &str,
    listen: &str,
    interval: f64,
    log: &Path,
) -> R<ChildGuard> {
    anyhow::ensure!(bin.exists(), "{} is missing", bin.display());
    let file = std::fs::File::create(log)?;
    Ok(ChildGuard::spawn(
        Command::new(bin)
            .args([
                "--listen",
                listen,
                "--interval-seconds",
                &interval.to_string(),
            ])
            .args(["--node-name", node])
            .env("KUBECONFIG", stack.var("TIDAL_KUBECONFIG")?)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(file),
    )?)
}

#[allow(clippy::too_many_arguments)]
async fn reaction(
    ctx: &Ctx,
    sink: &Sink,
    steps: usize,
    interval: f64,
    window: u32,
    scaler_bin: &Path,
    agent_bin: &Path,
) -> R<()> {
    anyhow::ensure!((1..=200).contains(&steps), "--steps must be in 1..=200");
    let node = ctx
        .stack
        .kwok_nodes()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no KWOK node"))?;
    let bases = hierarchies(Path::new("/sys/fs/cgroup"));
    anyhow::ensure!(
        !bases.is_empty(),
        "no cgroup hierarchy under /sys/fs/cgroup"
    );

    let ns = namespace(&ctx.admin, &ctx.created, "bench-reaction").await?;
    rbac(&ctx.stack, &ctx.admin, &ctx.created, &ns).await?;
    let deploys: Api<Deployment> = Api::namespaced(ctx.admin.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(ctx.admin.clone(), &ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(ctx.admin.clone(), &ns);
    deploys
        .create(
            &PostParams::default(),
            &KwokDeployment::new("web", Placement::Node(&node))
                .requests("100m", "16Mi")
                .build()?,
        )
        .await?;

    let guard = Arc::new(Mutex::new(CgroupGuard(Vec::new())));
    let done = Arc::new(Mutex::new(BTreeMap::new()));
    let _provisioner = AbortOnDrop(tokio::spawn(provision(
        pods.clone(),
        "web".into(),
        bases.clone(),
        guard.clone(),
        done.clone(),
        ctx.created.clone(),
    )));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watch = AbortOnDrop(tokio::spawn(watch_replicas(
        deploys.clone(),
        "web".into(),
        tx,
    )));
    let mut current = 0;
    replicas_become(&mut rx, &mut current, 1, Duration::from_secs(30)).await?;
    wait_for("the pod's cgroup", Duration::from_secs(60), || async {
        (!done.lock().ok()?.is_empty()).then_some(())
    })
    .await?;

    let agent_port = free_port()?;
    let _agent = spawn_agent(
        agent_bin,
        &ctx.stack,
        &node,
        &format!("127.0.0.1:{agent_port}"),
        interval,
        &ctx.work.join("reaction-agent.log"),
    )?;
    let agent_url = format!("http://127.0.0.1:{agent_port}");
    let mut scaler = Scaler::start(
        scaler_bin,
        &ctx.stack,
        &ctx.admin,
        &ns,
        &ctx.work,
        "reaction-scaler",
        &["--agent-url", &agent_url],
    )
    .await?;
    scaler.ready(Duration::from_secs(60)).await?;
    policies
        .create(
            &PostParams::default(),
            &policy(
                "web",
                json!({
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 1, "maxReplicas": 2,
                    "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 50}}],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": window}}
                }),
            )?,
        )
        .await?;
    // Idle first: a decision at 1 replica with a measured value.
    wait_for("an idle decision", Duration::from_secs(60), || async {
        let p = policies.get("web").await.ok()?;
        let s = serde_json::to_value(p.status?).ok()?;
        (s["desiredReplicas"] == 1 && s["currentMetrics"][0]["value"].is_string()).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; scaler log:\n{}", scaler.tail()))?;
    progress(format!(
        "idle at 1 replica; {steps} steps (agent every {interval} s, scaler every 1 s, scale-down window {window} s)"
    ));

    let (mut ups, mut downs) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for step in 1..=steps {
        // The one live, provisioned pod.
        let rel = wait_for(
            "a live provisioned pod",
            Duration::from_secs(30),
            || async {
                let live: Vec<String> = pods
                    .list(&ListParams::default().labels("app=web"))
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter_map(|p| p.metadata.uid)
                    .collect();
                let d = done.lock().ok()?;
                match live.as_slice() {
                    [uid] => d.get(uid).map(|(_, rel)| rel.clone()),
                    _ => None,
                }
            },
        )
        .await?;
        // A random phase relative to the agent's sampling and the scaler's cycle.
        tokio::time::sleep(Duration::from_secs_f64(0.2 + jitter())).await;
        let burner = spawn_burner(&bases, Path::new(&rel))?;
        let t0 = Instant::now();
        let seen = replicas_become(&mut rx, &mut current, 2, Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("step {step}: {e}; scaler log:\n{}", scaler.tail()))?;
        let up = seen.saturating_duration_since(t0).as_secs_f64();
        // Both pods report usage before the load goes, as a kubelet's would.
        wait_for("the new pod's cgroup", Duration::from_secs(30), || async {
            let live = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| p.metadata.uid)
                .collect::<Vec<_>>();
            let d = done.lock().ok()?;
            (live.len() == 2 && live.iter().all(|u| d.contains_key(u))).then_some(())
        })
        .await?;
        drop(burner);
        let t1 = Instant::now();
        let seen = replicas_become(
            &mut rx,
            &mut current,
            1,
            Duration::from_secs(u64::from(window) + 30),
        )
        .await
        .map_err(|e| anyhow::anyhow!("step {step}: {e}; scaler log:\n{}", scaler.tail()))?;
        let down = seen.saturating_duration_since(t1).as_secs_f64();
        progress(format!(
            "step {step:2}/{steps}: load on -> 2 replicas in {up:.2} s; load off -> 1 replica in {down:.2} s"
        ));
        ups.push(up);
        downs.push(down);
    }
    let total = started.elapsed().as_secs_f64();
    let end = scaler.scrape().await.unwrap_or_default();
    let (hwm, _) = memory(scaler.pid());
    sink.emit(json!({
        "kind": "reaction", "steps": steps, "agent_interval_seconds": interval,
        "fast_interval_seconds": 1.0, "scale_down_window_seconds": window,
        "up_seconds": summary(&ups), "down_seconds": summary(&downs),
        "up_order": ups, "down_order": downs,
        "run_seconds": total, "scale_events": end.scale_events,
        "errors": end.errors, "scaler_peak_rss_bytes": hwm,
    }));
    policies.delete("web", &DeleteParams::default()).await?;
    Ok(())
}

// ------------------------------------------------------------------------------------------
// scale

/// Creates `names` with `make`, 16 requests in flight; an existing object is fine.
async fn create_all<K, F>(api: &Api<K>, range: std::ops::Range<usize>, make: F, what: &str) -> R<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    F: Fn(usize) -> R<K>,
{
    let total = range.len();
    let started = Instant::now();
    let objects: Vec<K> = range.map(&make).collect::<R<_>>()?;
    let mut n = 0usize;
    let mut results = futures::stream::iter(objects)
        .map(|o| {
            let api = api.clone();
            async move {
                match api.create(&PostParams::default(), &o).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(16);
    while let Some(r) = results.next().await {
        r?;
        n += 1;
        if n.is_multiple_of(1000) || n == total {
            progress(format!(
                "{what}: {n}/{total} created ({:.0} s)",
                started.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(())
}

/// How many of the Deployments the controller-manager is done with: their pod is available
/// (KWOK) or created (Pending), and their status is up to date.
async fn settled(deploys: &Api<Deployment>, pods: Pods) -> R<usize> {
    let mut n = 0;
    let mut lp = ListParams::default().limit(1000);
    loop {
        let list = deploys.list(&lp).await?;
        n += list
            .items
            .iter()
            .filter(|d| {
                let Some(s) = d.status.as_ref() else {
                    return false;
                };
                let current = s.observed_generation == d.metadata.generation;
                current
                    && match pods {
                        Pods::Kwok => s.available_replicas.unwrap_or(0) >= 1,
                        Pods::Pending => s.replicas == Some(1) && s.unavailable_replicas == Some(1),
                    }
            })
            .count();
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(n),
        }
    }
}

/// The first scrape (every 200 ms) that sees a cycle end after `since` (or after now).
async fn cycle_boundary(scaler: &Scaler, since: Option<f64>) -> R<Scrape> {
    let mut base = since;
    let deadline = Instant::now() + MAX_WINDOW;
    loop {
        if let Some(s) = scaler.scrape().await {
            match base {
                Some(c) if s.cycle_count > c => return Ok(s),
                None => base = Some(s.cycle_count),
                _ => {}
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no cycle ended in {MAX_WINDOW:?}; log:\n{}",
            scaler.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many objects `api` lists (paginated).
async fn count<K>(api: &Api<K>) -> R<usize>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut n = 0;
    let mut lp = ListParams::default().limit(1000);
    loop {
        let list = api.list_metadata(&lp).await?;
        n += list.items.len();
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(n),
        }
    }
}

/// Per-cycle durations from consecutive scrapes. An interval holding one cycle gives its exact
/// duration. After a cycle overruns the 1 s tick the next one starts at once, so a scrape
/// interval can hold several; then the histogram buckets say which bucket each fell in, the
/// smaller ones are estimated at the mean of exact cycles in their bucket (or the bucket's
/// midpoint) and the largest gets the rest of the interval's sum.
fn cycles_between(a: &Scrape, b: &Scrape, exact: &[f64]) -> (Vec<f64>, bool) {
    let dc = (b.cycle_count - a.cycle_count).round() as i64;
    let ds = b.cycle_sum - a.cycle_sum;
    match dc {
        d if d <= 0 => (Vec::new(), false),
        1 => (vec![ds], false),
        _ => {
            // Non-cumulative bucket deltas: (lower, upper, count).
            let mut per = Vec::new();
            let mut prev_le = 0.0;
            let mut prev_delta = 0.0;
            for ((le, cb), (_, ca)) in b.cycle_buckets.iter().zip(&a.cycle_buckets) {
                let cum = cb - ca;
                let k = (cum - prev_delta).round() as i64;
                for _ in 0..k {
                    per.push((prev_le, *le));
                }
                prev_delta = cum;
                prev_le = *le;
            }
            per.sort_by(|x, y| x.1.total_cmp(&y.1));
            let mut out: Vec<f64> = per
                .iter()
                .take(per.len().saturating_sub(1))
                .map(|(lo, hi)| {
                    let same: Vec<f64> = exact
                        .iter()
                        .copied()
                        .filter(|v| v > lo && v <= hi)
                        .collect();
                    if same.is_empty() {
                        if hi.is_finite() { (lo + hi) / 2.0 } else { *lo }
                    } else {
                        same.iter().sum::<f64>() / same.len() as f64
                    }
                })
                .collect();
            let rest = ds - out.iter().sum::<f64>();
            out.push(rest.max(0.0));
            (out, true)
        }
    }
}

/// Histogram-only estimate of a quantile (linear within the bucket, as Prometheus'
/// histogram_quantile does).
fn histogram_quantile(q: f64, a: &Scrape, b: &Scrape) -> f64 {
    let total = b.cycle_count - a.cycle_count;
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut prev_le = 0.0;
    let mut prev_cum = 0.0;
    for ((le, cb), (_, ca)) in b.cycle_buckets.iter().zip(&a.cycle_buckets) {
        let cum = cb - ca;
        if cum >= rank {
            if !le.is_finite() {
                return prev_le;
            }
            let in_bucket = cum - prev_cum;
            return if in_bucket > 0.0 {
                prev_le + (le - prev_le) * (rank - prev_cum) / in_bucket
            } else {
                *le
            };
        }
        prev_le = *le;
        prev_cum = cum;
    }
    f64::NAN
}

#[allow(clippy::too_many_arguments)]
async fn scale(
    ctx: &Ctx,
    sink: &Sink,
    sizes: &[usize],
    seconds: u64,
    pods: Pods,
    wait_settled: bool,
    scaler_bin: &Path,
) -> R<()> {
    anyhow::ensure!(
        (10..=600).contains(&seconds),
        "--seconds must be in 10..=600"
    );
    anyhow::ensure!(
        sizes.windows(2).all(|w| w[0] < w[1]) && sizes.iter().all(|&n| (1..=10_000).contains(&n)),
        "--sizes must increase, each in 1..=10000"
    );
    let nodes = ctx.stack.kwok_nodes()?;
    anyhow::ensure!(!nodes.is_empty(), "no KWOK node");
    let bootstrap = ctx.stack.kafka_bootstrap()?.to_string();

    let ns = namespace(&ctx.admin, &ctx.created, "bench-scale").await?;
    rbac(&ctx.stack, &ctx.admin, &ctx.created, &ns).await?;
    // One consumer group on one 3-partition topic with a lag of 5: at 10 per replica every
    // policy wants 1 replica, which every Deployment has (no scale writes in the steady state).
    let topic = unique("bench-scaler-t");
    let group = unique("bench-scaler-g");
    // Recorded first: deleted by the cleanup, also when the run stops half-way.
    record(&ctx.created, &format!("kafka-topic {topic}"));
    record(&ctx.created, &format!("kafka-group {group}"));
    if let Ok(mut c) = ctx.created.lock() {
        c.kafka
            .push((bootstrap.clone(), topic.clone(), group.clone()));
    }
    create_topic(&bootstrap, &topic, 3).await?;
    commit(
        &bootstrap,
        &group,
        &[(&topic, 0, 0), (&topic, 1, 0), (&topic, 2, 0)],
    )?;
    produce(&bootstrap, &topic, &[2, 2, 1]).await?;
    let deploys: Api<Deployment> = Api::namespaced(ctx.admin.clone(), &ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(ctx.admin.clone(), &ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.admin.clone(), &ns);
    let spec = |i: usize| {
        json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("w{i:05}")},
            "minReplicas": 1, "maxReplicas": 10,
            "metrics": [{"name": "lag", "kafkaLag": {"cluster": "stack", "group": group, "topics": [topic], "lagPerReplica": 10}}]
        })
    };
    let cluster = format!("stack={bootstrap}");

    let mut have = 0;
    for &n in sizes {
        progress(format!(
            "size {n}: creating {} Deployments and ScalingPolicies",
            n - have
        ));
        let setup = Instant::now();
        create_all(
            &deploys,
            have..n,
            |i| scale_deployment(&format!("w{i:05}"), pods, &nodes[i % nodes.len()]),
            "deployments",
        )
        .await?;
        create_all(
            &policies,
            have..n,
            |i| policy(&format!("p{i:05}"), spec(i)),
            "policies",
        )
        .await?;
        have = n;
        // The controller-manager makes the ReplicaSets and pods at its own pace (its client is
        // limited to 20 requests/s); wait until it is done so it does not compete with the run.
        let limit = Duration::from_secs((n as u64 / 2).max(600));
        let (mut avail, mut made) = (0, 0);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            avail = settled(&deploys, pods).await?;
            made = count(&pod_api).await?;
            progress(format!(
                "size {n}: {made}/{n} pods made, {avail}/{n} Deployments done by the controller-manager ({:.0} s)",
                setup.elapsed().as_secs_f64()
            ));
            if avail >= n || (!wait_settled && made >= n) {
                break;
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        let setup_seconds = setup.elapsed().as_secs_f64();
        if avail < n && (wait_settled || made < n) {
            progress(format!(
                "size {n}: only {made} pods and {avail} Deployments done after {limit:?}; measuring anyway"
            ));
        }

        let name = format!("scale-{n}");
        let mut scaler = Scaler::start(
            scaler_bin,
            &ctx.stack,
            &ctx.admin,
            &ns,
            &ctx.work,
            &name,
            &["--kafka-cluster", &cluster],
        )
        .await?;
        let t_start = Instant::now();
        scaler.ready(Duration::from_secs(180)).await?;
        let ready_seconds = t_start.elapsed().as_secs_f64();
        // The first cycle writes every status: a one-off, measured apart.
        let first = wait_for("the first two cycles", Duration::from_secs(600), || async {
            let s = scaler.scrape().await?;
            (s.cycle_count >= 2.0).then_some(s)
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}; scaler log:\n{}", scaler.tail()))?;
        // The cycle does not wait for status writes: the first statuses (one per policy)
        // drain from the scaler's queue in the background. Measure that apart too, and start
        // the window once every policy's first status is written.
        let first_statuses = wait_for(
            "every policy's first status",
            Duration::from_secs(600),
            || async {
                let s = scaler.scrape().await?;
                (s.requests.get("patch_status").copied().unwrap_or(0.0) >= n as f64).then_some(s)
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}; scaler log:\n{}", scaler.tail()))?;
        let first_statuses_seconds = t_start.elapsed().as_secs_f64() - ready_seconds;
        let (hwm_warm, _) = memory(scaler.pid());
        progress(format!(
            "size {n}: scaler ready in {ready_seconds:.1} s; first cycles done; first statuses \
             written {first_statuses_seconds:.1} s after ({} cycles meanwhile); measuring {seconds} s",
            first_statuses.cycle_count
        ));
        // A short settle, so the window starts in the steady state.
        tokio::time::sleep(Duration::from_secs(3)).await;

        let pid = scaler.pid();
        // The window starts and ends just after a cycle ends (a scrape that sees the count
        // move), so the decisions and requests counted are those of the cycles counted.
        let a = cycle_boundary(&scaler, None).await?;
        let cpu0 = proc_cpu_seconds(pid)?;
        let w0 = Instant::now();
        let mut prev = a.clone();
        let mut exact: Vec<f64> = Vec::new();
        let mut merged: Vec<(Scrape, Scrape)> = Vec::new();
        let mut peak_rss: f64 = 0.0;
        let mut failed_scrapes = 0usize;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // At least `seconds`, and at least MIN_CYCLES cycles (a large size has long cycles),
        // but never more than MAX_WINDOW.
        let mut at_boundary = false;
        while !at_boundary
            || w0.elapsed() < Duration::from_secs(seconds)
            || (prev.cycle_count - a.cycle_count < MIN_CYCLES && w0.elapsed() < MAX_WINDOW)
        {
            tick.tick().await;
            if let Ok(Some(status)) = scaler.child.0.try_wait() {
                anyhow::bail!("the scaler exited ({status}); log:\n{}", scaler.tail());
            }
            let (_, rss) = memory(pid);
            peak_rss = peak_rss.max(rss);
            let Some(s) = scaler.scrape().await else {
                failed_scrapes += 1;
                continue;
            };
            let dc = (s.cycle_count - prev.cycle_count).round() as i64;
            // Past the minimum, stop at the first scrape that sees a cycle end.
            at_boundary = dc > 0 || w0.elapsed() >= MAX_WINDOW;
            if dc == 1 {
                exact.push(s.cycle_sum - prev.cycle_sum);
            } else if dc > 1 {
                merged.push((prev.clone(), s.clone()));
            }
            prev = s;
        }
        let wall = w0.elapsed().as_secs_f64();
        let cpu = proc_cpu_seconds(pid)? - cpu0;
        let b = prev;
        let (hwm, rss) = memory(pid);
        let mut all = exact.clone();
        let mut estimated = 0usize;
        for (x, y) in &merged {
            let (v, est) = cycles_between(x, y, &exact);
            if est {
                estimated += v.len();
            }
            all.extend(v);
        }
        let cycles = b.cycle_count - a.cycle_count;
        let per_cycle = |x: f64| if cycles > 0.0 { x / cycles } else { f64::NAN };
        let requests: BTreeMap<&String, f64> = b
            .requests
            .iter()
            .map(|(verb, v)| {
                (
                    verb,
                    per_cycle(v - a.requests.get(verb).copied().unwrap_or(0.0)),
                )
            })
            .collect();
        let total_requests: f64 = b
            .requests
            .iter()
            .map(|(verb, v)| v - a.requests.get(verb).copied().unwrap_or(0.0))
            .sum();
        let errors: BTreeMap<&String, f64> = b
            .errors
            .iter()
            .map(|(r, v)| (r, v - a.errors.get(r).copied().unwrap_or(0.0)))
            .filter(|(_, d)| *d > 0.0)
            .collect();
        let over = all.iter().filter(|&&v| v > 1.0).count();
        drop(scaler);
        // What one status write costs on this API server: the same server-side apply the
        // scaler sends (its field manager, forced), of a status it wrote, with a new decision
        // time each, so every apply changes the object. Sequential, with the scaler stopped.
        let applies = status_apply_seconds(&policies, "p00000", 50).await?;
        let after = settled(&deploys, pods).await?;
        let result = json!({
            "kind": "scale", "policies": n,
            "status_apply_seconds": summary(&applies), "deployments_settled": avail, "pods": pods.name(), "pods_made": made,
            "deployments_settled_after": after, "waited_for": if wait_settled { "settled" } else { "pods" },
            "setup_seconds": setup_seconds, "scaler_ready_seconds": ready_seconds,
            "first_cycles_seconds": first.cycle_sum, "window_seconds": wall,
            "first_statuses_seconds": first_statuses_seconds, "status_queue_end": b.status_queue,
            "cycles": cycles,
            "cycle_mean_seconds": per_cycle(b.cycle_sum - a.cycle_sum),
            "cycle_seconds": summary(&all),
            "cycles_estimated": estimated, "cycles_over_1s": over,
            "histogram_p50_seconds": histogram_quantile(0.5, &a, &b),
            "histogram_p95_seconds": histogram_quantile(0.95, &a, &b),
            "decisions_per_cycle": per_cycle(b.decisions - a.decisions),
            "requests_per_cycle": requests,
            "requests_per_second": total_requests / wall,
            "errors": errors, "scale_events": b.scale_events - a.scale_events,
            "leader": b.leader, "active_policies": b.active_policies,
            "cpu_cores": cpu / wall,
            "peak_rss_bytes": hwm, "rss_bytes": rss, "peak_rss_sampled_bytes": peak_rss,
            "peak_rss_after_first_cycles_bytes": hwm_warm,
            "failed_scrapes": failed_scrapes,
        });
        sink.emit(result.clone());
        progress(format!(
            "size {n}: {cycles} cycles, mean {:.3} s, p95 {:.3} s, max {:.3} s, peak RSS {:.1} MiB",
            per_cycle(b.cycle_sum - a.cycle_sum),
            result["cycle_seconds"]["p95"].as_f64().unwrap_or(f64::NAN),
            result["cycle_seconds"]["max"].as_f64().unwrap_or(f64::NAN),
            hwm / 1048576.0
        ));
    }
    Ok(())
}

/// Times `n` sequential status applies of policy `name`, as the scaler sends them.
async fn status_apply_seconds(policies: &Api<ScalingPolicy>, name: &str, n: usize) -> R<Vec<f64>> {
    let mut status = policies
        .get_status(name)
        .await?
        .status
        .ok_or_else(|| anyhow::anyhow!("{name} has no status"))?;
    let pp = PatchParams::apply("tidal-scaler").force();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if let Some(d) = status.last_decision.as_mut() {
            d.time = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        }
        let patch =
            json!({"apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy", "status": status});
        let t = Instant::now();
        policies
            .patch_status(name, &pp, &Patch::Apply(&patch))
            .await?;
        out.push(t.elapsed().as_secs_f64());
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------

struct Ctx {
    stack: Stack,
    admin: kube::Client,
    work: PathBuf,
    created: Shared,
}

/// Runs `part` for at most `limit`, its figures to `sink`; then removes what it made (also
/// when it failed or was interrupted).
pub async fn drive(work: &Path, part: &Part, sink: &Sink, limit: Duration) -> Ended {
    let ctx = async {
        std::fs::create_dir_all(work)?;
        let stack = Stack::load()?;
        let admin = stack.admin_client().await?;
        ensure_crd(&stack)?;
        Ok::<_, anyhow::Error>(Ctx {
            stack,
            admin,
            created: Arc::new(Mutex::new(Created {
                file: work.join("created"),
                namespaces: Vec::new(),
                cluster_rbac: Vec::new(),
                rbac: Vec::new(),
                kafka: Vec::new(),
            })),
            work: work.to_path_buf(),
        })
    };
    let ctx = match ctx.await {
        Ok(ctx) => ctx,
        Err(e) => return Ended::Failed(crate::drive::reason(&e)),
    };
    let body = async {
        match part {
            Part::Reaction {
                steps,
                agent_interval,
                window,
                scaler,
                agent,
            } => reaction(&ctx, sink, *steps, *agent_interval, *window, scaler, agent).await,
            Part::Scale {
                sizes,
                seconds,
                pods,
                wait_settled,
                scaler,
            } => scale(&ctx, sink, sizes, *seconds, *pods, *wait_settled, scaler).await,
        }
    };
    let ended = bounded(limit, body).await;
    clean_up(&ctx.stack, &ctx.admin, &ctx.created).await;
    if let Ended::Interrupted(s) = ended {
        eprintln!("tidal-bench scaler: interrupted by {s}; cleaned up");
    }
    ended
}

/// Waits (at most [`NAMESPACES_WAIT`]) until every benchmark namespace is gone: each part
/// deletes its own in the background. `Err` when SIGTERM or SIGINT came first.
pub async fn wait_namespaces() -> Result<(), Interrupted> {
    tokio::select! {
        () = namespaces_gone() => Ok(()),
        s = tidal_e2e::bench::interrupted() => Err(Interrupted(s)),
    }
}

async fn namespaces_gone() {
    let Ok(stack) = Stack::load() else { return };
    let Ok(admin) = stack.admin_client().await else {
        return;
    };
    let api: Api<Namespace> = Api::all(admin);
    let lp = ListParams::default().labels(&format!("{}={}", BENCH_LABEL.0, BENCH_LABEL.1));
    let names = |list: kube::core::ObjectList<Namespace>| -> Vec<String> {
        list.items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect()
    };
    let Ok(first) = api.list(&lp).await.map(names) else {
        return;
    };
    if first.is_empty() {
        return;
    }
    note(format!("waiting for {} to be deleted", first.join(" ")));
    let gone = wait_for(
        "the benchmark namespaces deleted",
        NAMESPACES_WAIT,
        || async { api.list(&lp).await.ok().filter(|l| l.items.is_empty()) },
    )
    .await;
    if gone.is_err() {
        note(format!(
            "some benchmark namespaces were still terminating after 600 s: {}",
            first.join(" ")
        ));
    }
}

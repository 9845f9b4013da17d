//! The peers side by side (issue #15): `tidal-bench peers`, run by `scripts/bench-peers.sh`
//! (`--steps 10 --window 0 --readings 6 --minutes 6 --lock-seconds 300
//! --parts cpu,kafka,vertical,agreement`).
//!
//! Everything runs on the stack's real node, holding it exclusively (`NodeLock`): Tidal
//! in-cluster (manifests/overlays/local, applied when missing) and the peers the stack runs
//! (scripts/stack/peers.sh): metrics-server v0.8.0, the kube-controller-manager's own HPA
//! controller (15 s sync period, its defaults) and KEDA's operator.
//!
//! 1. `cpu`: one namespace per autoscaler, each with the same Deployment of real busybox pods
//!    (100m CPU requested, 200m limit, a busy loop while `/tmp/load` exists) and the same
//!    target: CPU at 50 % of the request, 1..2 replicas. Tidal: a ScalingPolicy labelled for
//!    the in-cluster scaler. The HPA: an `autoscaling/v2` HorizontalPodAutoscaler. KEDA: a
//!    ScaledObject with the `cpu` trigger (when the stack runs KEDA). All with scale-up
//!    stabilization 0 s (the HPA's default) and scale-down stabilization `--window` (the HPA's
//!    default is 300 s; shortened for all so that a step takes a minute or two: the figure
//!    measured is the scale-up). Each step: every workload at 1 idle replica, its pod
//!    measured by the source its autoscaler reads (the agent's `/metrics`; metrics-server's
//!    `PodMetrics`); a random phase of 1–16 s (against the HPA's 15 s sync and
//!    metrics-server's 15 s resolution as much as Tidal's 1 s cycle); then the load goes on in
//!    every copy at the same moment (one `kubectl exec` each, each t0 taken before its exec is
//!    sent), and t1 is when a watch on each Deployment sees `spec.replicas` become 2. Then
//!    load off everywhere, and all back to 1.
//! 2. `kafka`: a topic of 4 partitions and a consumer group with committed offsets (no
//!    consumer runs: the driver commits, so the lag is exactly what it makes). One namespace
//!    per autoscaler, each with the same idle Deployment, 1..4 replicas, 10 messages of lag per
//!    replica: Tidal (`kafkaLag`, the in-cluster scaler's own Kafka client), KEDA's `kafka`
//!    trigger at its defaults (`pollingInterval` 30 s) and with `pollingInterval: 1`, all on
//!    the same group. Each step: all at 1 replica, a random phase of 1–16 s, then 30 messages
//!    produced to every partition (lag 0 → 120) at t0, and t1 when each Deployment's
//!    `spec.replicas` first rises; 20 s later, the count each reached; then the driver commits
//!    the end offsets (lag 0) and all come back to 1. Also the KEDA operator's CPU over the
//!    part (both of its ScaledObjects), and what each `pollingInterval` costs it: its Kafka
//!    requests and CPU with one ScaledObject at a time ([`polling_cost`]).
//! 3. `vertical`: one pod (100m/300Mi requested, 200m/300Mi limit) busy up to its CPU limit,
//!    under Tidal's `Off` mode and a VerticalPodAutoscaler (`updateMode: "Off"`, the VPA
//!    recommender's defaults) created at the same moment; `--minutes` of observation, with a
//!    real OOM kill half-way (the container reads 400 MiB into a pipe). The time to each one's
//!    first recommendation, and both recommendations (target, lower and upper bound) every
//!    minute.
//! 4. `agreement`: a Deployment of 2 pods, one loaded (its busy loop on, and 24 MiB held in
//!    its `/dev/shm`) and one idle, under no autoscaler. At `--readings` moments 15 s apart:
//!    the container's own cgroup (`cpuacct.usage`, and `memory.usage_in_bytes -
//!    total_inactive_file`, the working set), Tidal's agent (`tidal_agent_container_cpu_usage_cores`,
//!    `tidal_agent_container_memory_working_set_bytes`), the kubelet's cAdvisor (`/metrics/cadvisor`
//!    through the API server) and metrics-server (`metrics.k8s.io` `PodMetrics`), read one
//!    after another, and the age of each source's newest sample at the moment it was read.
//!
//! Puts one JSON object per part in the [`Sink`] (`{"kind": "cpu" | "kafka" | "vertical" |
//! "agreement", ...}`, with `"failed": true` and a `reason` when a part failed); progress goes
//! to stderr. Namespaces made are listed in `WORK/created` so that the script can delete them
//! if this process is killed; at the end, and on SIGTERM or SIGINT, it deletes them itself.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};
use tidal_e2e::bench::{
    AGENT_CPU, Created, agent_metrics, change_after, exec, failed, jitter, label, progress,
    ready_pods, summary, wait_exported, wait_policy_active,
};
use tidal_e2e::builders::policy;
use tidal_e2e::kafka::{commit, create_topic, produce};
use tidal_e2e::peers::{pod_metrics, scaled_objects, vertical_pod_autoscalers};
use tidal_e2e::realnode::{BURNER_SCRIPT, RealNode, cadvisor, read_stat, read_u64};
use tidal_e2e::scaler::{ReplicaHistory, samples};
use tidal_e2e::{Stack, unique, wait_for};
use tidal_scaler::api::ScalingPolicy;
use tidal_scaler::api::convert::parse_quantity;

use crate::drive::{Ended, Sink, bounded};
use crate::parts::{OnStack, hold_node};

pub mod in_place;
pub mod polling_cost;
pub mod replay;

type R<T> = anyhow::Result<T>;

pub(super) const BENCH_LABEL: (&str, &str) = ("tidal.dev/bench", "peers");
/// What the in-cluster scaler is labelled to act on (manifests/overlays/local/scaler.yaml).
const SCALER_LABEL: (&str, &str) = ("tidal.dev/scaler", "in-cluster");
pub(super) const APP: &str = "web";
const BURN: &str = "burn";
const REQUEST: (&str, &str) = ("100m", "16Mi");
/// Three copies loaded at once on 2 cores: 200m each (200 % of the request, far above the
/// target, so every autoscaler wants the max at once).
const LIMIT: (&str, &str) = ("200m", "64Mi");
const TARGET_UTILIZATION: i32 = 50;
/// The slowest peer's scale write follows the load within this, or the step fails: the HPA
/// needs up to a sync period (15 s) after metrics-server has a new window (15 s resolution,
/// the kubelet's cAdvisor housekeeping before it).
const UP_TIMEOUT: Duration = Duration::from_secs(120);
/// cAdvisor's working-set series; the agent's is [`AGENT_WORKING_SET`].
const WORKING_SET: &str = "container_memory_working_set_bytes";
const AGENT_WORKING_SET: &str = tidal_core::schema::CONTAINER_MEMORY_WORKING_SET_BYTES;
const CADVISOR_CPU: &str = "container_cpu_usage_seconds_total";
/// Between two agreement readings: metrics-server's resolution.
const READING_INTERVAL: Duration = Duration::from_secs(15);

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn workload(node: &RealNode, replicas: i32) -> Deployment {
    let container = node.busybox(BURN, BURNER_SCRIPT, Some(REQUEST), Some(LIMIT));
    node.deployment(APP, replicas, container)
}

// ------------------------------------------------------------------------------------------
// the autoscalers

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Tidal,
    Hpa,
    /// KEDA's `cpu` trigger: the operator makes an HPA (`keda-hpa-<name>`) with the same
    /// Resource metric, which the controller-manager's HPA then runs.
    Keda,
    /// Tidal on a consumer group's lag (`kafkaLag`, the in-cluster scaler's own Kafka client).
    TidalLag,
    /// KEDA's `kafka` trigger at its defaults (`pollingInterval` 30 s).
    KedaLag,
    /// KEDA's `kafka` trigger with `pollingInterval: 1`.
    KedaLagFast,
}

/// The topic and group the lag kinds scale on.
struct Lag {
    topic: String,
    group: String,
    /// The stack's Kafka as KEDA's operator (a process on this host) reaches it.
    bootstrap: String,
}

/// What a lag step aims at: `lagPerReplica` / `lagThreshold`, and the most replicas (the
/// partition count: KEDA's Kafka scaler never goes past it by default).
const LAG_PER_REPLICA: i64 = 10;
const PARTITIONS: i32 = 4;

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Tidal => "tidal",
            Kind::Hpa => "hpa",
            Kind::Keda => "keda",
            Kind::TidalLag => "tidal-lag",
            Kind::KedaLag => "keda-lag",
            Kind::KedaLagFast => "keda-lag-1s",
        }
    }

    fn is_keda(self) -> bool {
        matches!(self, Kind::Keda | Kind::KedaLag | Kind::KedaLagFast)
    }

    /// The lag kind's ScalingPolicy or ScaledObject.
    fn lag_spec(self, window: u32, lag: &Lag) -> Value {
        if self == Kind::TidalLag {
            return json!({
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                "minReplicas": 1, "maxReplicas": PARTITIONS,
                "metrics": [{"name": "lag", "kafkaLag": {"cluster": "local", "group": lag.group,
                             "topics": [lag.topic], "lagPerReplica": LAG_PER_REPLICA}}],
                "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0},
                             "scaleDown": {"stabilizationWindowSeconds": window}}
            });
        }
        let mut so = json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": APP},
            "spec": {
                "scaleTargetRef": {"name": APP},
                "minReplicaCount": 1, "maxReplicaCount": PARTITIONS,
                "advanced": {"horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": window}}}},
                "triggers": [{"type": "kafka", "metadata": {
                    "bootstrapServers": lag.bootstrap, "consumerGroup": lag.group,
                    "topic": lag.topic, "lagThreshold": LAG_PER_REPLICA.to_string()}}]
            }
        });
        if self == Kind::KedaLagFast {
            so["spec"]["pollingInterval"] = json!(1);
        }
        so
    }

    /// The object that makes this autoscaler act on the workload, as its docs write it.
    fn spec(self, window: u32) -> Value {
        match self {
            Kind::Tidal => json!({
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                "minReplicas": 1, "maxReplicas": 2,
                "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": TARGET_UTILIZATION}}],
                "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0},
                             "scaleDown": {"stabilizationWindowSeconds": window}}
            }),
            Kind::Hpa => json!({
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": APP},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                    "minReplicas": 1, "maxReplicas": 2,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": TARGET_UTILIZATION}}}],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": window}}
                }
            }),
            Kind::TidalLag | Kind::KedaLag | Kind::KedaLagFast => Value::Null,
            Kind::Keda => json!({
                "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                "metadata": {"name": APP},
                "spec": {
                    "scaleTargetRef": {"name": APP},
                    "minReplicaCount": 1, "maxReplicaCount": 2,
                    "advanced": {"horizontalPodAutoscalerConfig": {
                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": window}}}},
                    "triggers": [{"type": "cpu", "metricType": "Utilization",
                                  "metadata": {"value": TARGET_UTILIZATION.to_string()}}]
                }
            }),
        }
    }
}

/// One autoscaler with its own copy of the workload.
pub(super) struct Peer {
    pub(super) kind: Kind,
    spec: Value,
    pub(super) ns: String,
    pods: Api<Pod>,
    pub(super) history: ReplicaHistory,
    /// The pod the source was last seen measuring.
    measured: Option<String>,
}

impl Peer {
    /// A namespace of its own with `workload` (named [`APP`]) in it, and a watch on its
    /// replicas; the autoscaler is attached later ([`Peer::attach`]).
    pub(super) async fn create(
        admin: &kube::Client,
        created: &Created,
        kind: Kind,
        spec: Value,
        workload: &Deployment,
    ) -> R<Self> {
        let ns = created
            .namespace(admin, &format!("bench-peers-{}", kind.name()), BENCH_LABEL)
            .await?;
        let deploys: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
        deploys.create(&PostParams::default(), workload).await?;
        let history = ReplicaHistory::watch(deploys, APP).await?;
        let pods = Api::namespaced(admin.clone(), &ns);
        Ok(Self {
            kind,
            spec,
            ns,
            pods,
            history,
            measured: None,
        })
    }

    /// Creates the autoscaler's object and waits until it acts on the workload at `replicas`.
    pub(super) async fn attach(&self, admin: &kube::Client, replicas: i32) -> R<()> {
        let spec = self.spec.clone();
        match self.kind {
            Kind::Tidal | Kind::TidalLag => {
                let api: Api<ScalingPolicy> = Api::namespaced(admin.clone(), &self.ns);
                let mut p = policy(APP, spec)?;
                p.metadata.labels = Some(BTreeMap::from([(
                    SCALER_LABEL.0.to_string(),
                    SCALER_LABEL.1.to_string(),
                )]));
                api.create(&PostParams::default(), &p).await?;
                wait_policy_active(&api, APP, SCALER_LABEL, replicas, Duration::from_secs(60)).await
            }
            _ => {
                let api: Api<HorizontalPodAutoscaler> = Api::namespaced(admin.clone(), &self.ns);
                let hpa = if self.kind == Kind::Hpa {
                    api.create(&PostParams::default(), &serde_json::from_value(spec)?)
                        .await?;
                    APP.to_string()
                } else {
                    scaled_objects(admin, &self.ns)
                        .create(&PostParams::default(), &serde_json::from_value(spec)?)
                        .await?;
                    format!("keda-hpa-{APP}")
                };
                let api = &api;
                let hpa = &hpa;
                wait_for(
                    "the HPA reports a CPU utilization (ScalingActive, metrics-server read)",
                    Duration::from_secs(120),
                    || async {
                        let h = serde_json::to_value(api.get(hpa).await.ok()?.status).ok()?;
                        let active = h["conditions"]
                            .as_array()?
                            .iter()
                            .any(|c| c["type"] == "ScalingActive" && c["status"] == "True");
                        let m = &h["currentMetrics"][0];
                        let read = m["resource"]["current"]["averageUtilization"].is_number()
                            || m["external"]["current"]["averageValue"].is_string();
                        (active && read).then_some(())
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", self.ns))
            }
        }
    }

    /// The single Ready pod at 1 replica, once the autoscaler's source measures it.
    async fn idle_pod(&mut self, admin: &kube::Client, node: &RealNode) -> R<String> {
        let pod = wait_for(
            "1 replica and exactly one Ready pod",
            Duration::from_secs(180),
            || async {
                if self.history.current() != Some(1) {
                    return None;
                }
                let names = ready_pods(&self.pods, APP).await.ok()?;
                (names.len() == 1).then(|| names[0].clone())
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}; {}", self.ns, self.history.render()))?;
        if self.measured.as_deref() != Some(&pod) {
            match self.kind {
                Kind::Tidal => {
                    wait_exported(admin, node, &self.ns, &pod, BURN, Duration::from_secs(60))
                        .await?
                }
                Kind::TidalLag | Kind::KedaLag | Kind::KedaLagFast => {}
                Kind::Hpa | Kind::Keda => {
                    wait_for(
                        &format!("metrics-server has PodMetrics for {}/{pod}", self.ns),
                        Duration::from_secs(90),
                        || async { pod_metrics(admin, &self.ns, &pod).await.ok() },
                    )
                    .await?;
                }
            }
            self.measured = Some(pod.clone());
        }
        Ok(pod)
    }

    /// What the autoscaler's object says at the end.
    pub(super) async fn status(&self, admin: &kube::Client) -> Value {
        match self.kind {
            Kind::Tidal | Kind::TidalLag => {
                let api: Api<ScalingPolicy> = Api::namespaced(admin.clone(), &self.ns);
                api.get(APP)
                    .await
                    .ok()
                    .and_then(|p| serde_json::to_value(p.status).ok())
                    .unwrap_or_default()
            }
            _ => {
                let api: Api<HorizontalPodAutoscaler> = Api::namespaced(admin.clone(), &self.ns);
                let name = if self.kind.is_keda() {
                    format!("keda-hpa-{APP}")
                } else {
                    APP.to_string()
                };
                let hpa = api
                    .get(&name)
                    .await
                    .ok()
                    .and_then(|p| serde_json::to_value(p.status).ok())
                    .unwrap_or_default();
                if self.kind == Kind::Hpa {
                    return hpa;
                }
                let so = scaled_objects(admin, &self.ns)
                    .get(APP)
                    .await
                    .ok()
                    .map(|o| o.data["status"].clone())
                    .unwrap_or_default();
                json!({"hpa": hpa, "scaledObject": so})
            }
        }
    }
}

/// Waits for every peer's Deployment to come back to 1 replica after its `since`.
async fn back_to_one(
    peers: &[Peer],
    since: &[Duration],
    timeout: Duration,
    step: usize,
) -> R<Vec<tidal_e2e::scaler::Change>> {
    join_all(
        peers
            .iter()
            .zip(since)
            .map(|(p, t)| change_after(&p.history, *t, 1, timeout)),
    )
    .await
    .into_iter()
    .zip(peers)
    .map(|(c, p)| c.map_err(|e| anyhow::anyhow!("step {step}: {} back to 1: {e}", p.kind.name())))
    .collect()
}

/// Per peer under `out["peers"]`: its object's spec and status, and a summary of each of
/// `fields` over `out["rows"][*][<peer>]`.
async fn summarize(out: &mut Value, peers: &[Peer], admin: &kube::Client, fields: &[&str]) {
    for p in peers {
        let name = p.kind.name();
        let mut v = json!({"spec": p.spec, "status": p.status(admin).await});
        for k in fields {
            let col: Vec<f64> = out["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r[name][k].as_f64())
                .collect();
            v[*k] = summary(&col);
        }
        out["peers"][name] = v;
    }
}

// ------------------------------------------------------------------------------------------
// cpu: load step → scale write

async fn cpu(
    stack: &Stack,
    admin: &kube::Client,
    node: &RealNode,
    created: &Created,
    steps: usize,
    window: u32,
) -> R<Value> {
    let mut peers = Vec::new();
    let mut kinds = vec![Kind::Tidal, Kind::Hpa];
    if stack.var("TIDAL_KEDA_VERSION").is_ok() {
        kinds.push(Kind::Keda);
    }
    for kind in kinds {
        peers
            .push(Peer::create(admin, created, kind, kind.spec(window), &workload(node, 1)).await?);
    }
    for p in &mut peers {
        p.idle_pod(admin, node).await?;
    }
    for p in &peers {
        p.attach(admin, 1).await?;
        progress(format!(
            "{}: {} acts on {APP} at 1 replica",
            p.ns,
            p.kind.name()
        ));
    }
    let down_timeout = Duration::from_secs(u64::from(window) + 240);
    let started = Instant::now();
    let mut rows = Vec::new();
    for step in 1..=steps {
        let mut pods = Vec::new();
        for p in &mut peers {
            pods.push(p.idle_pod(admin, node).await?);
        }
        tokio::time::sleep(Duration::from_secs_f64(1.0 + 15.0 * jitter())).await;
        for p in &peers {
            anyhow::ensure!(
                p.history.current() == Some(1),
                "step {step}: {} moved while idle; {}",
                p.kind.name(),
                p.history.render()
            );
        }
        let on = join_all(peers.iter().zip(&pods).map(|(p, pod)| async move {
            let t0 = p.history.started.elapsed();
            let took = exec(stack, &p.ns, pod, BURN, "touch /tmp/load").await?;
            Ok::<_, anyhow::Error>((t0, took))
        }))
        .await
        .into_iter()
        .collect::<R<Vec<_>>>()?;
        let up = join_all(
            peers
                .iter()
                .zip(&on)
                .map(|(p, (t0, _))| change_after(&p.history, *t0, 2, UP_TIMEOUT)),
        )
        .await;
        let off = join_all(peers.iter().zip(&pods).map(|(p, pod)| async move {
            let t = p.history.started.elapsed();
            exec(stack, &p.ns, pod, BURN, "rm -f /tmp/load").await?;
            Ok::<_, anyhow::Error>(t)
        }))
        .await
        .into_iter()
        .collect::<R<Vec<_>>>()?;
        let mut row = json!({"step": step});
        let mut line = format!("step {step:2}/{steps}:");
        for (i, p) in peers.iter().enumerate() {
            let name = p.kind.name();
            let c = up[i]
                .as_ref()
                .map_err(|e| anyhow::anyhow!("step {step}: {name}: {e}"))?;
            let up_s = c.at.saturating_sub(on[i].0).as_secs_f64();
            row[name] = json!({"up_seconds": up_s, "exec_on_seconds": on[i].1, "pod": pods[i]});
            line.push_str(&format!(" {name} {up_s:.2} s;"));
        }
        let down = back_to_one(&peers, &off, down_timeout, step).await?;
        for (i, p) in peers.iter().enumerate() {
            let name = p.kind.name();
            let c = &down[i];
            let during: Vec<i32> = p
                .history
                .changes()
                .iter()
                .filter(|x| x.at > on[i].0 && x.at <= c.at)
                .map(|x| x.replicas)
                .collect();
            anyhow::ensure!(
                during == [2, 1],
                "step {step}: {name}: wrong actuation {during:?}; {}",
                p.history.render()
            );
            row[name]["down_seconds"] = json!(c.at.saturating_sub(off[i]).as_secs_f64());
        }
        progress(format!("{line} (load on -> 2 replicas)"));
        rows.push(row);
    }
    let mut out = json!({
        "kind": "cpu", "steps": steps, "scale_down_window_seconds": window,
        "run_seconds": started.elapsed().as_secs_f64(), "rows": rows,
    });
    summarize(
        &mut out,
        &peers,
        admin,
        &["up_seconds", "exec_on_seconds", "down_seconds"],
    )
    .await;
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// kafka: backlog step → scale write

/// The first change of `spec.replicas` above `above` seen after `since`.
async fn rise_after(
    history: &ReplicaHistory,
    since: Duration,
    above: i32,
    timeout: Duration,
) -> R<tidal_e2e::scaler::Change> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(c) = history
            .changes()
            .into_iter()
            .find(|c| c.at > since && c.replicas > above)
        {
            return Ok(c);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "spec.replicas did not rise above {above} within {timeout:?}; {}",
            history.render()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// CPU seconds a stack component (a process this host runs, `$STATE/pids/<name>.pid`) used.
fn component_cpu_seconds(stack: &Stack, name: &str) -> Option<f64> {
    let dir = stack.var("TIDAL_STACK_DIR").ok()?;
    let pid = std::fs::read_to_string(format!("{dir}/pids/{name}.pid")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok()?;
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn kafka(
    stack: &Stack,
    admin: &kube::Client,
    node: &RealNode,
    created: &Created,
    steps: usize,
    window: u32,
) -> R<Value> {
    anyhow::ensure!(
        stack.var("TIDAL_KEDA_VERSION").is_ok(),
        "the stack runs without KEDA: nothing to compare Tidal's lag scaling with"
    );
    let bootstrap = stack.var("TIDAL_KAFKA_BOOTSTRAP")?.to_string();
    let lag = Lag {
        topic: unique("bench-peers-lag"),
        group: unique("bench-peers-group"),
        bootstrap: bootstrap.clone(),
    };
    // Recorded first: deleted at the end, also when the run stops half-way.
    created.kafka(&bootstrap, &lag.topic, &lag.group);
    create_topic(&bootstrap, &lag.topic, PARTITIONS).await?;
    let mut end = vec![0i64; PARTITIONS as usize];
    let commit_at = |end: &[i64]| {
        let offsets: Vec<(&str, i32, i64)> = end
            .iter()
            .enumerate()
            .map(|(p, o)| (lag.topic.as_str(), p as i32, *o))
            .collect();
        commit(&bootstrap, &lag.group, &offsets)
    };
    commit_at(&end)?;
    let mut peers = Vec::new();
    for kind in [Kind::TidalLag, Kind::KedaLag, Kind::KedaLagFast] {
        let spec = kind.lag_spec(window, &lag);
        peers.push(Peer::create(admin, created, kind, spec, &workload(node, 1)).await?);
    }
    for p in &mut peers {
        p.idle_pod(admin, node).await?;
    }
    for p in &peers {
        p.attach(admin, 1).await?;
        progress(format!(
            "{}: {} acts on {APP} at 1 replica",
            p.ns,
            p.kind.name()
        ));
    }
    // Every partition gets this many messages per step: the lag jumps from 0 to
    // 3 × LAG_PER_REPLICA × PARTITIONS, which asks everyone for more than PARTITIONS replicas.
    let per_partition = 3 * LAG_PER_REPLICA;
    let down_timeout = Duration::from_secs(u64::from(window) + 240);
    let keda_cpu0 = component_cpu_seconds(stack, "keda-operator");
    let started = Instant::now();
    let mut rows = Vec::new();
    for step in 1..=steps {
        for p in &mut peers {
            p.idle_pod(admin, node).await?;
        }
        tokio::time::sleep(Duration::from_secs_f64(1.0 + 15.0 * jitter())).await;
        let t0: Vec<Duration> = peers.iter().map(|p| p.history.started.elapsed()).collect();
        let sent = Instant::now();
        produce(
            &bootstrap,
            &lag.topic,
            &vec![per_partition; PARTITIONS as usize],
        )
        .await?;
        let produce_s = sent.elapsed().as_secs_f64();
        for e in &mut end {
            *e += per_partition;
        }
        let up = join_all(
            peers
                .iter()
                .zip(&t0)
                .map(|(p, t)| rise_after(&p.history, *t, 1, UP_TIMEOUT)),
        )
        .await;
        // What each settles at for this lag: a sync of the HPA (15 s) after the last write.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let mut row = json!({"step": step, "lag": per_partition * i64::from(PARTITIONS),
                             "produce_seconds": produce_s});
        let mut line = format!("step {step:2}/{steps}:");
        for (i, p) in peers.iter().enumerate() {
            let name = p.kind.name();
            let c = up[i]
                .as_ref()
                .map_err(|e| anyhow::anyhow!("step {step}: {name}: {e}"))?;
            let up_s = c.at.saturating_sub(t0[i]).as_secs_f64();
            let reached = p
                .history
                .changes()
                .iter()
                .filter(|x| x.at > t0[i])
                .map(|x| x.replicas)
                .max();
            row[name] = json!({"up_seconds": up_s, "first_write_replicas": c.replicas,
                               "reached_replicas": reached});
            line.push_str(&format!(" {name} {up_s:.2} s (to {reached:?});"));
        }
        let t_off: Vec<Duration> = peers.iter().map(|p| p.history.started.elapsed()).collect();
        commit_at(&end)?;
        let down = back_to_one(&peers, &t_off, down_timeout, step).await?;
        for (i, p) in peers.iter().enumerate() {
            row[p.kind.name()]["down_seconds"] =
                json!(down[i].at.saturating_sub(t_off[i]).as_secs_f64());
        }
        progress(format!("{line} (backlog -> first scale write)"));
        rows.push(row);
    }
    let run_seconds = started.elapsed().as_secs_f64();
    let keda_cpu = match (keda_cpu0, component_cpu_seconds(stack, "keda-operator")) {
        (Some(a), Some(b)) => Some((b - a) / run_seconds),
        _ => None,
    };
    let mut out = json!({
        "kind": "kafka", "steps": steps, "scale_down_window_seconds": window,
        "partitions": PARTITIONS, "lag_per_replica": LAG_PER_REPLICA,
        "run_seconds": run_seconds, "rows": rows,
        "keda_operator_cpu_cores": keda_cpu,
    });
    // The statuses are the steps' (the phase below pauses and changes KEDA's objects).
    summarize(
        &mut out,
        &peers,
        admin,
        &["up_seconds", "down_seconds", "reached_replicas"],
    )
    .await;
    // After the figures, and never at their cost: a phase that fails is reported as such.
    let ns_of = |k: Kind| peers.iter().find(|p| p.kind == k).map(|p| p.ns.as_str());
    if let (Some(default), Some(fast)) = (ns_of(Kind::KedaLag), ns_of(Kind::KedaLagFast)) {
        out["polling_cost"] =
            match polling_cost::measure(stack, admin, created, default, fast).await {
                Ok(v) => v,
                Err(e) => {
                    progress(format!("polling cost: not measured: {e:#}"));
                    json!({"error": format!("{e:#}")})
                }
            };
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// vertical: Tidal's `Off` mode and the VPA recommender on the same pod

/// Container `container`'s recommendation (target, lower and upper bound, each CPU and memory
/// as numbers) in a list of container recommendations: the ScalingPolicy's
/// `status.recommendations` or the VPA's `status.recommendation.containerRecommendations`.
/// None until it has a CPU target.
fn bounds(list: &Value, container: &str) -> Option<Value> {
    let r = list
        .as_array()?
        .iter()
        .find(|r| r["containerName"] == container)?;
    let q = |v: &Value| v.as_str().and_then(|s| parse_quantity(s).ok());
    let mut out = json!({});
    for b in ["target", "lowerBound", "upperBound"] {
        out[b] = json!({"cpu": q(&r[b]["cpu"]), "memory": q(&r[b]["memory"])});
    }
    out["target"]["cpu"].is_number().then_some(out)
}

/// Tidal's and the VPA's recommendation for `container` of [`APP`] now ([`bounds`]); None for
/// a side that has none yet or could not be read.
pub(super) async fn recommendations(
    policies: &Api<ScalingPolicy>,
    vpas: &Api<DynamicObject>,
    container: &str,
) -> (Option<Value>, Option<Value>) {
    let tidal = policies
        .get(APP)
        .await
        .ok()
        .and_then(|p| serde_json::to_value(p.status).ok())
        .and_then(|s| bounds(&s["recommendations"], container));
    let vpa = vpas.get(APP).await.ok().and_then(|v| {
        bounds(
            &v.data["status"]["recommendation"]["containerRecommendations"],
            container,
        )
    });
    (tidal, vpa)
}

const VERTICAL_CONTAINER: &str = "app";

/// The two vertical autoscalers of Deployment [`APP`] with `replicas` pods, container
/// `container`: a ScalingPolicy in `tidal_mode` (labelled for the in-cluster scaler) and a
/// VerticalPodAutoscaler in `vpa_mode`, to be created at the same moment.
pub(super) fn vertical_pair(
    container: &str,
    replicas: i32,
    tidal_mode: &str,
    vpa_mode: &str,
) -> R<(ScalingPolicy, DynamicObject)> {
    let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": APP});
    let mut p = policy(
        APP,
        json!({
            "targetRef": target, "minReplicas": replicas, "maxReplicas": replicas, "metrics": [],
            "vertical": {"mode": tidal_mode, "containerPolicies": [{"containerName": container}]}
        }),
    )?;
    p.metadata.labels = Some(BTreeMap::from([(
        SCALER_LABEL.0.to_string(),
        SCALER_LABEL.1.to_string(),
    )]));
    let vpa = serde_json::from_value(json!({
        "apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
        "metadata": {"name": APP},
        "spec": {"targetRef": target, "updatePolicy": {"updateMode": vpa_mode}}
    }))?;
    Ok((p, vpa))
}

/// The vertical part's memory request and limit: above the 250Mi floor, below the 400 MiB the
/// container reads at the OOM.
const VERTICAL_MEMORY: &str = "300Mi";

async fn vertical(
    stack: &Stack,
    admin: &kube::Client,
    node: &RealNode,
    created: &Created,
    minutes: u64,
) -> R<Value> {
    stack
        .var("TIDAL_VPA_VERSION")
        .map_err(|_| anyhow::anyhow!("the stack runs without the VPA recommender"))?;
    let ns = created
        .namespace(admin, "bench-peers-vertical", BENCH_LABEL)
        .await?;
    // Busy up to its CPU limit until /tmp/go exists; then it reads 400 MiB into a pipe and
    // the kernel kills it at its memory limit (a real OOM kill); the restarted container
    // starts busy again (its /tmp is new). The memory request and limit are above the
    // recommenders' 250Mi floor, so that the OOM bump (max(request + 100Mi, 1.2 x request)
    // for both) shows in the memory targets.
    let script = "while [ ! -e /tmp/go ]; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; done; \
                  head -c 400m /dev/zero | tail";
    let container = node.busybox(
        VERTICAL_CONTAINER,
        script,
        Some(("100m", VERTICAL_MEMORY)),
        Some(("200m", VERTICAL_MEMORY)),
    );
    let deploys: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    deploys
        .create(&PostParams::default(), &node.deployment(APP, 1, container))
        .await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let pod = wait_for("the pod Ready", Duration::from_secs(120), || async {
        ready_pods(&pods, APP).await.ok().filter(|p| p.len() == 1)
    })
    .await?
    .remove(0);
    let policies: Api<ScalingPolicy> = Api::namespaced(admin.clone(), &ns);
    let vpas = vertical_pod_autoscalers(admin, &ns);
    let (p, vpa) = vertical_pair(VERTICAL_CONTAINER, 1, "Off", "Off")?;
    // Both at the same moment, on the same history from here on.
    let start = Instant::now();
    policies.create(&PostParams::default(), &p).await?;
    vpas.create(&PostParams::default(), &vpa).await?;
    let total = Duration::from_secs(minutes * 60);
    let oom_at = total / 2;
    let (mut first_tidal, mut first_vpa, mut oom) = (None, None, None);
    let mut snapshots = Vec::new();
    let mut next_snapshot = Duration::from_secs(60);
    while start.elapsed() < total {
        let (tidal, vpa) = recommendations(&policies, &vpas, VERTICAL_CONTAINER).await;
        let at = start.elapsed().as_secs_f64();
        if first_tidal.is_none() && tidal.is_some() {
            first_tidal = Some(at);
            progress(format!("Tidal's first recommendation after {at:.1} s"));
        }
        if first_vpa.is_none() && vpa.is_some() {
            first_vpa = Some(at);
            progress(format!("the VPA's first recommendation after {at:.1} s"));
        }
        if oom.is_none() && start.elapsed() >= oom_at {
            exec(stack, &ns, &pod, VERTICAL_CONTAINER, "touch /tmp/go").await?;
            let killed = wait_for(
                "the container OOM-killed and restarted",
                Duration::from_secs(90),
                || async {
                    let p = pods.get(&pod).await.ok()?;
                    let s = p.status?.container_statuses?.into_iter().next()?;
                    let t = s.last_state?.terminated?;
                    (s.restart_count >= 1 && t.reason.as_deref() == Some("OOMKilled")).then_some(())
                },
            )
            .await;
            killed.map_err(|e| anyhow::anyhow!("{e}"))?;
            let at = start.elapsed().as_secs_f64();
            oom = Some(at);
            progress(format!("OOMKilled (and restarted) at {at:.1} s"));
        }
        if start.elapsed() >= next_snapshot {
            progress(format!(
                "t={at:.0} s: Tidal {} | VPA {}",
                tidal
                    .as_ref()
                    .map_or("none".into(), |t| t["target"].to_string()),
                vpa.as_ref()
                    .map_or("none".into(), |v| v["target"].to_string())
            ));
            snapshots.push(json!({"at_seconds": at, "tidal": tidal, "vpa": vpa}));
            next_snapshot += Duration::from_secs(60);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let last = snapshots.last().cloned().unwrap_or_default();
    let rel = |res: &str| -> Option<f64> {
        let t = last["tidal"]["target"][res].as_f64()?;
        let v = last["vpa"]["target"][res].as_f64()?;
        Some((t - v).abs() / v)
    };
    Ok(json!({
        "kind": "vertical", "minutes": minutes, "oom_at_seconds": oom,
        "first_recommendation_seconds": {"tidal": first_tidal, "vpa": first_vpa},
        "snapshots": snapshots,
        "target_relative_difference": {"cpu": rel("cpu"), "memory": rel("memory")},
        "request": {"cpu": "100m", "memory": VERTICAL_MEMORY},
        "limit": {"cpu": "200m", "memory": VERTICAL_MEMORY},
    }))
}

// ------------------------------------------------------------------------------------------
// agreement: the same containers read by each source at the same moments

/// Every source's reading of one container at one moment.
#[derive(Default)]
struct Reading {
    at: f64,
    cgroup_cpu_ns: u64,
    cgroup_working_set: f64,
    agent_cpu: Option<f64>,
    agent_working_set: Option<f64>,
    agent_age: Option<f64>,
    cadvisor_cpu_seconds: Option<(f64, f64)>,
    cadvisor_working_set: Option<f64>,
    cadvisor_age: Option<f64>,
    ms_cpu: Option<f64>,
    ms_memory: Option<f64>,
    ms_age: Option<f64>,
    ms_window: Option<f64>,
}

fn series_for(body: &str, metric: &str, ns: &str, pod: &str) -> Option<f64> {
    samples(body, metric).into_iter().find_map(|(l, v)| {
        (label(&l, "namespace") == Some(ns)
            && label(&l, "pod") == Some(pod)
            && label(&l, "container") == Some(BURN))
        .then_some(v)
    })
}

fn rfc3339_unix(s: &str) -> Option<f64> {
    let t: k8s_openapi::jiff::Timestamp = s.parse().ok()?;
    Some(t.as_millisecond() as f64 / 1e3)
}

async fn read_all(
    stack: &Stack,
    admin: &kube::Client,
    node: &RealNode,
    ns: &str,
    pods: &[Pod],
) -> R<Vec<Reading>> {
    let mut out = Vec::new();
    let body = agent_metrics(admin, node).await?;
    let age = samples(&body, "tidal_agent_snapshot_age_seconds")
        .values()
        .next()
        .copied();
    let cad_cpu = cadvisor(stack, node, CADVISOR_CPU)?;
    let cad_ws = cadvisor(stack, node, WORKING_SET)?;
    let cad_read = now_unix();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let cpu_cg = node
            .container_cgroup("cpuacct", pod, BURN)
            .ok_or_else(|| anyhow::anyhow!("{name}: no cpuacct cgroup"))?;
        let mem_cg = node
            .container_cgroup("memory", pod, BURN)
            .ok_or_else(|| anyhow::anyhow!("{name}: no memory cgroup"))?;
        let at = now_unix();
        let cgroup_cpu_ns = read_u64(&cpu_cg.join("cpuacct.usage"))?;
        let usage = read_u64(&mem_cg.join("memory.usage_in_bytes"))? as f64;
        let inactive = read_stat(&mem_cg.join("memory.stat"), "total_inactive_file")? as f64;
        let mine = |s: &&tidal_e2e::realnode::CadvisorSample| {
            s.labels.get("namespace").map(String::as_str) == Some(ns)
                && s.labels.get("pod") == Some(&name)
                && s.labels.get("container").map(String::as_str) == Some(BURN)
        };
        let cad = cad_cpu.iter().find(mine);
        let ms = pod_metrics(admin, ns, &name).await.ok();
        let ms_read = now_unix();
        let ms_container = ms.as_ref().and_then(|m| {
            m.data["containers"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == BURN)
                .cloned()
        });
        let q = |v: &Value| v.as_str().and_then(|s| parse_quantity(s).ok());
        out.push(Reading {
            at,
            cgroup_cpu_ns,
            cgroup_working_set: (usage - inactive).max(0.0),
            agent_cpu: series_for(&body, AGENT_CPU, ns, &name),
            agent_working_set: series_for(&body, AGENT_WORKING_SET, ns, &name),
            agent_age: age,
            cadvisor_cpu_seconds: cad.and_then(|s| Some((s.value, s.at?))),
            cadvisor_working_set: cad_ws.iter().find(mine).map(|s| s.value),
            cadvisor_age: cad.and_then(|s| s.at).map(|t| cad_read - t),
            ms_cpu: ms_container.as_ref().and_then(|c| q(&c["usage"]["cpu"])),
            ms_memory: ms_container.as_ref().and_then(|c| q(&c["usage"]["memory"])),
            ms_age: ms
                .as_ref()
                .and_then(|m| rfc3339_unix(m.data["timestamp"].as_str()?))
                .map(|t| ms_read - t),
            ms_window: ms.as_ref().and_then(|m| {
                let w = m.data["window"].as_str()?;
                w.strip_suffix('s')?.parse().ok()
            }),
        });
    }
    Ok(out)
}

/// `|a - b| / b`.
fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b
}

async fn agreement(
    stack: &Stack,
    admin: &kube::Client,
    node: &RealNode,
    created: &Created,
    readings: usize,
) -> R<Value> {
    let ns = created
        .namespace(admin, "bench-peers-agree", BENCH_LABEL)
        .await?;
    let deploys: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    deploys
        .create(&PostParams::default(), &workload(node, 2))
        .await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let names = wait_for("2 Ready pods", Duration::from_secs(120), || async {
        ready_pods(&pods, APP).await.ok().filter(|p| p.len() == 2)
    })
    .await?;
    // The loaded pod also holds 24 MiB in its /dev/shm (tmpfs, charged to its memory cgroup
    // and part of its working set), so that memory is compared on a size that matters.
    exec(
        stack,
        &ns,
        &names[0],
        BURN,
        "dd if=/dev/zero of=/dev/shm/hold bs=1M count=24 2>/dev/null; touch /tmp/load",
    )
    .await?;
    for n in &names {
        wait_exported(admin, node, &ns, n, BURN, Duration::from_secs(60)).await?;
        wait_for(
            &format!("metrics-server has PodMetrics for {ns}/{n}"),
            Duration::from_secs(90),
            || async { pod_metrics(admin, &ns, n).await.ok() },
        )
        .await?;
    }
    // Steady load: every source's window holds only loaded time.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let mut objs = Vec::new();
    for n in &names {
        objs.push(pods.get(n).await?);
    }
    progress(format!(
        "{ns}: {} loaded, {} idle; {readings} readings {}s apart",
        names[0],
        names[1],
        READING_INTERVAL.as_secs()
    ));
    let mut all: Vec<Vec<Reading>> = Vec::new();
    for i in 0..readings {
        if i > 0 {
            tokio::time::sleep(READING_INTERVAL).await;
        }
        all.push(read_all(stack, admin, node, &ns, &objs).await?);
    }
    // Per pod: the cgroup's rate between consecutive readings is the truth for CPU; each
    // source's CPU at the later reading is compared with it.
    let mut per_pod = Vec::new();
    for (j, n) in names.iter().enumerate() {
        let mut rows = Vec::new();
        for w in all.windows(2) {
            let (a, b) = (&w[0][j], &w[1][j]);
            let truth = (b.cgroup_cpu_ns - a.cgroup_cpu_ns) as f64 / 1e9 / (b.at - a.at);
            let cad_rate = match (a.cadvisor_cpu_seconds, b.cadvisor_cpu_seconds) {
                (Some((va, ta)), Some((vb, tb))) if tb > ta => Some((vb - va) / (tb - ta)),
                _ => None,
            };
            rows.push(json!({
                "cgroup_cpu_cores": truth,
                "agent_cpu_cores": b.agent_cpu, "cadvisor_cpu_cores": cad_rate,
                "metrics_server_cpu_cores": b.ms_cpu,
                "cgroup_working_set_bytes": b.cgroup_working_set,
                "agent_working_set_bytes": b.agent_working_set,
                "cadvisor_working_set_bytes": b.cadvisor_working_set,
                "metrics_server_memory_bytes": b.ms_memory,
                "agent_age_seconds": b.agent_age, "cadvisor_age_seconds": b.cadvisor_age,
                "metrics_server_age_seconds": b.ms_age,
                "metrics_server_window_seconds": b.ms_window,
            }));
        }
        let col = |k: &str| -> Vec<f64> { rows.iter().filter_map(|r| r[k].as_f64()).collect() };
        let errs = |k: &str, truth: &str| -> Vec<f64> {
            rows.iter()
                .filter_map(|r| Some(rel(r[k].as_f64()?, r[truth].as_f64()?)))
                .collect()
        };
        per_pod.push(json!({
            "pod": n, "loaded": j == 0, "rows": rows,
            "cpu_cores": {
                "cgroup": summary(&col("cgroup_cpu_cores")), "agent": summary(&col("agent_cpu_cores")),
                "cadvisor": summary(&col("cadvisor_cpu_cores")),
                "metrics_server": summary(&col("metrics_server_cpu_cores")),
            },
            "cpu_relative_error": {
                "agent": summary(&errs("agent_cpu_cores", "cgroup_cpu_cores")),
                "cadvisor": summary(&errs("cadvisor_cpu_cores", "cgroup_cpu_cores")),
                "metrics_server": summary(&errs("metrics_server_cpu_cores", "cgroup_cpu_cores")),
            },
            "working_set_relative_error": {
                "agent": summary(&errs("agent_working_set_bytes", "cgroup_working_set_bytes")),
                "cadvisor": summary(&errs("cadvisor_working_set_bytes", "cgroup_working_set_bytes")),
                "metrics_server": summary(&errs("metrics_server_memory_bytes", "cgroup_working_set_bytes")),
            },
            "age_seconds": {
                "agent": summary(&col("agent_age_seconds")),
                "cadvisor": summary(&col("cadvisor_age_seconds")),
                "metrics_server": summary(&col("metrics_server_age_seconds")),
            },
            "metrics_server_window_seconds": summary(&col("metrics_server_window_seconds")),
        }));
    }
    Ok(json!({"kind": "agreement", "readings": readings,
              "interval_seconds": READING_INTERVAL.as_secs(), "pods": per_pod}))
}

// ------------------------------------------------------------------------------------------

/// The versions and settings each autoscaler ran with, read from the live cluster.
async fn conditions(stack: &Stack, admin: &kube::Client, node: &RealNode) -> R<Value> {
    let nodes: Api<Node> = Api::all(admin.clone());
    let info = nodes
        .get(&node.name)
        .await?
        .status
        .and_then(|s| s.node_info)
        .map(|i| json!({"kubelet": i.kubelet_version, "runtime": i.container_runtime_version, "kernel": i.kernel_version}))
        .unwrap_or_default();
    Ok(json!({
        "node": node.name, "node_info": info,
        "metrics_server": stack.var("TIDAL_METRICS_SERVER_VERSION").ok(),
        "keda": stack.var("TIDAL_KEDA_VERSION").ok(),
        "request": {"cpu": REQUEST.0, "memory": REQUEST.1},
        "limit": {"cpu": LIMIT.0, "memory": LIMIT.1},
        "target_utilization": TARGET_UTILIZATION,
    }))
}

/// What one run measures.
pub struct Settings {
    pub steps: usize,
    /// The replay part: each trace compressed to about this many seconds.
    pub replay_seconds: u64,
    pub window: u32,
    pub readings: usize,
    pub minutes: u64,
    pub lock_seconds: u64,
    /// In order, some of `cpu`, `kafka`, `replay`, `vertical`, `inplace`, `agreement`.
    pub parts: Vec<String>,
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
        readings,
        minutes,
        lock_seconds,
        ..
    } = settings;
    stack.var("TIDAL_METRICS_SERVER_URL").map_err(|_| {
        anyhow::anyhow!("the stack runs without its peers (TIDAL_PEERS=0?): no metrics-server")
    })?;
    progress("Tidal in-cluster on the real node (applies manifests/overlays/local if needed)");
    let node = RealNode::installed(stack).await?;
    progress(format!(
        "taking the real node exclusively (NodeLock; at most {lock_seconds} s)"
    ));
    let _lock = hold_node(stack, Duration::from_secs(lock_seconds))
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!("the real node stayed held by tests for {lock_seconds} s")
        })?;
    let conds = conditions(stack, admin, &node).await?;
    let mut errors = Vec::new();
    for part in &settings.parts {
        let part = part.as_str();
        let result = match part {
            "cpu" => {
                progress(format!(
                    "cpu: {steps} load steps, Tidal and its peers side by side (scale-down window {window} s)"
                ));
                cpu(stack, admin, &node, created, steps, window).await
            }
            "vertical" => {
                progress(format!(
                    "vertical: {minutes} min of Tidal's Off mode (recommendations only) and the VPA recommender on one pod, a real OOM kill half-way"
                ));
                vertical(stack, admin, &node, created, minutes).await
            }
            "inplace" => {
                progress(format!(
                    "inplace: Tidal's InPlace and the VPA's InPlaceOrRecreate, {} pods each requesting {}/{} (at most {minutes} min)",
                    in_place::REPLICAS,
                    in_place::REQUEST.0,
                    in_place::REQUEST.1
                ));
                in_place::in_place(stack, admin, &node, created, minutes).await
            }
            "replay" => {
                let secs = settings.replay_seconds;
                progress(format!(
                    "replay: traces/step.csv and traces/flash-sale.csv compressed to about {secs} s each, real consumers, Tidal, the HPA and KEDA side by side"
                ));
                replay::replay(stack, admin, &node, created, secs).await
            }
            "kafka" => {
                progress(format!(
                    "kafka: {steps} backlog steps, Tidal and KEDA's Kafka scaler (default and 1 s polling)"
                ));
                kafka(stack, admin, &node, created, steps, window).await
            }
            _ => {
                progress(format!(
                    "agreement: {readings} readings of the agent, cAdvisor and metrics-server"
                ));
                agreement(stack, admin, &node, created, readings).await
            }
        };
        match result {
            Ok(mut v) => {
                v["conditions"] = conds.clone();
                sink.emit(v);
            }
            Err(e) => {
                progress(format!("the {part} part failed: {e:#}"));
                sink.emit(failed(part, &e, &conds));
                errors.push(format!("{part}: {e:#}"));
            }
        }
    }
    anyhow::ensure!(errors.is_empty(), "{}", errors.join("; "));
    Ok(())
}

/// Runs the parts of `settings` for at most `limit`, their figures to `sink`; then deletes
/// the namespaces it made (also when it failed or was interrupted).
pub async fn drive(work: &Path, settings: &Settings, sink: &Sink, limit: Duration) -> Ended {
    let on = match OnStack::new(work, "peers").await {
        Ok(on) => on,
        Err(ended) => return ended,
    };
    let ended = bounded(
        limit,
        run(&on.stack, &on.admin, &on.created, settings, sink),
    )
    .await;
    on.finish(ended).await
}

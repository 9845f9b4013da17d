//! `replay`: the trace replay with real load (issue #15). A compressed copy of
//! `traces/step.csv` and of `traces/flash-sale.csv` drives real Kafka consumers on the real
//! node, one copy of the workload per autoscaler, all fed by the same topic at the same moments:
//!
//! - the load: the trace's load × [`LOAD_SCALE`] messages a second, its time compressed to
//!   `--replay-seconds`, produced by this driver round-robin over the topic's [`PARTITIONS`]
//!   partitions (100 ms ticks);
//! - the workload: a Deployment of `tidal-bench-consumer` pods
//!   (bench/src/bin/tidal-bench-consumer.rs), each in the same consumer group of its namespace, spending [`CPU_MS`] of CPU on each message
//!   with a CPU request and limit of [`CPU_MILLI`], calibrated with the client's own CPU to
//!   [`CAPACITY`] messages a second per pod at 100 % of its request (the model's
//!   `--capacity-per-replica`);
//! - the autoscalers, each as `traces/policy.yaml` describes the consumer (2..12 replicas, CPU
//!   at 70 %, [`LAG_PER_REPLICA`] messages of lag per replica, the policy's lag scaled like the
//!   load): Tidal with that policy (it sizes on the lag averaged over each commit interval,
//!   `lagSampling: commitInterval`); the HPA on CPU at 70 % (it has no lag metric), its
//!   defaults; KEDA's `kafka` trigger with `lagThreshold` [`LAG_PER_REPLICA`], its defaults.
//!
//! Every second: each Deployment's `spec.replicas` (replica-seconds, as the model counts
//! them: ready or not), its pods' CPU from their cgroups (utilization of the request), and its
//! true backlog (the end offsets minus the positions its consumers commit to a second group
//! every 250 ms; the committed lag the autoscalers see is recorded too). A second violates the
//! SLO when the utilization is above [`SLO_UTILIZATION`] or the backlog above [`SLO_LAG`]: the
//! model's rule (`tidal-sim simulate`, sim/src/simulate/model.rs). Beside the figures, what
//! `tidal-sim simulate` predicts for the same compressed trace and policy.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar, Namespace, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use tidal_e2e::bench::{Created, app_pods, progress, ready_pods};
use tidal_e2e::kafka::{commit, create_topic};
use tidal_e2e::realnode::{RealNode, pod_ready, read_u64};
use tidal_e2e::{Stack, unique, wait_for};
use tidal_sim::simulate::{self, Interpolation, Options, Peer as SimPeer, Trace};

use super::{APP, Kind, Peer};

type R<T> = anyhow::Result<T>;

/// The consumer image (`scripts/image.sh --consumer`).
pub const CONSUMER_IMAGE: &str = "tidal.local/tidal-bench-consumer:dev";
/// The traces replayed, from `traces/`.
pub const TRACES: [&str; 2] = ["step", "flash-sale"];
/// Messages a second per unit of the trace's load (the traces say 100–1000 a second).
pub const LOAD_SCALE: f64 = 0.1;
/// One pod's CPU request and limit, millicores (Guaranteed: it never uses more than its
/// request).
pub const CPU_MILLI: u32 = 20;
const MEMORY: &str = "64Mi";
/// Messages a second one pod serves at 100 % of its request: the model's 100 × [`LOAD_SCALE`].
pub const CAPACITY: f64 = 10.0;
/// CPU time of work per message, milliseconds, calibrated so that a pod serves [`CAPACITY`]
/// at 100 % of [`CPU_MILLI`]: the client's own CPU comes on top (librdkafka's threads, fetches,
/// heartbeats, the position commits). A run with 2 ms (20m / 10) measured 360–420 messages per
/// CPU-second and 1.6m idle a pod, about 0.5 ms a message beyond the work: a pod served about
/// 8 messages a second, not 10. (20 ms − 1.6 ms) / 10 − 0.5 ms ≈ 1.3 ms; the run reports what
/// it measured again (messages per CPU-second × the request is the capacity).
pub const CPU_MS: f64 = 1.3;
/// The topic's partitions: 5 × [`MAX_REPLICAS`], so that every replica count up to 12 splits
/// them almost evenly (at most 9 against 8 partitions a pod; with 12 partitions, 7 to 11
/// consumers would leave some pods with twice the others' load).
pub const PARTITIONS: i32 = 60;
/// traces/policy.yaml's bounds (its maximum is its partition count, 12).
const MIN_REPLICAS: i32 = 2;
pub const MAX_REPLICAS: i32 = 12;
/// traces/policy.yaml's 175 (70 % of a pod's rate × the 2.5 s commit trail) × [`LOAD_SCALE`],
/// rounded up: KEDA's `lagThreshold` is an integer.
pub const LAG_PER_REPLICA: i64 = 18;
/// The SLO, the model's defaults scaled: a backlog above 1000 × [`LOAD_SCALE`] messages, or a
/// utilization above 90 %.
pub const SLO_LAG: f64 = 100.0;
pub const SLO_UTILIZATION: f64 = 0.9;
/// The model's pod start-up for its prediction: a consumer pod is Running about 2–3 s after
/// its creation on this node, then joins its group (a rebalance).
pub const POD_START_SECONDS: f64 = 5.0;
/// How long the consumers run at the trace's first load, with every autoscaler attached,
/// before second 0.
const WARM_UP: Duration = Duration::from_secs(30);
/// Seconds whose lag could not be read, at most (else the part fails).
const MISSING_AT_MOST: f64 = 0.05;
const CONTAINER: &str = "consumer";

/// The autoscalers of the replay, in the table's order.
const KINDS: [Kind; 3] = [Kind::Tidal, Kind::Hpa, Kind::KedaLag];

/// The trace `name` from `traces/`, one load a second (linear between rows), compressed to
/// `seconds` (when longer) and scaled by [`LOAD_SCALE`]: second `i` is the original's second
/// `i × factor`, rounded to the nearest.
pub fn compressed(repo: &Path, name: &str, seconds: u64) -> R<(Trace, f64)> {
    let path = repo.join("traces").join(format!("{name}.csv"));
    let text =
        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let full = simulate::read_trace(&path, &text, Interpolation::Linear)?;
    let last = full.load.len().saturating_sub(1);
    anyhow::ensure!(last > 0, "{}: an empty trace", path.display());
    let to = usize::try_from(seconds)?.clamp(1, last);
    let load = (0..=to)
        .map(|i| full.load[(i * last + to / 2) / to] * LOAD_SCALE)
        .collect();
    Ok((Trace::from_loads(load), last as f64 / to as f64))
}

/// The policy of the replay: traces/policy.yaml's spec with the lag scaled and this run's
/// group and topic.
pub fn tidal_spec(group: &str, topic: &str) -> Value {
    json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
        "minReplicas": MIN_REPLICAS, "maxReplicas": MAX_REPLICAS,
        "metrics": [
            {"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 70}},
            {"name": "lag", "kafkaLag": {"cluster": "local", "group": group, "topics": [topic],
             "lagPerReplica": LAG_PER_REPLICA, "lagSampling": "commitInterval",
             "predictive": {"targetDrainSeconds": 30, "lookaheadSeconds": 30}}}
        ],
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15},
                {"type": "Pods", "value": 12, "periodSeconds": 15}]},
            "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [
                {"type": "Percent", "value": 20, "periodSeconds": 30}]}
        }
    })
}

fn peer_spec(kind: Kind, group: &str, topic: &str, host_bootstrap: &str) -> Value {
    match kind {
        Kind::Tidal => tidal_spec(group, topic),
        Kind::Hpa => json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": APP},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                "minReplicas": MIN_REPLICAS, "maxReplicas": MAX_REPLICAS,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70}}}]
            }
        }),
        _ => json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": APP},
            "spec": {
                "scaleTargetRef": {"name": APP},
                "minReplicaCount": MIN_REPLICAS, "maxReplicaCount": MAX_REPLICAS,
                "triggers": [{"type": "kafka", "metadata": {
                    "bootstrapServers": host_bootstrap, "consumerGroup": group,
                    "topic": topic, "lagThreshold": LAG_PER_REPLICA.to_string()}}]
            }
        }),
    }
}

fn consumer(
    node: &RealNode,
    pod_bootstrap: &str,
    group: &str,
    topic: &str,
    replicas: i32,
) -> Deployment {
    let q = BTreeMap::from([
        ("cpu".to_string(), Quantity(format!("{CPU_MILLI}m"))),
        ("memory".to_string(), Quantity(MEMORY.to_string())),
    ]);
    let env = |k: &str, v: &str| EnvVar {
        name: k.to_string(),
        value: Some(v.to_string()),
        ..Default::default()
    };
    let c = Container {
        name: CONTAINER.to_string(),
        image: Some(CONSUMER_IMAGE.to_string()),
        image_pull_policy: Some("Never".to_string()),
        env: Some(vec![
            env("TIDAL_CONSUMER_BOOTSTRAP", pod_bootstrap),
            env("TIDAL_CONSUMER_GROUP", group),
            env("TIDAL_CONSUMER_TOPIC", topic),
            env("TIDAL_CONSUMER_CPU_MS", &CPU_MS.to_string()),
            env("TIDAL_CONSUMER_POSITION_GROUP", &position_group(group)),
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(q.clone()),
            limits: Some(q),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut d = node.deployment(APP, replicas, c);
    // Time to leave the group under a 20m quota (killed first, its partitions would wait for
    // the session timeout).
    if let Some(spec) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.termination_grace_period_seconds = Some(10);
    }
    d
}

fn position_group(group: &str) -> String {
    format!("{group}-position")
}

/// When second 0 of the trace is (unset during the warm-up), and whether to stop.
#[derive(Default)]
struct Clock {
    start: OnceLock<Instant>,
    stop: AtomicBool,
}

/// Stops the producer when the replay ends, also on an error or a panic.
struct Producing {
    clock: Arc<Clock>,
    task: tokio::task::JoinHandle<R<u64>>,
}

impl Drop for Producing {
    fn drop(&mut self) {
        self.clock.stop.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

/// Produces to `topic`, round-robin over its partitions in 100 ms ticks: the trace's first
/// load until the clock starts, then the trace, until its end or `stop`; returns the messages
/// queued, after a flush.
async fn produce(bootstrap: String, topic: String, load: Vec<f64>, clock: Arc<Clock>) -> R<u64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()
        .map_err(|e| anyhow::anyhow!("the producer to {topic}: {e}"))?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let (mut sent, mut due, mut partition) = (0u64, 0.0f64, 0i32);
    while !clock.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let rate = match clock.start.get() {
            None => load[0],
            Some(s) => match load.get(s.elapsed().as_secs() as usize) {
                Some(r) => *r,
                None => break,
            },
        };
        due += rate * 0.1;
        while (sent as f64) < due.floor() {
            let payload = format!("{sent}");
            producer
                .send_result(
                    FutureRecord::<(), _>::to(&topic)
                        .payload(&payload)
                        .partition(partition),
                )
                .map_err(|(e, _)| anyhow::anyhow!("queue a message for {topic}: {e}"))?;
            partition = (partition + 1) % PARTITIONS;
            sent += 1;
        }
    }
    tokio::task::spawn_blocking(move || {
        use rdkafka::producer::Producer;
        producer.flush(Duration::from_secs(10))
    })
    .await??;
    Ok(sent)
}

/// Per group, the sum over the partitions of `ends` − committed (a partition with no committed
/// offset counts from 0), and the sum of the committed offsets.
fn lags(client: &BaseConsumer, groups: &[BaseConsumer], topic: &str) -> R<Vec<(f64, f64)>> {
    let t = Duration::from_secs(2);
    let mut ends = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        ends.push(client.fetch_watermarks(topic, p, t)?.1);
        tpl.add_partition(topic, p);
    }
    groups
        .iter()
        .map(|c| {
            let got = c.committed_offsets(tpl.clone(), t)?;
            let (mut lag, mut at_sum) = (0.0, 0.0);
            for (p, end) in ends.iter().enumerate() {
                let at = match got.find_partition(topic, p as i32).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                lag += (end - at).max(0) as f64;
                at_sum += at as f64;
            }
            Ok((lag, at_sum))
        })
        .collect()
}

/// The CPU of one workload's pods since the last reading.
#[derive(Default)]
struct CpuReading {
    /// Summed cores of the pods read twice.
    cores: f64,
    /// How many pods that was.
    pods: usize,
    /// The busiest of them, as a share of its request.
    hottest: f64,
    /// CPU seconds those pods used since their last reading (a reading may come late: this
    /// is not `cores` x 1 s).
    used: f64,
}

/// Reads the cgroups of the Ready, not deleting pods of `pods` (`last`: pod → (cpuacct ns,
/// when), replaced by this reading's).
async fn cpu_reading(
    pods: &Api<Pod>,
    node: &RealNode,
    last: &mut BTreeMap<String, (u64, Instant)>,
) -> CpuReading {
    let mut out = CpuReading::default();
    let Ok(live) = app_pods(pods, APP).await else {
        return out;
    };
    let mut next = BTreeMap::new();
    for p in &live {
        if !pod_ready(p) {
            continue;
        }
        let (Some(uid), Some(dir)) = (p.metadata.uid.clone(), node.pod_cgroup("cpuacct", p)) else {
            continue;
        };
        let Ok(ns) = read_u64(&dir.join("cpuacct.usage")) else {
            continue;
        };
        let now = Instant::now();
        if let Some((before, at)) = last.get(&uid) {
            let dt = now.duration_since(*at).as_secs_f64();
            if dt > 0.0 {
                let used = ns.saturating_sub(*before) as f64 / 1e9;
                let c = used / dt;
                out.used += used;
                out.cores += c;
                out.pods += 1;
                out.hottest = out.hottest.max(c * 1000.0 / f64::from(CPU_MILLI));
            }
        }
        next.insert(uid, (ns, now));
    }
    *last = next;
    out
}

/// One trace's workloads, made; deleted by [`Workloads::delete`].
struct Workloads {
    peers: Vec<Peer>,
    groups: Vec<String>,
}

impl Workloads {
    async fn delete(&self, admin: &kube::Client) -> R<()> {
        let gone =
            futures::future::join_all(self.peers.iter().map(|p| delete_namespace(admin, &p.ns)))
                .await;
        gone.into_iter().collect()
    }
}

/// One trace replayed for every autoscaler at once; its figures. Its namespaces are deleted
/// before it returns, also when it failed.
async fn replay_one(
    stack: &Stack,
    admin: &kube::Client,
    node: &RealNode,
    created: &Created,
    name: &str,
    seconds: u64,
) -> R<Value> {
    let (trace, factor) = compressed(&stack_repo(), name, seconds)?;
    let host = stack.var("TIDAL_KAFKA_BOOTSTRAP")?.to_string();
    let topic = unique(&format!("bench-replay-{name}"));
    // Deterministic, so first: it fails before ten minutes of load rather than after.
    let (prediction, initial) = predicted(&trace, "g", &topic)?;
    let mut w = Workloads {
        peers: Vec::new(),
        groups: Vec::new(),
    };
    for kind in KINDS {
        let group = unique(&format!("bench-replay-{}", kind.name()));
        created.kafka(&host, &topic, &group);
        created.kafka(&host, &topic, &position_group(&group));
        w.groups.push(group);
    }
    let result = async {
        create_topic(&host, &topic, PARTITIONS).await?;
        let zero: Vec<(&str, i32, i64)> = (0..PARTITIONS).map(|p| (topic.as_str(), p, 0)).collect();
        for g in &w.groups {
            commit(&host, g, &zero)?;
            commit(&host, &position_group(g), &zero)?;
        }
        let pod = stack.var("TIDAL_POD_KAFKA_BOOTSTRAP")?.to_string();
        for (kind, group) in KINDS.iter().zip(&w.groups) {
            let spec = peer_spec(*kind, group, &topic, &host);
            let workload = consumer(node, &pod, group, &topic, initial);
            w.peers
                .push(Peer::create(admin, created, *kind, spec, &workload).await?);
        }
        measure(stack, admin, node, &w, &trace, &topic, initial).await
    }
    .await;
    let deleted = w.delete(admin).await;
    let mut out = result?;
    deleted?;
    out["trace"] = json!(name);
    out["factor"] = json!(factor);
    out["simulate"] = prediction;
    Ok(out)
}

/// Warms the workloads up at the trace's first load, attaches the autoscalers, then replays
/// the trace, reading every workload each second.
async fn measure(
    stack: &Stack,
    admin: &kube::Client,
    node: &RealNode,
    w: &Workloads,
    trace: &Trace,
    topic: &str,
    initial: i32,
) -> R<Value> {
    let host = stack.var("TIDAL_KAFKA_BOOTSTRAP")?.to_string();
    let pods: Vec<Api<Pod>> = w
        .peers
        .iter()
        .map(|p| Api::namespaced(admin.clone(), &p.ns))
        .collect();
    for (p, api) in w.peers.iter().zip(&pods) {
        wait_for(
            &format!("{}: {initial} Ready consumer pods", p.ns),
            Duration::from_secs(120),
            || async {
                let n = ready_pods(api, APP).await.ok()?.len();
                (n == initial as usize).then_some(())
            },
        )
        .await?;
    }
    // Idle: the client's own CPU, before any message.
    let mut last = vec![BTreeMap::new(); w.peers.len()];
    for (i, api) in pods.iter().enumerate() {
        cpu_reading(api, node, &mut last[i]).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut idle = Vec::new();
    for (i, api) in pods.iter().enumerate() {
        let r = cpu_reading(api, node, &mut last[i]).await;
        idle.push(r.cores * 1000.0 / r.pods.max(1) as f64);
    }
    let clock = Arc::new(Clock::default());
    let producing = Producing {
        clock: clock.clone(),
        task: tokio::spawn(produce(
            host.clone(),
            topic.to_string(),
            trace.load.clone(),
            clock.clone(),
        )),
    };
    for p in &w.peers {
        p.attach(admin, initial).await?;
        progress(format!("replay: {} acts on {APP}", p.kind.name()));
    }
    tokio::time::sleep(WARM_UP).await;
    let rd = |g: &str| -> R<BaseConsumer> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", &host)
            .set("group.id", g)
            .set("enable.auto.commit", "false")
            .create()?)
    };
    let client = Arc::new(rd(&unique("bench-replay-reader"))?);
    let mut readers = Vec::new();
    for g in &w.groups {
        readers.push(rd(g)?);
        readers.push(rd(&position_group(g))?);
    }
    let readers = Arc::new(readers);
    let len = trace.load.len();
    progress(format!(
        "replay: {len} s of load, {} messages/s at most; at second 0 {}",
        trace.peak(),
        w.peers
            .iter()
            .map(|p| format!("{} {:?} replicas", p.kind.name(), p.history.current()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let start = Instant::now();
    let _ = clock.start.set(start);
    let mut rows = Vec::new();
    let (mut missing, mut late_max) = (0usize, 0.0f64);
    // Messages processed and CPU spent from the first reading on (the warm-up's messages are
    // in the positions already).
    let mut cpu_seconds = vec![0.0; w.peers.len()];
    let mut first_positions: Vec<Option<f64>> = vec![None; w.peers.len()];
    let mut final_positions = vec![0.0; w.peers.len()];
    for k in 1..=len {
        let at = start + Duration::from_secs(k as u64);
        tokio::time::sleep_until(at.into()).await;
        let late = at.elapsed().as_secs_f64();
        late_max = late_max.max(late);
        let (c, r, t) = (client.clone(), readers.clone(), topic.to_string());
        let lag = match tokio::task::spawn_blocking(move || lags(&c, &r, &t)).await? {
            Ok(l) => Some(l),
            Err(e) => {
                missing += 1;
                progress(format!(
                    "replay: second {k}: the lag could not be read: {e}"
                ));
                None
            }
        };
        let mut row = json!({"t": k, "load": trace.load[k - 1], "late": late});
        for (i, p) in w.peers.iter().enumerate() {
            let cpu = cpu_reading(&pods[i], node, &mut last[i]).await;
            if first_positions[i].is_some() {
                cpu_seconds[i] += cpu.used;
            }
            let utilization = (cpu.pods > 0)
                .then(|| cpu.cores * 1000.0 / (cpu.pods as f64 * f64::from(CPU_MILLI)));
            let (committed, backlog) = match &lag {
                Some(l) => {
                    final_positions[i] = l[2 * i + 1].1;
                    first_positions[i].get_or_insert(l[2 * i + 1].1);
                    (Some(l[2 * i].0), Some(l[2 * i + 1].0))
                }
                None => (None, None),
            };
            row[p.kind.name()] = json!({
                "replicas": p.history.current(),
                "measured_pods": cpu.pods,
                "utilization": utilization,
                "hottest_pod": (cpu.pods > 0).then_some(cpu.hottest),
                "lag": committed,
                "backlog": backlog,
                "violated": utilization.is_some_and(|u| u > SLO_UTILIZATION)
                    || backlog.is_some_and(|b| b > SLO_LAG),
            });
        }
        if k % 60 == 0 {
            let mut line = format!("replay: {k:4} s, load {:.0}/s:", trace.load[k - 1]);
            for p in &w.peers {
                let v = &row[p.kind.name()];
                line.push_str(&format!(
                    " {} {} replicas, backlog {}, CPU {:.0} %;",
                    p.kind.name(),
                    v["replicas"],
                    v["backlog"],
                    100.0 * v["utilization"].as_f64().unwrap_or(0.0)
                ));
            }
            progress(line);
        }
        rows.push(row);
    }
    clock.stop.store(true, Ordering::Relaxed);
    let produced = match tokio::time::timeout(Duration::from_secs(30), async {
        (&mut { producing }.task).await
    })
    .await
    {
        Ok(joined) => joined??,
        Err(_) => anyhow::bail!("the producer did not stop within 30 s"),
    };
    anyhow::ensure!(
        (missing as f64) <= MISSING_AT_MOST * len as f64,
        "the lag could not be read in {missing} of {len} seconds"
    );
    let mut out = json!({
        "seconds": len, "peak_load": trace.peak(), "mean_load": trace.mean(),
        "produced": produced, "run_seconds": start.elapsed().as_secs_f64(),
        "initial_replicas": initial, "warm_up_seconds": WARM_UP.as_secs(),
        "missing_seconds": missing, "late_max_seconds": late_max,
    });
    for (i, p) in w.peers.iter().enumerate() {
        let k = p.kind.name();
        // The positions are what the consumers processed: a group whose positions never moved
        // would pass its whole input off as backlog.
        anyhow::ensure!(
            final_positions[i] >= 0.5 * produced as f64,
            "{}: the consumers' positions in {} add up to {} of {produced} messages produced",
            p.ns,
            position_group(&w.groups[i]),
            final_positions[i]
        );
        let col = |f: &'static str| rows.iter().map(move |r| &r[k][f]);
        let violated = col("violated")
            .filter(|v| v.as_bool() == Some(true))
            .count();
        let replica_seconds: f64 = col("replicas").filter_map(Value::as_f64).sum();
        let max = |f: &'static str| col(f).filter_map(Value::as_f64).fold(0.0, f64::max);
        let utils: Vec<f64> = col("utilization").filter_map(Value::as_f64).collect();
        anyhow::ensure!(
            utils.len() * 2 >= len,
            "{}: its pods' CPU was read in {} of {len} seconds",
            p.ns,
            utils.len()
        );
        out["peers"][k] = json!({
            "slo_violation_seconds": violated,
            "replica_seconds": replica_seconds,
            "max_replicas": max("replicas"),
            "max_backlog": max("backlog"),
            "max_lag": max("lag"),
            "mean_utilization": utils.iter().sum::<f64>() / utils.len().max(1) as f64,
            "max_hottest_pod": max("hottest_pod"),
            "idle_millicores_per_pod": idle[i],
            "messages_per_cpu_second": (final_positions[i] - first_positions[i].unwrap_or(0.0))
                / cpu_seconds[i].max(1e-9),
            "status": p.status(admin).await,
        });
    }
    let names: Vec<&str> = w.peers.iter().map(|p| p.kind.name()).collect();
    if let Some(r) = rise(&trace.load, &rows, &names) {
        out["rise"] = r;
    }
    // A compact series: every 10th second.
    out["series"] = Value::Array(rows.iter().step_by(10).cloned().collect());
    Ok(out)
}

/// Seconds after the load's rise whose violations [`rise`] counts apart from the rest.
pub const RISE_WINDOW: usize = 60;

/// Where the load rose most: the run of rising seconds around the largest one-second rise of
/// `load` (the first, if two are as large; `load[i]` is produced from `i` s to `i + 1` s after
/// the trace's start, and `rows[i]` is read at `i + 1` s), its `second` the time it began, and
/// for each of `names`, the replicas when it began, how soon after a reading first saw more,
/// and the violated seconds in the [`RISE_WINDOW`] seconds from it (fewer at the trace's end:
/// `window_seconds`) and elsewhere. `None` when the load never rises.
pub fn rise(load: &[f64], rows: &[Value], names: &[&str]) -> Option<Value> {
    let n = load.len().min(rows.len());
    let d = |k: usize| load[k] - load[k - 1];
    let top = (1..n).max_by(|&a, &b| d(a).total_cmp(&d(b)).then(b.cmp(&a)))?;
    if d(top) <= 0.0 {
        return None;
    }
    let (mut start, mut end) = (top, top);
    while start > 1 && d(start - 1) > 0.0 {
        start -= 1;
    }
    while end + 1 < n && d(end + 1) > 0.0 {
        end += 1;
    }
    let window = start..(start + RISE_WINDOW).min(n);
    let mut out = json!({"second": start, "seconds": end + 1 - start, "from": load[start - 1],
                         "to": load[end], "window_seconds": window.len(), "peers": {}});
    for &name in names {
        let replicas = |i: usize| rows[i][name]["replicas"].as_f64();
        let violated = |i: &usize| rows[*i][name]["violated"].as_bool() == Some(true);
        let before = replicas(start - 1);
        let first_more = (start..n)
            .find(|&i| matches!((replicas(i), before), (Some(r), Some(b)) if r > b))
            .map(|i| i + 1 - start);
        let inside = window.clone().filter(violated).count();
        let all = (0..n).filter(violated).count();
        out["peers"][name] = json!({
            "replicas_before": before,
            "first_more_within_seconds": first_more,
            "violation_seconds": inside,
            "violation_seconds_elsewhere": all - inside,
        });
    }
    Some(out)
}

/// What `tidal-sim simulate --compare hpa,keda` says for the same compressed trace, policy and
/// model parameters, and the replicas it starts from (its default: the fewest that serve the
/// first second at or below the SLO's utilization, within the policy's bounds).
fn predicted(trace: &Trace, group: &str, topic: &str) -> R<(Value, i32)> {
    let doc = json!({"apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy",
                     "metadata": {"name": APP}, "spec": tidal_spec(group, topic)});
    let policy = simulate::read_policy(Path::new("replay-policy"), &doc.to_string())?;
    let options = Options {
        model: simulate::ModelParams {
            capacity_per_replica: CAPACITY,
            pod_start_seconds: POD_START_SECONDS,
            slo_utilization: SLO_UTILIZATION,
            slo_lag: SLO_LAG,
            commit_lag_seconds: 2.5,
        },
        initial_replicas: None,
        lag_per_replica: None,
        partitions: PARTITIONS as u32,
        sync_offset_seconds: 0,
    };
    let report = simulate::simulate(trace, &policy, &options, &[SimPeer::Hpa, SimPeer::Keda])?;
    let initial = i32::try_from(report.setup.initial_replicas)?;
    let mut out = json!({"pod_start_seconds": POD_START_SECONDS, "initial_replicas": initial});
    for s in report.summaries() {
        let name = match s.algorithm.name() {
            "keda" => "keda-lag",
            n => n,
        };
        out[name] = json!({"slo_violation_seconds": s.slo_violation_seconds,
                           "replica_seconds": s.replica_seconds,
                           "max_replicas": s.max_replicas});
    }
    Ok((out, initial))
}

/// Deletes `ns` and waits (at most 180 s) until it is gone, so that the next trace has the
/// node's pods to itself.
async fn delete_namespace(admin: &kube::Client, ns: &str) -> R<()> {
    let api: Api<Namespace> = Api::all(admin.clone());
    let _ = api.delete(ns, &DeleteParams::default()).await;
    wait_for(
        &format!("namespace {ns} deleted"),
        Duration::from_secs(180),
        || async { matches!(api.get_opt(ns).await, Ok(None)).then_some(()) },
    )
    .await?;
    Ok(())
}

fn stack_repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every trace of [`TRACES`], one after another, each compressed to `seconds`.
pub async fn replay(
    stack: &Stack,
    admin: &kube::Client,
    node: &RealNode,
    created: &Created,
    seconds: u64,
) -> R<Value> {
    anyhow::ensure!(
        stack.var("TIDAL_KEDA_VERSION").is_ok(),
        "the stack runs without KEDA: nothing to compare Tidal's lag scaling with"
    );
    let mut traces = Vec::new();
    for name in TRACES {
        progress(format!("replay: traces/{name}.csv"));
        traces.push(replay_one(stack, admin, node, created, name, seconds).await?);
    }
    Ok(json!({
        "kind": "replay", "traces": traces, "load_scale": LOAD_SCALE,
        "capacity_per_replica": CAPACITY, "cpu_request": format!("{CPU_MILLI}m"),
        "cpu_ms_per_message": CPU_MS, "partitions": PARTITIONS, "min_replicas": MIN_REPLICAS,
        "max_replicas": MAX_REPLICAS, "lag_per_replica": LAG_PER_REPLICA, "slo_lag": SLO_LAG,
        "slo_utilization": SLO_UTILIZATION, "replay_seconds": seconds,
        "specs": KINDS.iter().map(|k| (k.name().to_string(), peer_spec(*k, "<group>", "<topic>", "<bootstrap>")))
            .collect::<serde_json::Map<String, Value>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> std::path::PathBuf {
        stack_repo()
    }

    #[test]
    fn the_step_trace_compressed_keeps_its_corners_at_a_third_of_the_time() {
        // traces/step.csv: 300/s, 800/s from 300 s to 1200 s, 300/s until 1800 s.
        let (t, factor) = compressed(&repo(), "step", 600).expect("trace");
        assert_eq!(factor, 3.0);
        assert_eq!(t.load.len(), 601);
        assert_eq!(t.load[0], 30.0);
        assert_eq!(t.load[99], 30.0);
        assert_eq!(t.load[100], 80.0);
        assert_eq!(t.load[399], 80.0);
        assert_eq!(t.load[400], 30.0);
        assert_eq!(t.load[600], 30.0);
    }

    #[test]
    fn the_flash_sale_compressed_reaches_its_peak_at_a_quarter_of_the_time() {
        // traces/flash-sale.csv: 100/s, 1000/s from 610 s to 900 s, 100/s again from 1020 s
        // until 2400 s.
        let (t, factor) = compressed(&repo(), "flash-sale", 600).expect("trace");
        assert_eq!(factor, 4.0);
        assert_eq!(t.load.len(), 601);
        assert_eq!(t.load[150], 10.0);
        assert_eq!(t.load[153], 100.0);
        assert_eq!(t.load[225], 100.0);
        assert_eq!(t.load[255], 10.0);
        assert_eq!(t.peak(), 100.0);
    }

    fn row(replicas: u64, violated: bool) -> Value {
        json!({"a": {"replicas": replicas, "violated": violated}})
    }

    #[test]
    fn the_rise_is_the_run_of_rising_seconds_around_the_largest_one() {
        // 10/s, a small bump at second 2, then 12 → 40 over seconds 5..=7; rows[i] is the
        // reading after second i + 1.
        let load = [10.0, 10.0, 12.0, 12.0, 12.0, 20.0, 35.0, 40.0, 40.0, 40.0];
        let rows: Vec<Value> = [
            (3, false),
            (3, false),
            (3, true),
            (3, false),
            (3, false),
            (3, true),
            (3, true),
            (5, true),
            (6, true),
            (6, false),
        ]
        .into_iter()
        .map(|(r, v)| row(r, v))
        .collect();
        let r = rise(&load, &rows, &["a"]).expect("a rise");
        assert_eq!(r["second"], 5);
        assert_eq!(r["seconds"], 3);
        assert_eq!(r["from"], 12.0);
        assert_eq!(r["to"], 40.0);
        assert_eq!(r["window_seconds"], 5);
        let a = &r["peers"]["a"];
        assert_eq!(a["replicas_before"], 3.0);
        // rows[7], read 3 s after the rise began at second 5, saw 5 replicas.
        assert_eq!(a["first_more_within_seconds"], 3);
        assert_eq!(a["violation_seconds"], 4);
        assert_eq!(a["violation_seconds_elsewhere"], 1);
    }

    #[test]
    fn a_load_that_never_rises_has_no_rise_and_a_copy_that_never_grew_has_no_first_change() {
        let rows: Vec<Value> = (0..4).map(|_| row(2, false)).collect();
        assert_eq!(rise(&[5.0, 5.0, 4.0, 4.0], &rows, &["a"]), None);
        let r = rise(&[5.0, 9.0, 9.0, 9.0], &rows, &["a"]).expect("a rise");
        assert_eq!(r["second"], 1);
        assert_eq!(r["peers"]["a"]["first_more_within_seconds"], Value::Null);
        assert_eq!(r["peers"]["a"]["violation_seconds"], 0);
    }

    #[test]
    fn of_two_rises_as_large_the_first_counts_and_short_rows_cut_the_window() {
        let load = [1.0, 5.0, 5.0, 1.0, 5.0, 5.0];
        let mut rows: Vec<Value> = (0..5).map(|_| row(2, true)).collect();
        rows[2] = json!({"a": {"violated": true}});
        let r = rise(&load, &rows, &["a"]).expect("a rise");
        assert_eq!(
            (r["second"].as_u64(), r["window_seconds"].as_u64()),
            (Some(1), Some(4))
        );
        // No replicas read at second 2: the first reading that saw more never came.
        assert_eq!(r["peers"]["a"]["first_more_within_seconds"], Value::Null);
        assert_eq!(r["peers"]["a"]["violation_seconds"], 4);
        assert_eq!(r["peers"]["a"]["violation_seconds_elsewhere"], 1);
    }

    #[test]
    fn the_step_trace_rises_once_at_second_100() {
        let (t, _) = compressed(&repo(), "step", 600).expect("trace");
        let rows: Vec<Value> = (0..t.load.len()).map(|_| row(6, false)).collect();
        let r = rise(&t.load, &rows, &["a"]).expect("a rise");
        assert_eq!(
            (r["second"].as_u64(), r["seconds"].as_u64()),
            (Some(100), Some(1))
        );
        assert_eq!(
            (r["from"].as_f64(), r["to"].as_f64()),
            (Some(30.0), Some(80.0))
        );
        assert_eq!(r["window_seconds"], RISE_WINDOW);
    }

    #[test]
    fn a_trace_shorter_than_asked_is_not_stretched() {
        let (t, factor) = compressed(&repo(), "step", 5000).expect("trace");
        assert_eq!(factor, 1.0);
        assert_eq!(t.load.len(), 1801);
    }

    #[test]
    fn the_prediction_names_every_autoscaler_as_the_figures_do() {
        let (t, _) = compressed(&repo(), "flash-sale", 600).expect("trace");
        let (p, initial) = predicted(&t, "g", "t").expect("simulate");
        // 10/s at the start, 9/s per replica at 90 %: 2, the policy's minimum.
        assert_eq!(initial, 2);
        for k in ["tidal", "hpa", "keda-lag"] {
            assert!(p[k]["slo_violation_seconds"].is_u64(), "{k}: {p}");
            assert!(
                p[k]["replica_seconds"].as_u64() >= Some(2 * 601),
                "{k}: {p}"
            );
        }
    }

    #[test]
    fn the_policy_is_the_shipped_one_with_the_lag_scaled() {
        let shipped: serde_json::Value = serde_norway::from_str(
            &std::fs::read_to_string(repo().join("traces/policy.yaml")).expect("policy"),
        )
        .expect("yaml");
        let mine = tidal_spec("g", "t");
        let s = &shipped["spec"];
        for k in ["minReplicas", "maxReplicas", "behavior"] {
            assert_eq!(mine[k], s[k], "{k}");
        }
        assert_eq!(mine["metrics"][0], s["metrics"][0]);
        let (a, b) = (
            &mine["metrics"][1]["kafkaLag"],
            &s["metrics"][1]["kafkaLag"],
        );
        assert_eq!(a["predictive"], b["predictive"]);
        assert_eq!(a["lagSampling"], b["lagSampling"]);
        let scaled = b["lagPerReplica"].as_f64().expect("lag") * LOAD_SCALE;
        assert_eq!(a["lagPerReplica"].as_f64(), Some(scaled.ceil()));
    }
}

//! The fault matrix on the real stack (issue #14, item 6; docs/reliability.md): faults of
//! processes the test starts itself (its own scaler replicas, its own agent), injected with
//! real signals, while the real kube-apiserver, controller-manager, KWOK nodes, Kafka broker
//! and cgroups run on. Every test records each change of the target's `spec.replicas` (a
//! watch, for the whole test) and asserts that none of them is wrong; a failure prints that
//! history and the scaler's log.
//!
//! The scalers run with exactly the manifests' RBAC (`ScalerRbac`), each test in its own
//! namespace with its own Lease (`tidal-scaler`, the only name the manifests' Role allows, in
//! that namespace). Needs root (cgroups) and the binaries (`cargo build --bins`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;
use tidal_e2e::builders::{deployment, policy};
use tidal_e2e::cgroups::{CgroupGuard, hierarchies, provision_pods, spawn_burner};
use tidal_e2e::kafka::{commit, create_topic, produce};
use tidal_e2e::manifests::{ScalerRbac, ensure_crd};
use tidal_e2e::scaler::{Change, ReplicaHistory, Scaler, signal};
use tidal_e2e::scaler::{condition, policy_status as status};
use tidal_e2e::{Stack, free_port, in_namespace, spawn_node_agent, unique, wait_for};
use tidal_scaler::api::ScalingPolicy;

type R = anyhow::Result<()>;

const API_REQUESTS: &str = "tidal_scaler_api_requests_total";
const SCALE_EVENTS: &str = "tidal_scaler_scale_events_total";
const ERRORS: &str = "tidal_scaler_errors_total";

fn node(stack: &Stack, index: usize) -> anyhow::Result<String> {
    let nodes = stack.kwok_nodes()?;
    nodes
        .get(index % nodes.len().max(1))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no KWOK node"))
}

/// The requests that change something (everything but reads), by verb.
fn writes(verbs: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    verbs
        .iter()
        .filter(|(labels, _)| !labels.contains("\"get") && !labels.contains("\"list"))
        .map(|(l, v)| (l.clone(), *v))
        .collect()
}

/// The values only, for comparing with an expected sequence.
fn values(changes: &[Change]) -> Vec<i32> {
    changes.iter().map(|c| c.replicas).collect()
}

/// Runs `body` in a fresh namespace with the manifests' scaler RBAC installed there.
macro_rules! with_rbac {
    ($prefix:expr, $body:ident, $node:expr) => {{
        let stack = Stack::load()?;
        let admin = stack.admin_client().await?;
        ensure_crd(&stack)?;
        let node = node(&stack, $node)?;
        let client = admin.clone();
        in_namespace(&admin, $prefix, |ns| async move {
            let rbac = ScalerRbac::install(&stack, &client, &ns).await?;
            let result = $body(&stack, &client, &ns, &node, &rbac.kubeconfig).await;
            rbac.remove(&stack)?;
            result
        })
        .await
    }};
}

/// Fault: the leader is frozen (SIGSTOP) past its lease (a partition, a long GC pause, a VM
/// stall) and then resumed (SIGCONT) after the other replica took over and acted on new load.
/// The resumed process must not write at all: its lease ran out on its monotonic clock while
/// it was frozen, so its last decision (3 replicas, now wrong: the new leader scaled to 6)
/// never lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_past_its_lease_then_resumed_makes_no_write() -> R {
    with_rbac!("fault-freeze", frozen_leader, 0)
}

async fn frozen_leader(
    stack: &Stack,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
) -> R {
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let topic = unique("fz-t");
    let group = unique("fz-g");
    create_topic(&bootstrap, &topic, 6).await?;
    let zero: Vec<(&str, i32, i64)> = (0..6).map(|p| (topic.as_str(), p, 0)).collect();
    commit(&bootstrap, &group, &zero)?;
    produce(&bootstrap, &topic, &[10, 10, 10, 0, 0, 0]).await?;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    deploys
        .create(
            &PostParams::default(),
            &deployment("consumer", node, 1, "10m")?,
        )
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), "consumer").await?;
    let (a, b) = leader_and_follower(kubeconfig, ns, &bootstrap).await?;
    policies
        .create(
            &PostParams::default(),
            &policy(
                "consumer",
                json!({
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "consumer"},
                    "minReplicas": 1, "maxReplicas": 6,
                    "metrics": [{"name": "lag", "kafkaLag": {"cluster": "stack", "group": group, "topics": [topic], "lagPerReplica": 10}}]
                }),
            )?,
        )
        .await?;
    // 30 messages of lag at 10 per replica: the leader scales 1 -> 3.
    history
        .wait_for(3, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e}; scaler-a log:\n{}", a.tail()))?;
    // Let its status (checkpoint) land, then freeze it with everything it knows.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a_events = a.sum(SCALE_EVENTS).await?;
    anyhow::ensure!(a_events == 1.0, "scaler-a scaled {a_events} times");
    let a_before = a.family(API_REQUESTS).await?;
    signal(a.pid(), "STOP")?;
    let frozen = Instant::now();
    let frozen_at = history.started.elapsed();

    let result = async {
        wait_for("scaler-b takes over", Duration::from_secs(20), || async {
            (b.leader().await == Some(1.0)).then_some(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}; scaler-b log:\n{}", b.tail()))?;
        let takeover = frozen.elapsed();
        // New load: 60 messages, 6 replicas. The frozen leader's last decision (3) is wrong now.
        produce(&bootstrap, &topic, &[0, 0, 0, 10, 10, 10]).await?;
        history
            .wait_for(6, Duration::from_secs(60))
            .await
            .map_err(|e| anyhow::anyhow!("{e}; scaler-b log:\n{}", b.tail()))?;
        let b_events = b.sum(SCALE_EVENTS).await?;
        anyhow::ensure!(
            b_events == 1.0,
            "scaler-b scaled {b_events} times; {}",
            history.render()
        );
        let frozen_for = frozen.elapsed();
        Ok::<_, anyhow::Error>((takeover, frozen_for))
    }
    .await;
    // Resume it whatever happened, so the guard's SIGKILL is not left to a stopped process.
    signal(a.pid(), "CONT")?;
    let (takeover, frozen_for) = result?;
    let resumed_at = history.started.elapsed();
    eprintln!(
        "leader frozen: follower leads after {:.1}s, scaled 3 -> 6; old leader resumed after {:.1}s frozen",
        takeover.as_secs_f64(),
        frozen_for.as_secs_f64()
    );

    // The resumed process: a follower at once (its lease ran out while it was frozen), and
    // through several of its 1 s cycles and 1 s renew periods it writes nothing.
    let demoted = Instant::now();
    wait_for(
        "the resumed scaler-a reports follower",
        Duration::from_secs(10),
        || async { (a.leader().await == Some(0.0)).then_some(()) },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; scaler-a log:\n{}", a.tail()))?;
    let demoted = demoted.elapsed();
    let watch_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < watch_until {
        anyhow::ensure!(
            a.leader().await == Some(0.0),
            "the resumed scaler-a leads again; {}\nscaler-a log:\n{}",
            history.render(),
            a.tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let a_after = a.family(API_REQUESTS).await?;
    let a_errors = a.family(ERRORS).await?;
    anyhow::ensure!(
        writes(&a_after) == writes(&a_before),
        "the resumed leader wrote: requests before the freeze {a_before:?}, after {a_after:?}; {}\nscaler-a log:\n{}",
        history.render(),
        a.tail()
    );
    anyhow::ensure!(a.sum(SCALE_EVENTS).await? == 1.0, "scaler-a scaled again");
    anyhow::ensure!(b.leader().await == Some(1.0), "scaler-b lost the lease");
    // The history: 1 -> 3 (scaler-a, before the freeze), 3 -> 6 (scaler-b), nothing after.
    let changes = history.changes();
    anyhow::ensure!(
        values(&changes) == [1, 3, 6],
        "wrong actuation: {}",
        history.render()
    );
    anyhow::ensure!(
        changes[1].at < frozen_at && changes[2].at > frozen_at && changes[2].at < resumed_at,
        "frozen at {frozen_at:?}, resumed at {resumed_at:?}; {}",
        history.render()
    );
    eprintln!(
        "resumed leader: follower within {:.1}s, writes before {:?} after {:?}, errors {a_errors:?}; {}",
        demoted.as_secs_f64(),
        writes(&a_before),
        writes(&a_after),
        history.render()
    );
    Ok(())
}

/// Fault: the leader is killed (SIGKILL) right after a scale-down. With at most one pod
/// removed per 30 s, the new leader continues from the checkpoint written with the scale and
/// removes the next pod no earlier than 30 s after the first (without the checkpoint it would
/// do so as soon as it leads, a few seconds later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_right_after_a_scale_down_keeps_the_rate_policy() -> R {
    with_rbac!("fault-kill", killed_leader, 1)
}

async fn killed_leader(
    stack: &Stack,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
) -> R {
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let topic = unique("kl-t");
    let group = unique("kl-g");
    // No lag at all: the honest count is minReplicas (1); the rate policy allows 1 pod per 30 s.
    create_topic(&bootstrap, &topic, 4).await?;
    let zero: Vec<(&str, i32, i64)> = (0..4).map(|p| (topic.as_str(), p, 0)).collect();
    commit(&bootstrap, &group, &zero)?;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    deploys
        .create(
            &PostParams::default(),
            &deployment("consumer", node, 4, "10m")?,
        )
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), "consumer").await?;
    let (a, b) = leader_and_follower(kubeconfig, ns, &bootstrap).await?;
    policies
        .create(
            &PostParams::default(),
            &policy(
                "consumer",
                json!({
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "consumer"},
                    "minReplicas": 1, "maxReplicas": 4,
                    "metrics": [{"name": "lag", "kafkaLag": {"cluster": "stack", "group": group, "topics": [topic], "lagPerReplica": 10}}],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0,
                                               "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}}
                }),
            )?,
        )
        .await?;
    let first = history
        .wait_for(3, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e}; scaler-a log:\n{}", a.tail()))?;
    // Kill it as soon as the scale's checkpoint is stored (it is written at once with the
    // scale; killed between the two, a new leader cannot know the event: docs/controller.md).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(&policies, "consumer").await;
        let stored = s["checkpoint"]["scaleEvents"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["replicaChange"] == -1));
        if stored {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no checkpoint with the scale-down in 10 s: {s}; {}",
            history.render()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(a.pid(), "KILL")?;
    let killed_at = history.started.elapsed();
    let killed_after = killed_at.saturating_sub(first.at);
    wait_for("scaler-b takes over", Duration::from_secs(20), || async {
        (b.leader().await == Some(1.0)).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; scaler-b log:\n{}", b.tail()))?;
    let takeover = history.started.elapsed().saturating_sub(killed_at);

    let second = history
        .wait_for(2, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e}; scaler-b log:\n{}", b.tail()))?;
    let gap = second.at.saturating_sub(first.at);
    let changes = history.changes();
    anyhow::ensure!(
        values(&changes) == [4, 3, 2],
        "wrong actuation: {}",
        history.render()
    );
    // The watch sees each change after the scaler stamped its event at its round's start,
    // then gathered, wrote and the watch delivered: up to a round plus the write apart on a
    // loaded machine. 2 s of slack for that, against a violation that would come ~25 s early.
    anyhow::ensure!(
        gap >= Duration::from_secs(28),
        "the new leader scaled down {:.1}s after the first scale-down (rate policy: 1 pod per 30 s); {}\nscaler-b log:\n{}",
        gap.as_secs_f64(),
        history.render(),
        b.tail()
    );
    anyhow::ensure!(
        gap <= Duration::from_secs(45),
        "the second scale-down came late: {gap:?}"
    );
    let b_events = b.family(SCALE_EVENTS).await?;
    anyhow::ensure!(
        b_events.values().sum::<f64>() == 1.0,
        "scaler-b scale events {b_events:?}; {}",
        history.render()
    );
    eprintln!(
        "leader killed {:.0} ms after its scale-down 4 -> 3; follower led {:.1}s later; next scale-down 3 -> 2 {:.1}s after the first (policy: 30 s); {}",
        killed_after.as_secs_f64() * 1000.0,
        takeover.as_secs_f64(),
        gap.as_secs_f64(),
        history.render()
    );
    Ok(())
}

/// Fault: the test's own tidal-agent is frozen (SIGSTOP: scrapes hang and time out), then
/// killed (connection refused), while the CPU load is gone, so the honest decision would be a
/// scale-down. With no data the scaler holds (all pods missing); once the agent is back, it
/// scales down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_frozen_then_killed_causes_no_scale_down_until_it_is_back() -> R {
    with_rbac!("fault-agent", agent_down, 0)
}

async fn agent_down(
    stack: &Stack,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
) -> R {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    deploys
        .create(&PostParams::default(), &deployment("web", node, 3, "100m")?)
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), "web").await?;
    let bases = hierarchies(Path::new("/sys/fs/cgroup"));
    anyhow::ensure!(
        !bases.is_empty(),
        "no cgroup hierarchy under /sys/fs/cgroup"
    );
    let guard = Arc::new(Mutex::new(CgroupGuard(Vec::new())));
    let done = Arc::new(Mutex::new(BTreeMap::new()));
    let provisioner = tokio::spawn(provision_pods(
        pods.clone(),
        "app=web".into(),
        bases.clone(),
        guard.clone(),
        done.clone(),
    ));
    let result = async {
        let pods_ready = wait_for("3 pods with cgroups", Duration::from_secs(60), || async {
            let d = done.lock().ok()?;
            (d.len() >= 3).then(|| d.iter().next().map(|(u, c)| (u.clone(), c.clone())))?
        })
        .await;
        let (uid, cid) = pods_ready?;
        // A real busy loop in one pod: ≈1 core against 3 × 100m, far over the 50% target;
        // maxReplicas holds the count at 3.
        let burner = spawn_burner(
            &bases,
            Path::new(&format!("kubepods/burstable/pod{uid}/{cid}")),
        )?;
        let agent_addr = format!("127.0.0.1:{}", free_port()?);
        let agent = spawn_node_agent(stack, node, &agent_addr, "0.5")?;
        let scaler = Scaler::start(
            kubeconfig,
            ns,
            "scaler-agent",
            &[
                "--leader-elect=false",
                "--agent-url",
                &format!("http://{agent_addr}"),
            ],
        )?;
        policies
            .create(
                &PostParams::default(),
                &policy(
                    "web",
                    json!({
                        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "minReplicas": 1, "maxReplicas": 3,
                        "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 50}}],
                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}
                    }),
                )?,
            )
            .await?;
        let loaded = wait_for("the scaler sees the load", Duration::from_secs(60), || async {
            let v = scaler.family("tidal_scaler_metric_value").await.ok()?;
            v.iter()
                .find(|(l, _)| l.contains("metric=\"cpu\""))
                .map(|(_, v)| *v)
                .filter(|v| *v > 0.6)
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}; {}\nscaler log:\n{}", history.render(), scaler.tail()))?;

        // Freeze the agent, then take the load away: the truth is now "idle, scale down".
        signal(agent.0.id(), "STOP")?;
        let frozen_at = history.started.elapsed();
        drop(burner);
        let errors_before = scaler.sum(ERRORS).await?;
        tokio::time::sleep(Duration::from_secs(12)).await;
        let frozen_status = status(&policies, "web").await;
        let frozen_errors = scaler.family(ERRORS).await?;
        anyhow::ensure!(
            values(&history.changes()) == [3],
            "wrong actuation while the agent was frozen: {}\nscaler log:\n{}",
            history.render(),
            scaler.tail()
        );
        anyhow::ensure!(
            frozen_errors.values().sum::<f64>() > errors_before,
            "no scrape error counted while the agent was frozen: {frozen_errors:?}"
        );

        // Kill it (SIGKILL on the stopped process): connections are refused now.
        drop(agent);
        tokio::time::sleep(Duration::from_secs(8)).await;
        let killed_status = status(&policies, "web").await;
        anyhow::ensure!(
            values(&history.changes()) == [3],
            "wrong actuation while the agent was dead: {}\nscaler log:\n{}",
            history.render(),
            scaler.tail()
        );

        // Back on the same address: fresh data says idle, and the scaler may act again.
        let restarted = Instant::now();
        let restarted_at = history.started.elapsed();
        let _agent = spawn_node_agent(stack, node, &agent_addr, "0.5")?;
        let down = history
            .wait_for(1, Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("{e}\nscaler log:\n{}", scaler.tail()))?;
        let changes = history.changes();
        anyhow::ensure!(
            values(&changes) == [3, 1] && down.at > restarted_at,
            "{}",
            history.render()
        );
        eprintln!(
            "agent fault: load {loaded:.2} of the request seen; frozen at t={:.1}s (12 s, errors {frozen_errors:?}, ScalingActive {}), killed (8 s, ScalingActive {}): held at 3; restarted -> 3 -> 1 in {:.1}s; {}",
            frozen_at.as_secs_f64(),
            condition(&frozen_status, "ScalingActive"),
            condition(&killed_status, "ScalingActive"),
            restarted.elapsed().as_secs_f64(),
            history.render()
        );
        Ok(())
    }
    .await;
    provisioner.abort();
    result
}

/// Fault: the lag is unknown (a configured Kafka cluster whose address nothing listens on)
/// under a `minReplicas: 0` policy: the count holds, never to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_lag_on_a_dead_cluster_never_scales_to_zero() -> R {
    with_rbac!("fault-zero", dead_cluster, 1)
}

async fn dead_cluster(
    _stack: &Stack,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
) -> R {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    deploys
        .create(
            &PostParams::default(),
            &deployment("consumer", node, 2, "10m")?,
        )
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), "consumer").await?;
    let dead = format!("dead=127.0.0.1:{}", free_port()?);
    let scaler = Scaler::start(
        kubeconfig,
        ns,
        "scaler-zero",
        &[
            "--leader-elect=false",
            "--kafka-cluster",
            &dead,
            "--kafka-timeout-seconds",
            "1",
        ],
    )?;
    policies
        .create(
            &PostParams::default(),
            &policy(
                "consumer",
                json!({
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "consumer"},
                    "minReplicas": 0, "maxReplicas": 10,
                    "metrics": [{"name": "lag", "kafkaLag": {"cluster": "dead", "group": "g", "topics": ["t"], "lagPerReplica": 10}}],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}
                }),
            )?,
        )
        .await?;
    let active = wait_for(
        "ScalingActive=False naming the cluster",
        Duration::from_secs(30),
        || async {
            let c = condition(&status(&policies, "consumer").await, "ScalingActive");
            (c["status"] == "False" && c["message"].as_str()?.contains("dead")).then_some(c)
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; {}\nscaler log:\n{}", history.render(), scaler.tail()))?;
    // Several more 1 s cycles: nothing applied.
    tokio::time::sleep(Duration::from_secs(6)).await;
    anyhow::ensure!(
        values(&history.changes()) == [2],
        "wrong actuation on unknown lag: {}\nscaler log:\n{}",
        history.render(),
        scaler.tail()
    );
    let errors = scaler.family(ERRORS).await?;
    eprintln!("unknown lag: held at 2, errors {errors:?}, ScalingActive {active}");
    Ok(())
}

/// A TCP relay in front of a real server that holds every chunk the client sends for
/// `delay_ms` (read at that moment) before passing it on: a server answering slowly. The
/// server's replies pass unchanged. Runs until aborted.
async fn slow_relay(
    listener: tokio::net::TcpListener,
    upstream: String,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((client, _)) = listener.accept().await {
        let upstream = upstream.clone();
        let delay_ms = delay_ms.clone();
        tokio::spawn(async move {
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let up = async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let d = delay_ms.load(Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(d)).await;
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = sw.shutdown().await;
            };
            let down = async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
                let _ = cw.shutdown().await;
            };
            tokio::join!(up, down);
        });
    }
}

/// Fault: Prometheus answers slowly (every request held 3 s, the scaler's query timeout is
/// 1 s) while its honest answer says "scale down": the queries time out, the metric is
/// invalid, the count holds. Once it answers promptly again, the scaler scales down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_prometheus_causes_no_scale_down_until_it_answers_again() -> R {
    with_rbac!("fault-slowprom", slow_prometheus, 1)
}

async fn slow_prometheus(
    stack: &Stack,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
) -> R {
    use std::sync::atomic::{AtomicU64, Ordering};
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    deploys
        .create(&PostParams::default(), &deployment("web", node, 3, "10m")?)
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), "web").await?;
    let upstream = stack
        .prometheus_url()?
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let relay_addr = listener.local_addr()?;
    let delay_ms = Arc::new(AtomicU64::new(3000));
    let relay = tokio::spawn(slow_relay(listener, upstream, delay_ms.clone()));
    let result = async {
        let scaler = Scaler::start(
            kubeconfig,
            ns,
            "scaler-slowprom",
            &[
                "--leader-elect=false",
                "--prometheus-url",
                &format!("http://{relay_addr}"),
                "--prometheus-timeout-seconds",
                "1",
                "--prometheus-interval-seconds",
                "1",
            ],
        )?;
        // The honest answer: no load at all, so minReplicas (1).
        policies
            .create(
                &PostParams::default(),
                &policy(
                    "web",
                    json!({
                        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "minReplicas": 1, "maxReplicas": 10,
                        "metrics": [{"name": "backlog", "prometheus": {"query": "vector(0)", "targetPerReplica": "1"}}],
                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}
                    }),
                )?,
            )
            .await?;
        let held = wait_for(
            "ScalingActive=False on the slow Prometheus",
            Duration::from_secs(30),
            || async {
                let c = condition(&status(&policies, "web").await, "ScalingActive");
                (c["status"] == "False").then_some(c)
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}; {}\nscaler log:\n{}", history.render(), scaler.tail()))?;
        // Several more 1 s cycles, each query timing out.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let errors = scaler.family(ERRORS).await?;
        anyhow::ensure!(
            values(&history.changes()) == [3],
            "wrong actuation on a slow Prometheus: {}\nscaler log:\n{}",
            history.render(),
            scaler.tail()
        );
        // Prompt again: the honest answer is used.
        delay_ms.store(0, Ordering::Relaxed);
        let prompt = Instant::now();
        let prompt_at = history.started.elapsed();
        let down = history
            .wait_for(1, Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("{e}\nscaler log:\n{}", scaler.tail()))?;
        anyhow::ensure!(
            values(&history.changes()) == [3, 1] && down.at > prompt_at,
            "{}",
            history.render()
        );
        eprintln!(
            "slow Prometheus (3 s per request, 1 s timeout): held at 3, errors {errors:?}, ScalingActive {held}; prompt again -> 3 -> 1 in {:.1}s; {}",
            prompt.elapsed().as_secs_f64(),
            history.render()
        );
        Ok(())
    }
    .await;
    relay.abort();
    result
}

/// Two scaler replicas with a 3 s lease on the stack's Kafka: `scaler-a` started first and
/// leading, then `scaler-b` started and following.
async fn leader_and_follower(
    kubeconfig: &Path,
    ns: &str,
    bootstrap: &str,
) -> anyhow::Result<(Scaler, Scaler)> {
    let cluster = format!("stack={bootstrap}");
    let args = [
        "--kafka-cluster",
        &cluster,
        "--lease-name",
        "tidal-scaler",
        "--lease-duration-seconds",
        "3",
    ];
    let a = Scaler::start(kubeconfig, ns, "scaler-a", &args)?;
    wait_for("scaler-a leads", Duration::from_secs(30), || async {
        (a.leader().await == Some(1.0)).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; scaler-a log:\n{}", a.tail()))?;
    let b = Scaler::start(kubeconfig, ns, "scaler-b", &args)?;
    wait_for("scaler-b follows", Duration::from_secs(30), || async {
        (b.leader().await == Some(0.0)).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; scaler-b log:\n{}", b.tail()))?;
    Ok((a, b))
}

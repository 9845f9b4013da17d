//! Tidal's closed loop on the stack's real node (issue #17, part 4): the agent DaemonSet and
//! the scaler Deployment installed in-cluster from manifests/overlays/local, scaling a
//! Deployment of real busybox pods that a real kubelet starts with containerd and runc, whose
//! CPU is a busy loop in a real cgroup. Nothing is started by the test but the workload: the
//! in-cluster scaler (the Lease holder) decides and writes, the in-cluster agent measures.
//!
//! Each test records every change of its Deployment's `spec.replicas` (a watch for the whole
//! test) and asserts the history; a failure prints it. The tests that delete Tidal's own pods
//! (the agent, the leading scaler) hold the real node exclusively (`NodeLock`), the closed
//! loop holds it shared.
//!
//! The policies carry `tidal.dev/scaler: in-cluster`: the local overlay's scaler acts on those
//! only (`TIDAL_SCALER_POLICY_SELECTOR`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use tidal_e2e::builders::policy;
use tidal_e2e::manifests::kubectl;
use tidal_e2e::realnode::{
    BURNER_SCRIPT, NodeLock, RealNode, TIDAL_NAMESPACE, get_text, pod_ip, pod_ready,
};
use tidal_e2e::scaler::{Change, ReplicaHistory, samples};
use tidal_e2e::scaler::{condition, policy_status as status};
use tidal_e2e::{Stack, in_namespace, wait_for};
use tidal_scaler::api::ScalingPolicy;

type R = anyhow::Result<()>;

/// The container of the workload.
const BURN: &str = "burn";
/// What the in-cluster scaler is labelled to act on (manifests/overlays/local/scaler.yaml).
const SCALER_LABEL: (&str, &str) = ("tidal.dev/scaler", "in-cluster");
const AGENT_CPU: &str = "tidal_agent_container_cpu_usage_cores";
const SCALE_EVENTS: &str = "tidal_scaler_scale_events_total";
const ERRORS: &str = "tidal_scaler_errors_total";
const LEASE: &str = "tidal-scaler";

/// A Deployment of `replicas` burner pods on the real node: 100m requested, 400m at most.
fn burner(node: &RealNode, name: &str, replicas: i32) -> Deployment {
    let container = node.busybox(
        BURN,
        BURNER_SCRIPT,
        Some(("100m", "16Mi")),
        Some(("400m", "64Mi")),
    );
    node.deployment(name, replicas, container)
}

/// A CPU policy (50% of the request) on Deployment `name`, labelled for the in-cluster scaler.
fn cpu_policy(
    name: &str,
    max: i32,
    scale_down: serde_json::Value,
) -> anyhow::Result<ScalingPolicy> {
    let mut p = policy(
        name,
        json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1, "maxReplicas": max,
            "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 50}}],
            "behavior": {"scaleDown": scale_down}
        }),
    )?;
    p.metadata.labels = Some(BTreeMap::from([(
        SCALER_LABEL.0.to_string(),
        SCALER_LABEL.1.to_string(),
    )]));
    Ok(p)
}

/// `kubectl exec` (API server → kubelet → containerd) creating or removing /tmp/load.
async fn set_load(stack: &Stack, ns: &str, pod: &str, on: bool) -> R {
    let script = if on {
        "touch /tmp/load"
    } else {
        "rm -f /tmp/load"
    };
    let args: Vec<String> = [
        "-n", ns, "exec", pod, "-c", BURN, "--", "/bin/sh", "-c", script,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let stack = stack.clone();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl(&stack, &args, None).map(drop)
    })
    .await?
}

/// The names of the Ready, not deleting, pods labelled `app=<app>`.
async fn ready_pods(pods: &Api<Pod>, app: &str) -> anyhow::Result<Vec<String>> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?;
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    Ok(names)
}

/// Waits until exactly `n` pods of `app` are Ready (the kubelet started them, probes passed).
async fn wait_ready_pods(
    pods: &Api<Pod>,
    app: &str,
    n: usize,
    timeout: Duration,
    history: &ReplicaHistory,
) -> anyhow::Result<Vec<String>> {
    wait_for(&format!("{n} Ready pods of {app}"), timeout, || async {
        ready_pods(pods, app).await.ok().filter(|p| p.len() == n)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; {}", history.render()))
}

/// The Ready agent pods on the real node, not being deleted: (name, IP).
async fn agents(client: &kube::Client, node: &RealNode) -> anyhow::Result<Vec<(String, String)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), TIDAL_NAMESPACE);
    let lp = ListParams::default()
        .labels("app.kubernetes.io/name=tidal-agent")
        .fields(&format!("spec.nodeName={}", node.name));
    Ok(pods
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
        .filter_map(|p| Some((p.metadata.name.clone()?, pod_ip(p)?.to_string())))
        .collect())
}

/// True when the agent at `ip` exports a CPU series for the container of every pod in `names`.
async fn agent_exports(ip: &str, ns: &str, names: &[String]) -> bool {
    let Ok(body) = get_text(&format!("http://{ip}:9464/metrics")).await else {
        return false;
    };
    let series = samples(&body, AGENT_CPU);
    names.iter().all(|pod| {
        let want = [
            format!("namespace=\"{ns}\""),
            format!("pod=\"{pod}\""),
            format!("container=\"{BURN}\""),
        ];
        series
            .keys()
            .any(|labels| want.iter().all(|w| labels.contains(w.as_str())))
    })
}

/// Waits until the node's (Ready) agent exports series for every pod in `names`; its name.
async fn wait_exported(
    client: &kube::Client,
    node: &RealNode,
    ns: &str,
    names: &[String],
    timeout: Duration,
) -> anyhow::Result<String> {
    wait_for(
        &format!("the node's tidal-agent exports {AGENT_CPU} for {names:?}"),
        timeout,
        || async {
            for (name, ip) in agents(client, node).await.ok()? {
                if agent_exports(&ip, ns, names).await {
                    return Some(name);
                }
            }
            None
        },
    )
    .await
    .map_err(Into::into)
}

/// The Lease's holderIdentity (a scaler pod's name).
async fn holder(client: &kube::Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), TIDAL_NAMESPACE);
    leases.get(LEASE).await.ok()?.spec?.holder_identity
}

/// The Ready, not deleting, scaler pods: name → IP.
async fn scaler_pods(client: &kube::Client) -> anyhow::Result<BTreeMap<String, String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), TIDAL_NAMESPACE);
    let lp = ListParams::default().labels("app.kubernetes.io/name=tidal-scaler");
    Ok(pods
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
        .filter_map(|p| Some((p.metadata.name.clone()?, pod_ip(p)?.to_string())))
        .collect())
}

/// The metrics of the scaler pod at `ip`.
async fn scaler_metrics(ip: &str) -> anyhow::Result<String> {
    get_text(&format!("http://{ip}:9465/metrics")).await
}

/// The leader: two Ready scaler replicas, one of which holds the Lease (name, IP).
async fn leader(client: &kube::Client) -> anyhow::Result<(String, String)> {
    wait_for(
        "two Ready tidal-scaler replicas, one of them holding the Lease",
        Duration::from_secs(90),
        || async {
            let pods = scaler_pods(client).await.ok()?;
            let h = holder(client).await?;
            let ip = pods.get(&h)?.clone();
            (pods.len() == 2).then_some((h, ip))
        },
    )
    .await
    .map_err(Into::into)
}

/// Waits until the policy's status says the scaler has data and acts: ScalingActive=True and
/// `currentReplicas` = `replicas`.
async fn wait_active(
    policies: &Api<ScalingPolicy>,
    name: &str,
    replicas: i32,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = status(policies, name).await;
        if condition(&s, "ScalingActive")["status"] == "True" && s["currentReplicas"] == replicas {
            return Ok(s);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "policy {name}: no ScalingActive=True with currentReplicas {replicas} in {timeout:?} \
             (is the in-cluster scaler acting on policies labelled {}={}?); last status: {s}",
            SCALER_LABEL.0,
            SCALER_LABEL.1
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn values(changes: &[Change]) -> Vec<i32> {
    changes.iter().map(|c| c.replicas).collect()
}

/// Under load the count climbs to `top` in one or more steps, all after the load began: the
/// CPU rate ramps up over the agent's window, so a first step can stop short of `top`
/// (seen: 1 → 2 → 3 one second apart). Never down, never past `top`.
fn rises_to(changes: &[Change], load_on: Duration, top: i32) -> bool {
    changes.iter().all(|c| c.at > load_on && c.replicas <= top)
        && changes.windows(2).all(|w| w[1].replicas > w[0].replicas)
        && changes.last().map(|c| c.replicas) == Some(top)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Runs `body` in a fresh namespace (deleted afterwards) with the real node held.
macro_rules! on_the_node {
    ($prefix:expr, $lock:ident, $body:ident) => {{
        let stack = Stack::load()?;
        let node = RealNode::installed(&stack).await?;
        let _lock = NodeLock::$lock(&stack).await?;
        let client = stack.admin_client().await?;
        node.agent_pod(&client, Duration::from_secs(60)).await?;
        let c = client.clone();
        in_namespace(&client, $prefix, |ns| async move {
            $body(&stack, &node, &c, &ns).await
        })
        .await
    }};
}

/// The closed loop: a busy loop turned on in the only pod makes the in-cluster scaler scale
/// the Deployment up (to its max, 3); the kubelet starts the new pods, they turn Ready and the
/// in-cluster agent exports their series. Turned off, the count comes back to 1 after the
/// 10 s scale-down stabilization window. The count only rises while loaded, and only falls
/// after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_load_scales_a_real_deployment_up_then_back_to_min() -> R {
    on_the_node!("rn-loop", shared, closed_loop)
}

async fn closed_loop(stack: &Stack, node: &RealNode, client: &kube::Client, ns: &str) -> R {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    deploys
        .create(&PostParams::default(), &burner(node, "web", 1))
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), "web").await?;
    let first = wait_ready_pods(&pods, "web", 1, Duration::from_secs(90), &history).await?;
    wait_exported(client, node, ns, &first, Duration::from_secs(30)).await?;
    policies
        .create(
            &PostParams::default(),
            &cpu_policy(
                "web",
                3,
                json!({"stabilizationWindowSeconds": 10,
                       "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}]}),
            )?,
        )
        .await?;
    // Idle: the scaler has the pod's data and keeps the minimum.
    wait_active(&policies, "web", 1, Duration::from_secs(60)).await?;
    anyhow::ensure!(
        values(&history.changes()) == [1],
        "scaled while idle: {}",
        history.render()
    );

    let load_on = history.started.elapsed();
    set_load(stack, ns, &first[0], true).await?;
    let top = history.wait_for(3, Duration::from_secs(60)).await?;
    let up = history
        .changes()
        .into_iter()
        .find(|c| c.replicas > 1)
        .ok_or_else(|| anyhow::anyhow!("no scale-up: {}", history.render()))?;
    let all = wait_ready_pods(&pods, "web", 3, Duration::from_secs(90), &history).await?;
    let ready_at = history.started.elapsed();
    let agent = wait_exported(client, node, ns, &all, Duration::from_secs(30)).await?;
    let exported_at = history.started.elapsed();
    // Still loaded (≈400m on 3 × 100m requested): the count stays at the max.
    tokio::time::sleep(Duration::from_secs(3)).await;
    anyhow::ensure!(
        history.current() == Some(3),
        "left the max while loaded: {}",
        history.render()
    );

    let load_off = history.started.elapsed();
    set_load(stack, ns, &first[0], false).await?;
    let down = match history.wait_for(1, Duration::from_secs(75)).await {
        Ok(c) => c,
        Err(e) => anyhow::bail!("{e}; status: {}", status(&policies, "web").await),
    };
    // Settled: no further change for a few cycles.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let changes = history.changes();
    let (during, after): (Vec<Change>, Vec<Change>) =
        changes.iter().skip(1).partition(|c| c.at < load_off);
    let falling = after.windows(2).all(|w| w[1].replicas < w[0].replicas);
    anyhow::ensure!(
        changes[0].replicas == 1
            && rises_to(&during, load_on, 3)
            && after.iter().all(|c| c.replicas < 3)
            && falling
            && after.last().map(|c| c.replicas) == Some(1),
        "wrong actuation (load on at t={:.1}s, off at t={:.1}s): {}",
        secs(load_on),
        secs(load_off),
        history.render()
    );
    let react = up.at.saturating_sub(load_on);
    anyhow::ensure!(
        react <= Duration::from_secs(20),
        "first scale-up {:.1}s after the load started; {}",
        secs(react),
        history.render()
    );
    // The scale-down waits for the window (10 s of low recommendations), and no longer than
    // the window plus the load's and the samples' latency.
    let fall = down.at.saturating_sub(load_off);
    anyhow::ensure!(
        fall >= Duration::from_secs(9) && fall <= Duration::from_secs(45),
        "back to 1 {:.1}s after the load stopped (window 10 s); {}",
        secs(fall),
        history.render()
    );
    eprintln!(
        "closed loop on {}: load on at t={:.1}s → first scale write {:.1}s later (to {}), 3 at t={:.1}s; \
         3 pods Ready at t={:.1}s, exported by {agent} at t={:.1}s; load off at t={:.1}s → 1 after {:.1}s; {}",
        node.name,
        secs(load_on),
        secs(react),
        up.replicas,
        secs(top.at),
        secs(ready_at),
        secs(exported_at),
        secs(load_off),
        secs(fall),
        history.render()
    );
    Ok(())
}

/// The agent pod deleted under steady load (3 replicas, the max): the DaemonSet makes a new
/// one, and while the scaler has no data for the pods it holds (no change at all), saying so
/// in the policy's status (ScalingActive=False, FailedGetResourceMetric) and in the leader's
/// `tidal_scaler_condition` gauge; with the new agent's data it is active again, and acts on
/// it (load off → back to 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_agent_pod_causes_no_scale_down() -> R {
    on_the_node!("rn-agent", exclusive, agent_deleted)
}

async fn agent_deleted(stack: &Stack, node: &RealNode, client: &kube::Client, ns: &str) -> R {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    let system: Api<Pod> = Api::namespaced(client.clone(), TIDAL_NAMESPACE);
    deploys
        .create(&PostParams::default(), &burner(node, "web", 1))
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), "web").await?;
    let first = wait_ready_pods(&pods, "web", 1, Duration::from_secs(90), &history).await?;
    set_load(stack, ns, &first[0], true).await?;
    policies
        .create(
            &PostParams::default(),
            &cpu_policy(
                "web",
                3,
                json!({"stabilizationWindowSeconds": 5,
                       "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}]}),
            )?,
        )
        .await?;
    history.wait_for(3, Duration::from_secs(60)).await?;
    let all = wait_ready_pods(&pods, "web", 3, Duration::from_secs(90), &history).await?;
    wait_exported(client, node, ns, &all, Duration::from_secs(30)).await?;
    wait_active(&policies, "web", 3, Duration::from_secs(30)).await?;
    let level = 3;
    let (leader, leader_ip) = leader(client).await?;
    let errors_before = samples(&scaler_metrics(&leader_ip).await?, ERRORS);

    // Watch the policy's ScalingActive condition through the gap (every transition).
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(f64, String)>::new()));
    // And the leader's own gauge of it, tidal_scaler_condition{condition="ScalingActive"}.
    let gauge = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(f64, f64)>::new()));
    let recorder = {
        let (policies, seen, started) = (policies.clone(), seen.clone(), history.started);
        tokio::spawn(async move {
            loop {
                let c = condition(&status(&policies, "web").await, "ScalingActive");
                let text = format!("{}/{}: {}", c["status"], c["reason"], c["message"]);
                if let Ok(mut s) = seen.lock()
                    && s.last().map(|(_, t)| t) != Some(&text)
                {
                    s.push((started.elapsed().as_secs_f64(), text));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let gauge_recorder = {
        let (gauge, started, ip) = (gauge.clone(), history.started, leader_ip.clone());
        let want = [
            format!("namespace=\"{ns}\""),
            "policy=\"web\"".to_string(),
            "condition=\"ScalingActive\"".to_string(),
        ];
        tokio::spawn(async move {
            loop {
                if let Ok(body) = scaler_metrics(&ip).await
                    && let Some(v) = samples(&body, "tidal_scaler_condition")
                        .iter()
                        .find(|(l, _)| want.iter().all(|w| l.contains(w.as_str())))
                        .map(|(_, v)| *v)
                    && let Ok(mut g) = gauge.lock()
                    && g.last().map(|(_, last)| *last) != Some(v)
                {
                    g.push((started.elapsed().as_secs_f64(), v));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let result = async {
        let (old, _) = agents(client, node)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no Ready agent"))?;
        let deleted_at = history.started.elapsed();
        let deleted = Instant::now();
        system.delete(&old, &DeleteParams::default()).await?;
        let gone = wait_for(
            "the old agent pod is gone",
            Duration::from_secs(60),
            || async { system.get_opt(&old).await.ok()?.is_none().then_some(()) },
        )
        .await
        .map(|()| deleted.elapsed());
        let (new, _) = wait_for(
            "a new Ready tidal-agent pod on the node",
            Duration::from_secs(90),
            || async {
                agents(client, node)
                    .await
                    .ok()?
                    .into_iter()
                    .find(|(n, _)| *n != old)
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}; {}", history.render()))?;
        let new_ready = deleted.elapsed();
        wait_exported(client, node, ns, &all, Duration::from_secs(30)).await?;
        let exported = deleted.elapsed();
        wait_active(&policies, "web", 3, Duration::from_secs(30)).await?;
        let active = deleted.elapsed();
        // A few more cycles on the new agent's data, still loaded.
        tokio::time::sleep(Duration::from_secs(3)).await;
        anyhow::ensure!(
            history
                .changes()
                .iter()
                .all(|c| c.at < deleted_at || c.replicas >= level),
            "scaled below {level} after the agent pod was deleted (t={:.1}s): {}",
            secs(deleted_at),
            history.render()
        );
        // Up to 3 before the deletion (in one or more steps), then nothing.
        let changes = history.changes();
        anyhow::ensure!(
            changes[0].replicas == 1
                && rises_to(&changes[1..], Duration::ZERO, level)
                && changes.iter().all(|c| c.at < deleted_at),
            "wrong actuation: {}",
            history.render()
        );
        Ok::<_, anyhow::Error>((old, new, gone, new_ready, exported, active, deleted_at))
    }
    .await;
    recorder.abort();
    gauge_recorder.abort();
    let (old, new, gone, new_ready, exported, active, deleted_at) = result?;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let gauge = gauge.lock().map(|g| g.clone()).unwrap_or_default();
    let errors_after = samples(&scaler_metrics(&leader_ip).await?, ERRORS);
    let grew: BTreeMap<&String, f64> = errors_after
        .iter()
        .map(|(l, v)| (l, v - errors_before.get(l).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect();
    // What the scaler said while it had no data: the policy's condition and the leader's gauge
    // of it. (Its error counter is shown, not asserted: when the old agent's pod is gone before
    // a scrape fails, "no tidal-agent was found to scrape" is not counted.)
    let held = seen.iter().any(|(at, text)| {
        *at > secs(deleted_at) && text.starts_with("\"False\"/\"FailedGetResourceMetric\"")
    });
    anyhow::ensure!(
        held,
        "the policy's ScalingActive never turned False (FailedGetResourceMetric) while the agent was gone; seen: {seen:?}"
    );
    let gauge_says = gauge
        .iter()
        .any(|(at, v)| *at > secs(deleted_at) && *v == 0.0)
        && gauge.last().map(|(_, v)| *v) == Some(1.0);
    anyhow::ensure!(
        gauge_says,
        "the leader {leader}'s tidal_scaler_condition{{condition=\"ScalingActive\"}} did not go 0 then back to 1: {gauge:?}"
    );

    // The new agent's data drives the loop: load off → back to 1.
    let load_off = history.started.elapsed();
    set_load(stack, ns, &first[0], false).await?;
    let down = history.wait_for(1, Duration::from_secs(60)).await?;
    // Down in one step or several (the recommendations fall as the busy loop winds down).
    let changes = history.changes();
    let after: Vec<i32> = changes
        .iter()
        .filter(|c| c.at > load_off)
        .map(|c| c.replicas)
        .collect();
    anyhow::ensure!(
        changes[0].replicas == 1
            && rises_to(&changes[1..changes.len() - after.len()], Duration::ZERO, 3)
            && after.windows(2).all(|w| w[1] < w[0])
            && down.at > load_off,
        "wrong actuation after the new agent: {}",
        history.render()
    );
    eprintln!(
        "agent {old} deleted at t={:.1}s: gone after {:.1}s, {new} Ready after {:.1}s, exports the 3 pods after {:.1}s, \
         ScalingActive=True again after {:.1}s; held at {level}; conditions seen {seen:?}; leader {leader}'s ScalingActive gauge {gauge:?}, errors +{grew:?}; \
         load off at t={:.1}s → 1 at t={:.1}s; {}",
        secs(deleted_at),
        gone.map(secs).unwrap_or(f64::NAN),
        secs(new_ready),
        secs(exported),
        secs(active),
        secs(load_off),
        secs(down.at),
        history.render()
    );
    Ok(())
}

/// The leading scaler pod deleted right after a scale-down: another replica takes the Lease
/// (the other running one, or the Deployment's replacement if it wins the race) and continues
/// from the checkpoint in the policy's status. With at most one pod removed per
/// 30 s, its next scale-down comes no earlier than 30 s after the first (without the checkpoint
/// it would come as soon as it leads). The Deployment recreates the deleted replica, and the
/// new leader acts on new load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_leader_scaler_pod_hands_over_with_the_checkpoint() -> R {
    on_the_node!("rn-leader", exclusive, leader_deleted)
}

async fn leader_deleted(stack: &Stack, node: &RealNode, client: &kube::Client, ns: &str) -> R {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    let system: Api<Pod> = Api::namespaced(client.clone(), TIDAL_NAMESPACE);
    deploys
        .create(&PostParams::default(), &burner(node, "web", 3))
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), "web").await?;
    let all = wait_ready_pods(&pods, "web", 3, Duration::from_secs(90), &history).await?;
    // Every pod measured first: a pod without data would hold the scale-down.
    wait_exported(client, node, ns, &all, Duration::from_secs(30)).await?;
    let (old_leader, _) = leader(client).await?;
    policies
        .create(
            &PostParams::default(),
            &cpu_policy(
                "web",
                3,
                json!({"stabilizationWindowSeconds": 0,
                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}),
            )?,
        )
        .await?;
    // Idle: the honest count is 1; the rate policy allows one pod per 30 s.
    let first = history.wait_for(2, Duration::from_secs(60)).await?;
    // Delete the leader once the scale's checkpoint is stored (it is written at once with the
    // scale, docs/controller.md).
    wait_for(
        "the checkpoint with the scale-down",
        Duration::from_secs(10),
        || async {
            let s = status(&policies, "web").await;
            s["checkpoint"]["scaleEvents"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["replicaChange"] == -1))
                .then_some(())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; {}", history.render()))?;
    let (leader_now, _) = leader(client).await?;
    anyhow::ensure!(
        leader_now == old_leader,
        "the Lease moved from {old_leader} to {leader_now} before the test deleted anything"
    );
    let before = scaler_pods(client).await?;
    let other = before
        .keys()
        .find(|n| **n != old_leader)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no second scaler replica: {before:?}"))?;
    let deleted_at = history.started.elapsed();
    let deleted = Instant::now();
    system.delete(&old_leader, &DeleteParams::default()).await?;
    let killed_after = deleted_at.saturating_sub(first.at);

    // Another replica takes the Lease: within the lease duration (6 s) plus a renew period and
    // the old process' shutdown. Usually the other running replica; the Deployment's
    // replacement, a candidate from its start, can win the race (it judges the Lease expired
    // one duration after its first read, the other replica one duration after the read, up to
    // a renew period late, in which it saw the last renewal).
    let mut holders = vec![old_leader.clone()];
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        let h = holder(client).await.unwrap_or_default();
        if holders.last() != Some(&h) {
            holders.push(h.clone());
        }
        if !h.is_empty() && h != old_leader {
            break h;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no other replica took the Lease within 30 s of deleting {old_leader}; holders {holders:?}; {}",
            history.render()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let failover = deleted.elapsed();
    let took_over = history.started.elapsed();
    let scalers: Api<Pod> = system.clone();
    let leader_pod = scalers.get(&new_leader).await?;
    let replacement = new_leader != other;
    anyhow::ensure!(
        holders == [old_leader.clone(), new_leader.clone()]
            && leader_pod.metadata.deletion_timestamp.is_none()
            && (!replacement
                || leader_pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("app.kubernetes.io/name"))
                    .is_some_and(|n| n == "tidal-scaler")),
        "the Lease went through {holders:?} (replicas before the delete: {before:?})"
    );
    anyhow::ensure!(
        failover <= Duration::from_secs(15),
        "failover took {:.1}s; holders {holders:?}",
        secs(failover)
    );
    // Discriminating: the new leader leads well inside the 30 s period, so a leader without
    // the checkpoint would scale down long before the period ends.
    anyhow::ensure!(
        took_over < first.at + Duration::from_secs(20),
        "{new_leader} took over only {:.1}s after the first scale-down: too late to tell",
        secs(took_over.saturating_sub(first.at))
    );
    let leader_ip = wait_for(
        "the new leader's pod IP",
        Duration::from_secs(30),
        || async {
            scalers
                .get(&new_leader)
                .await
                .ok()
                .and_then(|p| pod_ip(&p).map(str::to_string))
        },
    )
    .await?;
    let leader_flag = wait_for(
        "the new leader reports tidal_scaler_leader 1",
        Duration::from_secs(10),
        || async {
            let body = scaler_metrics(&leader_ip).await.ok()?;
            (samples(&body, "tidal_scaler_leader").values().sum::<f64>() == 1.0).then_some(())
        },
    )
    .await;
    leader_flag.map_err(|e| anyhow::anyhow!("{e}; {new_leader} holds the Lease"))?;

    // The Deployment replaces the deleted replica: two Ready pods again, one of them new.
    let replaced = wait_for(
        "the scaler Deployment back at 2 Ready replicas",
        Duration::from_secs(90),
        || async {
            let pods = scaler_pods(client).await.ok()?;
            (pods.len() == 2 && !pods.contains_key(&old_leader) && pods.contains_key(&other))
                .then_some(pods)
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; {}", history.render()))?;
    let replaced_after = deleted.elapsed();
    let new_replica = replaced
        .keys()
        .find(|n| **n != other)
        .cloned()
        .unwrap_or_default();

    let second = history
        .wait_for(1, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e}; new leader {new_leader}"))?;
    let gap = second.at.saturating_sub(first.at);
    anyhow::ensure!(
        values(&history.changes()) == [3, 2, 1],
        "wrong actuation: {}",
        history.render()
    );
    // The watch sees each change after the scaler stamped its event at its round's start,
    // then gathered, wrote and the watch delivered: up to a round plus the write apart on a
    // loaded machine. 2 s of slack for that, against a violation that would come ~20 s early.
    anyhow::ensure!(
        gap >= Duration::from_secs(28),
        "the new leader scaled down {:.1}s after the first scale-down (rate policy: 1 pod per 30 s; \
         the leader was deleted {:.1}s after it and {new_leader} led {:.1}s later); {}",
        secs(gap),
        secs(killed_after),
        secs(failover),
        history.render()
    );
    anyhow::ensure!(
        gap <= Duration::from_secs(45),
        "the second scale-down came late: {:.1}s; {}",
        secs(gap),
        history.render()
    );
    let events = samples(&scaler_metrics(&leader_ip).await?, SCALE_EVENTS);
    anyhow::ensure!(
        events.values().sum::<f64>() == 1.0,
        "the new leader {new_leader} counted scale events {events:?}; {}",
        history.render()
    );
    anyhow::ensure!(
        holder(client).await.as_deref() == Some(new_leader.as_str()),
        "the Lease left {new_leader}"
    );

    // The new leader acts on new load too.
    let survivor = wait_ready_pods(&pods, "web", 1, Duration::from_secs(30), &history).await?;
    let load_on = history.started.elapsed();
    set_load(stack, ns, &survivor[0], true).await?;
    let up = history.wait_for(3, Duration::from_secs(60)).await?;
    set_load(stack, ns, &survivor[0], false).await?;
    let changes = history.changes();
    anyhow::ensure!(
        changes.len() > 3
            && values(&changes[..3]) == [3, 2, 1]
            && rises_to(&changes[3..], load_on, 3),
        "wrong actuation after the failover (load on at t={:.1}s): {}",
        secs(load_on),
        history.render()
    );
    eprintln!(
        "leader {old_leader} deleted {:.1}s after its scale-down 3 -> 2; {new_leader} ({}) held the Lease {:.1}s after the delete; \
         next scale-down 2 -> 1 {:.1}s after the first (policy: 1 pod per 30 s); {new_replica} replaced the deleted replica \
         (2 Ready after {:.1}s); load on at t={:.1}s → 3 at t={:.1}s; {}",
        secs(killed_after),
        if replacement {
            "the replacement replica"
        } else {
            "the other running replica"
        },
        secs(failover),
        secs(gap),
        secs(replaced_after),
        secs(load_on),
        secs(up.at),
        history.render()
    );
    Ok(())
}

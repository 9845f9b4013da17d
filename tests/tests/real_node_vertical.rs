//! `spec.vertical` on the stack's real node, acted on by the in-cluster scaler
//! (manifests/overlays/local, which includes manifests/components/vertical-inplace for the
//! `pods/resize` right): a real kubelet applies an `InPlace` resize to a running container's
//! cgroups without restarting it, and a real kernel OOM kill raises the memory recommendation
//! by the VPA's OOM rule.
//!
//! Tidal changes `resources.requests` only and never raises a limit (docs/controller.md,
//! scaler/src/actuators/resources.rs): so a resize moves the cgroup files that follow the
//! requests (`cpu.shares`) and leaves those that follow the limits (`cpu.cfs_quota_us`,
//! `memory.limit_in_bytes`) where they were, and these tests check exactly that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, ContainerResizePolicy, ContainerStatus, Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use serde_json::{Value, json};
use tidal_e2e::realnode::{NodeLock, RealNode, read_u64, wait_ready};
use tidal_e2e::scaler::policy_status as status;
use tidal_e2e::{Stack, in_namespace, wait_for};
use tidal_scaler::api::{ScalingPolicy, parse_quantity};
use tidal_scaler::engine::vertical::{ModelConfig, Resources, VerticalConfig, VerticalState};

type R = anyhow::Result<()>;

const MIB: f64 = 1024.0 * 1024.0;
/// The label the in-cluster scaler selects policies by (manifests/overlays/local).
const IN_CLUSTER: (&str, &str) = ("tidal.dev/scaler", "in-cluster");

/// A one-replica Deployment on the real node whose container `app` is `container`.
fn deployment(node: &RealNode, name: &str, mut container: Container) -> anyhow::Result<Deployment> {
    container.name = "app".into();
    // Both resources resizable without a restart (the default, spelt out).
    container.resize_policy = Some(
        ["cpu", "memory"]
            .into_iter()
            .map(|r| ContainerResizePolicy {
                resource_name: r.into(),
                restart_policy: "NotRequired".into(),
            })
            .collect(),
    );
    let mut spec = node.pod_spec(vec![container]);
    spec.termination_grace_period_seconds = Some(0);
    let mut d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}}
        }
    }))?;
    if let Some(s) = d.spec.as_mut() {
        s.template.spec = Some(spec);
    }
    Ok(d)
}

/// A ScalingPolicy for the in-cluster scaler on Deployment `target`, pinned at one replica
/// (no horizontal metric, so the vertical side is sized by the VPA's estimator alone).
fn policy(name: &str, target: &str, vertical: Value) -> anyhow::Result<ScalingPolicy> {
    let mut p: ScalingPolicy = serde_json::from_value(json!({
        "apiVersion": "tidal.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 1, "maxReplicas": 1,
            "metrics": [],
            "vertical": vertical
        }
    }))?;
    p.metadata = ObjectMeta {
        name: Some(name.into()),
        labels: Some(BTreeMap::from([(IN_CLUSTER.0.into(), IN_CLUSTER.1.into())])),
        ..Default::default()
    };
    Ok(p)
}

/// The one running (not deleted) pod of `app=<name>`, once Ready.
async fn the_pod(pods: &Api<Pod>, name: &str) -> anyhow::Result<Pod> {
    let lp = ListParams::default().labels(&format!("app={name}"));
    let pod = wait_for(
        &format!("a pod of {name}"),
        Duration::from_secs(60),
        || async {
            pods.list(&lp)
                .await
                .ok()?
                .items
                .into_iter()
                .find(|p| p.metadata.deletion_timestamp.is_none())
        },
    )
    .await?;
    wait_ready(pods, &pod.name_any(), Duration::from_secs(60)).await
}

fn app_status(p: &Pod) -> Option<&ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == "app")
}

/// `spec.containers[app].resources.<which>.<resource>`, in base units.
fn spec_quantity(p: &Pod, which: &str, resource: &str) -> Option<f64> {
    let c = p
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == "app")?;
    let r = c.resources.as_ref()?;
    let m = if which == "limits" {
        r.limits.as_ref()?
    } else {
        r.requests.as_ref()?
    };
    parse_quantity(&m.get(resource)?.0).ok()
}

/// `status.containerStatuses[app].resources.<which>.<resource>` (what the kubelet applied).
fn status_quantity(p: &Pod, which: &str, resource: &str) -> Option<f64> {
    let r = app_status(p)?.resources.as_ref()?;
    let m = if which == "limits" {
        r.limits.as_ref()?
    } else {
        r.requests.as_ref()?
    };
    parse_quantity(&m.get(resource)?.0).ok()
}

/// `status.containerStatuses[app].allocatedResources.<resource>`.
fn allocated(p: &Pod, resource: &str) -> Option<f64> {
    let a = app_status(p)?.allocated_resources.as_ref()?;
    parse_quantity(&a.get(resource)?.0).ok()
}

/// The kubelet's `MilliCPUToShares` (cgroup v1): `milli * 1024 / 1000`, at least 2.
fn shares(cpu_cores: f64) -> u64 {
    let milli = (cpu_cores * 1000.0 - 1e-6).ceil() as u64;
    (milli * 1024 / 1000).max(2)
}

/// The container's cgroup v1 files the resources map to.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cgroup {
    cpu_shares: u64,
    cfs_quota_us: i64,
    cfs_period_us: u64,
    memory_limit: u64,
}

fn read_cgroup(cpu: &Path, memory: &Path) -> anyhow::Result<Cgroup> {
    let quota = std::fs::read_to_string(cpu.join("cpu.cfs_quota_us"))
        .map_err(|e| anyhow::anyhow!("reading {}/cpu.cfs_quota_us: {e}", cpu.display()))?;
    Ok(Cgroup {
        cpu_shares: read_u64(&cpu.join("cpu.shares"))?,
        cfs_quota_us: quota.trim().parse()?,
        cfs_period_us: read_u64(&cpu.join("cpu.cfs_period_us"))?,
        memory_limit: read_u64(&memory.join("memory.limit_in_bytes"))?,
    })
}

fn cgroup_dirs(node: &RealNode, pod: &Pod) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = |h: &str| {
        node.container_cgroup(h, pod, "app")
            .filter(|d| d.is_dir())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no {h} cgroup for {}/app (status: {})",
                    pod.name_any(),
                    serde_json::to_string(&pod.status).unwrap_or_default()
                )
            })
    };
    Ok((dir("cpu")?, dir("memory")?))
}

/// `status.recommendations[app].<field>.<resource>`, in base units.
fn recommendation(s: &Value, field: &str, resource: &str) -> Option<f64> {
    let r = s["recommendations"]
        .as_array()?
        .iter()
        .find(|r| r["containerName"] == "app")?;
    parse_quantity(r[field][resource].as_str()?).ok()
}

/// The in-cluster scaler's log (both replicas: the leader's is the one that acts).
fn scaler_log(stack: &Stack) -> String {
    let out = std::process::Command::new(stack.var("TIDAL_KUBECTL").unwrap_or("kubectl"))
        .env(
            "KUBECONFIG",
            stack.var("TIDAL_KUBECONFIG").unwrap_or_default(),
        )
        .args([
            "-n",
            "tidal-system",
            "logs",
            "-l",
            "app.kubernetes.io/name=tidal-scaler",
        ])
        .args(["--tail", "15", "--prefix"])
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => format!("(kubectl logs failed: {e})"),
    }
}

/// `InPlace` for real: an idle-ish container (≈10% of a core in a duty cycle) requesting 10m
/// and 16Mi, with limits of 1 core and 512Mi. Once the recommendation rests on the scaler's
/// 60 samples, both requests lie below the lower bound (the pod minimums alone are 25m and
/// 250Mi), so the in-cluster scaler resizes the running pod (`pods/resize`); the kubelet
/// applies it: the status shows the new requests (`resources`, `allocatedResources`), the
/// container's `cpu.shares` becomes `MilliCPUToShares(new request)`, the limits' files stay
/// (Tidal never changes limits), and the container is not restarted (same ID, same count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_resize_reaches_the_real_containers_cgroup_without_a_restart() -> R {
    let stack = Stack::load()?;
    let _lock = NodeLock::shared(&stack).await?;
    let node = RealNode::installed(&stack).await?;
    let admin = stack.admin_client().await?;
    node.agent_pod(&admin, Duration::from_secs(60)).await?;
    let client = admin.clone();
    in_namespace(&admin, "rn-inplace", |ns| async move {
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), &ns);
        // ≈23 ms of shell arithmetic per 10k steps on this machine: 5k steps, then 100 ms asleep.
        let script = "while :; do i=0; while [ $i -lt 5000 ]; do i=$((i+1)); done; usleep 100000; done";
        let c = node.busybox("app", script, Some(("10m", "16Mi")), Some(("1", "512Mi")));
        deploys
            .create(&PostParams::default(), &deployment(&node, "web", c)?)
            .await?;
        let before_pod = the_pod(&pods, "web").await?;
        let pod_name = before_pod.name_any();
        let before_id = app_status(&before_pod).and_then(|s| s.container_id.clone());
        let before_restarts = app_status(&before_pod).map(|s| s.restart_count);
        let (cpu_dir, mem_dir) = cgroup_dirs(&node, &before_pod)?;
        let before = read_cgroup(&cpu_dir, &mem_dir)?;
        eprintln!("before: {pod_name} requests 10m/16Mi, limits 1/512Mi; cgroup {before:?}");
        anyhow::ensure!(
            before.cpu_shares == shares(0.010)
                && before.cfs_quota_us == before.cfs_period_us as i64
                && before.memory_limit == (512.0 * MIB) as u64,
            "the kubelet's cgroup does not match the pod's resources before the resize: \
             {before:?} (want shares {}, quota = period, memory {})",
            shares(0.010),
            512.0 * MIB
        );

        policies
            .create(
                &PostParams::default(),
                &policy(
                    "web",
                    "web",
                    json!({"mode": "InPlace", "containerPolicies": [
                        // Below the limits, so a resize can never be the API server's 422.
                        {"containerName": "app", "maxAllowed": {"cpu": "800m", "memory": "400Mi"}}
                    ]}),
                )?,
            )
            .await?;

        // The scaler resizes the pod: its spec's requests change (the API).
        let resized = wait_for(
            "the in-cluster scaler to resize the pod (spec requests changed)",
            Duration::from_secs(150),
            || async {
                let p = pods.get(&pod_name).await.ok()?;
                let cpu = spec_quantity(&p, "requests", "cpu")?;
                let mem = spec_quantity(&p, "requests", "memory")?;
                ((cpu - 0.010).abs() > 1e-9 && (mem - 16.0 * MIB).abs() > 0.5).then_some(p)
            },
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e}; scaler log:\n{}", scaler_log(&stack))
        })?;
        let new_cpu = spec_quantity(&resized, "requests", "cpu").unwrap_or_default();
        let new_mem = spec_quantity(&resized, "requests", "memory").unwrap_or_default();
        let s = status(&policies, "web").await;
        eprintln!(
            "resized: requests cpu 10m -> {:.0}m, memory 16Mi -> {} ({:.1}Mi); recommendation {}",
            new_cpu * 1000.0,
            new_mem,
            new_mem / MIB,
            s["recommendations"]
        );
        anyhow::ensure!(
            (0.025..=0.8).contains(&new_cpu),
            "cpu request {new_cpu} outside [25m (pod minimum), 800m (maxAllowed)]"
        );
        anyhow::ensure!(
            (250.0 * MIB..=400.0 * MIB).contains(&new_mem),
            "memory request {new_mem} outside [250Mi (pod minimum), 400Mi (maxAllowed)]"
        );
        for (r, v) in [("cpu", 1.0), ("memory", 512.0 * MIB)] {
            anyhow::ensure!(
                spec_quantity(&resized, "limits", r) == Some(v),
                "the {r} limit changed: {:?} (Tidal never changes limits)",
                spec_quantity(&resized, "limits", r)
            );
        }

        // The kubelet applies it: status.containerStatuses[].resources and allocatedResources,
        // no pending or in-progress resize condition, and the cgroup files.
        let applied = wait_for(
            "the kubelet to apply the resize (status resources, allocatedResources, cgroup)",
            Duration::from_secs(60),
            || async {
                let p = pods.get(&pod_name).await.ok()?;
                let done = status_quantity(&p, "requests", "cpu") == Some(new_cpu)
                    && status_quantity(&p, "requests", "memory") == Some(new_mem)
                    && allocated(&p, "cpu") == Some(new_cpu)
                    && allocated(&p, "memory") == Some(new_mem)
                    && !p
                        .status
                        .as_ref()?
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_.starts_with("PodResize") && c.status == "True");
                let cg = read_cgroup(&cpu_dir, &mem_dir).ok()?;
                (done && cg.cpu_shares == shares(new_cpu)).then_some((p, cg))
            },
        )
        .await;
        let (after_pod, after) = match applied {
            Ok(v) => v,
            Err(e) => {
                let p = pods.get(&pod_name).await?;
                anyhow::bail!(
                    "{e}: spec requests {new_cpu}/{new_mem}; status {}; cgroup {:?} (want shares {})",
                    serde_json::to_string(&p.status).unwrap_or_default(),
                    read_cgroup(&cpu_dir, &mem_dir),
                    shares(new_cpu)
                );
            }
        };
        eprintln!("after: cgroup {after:?} (cpu.shares {} -> {})", before.cpu_shares, after.cpu_shares);
        anyhow::ensure!(
            after.cfs_quota_us == before.cfs_quota_us && after.memory_limit == before.memory_limit,
            "the limits' cgroup files changed though the limits did not: {before:?} -> {after:?}"
        );
        for (r, v) in [("cpu", 1.0), ("memory", 512.0 * MIB)] {
            anyhow::ensure!(
                status_quantity(&after_pod, "limits", r) == Some(v),
                "status limits.{r}: {:?}",
                status_quantity(&after_pod, "limits", r)
            );
        }
        // The pod's own cgroup follows (one container: the same shares).
        let pod_shares = node
            .pod_cgroup("cpu", &after_pod)
            .map(|d| read_u64(&d.join("cpu.shares")))
            .transpose()?;
        anyhow::ensure!(
            pod_shares == Some(shares(new_cpu)),
            "pod-level cpu.shares {pod_shares:?}, want {}",
            shares(new_cpu)
        );
        // No restart: the same container, the same count.
        let st = app_status(&after_pod);
        anyhow::ensure!(
            st.and_then(|s| s.container_id.clone()) == before_id
                && st.map(|s| s.restart_count) == before_restarts,
            "the container was restarted: {before_id:?}/{before_restarts:?} -> {:?}/{:?}",
            st.and_then(|s| s.container_id.clone()),
            st.map(|s| s.restart_count)
        );
        // The scaler said so on the policy.
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        let ev = wait_for("a ResizedInPlace Event", Duration::from_secs(15), || async {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("ResizedInPlace"))
        })
        .await?;
        eprintln!("event: {}", ev.message.unwrap_or_default());
        let s = status(&policies, "web").await;
        anyhow::ensure!(
            !s["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "AbleToScale" && c["status"] == "False"),
            "AbleToScale=False after a successful resize: {}",
            s["conditions"]
        );
        Ok(())
    })
    .await
}

/// A real OOM kill: a container with a 160Mi memory request and limit that, when told to
/// (a file made with `kubectl exec`), reads 400 MiB into busybox `tail` (which keeps the one
/// endless line). The kernel kills it: `lastState.terminated.reason` is `OOMKilled` (137) and
/// `restartCount` goes up. The in-cluster scaler (mode `Off`: recommendations only) records it as the VPA does:
/// `used = max(request at the OOM, the interval's usage peak)` = 160Mi (the working set cannot
/// pass the limit, which is the request), `needed = max(used + 100Mi, used * 1.2)` = 260Mi, so
/// the memory target rises from the pod minimum (250Mi) to the 260Mi peak's histogram bucket
/// end plus the 15% margin: exactly what the engine computes from that one peak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_oom_kill_raises_the_memory_recommendation_by_the_vpa_rule() -> R {
    let stack = Stack::load()?;
    let _lock = NodeLock::shared(&stack).await?;
    let node = RealNode::installed(&stack).await?;
    let admin = stack.admin_client().await?;
    node.agent_pod(&admin, Duration::from_secs(60)).await?;
    let client = admin.clone();
    in_namespace(&admin, "rn-oom", |ns| async move {
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), &ns);
        let request = 160.0 * MIB;
        let vertical = json!({"mode": "Off", "containerPolicies": [{"containerName": "app"}]});
        policies
            .create(&PostParams::default(), &policy("hog", "hog", vertical.clone())?)
            .await?;
        let script = "while [ ! -e /tmp/go ]; do sleep 1; done; head -c 400m /dev/zero | tail";
        let c = node.busybox("app", script, Some(("50m", "160Mi")), Some(("200m", "160Mi")));
        deploys
            .create(&PostParams::default(), &deployment(&node, "hog", c)?)
            .await?;
        let pod = the_pod(&pods, "hog").await?;
        let pod_name = pod.name_any();
        let (_, mem_dir) = cgroup_dirs(&node, &pod)?;
        let limit = read_u64(&mem_dir.join("memory.limit_in_bytes"))?;
        anyhow::ensure!(limit == request as u64, "memory.limit_in_bytes {limit}, want {request}");

        // The recommendation before the OOM (the idle container's: the pod minimum).
        let before = wait_for(
            "a memory recommendation before the OOM",
            Duration::from_secs(60),
            || async { recommendation(&status(&policies, "hog").await, "target", "memory") },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}; scaler log:\n{}", scaler_log(&stack)))?;
        eprintln!("before the OOM: memory target {before} ({:.1}Mi)", before / MIB);

        let kubectl = std::process::Command::new(stack.var("TIDAL_KUBECTL")?)
            .env("KUBECONFIG", stack.var("TIDAL_KUBECONFIG")?)
            .args(["-n", &ns, "exec", &pod_name, "-c", "app", "--", "/bin/busybox", "touch", "/tmp/go"])
            .output()?;
        anyhow::ensure!(
            kubectl.status.success(),
            "kubectl exec: {}",
            String::from_utf8_lossy(&kubectl.stderr)
        );

        // The kernel kills it, the kubelet says OOMKilled and restarts it.
        let killed = wait_for("the container OOM-killed and restarted", Duration::from_secs(60), || async {
            let p = pods.get(&pod_name).await.ok()?;
            let s = app_status(&p)?;
            let t = s.last_state.as_ref()?.terminated.as_ref()?;
            (s.restart_count >= 1 && t.reason.as_deref() == Some("OOMKilled")).then(|| (p.clone(), t.clone()))
        })
        .await;
        let (killed_pod, term) = match killed {
            Ok(k) => k,
            Err(e) => {
                let p = pods.get(&pod_name).await?;
                anyhow::bail!("{e}; status: {}", serde_json::to_string(&p.status).unwrap_or_default());
            }
        };
        let restarts = app_status(&killed_pod).map(|s| s.restart_count).unwrap_or_default();
        anyhow::ensure!(term.exit_code == 137, "exit code {} (want 137, SIGKILL)", term.exit_code);
        let pod_mem = node.pod_cgroup("memory", &killed_pod);
        let max_usage = pod_mem
            .as_ref()
            .map(|d| read_u64(&d.join("memory.max_usage_in_bytes")))
            .transpose()?;
        eprintln!(
            "OOMKilled at {:?}, exit {}, restartCount {restarts}; pod cgroup memory.max_usage_in_bytes {max_usage:?} \
             (limit {limit})",
            term.finished_at.as_ref().map(|t| t.0.to_string()),
            term.exit_code
        );
        // The restarted container has the same limit in its new cgroup.
        let restarted = the_pod(&pods, "hog").await?;
        if let Ok((_, dir)) = cgroup_dirs(&node, &restarted) {
            let l = read_u64(&dir.join("memory.limit_in_bytes"))?;
            anyhow::ensure!(l == request as u64, "restarted memory.limit_in_bytes {l}");
        }

        // The rule: used = max(160Mi request, peak <= 160Mi limit) = 160Mi.
        let used = request;
        let needed = (used + 100.0 * MIB).max(used * 1.2);
        anyhow::ensure!(needed == 260.0 * MIB, "{needed}");
        // What the engine recommends from that one peak (the usage peak it replaces is lower).
        let expected = {
            let mut state = VerticalState::new(ModelConfig::default())?;
            let t = term
                .finished_at
                .as_ref()
                .map(|t| t.0.as_millisecond() as f64 / 1000.0)
                .unwrap_or_default();
            let small = Resources {
                cpu_cores: Some(0.001),
                memory_bytes: Some(MIB),
            };
            let req = Resources {
                cpu_cores: Some(0.05),
                memory_bytes: Some(request),
            };
            state.observe(&pod_name, "app", &small, &req, t - 30.0)?;
            state.record_oom(&pod_name, "app", request, t)?;
            let spec: tidal_scaler::api::VerticalSpec = serde_json::from_value(vertical)?;
            let cfg = VerticalConfig::try_from(&spec)?;
            let rec = state
                .recommend(&cfg, &[], t)?
                .into_iter()
                .next()
                .ok_or_else(|| anyhow::anyhow!("no recommendation from the engine"))?;
            let rec = tidal_scaler::api::ContainerRecommendationStatus::from(&rec);
            rec.target
                .and_then(|b| b.memory)
                .and_then(|q| parse_quantity(&q.0).ok())
                .ok_or_else(|| anyhow::anyhow!("no memory target from the engine"))?
        };
        let after = wait_for(
            "the memory recommendation to rise after the OOM",
            Duration::from_secs(60),
            || async {
                recommendation(&status(&policies, "hog").await, "target", "memory")
                    .filter(|m| *m > before)
            },
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{e} (before {before}, expected {expected}); scaler log:\n{}",
                scaler_log(&stack)
            )
        })?;
        eprintln!(
            "after the OOM: memory target {before} ({:.1}Mi) -> {after} ({:.1}Mi); \
             rule: used = 160Mi, needed = max(used + 100Mi, used * 1.2) = max({}, {}) = {needed}; \
             bucket end x 1.15 = {expected}",
            before / MIB,
            after / MIB,
            used + 100.0 * MIB,
            used * 1.2
        );
        anyhow::ensure!(
            after >= needed * 1.15 && after <= needed * 1.05 * 1.15 + 1.0,
            "target {after} is not 260Mi's histogram bucket (x1 to x1.05) plus 15%: [{}, {}]",
            needed * 1.15,
            needed * 1.05 * 1.15
        );
        anyhow::ensure!(
            (after - expected).abs() < 1.0,
            "target {after}, the engine gives {expected} for one 260Mi OOM peak"
        );
        anyhow::ensure!(before < after, "{before} -> {after}");
        Ok(())
    })
    .await
}

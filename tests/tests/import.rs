//! `tidal-scaler import` on objects as the real API server serves them (issue #16, "Safe
//! migration"):
//!
//! - a real KEDA ScaledObject with a `kafka` trigger (KEDA's documented example, pointed at the
//!   stack's broker) scales a Deployment through the HPA KEDA makes; the object, read back with
//!   `kubectl get -o yaml`, is imported; once the ScaledObject is gone and the Deployment is
//!   back at 1, the imported policy, run by the real scaler, reaches the same count KEDA did;
//! - a real `autoscaling/v2` HPA (the walkthrough's, with the API server's defaults filled in)
//!   imports with no note, and the API server accepts the policy;
//! - the walkthrough's HPA (CPU at 50 %, 1..10) acting for real: the kube-controller-manager's
//!   HPA controller, reading metrics-server, scales a busy pod on the real node (kubelet and
//!   containerd) from 1; the HPA is imported as served, and `tidal-scaler decide`, given the
//!   imported policy and the data that HPA decision used (the metrics-server sample it read,
//!   the pod as the API server serves it, the time of the decision), gives the same desired
//!   count and the same utilization.
//!
//! Needs the binaries (`cargo build --bins`, as scripts/test.sh does), the stack's KEDA, its
//! metrics-server and its real node.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use tidal_e2e::builders::deployment;
use tidal_e2e::kafka::{commit, create_topic, produce};
use tidal_e2e::manifests::kubectl;
use tidal_e2e::peers::{PodCpu, pod_metrics, with_peers};
use tidal_e2e::realnode::wait_ready;
use tidal_e2e::scaler::{ReplicaHistory, Scaler, ScalerEnv, in_scaler_namespace};
use tidal_e2e::{Stack, unique, wait_for, workspace_bin};
use tidal_scaler::api::ScalingPolicy;
use tidal_scaler::api::convert::parse_quantity;
use tidal_scaler::controller::target::engine_pod;
use tidal_scaler::engine::types::ControllerSettings;

type R = anyhow::Result<()>;

const STEP: Duration = Duration::from_secs(90);

/// `tidal-scaler <args>` with `stdin` on its standard input: (stdout, stderr).
fn tidal_scaler(args: &[&str], stdin: &str) -> anyhow::Result<(String, String)> {
    use std::io::Write as _;
    let mut child = Command::new(workspace_bin("tidal-scaler"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "tidal-scaler {}: {stderr}",
        args.join(" ")
    );
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), stderr))
}

/// `tidal-scaler import -f - <args>` on `yaml`: (stdout, stderr).
fn import(yaml: &str, args: &[&str]) -> anyhow::Result<(String, String)> {
    tidal_scaler(&[&["import", "-f", "-"], args].concat(), yaml)
}

/// The HPA walkthrough's (kubernetes.io/docs/tasks/run-application/
/// horizontal-pod-autoscale-walkthrough: `kubectl autoscale deployment php-apache
/// --cpu-percent=50 --min=1 --max=10`), with `behavior`.
fn walkthrough_hpa(behavior: Value) -> anyhow::Result<HorizontalPodAutoscaler> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": "php-apache"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "php-apache"},
            "minReplicas": 1, "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                         "target": {"type": "Utilization", "averageUtilization": 50}}}],
            "behavior": behavior
        }
    }))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_keda_scaled_object_reaches_the_count_keda_reached() -> R {
    in_scaler_namespace("import-keda", keda).await
}

async fn keda(env: ScalerEnv) -> R {
    let ScalerEnv {
        stack,
        admin,
        ns,
        node,
        kubeconfig,
    } = env;
    stack.var("TIDAL_KEDA_VERSION")?;
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let (topic, group) = (unique("imp-t"), unique("imp-g"));
    // Lag 30 on 6 partitions: at 10 per replica, 3.
    create_topic(&bootstrap, &topic, 6).await?;
    produce(&bootstrap, &topic, &[5; 6]).await?;
    let zero: Vec<(&str, i32, i64)> = (0..6).map(|p| (topic.as_str(), p, 0)).collect();
    commit(&bootstrap, &group, &zero)?;
    let deploys: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    deploys
        .create(
            &PostParams::default(),
            &deployment("consumer", &node, 1, "10m")?,
        )
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), "consumer").await?;
    let scaled: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "keda.sh",
            "v1alpha1",
            "ScaledObject",
        )),
    );
    // KEDA's documented Kafka example (keda.sh/docs/2.18/scalers/apache-kafka), on the stack.
    let so: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "consumer"},
        "spec": {
            "scaleTargetRef": {"name": "consumer"},
            "pollingInterval": 5, "minReplicaCount": 1, "maxReplicaCount": 6,
            "triggers": [{"type": "kafka", "metadata": {
                "bootstrapServers": bootstrap, "consumerGroup": group, "topic": topic,
                "lagThreshold": "10", "offsetResetPolicy": "latest"}}]
        }
    }))?;
    scaled.create(&PostParams::default(), &so).await?;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(admin.clone(), &ns);
    if let Err(e) = history.wait_for(3, STEP).await {
        let status = hpas
            .get_opt("keda-hpa-consumer")
            .await
            .ok()
            .flatten()
            .map(|h| serde_json::to_string(&h.status).unwrap_or_default());
        anyhow::bail!("KEDA did not reach 3: {e}; its HPA's status: {status:?}");
    }
    let keda_reached = history.current();

    // The object as the API server serves it (status, managedFields and all).
    let served = kubectl(
        &stack,
        &["-n", &ns, "get", "scaledobject", "consumer", "-o", "yaml"],
        None,
    )?;
    let (policy_yaml, notes) = import(&served, &["--kafka-cluster", "stack"])?;
    eprintln!("{policy_yaml}\n{notes}");
    anyhow::ensure!(
        notes.contains("spec.pollingInterval: no equivalent"),
        "notes: {notes}"
    );
    anyhow::ensure!(
        policy_yaml.contains("lagPerReplica: 10") && policy_yaml.contains("cluster: stack"),
        "policy: {policy_yaml}"
    );

    // KEDA steps aside (its HPA goes with the ScaledObject); the workload is set back to 1.
    scaled.delete("consumer", &DeleteParams::default()).await?;
    wait_for("KEDA's HPA is deleted", STEP, || async {
        matches!(hpas.get_opt("keda-hpa-consumer").await, Ok(None)).then_some(())
    })
    .await?;
    deploys
        .patch(
            "consumer",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await?;
    history.wait_for(1, STEP).await?;
    kubectl(&stack, &["-n", &ns, "apply", "-f", "-"], Some(&policy_yaml))?;
    let cluster = format!("stack={bootstrap}");
    let scaler = Scaler::start(
        &kubeconfig,
        &ns,
        "scaler-import",
        &["--kafka-cluster", &cluster],
    )?;
    history
        .wait_for(3, STEP)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nscaler log:\n{}", scaler.tail()))?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    anyhow::ensure!(
        history.current() == keda_reached,
        "KEDA reached {keda_reached:?}, the imported policy {:?}: {}",
        history.current(),
        history.render()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_hpa_imports_exactly_and_the_api_server_accepts_the_policy() -> R {
    in_scaler_namespace("import-hpa", |env| async move {
        let stack: Stack = env.stack;
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(env.admin.clone(), &env.ns);
        // The walkthrough's HPA, with a behavior of the HPA docs' examples.
        let hpa = walkthrough_hpa(json!({"scaleDown": {"policies": [
            {"type": "Percent", "value": 10, "periodSeconds": 60}]}}))?;
        hpas.create(&PostParams::default(), &hpa).await?;
        let served = kubectl(
            &stack,
            &["-n", &env.ns, "get", "hpa", "php-apache", "-o", "yaml"],
            None,
        )?;
        let (policy_yaml, notes) = import(&served, &[])?;
        anyhow::ensure!(notes.is_empty(), "notes: {notes}");
        anyhow::ensure!(
            policy_yaml.contains("# Every field has an exact equivalent."),
            "{policy_yaml}"
        );
        // The API server's defaults (the scaleUp rules, selectPolicy) came along, and the CRD's
        // schema and CEL rules accept them. The scaleDown window stays unset, as served: the
        // HPA controller and Tidal's engine both take 300 s for it.
        let applied = kubectl(
            &stack,
            &["-n", &env.ns, "apply", "-f", "-", "-o", "json"],
            Some(&policy_yaml),
        )?;
        let applied: serde_json::Value = serde_json::from_str(&applied)?;
        let b = &applied["spec"]["behavior"];
        anyhow::ensure!(
            b["scaleUp"]["selectPolicy"] == "Max"
                && b["scaleUp"]["policies"].as_array().map(Vec::len) == Some(2)
                && b["scaleDown"]["stabilizationWindowSeconds"].is_null()
                && b["scaleDown"]["policies"][0]["value"] == 10,
            "behavior: {b}"
        );
        Ok(())
    })
    .await
}

/// The HPA's first decision from 1 replica: its status as written with the scale, and when it
/// appeared after the HPA was created. Meanwhile, every metrics-server sample of `pod` (the HPA
/// reads the newest at each sync; one lasts a 15 s resolution, read every 500 ms here).
async fn first_scale_up(
    hpas: &Api<HorizontalPodAutoscaler>,
    c: &kube::Client,
    ns: &str,
    pod: &str,
    timeout: Duration,
) -> anyhow::Result<(HorizontalPodAutoscalerStatus, Duration, Vec<PodCpu>)> {
    let created = Instant::now();
    let mut samples: Vec<PodCpu> = Vec::new();
    loop {
        let sample = pod_metrics(c, ns, pod).await.ok();
        if let Some(s) = sample.as_ref().and_then(PodCpu::of)
            && samples.last() != Some(&s)
        {
            samples.push(s);
        }
        let status = hpas.get("php-apache").await?.status;
        if let Some(s) = status.as_ref().filter(|s| {
            s.current_replicas == Some(1) && s.desired_replicas > 1 && s.last_scale_time.is_some()
        }) {
            return Ok((s.clone(), created.elapsed(), samples));
        }
        anyhow::ensure!(
            created.elapsed() < timeout,
            "the HPA did not scale up from 1 within {timeout:?}; its status: {}; \
             metrics-server samples of {pod}: {samples:?}",
            serde_json::to_string(&status)?
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The walkthrough's HPA on a real pod, then its import run by `tidal-scaler decide` on the
/// data that HPA decision used: the same desired count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_hpa_decides_what_the_real_hpa_decided() -> R {
    with_peers("import-real-hpa", &[], |stack, node, c, ns| async move {
        // php-apache, as a busy loop: 100m requested, busy up to its 175m limit (~175 %).
        let busy = node.busy("php-apache", ("100m", "16Mi"), ("175m", "64Mi"));
        node.create_deployment(&c, &ns, "php-apache", busy).await?;
        let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
        let listed = ListParams::default().labels("app=php-apache");
        let pod = wait_for("the php-apache pod", Duration::from_secs(60), || async {
            pods.list(&listed)
                .await
                .ok()?
                .items
                .first()?
                .metadata
                .name
                .clone()
        })
        .await?;
        wait_ready(&pods, &pod, Duration::from_secs(90)).await?;

        // The walkthrough's HPA, with a scale-up rate that never limits 1 -> 10: the count it
        // writes is the one it computed from the metric.
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(c.clone(), &ns);
        let hpa = walkthrough_hpa(json!({"scaleUp": {"policies": [
            {"type": "Pods", "value": 9, "periodSeconds": 15}]}}))?;
        hpas.create(&PostParams::default(), &hpa).await?;
        // The pod's samples (15 s resolution), the HPA's sync (15 s), the CPU readiness rule.
        let (status, took, samples) =
            first_scale_up(&hpas, &c, &ns, &pod, Duration::from_secs(180)).await?;
        let current = status.current_replicas.unwrap_or_default();
        let metric = status
            .current_metrics
            .as_ref()
            .and_then(|m| m.first()?.resource.as_ref())
            .map(|r| &r.current);
        let (Some(utilization), Some(average)) = (
            metric.and_then(|m| m.average_utilization),
            metric.and_then(|m| m.average_value.as_ref()),
        ) else {
            anyhow::bail!("the HPA decided without a CPU metric: {status:?}");
        };
        let decided_at = status
            .last_scale_time
            .as_ref()
            .map(|t| t.0.as_millisecond() as f64 / 1e3)
            .unwrap_or_default();
        // The sample it read: its usage in milli-CPU, rounded up (`Quantity.MilliValue()`), is
        // the HPA's average over its one pod; the newest such taken before the decision.
        let average_m = (parse_quantity(&average.0).map_err(anyhow::Error::msg)? * 1e3).round();
        let sample = samples
            .iter()
            .rev()
            .find(|s| {
                let m = s.cores * 1e3;
                s.timestamp_unix_seconds <= decided_at
                    && m > average_m - 1.0
                    && m <= average_m + 1e-6
            })
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no metrics-server sample of {pod} matches the HPA's average {}: {samples:?}",
                    average.0
                )
            })?;

        // The HPA as served, imported; the policy's spec as the scaler hands it to the engine.
        let served = kubectl(
            &stack,
            &["-n", &ns, "get", "hpa", "php-apache", "-o", "yaml"],
            None,
        )?;
        let (policy_yaml, notes) = import(&served, &[])?;
        anyhow::ensure!(notes.is_empty(), "notes: {notes}");
        let policy: ScalingPolicy = serde_norway::from_str(&policy_yaml)?;
        let spec = serde_json::to_value(policy.spec.to_engine(ControllerSettings::default())?)?;
        let input = json!({
            "spec": spec,
            "state": {
                "spec_replicas": current,
                "pods": [engine_pod(&pods.get(&pod).await?)]
            },
            "observations": [{
                "metric": spec["metrics"][0]["name"],
                "pod": pod,
                "value": sample.cores,
                "timestamp_unix_seconds": sample.timestamp_unix_seconds,
                "window_seconds": sample.window_seconds
            }],
            "now_unix_seconds": decided_at
        });
        let (out, _) = tidal_scaler(&["decide", "--input", "-"], &input.to_string())?;
        let decision: Value = serde_json::from_str(&out)?;
        let tidal = decision["desired_replicas"].as_i64();
        let tidal_utilization = decision["proposals"][0]["current"]["average_utilization"].as_i64();
        eprintln!(
            "imported HPA: {current} pod at {utilization}% of its CPU request (target 50%): \
             HPA desired {}, Tidal desired {}; Tidal's utilization {}%; the HPA decided {:.1}s \
             after its creation",
            status.desired_replicas,
            tidal.unwrap_or(-1),
            tidal_utilization.unwrap_or(-1),
            took.as_secs_f64()
        );
        anyhow::ensure!(
            tidal == Some(i64::from(status.desired_replicas))
                && tidal_utilization == Some(i64::from(utilization)),
            "the HPA: {status:?}\ndecide's input: {input}\nits decision: {decision}"
        );
        Ok(())
    })
    .await
}

//! `tidal-scaler import` on objects as the real API server serves them (issue #16, "Safe
//! migration"):
//!
//! - a real KEDA ScaledObject with a `kafka` trigger (KEDA's documented example, pointed at the
//!   stack's broker) scales a Deployment through the HPA KEDA makes; the object, read back with
//!   `kubectl get -o yaml`, is imported; once the ScaledObject is gone and the Deployment is
//!   back at 1, the imported policy, run by the real scaler, reaches the same count KEDA did;
//! - a real `autoscaling/v2` HPA (the walkthrough's, with the API server's defaults filled in)
//!   imports with no note, and the API server accepts the policy.
//!
//! Needs the binaries (`cargo build --bins`, as scripts/test.sh does) and the stack's KEDA.

use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::json;
use tidal_e2e::kafka::{commit, create_topic, produce};
use tidal_e2e::manifests::kubectl;
use tidal_e2e::scaler::{ReplicaHistory, Scaler, ScalerEnv, deployment, in_scaler_namespace};
use tidal_e2e::{Stack, unique, wait_for, workspace_bin};

type R = anyhow::Result<()>;

const STEP: Duration = Duration::from_secs(90);

/// `tidal-scaler import -f - <args>` on `yaml`: (stdout, stderr).
fn import(yaml: &str, args: &[&str]) -> anyhow::Result<(String, String)> {
    use std::io::Write as _;
    let mut child = Command::new(workspace_bin("tidal-scaler"))
        .args(["import", "-f", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(yaml.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    anyhow::ensure!(out.status.success(), "tidal-scaler import: {stderr}");
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), stderr))
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
    let history = ReplicaHistory::watch(deploys.clone(), "consumer");
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
        // The walkthrough's HPA (kubernetes.io/docs/tasks/run-application/
        // horizontal-pod-autoscale-walkthrough), with a behavior of the HPA docs' examples.
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
            "metadata": {"name": "php-apache"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "php-apache"},
                "minReplicas": 1, "maxReplicas": 10,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                             "target": {"type": "Utilization", "averageUtilization": 50}}}],
                "behavior": {"scaleDown": {"policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]}}
            }
        }))?;
        hpas.create(&PostParams::default(), &hpa).await?;
        let served = kubectl(&stack, &["-n", &env.ns, "get", "hpa", "php-apache", "-o", "yaml"], None)?;
        let (policy_yaml, notes) = import(&served, &[])?;
        anyhow::ensure!(notes.is_empty(), "notes: {notes}");
        anyhow::ensure!(
            policy_yaml.contains("# Every field has an exact equivalent."),
            "{policy_yaml}"
        );
        // The API server's defaults (the scaleUp rules, selectPolicy) came along, and the CRD's
        // schema and CEL rules accept them. The scaleDown window stays unset, as served: the
        // HPA controller and Tidal's engine both take 300 s for it.
        let applied = kubectl(&stack, &["-n", &env.ns, "apply", "-f", "-", "-o", "json"], Some(&policy_yaml))?;
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

//! Another autoscaler of the same workload, and the policy's annotations (issue #16, "Safe
//! migration" and "kubectl like the HPA and KEDA"), on the real stack: the real scaler with the
//! manifests' RBAC, a real `autoscaling/v2` HorizontalPodAutoscaler served by the real API
//! server (its controller runs in the stack's controller-manager), and `kubectl get` reading
//! the CRD's printer columns.
//!
//! One policy walks the migration from an HPA:
//! 1. the HPA and the policy both target `web`: the policy holds (`Ready=False`,
//!    `ConflictingAutoscaler` naming the HPA) and writes nothing;
//! 2. `tidal.dev/take-over: HorizontalPodAutoscaler/web`: the policy acts (2 -> 3, its own
//!    decision);
//! 3. `tidal.dev/paused-replicas: 5` with `tidal.dev/paused: "true"`: pinned at 5, `Ready=True`
//!    `ScalingPaused`, PAUSED `true` in `kubectl get`;
//! 4. a malformed `tidal.dev/paused`: held, `Ready=False` `InvalidAnnotation` naming it;
//! 5. annotations removed and the HPA deleted: back to the policy's own decision (5 -> 3);
//! 6. a second policy of the same workload holds (`ConflictingAutoscaler` naming the first)
//!    until the first is deleted, then acts (3 -> 4).
//!
//! A second test does the same with a real KEDA ScaledObject (the stack's KEDA operator makes
//! its HPA): the policy holds naming the ScaledObject, and acts once it is deleted.
//!
//! Needs the binaries (`cargo build --bins`, as scripts/test.sh does).

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::json;
use tidal_e2e::builders::{deployment, policy};
use tidal_e2e::manifests::kubectl;
use tidal_e2e::scaler::{ReplicaHistory, Scaler, condition, in_scaler_namespace, policy_status};
use tidal_e2e::{Stack, wait_for};
use tidal_scaler::api::ScalingPolicy;

type R = anyhow::Result<()>;

const STEP: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_holds_beside_an_hpa_until_it_takes_over_and_obeys_its_annotations() -> R {
    in_scaler_namespace("migrate", |env| async move {
        walk(&env.stack, &env.admin, &env.ns, &env.node, &env.kubeconfig).await
    })
    .await
}

/// Waits until policy `name`'s `Ready` condition has `status` and `reason`; returns the
/// status.
async fn ready(
    policies: &Api<ScalingPolicy>,
    name: &str,
    status: &str,
    reason: &str,
    scaler: &Scaler,
) -> anyhow::Result<serde_json::Value> {
    let waited = wait_for(
        &format!("{name}: Ready={status} reason {reason}"),
        STEP,
        || async {
            let s = policy_status(policies, name).await;
            let r = condition(&s, "Ready");
            (r["status"] == status && r["reason"] == reason).then_some(s)
        },
    )
    .await;
    match waited {
        Ok(s) => Ok(s),
        Err(e) => Err(anyhow::anyhow!(
            "{e}\nstatus: {}\nscaler log:\n{}",
            policy_status(policies, name).await,
            scaler.tail()
        )),
    }
}

async fn annotate(policies: &Api<ScalingPolicy>, annotations: serde_json::Value) -> R {
    policies
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await?;
    Ok(())
}

async fn walk(stack: &Stack, client: &kube::Client, ns: &str, node: &str, kubeconfig: &Path) -> R {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    deploys
        .create(&PostParams::default(), &deployment("web", node, 2, "100m")?)
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), "web").await?;
    history.wait_for(2, STEP).await?;
    // An HPA that never writes: its pods are KWOK pods, which metrics-server has no usage
    // for, and both of its directions are disabled besides. What it would do is not the
    // question; whether Tidal holds beside it is.
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 6,
            "behavior": {"scaleUp": {"selectPolicy": "Disabled"},
                         "scaleDown": {"selectPolicy": "Disabled"}},
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                         "target": {"type": "Utilization", "averageUtilization": 50}}}]
        }
    }))?;
    hpas.create(&PostParams::default(), &hpa).await?;
    // Prometheus answers 3 against 1 per replica: the policy's own decision is always 3.
    let spec = json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1, "maxReplicas": 6,
        "metrics": [{"name": "three", "prometheus": {"query": "vector(3)", "targetPerReplica": "1"}}],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}
    });
    policies
        .create(&PostParams::default(), &policy("p", spec)?)
        .await?;
    let scaler = Scaler::start(
        kubeconfig,
        ns,
        "scaler-migrate",
        &[
            "--prometheus-url",
            stack.prometheus_url()?,
            "--prometheus-interval-seconds",
            "1",
        ],
    )?;

    // 1. Held beside the HPA.
    let s = ready(&policies, "p", "False", "ConflictingAutoscaler", &scaler).await?;
    let message = condition(&s, "Ready")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(
        message.starts_with(&format!(
            "HorizontalPodAutoscaler {ns}/web also scales Deployment web: holding"
        )) && message.contains("tidal.dev/take-over: HorizontalPodAutoscaler/web"),
        "Ready's message: {message}"
    );
    anyhow::ensure!(
        condition(&s, "ScalingActive")["reason"] == "ConflictingAutoscaler",
        "ScalingActive: {}",
        condition(&s, "ScalingActive")
    );
    let reasons = s["lastDecision"]["reasons"].to_string();
    anyhow::ensure!(
        reasons.contains("ConflictingAutoscaler: would scale 2 -> 3 (not applied)"),
        "last decision: {reasons}"
    );
    // Several more cycles: still nothing written.
    tokio::time::sleep(Duration::from_secs(4)).await;
    anyhow::ensure!(
        history.values() == [2],
        "the policy wrote beside the HPA: {}",
        history.render()
    );
    let table = kubectl(stack, &["get", "sp", "p", "-n", ns], None)?;
    eprintln!("held:\n{table}");
    let row = table.lines().nth(1).unwrap_or_default();
    let cols: Vec<&str> = row.split_whitespace().collect();
    // NAME REFERENCE TARGETS(2 words) MIN MAX REPLICAS READY ACTIVE [PAUSED] AGE.
    anyhow::ensure!(
        cols.len() >= 9
            && cols[..3] == ["p", "Deployment/web", "three:"]
            && cols[3].ends_with("/1")
            && cols[4..9] == ["1", "6", "2", "False", "False"],
        "kubectl get sp:\n{table}"
    );

    // 2. Taken over by name.
    annotate(
        &policies,
        json!({"tidal.dev/take-over": "HorizontalPodAutoscaler/web"}),
    )
    .await?;
    history.wait_for(3, STEP).await?;
    let s = ready(&policies, "p", "True", "Reconciled", &scaler).await?;
    anyhow::ensure!(
        s["lastDecision"]["reasons"]
            .to_string()
            .contains(&format!("took over HorizontalPodAutoscaler {ns}/web")),
        "last decision: {}",
        s["lastDecision"]
    );

    // 3. Paused at 5.
    annotate(
        &policies,
        json!({"tidal.dev/paused": "true", "tidal.dev/paused-replicas": "5"}),
    )
    .await?;
    history.wait_for(5, STEP).await?;
    let s = ready(&policies, "p", "True", "ScalingPaused", &scaler).await?;
    // The status of the cycle after the write reports the pinned count.
    wait_for("status.currentReplicas 5", STEP, || async {
        (policy_status(&policies, "p").await["currentReplicas"] == 5).then_some(())
    })
    .await?;
    anyhow::ensure!(
        condition(&s, "ScalingActive")["message"]
            == "paused at 5 replicas by the annotation tidal.dev/paused-replicas",
        "ScalingActive: {}",
        condition(&s, "ScalingActive")
    );
    let table = kubectl(stack, &["get", "sp", "p", "-n", ns], None)?;
    eprintln!("paused:\n{table}");
    let cols: Vec<String> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    // NAME REFERENCE TARGETS(2 words) MIN MAX REPLICAS READY ACTIVE PAUSED AGE
    anyhow::ensure!(
        cols.len() >= 11 && cols[6..10] == ["5", "True", "False", "true"],
        "kubectl get sp:\n{table}"
    );

    // 4. A malformed annotation: held, named.
    annotate(
        &policies,
        json!({"tidal.dev/paused": "yes", "tidal.dev/paused-replicas": null}),
    )
    .await?;
    let s = ready(&policies, "p", "False", "InvalidAnnotation", &scaler).await?;
    let message = condition(&s, "Ready")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(
        message
            == format!(
                "ScalingPolicy {ns}/p: metadata.annotations[tidal.dev/paused]: expected \"true\" or \"false\", got \"yes\""
            ),
        "Ready's message: {message}"
    );

    // 5. The HPA gone, the annotations removed: the policy's own decision again.
    hpas.delete("web", &DeleteParams::default()).await?;
    annotate(
        &policies,
        json!({"tidal.dev/paused": null, "tidal.dev/take-over": null}),
    )
    .await?;
    history.wait_for(3, STEP).await?;
    ready(&policies, "p", "True", "Reconciled", &scaler).await?;
    anyhow::ensure!(
        history.values() == [2, 3, 5, 3],
        "replica history: {}",
        history.render()
    );

    // 6. A second policy of the same workload (its own decision would be 4): it holds naming
    //    the first, which keeps writing; once the first is deleted, the second acts.
    let spec4 = json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1, "maxReplicas": 6,
        "metrics": [{"name": "four", "prometheus": {"query": "vector(4)", "targetPerReplica": "1"}}],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}
    });
    policies
        .create(&PostParams::default(), &policy("p2", spec4)?)
        .await?;
    let held = ready(&policies, "p2", "False", "ConflictingAutoscaler", &scaler).await?;
    let message = condition(&held, "Ready")["message"].to_string();
    anyhow::ensure!(
        message.contains(&format!(
            "ScalingPolicy {ns}/p also scales Deployment web and was there first: holding"
        )),
        "p2's Ready message: {message}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    anyhow::ensure!(
        history.values() == [2, 3, 5, 3],
        "the second policy wrote beside the first: {}",
        history.render()
    );
    policies.delete("p", &DeleteParams::default()).await?;
    history.wait_for(4, STEP).await?;
    anyhow::ensure!(
        history.values() == [2, 3, 5, 3, 4],
        "replica history: {}",
        history.render()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_holds_beside_a_keda_scaled_object_and_acts_once_it_is_gone() -> R {
    Stack::load()?.var("TIDAL_KEDA_VERSION").map_err(|_| {
        anyhow::anyhow!("the stack runs without KEDA (TIDAL_PEERS=0 or TIDAL_REAL_NODE=0?)")
    })?;
    in_scaler_namespace("migrate-keda", |env| async move {
        beside_keda(&env.stack, &env.admin, &env.ns, &env.node, &env.kubeconfig).await
    })
    .await
}

async fn beside_keda(
    stack: &Stack,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
) -> R {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    let scaled: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "keda.sh",
            "v1alpha1",
            "ScaledObject",
        )),
    );
    deploys
        .create(&PostParams::default(), &deployment("web", node, 2, "100m")?)
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), "web").await?;
    history.wait_for(2, STEP).await?;
    // A CPU trigger: KEDA hands it to the HPA it makes, which has no usage for KWOK pods, so
    // neither KEDA nor its HPA writes here.
    let so: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "orders"},
        "spec": {
            "scaleTargetRef": {"name": "web"}, "minReplicaCount": 1, "maxReplicaCount": 6,
            "triggers": [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50"}}]
        }
    }))?;
    scaled.create(&PostParams::default(), &so).await?;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    wait_for("KEDA's HPA keda-hpa-orders", STEP, || async {
        hpas.get_opt("keda-hpa-orders").await.ok()?.map(|_| ())
    })
    .await?;
    let spec = json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1, "maxReplicas": 6,
        "metrics": [{"name": "three", "prometheus": {"query": "vector(3)", "targetPerReplica": "1"}}]
    });
    policies
        .create(&PostParams::default(), &policy("p", spec)?)
        .await?;
    let scaler = Scaler::start(
        kubeconfig,
        ns,
        "scaler-keda",
        &[
            "--prometheus-url",
            stack.prometheus_url()?,
            "--prometheus-interval-seconds",
            "1",
        ],
    )?;
    let s = ready(&policies, "p", "False", "ConflictingAutoscaler", &scaler).await?;
    let message = condition(&s, "Ready")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(
        message.starts_with(&format!(
            "KEDA ScaledObject {ns}/orders (through its HorizontalPodAutoscaler keda-hpa-orders) also scales Deployment web: holding"
        )) && message.contains("tidal.dev/take-over: ScaledObject/orders"),
        "Ready's message: {message}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    anyhow::ensure!(
        history.values() == [2],
        "the policy wrote beside KEDA: {}",
        history.render()
    );
    // KEDA removes its HPA with the ScaledObject: the policy acts.
    scaled.delete("orders", &DeleteParams::default()).await?;
    history.wait_for(3, STEP).await?;
    ready(&policies, "p", "True", "Reconciled", &scaler).await?;
    anyhow::ensure!(
        history.values() == [2, 3],
        "replica history: {}",
        history.render()
    );
    Ok(())
}

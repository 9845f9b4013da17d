//! The peers come up and answer (issue #15): metrics-server, registered through the API
//! server's aggregation layer, serves the real node's and its pods' usage read from the
//! kubelet, and the kube-controller-manager's own HPA controller scales a real Deployment on
//! it. The side-by-side figures are `scripts/bench-peers.sh`'s, not a test's.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tidal_e2e::peers::{node_metrics, pod_metrics};
use tidal_e2e::realnode::{BURNER_SCRIPT, NodeLock, RealNode, wait_ready};
use tidal_e2e::scaler::ReplicaHistory;
use tidal_e2e::{Stack, in_namespace, wait_for};
use tidal_scaler::api::convert::parse_quantity;

type R = anyhow::Result<()>;

fn quantity(v: &Value) -> Option<f64> {
    parse_quantity(v.as_str()?).ok()
}

/// The stack's peers, or why not.
fn peers(stack: &Stack) -> anyhow::Result<RealNode> {
    stack.var("TIDAL_METRICS_SERVER_URL").map_err(|_| {
        anyhow::anyhow!("the stack runs without its peers (TIDAL_PEERS=0 or TIDAL_REAL_NODE=0)")
    })?;
    Ok(RealNode::load(stack)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_server_serves_the_real_node_and_its_pods() -> R {
    let stack = Stack::load()?;
    let node = peers(&stack)?;
    let _lock = NodeLock::shared(&stack).await?;
    let client = stack.admin_client().await?;
    // Its first scrape comes one resolution (15 s) after its start.
    let usage = wait_for(
        &format!("metrics-server's NodeMetrics for {}", node.name),
        Duration::from_secs(60),
        || async {
            let m = node_metrics(&client, &node.name).await.ok()?;
            Some((
                quantity(&m.data["usage"]["cpu"])?,
                quantity(&m.data["usage"]["memory"])?,
            ))
        },
    )
    .await?;
    anyhow::ensure!(
        usage.0 > 0.0 && usage.1 > 0.0,
        "node {} usage cpu {} cores, memory {} bytes",
        node.name,
        usage.0,
        usage.1
    );
    let c = client.clone();
    in_namespace(&client, "peers-ms", |ns| async move {
        let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
        let container = node.busybox("sleeper", "sleep 3600", Some(("10m", "8Mi")), None);
        pods.create(
            &PostParams::default(),
            &node.pod("sleeper", &[], vec![container]),
        )
        .await?;
        wait_ready(&pods, "sleeper", Duration::from_secs(90)).await?;
        let m = wait_for(
            "metrics-server's PodMetrics for the pod",
            Duration::from_secs(90),
            || async { pod_metrics(&c, &ns, "sleeper").await.ok() },
        )
        .await?;
        let containers = m.data["containers"].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(
            containers.len() == 1 && containers[0]["name"] == "sleeper",
            "PodMetrics {ns}/sleeper lists containers {containers:?}"
        );
        let memory = quantity(&containers[0]["usage"]["memory"]);
        anyhow::ensure!(
            memory.is_some_and(|m| m > 0.0) && quantity(&containers[0]["usage"]["cpu"]).is_some(),
            "PodMetrics {ns}/sleeper usage {}",
            containers[0]["usage"]
        );
        anyhow::ensure!(
            m.data["window"].as_str().is_some() && m.data["timestamp"].as_str().is_some(),
            "PodMetrics {ns}/sleeper without timestamp or window: {}",
            m.data
        );
        Ok(())
    })
    .await
}

/// A busy pod at 400 % of its request under an HPA (50 %, 1..2): the controller-manager's HPA,
/// reading metrics-server, scales the Deployment to 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hpa_scales_a_real_deployment_on_metrics_server() -> R {
    let stack = Stack::load()?;
    let node = peers(&stack)?;
    let _lock = NodeLock::shared(&stack).await?;
    let client = stack.admin_client().await?;
    let c = client.clone();
    in_namespace(&client, "peers-hpa", |ns| async move {
        let deploys: Api<Deployment> = Api::namespaced(c.clone(), &ns);
        let script = format!("touch /tmp/load; {BURNER_SCRIPT}");
        let container = node.busybox(
            "burn",
            &script,
            Some(("100m", "16Mi")),
            Some(("400m", "64Mi")),
        );
        deploys
            .create(
                &PostParams::default(),
                &node.deployment("web", 1, container),
            )
            .await?;
        let history = ReplicaHistory::watch(deploys.clone(), "web");
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(c.clone(), &ns);
        let hpa = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 2,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 50}}}]
            }
        });
        hpas.create(&PostParams::default(), &serde_json::from_value(hpa)?)
            .await?;
        // The pod starts, metrics-server reads it (15 s resolution), the HPA syncs (15 s).
        let up = history.wait_for(2, Duration::from_secs(150)).await;
        let status = serde_json::to_value(hpas.get("web").await?.status)?;
        up.map_err(|e| anyhow::anyhow!("{e}; HPA status {status}"))?;
        // The HPA is the only writer of this Deployment's scale: it says when it wrote it.
        anyhow::ensure!(
            status["lastScaleTime"].is_string(),
            "the Deployment went to 2 but the HPA's status has no lastScaleTime: {status}"
        );
        Ok(())
    })
    .await
}

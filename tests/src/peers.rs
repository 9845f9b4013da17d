//! The peers the stack runs beside Tidal (scripts/stack-peers.sh, issue #15): metrics-server's
//! `metrics.k8s.io` API, read through the API server's aggregation layer as the HPA reads it.

use kube::api::{Api, ApiResource, DynamicObject};

fn metrics_api(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// metrics-server's `PodMetrics` for `ns/pod` (`timestamp`, `window`, `containers[].usage`).
pub async fn pod_metrics(
    client: &kube::Client,
    ns: &str,
    pod: &str,
) -> anyhow::Result<DynamicObject> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &metrics_api("PodMetrics", "pods"));
    Ok(api.get(pod).await?)
}

/// metrics-server's `NodeMetrics` for `node` (`timestamp`, `window`, `usage`).
pub async fn node_metrics(client: &kube::Client, node: &str) -> anyhow::Result<DynamicObject> {
    let api: Api<DynamicObject> =
        Api::all_with(client.clone(), &metrics_api("NodeMetrics", "nodes"));
    Ok(api.get(node).await?)
}

//! The peers the stack runs beside Tidal (scripts/stack-peers.sh, issue #15): metrics-server's
//! `metrics.k8s.io` API, read through the API server's aggregation layer as the HPA reads it,
//! and the objects KEDA and the VPA act on.

use kube::api::{Api, ApiResource, DynamicObject};

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn metrics_api(kind: &str, plural: &str) -> ApiResource {
    resource("metrics.k8s.io", "v1beta1", kind, plural)
}

/// KEDA's ScaledObjects in `ns`.
pub fn scaled_objects(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = resource("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects");
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// The VPA's VerticalPodAutoscalers in `ns`.
pub fn vertical_pod_autoscalers(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = resource(
        "autoscaling.k8s.io",
        "v1",
        "VerticalPodAutoscaler",
        "verticalpodautoscalers",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
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

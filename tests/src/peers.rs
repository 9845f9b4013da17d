//! The peers the stack runs beside Tidal (scripts/stack/peers.sh, issue #15): metrics-server's
//! `metrics.k8s.io` API, read through the API server's aggregation layer as the HPA reads it,
//! and the objects KEDA and the VPA act on.

use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::Value;
use tidal_scaler::api::convert::parse_quantity;

use crate::realnode::{NodeLock, RealNode};
use crate::{Stack, in_namespace};

/// A quantity of a JSON document (`"250m"`, `"1536Ki"`) in base units.
pub fn quantity(v: &Value) -> Option<f64> {
    parse_quantity(v.as_str()?).ok()
}

/// The stack's real node with its peers (and each `(variable, peer)` of `needs`), or why not.
pub fn peers(stack: &Stack, needs: &[(&'static str, &str)]) -> anyhow::Result<RealNode> {
    for (var, peer) in [("TIDAL_METRICS_SERVER_URL", "metrics-server")]
        .iter()
        .chain(needs)
    {
        stack.var(var).map_err(|_| {
            anyhow::anyhow!(
                "the stack runs without {peer} (TIDAL_PEERS=0 or TIDAL_REAL_NODE=0?): no {var}"
            )
        })?;
    }
    Ok(RealNode::load(stack)?)
}

/// Runs `body` with the stack, its real node, an admin client and a fresh namespace named
/// `prefix-…` (deleted after), holding the real node shared, when the stack runs the peers
/// (and each of `needs`).
pub async fn with_peers<F, Fut>(
    prefix: &str,
    needs: &[(&'static str, &str)],
    body: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Stack, RealNode, kube::Client, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let stack = Stack::load()?;
    let node = peers(&stack, needs)?;
    let _lock = NodeLock::shared(&stack).await?;
    let client = stack.admin_client().await?;
    let c = client.clone();
    in_namespace(&client, prefix, |ns| body(stack, node, c, ns)).await
}

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

/// One metrics-server sample of a pod's CPU, the data the HPA's `GetResourceMetric` reads: the
/// usage summed over the pod's containers (in cores), the sample's `timestamp` and `window`.
#[derive(Clone, Debug, PartialEq)]
pub struct PodCpu {
    pub cores: f64,
    pub timestamp_unix_seconds: f64,
    pub window_seconds: f64,
}

impl PodCpu {
    /// The sample of a `PodMetrics` object, if it has one.
    pub fn of(m: &DynamicObject) -> Option<Self> {
        let at: k8s_openapi::jiff::Timestamp = m.data["timestamp"].as_str()?.parse().ok()?;
        let containers = m.data["containers"].as_array()?;
        let cores = containers
            .iter()
            .map(|c| quantity(&c["usage"]["cpu"]))
            .sum::<Option<f64>>()?;
        Some(Self {
            cores,
            timestamp_unix_seconds: at.as_millisecond() as f64 / 1e3,
            window_seconds: go_duration_seconds(m.data["window"].as_str()?)?,
        })
    }
}

/// A Go `time.Duration` as Go prints it (`14.705s`, `1m0.5s`, `850ms`), in seconds.
pub fn go_duration_seconds(s: &str) -> Option<f64> {
    let mut rest = s;
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit..];
    }
    (!s.is_empty()).then_some(total)
}

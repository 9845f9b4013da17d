//! The objects the tests create, built in one place: Deployments of KWOK pods and
//! ScalingPolicies (issue #13: one builder, with parameters for what the tests vary).

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use tidal_scaler::api::ScalingPolicy;

/// Where the pods of a [`KwokDeployment`] go.
#[derive(Clone, Copy, Debug)]
pub enum Placement<'a> {
    /// Bound to this KWOK node (`nodeName`): no scheduling wait.
    Node(&'a str),
    /// Scheduled onto any KWOK node (`nodeSelector: {type: kwok}`).
    AnyKwokNode,
}

/// A Deployment of KWOK pods (tolerating the KWOK nodes' taint) with one container `app`
/// (image `registry.invalid/tidal/fake:1`) requesting `cpu` and `memory`; selector and pod
/// labels `app=<name>`.
#[derive(Clone, Copy, Debug)]
pub struct KwokDeployment<'a> {
    pub name: &'a str,
    pub placement: Placement<'a>,
    pub replicas: i32,
    pub cpu: &'a str,
    pub memory: &'a str,
    /// `app=<name>` on the Deployment itself too, not only on its pods.
    pub labelled: bool,
}

impl<'a> KwokDeployment<'a> {
    /// One replica of `name` placed per `placement`, requesting 10m CPU and 32Mi, the
    /// Deployment itself unlabelled.
    pub fn new(name: &'a str, placement: Placement<'a>) -> Self {
        Self {
            name,
            placement,
            replicas: 1,
            cpu: "10m",
            memory: "32Mi",
            labelled: false,
        }
    }

    pub fn replicas(self, replicas: i32) -> Self {
        Self { replicas, ..self }
    }

    /// The container's requests.
    pub fn requests(self, cpu: &'a str, memory: &'a str) -> Self {
        Self {
            cpu,
            memory,
            ..self
        }
    }

    /// `app=<name>` on the Deployment's own metadata too.
    pub fn labelled(self) -> Self {
        Self {
            labelled: true,
            ..self
        }
    }

    pub fn build(&self) -> anyhow::Result<Deployment> {
        let name = self.name;
        let mut metadata = json!({"name": name});
        if self.labelled {
            metadata["labels"] = json!({"app": name});
        }
        let mut pod = json!({
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "app", "image": "registry.invalid/tidal/fake:1",
                            "resources": {"requests": {"cpu": self.cpu, "memory": self.memory}}}]
        });
        match self.placement {
            Placement::Node(node) => pod["nodeName"] = json!(node),
            Placement::AnyKwokNode => pod["nodeSelector"] = json!({"type": "kwok"}),
        }
        Ok(serde_json::from_value(json!({
            "metadata": metadata,
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": pod
                }
            }
        }))?)
    }
}

/// A [`KwokDeployment`] of `replicas` pods bound to KWOK node `node`, each requesting `cpu`
/// and 32Mi.
pub fn deployment(name: &str, node: &str, replicas: i32, cpu: &str) -> anyhow::Result<Deployment> {
    KwokDeployment::new(name, Placement::Node(node))
        .replicas(replicas)
        .requests(cpu, "32Mi")
        .build()
}

/// A ScalingPolicy named `name` with `spec`.
pub fn policy(name: &str, spec: serde_json::Value) -> anyhow::Result<ScalingPolicy> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "tidal.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": name},
        "spec": spec
    }))?)
}

/// The label a scaler's `--policy-selector` picks its policies by, in the tests that run more
/// than one scaler (`<label>=<scaler>`).
pub const SCALER_LABEL: &str = "tidal.dev/scaler";

/// [`policy`], labelled [`SCALER_LABEL`]`=<scaler>`.
pub fn labelled_policy(
    name: &str,
    scaler: &str,
    spec: serde_json::Value,
) -> anyhow::Result<ScalingPolicy> {
    let mut p = policy(name, spec)?;
    p.metadata.labels = Some([(SCALER_LABEL.to_string(), scaler.to_string())].into());
    Ok(p)
}

/// The spec of a policy scaling Deployment `target` between 1 and 8 on one `metric`, scaling
/// down without a stabilization window.
pub fn one_metric_spec(target: &str, metric: serde_json::Value) -> serde_json::Value {
    json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": 1, "maxReplicas": 8,
        "metrics": [metric],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}
    })
}

//! The stack's real node (scripts/stack/node.sh): pods that a real kubelet starts with
//! containerd and runc, the cgroups the kubelet makes for them, and Tidal installed in-cluster
//! from manifests/overlays/local.
//!
//! Pods meant for the node carry its selector and tolerate its taint (the KWOK tests' pods
//! never land there); their images are built locally and never pulled.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams, ObjectMeta};

use crate::{Stack, StackError};

/// The label the stack puts on the real node, and the taint it registers with.
pub const NODE_LABEL: (&str, &str) = ("tidal.dev/node", "real");
pub const NODE_TAINT: &str = "tidal.dev/real-node";
/// Where manifests/overlays/local installs Tidal.
pub const TIDAL_NAMESPACE: &str = "tidal-system";

/// The real node of the running stack.
#[derive(Clone, Debug)]
pub struct RealNode {
    pub name: String,
    /// The node IP, on the stack's bridge; pods' IPs are in the same /24.
    pub ip: String,
    /// The kubelet's `cgroupRoot` (without the leading `/`).
    pub cgroup_root: String,
    /// A locally built image with Debian's static busybox (`/bin/busybox`, `/bin/sh`).
    pub busybox_image: String,
}

impl RealNode {
    /// Fails when the stack runs without its real node (`TIDAL_REAL_NODE=0`).
    pub fn load(stack: &Stack) -> Result<Self, StackError> {
        Ok(Self {
            name: stack.var("TIDAL_NODE_NAME")?.to_string(),
            ip: stack.var("TIDAL_NODE_IP")?.to_string(),
            cgroup_root: stack.var("TIDAL_NODE_CGROUP_ROOT")?.to_string(),
            busybox_image: stack.var("TIDAL_BUSYBOX_IMAGE")?.to_string(),
        })
    }

    /// A pod pinned to the real node, with the given containers.
    pub fn pod(&self, name: &str, labels: &[(&str, &str)], containers: Vec<Container>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(self.pod_spec(containers)),
            ..Default::default()
        }
    }

    /// The pod spec of [`RealNode::pod`], for Deployments' templates.
    pub fn pod_spec(&self, containers: Vec<Container>) -> PodSpec {
        PodSpec {
            node_selector: Some(BTreeMap::from([(
                NODE_LABEL.0.to_string(),
                NODE_LABEL.1.to_string(),
            )])),
            tolerations: Some(vec![Toleration {
                key: Some(NODE_TAINT.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some("NoSchedule".to_string()),
                ..Default::default()
            }]),
            termination_grace_period_seconds: Some(1),
            containers,
            ..Default::default()
        }
    }

    /// A busybox container running `script` with `sh -c`. `requests` and `limits` are
    /// `(cpu, memory)` pairs, e.g. `("200m", "32Mi")`.
    pub fn busybox(
        &self,
        name: &str,
        script: &str,
        requests: Option<(&str, &str)>,
        limits: Option<(&str, &str)>,
    ) -> Container {
        let q = |(cpu, mem): (&str, &str)| {
            BTreeMap::from([
                ("cpu".to_string(), Quantity(cpu.to_string())),
                ("memory".to_string(), Quantity(mem.to_string())),
            ])
        };
        Container {
            name: name.to_string(),
            image: Some(self.busybox_image.clone()),
            image_pull_policy: Some("Never".to_string()),
            command: Some(vec!["/bin/sh".into(), "-c".into(), script.to_string()]),
            resources: Some(ResourceRequirements {
                requests: requests.map(q),
                limits: limits.map(q),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The kubelet-made cgroup directory of `container` of `pod` in the cgroup v1 hierarchy
    /// `hierarchy` (e.g. `cpuacct`, `memory`): the cgroupfs driver's
    /// `<root>/kubepods[/<qos>]/pod<uid>/<container id>`. `None` until the container runs.
    pub fn container_cgroup(&self, hierarchy: &str, pod: &Pod, container: &str) -> Option<PathBuf> {
        let pod_dir = self.pod_cgroup(hierarchy, pod)?;
        let id = pod
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find(|s| s.name == container)?
            .container_id
            .as_deref()?
            .split_once("://")?
            .1
            .to_string();
        Some(pod_dir.join(id))
    }

    /// The pod's own cgroup directory in `hierarchy`.
    pub fn pod_cgroup(&self, hierarchy: &str, pod: &Pod) -> Option<PathBuf> {
        let uid = pod.metadata.uid.as_deref()?;
        let qos = pod.status.as_ref()?.qos_class.as_deref()?;
        let mut dir = PathBuf::from("/sys/fs/cgroup")
            .join(hierarchy)
            .join(&self.cgroup_root)
            .join("kubepods");
        match qos {
            "Guaranteed" => {}
            "Burstable" => dir.push("burstable"),
            _ => dir.push("besteffort"),
        }
        Some(dir.join(format!("pod{uid}")))
    }

    /// The in-cluster agent's pod on this node, once it is Ready.
    pub async fn agent_pod(&self, client: &kube::Client, timeout: Duration) -> anyhow::Result<Pod> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), TIDAL_NAMESPACE);
        let lp = ListParams::default()
            .labels("app.kubernetes.io/name=tidal-agent")
            .fields(&format!("spec.nodeName={}", self.name));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(p) = pods.list(&lp).await?.items.into_iter().find(pod_ready) {
                return Ok(p);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "no Ready tidal-agent pod on {} after {timeout:?} (is manifests/overlays/local installed?)",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// True when the pod's Ready condition is True.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's IP, once it has one.
pub fn pod_ip(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.pod_ip.as_deref()
}

/// Waits until the pod named `name` is Ready (every container running), and returns it.
pub async fn wait_ready(pods: &Api<Pod>, name: &str, timeout: Duration) -> anyhow::Result<Pod> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let p = pods.get(name).await?;
        if pod_ready(&p) {
            return Ok(p);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "pod {name} not Ready after {timeout:?}; status: {}",
                serde_json::to_string(&p.status).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// GETs `url` and returns the body (a metrics page, say).
pub async fn get_text(url: &str) -> anyhow::Result<String> {
    let resp = crate::http_builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(url)
        .send()
        .await?
        .error_for_status()?;
    Ok(resp.text().await?)
}

/// Reads a cgroup file holding one integer (`cpuacct.usage`, `memory.limit_in_bytes`, ...).
pub fn read_u64(path: &std::path::Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: {text:?}: {e}", path.display()))
}

/// A `key value` line of a cgroup v1 stat file (`memory.stat`, `cpu.stat`).
pub fn read_stat(path: &std::path::Path, key: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{} has no {key}", path.display()))
}

/// A hold on the real node, shared or exclusive across test threads and test processes
/// (an advisory lock on `<stack dir>/realnode.lock`): tests that delete Tidal's own pods (the
/// agent, the leader scaler) take it exclusively, every other real-node test takes it shared,
/// so no test measures through another's fault. Released on drop.
pub struct NodeLock(#[allow(dead_code)] std::fs::File);

impl NodeLock {
    pub async fn shared(stack: &Stack) -> anyhow::Result<Self> {
        Self::take(stack, false).await
    }

    pub async fn exclusive(stack: &Stack) -> anyhow::Result<Self> {
        Self::take(stack, true).await
    }

    /// The node exclusively if nobody holds it now, else `None`; never blocks (a caller that
    /// must be able to give up polls it: a blocked `flock` in `spawn_blocking` cannot be
    /// cancelled, and the runtime waits for it when it shuts down).
    pub fn try_exclusive(stack: &Stack) -> anyhow::Result<Option<Self>> {
        let file = Self::open(stack)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }

    fn open(stack: &Stack) -> anyhow::Result<std::fs::File> {
        let path = stack
            .env_file
            .parent()
            .map(|d| d.join("realnode.lock"))
            .ok_or_else(|| anyhow::anyhow!("no stack directory"))?;
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?)
    }

    async fn take(stack: &Stack, exclusive: bool) -> anyhow::Result<Self> {
        let file = Self::open(stack)?;
        let file = tokio::task::spawn_blocking(move || {
            if exclusive {
                file.lock()
            } else {
                file.lock_shared()
            }
            .map(|()| file)
        })
        .await??;
        Ok(Self(file))
    }
}

/// The image manifests/overlays/local runs (built and imported by scripts/image.sh).
pub const TIDAL_IMAGE: &str = "tidal.local/tidal:dev";

impl RealNode {
    /// [`RealNode::load`], once Tidal runs in-cluster from manifests/overlays/local: installs
    /// it (`kubectl apply -k`) when the agent DaemonSet is missing or is not the overlay's
    /// (tests/tests/manifests.rs installs the base into the same namespace and deletes it), and
    /// waits until the agent and both scaler replicas are Ready. The image must have been
    /// imported already (`scripts/image.sh`, which scripts/test.sh runs).
    pub async fn installed(stack: &Stack) -> anyhow::Result<Self> {
        let node = Self::load(stack)?;
        let client = stack.admin_client().await?;
        let ds: Api<k8s_openapi::api::apps::v1::DaemonSet> =
            Api::namespaced(client.clone(), TIDAL_NAMESPACE);
        let ours = |d: &k8s_openapi::api::apps::v1::DaemonSet| {
            d.metadata.deletion_timestamp.is_none()
                && d.spec.as_ref().is_some_and(|s| {
                    s.template.spec.as_ref().is_some_and(|p| {
                        p.containers
                            .iter()
                            .any(|c| c.image.as_deref() == Some(TIDAL_IMAGE))
                    })
                })
        };
        if !ds.get_opt("tidal-agent").await?.as_ref().is_some_and(ours) {
            // A namespace being deleted refuses new objects: wait until it is gone.
            let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
            crate::wait_for(
                "namespace tidal-system to finish terminating",
                Duration::from_secs(120),
                || async {
                    match nss.get_opt(TIDAL_NAMESPACE).await {
                        Ok(Some(n)) if n.metadata.deletion_timestamp.is_some() => None,
                        Ok(_) => Some(()),
                        Err(_) => None,
                    }
                },
            )
            .await?;
            let kubectl = stack.var("TIDAL_KUBECTL")?;
            let apply = || {
                std::process::Command::new(kubectl)
                    .args([
                        "--kubeconfig",
                        stack.var("TIDAL_KUBECONFIG")?,
                        "apply",
                        "-k",
                    ])
                    .arg(crate::repo_root().join("manifests/overlays/local"))
                    .output()
                    .map_err(anyhow::Error::from)
            };
            let mut out = apply()?;
            // Two tests installing at once: the other's create of an object can win, and
            // this one's fails with AlreadyExists; applying again updates what exists.
            if !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("AlreadyExists")
            {
                out = apply()?;
            }
            anyhow::ensure!(
                out.status.success(),
                "kubectl apply -k manifests/overlays/local: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        node.agent_pod(&client, Duration::from_secs(120)).await?;
        let deploys: Api<k8s_openapi::api::apps::v1::Deployment> =
            Api::namespaced(client.clone(), TIDAL_NAMESPACE);
        crate::wait_for(
            "both tidal-scaler replicas Ready",
            Duration::from_secs(120),
            || async {
                let s = deploys.get("tidal-scaler").await.ok()?.status?;
                (s.ready_replicas == Some(2) && s.updated_replicas == Some(2)).then_some(())
            },
        )
        .await?;
        Ok(node)
    }
}

/// A shell loop that burns CPU (up to its container's limit) while `/tmp/load` exists, and
/// idles otherwise: the real-node tests and the node and peers benchmarks (`tidal-bench`)
/// turn it on and off with `kubectl exec`.
pub const BURNER_SCRIPT: &str = "while :; do if [ -f /tmp/load ]; then i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; else sleep 1; fi; done";

impl RealNode {
    /// A Deployment `name` of `replicas` pods on the real node (label `app=<name>`), running
    /// `container`.
    pub fn deployment(
        &self,
        name: &str,
        replicas: i32,
        container: Container,
    ) -> k8s_openapi::api::apps::v1::Deployment {
        use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
        use k8s_openapi::api::core::v1::PodTemplateSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
        let labels = BTreeMap::from([("app".to_string(), name.to_string())]);
        Deployment {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels.clone()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(self.pod_spec(vec![container])),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Creates [`RealNode::deployment`] `name` of one pod running `container` in `ns`.
    pub async fn create_deployment(
        &self,
        client: &kube::Client,
        ns: &str,
        name: &str,
        container: Container,
    ) -> anyhow::Result<Api<k8s_openapi::api::apps::v1::Deployment>> {
        let deploys = Api::namespaced(client.clone(), ns);
        deploys
            .create(
                &kube::api::PostParams::default(),
                &self.deployment(name, 1, container),
            )
            .await?;
        Ok(deploys)
    }

    /// A busybox container running [`BURNER_SCRIPT`] with its load on from the start: busy up
    /// to its CPU limit. `requests` and `limits` as for [`RealNode::busybox`].
    pub fn busy(&self, name: &str, requests: (&str, &str), limits: (&str, &str)) -> Container {
        let script = format!("touch /tmp/load; {BURNER_SCRIPT}");
        self.busybox(name, &script, Some(requests), Some(limits))
    }
}

/// The labels of a Prometheus sample (`{k="v",...}`), unescaping `\"` and `\\`.
pub fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let s = s.trim().trim_start_matches('{').trim_end_matches('}');
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim().to_string(), value);
    }
}

/// One sample of the kubelet's cAdvisor page: labels, value, and its timestamp (Unix s).
#[derive(Debug)]
pub struct CadvisorSample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub at: Option<f64>,
}

/// The kubelet's own cAdvisor metrics (`/metrics/cadvisor`, through the API server's node
/// proxy), the samples of `metric` only.
pub fn cadvisor(
    stack: &Stack,
    node: &RealNode,
    metric: &str,
) -> anyhow::Result<Vec<CadvisorSample>> {
    let out = std::process::Command::new(stack.var("TIDAL_KUBECTL")?)
        .args([
            "--kubeconfig",
            stack.var("TIDAL_KUBECONFIG")?,
            "get",
            "--raw",
        ])
        .arg(format!(
            "/api/v1/nodes/{}/proxy/metrics/cadvisor",
            node.name
        ))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl get --raw .../metrics/cadvisor: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(metric)?.strip_prefix('{')?;
            let (labels, tail) = rest.rsplit_once('}')?;
            let mut parts = tail.split_whitespace();
            let value = parts.next()?.parse().ok()?;
            let at = parts
                .next()
                .and_then(|t| t.parse::<f64>().ok())
                .map(|ms| ms / 1e3);
            Some(CadvisorSample {
                labels: parse_labels(labels),
                value,
                at,
            })
        })
        .collect())
}

//! What the benchmark drivers share (`tidal-bench`, bench/src/: the real node's, issue #17,
//! the peers', issue #15, and the scaler's, issue #6): the namespaces they make and clean up,
//! percentiles, and the steps they take on the node (`kubectl exec`, waiting for a scale
//! write). Each driver gives one JSON object per part; progress goes to stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

use crate::realnode::{RealNode, get_text, pod_ip, pod_ready};
use crate::scaler::{Change, ReplicaHistory, samples};
use crate::{Stack, unique, wait_for};
use tidal_scaler::api::ScalingPolicy;

type R<T> = anyhow::Result<T>;

/// The agent's CPU rate per container.
pub const AGENT_CPU: &str = "tidal_agent_container_cpu_usage_cores";
/// One `kubectl exec` answers within this, or the step fails.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

pub fn progress(msg: impl AsRef<str>) {
    eprintln!("    {}", msg.as_ref());
}

/// Namespaces and Kafka topics made, for the cleanup (here, or, for the namespaces and a
/// broker's request log turned up, by the script from `DIR/created`).
#[derive(Clone)]
pub struct Created {
    file: PathBuf,
    namespaces: Arc<Mutex<Vec<String>>>,
    /// `(bootstrap, topic, group)`.
    kafka: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl Created {
    pub fn new(file: PathBuf) -> Self {
        Self {
            file,
            namespaces: Arc::new(Mutex::new(Vec::new())),
            kafka: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn line(&self, line: &str) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
        {
            let _ = writeln!(f, "{line}");
        }
    }

    fn add(&self, ns: &str) {
        self.line(&format!("namespace {ns}"));
        if let Ok(mut n) = self.namespaces.lock() {
            n.push(ns.to_string());
        }
    }

    /// Records a Kafka topic and consumer group about to be made, deleted by
    /// [`clean_up`](Self::clean_up).
    pub fn kafka(&self, bootstrap: &str, topic: &str, group: &str) {
        self.line(&format!("kafka-topic {topic}"));
        self.line(&format!("kafka-group {group}"));
        if let Ok(mut k) = self.kafka.lock() {
            k.push((bootstrap.into(), topic.into(), group.into()));
        }
    }

    /// Records that the broker `node_id`'s `kafka.request.logger` is about to be turned up:
    /// the script's cleanup (`bench_cleanup` in scripts/lib.sh) puts it back to WARN, should
    /// the driver die before it does.
    pub fn kafka_request_logger(&self, node_id: &str) {
        self.line(&format!("kafka-request-logger {node_id}"));
    }

    /// Records that the broker `node_id`'s `kafka.request.logger` is back at WARN: the
    /// script's cleanup has nothing left to put back.
    pub fn kafka_request_logger_restored(&self, node_id: &str) {
        self.line(&format!("kafka-request-logger-restored {node_id}"));
    }

    /// A namespace named `prefix-<unique>`, labelled `label`, whose `default` ServiceAccount
    /// exists.
    pub async fn namespace(
        &self,
        admin: &kube::Client,
        prefix: &str,
        label: (&str, &str),
    ) -> R<String> {
        let name = unique(prefix);
        self.add(&name);
        let api: Api<Namespace> = Api::all(admin.clone());
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {label.0: label.1}}
        }))?;
        api.create(&PostParams::default(), &ns).await?;
        let sa: Api<ServiceAccount> = Api::namespaced(admin.clone(), &name);
        wait_for(
            "the namespace's default ServiceAccount",
            Duration::from_secs(60),
            || async { sa.get_opt("default").await.ok().flatten() },
        )
        .await?;
        Ok(name)
    }

    /// Deletes the Kafka topics and groups made (best effort, at most 30 s each) and starts
    /// deleting every namespace made (in the background: the script waits).
    pub async fn clean_up(&self, admin: &kube::Client) {
        let kafka = self
            .kafka
            .lock()
            .map(|mut k| std::mem::take(&mut *k))
            .unwrap_or_default();
        for (bootstrap, topic, group) in kafka {
            crate::kafka::delete_topic_and_group(&bootstrap, &topic, &group).await;
            progress(format!(
                "Kafka topic {topic} and group {group}: deleted (best effort)"
            ));
        }
        let names = self
            .namespaces
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default();
        let api: Api<Namespace> = Api::all(admin.clone());
        for ns in names {
            match api.delete(&ns, &DeleteParams::background()).await {
                Ok(_) => progress(format!("namespace {ns}: deletion started")),
                Err(e) => progress(format!("cleanup: deleting namespace {ns}: {e}")),
            }
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// n, min, p50, p95, max and mean.
pub fn summary(values: &[f64]) -> Value {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mean = if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    };
    json!({
        "n": v.len(), "min": v.first(), "p50": percentile(&v, 50.0), "p95": percentile(&v, 95.0),
        "max": v.last(), "mean": mean,
    })
}

/// A pseudo-random fraction in [0, 1) (for the phase of each step; no rand dependency).
pub fn jitter() -> f64 {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let x = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A label's value in a Prometheus label set `{a="b",...}`.
pub fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = labels
        .match_indices(&key)
        .find(|(i, _)| *i == 0 || matches!(labels.as_bytes()[i - 1], b'{' | b','))?
        .0
        + key.len();
    let rest = &labels[start..];
    Some(&rest[..rest.find('"')?])
}

/// The pods labelled `app=<app>` that are not being deleted.
pub async fn app_pods(pods: &Api<Pod>, app: &str) -> R<Vec<Pod>> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// The Ready, not deleting, pods labelled `app=<app>`, by name.
pub async fn ready_pods(pods: &Api<Pod>, app: &str) -> R<Vec<String>> {
    let mut names: Vec<String> = app_pods(pods, app)
        .await?
        .iter()
        .filter(|p| pod_ready(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    Ok(names)
}

/// The node's agent pod's IP.
pub async fn agent_ip(admin: &kube::Client, node: &RealNode) -> R<String> {
    let pod = node.agent_pod(admin, Duration::from_secs(60)).await?;
    pod_ip(&pod)
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("the agent pod has no IP"))
}

/// The node agent's `/metrics`.
pub async fn agent_metrics(admin: &kube::Client, node: &RealNode) -> R<String> {
    let ip = agent_ip(admin, node).await?;
    get_text(&format!("http://{ip}:9464/metrics")).await
}

/// Waits until the node's agent exports a CPU rate for `container` in `ns/pod`.
pub async fn wait_exported(
    admin: &kube::Client,
    node: &RealNode,
    ns: &str,
    pod: &str,
    container: &str,
    timeout: Duration,
) -> R<()> {
    wait_for(
        &format!("the node's tidal-agent exports {AGENT_CPU} for {ns}/{pod}"),
        timeout,
        || async {
            let body = agent_metrics(admin, node).await.ok()?;
            samples(&body, AGENT_CPU)
                .keys()
                .any(|l| {
                    label(l, "namespace") == Some(ns)
                        && label(l, "pod") == Some(pod)
                        && label(l, "container") == Some(container)
                })
                .then_some(())
        },
    )
    .await
    .map_err(Into::into)
}

/// Waits until policy `name`'s status says the in-cluster scaler (acting on policies labelled
/// `scaler_label`) acts on it at `replicas` replicas.
pub async fn wait_policy_active(
    policies: &Api<ScalingPolicy>,
    name: &str,
    scaler_label: (&str, &str),
    replicas: i32,
    timeout: Duration,
) -> R<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = policies
            .get(name)
            .await
            .ok()
            .and_then(|p| serde_json::to_value(p.status).ok())
            .unwrap_or_default();
        let active = s["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "ScalingActive" && c["status"] == "True")
        });
        if active && s["currentReplicas"] == replicas {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "policy {name}: no ScalingActive=True at {replicas} replica(s) in {timeout:?} (is the in-cluster \
             scaler acting on policies labelled {}={}?); last status: {s}",
            scaler_label.0,
            scaler_label.1
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `kubectl exec` (API server → kubelet → containerd → runc) of `script` in `container` of
/// `ns/pod`; returns how long kubectl took, start to exit.
pub async fn exec(stack: &Stack, ns: &str, pod: &str, container: &str, script: &str) -> R<f64> {
    let mut cmd = tokio::process::Command::new(stack.var("TIDAL_KUBECTL")?);
    cmd.arg("--kubeconfig")
        .arg(stack.var("TIDAL_KUBECONFIG")?)
        .args([
            "-n", ns, "exec", pod, "-c", container, "--", "/bin/sh", "-c", script,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let start = Instant::now();
    let out = tokio::time::timeout(EXEC_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            anyhow::anyhow!("kubectl exec {pod} -- {script}: no exit within {EXEC_TIMEOUT:?}")
        })??;
    let took = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "kubectl exec {pod} -- {script}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(took)
}

/// The first change of `spec.replicas` to `want` seen after `since`.
pub async fn change_after(
    history: &ReplicaHistory,
    since: Duration,
    want: i32,
    timeout: Duration,
) -> R<Change> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(c) = history
            .changes()
            .into_iter()
            .find(|c| c.at > since && c.replicas == want)
        {
            return Ok(c);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "spec.replicas did not become {want} within {timeout:?}; {}",
            history.render()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `b - a` per key, the keys that changed.
pub fn delta(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    b.iter()
        .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

/// Resolves on SIGTERM or SIGINT, with the signal's name. The handlers are registered by
/// this call, not at the future's first poll: a `select!` may poll its other branch first,
/// and a signal that came in between (a process it started, seen running, and the caller
/// told to stop) ended the process with the default action. Call it inside a runtime.
pub fn interrupted() -> impl Future<Output = &'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match handlers {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => std::future::pending().await,
        }
    }
}

/// A part that failed, as the scripts record it.
pub fn failed(kind: &str, e: &anyhow::Error, conditions: &Value) -> Value {
    json!({"kind": kind, "failed": true, "reason": format!("{e:#}"), "conditions": conditions})
}

//! The real `tidal-scaler run` as a child process of a test (its log, metrics and signals),
//! and a recorder of every change of a Deployment's `spec.replicas`, for the fault tests
//! (`tests/tests/faults.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use crate::manifests::{ScalerRbac, ensure_crd};
use crate::{ChildGuard, Stack, free_port, in_namespace, unique, workspace_bin};

/// What a test that runs `tidal-scaler` on KWOK pods needs: the stack, an admin client, a
/// fresh namespace with the scaler's RBAC (its kubeconfig), and the first KWOK node.
pub struct ScalerEnv {
    pub stack: Stack,
    pub admin: kube::Client,
    pub ns: String,
    pub node: String,
    pub kubeconfig: PathBuf,
}

/// Runs `body` in a fresh namespace (`<prefix>-<random>`) with the scaler's RBAC installed,
/// and removes both afterwards, whether `body` succeeded or not.
pub async fn in_scaler_namespace<T, F, Fut>(prefix: &str, body: F) -> anyhow::Result<T>
where
    F: FnOnce(ScalerEnv) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let stack = Stack::load()?;
    let admin = stack.admin_client().await?;
    ensure_crd(&stack)?;
    let node = stack.first_kwok_node()?;
    let client = admin.clone();
    in_namespace(&admin, prefix, |ns| async move {
        let rbac = ScalerRbac::install(&stack, &client, &ns).await?;
        let env = ScalerEnv {
            stack: stack.clone(),
            admin: client,
            ns,
            node,
            kubeconfig: rbac.kubeconfig.clone(),
        };
        let result = body(env).await;
        // The namespace goes with in_namespace; the cluster-scoped RBAC is removed here.
        rbac.remove(&stack)?;
        result
    })
    .await
}

/// A running `tidal-scaler run` (killed on drop), its log, and its metrics URL.
pub struct Scaler {
    pub child: ChildGuard,
    pub name: String,
    pub log: PathBuf,
    pub metrics: String,
}

impl Scaler {
    /// Starts `tidal-scaler run` watching only `ns`, its Lease (if elected) in `ns`, with
    /// identity `name`, serving metrics on a free loopback port, plus `args`.
    pub fn start(kubeconfig: &Path, ns: &str, name: &str, args: &[&str]) -> anyhow::Result<Self> {
        let bin = workspace_bin("tidal-scaler");
        anyhow::ensure!(
            bin.exists(),
            "{} is missing: run `cargo build --bins` first",
            bin.display()
        );
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("{}.log", unique(name)));
        let file = std::fs::File::create(&log)
            .with_context(|| format!("creating the log {}", log.display()))?;
        let child = ChildGuard::spawn(
            Command::new(&bin)
                .arg("run")
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--namespace", ns, "--lease-namespace", ns])
                .args(["--identity", name])
                .args(args)
                .env("KUBECONFIG", kubeconfig)
                .env("RUST_LOG", "info,tidal_scaler=debug")
                .stdout(file.try_clone()?)
                .stderr(file),
        )
        .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            child,
            name: name.to_string(),
            log,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// The whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 40 lines of the log.
    pub fn tail(&self) -> String {
        tail(&self.log, 40)
    }

    /// The metrics text, or `None` if the process does not answer within 2 s (a frozen
    /// process does not).
    pub async fn scrape(&self) -> Option<String> {
        let client = crate::http_builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        client
            .get(&self.metrics)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// `tidal_scaler_leader` (1 or 0), if the process answers.
    pub async fn leader(&self) -> Option<f64> {
        samples(&self.scrape().await?, "tidal_scaler_leader")
            .into_values()
            .next()
    }

    /// Every sample of `metric`, by its label set (`{verb="put_scale"}`; empty if none).
    pub async fn family(&self, metric: &str) -> anyhow::Result<BTreeMap<String, f64>> {
        let body = self
            .scrape()
            .await
            .ok_or_else(|| anyhow::anyhow!("{}: the metrics server does not answer", self.name))?;
        Ok(samples(&body, metric))
    }

    /// Sum of every sample of `metric`.
    pub async fn sum(&self, metric: &str) -> anyhow::Result<f64> {
        Ok(self.family(metric).await?.values().sum())
    }
}

/// The samples of `metric` in a Prometheus text exposition, by label set.
pub fn samples(body: &str, metric: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(metric)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            if !(labels.is_empty() || labels.starts_with('{')) {
                return None; // another metric with this one's name as prefix
            }
            Some((labels.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let out = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .output()
        .context("running kill(1)")?;
    anyhow::ensure!(
        out.status.success(),
        "kill -{signal} {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// How long [`ReplicaHistory::watch`] waits for its watch to list the Deployment.
const LISTED_WITHIN: Duration = Duration::from_secs(30);

/// One observed value of `spec.replicas`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    /// Since the recorder started.
    pub at: Duration,
    pub replicas: i32,
}

/// Every change of a Deployment's `spec.replicas`, from a watch (every modification is
/// delivered in order, so no change is missed however quick), until dropped.
pub struct ReplicaHistory {
    pub started: Instant,
    changes: Arc<Mutex<Vec<Change>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReplicaHistory {
    /// Starts watching `name` and returns once the watch has listed it, so its value at
    /// this moment is the first entry. (Returning before the list raced a quick writer: a
    /// scaler that wrote within 0.1 s of its policy's creation left the starting value out.)
    pub async fn watch(deploys: Api<Deployment>, name: &str) -> anyhow::Result<Self> {
        let history = Self::start(deploys, name);
        let deadline = Instant::now() + LISTED_WITHIN;
        while history.current().is_none() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the watch of Deployment {name} did not list it in {LISTED_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(history)
    }

    fn start(deploys: Api<Deployment>, name: &str) -> Self {
        let started = Instant::now();
        let changes = Arc::new(Mutex::new(Vec::<Change>::new()));
        let sink = changes.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let task = tokio::spawn(async move {
            // Backed off: while the API server is gone (the control-plane faults), the
            // watch retries calmly, then relists.
            let mut stream = watcher(deploys, config).default_backoff().boxed();
            while let Some(event) = stream.next().await {
                let d = match event {
                    Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) => d,
                    _ => continue,
                };
                let Some(replicas) = d.spec.and_then(|s| s.replicas) else {
                    continue;
                };
                if let Ok(mut c) = sink.lock()
                    && c.last().map(|l| l.replicas) != Some(replicas)
                {
                    c.push(Change {
                        at: started.elapsed(),
                        replicas,
                    });
                }
            }
        });
        Self {
            started,
            changes,
            task,
        }
    }

    /// The changes so far (the first entry is the value when the watch started).
    pub fn changes(&self) -> Vec<Change> {
        self.changes.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The values of the changes so far, for comparing with an expected sequence.
    pub fn values(&self) -> Vec<i32> {
        self.changes().iter().map(|c| c.replicas).collect()
    }

    /// The current value, if the watch has listed the object.
    pub fn current(&self) -> Option<i32> {
        self.changes().last().map(|c| c.replicas)
    }

    /// Waits up to `timeout` until `spec.replicas` is `want`; returns the change's entry.
    pub async fn wait_for(&self, want: i32, timeout: Duration) -> anyhow::Result<Change> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.changes().last().filter(|c| c.replicas == want) {
                return Ok(*c);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "spec.replicas did not reach {want} in {timeout:?}; {}",
                self.render()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The history as text, for failure messages: `replica history: t=0.0s 1, t=4.2s 3`.
    pub fn render(&self) -> String {
        let mut s = String::from("replica history:");
        for c in self.changes() {
            let _ = write!(s, " t={:.1}s {};", c.at.as_secs_f64(), c.replicas);
        }
        s
    }
}

impl Drop for ReplicaHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A ScalingPolicy's `status` as JSON (`Null` when it cannot be read or has none yet).
pub async fn policy_status(
    policies: &Api<tidal_scaler::api::ScalingPolicy>,
    name: &str,
) -> serde_json::Value {
    policies
        .get(name)
        .await
        .ok()
        .and_then(|p| serde_json::to_value(p.status).ok())
        .unwrap_or_default()
}

/// The `error` of the entry named `metric` in a status's `currentMetrics`, if it has one.
pub fn metric_error<'a>(status: &'a serde_json::Value, metric: &str) -> Option<&'a str> {
    status["currentMetrics"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == metric)?["error"]
        .as_str()
}

/// Memory of a process from `/proc/<pid>/status`, in bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Memory {
    /// `VmHWM`: the peak resident set size over the process's life.
    pub peak: u64,
    /// `VmRSS`: the resident set size now.
    pub rss: u64,
}

impl Memory {
    /// Reads `VmHWM` and `VmRSS` of `pid`.
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kib = |key: &str| -> anyhow::Result<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map(|k| k * 1024)
                .ok_or_else(|| anyhow::anyhow!("{path}: no {key}"))
        };
        Ok(Self {
            peak: kib("VmHWM:")?,
            rss: kib("VmRSS:")?,
        })
    }
}

/// The condition of type `kind` in a status (`Null` if absent).
pub fn condition(status: &serde_json::Value, kind: &str) -> serde_json::Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or_default()
}

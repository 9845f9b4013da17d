//! tidal-e2e: helpers for tests that run against the real local stack.
//!
//! `scripts/stack.sh up` writes `.stack/env`; [`Stack::load`] reads it (or the variables it
//! exports, when the caller sourced it). Nothing here stands in for a component: every helper
//! talks to the real kube-apiserver, Kafka broker or Prometheus.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

pub mod bench;
pub mod builders;
pub mod cgroups;
pub mod helm;
pub mod kafka;
pub mod manifests;
pub mod peers;
pub mod realnode;
pub mod scaler;
pub mod secured_prometheus;

/// Why the stack could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("the local stack is not up: {path} is missing (run `scripts/stack.sh up`)")]
    NotUp { path: PathBuf },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not set {var}")]
    MissingVar { path: PathBuf, var: &'static str },
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("kube client for {path}: {source}")]
    Client { path: PathBuf, source: kube::Error },
    #[error("timed out after {secs}s waiting for {what}")]
    Timeout { what: String, secs: u64 },
}

/// The root of the repository (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// What `scripts/stack.sh up` wrote: endpoints and credentials of the running stack.
#[derive(Clone, Debug)]
pub struct Stack {
    pub env_file: PathBuf,
    vars: HashMap<String, String>,
}

impl Stack {
    /// Reads the env file of the running stack (`$TIDAL_STACK_DIR/env`, default `<repo>/.stack/env`).
    pub fn load() -> Result<Self, StackError> {
        let dir = std::env::var_os("TIDAL_STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".stack"));
        let path = dir.join("env");
        if !path.exists() {
            return Err(StackError::NotUp { path });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| StackError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            vars: parse_env(&text),
            env_file: path,
        })
    }

    /// A variable the env file must set.
    pub fn var(&self, var: &'static str) -> Result<&str, StackError> {
        self.vars
            .get(var)
            .map(String::as_str)
            .ok_or_else(|| StackError::MissingVar {
                path: self.env_file.clone(),
                var,
            })
    }

    fn path_var(&self, var: &'static str) -> Result<PathBuf, StackError> {
        self.var(var).map(PathBuf::from)
    }

    /// A client with cluster-admin rights (the stack's admin token).
    pub async fn admin_client(&self) -> Result<kube::Client, StackError> {
        client_from(&self.path_var("TIDAL_KUBECONFIG")?).await
    }

    /// A client whose token is authenticated but bound to no role at all.
    pub async fn nobody_client(&self) -> Result<kube::Client, StackError> {
        client_from(&self.path_var("TIDAL_NOBODY_KUBECONFIG")?).await
    }

    pub fn kafka_bootstrap(&self) -> Result<&str, StackError> {
        self.var("TIDAL_KAFKA_BOOTSTRAP")
    }

    pub fn prometheus_url(&self) -> Result<&str, StackError> {
        self.var("TIDAL_PROMETHEUS_URL")
    }

    /// Names of the KWOK fake nodes.
    pub fn kwok_nodes(&self) -> Result<Vec<String>, StackError> {
        Ok(self
            .var("TIDAL_KWOK_NODES")?
            .split_whitespace()
            .map(str::to_string)
            .collect())
    }

    /// The first KWOK fake node.
    pub fn first_kwok_node(&self) -> anyhow::Result<String> {
        self.kwok_nodes()?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("{}: no KWOK node", self.env_file.display()))
    }

    /// Registers a scrape target with the stack's Prometheus (file_sd); removed on drop.
    pub fn register_scrape_target(
        &self,
        name: &str,
        addr: &str,
        labels: &[(&str, &str)],
    ) -> Result<ScrapeTarget, StackError> {
        let dir = self.path_var("TIDAL_PROMETHEUS_TARGETS_DIR")?;
        let path = dir.join(format!("{name}.json"));
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let body = serde_json::json!([{ "targets": [addr], "labels": labels }]);
        // Write then rename, so Prometheus never reads a half-written file.
        let tmp = dir.join(format!(".{name}.json.tmp"));
        std::fs::write(&tmp, body.to_string())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| StackError::Read {
                path: path.clone(),
                source,
            })?;
        Ok(ScrapeTarget { path })
    }
}

/// A file_sd target file; deleting it unregisters the target.
pub struct ScrapeTarget {
    path: PathBuf,
}

impl Drop for ScrapeTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Parses the `export K=V` lines of the stack's env file.
pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// A client for any kubeconfig file (for example one holding a ServiceAccount's token).
pub async fn client_for_kubeconfig(path: &Path) -> Result<kube::Client, StackError> {
    client_from(path).await
}

async fn client_from(path: &Path) -> Result<kube::Client, StackError> {
    let kc = Kubeconfig::read_from(path).map_err(|source| StackError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|source| StackError::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })?;
    kube::Client::try_from(config).map_err(|source| StackError::Client {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs `body` in a fresh namespace (named `<prefix>-<random>`) and deletes the namespace
/// afterwards, whether `body` succeeded or not. Waits for the namespace's `default`
/// ServiceAccount first (made by the real controller-manager), since pods need it.
pub async fn in_namespace<T, F, Fut>(
    client: &kube::Client,
    prefix: &str,
    body: F,
) -> anyhow::Result<T>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use kube::api::{Api, DeleteParams, PostParams};

    let name = unique(prefix);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    let ready = wait_for(
        "the namespace's default ServiceAccount",
        Duration::from_secs(30),
        || async { sa.get_opt("default").await.ok().flatten() },
    )
    .await;
    let result = match ready {
        Ok(_) => body(name.clone()).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = namespaces.delete(&name, &DeleteParams::background()).await {
        eprintln!("cleanup: deleting namespace {name} failed: {e}");
    }
    result
}

/// Polls `check` every 250ms until it returns `Some`, or fails after `timeout`.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, StackError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(StackError::Timeout {
                what: what.to_string(),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A short random suffix for names, so parallel and repeated runs do not collide.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{:x}{:04x}",
        std::process::id() & 0xffff,
        nanos & 0xffff
    )
}

/// An HTTP client with Tidal's TLS (reqwest here has no crypto provider of its own).
pub fn http() -> reqwest::Client {
    http_builder()
        .build()
        .expect("an HTTP client with Tidal's TLS")
}

/// A client builder with Tidal's TLS.
pub fn http_builder() -> reqwest::ClientBuilder {
    tidal_scaler::sources::http::client_builder()
}

/// `GET url` with [`http`].
pub async fn http_get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http().get(url).send().await
}

/// A Prometheus instant query at `url` (the server's root): the answer's `data`
/// (`resultType` and `result`); fails on an HTTP error or a status other than `success`.
pub async fn prometheus_query(url: &str, query: &str) -> anyhow::Result<serde_json::Value> {
    let resp: serde_json::Value = http()
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", query)])
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    anyhow::ensure!(resp["status"] == "success", "query failed: {query}\n{resp}");
    Ok(resp["data"].clone())
}

/// A workspace binary (built by `cargo build --bins`, as scripts/test.sh does first).
pub fn workspace_bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("debug").join(name)
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        cmd.stdin(Stdio::null()).spawn().map(ChildGuard)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real `tidal-agent` (`workspace_bin`, built by `cargo build --bins`) serving on
/// `listen`, sampling every `interval_seconds` and labelling the pods of KWOK node `node` from
/// the stack's API server. Killed when the guard drops.
pub fn spawn_node_agent(
    stack: &Stack,
    node: &str,
    listen: &str,
    interval_seconds: &str,
) -> anyhow::Result<ChildGuard> {
    let bin = workspace_bin("tidal-agent");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` first",
        bin.display()
    );
    Ok(ChildGuard::spawn(
        Command::new(&bin)
            .args(["--listen", listen, "--interval-seconds", interval_seconds])
            .args(["--node-name", node])
            .env("KUBECONFIG", stack.var("TIDAL_KUBECONFIG")?)
            .env("RUST_LOG", "info"),
    )?)
}

/// A free loopback port (bind to :0 and release).
pub fn free_port() -> std::io::Result<u16> {
    free_port_on("127.0.0.1")
}

/// A free port on `host` (an address of this machine: bind to :0 and release).
pub fn free_port_on(host: &str) -> std::io::Result<u16> {
    std::net::TcpListener::bind((host, 0))?
        .local_addr()
        .map(|a| a.port())
}

/// Fails, showing the text, if any of `texts` (logs, statuses) holds any of `secrets`.
pub fn ensure_no_secret(texts: &[String], secrets: &[&str]) -> anyhow::Result<()> {
    for text in texts {
        for secret in secrets {
            anyhow::ensure!(!text.contains(secret), "a secret was written out: {text}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_export_lines_only() {
        let vars = parse_env("# comment\nexport A=1\nexport B=\"x y\"\nC=3\n");
        assert_eq!(vars.get("A").map(String::as_str), Some("1"));
        assert_eq!(vars.get("B").map(String::as_str), Some("x y"));
        assert!(!vars.contains_key("C"));
    }

    #[test]
    fn unique_names_differ() {
        let a = unique("t");
        std::thread::sleep(Duration::from_millis(1));
        assert_ne!(a, unique("t"));
    }
}

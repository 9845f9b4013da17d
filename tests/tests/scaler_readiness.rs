//! The newcomer's first minutes (issue #12): `tidal-scaler run` against a real API server that
//! does not have the ScalingPolicy CRD yet, and a scaler whose identity may not read what it
//! needs.
//!
//! The stack's API server has the CRD (other tests share it and must not lose it), so this
//! test starts a second, real kube-apiserver from the same build, with the same flags and
//! PKI, on the same etcd under its own key prefix: a fresh, empty cluster. Nothing is faked.
//!
//! It checks that:
//! - `/readyz` answers 503 and names the CRD and the command that installs it, and the log
//!   says so once (not every second);
//! - a scaler with a token bound to no role gets 403s, explained with the resource and the
//!   role that grants it, for its caches and for the Lease;
//! - once the CRD is installed the same process turns ready by itself, and scales a
//!   Deployment for a policy without a restart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use tidal_e2e::{
    ChildGuard, Stack, client_for_kubeconfig, free_port, repo_root, unique, wait_for, workspace_bin,
};

type R = anyhow::Result<()>;

const CRD_NAME: &str = "scalingpolicies.tidal.dev";
const CRD_INSTALL: &str = "kubectl apply -f manifests/crd/scalingpolicy.yaml";

/// A second kube-apiserver: the running one's command line, on a free port, with its own
/// etcd prefix. Killed when dropped (its keys stay under the prefix, unused).
struct EmptyApiServer {
    _child: ChildGuard,
    kubeconfig: PathBuf,
    nobody_kubeconfig: PathBuf,
    log: PathBuf,
}

fn running_apiserver_args(stack: &Stack) -> anyhow::Result<Vec<String>> {
    let dir = PathBuf::from(stack.var("TIDAL_STACK_DIR")?);
    let pid = std::fs::read_to_string(dir.join("pids/kube-apiserver.pid"))?;
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim()))?;
    Ok(cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect())
}

/// `kubeconfig` with its server moved to `port`.
fn moved_kubeconfig(from: &Path, port: u16, to: &Path) -> anyhow::Result<()> {
    const SERVER: &str = "server: https://127.0.0.1:";
    let text = std::fs::read_to_string(from)?;
    let Some(at) = text.find(SERVER) else {
        anyhow::bail!("{}: no loopback server line", from.display());
    };
    let port_at = at + SERVER.len();
    let digits = text[port_at..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    let moved = format!("{}{port}{}", &text[..port_at], &text[port_at + digits..]);
    std::fs::write(to, moved)?;
    Ok(())
}

impl EmptyApiServer {
    async fn start(stack: &Stack) -> anyhow::Result<Self> {
        let mut args = running_apiserver_args(stack)?;
        anyhow::ensure!(!args.is_empty(), "empty kube-apiserver command line");
        let bin = args.remove(0);
        let port = free_port()?;
        let mut replaced = false;
        for i in 0..args.len() {
            if args[i] == "--secure-port" && i + 1 < args.len() {
                args[i + 1] = port.to_string();
                replaced = true;
            } else if args[i].starts_with("--secure-port=") {
                args[i] = format!("--secure-port={port}");
                replaced = true;
            }
        }
        anyhow::ensure!(replaced, "no --secure-port in {args:?}");
        let prefix = format!("/{}", unique("tidal-e2e-empty"));
        args.push(format!("--etcd-prefix={prefix}"));
        let dir = std::env::temp_dir().join(unique("empty-apiserver"));
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("kube-apiserver.log");
        let file = std::fs::File::create(&log)?;
        let child = ChildGuard::spawn(
            Command::new(&bin)
                .args(&args)
                .stdout(file.try_clone()?)
                .stderr(file),
        )?;
        let kubeconfig = dir.join("kubeconfig");
        moved_kubeconfig(Path::new(stack.var("TIDAL_KUBECONFIG")?), port, &kubeconfig)?;
        let nobody_kubeconfig = dir.join("kubeconfig-nobody");
        moved_kubeconfig(
            Path::new(stack.var("TIDAL_NOBODY_KUBECONFIG")?),
            port,
            &nobody_kubeconfig,
        )?;
        let server = Self {
            _child: child,
            kubeconfig,
            nobody_kubeconfig,
            log,
        };
        let client = client_for_kubeconfig(&server.kubeconfig).await?;
        let started = Instant::now();
        let up = wait_for(
            "the second kube-apiserver's default namespace",
            Duration::from_secs(120),
            || async {
                let ns: Api<Namespace> = Api::all(client.clone());
                ns.get_opt("default").await.ok().flatten()
            },
        )
        .await;
        if let Err(e) = up {
            let tail = std::fs::read_to_string(&server.log).unwrap_or_default();
            let tail: Vec<_> = tail.lines().rev().take(20).collect();
            anyhow::bail!("{e}; its log ends:\n{}", tail.join("\n"));
        }
        eprintln!(
            "second kube-apiserver on :{port} (etcd prefix {prefix}) up in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(server)
    }
}

/// A real `tidal-scaler run` process, killed when dropped.
struct Scaler {
    _child: ChildGuard,
    url: String,
    log: PathBuf,
}

impl Scaler {
    fn start(kubeconfig: &Path, name: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let bin = workspace_bin("tidal-scaler");
        anyhow::ensure!(
            bin.exists(),
            "{} is missing: run `cargo build --bins` first",
            bin.display()
        );
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("{}.log", unique(name)));
        let file = std::fs::File::create(&log)?;
        let child = ChildGuard::spawn(
            Command::new(&bin)
                .arg("run")
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--identity", name, "--lease-namespace", "default"])
                .args(extra)
                .env("KUBECONFIG", kubeconfig)
                .env("RUST_LOG", "info")
                .stdout(file.try_clone()?)
                .stderr(file),
        )?;
        Ok(Self {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        })
    }

    /// `/readyz`: (status, body), or None while it does not answer.
    async fn readyz(&self) -> Option<(u16, String)> {
        let resp = tidal_e2e::http_get(format!("{}/readyz", self.url))
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Waits until `/readyz` answers 503 with a body that contains every part of `want`.
async fn unready_saying(scaler: &Scaler, want: &[&str]) -> anyhow::Result<String> {
    let got = wait_for(
        "a 503 /readyz naming the problem",
        Duration::from_secs(30),
        || async {
            let (status, body) = scaler.readyz().await?;
            (status == 503 && want.iter().all(|w| body.contains(w))).then_some(body)
        },
    )
    .await;
    match got {
        Ok(body) => Ok(body),
        Err(e) => anyhow::bail!(
            "{e}; last /readyz: {:?}; log:\n{}",
            scaler.readyz().await,
            scaler.log()
        ),
    }
}

fn install_crd_with(kubectl: &str, kubeconfig: &Path) -> anyhow::Result<()> {
    let crd = repo_root().join("manifests/crd/scalingpolicy.yaml");
    let out = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "-f"])
        .arg(&crd)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl apply -f {}: {}",
        crd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_crd_is_named_and_the_scaler_turns_ready_when_it_appears() -> R {
    let stack = Stack::load()?;
    let server = EmptyApiServer::start(&stack).await?;
    let admin = client_for_kubeconfig(&server.kubeconfig).await?;

    // 1. The CRD is missing: the admin scaler says so, with the command that installs it.
    let scaler = Scaler::start(
        &server.kubeconfig,
        "readiness-admin",
        &[
            "--namespace",
            "shop",
            "--prometheus-url",
            stack.prometheus_url()?,
            "--prometheus-interval-seconds",
            "1",
        ],
    )?;
    // A scaler whose token is bound to no role: 403s everywhere.
    let nobody = Scaler::start(&server.nobody_kubeconfig, "readiness-nobody", &[])?;

    let body = unready_saying(&scaler, &[CRD_NAME, CRD_INSTALL]).await?;
    eprintln!("/readyz without the CRD:\n{body}");
    anyhow::ensure!(
        !body.contains("pods") && !body.contains("lease"),
        "only the CRD is missing for the admin scaler: {body}"
    );
    // Logged once, not every second: wait 12 s of retries and count.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let log = scaler.log();
    let mentions = log.lines().filter(|l| l.contains(CRD_INSTALL)).count();
    anyhow::ensure!(
        mentions == 1,
        "the missing CRD was logged {mentions} times in about 15 s (want once):\n{log}"
    );
    anyhow::ensure!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains(CRD_NAME)),
        "the log names the CRD at ERROR level:\n{log}"
    );

    let forbidden = unready_saying(
        &nobody,
        &[
            "forbidden (403)",
            "pods/v1",
            "ClusterRole tidal-scaler",
            "lease: forbidden (403)",
        ],
    )
    .await?;
    eprintln!("/readyz of a scaler bound to no role:\n{forbidden}");
    anyhow::ensure!(
        forbidden.contains("Lease default/tidal-scaler")
            && forbidden.contains("tidal-scaler-lease"),
        "the Lease problem names the Lease and the Role: {forbidden}"
    );

    // 2. Install the CRD: the same process turns ready by itself.
    let kubectl = stack.var("TIDAL_KUBECTL")?.to_string();
    install_crd_with(&kubectl, &server.kubeconfig)?;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    wait_for("the CRD Established", Duration::from_secs(30), || async {
        let crd = crds.get_opt(CRD_NAME).await.ok()??;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await?;
    let established = Instant::now();
    let became_ready = wait_for(
        "/readyz 200 after the CRD appeared",
        Duration::from_secs(20),
        || async {
            let (status, _) = scaler.readyz().await?;
            (status == 200).then_some(())
        },
    )
    .await;
    if let Err(e) = became_ready {
        anyhow::bail!(
            "{e}; /readyz: {:?}; log:\n{}",
            scaler.readyz().await,
            scaler.log()
        );
    }
    let took = established.elapsed();
    eprintln!(
        "ready {:.1}s after the CRD was Established",
        took.as_secs_f64()
    );
    anyhow::ensure!(
        scaler.log().contains("recovered"),
        "the log says the problem cleared:\n{}",
        scaler.log()
    );

    // 3. It acts on a policy, without a restart: Prometheus says 3 per replica-unit.
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "shop"}}))?,
        )
        .await?;
    let deploys: Api<Deployment> = Api::namespaced(admin.clone(), "shop");
    deploys
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "registry.invalid/web"}]}
                    }
                }
            }))?,
        )
        .await?;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "tidal.dev",
        "v1alpha1",
        "ScalingPolicy",
    ));
    let policies: Api<DynamicObject> = Api::namespaced_with(admin.clone(), "shop", &ar);
    let policy: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tidal.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "web"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 5,
            "metrics": [{"name": "jobs", "prometheus": {"query": "vector(3)", "targetPerReplica": "1"}}]
        }
    }))?;
    policies.create(&PostParams::default(), &policy).await?;
    let scaled = wait_for(
        "the Deployment scaled to 3",
        Duration::from_secs(30),
        || async {
            let d = deploys.get("web").await.ok()?;
            (d.spec?.replicas == Some(3)).then_some(())
        },
    )
    .await;
    if let Err(e) = scaled {
        anyhow::bail!("{e}; scaler log:\n{}", scaler.log());
    }
    eprintln!("the policy scaled shop/web 1 -> 3 on the API server that had no CRD at start");
    drop(nobody);
    drop(server);
    Ok(())
}

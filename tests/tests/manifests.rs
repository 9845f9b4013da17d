//! manifests/base against the real API server (issues #2 and #7): it applies cleanly, the
//! DaemonSet gets a pod on every KWOK node, and the real agent runs with a token of the
//! `tidal-agent` ServiceAccount, i.e. with exactly the RBAC of the manifests: it can watch
//! its node's pods and hold its Lease, and it is refused anything else (403).
//! Its own test binary: it installs into the fixed namespace `tidal-system`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use tidal_e2e::{
    ChildGuard, Stack, client_for_kubeconfig, free_port, repo_root, unique, wait_for, workspace_bin,
};

type R = anyhow::Result<()>;

fn kubectl(stack: &Stack, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let mut child = Command::new(stack.var("TIDAL_KUBECTL")?)
        .arg("--kubeconfig")
        .arg(stack.var("TIDAL_KUBECONFIG")?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn namespace_gone(admin: &kube::Client) -> R {
    let ns: Api<Namespace> = Api::all(admin.clone());
    wait_for(
        "namespace tidal-system to be gone",
        Duration::from_secs(90),
        || async { matches!(ns.get_opt("tidal-system").await, Ok(None)).then_some(()) },
    )
    .await?;
    Ok(())
}

fn forbidden<T: std::fmt::Debug>(what: &str, r: Result<T, kube::Error>) -> R {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
        other => anyhow::bail!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_installs_and_the_agent_runs_with_exactly_its_rbac() -> R {
    let stack = Stack::load()?;
    let admin = stack.admin_client().await?;
    let base = repo_root().join("manifests/base");
    let yaml = kubectl(&stack, &["kustomize", &base.display().to_string()], None)?;
    assert!(
        yaml.contains("\nkind: CustomResourceDefinition\n")
            && yaml.contains("name: scalingpolicies.tidal.dev"),
        "the base installs the ScalingPolicy CRD"
    );
    // Cleanup leaves the CRD: it is cluster-wide, and tests/tests/crd.rs uses it concurrently.
    let namespaced = without_crds(&yaml);
    // A clean slate (a previous run's namespace may still be terminating).
    let _ = kubectl(
        &stack,
        &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
        Some(&namespaced),
    );
    namespace_gone(&admin).await?;

    let result = install_and_check(&stack, &admin, &yaml).await;
    let cleanup = kubectl(
        &stack,
        &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
        Some(&namespaced),
    );
    result?;
    cleanup?;
    Ok(())
}

/// The documents of a multi-document YAML stream, minus CustomResourceDefinitions.
fn without_crds(yaml: &str) -> String {
    yaml.split("\n---\n")
        .filter(|doc| {
            !doc.contains("\nkind: CustomResourceDefinition\n")
                && !doc.starts_with("kind: CustomResourceDefinition\n")
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

async fn install_and_check(stack: &Stack, admin: &kube::Client, yaml: &str) -> R {
    kubectl(stack, &["apply", "-f", "-"], Some(yaml))?;
    // A second, server-side dry run of everything now that the namespace exists: valid as is.
    kubectl(stack, &["apply", "--dry-run=server", "-f", "-"], Some(yaml))?;
    // The dashboards ConfigMap (Grafana sidecar label) is valid for the API server too.
    let dashboards = repo_root().join("dashboards");
    let cm = kubectl(
        stack,
        &[
            "apply",
            "--dry-run=server",
            "-o",
            "json",
            "-k",
            &dashboards.display().to_string(),
        ],
        None,
    )?;
    let cm: serde_json::Value = serde_json::from_str(&cm)?;
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1", "{cm}");
    assert_eq!(
        cm["data"].as_object().map(|d| d.len()),
        Some(3),
        "three dashboards"
    );

    let nodes = stack.kwok_nodes()?;
    let ds: Api<DaemonSet> = Api::namespaced(admin.clone(), "tidal-system");
    wait_for(
        "the DaemonSet ready on every KWOK node",
        Duration::from_secs(90),
        || async {
            let s = ds.get("tidal-agent").await.ok()?.status?;
            (s.desired_number_scheduled as usize == nodes.len()
                && s.number_ready as usize == nodes.len())
            .then_some(())
        },
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "tidal-system");
    let agent_pods = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=tidal-agent"))
        .await?;
    let pod = agent_pods
        .items
        .first()
        .ok_or_else(|| anyhow::anyhow!("no agent pod"))?;
    let sc = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers[0].security_context.clone())
        .unwrap_or_default();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));

    // A token of the tidal-agent ServiceAccount, bound to exactly the manifests' roles.
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "tidal-system");
    let tr = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = sas
        .create_token_request("tidal-agent", &PostParams::default(), &tr)
        .await?
        .status
        .map(|s| s.token)
        .ok_or_else(|| anyhow::anyhow!("no token"))?;
    let dir = std::env::temp_dir().join(unique("tidal-agent-sa"));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            stack.var("TIDAL_APISERVER")?,
            stack.var("TIDAL_CA_FILE")?
        ),
    )?;
    let kafka_cfg = dir.join("kafka.json");
    std::fs::write(
        &kafka_cfg,
        serde_json::json!({"interval_seconds": 1, "clusters": [{"name": "stack", "bootstrap": [stack.kafka_bootstrap()?]}]})
            .to_string(),
    )?;

    // The real agent with those rights: pod watch + Lease must work.
    let port = free_port()?;
    let _agent = ChildGuard::spawn(
        Command::new(workspace_bin("tidal-agent"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--node-name",
                &nodes[0],
            ])
            .args([
                "--attribute-to-node",
                "--lease-namespace",
                "tidal-system",
                "--interval-seconds",
                "0.5",
            ])
            .arg("--kafka-config")
            .arg(&kafka_cfg)
            .env("KUBECONFIG", &kubeconfig),
    )?;
    let url = format!("http://127.0.0.1:{port}/metrics");
    wait_for(
        "agent synced its pods and holds the Lease",
        Duration::from_secs(60),
        || async {
            let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
            (body.contains("tidal_agent_pod_metadata_synced 1")
                && body.contains("tidal_agent_kafka_attribution_leader{cluster=\"stack\"} 1"))
            .then_some(())
        },
    )
    .await?;
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "tidal-system");
    let lease = leases.get("tidal-agent-kafka-lag").await?;
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(nodes[0].as_str())
    );

    // And nothing else.
    let sa_client = client_for_kubeconfig(&kubeconfig).await?;
    forbidden(
        "list secrets",
        Api::<Secret>::namespaced(sa_client.clone(), "tidal-system")
            .list(&ListParams::default())
            .await,
    )?;
    forbidden(
        "patch a deployment's scale",
        Api::<Deployment>::namespaced(sa_client.clone(), "default")
            .patch_scale(
                "x",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
            )
            .await,
    )?;
    forbidden(
        "delete a pod",
        Api::<Pod>::namespaced(sa_client.clone(), "tidal-system")
            .delete("x", &Default::default())
            .await,
    )?;
    forbidden(
        "read another Lease",
        Api::<Lease>::namespaced(sa_client.clone(), "kube-node-lease")
            .get(&nodes[0])
            .await,
    )?;
    // The pods it may read: yes.
    let visible = Api::<Pod>::all(sa_client)
        .list(&ListParams::default().fields(&format!("spec.nodeName={}", nodes[0])))
        .await?;
    assert!(!visible.items.is_empty());
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

//! manifests/base against the real API server (issues #2, #6 and #7): it applies cleanly (and
//! again as a server-side dry run), the DaemonSet gets a pod on every KWOK node, the scaler's
//! Deployment gets its two replicas and passes the "restricted" Pod Security level, and the
//! real agent runs with a token of the `tidal-agent` ServiceAccount, i.e. with exactly the
//! RBAC of the manifests: it can watch its node's pods and hold its Lease, and it is refused
//! anything else (403). The scaler's rendered RBAC, bound in a namespace of its own, allows
//! each call the scaler makes and refuses the rest (403): the base refuses the vertical writes
//! (patch deployments, statefulsets, pods/resize) and ReplicaSets; `vertical-template` and
//! `vertical-inplace` each add their right and nothing else. The base's NetworkPolicies
//! admit only the metrics ports and leave egress open.
//! The overlays: `plain-prometheus` is the base plus the `prometheus.io/*` pod annotations and
//! nothing else, passes a server-side dry run, and its scrape snippet passes `promtool check
//! config`; `prometheus-operator` is the base plus ServiceMonitors that select the base's
//! Services on their port names, and a PrometheusRule whose groups are the rule files'.
//! Its own test binary: it installs into the fixed namespace `tidal-system`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, ObjectReference, Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchParams,
};
use kube::runtime::events::{Event as RecorderEvent, EventType, Recorder, Reporter};
use tidal_core::lease::Election;
use tidal_e2e::manifests::{
    Key, RULE_FILES, ScalerRbac, can, documents, ensure_crd, kubectl, kubectl_with_warnings,
    render_base, render_overlay, rendered_objects, token_kubeconfig,
};
use tidal_e2e::{
    ChildGuard, Stack, client_for_kubeconfig, free_port, in_namespace, repo_root, unique, wait_for,
    workspace_bin,
};

type R = anyhow::Result<()>;

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
    let yaml = render_base(&stack)?;
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

/// The document of `kind` named `name` in a rendered multi-document stream.
fn document<'a>(yaml: &'a str, kind: &str, name: &str) -> anyhow::Result<&'a str> {
    yaml.split("\n---\n")
        .find(|doc| {
            doc.lines().any(|l| l == format!("kind: {kind}"))
                && doc.lines().any(|l| l == format!("  name: {name}"))
        })
        .ok_or_else(|| anyhow::anyhow!("the rendered base has no {kind} {name}"))
}

/// The scaler's Deployment, PodDisruptionBudget and Service, installed by the base: two
/// replicas run on two nodes, their pods pass the "restricted" Pod Security level (tidal-system
/// enforces only "privileged": the agent needs hostPath), the budget allows one eviction, and
/// the headless Service selects both on the metrics port.
async fn check_scaler_deployment(stack: &Stack, admin: &kube::Client, yaml: &str) -> R {
    // Still valid for the API server on its own (the whole base was applied already).
    let scaler = document(yaml, "Deployment", "tidal-scaler")?;
    kubectl(
        stack,
        &["apply", "--dry-run=server", "-f", "-"],
        Some(scaler),
    )?;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "tidal-system");
    wait_for(
        "the scaler's 2 replicas ready",
        Duration::from_secs(90),
        || async {
            let s = deployments.get("tidal-scaler").await.ok()?.status?;
            (s.ready_replicas == Some(2) && s.available_replicas == Some(2)).then_some(())
        },
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "tidal-system");
    let scaler_pods = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=tidal-scaler"))
        .await?
        .items;
    anyhow::ensure!(scaler_pods.len() == 2, "{} scaler pods", scaler_pods.len());
    let mut nodes: Vec<_> = scaler_pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    nodes.dedup();
    anyhow::ensure!(
        nodes.len() == 2,
        "anti-affinity: the replicas share a node: {nodes:?}"
    );
    // Pod Security: a server-side dry run of enforcing "restricted" on tidal-system lists the
    // running pods that would violate it. The agent's pods (hostPath) must be listed, so the
    // check is not vacuous; the scaler's must not.
    let (_, warnings) = kubectl_with_warnings(
        stack,
        &[
            "label",
            "--dry-run=server",
            "--overwrite",
            "namespace",
            "tidal-system",
            "pod-security.kubernetes.io/enforce=restricted",
        ],
        None,
    )?;
    anyhow::ensure!(
        warnings.contains("tidal-agent-"),
        "expected the agent's pods to violate the restricted level: {warnings:?}"
    );
    anyhow::ensure!(
        !warnings.contains("tidal-scaler-"),
        "the scaler's pods violate the restricted Pod Security level: {warnings}"
    );
    let spec = scaler_pods[0].spec.clone().unwrap_or_default();
    anyhow::ensure!(spec.service_account_name.as_deref() == Some("tidal-scaler"));
    let c = &spec.containers[0];
    anyhow::ensure!(
        c.command.as_deref()
            == Some(&["/usr/local/bin/tidal-scaler".to_string(), "run".to_string()][..]),
        "{:?}",
        c.command
    );
    let sc = c.security_context.clone().unwrap_or_default();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_string()])
    );
    let psc = spec.security_context.clone().unwrap_or_default();
    assert_eq!(psc.run_as_non_root, Some(true));
    let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    for var in [
        "POD_NAME",
        "POD_NAMESPACE",
        "TIDAL_SCALER_LISTEN",
        "TIDAL_SCALER_LEADER_ELECT",
        "TIDAL_SCALER_AGENT_SELECTOR",
        "TIDAL_SCALER_AGENT_NAMESPACE",
    ] {
        anyhow::ensure!(env.contains(&var), "the scaler has no {var}: {env:?}");
    }
    // The agent selector the scaler is given matches the agent pods.
    let selector = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "TIDAL_SCALER_AGENT_SELECTOR")
        .and_then(|e| e.value.clone())
        .unwrap_or_default();
    let agents = pods.list(&ListParams::default().labels(&selector)).await?;
    anyhow::ensure!(
        !agents.items.is_empty()
            && agents.items.iter().all(|p| p
                .metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("tidal-agent-"))),
        "TIDAL_SCALER_AGENT_SELECTOR={selector} does not select the agent pods"
    );

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(admin.clone(), "tidal-system");
    wait_for(
        "the scaler's PodDisruptionBudget to count 2 pods and allow 1 disruption",
        Duration::from_secs(60),
        || async {
            let s = pdbs.get("tidal-scaler").await.ok()?.status?;
            (s.expected_pods == 2 && s.disruptions_allowed == 1).then_some(())
        },
    )
    .await?;
    let slices: Api<EndpointSlice> = Api::namespaced(admin.clone(), "tidal-system");
    wait_for(
        "the scaler's Service to have both replicas on port 9465",
        Duration::from_secs(60),
        || async {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=tidal-scaler"))
                .await
                .ok()?;
            let ready = list
                .items
                .iter()
                .flat_map(|s| &s.endpoints)
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .count();
            let port = list
                .items
                .iter()
                .flat_map(|s| s.ports.iter().flatten())
                .any(|p| p.name.as_deref() == Some("metrics") && p.port == Some(9465));
            (ready == 2 && port).then_some(())
        },
    )
    .await?;
    Ok(())
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
    let dashboard_files = std::fs::read_dir(&dashboards)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(
        cm["data"].as_object().map(|d| d.len()),
        Some(dashboard_files),
        "every dashboard of dashboards/ in the ConfigMap"
    );

    check_scaler_deployment(stack, admin, yaml).await?;

    let nodes = stack.kwok_nodes()?;
    // The stack's real node (docs/real-node.md) gets a pod too (the DaemonSet tolerates every
    // taint), which cannot start there: the base's image is in a registry this machine cannot
    // reach (and its containerd tries none). Ready: the KWOK nodes'.
    let real_nodes = usize::from(stack.var("TIDAL_NODE_NAME").is_ok());
    let ds: Api<DaemonSet> = Api::namespaced(admin.clone(), "tidal-system");
    wait_for(
        "the DaemonSet scheduled on every node and ready on every KWOK node",
        Duration::from_secs(90),
        || async {
            let s = ds.get("tidal-agent").await.ok()?.status?;
            (s.desired_number_scheduled as usize == nodes.len() + real_nodes
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
    let dir = std::env::temp_dir().join(unique("tidal-agent-sa"));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = token_kubeconfig(stack, admin, "tidal-system", "tidal-agent", &dir).await?;
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
            let body = tidal_e2e::http_get(&url).await.ok()?.text().await.ok()?;
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

/// Least privilege, read from the rendered rules: no wildcard, no delete, no Secrets.
fn check_no_broad_rules(rbac: &serde_json::Value) -> R {
    for object in rbac["items"].as_array().into_iter().flatten() {
        for rule in object["rules"].as_array().into_iter().flatten() {
            let strings = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            let (verbs, resources, groups) =
                (strings("verbs"), strings("resources"), strings("apiGroups"));
            anyhow::ensure!(
                !verbs
                    .iter()
                    .chain(&resources)
                    .chain(&groups)
                    .any(|s| s == "*")
                    && !verbs
                        .iter()
                        .any(|v| v == "delete" || v == "deletecollection" || v == "escalate")
                    && !resources
                        .iter()
                        .any(|r| r == "secrets" || r == "pods/exec" || r == "pods/eviction"),
                "too broad: {rule}"
            );
        }
    }
    Ok(())
}

/// The base: every call of the default path, and none of the vertical writes (patch
/// deployments, statefulsets, pods/resize) nor ReplicaSets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scalers_rbac_allows_its_calls_and_refuses_the_rest() -> R {
    scaler_rbac_case(None).await
}

/// `manifests/overlays/vertical-template`: the base plus `patch` on deployments and
/// statefulsets, and nothing else (pods/resize still refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vertical_template_overlay_adds_only_patch_on_workloads() -> R {
    scaler_rbac_case(Some(Overlay::Template)).await
}

/// `manifests/overlays/vertical-inplace`: the base plus `patch` on pods/resize, and nothing
/// else (the workloads still cannot be patched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vertical_inplace_overlay_adds_only_pods_resize() -> R {
    scaler_rbac_case(Some(Overlay::InPlace)).await
}

/// The opt-in overlays of the vertical modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overlay {
    Template,
    InPlace,
}

impl Overlay {
    const ALL: [Self; 2] = [Self::Template, Self::InPlace];

    fn name(self) -> &'static str {
        match self {
            Self::Template => "vertical-template",
            Self::InPlace => "vertical-inplace",
        }
    }

    /// The rights it adds to the base, as the authorizer is asked about them.
    fn rights(self) -> &'static [Access] {
        match self {
            Self::Template => &[
                (("apps", "deployments", ""), &["patch"], ""),
                (("apps", "statefulsets", ""), &["patch"], ""),
            ],
            Self::InPlace => &[(("", "pods", "resize"), &["patch"], "")],
        }
    }

    /// Its one ClusterRole's rules, as rendered.
    fn rules(self) -> serde_json::Value {
        match self {
            Self::Template => serde_json::json!([
                {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["patch"]}
            ]),
            Self::InPlace => serde_json::json!([
                {"apiGroups": [""], "resources": ["pods/resize"], "verbs": ["patch"]}
            ]),
        }
    }
}

async fn scaler_rbac_case(overlay: Option<Overlay>) -> R {
    let stack = Stack::load()?;
    let admin = stack.admin_client().await?;
    ensure_crd(&stack)?;
    let client = admin.clone();
    let prefix = match overlay {
        None => "scaler-rbac",
        Some(Overlay::Template) => "scaler-rbac-tpl",
        Some(Overlay::InPlace) => "scaler-rbac-ipl",
    };
    in_namespace(&admin, prefix, |ns| async move {
        let rbac = match overlay {
            None => ScalerRbac::install(&stack, &client, &ns).await?,
            Some(o) => ScalerRbac::install_with(&stack, &client, &ns, o.name()).await?,
        };
        let result = async {
            check_no_broad_rules(&rbac.objects)?;
            check_scaler_rights(&client, &ns, &rbac.kubeconfig, overlay).await
        }
        .await;
        // The namespace goes with in_namespace; the cluster-wide objects go here.
        let cleanup = rbac.remove(&stack);
        result?;
        cleanup
    })
    .await
}

/// `((group, resource, subresource), verbs, resource name)`; empty strings leave a field out.
type Access = (
    (&'static str, &'static str, &'static str),
    &'static [&'static str],
    &'static str,
);

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> anyhow::Result<T> {
    Ok(serde_json::from_value(value)?)
}

/// Every call the scaler makes, for real, with the ServiceAccount's token; the vertical writes
/// succeed only with the overlay that grants them (403 otherwise); the authorizer's answer
/// for the whole matrix of allowed and refused rights.
async fn check_scaler_rights(
    admin: &kube::Client,
    ns: &str,
    kubeconfig: &Path,
    overlay: Option<Overlay>,
) -> R {
    // A workload and a policy, made by the admin.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), ns);
    deployments
        .create(
            &PostParams::default(),
            &object(serde_json::json!({
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "web",
                            "image": "registry.invalid/web:1",
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "64Mi"},
                                "limits": {"cpu": "200m", "memory": "128Mi"}
                            }
                        }]}
                    }
                }
            }))?,
        )
        .await?;
    let gvk = GroupVersionKind::gvk("tidal.dev", "v1alpha1", "ScalingPolicy");
    let policy_type = ApiResource::from_gvk(&gvk);
    Api::<DynamicObject>::namespaced_with(admin.clone(), ns, &policy_type)
        .create(
            &PostParams::default(),
            &object(serde_json::json!({
                "apiVersion": "tidal.dev/v1alpha1",
                "kind": "ScalingPolicy",
                "metadata": {"name": "web"},
                "spec": {
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 1,
                    "maxReplicas": 5,
                    "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 60}}]
                }
            }))?,
        )
        .await?;

    // A client with a token of the rewritten tidal-scaler ServiceAccount (its bindings are
    // in effect: ScalerRbac::install waited for them).
    let sa = client_for_kubeconfig(kubeconfig).await?;
    let listed = Api::<DynamicObject>::all_with(sa.clone(), &policy_type)
        .list(&ListParams::default())
        .await?;
    anyhow::ensure!(
        listed
            .items
            .iter()
            .any(|p| p.metadata.namespace.as_deref() == Some(ns)),
        "listing ScalingPolicies in all namespaces shows the test's"
    );

    // Every call the scaler makes, for real.
    let policies = Api::<DynamicObject>::namespaced_with(sa.clone(), ns, &policy_type);
    policies.get("web").await?;
    // A watch is refused at the request, before any event: opening one proves the right.
    drop(
        policies
            .watch(&WatchParams::default().timeout(1), "0")
            .await?,
    );
    policies
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"status": {"currentReplicas": 1, "desiredReplicas": 2}}),
            ),
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(sa.clone(), ns);
    Api::<Pod>::all(sa.clone())
        .list(&ListParams::default().limit(5))
        .await?;
    drop(
        Api::<Pod>::all(sa.clone())
            .watch(&WatchParams::default().timeout(1), "0")
            .await?,
    );
    let admin_pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    let pod = wait_for(
        "the Deployment's pod running on a KWOK node",
        Duration::from_secs(60),
        || async {
            let list = admin_pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            list.items
                .into_iter()
                .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        },
    )
    .await?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    pods.get(&pod_name).await?;
    pods.list(&ListParams::default()).await?;
    // In-place resize (pods/resize), as the InPlace mode does: only with its overlay.
    let resize = Patch::Strategic(serde_json::json!({"spec": {"containers": [
        {"name": "web", "resources": {"requests": {"cpu": "150m"}}}
    ]}}));
    if overlay == Some(Overlay::InPlace) {
        resize_for_real(&admin_pods, &pods, &pod_name, &resize).await?;
    } else {
        forbidden(
            "resize a pod (pods/resize) without vertical-inplace",
            pods.patch_subresource("resize", &pod_name, &PatchParams::default(), &resize)
                .await,
        )?;
    }
    let sa_deployments: Api<Deployment> = Api::namespaced(sa.clone(), ns);
    sa_deployments.get("web").await?;
    Api::<Deployment>::all(sa.clone())
        .list(&ListParams::default().limit(5))
        .await?;
    Api::<StatefulSet>::all(sa.clone())
        .list(&ListParams::default().limit(5))
        .await?;
    // ReplicaSets: the scaler never reads them.
    forbidden(
        "list ReplicaSets",
        Api::<ReplicaSet>::namespaced(sa.clone(), ns)
            .list(&ListParams::default())
            .await,
    )?;
    let scale = sa_deployments.get_scale("web").await?;
    anyhow::ensure!(scale.spec.and_then(|s| s.replicas) == Some(1));
    sa_deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 2}})),
        )
        .await?;
    let replicas = deployments.get("web").await?.spec.and_then(|s| s.replicas);
    anyhow::ensure!(replicas == Some(2), "the scale patch took: {replicas:?}");
    // Template mode: a patch of the pod template's requests, only with its overlay. For a
    // StatefulSet, authorization comes before the lookup: 404 when allowed, 403 when not.
    let template = Patch::Strategic(
        serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "resources": {"requests": {"cpu": "120m"}}}
        ]}}}}),
    );
    let sa_statefulsets: Api<StatefulSet> = Api::namespaced(sa.clone(), ns);
    let statefulset_patch = sa_statefulsets
        .patch("none", &PatchParams::default(), &template)
        .await;
    if overlay == Some(Overlay::Template) {
        sa_deployments
            .patch("web", &PatchParams::default(), &template)
            .await?;
        match statefulset_patch {
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            other => anyhow::bail!("patch a missing StatefulSet: expected 404, got {other:?}"),
        }
    } else {
        forbidden(
            "patch a Deployment without vertical-template",
            sa_deployments
                .patch("web", &PatchParams::default(), &template)
                .await,
        )?;
        forbidden(
            "patch a StatefulSet without vertical-template",
            statefulset_patch,
        )?;
    }
    // Events: events.k8s.io through kube-runtime's recorder (create, then patch the series
    // on a repeat), and a core Event created and patched directly.
    let recorder = Recorder::new(
        sa.clone(),
        Reporter {
            controller: "tidal-scaler".to_string(),
            instance: Some("e2e".to_string()),
        },
    );
    let regarding = ObjectReference {
        api_version: Some("tidal.dev/v1alpha1".to_string()),
        kind: Some("ScalingPolicy".to_string()),
        name: Some("web".to_string()),
        namespace: Some(ns.to_string()),
        ..Default::default()
    };
    let event = RecorderEvent {
        type_: EventType::Normal,
        reason: "SuccessfulRescale".to_string(),
        note: Some("New size: 2".to_string()),
        action: "Scale".to_string(),
        secondary: None,
    };
    recorder.publish(&event, &regarding).await?;
    recorder.publish(&event, &regarding).await?;
    let core_events: Api<CoreEvent> = Api::namespaced(sa.clone(), ns);
    core_events
        .create(
            &PostParams::default(),
            &object(serde_json::json!({
                "metadata": {"name": "web.e2e"},
                "involvedObject": regarding,
                "reason": "SuccessfulRescale",
                "message": "New size: 2",
                "type": "Normal",
                "count": 1,
                "source": {"component": "tidal-scaler"}
            }))?,
        )
        .await?;
    core_events
        .patch(
            "web.e2e",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"count": 2})),
        )
        .await?;
    // The election Lease: the real elector creates `tidal-scaler` and keeps updating it.
    let (leadership, election) = Election {
        namespace: ns.to_string(),
        name: "tidal-scaler".to_string(),
        identity: "e2e".to_string(),
        duration: Duration::from_secs(3),
        purpose: "testing the scaler's RBAC",
    }
    .spawn(sa.clone());
    let elected = tokio::time::timeout(Duration::from_secs(10), leadership.wait_for(true)).await;
    // Renewals (updates) every second keep it: still leader two lease durations later.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let renewed = leadership.is_leader();
    election.abort();
    anyhow::ensure!(
        elected.is_ok(),
        "the scaler's token could not take the Lease"
    );
    anyhow::ensure!(renewed, "the scaler's token could not renew the Lease");
    let lease = Api::<Lease>::namespaced(admin.clone(), ns)
        .get("tidal-scaler")
        .await?
        .spec
        .unwrap_or_default();
    anyhow::ensure!(
        lease.holder_identity.as_deref() == Some("e2e")
            && lease.renew_time.as_ref().map(|t| t.0) > lease.acquire_time.as_ref().map(|t| t.0),
        "the Lease was created and then updated: {lease:?}"
    );

    // And nothing else (403, for real).
    forbidden(
        "delete a Deployment",
        sa_deployments.delete("web", &Default::default()).await,
    )?;
    forbidden(
        "list Secrets",
        Api::<Secret>::namespaced(sa.clone(), ns)
            .list(&ListParams::default())
            .await,
    )?;
    forbidden(
        "get a Secret",
        Api::<Secret>::namespaced(sa.clone(), ns).get("x").await,
    )?;
    forbidden(
        "create a Pod",
        pods.create(
            &PostParams::default(),
            &object(serde_json::json!({
                "metadata": {"name": "x"},
                "spec": {"containers": [{"name": "x", "image": "registry.invalid/x:1"}]}
            }))?,
        )
        .await,
    )?;
    forbidden(
        "delete a Pod",
        pods.delete(&pod_name, &Default::default()).await,
    )?;
    forbidden(
        "patch a Pod other than through resize",
        pods.patch(
            &pod_name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await,
    )?;
    forbidden(
        "patch a ScalingPolicy's spec",
        policies
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"maxReplicas": 9}})),
            )
            .await,
    )?;
    forbidden(
        "read another Lease",
        Api::<Lease>::namespaced(sa.clone(), ns).get("other").await,
    )?;
    forbidden(
        "create a Lease outside its own namespace",
        Api::<Lease>::namespaced(sa.clone(), "default")
            .create(
                &PostParams::default(),
                &object(serde_json::json!({"metadata": {"name": "tidal-scaler"}}))?,
            )
            .await,
    )?;

    // The whole matrix, as the authorizer answers it (SelfSubjectAccessReview).
    let mut wrong = Vec::new();
    let allowed: &[Access] = &[
        (
            ("tidal.dev", "scalingpolicies", ""),
            &["get", "list", "watch"],
            "",
        ),
        (
            ("tidal.dev", "scalingpolicies", "status"),
            &["get", "update", "patch"],
            "",
        ),
        (
            ("tidal.dev", "scalingpolicycheckpoints", ""),
            &["get", "create", "patch"],
            "",
        ),
        (("", "pods", ""), &["get", "list", "watch"], ""),
        (("apps", "deployments", ""), &["get", "list", "watch"], ""),
        (("apps", "statefulsets", ""), &["get", "list", "watch"], ""),
        (
            ("apps", "deployments", "scale"),
            &["get", "update", "patch"],
            "",
        ),
        (
            ("apps", "statefulsets", "scale"),
            &["get", "update", "patch"],
            "",
        ),
        (
            ("autoscaling", "horizontalpodautoscalers", ""),
            &["get", "list", "watch"],
            "",
        ),
        (("", "events", ""), &["create", "patch"], ""),
        (("events.k8s.io", "events", ""), &["create", "patch"], ""),
        (("coordination.k8s.io", "leases", ""), &["create"], ""),
        (
            ("coordination.k8s.io", "leases", ""),
            &["get", "update"],
            "tidal-scaler",
        ),
    ];
    let denied: &[Access] = &[
        (
            ("tidal.dev", "scalingpolicies", ""),
            &["create", "update", "patch", "delete"],
            "",
        ),
        (
            ("tidal.dev", "scalingpolicycheckpoints", ""),
            &["list", "watch", "update", "delete"],
            "",
        ),
        (
            ("", "pods", ""),
            &["create", "update", "patch", "delete", "deletecollection"],
            "",
        ),
        (("", "pods", "eviction"), &["create"], ""),
        (("", "pods", "exec"), &["create", "get"], ""),
        (("", "secrets", ""), &["get", "list", "watch"], ""),
        (("", "configmaps", ""), &["get", "list"], ""),
        (("", "nodes", ""), &["get", "list"], ""),
        (
            ("apps", "deployments", ""),
            &["create", "update", "delete"],
            "",
        ),
        (
            ("apps", "statefulsets", ""),
            &["create", "update", "delete"],
            "",
        ),
        (
            ("apps", "replicasets", ""),
            &["get", "list", "watch", "patch", "delete"],
            "",
        ),
        (("apps", "daemonsets", ""), &["get", "patch"], ""),
        (
            ("autoscaling", "horizontalpodautoscalers", ""),
            &["create", "update", "patch", "delete"],
            "",
        ),
        (("apps", "replicasets", "scale"), &["patch"], ""),
        (("", "events", ""), &["delete", "update"], ""),
        (
            ("coordination.k8s.io", "leases", ""),
            &["get", "update", "delete"],
            "other",
        ),
        (
            ("coordination.k8s.io", "leases", ""),
            &["delete", "list", "watch"],
            "tidal-scaler",
        ),
    ];
    // The vertical writes: granted by their overlay only; the other overlay's stay refused.
    let granted: &[Access] = overlay.map_or(&[], Overlay::rights);
    let refused: Vec<Access> = Overlay::ALL
        .into_iter()
        .filter(|o| Some(*o) != overlay)
        .flat_map(|o| o.rights().iter().copied())
        .collect();
    for (rows, expected) in [
        (allowed, true),
        (granted, true),
        (denied, false),
        (refused.as_slice(), false),
    ] {
        for &((group, resource, sub), verbs, name) in rows {
            for &verb in verbs {
                if can(&sa, (group, resource, sub, verb), ns, name).await? != expected {
                    wrong.push(format!(
                        "{verb} {group}/{resource}/{sub} {name} (expected allowed: {expected})"
                    ));
                }
            }
        }
    }
    // The Lease rights stop at its namespace.
    if can(
        &sa,
        ("coordination.k8s.io", "leases", "", "create"),
        "default",
        "",
    )
    .await?
    {
        wrong.push("create leases in default".to_string());
    }
    anyhow::ensure!(
        wrong.is_empty(),
        "the authorizer disagrees with the intended RBAC ({overlay:?}) on: {wrong:?}"
    );
    Ok(())
}

/// Resizes `pod_name` through `pods/resize` with `pods` (the scaler's token). The API server
/// refuses to resize a running pod whose container statuses lack `resources` (a kubelet
/// without resize support), and KWOK does not report them: the admin (`admin_pods`) reports
/// them as a 1.35 kubelet does, then the scaler's token resizes.
async fn resize_for_real(
    admin_pods: &Api<Pod>,
    pods: &Api<Pod>,
    pod_name: &str,
    resize: &Patch<serde_json::Value>,
) -> R {
    let mut attempts = 0;
    loop {
        let mut current = admin_pods.get(pod_name).await?;
        let resources = current
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].resources.clone());
        for status in current
            .status
            .iter_mut()
            .flat_map(|s| s.container_statuses.iter_mut().flatten())
        {
            status.resources = resources.clone();
        }
        admin_pods
            .replace_status(pod_name, &PostParams::default(), &current)
            .await?;
        match pods
            .patch_subresource("resize", pod_name, &PatchParams::default(), resize)
            .await
        {
            Ok(_) => return Ok(()),
            // KWOK rewrote the status in between: report the resources again.
            Err(kube::Error::Api(e)) if e.code == 422 && attempts < 5 => attempts += 1,
            Err(e) => return Err(anyhow::anyhow!("resize through pods/resize: {e}")),
        }
    }
}

// ---------------------------------------------------------------- overlays (issue #7)

/// `(kind, namespace, name)` of a rendered object.
fn overlay_dir(name: &str) -> PathBuf {
    repo_root().join("manifests/overlays").join(name)
}

/// The `job="..."` values the alert rules select on.
fn rule_jobs() -> anyhow::Result<BTreeSet<String>> {
    let mut jobs = BTreeSet::new();
    for file in RULE_FILES {
        let text = std::fs::read_to_string(repo_root().join("manifests/rules").join(file))?;
        for part in text.split("job=\"").skip(1) {
            if let Some((job, _)) = part.split_once('"') {
                jobs.insert(job.to_string());
            }
        }
    }
    Ok(jobs)
}

/// The workloads scraped, each with its pod template path: `(kind, name)`.
const SCRAPED: &[(&str, &str)] = &[("DaemonSet", "tidal-agent"), ("Deployment", "tidal-scaler")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlays_render_and_keep_the_base() -> R {
    let stack = Stack::load()?;
    let admin = stack.admin_client().await?;
    ensure_crd(&stack)?;
    let base = documents(&render_base(&stack)?)?;
    let jobs = rule_jobs()?;
    anyhow::ensure!(
        jobs == BTreeSet::from(["tidal-agent".to_string(), "tidal-scaler".to_string()]),
        "the rules select jobs {jobs:?}"
    );
    check_operator_overlay(&stack, &base, &jobs)?;
    let plain = render_overlay(&stack, "plain-prometheus")?;
    check_plain_overlay(&base, &documents(&plain)?)?;
    check_scrape_snippet(&base, &jobs)?;
    check_network_policies(&base)?;
    let mut vertical = Vec::new();
    for o in Overlay::ALL {
        let yaml = render_overlay(&stack, o.name())?;
        check_vertical_overlay(&base, o, &documents(&yaml)?)?;
        vertical.push((o, yaml));
    }
    // The stack's own install (docs/real-node.md), applied for real by the real-node tests.
    let local = render_overlay(&stack, "local")?;
    in_namespace(&admin, "overlay", |ns| async move {
        dry_run_plain_overlay(&stack, &plain, &ns)?;
        dry_run_overlay(&stack, "local", &local, &ns)?;
        for (o, yaml) in &vertical {
            dry_run_overlay(&stack, o.name(), yaml, &ns)?;
        }
        Ok(())
    })
    .await
}

/// A vertical overlay is the base object for object, plus exactly one ClusterRole
/// `tidal-scaler-<overlay>` with the overlay's rules and one ClusterRoleBinding of it to the
/// scaler's ServiceAccount: nothing else is granted.
fn check_vertical_overlay(
    base: &BTreeMap<Key, serde_json::Value>,
    overlay: Overlay,
    docs: &BTreeMap<Key, serde_json::Value>,
) -> R {
    let o = overlay.name();
    for (k, object) in base {
        anyhow::ensure!(docs.get(k) == Some(object), "{o}: {k:?} is not the base's");
    }
    let name = format!("tidal-scaler-{o}");
    let added: BTreeSet<&Key> = docs.keys().filter(|k| !base.contains_key(*k)).collect();
    let role_key = ("ClusterRole".to_string(), String::new(), name.clone());
    let binding_key = (
        "ClusterRoleBinding".to_string(),
        String::new(),
        name.clone(),
    );
    anyhow::ensure!(
        added == BTreeSet::from([&role_key, &binding_key]),
        "{o}: adds {added:?}, expected exactly ClusterRole and ClusterRoleBinding {name}"
    );
    let role = &docs[&role_key];
    anyhow::ensure!(
        role["rules"] == overlay.rules(),
        "{o}: ClusterRole {name} has rules {}, expected {}",
        role["rules"],
        overlay.rules()
    );
    let binding = &docs[&binding_key];
    anyhow::ensure!(
        binding["roleRef"]
            == serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name})
            && binding["subjects"]
                == serde_json::json!([{"kind": "ServiceAccount", "name": "tidal-scaler", "namespace": "tidal-system"}]),
        "{o}: the binding {binding} is not of {name} to tidal-system/tidal-scaler"
    );
    Ok(())
}

/// The base's NetworkPolicies: one per component, selecting its pods (its pod template's
/// labels), Ingress only (egress stays open: the API server, Prometheus, Kafka, the agents),
/// from any namespace, to the container's metrics port only.
fn check_network_policies(base: &BTreeMap<Key, serde_json::Value>) -> R {
    for (kind, name) in SCRAPED {
        let np = base
            .get(&(
                "NetworkPolicy".to_string(),
                "tidal-system".to_string(),
                name.to_string(),
            ))
            .ok_or_else(|| anyhow::anyhow!("the base has no NetworkPolicy {name}"))?;
        let workload = base
            .get(&(
                kind.to_string(),
                "tidal-system".to_string(),
                name.to_string(),
            ))
            .ok_or_else(|| anyhow::anyhow!("the base has no {kind} {name}"))?;
        let template = &workload["spec"]["template"];
        let port = template["spec"]["containers"][0]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "metrics")
            .map(|p| p["containerPort"].clone())
            .ok_or_else(|| anyhow::anyhow!("{kind} {name}: no metrics port"))?;
        let selector = np["spec"]["podSelector"]["matchLabels"]
            .as_object()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| anyhow::anyhow!("NetworkPolicy {name}: no podSelector"))?;
        anyhow::ensure!(
            selector
                .iter()
                .all(|(l, v)| &template["metadata"]["labels"][l.as_str()] == v),
            "NetworkPolicy {name}: the podSelector does not select the {kind}'s pods"
        );
        anyhow::ensure!(
            np["spec"]["policyTypes"] == serde_json::json!(["Ingress"])
                && np["spec"]["egress"].is_null(),
            "NetworkPolicy {name}: must restrict ingress only, egress stays open"
        );
        anyhow::ensure!(
            np["spec"]["ingress"]
                == serde_json::json!([{
                    "from": [{"namespaceSelector": {}}],
                    "ports": [{"protocol": "TCP", "port": port}]
                }]),
            "NetworkPolicy {name}: ingress {} is not the metrics port {port} from the cluster",
            np["spec"]["ingress"]
        );
    }
    Ok(())
}

/// The plain-prometheus overlay is the base, except for three annotations on the agent's and
/// the scaler's pod templates, whose port is the container's `metrics` port.
fn check_plain_overlay(
    base: &BTreeMap<Key, serde_json::Value>,
    plain: &BTreeMap<Key, serde_json::Value>,
) -> R {
    let (bk, pk): (BTreeSet<&Key>, BTreeSet<&Key>) =
        (base.keys().collect(), plain.keys().collect());
    anyhow::ensure!(
        bk == pk,
        "plain-prometheus: objects differ from the base: {:?}",
        bk.symmetric_difference(&pk).collect::<Vec<_>>()
    );
    for (k, object) in plain {
        let mut object = object.clone();
        if SCRAPED.contains(&(k.0.as_str(), k.2.as_str())) {
            let template = &mut object["spec"]["template"];
            let port = template["spec"]["containers"][0]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "metrics")
                .and_then(|p| p["containerPort"].as_i64())
                .ok_or_else(|| anyhow::anyhow!("plain-prometheus: {k:?} has no metrics port"))?;
            let want = serde_json::json!({
                "prometheus.io/scrape": "true",
                "prometheus.io/port": port.to_string(),
                "prometheus.io/path": "/metrics",
            });
            let annotations = template["metadata"]
                .as_object_mut()
                .and_then(|m| m.remove("annotations"))
                .unwrap_or_default();
            anyhow::ensure!(
                annotations == want,
                "plain-prometheus: {k:?} pod annotations are {annotations}, expected {want}"
            );
        }
        anyhow::ensure!(
            Some(&object) == base.get(k),
            "plain-prometheus: {k:?} differs from the base beyond the scrape annotations"
        );
    }
    Ok(())
}

/// `manifests/overlays/plain-prometheus/prometheus-scrape.yaml`: one job per rule job, pod
/// discovery in the base's namespace, keep on the app label of the workload and on the
/// annotation; its rule files are the repository's. Then `promtool check config`.
fn check_scrape_snippet(base: &BTreeMap<Key, serde_json::Value>, jobs: &BTreeSet<String>) -> R {
    let path = overlay_dir("plain-prometheus").join("prometheus-scrape.yaml");
    let text = std::fs::read_to_string(&path)?;
    let config: serde_json::Value = serde_norway::from_str(&text)?;
    let bad = |what: String| anyhow::anyhow!("{}: {what}", path.display());
    let rule_files: Vec<&str> = config["rule_files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str())
        .collect();
    if rule_files != RULE_FILES {
        return Err(bad(format!(
            "rule_files {rule_files:?}, expected {RULE_FILES:?}"
        )));
    }
    let namespace = base
        .keys()
        .find(|k| k.0 == "Namespace")
        .map(|k| k.2.clone())
        .ok_or_else(|| bad("the base has no Namespace".into()))?;
    let mut seen = BTreeSet::new();
    for job in config["scrape_configs"].as_array().into_iter().flatten() {
        let name = job["job_name"].as_str().unwrap_or_default().to_string();
        let sd = &job["kubernetes_sd_configs"];
        if sd.as_array().map(Vec::len) != Some(1)
            || sd[0]["role"] != "pod"
            || sd[0]["namespaces"]["names"] != serde_json::json!([namespace])
        {
            return Err(bad(format!(
                "job {name}: not pod discovery in {namespace}: {sd}"
            )));
        }
        let relabel = job["relabel_configs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let keeps = |label: &str, regex: &str| {
            relabel.iter().any(|r| {
                r["action"] == "keep"
                    && r["source_labels"] == serde_json::json!([label])
                    && r["regex"] == regex
            })
        };
        if !keeps("__meta_kubernetes_pod_label_app_kubernetes_io_name", &name)
            || !keeps(
                "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
                "true",
            )
        {
            return Err(bad(format!(
                "job {name}: must keep pods labelled app.kubernetes.io/name={name} and annotated prometheus.io/scrape=true"
            )));
        }
        let labels_pods = base.iter().any(|(k, o)| {
            SCRAPED.contains(&(k.0.as_str(), k.2.as_str()))
                && o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == name
        });
        if !labels_pods {
            return Err(bad(format!(
                "job {name}: no scraped workload of the base has pods labelled so"
            )));
        }
        for r in &relabel {
            if matches!(
                r["target_label"].as_str(),
                Some("namespace" | "pod" | "container")
            ) {
                return Err(bad(format!(
                    "job {name}: target label {} would rename the series' own label",
                    r["target_label"]
                )));
            }
        }
        seen.insert(name);
    }
    if &seen != jobs {
        return Err(bad(format!("jobs {seen:?}, the rules select {jobs:?}")));
    }
    promtool_check_config(&text)
}

/// `promtool check config` on a prometheus.yml made of a global section and the snippet, with
/// the rule files beside it. Debian's promtool (the stack's) is built without Kubernetes
/// service discovery, so each `kubernetes_sd_configs` is swapped for a `static_configs` target
/// with a pod's address; everything else (relabelling, jobs, rule files) is checked as
/// written. With `TIDAL_PROMTOOL_K8S` (the stack's env file sets it) naming a promtool that
/// has Kubernetes SD, the snippet is also checked unchanged.
fn promtool_check_config(snippet: &str) -> R {
    let dir = std::env::temp_dir().join(unique("tidal-scrape"));
    std::fs::create_dir_all(&dir)?;
    for f in RULE_FILES {
        std::fs::copy(repo_root().join("manifests/rules").join(f), dir.join(f))?;
    }
    let global = "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n";
    let swapped = snippet.replace(
        "kubernetes_sd_configs:\n      - role: pod\n        namespaces:\n          names: [tidal-system]\n",
        "static_configs:\n      - targets: [\"10.0.0.1:9464\"]\n",
    );
    anyhow::ensure!(
        !swapped.contains("kubernetes_sd_configs"),
        "prometheus-scrape.yaml: a kubernetes_sd_configs block of another shape"
    );
    let mut runs = vec![("promtool".to_string(), format!("{global}{swapped}"))];
    // The stack builds Prometheus (and its promtool) from the Go module proxy with Kubernetes
    // SD (docs/real-node.md), and names it in its env file.
    let k8s = std::env::var("TIDAL_PROMTOOL_K8S").ok().or_else(|| {
        Stack::load()
            .ok()
            .and_then(|s| s.var("TIDAL_PROMTOOL_K8S").ok().map(str::to_string))
    });
    if let Some(k8s) = k8s {
        runs.push((k8s, format!("{global}{snippet}")));
    }
    let result = (|| {
        for (promtool, config) in runs {
            std::fs::write(dir.join("prometheus.yml"), config)?;
            let out = Command::new(&promtool)
                .args(["check", "config", "prometheus.yml"])
                .current_dir(&dir)
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "{promtool} check config (the plain-prometheus scrape snippet): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A server-side dry run of every object of the plain-prometheus overlay, namespaced objects
/// moved to `ns` (tidal-system belongs to the base test, which installs and deletes it
/// concurrently; its Namespace object is the base's, dry-run there). The API server keeps the
/// scrape annotations on both pod templates.
fn dry_run_plain_overlay(stack: &Stack, yaml: &str, ns: &str) -> R {
    let answered = dry_run_overlay(stack, "plain-prometheus", yaml, ns)?;
    for (kind, name) in SCRAPED {
        let object = answered
            .iter()
            .find(|o| o["kind"] == *kind && o["metadata"]["name"] == *name)
            .ok_or_else(|| anyhow::anyhow!("plain-prometheus: dry run lost {kind} {name}"))?;
        let annotations = &object["spec"]["template"]["metadata"]["annotations"];
        anyhow::ensure!(
            annotations["prometheus.io/scrape"] == "true"
                && annotations["prometheus.io/path"] == "/metrics"
                && annotations["prometheus.io/port"].is_string(),
            "plain-prometheus: the API server's {kind} {name} has annotations {annotations}"
        );
    }
    Ok(())
}

/// A server-side dry run of every object of overlay `name` (rendered as `yaml`), namespaced
/// objects moved to `ns`; returns the API server's answer, one object per object sent.
fn dry_run_overlay(
    stack: &Stack,
    name: &str,
    yaml: &str,
    ns: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut items = Vec::new();
    for mut object in rendered_objects(stack, yaml)? {
        if object["kind"] == "Namespace" {
            continue;
        }
        if object["metadata"]["namespace"].is_string() {
            object["metadata"]["namespace"] = ns.into();
        }
        items.push(object);
    }
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    // Server-side apply: a single request per object, so a cluster-wide object the base test
    // deletes meanwhile cannot turn a patch into a 404.
    let out = kubectl(
        stack,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=tidal-e2e-dry-run",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
        ],
        Some(&list.to_string()),
    )
    .map_err(|e| anyhow::anyhow!("{name}: server-side dry run: {e}"))?;
    let answer: serde_json::Value = serde_json::from_str(&out)?;
    let answered = answer["items"].as_array().cloned().unwrap_or_default();
    anyhow::ensure!(
        answered.len() == items.len(),
        "{name}: dry run answered {} of {} objects",
        answered.len(),
        items.len()
    );
    Ok(answered)
}

/// The prometheus-operator overlay: the base unchanged, a ServiceMonitor per rule job that
/// selects exactly the Service of that name on its port names (so the operator's job label,
/// the Service name, is the rules' job), and a PrometheusRule holding the rule files' groups.
/// The monitoring.coreos.com CRDs are not on the stack, so this checks shape, not a dry run.
fn check_operator_overlay(
    stack: &Stack,
    base: &BTreeMap<Key, serde_json::Value>,
    jobs: &BTreeSet<String>,
) -> R {
    let docs = documents(&render_overlay(stack, "prometheus-operator")?)?;
    let bad = |k: &Key, what: String| anyhow::anyhow!("prometheus-operator: {k:?}: {what}");
    for (k, object) in base {
        anyhow::ensure!(
            docs.get(k) == Some(object),
            "prometheus-operator: {k:?} is not the base's"
        );
    }
    let services: Vec<&serde_json::Value> = base
        .iter()
        .filter(|(k, _)| k.0 == "Service")
        .map(|(_, o)| o)
        .collect();
    let mut monitors = BTreeSet::new();
    let mut rule = None;
    for (k, object) in docs.iter().filter(|(k, _)| !base.contains_key(*k)) {
        if object["apiVersion"] != "monitoring.coreos.com/v1" || k.1 != "tidal-system" {
            return Err(bad(
                k,
                "not monitoring.coreos.com/v1 in tidal-system".into(),
            ));
        }
        match k.0.as_str() {
            "ServiceMonitor" => {
                let spec = &object["spec"];
                let wanted = spec["selector"]["matchLabels"]
                    .as_object()
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| bad(k, "no selector.matchLabels".into()))?;
                let selected: Vec<&&serde_json::Value> = services
                    .iter()
                    .filter(|s| {
                        wanted
                            .iter()
                            .all(|(l, v)| &s["metadata"]["labels"][l.as_str()] == v)
                    })
                    .collect();
                let [service] = selected.as_slice() else {
                    return Err(bad(
                        k,
                        format!("selects {} Services, expected 1", selected.len()),
                    ));
                };
                let service_name = service["metadata"]["name"].as_str().unwrap_or_default();
                if service_name != k.2 || !jobs.contains(service_name) {
                    return Err(bad(
                        k,
                        format!(
                            "selects Service {service_name}: the job label would not be one the rules use ({jobs:?})"
                        ),
                    ));
                }
                if !spec["jobLabel"].is_null()
                    || !(spec["namespaceSelector"].is_null()
                        || spec["namespaceSelector"]["matchNames"] == serde_json::json!([k.1]))
                {
                    return Err(bad(
                        k,
                        "jobLabel or namespaceSelector changes the job or namespace".into(),
                    ));
                }
                let ports: BTreeSet<&str> = service["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                let endpoints = spec["endpoints"].as_array().cloned().unwrap_or_default();
                if endpoints.is_empty() {
                    return Err(bad(k, "no endpoints".into()));
                }
                for e in &endpoints {
                    if !e["port"].as_str().is_some_and(|p| ports.contains(p))
                        || e["path"] != "/metrics"
                        || e["honorLabels"] != true
                    {
                        return Err(bad(
                            k,
                            format!(
                                "endpoint {e}: needs a port name of the Service ({ports:?}), path /metrics and honorLabels: true"
                            ),
                        ));
                    }
                }
                monitors.insert(k.2.clone());
            }
            "PrometheusRule" => rule = Some(object),
            other => return Err(bad(k, format!("unexpected {other}"))),
        }
    }
    anyhow::ensure!(
        &monitors == jobs,
        "prometheus-operator: ServiceMonitors {monitors:?}, the rules select jobs {jobs:?}"
    );
    let rule = rule.ok_or_else(|| anyhow::anyhow!("prometheus-operator: no PrometheusRule"))?;
    let mut groups = Vec::new();
    for file in RULE_FILES {
        let text = std::fs::read_to_string(repo_root().join("manifests/rules").join(file))?;
        let parsed: serde_json::Value = serde_norway::from_str(&text)?;
        groups.extend(parsed["groups"].as_array().cloned().unwrap_or_default());
    }
    anyhow::ensure!(
        rule["spec"]["groups"] == serde_json::Value::Array(groups),
        "prometheus-operator: the PrometheusRule's groups differ from manifests/rules/*.rules.yaml: run manifests/overlays/prometheus-operator/generate-rules.sh"
    );
    Ok(())
}

//! The real manifests on the real API server: kubectl with the stack's admin kubeconfig, the
//! kustomize base (or an overlay) rendered, the shared CRD, and the scaler's rendered RBAC
//! bound to a ServiceAccount of a test namespace ([`ScalerRbac`]), so tests run the scaler with
//! exactly the rights the manifests give it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::Value;

use crate::{Stack, client_for_kubeconfig, repo_root, unique, wait_for};

/// The rule files of `manifests/rules`, in the order the PrometheusRule (the
/// prometheus-operator overlay's and the Helm chart's) carries their groups: the alerts of the
/// agent and of the scaler, then the recording rules the dashboards read.
pub const RULE_FILES: &[&str] = &[
    "tidal-agent.rules.yaml",
    "tidal-scaler.rules.yaml",
    "tidal-recording.rules.yaml",
];

/// Runs the stack's kubectl as admin with `stdin`; fails with kubectl's stderr; returns stdout.
pub fn kubectl(stack: &Stack, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    kubectl_with_warnings(stack, args, stdin).map(|(stdout, _)| stdout)
}

/// Like [`kubectl`], also returning stderr (where kubectl prints the API server's warnings).
pub fn kubectl_with_warnings(
    stack: &Stack,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<(String, String)> {
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
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `kubectl kustomize manifests/base`: the base as a multi-document YAML stream.
pub fn render_base(stack: &Stack) -> anyhow::Result<String> {
    let base = repo_root().join("manifests/base");
    kubectl(stack, &["kustomize", &base.display().to_string()], None)
}

/// Applies the ScalingPolicy and ScalingPolicyCheckpoint CRDs (one file) and waits until both
/// are served. They are cluster-wide and shared by concurrent tests: never delete them.
pub fn ensure_crd(stack: &Stack) -> anyhow::Result<()> {
    let crd = repo_root().join("manifests/crd/scalingpolicy.yaml");
    let path = crd.display().to_string();
    // Two tests applying it at once on a fresh stack: one creates it, the other's create
    // fails with AlreadyExists; applying again then updates it.
    if let Err(first) = kubectl(stack, &["apply", "-f", &path], None) {
        if !first.to_string().contains("AlreadyExists") {
            return Err(first);
        }
        kubectl(stack, &["apply", "-f", &path], None)?;
    }
    kubectl(
        stack,
        &[
            "wait",
            "--for=condition=Established",
            "crd/scalingpolicies.tidal.dev",
            "crd/scalingpolicycheckpoints.tidal.dev",
            "--timeout=30s",
        ],
        None,
    )?;
    Ok(())
}

/// A rendered YAML stream as JSON objects (kubectl converts; a `List` is flattened).
pub fn rendered_objects(stack: &Stack, yaml: &str) -> anyhow::Result<Vec<Value>> {
    let json = kubectl(
        stack,
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        Some(yaml),
    )?;
    let mut objects = Vec::new();
    for value in serde_json::Deserializer::from_str(&json).into_iter::<Value>() {
        let value = value?;
        match value["items"].as_array() {
            Some(items) if value["kind"] == "List" => objects.extend(items.iter().cloned()),
            _ => objects.push(value),
        }
    }
    Ok(objects)
}

/// `(kind, namespace, name)` of an object.
pub type Key = (String, String, String);

/// The key of `object`.
pub fn key(object: &Value) -> Key {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&object["kind"]),
        s(&object["metadata"]["namespace"]),
        s(&object["metadata"]["name"]),
    )
}

/// The documents of a multi-document YAML stream (kustomize's or Helm's rendering), keyed by
/// kind, namespace and name; an object rendered twice is an error.
pub fn documents(yaml: &str) -> anyhow::Result<std::collections::BTreeMap<Key, Value>> {
    use serde::Deserialize as _;
    let mut out = std::collections::BTreeMap::new();
    for doc in serde_norway::Deserializer::from_str(yaml) {
        let value = Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        let k = key(&value);
        anyhow::ensure!(
            out.insert(k.clone(), value).is_none(),
            "rendered twice: {k:?}"
        );
    }
    Ok(out)
}

/// `kubectl kustomize manifests/overlays/<name>`.
pub fn render_overlay(stack: &Stack, name: &str) -> anyhow::Result<String> {
    let dir = repo_root().join("manifests/overlays").join(name);
    kubectl(stack, &["kustomize", &dir.display().to_string()], None)
        .map_err(|e| anyhow::anyhow!("overlay {name} does not render: {e}"))
}

/// The scaler's ServiceAccount and RBAC exactly as rendered, moved to namespace `ns`: the
/// ServiceAccount, Role and RoleBinding go to `ns`, the bindings' subject to `ns`, and the
/// cluster-wide ClusterRoles and ClusterRoleBindings (`tidal-scaler`, and an overlay's
/// `tidal-scaler-<suffix>`) are renamed `cluster_name[-<suffix>]` (the base test installs and
/// deletes the real ones concurrently). Rules are untouched, so the Lease the Role allows is
/// still `tidal-scaler`, now in `ns`. Returns a `List`.
pub fn scaler_rbac_in(objects: &[Value], ns: &str, cluster_name: &str) -> anyhow::Result<Value> {
    const PREFIX: &str = "tidal-scaler";
    let renamed = |name: &str| -> String {
        match name.strip_prefix(PREFIX) {
            Some(suffix) => format!("{cluster_name}{suffix}"),
            None => name.to_string(),
        }
    };
    let mut items = Vec::new();
    let mut cluster_wide = 0;
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let scalers = name == PREFIX || name.starts_with("tidal-scaler-");
        let keep = match kind {
            "ServiceAccount" => name == PREFIX,
            "Role" | "RoleBinding" => name == "tidal-scaler-lease",
            "ClusterRole" | "ClusterRoleBinding" => scalers,
            _ => false,
        };
        if !keep {
            continue;
        }
        let mut object = object.clone();
        match kind {
            "ClusterRole" => {
                cluster_wide += 1;
                object["metadata"]["name"] = renamed(name).into();
            }
            "ClusterRoleBinding" => {
                cluster_wide += 1;
                object["metadata"]["name"] = renamed(name).into();
                let role = object["roleRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                object["roleRef"]["name"] = renamed(&role).into();
            }
            _ => object["metadata"]["namespace"] = ns.into(),
        }
        for subject in object["subjects"].as_array_mut().into_iter().flatten() {
            anyhow::ensure!(
                subject["kind"] == "ServiceAccount" && subject["name"] == PREFIX,
                "{kind} {name} binds {subject}, not the scaler's ServiceAccount"
            );
            subject["namespace"] = ns.into();
        }
        items.push(object);
    }
    anyhow::ensure!(
        items.len() == 3 + cluster_wide && cluster_wide >= 2 && cluster_wide % 2 == 0,
        "expected the scaler's ServiceAccount, Role(Binding) and ClusterRole(Binding)s (in pairs), found {} objects",
        items.len()
    );
    Ok(serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// Writes `dir/kubeconfig` holding a fresh token (TokenRequest, 10 minutes) of the
/// ServiceAccount `namespace/name`; a client on it has exactly that account's RBAC.
pub async fn token_kubeconfig(
    stack: &Stack,
    admin: &kube::Client,
    namespace: &str,
    name: &str,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let tr = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = sas
        .create_token_request(name, &PostParams::default(), &tr)
        .await?
        .status
        .map(|s| s.token)
        .ok_or_else(|| anyhow::anyhow!("no token for {namespace}/{name}"))?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            stack.var("TIDAL_APISERVER")?,
            stack.var("TIDAL_CA_FILE")?
        ),
    )?;
    Ok(kubeconfig)
}

/// Asks the API server whether the caller may do `verb` on `group/resource[/subresource]`
/// (SelfSubjectAccessReview; empty strings leave a field out).
pub async fn can(
    client: &kube::Client,
    (group, resource, subresource, verb): (&str, &str, &str, &str),
    namespace: &str,
    name: &str,
) -> anyhow::Result<bool> {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.to_string()),
                resource: some(resource),
                subresource: some(subresource),
                verb: some(verb),
                namespace: some(namespace),
                name: some(name),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// The manifests' scaler RBAC installed for the ServiceAccount `tidal-scaler` of a test
/// namespace ([`scaler_rbac_in`]), with a kubeconfig holding that account's token. The
/// namespaced objects go with the namespace; [`remove`](Self::remove) deletes the
/// cluster-wide ones.
pub struct ScalerRbac {
    /// A kubeconfig for the stack's API server with the ServiceAccount's token.
    pub kubeconfig: PathBuf,
    /// The ClusterRole and ClusterRoleBinding's (unique) name.
    pub cluster_name: String,
    /// The objects applied (a `List`, JSON).
    pub objects: Value,
    dir: PathBuf,
}

impl ScalerRbac {
    /// Renders the base, applies its scaler RBAC moved to `ns`, and returns once the
    /// authorizer applies it (RBAC reaches its cache within moments).
    pub async fn install(stack: &Stack, admin: &kube::Client, ns: &str) -> anyhow::Result<Self> {
        Self::install_named(stack, admin, ns, &unique("tidal-scaler-e2e")).await
    }

    /// Like [`install`](Self::install), the ClusterRole and ClusterRoleBinding named
    /// `cluster_name`: a caller that must remove them even when the install is cancelled
    /// half-way records the name before calling this.
    pub async fn install_named(
        stack: &Stack,
        admin: &kube::Client,
        ns: &str,
        cluster_name: &str,
    ) -> anyhow::Result<Self> {
        Self::install_rendered(stack, admin, ns, &render_base(stack)?, cluster_name).await
    }

    /// Like [`install`](Self::install), with the scaler RBAC of the overlay
    /// `manifests/overlays/<overlay>` (the base's plus the overlay's ClusterRoles).
    pub async fn install_with(
        stack: &Stack,
        admin: &kube::Client,
        ns: &str,
        overlay: &str,
    ) -> anyhow::Result<Self> {
        let name = unique("tidal-scaler-e2e");
        Self::install_rendered(stack, admin, ns, &render_overlay(stack, overlay)?, &name).await
    }

    async fn install_rendered(
        stack: &Stack,
        admin: &kube::Client,
        ns: &str,
        yaml: &str,
        cluster_name: &str,
    ) -> anyhow::Result<Self> {
        let objects = rendered_objects(stack, yaml)?;
        let cluster_name = cluster_name.to_string();
        let objects = scaler_rbac_in(&objects, ns, &cluster_name)?;
        let dir = std::env::temp_dir().join(unique("tidal-scaler-sa"));
        let rbac = Self {
            kubeconfig: dir.join("kubeconfig"),
            cluster_name,
            objects,
            dir,
        };
        // From here on, a failure still removes what was applied.
        match rbac.apply(stack, admin, ns).await {
            Ok(()) => Ok(rbac),
            Err(e) => {
                let _ = rbac.remove(stack);
                Err(e)
            }
        }
    }

    async fn apply(&self, stack: &Stack, admin: &kube::Client, ns: &str) -> anyhow::Result<()> {
        kubectl(
            stack,
            &["apply", "-f", "-"],
            Some(&self.objects.to_string()),
        )?;
        std::fs::create_dir_all(&self.dir)?;
        let kubeconfig = token_kubeconfig(stack, admin, ns, "tidal-scaler", &self.dir).await?;
        let client = client_for_kubeconfig(&kubeconfig).await?;
        wait_for(
            "the scaler's RBAC to take effect",
            Duration::from_secs(30),
            || async {
                let policies = ("tidal.dev", "scalingpolicies", "", "list");
                let lease = ("coordination.k8s.io", "leases", "", "update");
                if !(can(&client, policies, "", "").await.ok()?
                    && can(&client, lease, ns, "tidal-scaler").await.ok()?)
                {
                    return None;
                }
                // Each ClusterRole's first right (an overlay's are separate objects).
                for (group, resource, verb) in self.first_rights() {
                    let (resource, sub) = resource.split_once('/').unwrap_or((&resource, ""));
                    if !can(&client, (&group, resource, sub, &verb), ns, "")
                        .await
                        .ok()?
                    {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await?;
        Ok(())
    }

    /// `(group, resource, verb)` of the first rule of every ClusterRole applied.
    fn first_rights(&self) -> Vec<(String, String, String)> {
        let first = |v: &Value| v[0].as_str().unwrap_or_default().to_string();
        self.objects["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["kind"] == "ClusterRole")
            .filter_map(|o| {
                let rule = &o["rules"][0];
                rule.is_object().then(|| {
                    (
                        first(&rule["apiGroups"]),
                        first(&rule["resources"]),
                        first(&rule["verbs"]),
                    )
                })
            })
            .collect()
    }

    /// Deletes the cluster-wide ClusterRole and ClusterRoleBinding (and the namespaced objects,
    /// if the namespace is still there) and the kubeconfig.
    pub fn remove(&self, stack: &Stack) -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(&self.dir);
        kubectl(
            stack,
            &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
            Some(&self.objects.to_string()),
        )?;
        Ok(())
    }
}

/// The memory limit (bytes) of the `scaler` container of the base's `tidal-scaler` Deployment,
/// as rendered (`kubectl kustomize manifests/base`).
pub fn scaler_memory_limit(stack: &Stack) -> anyhow::Result<u64> {
    let objects = rendered_objects(stack, &render_base(stack)?)?;
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "tidal-scaler")
        .ok_or_else(|| anyhow::anyhow!("manifests/base renders no Deployment tidal-scaler"))?;
    let limit = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "scaler"))
        .and_then(|c| c["resources"]["limits"]["memory"].as_str())
        .ok_or_else(|| anyhow::anyhow!("the tidal-scaler Deployment has no memory limit"))?;
    let bytes = tidal_scaler::api::parse_quantity(limit)
        .map_err(|e| anyhow::anyhow!("memory limit {limit:?} {e}"))?;
    anyhow::ensure!(bytes > 0.0, "memory limit {limit:?} is not positive");
    Ok(bytes as u64)
}

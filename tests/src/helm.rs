//! The Helm chart (`charts/tidal`) on the stack: the stack's helm, the values of a release on
//! the real node, and a release uninstalled when the test stops ([`Release`]).

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::builders::SCALER_LABEL;
use crate::manifests::kubectl;
use crate::realnode::{NODE_LABEL, NODE_TAINT};
use crate::{Stack, repo_root};

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/tidal")
}

/// Runs the stack's helm; fails with its stderr; returns stdout.
pub fn helm(stack: &Stack, args: &[&str]) -> anyhow::Result<String> {
    let out = helm_output(stack, args)?;
    anyhow::ensure!(
        out.status.success(),
        "helm {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the stack's helm with the admin kubeconfig, whatever its exit status.
pub fn helm_output(stack: &Stack, args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(stack.var("TIDAL_HELM")?)
        .arg("--kubeconfig")
        .arg(stack.var("TIDAL_KUBECONFIG")?)
        .args(args)
        .output()?)
}

/// Labels `ns` for the privileged Pod Security level, as the chart's NOTES ask: the agent's
/// hostPath mounts need it.
pub fn allow_privileged(stack: &Stack, ns: &str) -> anyhow::Result<()> {
    kubectl(
        stack,
        &[
            "label",
            "namespace",
            ns,
            "pod-security.kubernetes.io/enforce=privileged",
        ],
        None,
    )?;
    Ok(())
}

/// The policy selector of a release installed in `ns`: its policies carry
/// [`SCALER_LABEL`]`=<ns>` (`crate::scaler::labelled_policy(.., ns, ..)`).
pub fn release_selector(ns: &str) -> String {
    format!("{SCALER_LABEL}={ns}")
}

/// Values for a release on the stack's real node: the local image, the node's selector and
/// taint, the API server, Prometheus and Kafka at the node IP (no kube-proxy), and only the
/// policies matching `selector`.
pub fn real_node_values(stack: &Stack, selector: &str) -> anyhow::Result<Value> {
    let api = stack.var("TIDAL_POD_APISERVER")?;
    let (host, port) = api
        .trim_start_matches("https://")
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("TIDAL_POD_APISERVER {api}: no port"))?;
    let in_cluster = json!([
        {"name": "KUBERNETES_SERVICE_HOST", "value": host},
        {"name": "KUBERNETES_SERVICE_PORT", "value": port},
    ]);
    Ok(json!({
        "image": {"repository": "tidal.local/tidal", "tag": "dev", "pullPolicy": "Never"},
        "agent": {
            "nodeSelector": {NODE_LABEL.0: NODE_LABEL.1},
            "extraEnv": in_cluster,
            // The stack's Kafka: the agent's lag sampler runs from the chart's ConfigMap.
            "kafka": {"config": {"interval_seconds": 2, "clusters": [
                {"name": "local", "bootstrap": [stack.var("TIDAL_POD_KAFKA_BOOTSTRAP")?]}
            ]}},
        },
        "scaler": {
            "nodeSelector": {NODE_LABEL.0: NODE_LABEL.1},
            "tolerations": [{"key": NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
            "extraEnv": in_cluster,
            "prometheusUrl": stack.var("TIDAL_POD_PROMETHEUS_URL")?,
            "kafkaClusters": {"local": [stack.var("TIDAL_POD_KAFKA_BOOTSTRAP")?]},
            "policySelector": selector,
        },
    }))
}

/// A release of the chart named `tidal` in a test namespace, uninstalled (and its values file
/// removed) when dropped, so a failing test leaves nothing installed.
pub struct Release<'a> {
    stack: &'a Stack,
    pub ns: String,
    values_file: PathBuf,
    installed: bool,
}

impl<'a> Release<'a> {
    pub const NAME: &'static str = "tidal";

    /// `helm install tidal charts/tidal` in `ns` with `values`, cluster-scoped names of its
    /// own (`fullnameOverride=<ns>`: the in-cluster install in tidal-system holds the
    /// defaults), waiting until every object is Ready. Fails unless the release is deployed.
    pub fn install(stack: &'a Stack, ns: &str, values: &Value) -> anyhow::Result<Self> {
        let values_file = std::env::temp_dir().join(format!("{ns}-values.json"));
        std::fs::write(&values_file, serde_json::to_vec(values)?)?;
        // From here on, a failure uninstalls whatever the install left.
        let release = Self {
            stack,
            ns: ns.to_string(),
            values_file,
            installed: true,
        };
        let chart = chart_dir().display().to_string();
        let values = release.values_file.display().to_string();
        let out = helm(
            stack,
            &[
                "install",
                Self::NAME,
                &chart,
                "--namespace",
                ns,
                "--values",
                &values,
                "--set",
                &format!("fullnameOverride={ns}"),
                "--wait",
                "--timeout",
                "180s",
            ],
        )?;
        anyhow::ensure!(out.contains("STATUS: deployed"), "helm install: {out}");
        Ok(release)
    }

    /// `helm upgrade tidal charts/tidal --reuse-values` with `sets`, waiting until Ready.
    pub fn upgrade(&self, sets: &[&str]) -> anyhow::Result<String> {
        let chart = chart_dir().display().to_string();
        let mut args = vec![
            "upgrade",
            Self::NAME,
            &chart,
            "--namespace",
            &self.ns,
            "--reuse-values",
        ];
        for s in sets {
            args.extend(["--set", s]);
        }
        args.extend(["--wait", "--timeout", "180s"]);
        helm(self.stack, &args)
    }

    /// `helm uninstall --wait`.
    pub fn uninstall(&mut self) -> anyhow::Result<()> {
        helm(
            self.stack,
            &["uninstall", Self::NAME, "--namespace", &self.ns, "--wait"],
        )?;
        self.installed = false;
        Ok(())
    }

    /// The log of the release's scaler pods (every replica, each line prefixed with its pod),
    /// or why it could not be read.
    pub fn scaler_log(&self) -> String {
        kubectl(
            self.stack,
            &[
                "logs",
                "--namespace",
                &self.ns,
                "--selector",
                "app.kubernetes.io/name=tidal-scaler",
                "--tail=-1",
                "--prefix",
            ],
            None,
        )
        .unwrap_or_else(|e| format!("(no scaler log: {e})"))
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if self.installed {
            let _ = self.uninstall();
        }
        let _ = std::fs::remove_file(&self.values_file);
    }
}

//! The generated ScalingPolicy CRD (manifests/crd) on the real API server (issue #5): it
//! becomes Established, the sample policy is accepted, and the schema's CEL rules reject bad
//! policies with messages that name the field. Its own test binary (it installs a cluster-wide
//! CRD); it leaves the CRD installed, which later runs re-apply idempotently.

use std::io::Write;
use std::process::{Command, Stdio};

use tidal_e2e::{Stack, in_namespace, repo_root};

type R = anyhow::Result<()>;

/// Runs kubectl with `stdin`; returns (success, stdout + stderr).
fn kubectl(stack: &Stack, args: &[&str], stdin: Option<&str>) -> anyhow::Result<(bool, String)> {
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
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

fn policy(ns: &str, min: i32, max: i32, metrics: &str) -> String {
    format!(
        "apiVersion: tidal.dev/v1alpha1\nkind: ScalingPolicy\nmetadata:\n  name: p\n  namespace: {ns}\nspec:\n  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n  minReplicas: {min}\n  maxReplicas: {max}\n  metrics:\n{metrics}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_is_established_and_validates_on_the_real_api_server() -> R {
    let stack = Stack::load()?;
    let crd = repo_root().join("manifests/crd/scalingpolicy.yaml");
    let (ok, out) = kubectl(&stack, &["apply", "-f", &crd.display().to_string()], None)?;
    anyhow::ensure!(ok, "applying the CRD: {out}");
    let (ok, out) = kubectl(
        &stack,
        &[
            "wait",
            "--for=condition=Established",
            "crd/scalingpolicies.tidal.dev",
            "--timeout=30s",
        ],
        None,
    )?;
    anyhow::ensure!(ok, "CRD not established: {out}");
    let client = stack.admin_client().await?;
    in_namespace(&client, "crd", |ns| async move {
        let cpu = "    - name: cpu\n      resource: {name: cpu, targetUtilization: 60}\n";
        // A valid policy is stored.
        let (ok, out) = kubectl(&stack, &["apply", "-f", "-"], Some(&policy(&ns, 1, 5, cpu)))?;
        anyhow::ensure!(ok, "a valid policy was refused: {out}");
        // The shipped sample is valid too (server-side dry run, in its own namespace).
        let sample = std::fs::read_to_string(repo_root().join("manifests/samples/scalingpolicy.yaml"))?;
        let sample_ns = sample
            .lines()
            .find_map(|l| l.trim().strip_prefix("namespace:"))
            .map(|n| n.trim().to_string())
            .ok_or_else(|| anyhow::anyhow!("the sample names no namespace"))?;
        let sample = sample.replace(&format!("namespace: {sample_ns}"), &format!("namespace: {ns}"));
        let (ok, out) = kubectl(&stack, &["apply", "--dry-run=server", "-f", "-"], Some(&sample))?;
        anyhow::ensure!(ok, "the sample policy was refused: {out}");
        // min > max: refused, naming the field.
        let (ok, out) = kubectl(&stack, &["apply", "--dry-run=server", "-f", "-"], Some(&policy(&ns, 5, 1, cpu)))?;
        assert!(!ok, "min > max accepted: {out}");
        assert!(out.contains("spec.minReplicas") && out.contains("maxReplicas"), "{out}");
        // Two sources in one metric: refused, naming the metric.
        let two = "    - name: both\n      resource: {name: cpu, targetUtilization: 60}\n      prometheus: {query: up, targetValue: '1'}\n";
        let (ok, out) = kubectl(&stack, &["apply", "--dry-run=server", "-f", "-"], Some(&policy(&ns, 1, 5, two)))?;
        assert!(!ok, "a metric with two sources accepted: {out}");
        assert!(out.contains("spec.metrics[0]") && out.contains("exactly one of"), "{out}");
        // No source at all: refused.
        let none = "    - name: nothing\n";
        let (ok, out) = kubectl(&stack, &["apply", "--dry-run=server", "-f", "-"], Some(&policy(&ns, 1, 5, none)))?;
        assert!(!ok, "a metric without a source accepted: {out}");
        // Integers past their Rust type: refused by the schema's maximum, naming the field
        // (stored, one such object would fail the scaler's whole watch list).
        let huge = format!("apiVersion: tidal.dev/v1alpha1\nkind: ScalingPolicy\nmetadata:\n  name: p\n  namespace: {ns}\nspec:\n  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n  minReplicas: 1\n  maxReplicas: 3000000000\n  metrics:\n{cpu}");
        let (ok, out) = kubectl(&stack, &["apply", "--dry-run=server", "-f", "-"], Some(&huge))?;
        assert!(!ok, "maxReplicas 3000000000 accepted: {out}");
        assert!(out.contains("spec.maxReplicas") && out.contains("less than or equal to 2147483647"), "{out}");
        let lag = "    - name: lag\n      kafkaLag: {cluster: c, group: g, lagPerReplica: 100000000000000000}\n";
        let (ok, out) = kubectl(&stack, &["apply", "--dry-run=server", "-f", "-"], Some(&policy(&ns, 1, 5, lag)))?;
        assert!(!ok, "lagPerReplica 1e17 accepted: {out}");
        assert!(out.contains("spec.metrics[0].kafkaLag.lagPerReplica"), "{out}");
        eprintln!("min > max, bad metrics and out-of-range integers refused by the API server");
        Ok(())
    })
    .await
}

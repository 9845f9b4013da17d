//! The scaler's secured sources on the real stack (#16), through the real `tidal-scaler run`:
//!
//! - Kafka clusters from one `--kafka-config` file (the agent's format): SCRAM-SHA-512 on the
//!   stack's SASL listener (password from a file, as a mounted Secret gives it), and mutual
//!   TLS on the listener that requires a client certificate of the stack CA;
//! - a Prometheus of the stack's build started here with a `--web.config.file` that requires
//!   TLS with a client certificate and basic auth (a bcrypt hash of the password);
//! - a scaler with a wrong password gets the server's 401 in the policy's status, and neither
//!   that status nor either scaler's log holds a password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use tidal_e2e::builders::{SCALER_LABEL, deployment, labelled_policy, one_metric_spec};
use tidal_e2e::kafka::lagging_groups;
use tidal_e2e::scaler::{
    ReplicaHistory, Scaler, ScalerEnv, condition, in_scaler_namespace, metric_error, policy_status,
};
use tidal_e2e::secured_prometheus::{PASSWORD, USERNAME, client_tls, start};
use tidal_e2e::{Stack, ensure_no_secret, unique, wait_for};
use tidal_scaler::api::ScalingPolicy;

type R = anyhow::Result<()>;

const WRONG: &str = "not-the-Password-91c";

/// The Kafka config file both binaries read: a SCRAM cluster and a mutual-TLS cluster.
fn kafka_config(stack: &Stack, dir: &Path) -> anyhow::Result<PathBuf> {
    let password_file = dir.join("kafka-password");
    std::fs::write(
        &password_file,
        format!("{}\n", stack.var("TIDAL_KAFKA_SASL_PASSWORD")?),
    )?;
    let config = json!({
        "clusters": [
            {"name": "scram", "bootstrap": [stack.var("TIDAL_KAFKA_SASL_BOOTSTRAP")?],
             "sasl": {"mechanism": "SCRAM-SHA-512", "username": stack.var("TIDAL_KAFKA_SASL_USER")?,
                      "password_file": password_file},
             // The agent's sampling fields, which the scaler ignores.
             "groups": "^sec-", "granularity": "partition"},
            {"name": "mtls", "bootstrap": [stack.var("TIDAL_KAFKA_MTLS_BOOTSTRAP")?],
             "tls": {"ca_file": stack.var("TIDAL_CA_FILE")?,
                     "cert_file": stack.var("TIDAL_CLIENT_CERT_FILE")?,
                     "key_file": stack.var("TIDAL_CLIENT_KEY_FILE")?}}
        ]
    });
    let path = dir.join("kafka.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_and_mtls_kafka_and_an_authenticated_prometheus_drive_a_real_scaler() -> R {
    in_scaler_namespace("secured", run).await
}

async fn run(env: ScalerEnv) -> R {
    let ScalerEnv {
        stack,
        admin,
        ns,
        node,
        kubeconfig,
    } = env;
    let prom = start(&stack, "127.0.0.1").await?;
    let dir = prom.dir.clone();
    let kafka_file = kafka_config(&stack, &dir)?;

    // Lag made over PLAINTEXT, read by the scaler over SCRAM and over mutual TLS: 4
    // partitions of 10 messages, committed at 0 by two groups.
    let topic = unique("sec-t");
    let (scram_group, mtls_group) = (unique("sec-scram"), unique("sec-mtls"));
    lagging_groups(
        stack.kafka_bootstrap()?,
        &topic,
        &[10; 4],
        &[&scram_group, &mtls_group],
    )
    .await?;

    let deploys: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(admin.clone(), &ns);
    for name in ["scram", "mtls", "prom", "denied"] {
        deploys
            .create(&PostParams::default(), &deployment(name, &node, 1, "10m")?)
            .await?;
    }
    let mut histories = Vec::new();
    for n in ["scram", "mtls", "prom"] {
        histories.push(ReplicaHistory::watch(deploys.clone(), n).await?);
    }

    let good_password = dir.join("prom-password");
    std::fs::write(&good_password, format!("{PASSWORD}\n"))?;
    let bad_password = dir.join("prom-wrong-password");
    std::fs::write(&bad_password, WRONG)?;
    let tls = client_tls(&stack)?;
    let (ca, cert, key) = (
        path(&tls.ca_file),
        path(&tls.cert_file),
        path(&tls.key_file),
    );
    let kafka_file = kafka_file.display().to_string();
    // Both hold the one Lease the scaler's Role allows, one after the other: short leases.
    let prom_args = |selector: &'static str, password: &Path| {
        vec![
            "--policy-selector".to_string(),
            format!("{SCALER_LABEL}={selector}"),
            "--lease-duration-seconds".into(),
            "3".into(),
            "--prometheus-url".into(),
            prom.url.clone(),
            "--prometheus-interval-seconds".into(),
            "1".into(),
            "--prometheus-ca-file".into(),
            ca.clone(),
            "--prometheus-cert-file".into(),
            cert.clone(),
            "--prometheus-key-file".into(),
            key.clone(),
            "--prometheus-basic-auth-username".into(),
            USERNAME.into(),
            "--prometheus-basic-auth-password-file".into(),
            password.display().to_string(),
            "--kafka-config".into(),
            kafka_file.clone(),
        ]
    };
    let good_args = prom_args("good", &good_password);
    let bad_args = prom_args("bad", &bad_password);
    let good = Scaler::start(&kubeconfig, &ns, "scaler-good", &as_refs(&good_args))?;

    let labeled = |name: &str, scaler: &str, metric: serde_json::Value| {
        labelled_policy(name, scaler, one_metric_spec(name, metric))
    };
    let lag = |cluster: &str, group: &str, per: u32| {
        json!({"name": "lag", "kafkaLag": {"cluster": cluster, "group": group,
               "topics": [topic.clone()], "lagPerReplica": per}})
    };
    let backlog =
        json!({"name": "backlog", "prometheus": {"query": "vector(6)", "targetPerReplica": "2"}});
    for p in [
        // lag 40, 10 per replica: 4 (also the partition count).
        labeled("scram", "good", lag("scram", &scram_group, 10))?,
        // lag 40, 20 per replica: 2.
        labeled("mtls", "good", lag("mtls", &mtls_group, 20))?,
        // 6 / 2: 3.
        labeled("prom", "good", backlog.clone())?,
        labeled("denied", "bad", backlog)?,
    ] {
        policies.create(&PostParams::default(), &p).await?;
    }

    let fail = |scaler: &Scaler, what: &str, e: &dyn std::fmt::Display| {
        anyhow::anyhow!("{what}: {e}\n{} log:\n{}", scaler.name, scaler.tail())
    };
    for (history, want) in histories.iter().zip([4, 2, 3]) {
        history
            .wait_for(want, Duration::from_secs(90))
            .await
            .map_err(|e| fail(&good, "scale", &e))?;
    }
    for (history, want) in histories.iter().zip(["1;4", "1;2", "1;3"]) {
        let seen = history
            .values()
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(";");
        anyhow::ensure!(seen == want, "history {seen}, want {want}");
    }

    let mut logs = vec![good.log_text()];
    drop(good);

    // The wrong password: the server's 401 in the status, naming the source; nothing written.
    let bad = Scaler::start(&kubeconfig, &ns, "scaler-bad", &as_refs(&bad_args))?;
    let seen = std::sync::Mutex::new(serde_json::Value::Null);
    let message = wait_for(
        "the denied policy's status names the 401",
        Duration::from_secs(60),
        || async {
            let status = policy_status(&policies, "denied").await;
            if let Ok(mut s) = seen.lock() {
                *s = status.clone();
            }
            let message = condition(&status, "ScalingActive")["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (metric_error(&status, "backlog") == Some("FailedGetExternalMetric")
                && message.contains("HTTP 401"))
            .then_some(message)
        },
    )
    .await
    .map_err(|e| {
        fail(
            &bad,
            "401",
            &format!("{e}; last status {:?}", seen.lock().ok()),
        )
    })?;
    eprintln!("denied: {message}");
    anyhow::ensure!(message.contains(&prom.url), "names the server: {message}");
    let denied = deploys.get("denied").await?;
    anyhow::ensure!(
        denied.spec.and_then(|s| s.replicas) == Some(1),
        "the denied policy's target was left at 1"
    );

    // No secret anywhere: not in any status, not in either log.
    let kafka_password = stack.var("TIDAL_KAFKA_SASL_PASSWORD")?;
    logs.push(bad.log_text());
    let mut texts = logs;
    for name in ["scram", "mtls", "prom", "denied"] {
        texts.push(policy_status(&policies, name).await.to_string());
    }
    ensure_no_secret(&texts, &[PASSWORD, WRONG, kafka_password])
}

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn path(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

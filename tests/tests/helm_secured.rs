//! The README's walkthrough with secured sources (issue #16, "Done means"): a scaler installed
//! by `helm install` on the stack's real node reaches, from its pod, a SASL Kafka and an
//! authenticated Prometheus, with the credentials only in Secrets named by the chart's values:
//!
//! - a Prometheus of the stack's build on the node IP that requires TLS, a client certificate
//!   of the stack CA and basic auth (`tidal_e2e::secured_prometheus`); its password, CA, client
//!   certificate and key in the Secret `prometheus-client`, named by `scaler.prometheusAuth`;
//! - the stack's Kafka on its pods' SASL listener, as the cluster `scram` (SCRAM-SHA-512) of
//!   `scaler.kafka.config`, its password in the Secret `kafka-client` (`scaler.kafka.secretName`);
//! - a policy on `vector(6)` at 2 per replica reaches 3, and one on a lag of 60 at 20 per
//!   replica reaches 3, each in one step; neither password is in the policies' statuses or in
//!   the scaler's log; `helm uninstall` removes the release.
//!
//! Needs the image (`scripts/image.sh`, which scripts/test.sh runs) and a stack with its real
//! node.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use serde_json::json;
use tidal_e2e::builders::{deployment, labelled_policy, one_metric_spec};
use tidal_e2e::helm::{Release, allow_privileged, real_node_values, release_selector};
use tidal_e2e::kafka::lagging_groups;
use tidal_e2e::manifests::{ensure_crd, kubectl};
use tidal_e2e::realnode::{NodeLock, RealNode};
use tidal_e2e::scaler::{ReplicaHistory, policy_status};
use tidal_e2e::secured_prometheus::{PASSWORD, USERNAME, start};
use tidal_e2e::{Stack, ensure_no_secret, in_namespace, unique, wait_for};
use tidal_scaler::api::ScalingPolicy;

type R = anyhow::Result<()>;

/// How long each policy may take to reach its count (the Prometheus interval is 15 s).
const STEP: Duration = Duration::from_secs(90);

/// `kubectl create secret generic <name> --from-file=<key>=<path>...` in `ns`.
fn create_secret(stack: &Stack, ns: &str, name: &str, files: &[(&str, &str)]) -> R {
    let mut args = vec![
        "-n".to_string(),
        ns.into(),
        "create".into(),
        "secret".into(),
        "generic".into(),
        name.into(),
    ];
    args.extend(
        files
            .iter()
            .map(|(key, path)| format!("--from-file={key}={path}")),
    );
    kubectl(
        stack,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_installed_scaler_reaches_scram_kafka_and_an_authenticated_prometheus() -> R {
    let started = Instant::now();
    let stack = Stack::load()?;
    RealNode::load(&stack)?; // fails clearly on a stack without its real node
    let _lock = NodeLock::shared(&stack).await?;
    let admin = stack.admin_client().await?;
    ensure_crd(&stack)?;
    let kwok = stack.first_kwok_node()?;
    // Pods of the real node reach this machine on the node IP, in the server certificate's SAN.
    let prom = start(&stack, stack.var("TIDAL_NODE_IP")?).await?;

    // Lag made over PLAINTEXT, read by the pod over SCRAM: 3 partitions of 20, committed at 0.
    let (topic, group) = (unique("helm-sec-t"), unique("helm-sec-g"));
    lagging_groups(stack.kafka_bootstrap()?, &topic, &[20; 3], &[&group]).await?;

    let client = admin.clone();
    in_namespace(&client, "helm-sec", |ns| async move {
        allow_privileged(&stack, &ns)?;

        // The README's two Secrets, from files, as `kubectl create secret generic` makes them.
        let prom_password = prom.dir.join("prom-password");
        std::fs::write(&prom_password, PASSWORD)?;
        let kafka_password = stack.var("TIDAL_KAFKA_SASL_PASSWORD")?;
        let kafka_password_file = prom.dir.join("kafka-password");
        std::fs::write(&kafka_password_file, kafka_password)?;
        let prom_password = prom_password.display().to_string();
        create_secret(
            &stack,
            &ns,
            "prometheus-client",
            &[
                ("password", &prom_password),
                ("ca.crt", stack.var("TIDAL_CA_FILE")?),
                ("tls.crt", stack.var("TIDAL_CLIENT_CERT_FILE")?),
                ("tls.key", stack.var("TIDAL_CLIENT_KEY_FILE")?),
            ],
        )?;
        let kafka_password_file = kafka_password_file.display().to_string();
        create_secret(&stack, &ns, "kafka-client", &[("password", &kafka_password_file)])?;

        // The README's values, on top of the real node's.
        let mut values = real_node_values(&stack, &release_selector(&ns))?;
        let scaler = &mut values["scaler"];
        scaler["replicas"] = json!(1);
        scaler["prometheusUrl"] = json!(prom.url);
        scaler["prometheusAuth"] = json!({
            "secretName": "prometheus-client",
            "basicAuth": {"username": USERNAME, "passwordKey": "password"},
            "tls": {"caKey": "ca.crt", "certKey": "tls.crt", "keyKey": "tls.key"},
        });
        scaler["kafka"] = json!({
            "secretName": "kafka-client",
            "config": {"clusters": [{
                "name": "scram",
                "bootstrap": [stack.var("TIDAL_POD_KAFKA_SASL_BOOTSTRAP")?],
                "sasl": {"mechanism": "SCRAM-SHA-512", "username": stack.var("TIDAL_KAFKA_SASL_USER")?,
                         "password_file": "/etc/tidal/kafka/password"},
            }]},
        });
        let install_started = Instant::now();
        let mut release = Release::install(&stack, &ns, &values)?;
        let install = install_started.elapsed();

        let deploys: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
        let policies: Api<ScalingPolicy> = Api::namespaced(admin.clone(), &ns);
        let names = ["prom", "lag"];
        for name in names {
            deploys
                .create(&PostParams::default(), &deployment(name, &kwok, 1, "10m")?)
                .await?;
        }
        let mut histories = Vec::new();
        for n in &names {
            histories.push(ReplicaHistory::watch(deploys.clone(), n).await?);
        }
        for (name, metric) in [
            // 6 / 2: 3.
            ("prom", json!({"name": "backlog", "prometheus": {"query": "vector(6)", "targetPerReplica": "2"}})),
            // lag 60, 20 per replica: 3 (also the partition count).
            ("lag", json!({"name": "lag", "kafkaLag": {"cluster": "scram", "group": group,
                           "topics": [topic], "lagPerReplica": 20}})),
        ] {
            let p = labelled_policy(name, &ns, one_metric_spec(name, metric))?;
            policies.create(&PostParams::default(), &p).await?;
        }

        let mut reached = Vec::new();
        for (name, history) in names.iter().zip(&histories) {
            match history.wait_for(3, STEP).await {
                Ok(change) => reached.push(change.at),
                Err(e) => anyhow::bail!(
                    "{name}: {e}\nstatus: {}\nscaler log:\n{}",
                    policy_status(&policies, name).await,
                    release.scaler_log()
                ),
            }
        }
        for (name, history) in names.iter().zip(&histories) {
            anyhow::ensure!(history.values() == [1, 3], "{name}: {}", history.render());
        }
        // What `kubectl get sp` shows: each policy Ready and Active, with the value each source
        // gave against its target.
        let rows = [("lag", "lag: 60/20"), ("prom", "backlog: 6/2")];
        wait_for("kubectl get sp: both policies Ready with their values", STEP, || async {
            let table = kubectl(&stack, &["-n", &ns, "get", "sp"], None).ok()?;
            rows.iter()
                .all(|(name, targets)| {
                    table.lines().any(|l| {
                        l.split_whitespace().next() == Some(name)
                            && l.contains(targets)
                            && l.matches(" True ").count() == 2
                    })
                })
                .then_some(())
        })
        .await
        .map_err(|e| {
            let table = kubectl(&stack, &["-n", &ns, "get", "sp"], None).unwrap_or_default();
            anyhow::anyhow!("{e}\n{table}\nscaler log:\n{}", release.scaler_log())
        })?;

        // No secret anywhere: not in either status, not in the scaler's log.
        let mut texts = vec![release.scaler_log()];
        for name in names {
            texts.push(policy_status(&policies, name).await.to_string());
        }
        ensure_no_secret(&texts, &[PASSWORD, kafka_password])?;

        let uninstall_started = Instant::now();
        release.uninstall()?;
        anyhow::ensure!(
            deploys.get_opt("tidal-scaler").await?.is_none(),
            "the scaler Deployment is left behind"
        );
        eprintln!(
            "helm secured: install {:.1}s; prometheus (TLS, client cert, basic auth) backlog 6/2: 1 -> 3 at {:.1}s; \
             SCRAM-SHA-512 kafka lag 60/20: 1 -> 3 at {:.1}s; no password in {} texts; uninstall {:.1}s; total {:.1}s",
            install.as_secs_f64(),
            reached[0].as_secs_f64(),
            reached[1].as_secs_f64(),
            texts.len(),
            uninstall_started.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64(),
        );
        Ok(())
    })
    .await
}

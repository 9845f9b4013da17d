//! The Helm chart (`charts/tidal`, issue #16 "Install") with the stack's Helm, built from the
//! Go module proxy (`helm.sh/helm/v4`, scripts/stack.sh build):
//! - the chart lints, and at its defaults renders exactly the kustomize base (less the
//!   Namespace, which Helm leaves to `--create-namespace`); its monitoring and vertical
//!   switches render exactly the matching overlays, and its dashboards ConfigMap the
//!   dashboards' kustomization; the files it shares with them are identical copies;
//! - its values reach the objects (Kafka clusters, log format, agent Kafka config and Secret,
//!   extra labels, replicas, fullnameOverride), and bad ones fail naming the value;
//! - a real `helm install` on the real node (its agent sampling the stack's Kafka lag with the
//!   config the chart made), a ScalingPolicy acted on by the scaler it installed, a `helm upgrade` whose scaler acts on a changed policy, and `helm uninstall`
//!   (the CRD stays, as Helm never deletes `crds/`).
//!
//! The install test needs the image (`scripts/image.sh`, which scripts/test.sh runs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tidal_e2e::builders::{deployment, labelled_policy, one_metric_spec};
use tidal_e2e::helm::{
    Release, allow_privileged, chart_dir, helm, helm_output, real_node_values, release_selector,
};
use tidal_e2e::manifests::{Key, documents, ensure_crd, kubectl, render_base, render_overlay};
use tidal_e2e::realnode::{RealNode, pod_ip};
use tidal_e2e::scaler::{ReplicaHistory, samples};
use tidal_e2e::{Stack, in_namespace, repo_root, wait_for};
use tidal_scaler::api::ScalingPolicy;

type R = anyhow::Result<()>;

/// `helm template tidal charts/tidal -n tidal-system --include-crds` with `sets`.
fn template(stack: &Stack, sets: &[&str]) -> anyhow::Result<String> {
    let chart = chart_dir().display().to_string();
    let mut args = vec![
        "template",
        "tidal",
        &chart,
        "--namespace",
        "tidal-system",
        "--include-crds",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    helm(stack, &args)
}

/// The documents of a YAML stream by key. Helm's own labels (release, chart, version,
/// manager) are removed from every object's metadata: they are what a Helm install adds.
fn objects(yaml: &str) -> anyhow::Result<BTreeMap<Key, Value>> {
    let mut out = documents(yaml)?;
    for value in out.values_mut() {
        normalize(value);
        if let Some(labels) = value["metadata"]["labels"].as_object_mut() {
            for helm_label in [
                "helm.sh/chart",
                "app.kubernetes.io/managed-by",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/version",
            ] {
                labels.remove(helm_label);
            }
        }
        if value["kind"] == "CustomResourceDefinition" {
            // The chart's crds/ file is byte for byte manifests/crd's (copies_are_current);
            // kustomize adds its part-of label to it, Helm installs crds/ untouched.
            if let Some(meta) = value["metadata"].as_object_mut() {
                meta.remove("labels");
            }
        }
    }
    Ok(out)
}

/// The kustomize rendering less its Namespace object.
fn without_namespace(mut objects: BTreeMap<Key, Value>) -> BTreeMap<Key, Value> {
    objects.retain(|k, _| k.0 != "Namespace");
    objects
}

/// Numbers as floats: kustomize writes the CRD's `1800.0` as `1800`, Helm keeps the file's text.
fn normalize(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().and_then(serde_json::Number::from_f64) {
                *n = f;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        Value::Object(fields) => fields.values_mut().for_each(normalize),
        _ => {}
    }
}

/// Where two values first differ, as a path with both sides.
fn first_difference(chart: &Value, kustomize: &Value, path: &str) -> Option<String> {
    match (chart, kustomize) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        (a, b) if a != b => Some(format!("at {path}: chart {a}, kustomize {b}")),
        _ => None,
    }
}

/// Fails naming every object that differs, is missing or is extra.
fn same(what: &str, chart: &BTreeMap<Key, Value>, kustomize: &BTreeMap<Key, Value>) -> R {
    let mut problems = Vec::new();
    for (k, v) in kustomize {
        match chart.get(k) {
            None => problems.push(format!("missing from the chart: {k:?}")),
            Some(c) if c != v => problems.push(format!(
                "{k:?} differs: {}",
                first_difference(c, v, "").unwrap_or_default()
            )),
            Some(_) => {}
        }
    }
    for k in chart.keys().filter(|k| !kustomize.contains_key(*k)) {
        problems.push(format!("only in the chart: {k:?}"));
    }
    anyhow::ensure!(
        problems.is_empty(),
        "{what}: the chart and kustomize disagree:\n{}",
        problems.join("\n")
    );
    Ok(())
}

fn file_names(dir: &Path, ext: &str) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.ends_with(ext) {
            out.insert(name);
        }
    }
    Ok(out)
}

/// The copies the chart carries (charts/tidal/sync.sh) are the repository's files.
fn copies_are_current() -> R {
    let root = repo_root();
    let chart = chart_dir();
    let mut pairs = vec![(
        root.join("manifests/crd/scalingpolicy.yaml"),
        chart.join("crds/scalingpolicy.yaml"),
    )];
    for rules in tidal_e2e::manifests::RULE_FILES {
        pairs.push((
            root.join("manifests/rules").join(rules),
            chart.join("files/rules").join(rules),
        ));
    }
    let dashboards = file_names(&root.join("dashboards"), ".json")?;
    anyhow::ensure!(
        dashboards == file_names(&chart.join("files/dashboards"), ".json")?,
        "charts/tidal/files/dashboards lists other dashboards than dashboards/: run charts/tidal/sync.sh"
    );
    for d in &dashboards {
        pairs.push((
            root.join("dashboards").join(d),
            chart.join("files/dashboards").join(d),
        ));
    }
    for (original, copy) in pairs {
        anyhow::ensure!(
            std::fs::read(&original)? == std::fs::read(&copy)?,
            "{} differs from {}: run charts/tidal/sync.sh",
            copy.display(),
            original.display()
        );
    }
    Ok(())
}

fn env_of<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| &e["value"])
}

fn get<'a>(objects: &'a BTreeMap<Key, Value>, kind: &str, name: &str) -> anyhow::Result<&'a Value> {
    objects
        .iter()
        .find(|(k, _)| k.0 == kind && k.2 == name)
        .map(|(_, v)| v)
        .ok_or_else(|| anyhow::anyhow!("no {kind} {name} rendered"))
}

#[tokio::test]
async fn the_chart_lints_and_renders_what_kustomize_renders() -> R {
    let stack = Stack::load()?;
    copies_are_current()?;
    let chart = chart_dir().display().to_string();
    let lint = helm(&stack, &["lint", "--strict", &chart])?;
    anyhow::ensure!(lint.contains("0 chart(s) failed"), "helm lint: {lint}");

    // Defaults: the base.
    same(
        "defaults vs manifests/base",
        &objects(&template(&stack, &[])?)?,
        &without_namespace(objects(&render_base(&stack)?)?),
    )?;
    // The switches: the overlays.
    for (sets, overlay) in [
        (
            &["serviceMonitor.enabled=true", "prometheusRule.enabled=true"][..],
            "prometheus-operator",
        ),
        (&["rbac.verticalTemplate=true"][..], "vertical-template"),
        (&["rbac.verticalInPlace=true"][..], "vertical-inplace"),
    ] {
        same(
            &format!("{sets:?} vs manifests/overlays/{overlay}"),
            &objects(&template(&stack, sets)?)?,
            &without_namespace(objects(&render_overlay(&stack, overlay)?)?),
        )?;
    }
    // The dashboards ConfigMap: the dashboards' kustomization.
    let dashboards = objects(&kubectl(
        &stack,
        &[
            "kustomize",
            &repo_root().join("dashboards").display().to_string(),
        ],
        None,
    )?)?;
    let mut with_dashboards = objects(&template(&stack, &["dashboards.enabled=true"])?)?;
    let base = objects(&template(&stack, &[])?)?;
    with_dashboards.retain(|k, _| !base.contains_key(k));
    same(
        "dashboards.enabled vs dashboards/",
        &with_dashboards,
        &dashboards,
    )?;
    eprintln!(
        "chart = kustomize: base ({} objects), prometheus-operator, vertical-template, vertical-inplace, dashboards",
        base.len()
    );
    Ok(())
}

#[tokio::test]
async fn the_charts_values_reach_the_objects_and_bad_ones_fail_naming_the_value() -> R {
    let stack = Stack::load()?;
    let rendered = objects(&template(
        &stack,
        &[
            "scaler.kafkaClusters.orders={k0:9092,k1:9092}",
            "scaler.kafkaClusters.audit={a0:9092}",
            "scaler.prometheusUrl=http://prometheus.monitoring:9090",
            "scaler.policySelector=team=payments",
            "scaler.replicas=3",
            "logFormat=json",
            "logLevel=debug",
            "agent.kafka.config.clusters[0].name=main",
            "agent.kafka.config.clusters[0].bootstrap={kafka:9093}",
            "agent.kafka.secretName=tidal-kafka",
            "serviceMonitor.enabled=true",
            "serviceMonitor.labels.release=kps",
            "prometheusRule.enabled=true",
            "prometheusRule.labels.release=kps",
            "fullnameOverride=tidal-b",
        ],
    )?)?;
    let scaler = get(&rendered, "Deployment", "tidal-scaler")?;
    anyhow::ensure!(
        scaler["spec"]["replicas"] == 3.0,
        "replicas: {}",
        scaler["spec"]
    );
    let c = &scaler["spec"]["template"]["spec"]["containers"][0];
    for (name, want) in [
        // Helm's maps are sorted by key: audit before orders.
        (
            "TIDAL_SCALER_KAFKA_CLUSTERS",
            "audit=a0:9092,orders=k0:9092;k1:9092",
        ),
        (
            "TIDAL_SCALER_PROMETHEUS_URL",
            "http://prometheus.monitoring:9090",
        ),
        ("TIDAL_SCALER_POLICY_SELECTOR", "team=payments"),
        ("TIDAL_SCALER_LOG_FORMAT", "json"),
        ("RUST_LOG", "debug"),
    ] {
        anyhow::ensure!(
            env_of(c, name) == Some(&json!(want)),
            "{name}: {:?}",
            env_of(c, name)
        );
    }
    let agent = get(&rendered, "DaemonSet", "tidal-agent")?;
    let pod = &agent["spec"]["template"]["spec"];
    let args: Vec<&str> = pod["containers"][0]["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for want in [
        "--log-format=json",
        "--kafka-config=/etc/tidal/kafka-config/kafka.json",
    ] {
        anyhow::ensure!(args.contains(&want), "agent args {args:?} lack {want}");
    }
    let mounts = pod["containers"][0]["volumeMounts"].to_string();
    anyhow::ensure!(
        mounts.contains("/etc/tidal/kafka-config") && mounts.contains("\"/etc/tidal/kafka\""),
        "agent mounts: {mounts}"
    );
    anyhow::ensure!(
        pod["volumes"]
            .to_string()
            .contains("\"secretName\":\"tidal-kafka\""),
        "agent volumes: {}",
        pod["volumes"]
    );
    let config = get(&rendered, "ConfigMap", "tidal-agent-kafka")?;
    let kafka: Value =
        serde_json::from_str(config["data"]["kafka.json"].as_str().unwrap_or("null"))?;
    anyhow::ensure!(
        kafka == json!({"clusters": [{"name": "main", "bootstrap": ["kafka:9093"]}]}),
        "kafka.json: {kafka}"
    );
    for (kind, name) in [
        ("ServiceMonitor", "tidal-agent"),
        ("ServiceMonitor", "tidal-scaler"),
        ("PrometheusRule", "tidal"),
    ] {
        let o = get(&rendered, kind, name)?;
        anyhow::ensure!(
            o["metadata"]["labels"]["release"] == "kps",
            "{kind} {name} labels: {}",
            o["metadata"]["labels"]
        );
    }
    // fullnameOverride renames the cluster-scoped objects, and their references follow; the
    // namespaced names stay (the rules select job="tidal-agent").
    for name in ["tidal-b-agent", "tidal-b-scaler"] {
        get(&rendered, "ClusterRole", name)?;
        let b = get(&rendered, "ClusterRoleBinding", name)?;
        anyhow::ensure!(b["roleRef"]["name"] == name, "{b}");
    }
    anyhow::ensure!(
        !rendered
            .keys()
            .any(|k| k.0.starts_with("Cluster") && k.2.starts_with("tidal-agent")),
        "a cluster-scoped object kept the default name: {:?}",
        rendered.keys().collect::<Vec<_>>()
    );

    // Bad values fail before anything reaches a cluster, naming the value (values.schema.json,
    // whose errors give its JSON pointer).
    for (set, says) in [
        ("scaler.kafkaClusters.a=b=c", "/scaler/kafkaClusters/a"),
        (
            "scaler.kafkaClusters.bad;name={k:9092}",
            "invalid propertyName 'bad;name'",
        ),
        ("scaler.kafkaClusters.a={k}", "/scaler/kafkaClusters/a/0"),
        ("logFormat=xml", "/logFormat"),
        ("scaler.replicas=-1", "/scaler/replicas"),
        ("scaler.replica=2", "replica"),
        ("prometheusRule.enabled=yes", "/prometheusRule/enabled"),
    ] {
        fails_naming(&stack, &[set], says)?;
    }
    Ok(())
}

/// `helm template` with `sets` fails, and its error contains `says`.
fn fails_naming(stack: &Stack, sets: &[&str], says: &str) -> R {
    let chart = chart_dir().display().to_string();
    let mut args = vec!["template", "t", chart.as_str()];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = helm_output(stack, &args)?;
    let err = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        !out.status.success() && err.contains(says),
        "--set {sets:?}: expected a failure naming {says}, got {}: {err}",
        out.status
    );
    Ok(())
}

/// The scaler's secured sources: the Kafka config (the agent's format) in a ConfigMap with its
/// Secret, and Prometheus credentials from a Secret, reach the scaler as `--kafka-config` and
/// the `--prometheus-*` file flags; incomplete auth values fail naming the value.
#[tokio::test]
async fn the_scalers_secured_sources_come_from_secrets() -> R {
    let stack = Stack::load()?;
    let rendered = objects(&template(
        &stack,
        &[
            "scaler.prometheusUrl=https://prometheus.monitoring:9090",
            "scaler.prometheusAuth.secretName=prom-client",
            "scaler.prometheusAuth.basicAuth.username=tidal",
            "scaler.prometheusAuth.basicAuth.passwordKey=password",
            "scaler.prometheusAuth.tls.caKey=ca.crt",
            "scaler.prometheusAuth.tls.certKey=tls.crt",
            "scaler.prometheusAuth.tls.keyKey=tls.key",
            "scaler.kafka.config.clusters[0].name=managed",
            "scaler.kafka.config.clusters[0].bootstrap={broker:9096}",
            "scaler.kafka.config.clusters[0].sasl.mechanism=SCRAM-SHA-512",
            "scaler.kafka.config.clusters[0].sasl.username=tidal",
            "scaler.kafka.config.clusters[0].sasl.password_file=/etc/tidal/kafka/password",
            "scaler.kafka.secretName=kafka-client",
        ],
    )?)?;
    let scaler = get(&rendered, "Deployment", "tidal-scaler")?;
    let pod = &scaler["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    for (name, want) in [
        (
            "TIDAL_SCALER_KAFKA_CONFIG",
            "/etc/tidal/kafka-config/kafka.json",
        ),
        ("TIDAL_SCALER_PROMETHEUS_BASIC_AUTH_USERNAME", "tidal"),
        (
            "TIDAL_SCALER_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE",
            "/etc/tidal/prometheus/password",
        ),
        (
            "TIDAL_SCALER_PROMETHEUS_CA_FILE",
            "/etc/tidal/prometheus/ca.crt",
        ),
        (
            "TIDAL_SCALER_PROMETHEUS_CERT_FILE",
            "/etc/tidal/prometheus/tls.crt",
        ),
        (
            "TIDAL_SCALER_PROMETHEUS_KEY_FILE",
            "/etc/tidal/prometheus/tls.key",
        ),
    ] {
        anyhow::ensure!(
            env_of(c, name) == Some(&json!(want)),
            "{name}: {:?}",
            env_of(c, name)
        );
    }
    anyhow::ensure!(
        env_of(c, "TIDAL_SCALER_PROMETHEUS_BEARER_TOKEN_FILE").is_none(),
        "no bearer token file"
    );
    let volumes = pod["volumes"].to_string();
    for want in [
        "\"secretName\":\"prom-client\"",
        "\"secretName\":\"kafka-client\"",
        "\"name\":\"tidal-scaler-kafka\"",
    ] {
        anyhow::ensure!(
            volumes.contains(want),
            "scaler volumes lack {want}: {volumes}"
        );
    }
    let mounts = c["volumeMounts"].to_string();
    for want in [
        "/etc/tidal/prometheus",
        "/etc/tidal/kafka-config",
        "\"/etc/tidal/kafka\"",
    ] {
        anyhow::ensure!(mounts.contains(want), "scaler mounts lack {want}: {mounts}");
    }
    // The ConfigMap holds the config the binary reads: parse it as the scaler does.
    let config = get(&rendered, "ConfigMap", "tidal-scaler-kafka")?;
    let text = config["data"]["kafka.json"].as_str().unwrap_or("null");
    let dir = std::env::temp_dir().join(tidal_e2e::unique("tidal-helm-kafka"));
    std::fs::create_dir_all(&dir)?;
    let text = text.replace(
        "/etc/tidal/kafka/password",
        &dir.join("password").display().to_string(),
    );
    std::fs::write(dir.join("password"), "x")?;
    let parsed = tidal_core::kafka::config::KafkaConfig::parse(Path::new("kafka.json"), &text, "t");
    let _ = std::fs::remove_dir_all(&dir);
    let parsed = parsed?;
    let sasl = parsed.clusters[0].client.sasl.as_ref();
    anyhow::ensure!(
        sasl.is_some_and(|s| s.username == "tidal"),
        "parsed: {parsed:?}"
    );

    for (sets, says) in [
        (
            vec!["scaler.prometheusAuth.basicAuth.username=tidal"],
            "scaler.prometheusAuth.secretName: required",
        ),
        (
            vec![
                "scaler.prometheusAuth.secretName=s",
                "scaler.prometheusAuth.basicAuth.username=tidal",
            ],
            "scaler.prometheusAuth.basicAuth.passwordKey: required",
        ),
        (
            vec![
                "scaler.prometheusAuth.secretName=s",
                "scaler.prometheusAuth.bearerTokenKey=token",
                "scaler.prometheusAuth.basicAuth.username=tidal",
                "scaler.prometheusAuth.basicAuth.passwordKey=p",
            ],
            "set bearerTokenKey or basicAuth, not both",
        ),
        (
            vec![
                "scaler.prometheusAuth.secretName=s",
                "scaler.prometheusAuth.tls.certKey=tls.crt",
            ],
            "certKey and keyKey go together",
        ),
        (
            vec![
                "scaler.prometheusAuth.secretName=s",
                "scaler.prometheusAuth.basicAuth.passwordKey=p",
            ],
            "scaler.prometheusAuth.basicAuth.username: required",
        ),
        (
            vec!["scaler.prometheusAuth.tls.keyKey=k"],
            "scaler.prometheusAuth.secretName: required",
        ),
        (
            vec![
                "scaler.kafka.config.clusters[0].name=m",
                "scaler.kafka.config.clusters[0].bootstrap={k:9092}",
                "scaler.kafka.config.clusters[0].sasl.password=hunter2",
            ],
            "scaler.kafka.config.clusters[0].sasl.password: would sit in a ConfigMap",
        ),
        (
            vec![
                "agent.kafka.config.clusters[0].name=m",
                "agent.kafka.config.clusters[0].bootstrap={k:9092}",
                "agent.kafka.config.clusters[0].sasl.password=hunter2",
            ],
            "agent.kafka.config.clusters[0].sasl.password: would sit in a ConfigMap",
        ),
        (vec!["scaler.prometheusAuth.token=x"], "token"),
        (vec!["scaler.kafka.secret=x"], "secret"),
    ] {
        fails_naming(&stack, &sets, says)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_upgrade_and_uninstall_on_the_real_node() -> R {
    let stack = Stack::load()?;
    RealNode::load(&stack)?; // fails clearly on a stack without its real node
    let admin = stack.admin_client().await?;
    ensure_crd(&stack)?;
    let kwok = stack.first_kwok_node()?;
    let client = admin.clone();
    in_namespace(&client, "helm", |ns| async move {
        allow_privileged(&stack, &ns)?;
        let started = std::time::Instant::now();
        let mut release =
            Release::install(&stack, &ns, &real_node_values(&stack, &release_selector(&ns))?)?;
        eprintln!("helm install: deployed and Ready in {:.1}s", started.elapsed().as_secs_f64());
        let daemonsets: Api<DaemonSet> = Api::namespaced(admin.clone(), &ns);
        let ds = daemonsets.get("tidal-agent").await?;
        anyhow::ensure!(
            ds.status.as_ref().map(|s| s.number_ready) == Some(1),
            "agent DaemonSet: {:?}",
            ds.status
        );
        let deploys: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
        let scaler = deploys.get("tidal-scaler").await?;
        anyhow::ensure!(
            scaler.status.as_ref().and_then(|s| s.ready_replicas) == Some(2),
            "scaler Deployment: {:?}",
            scaler.status
        );

        // The agent samples the stack's Kafka with the config the chart made.
        let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
        let agent = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=tidal-agent"))
            .await?
            .items
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no agent pod"))?;
        let url = format!(
            "http://{}:9464/metrics",
            pod_ip(&agent).ok_or_else(|| anyhow::anyhow!("the agent pod has no IP"))?
        );
        let http = tidal_e2e::http_builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        wait_for(
            "the helm-installed agent's kafka_lag sampler to succeed",
            Duration::from_secs(60),
            || async {
                let body = http.get(&url).send().await.ok()?.text().await.ok()?;
                (samples(&body, "tidal_agent_sampler_success").get("{sampler=\"kafka_lag\"}")
                    == Some(&1.0))
                .then_some(())
            },
        )
        .await?;

        // A policy for this release: Prometheus says 6 with 2 per replica, so 3.
        deploys
            .create(&PostParams::default(), &deployment("web", &kwok, 1, "100m")?)
            .await?;
        let history = ReplicaHistory::watch(deploys.clone(), "web").await?;
        let policies: Api<ScalingPolicy> = Api::namespaced(admin.clone(), &ns);
        let p = labelled_policy(
            "web",
            &ns,
            one_metric_spec(
                "web",
                json!({"name": "backlog", "prometheus": {"query": "vector(6)", "targetPerReplica": "2"}}),
            ),
        )?;
        policies.create(&PostParams::default(), &p).await?;
        history.wait_for(3, Duration::from_secs(90)).await?;

        // Upgrade: one replica, JSON logs; the upgraded scaler acts on a changed policy.
        let started = std::time::Instant::now();
        let out = release.upgrade(&["scaler.replicas=1", "logFormat=json"])?;
        anyhow::ensure!(out.contains("has been upgraded"), "helm upgrade: {out}");
        let scaler = wait_for(
            "the upgraded scaler Deployment rolled out (1 replica)",
            Duration::from_secs(120),
            || async {
                let d = deploys.get("tidal-scaler").await.ok()?;
                let s = d.status.as_ref()?;
                (s.ready_replicas == Some(1) && s.replicas == Some(1) && s.updated_replicas == Some(1))
                    .then_some(d)
            },
        )
        .await?;
        let c = serde_json::to_value(&scaler.spec)?["template"]["spec"]["containers"][0].clone();
        anyhow::ensure!(
            env_of(&c, "TIDAL_SCALER_LOG_FORMAT") == Some(&json!("json")),
            "upgraded scaler env: {}",
            c["env"]
        );
        eprintln!("helm upgrade: rolled out in {:.1}s", started.elapsed().as_secs_f64());
        policies
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"metrics": [{"name": "backlog", "prometheus": {"query": "vector(10)", "targetPerReplica": "2"}}]}})),
            )
            .await?;
        history.wait_for(5, Duration::from_secs(90)).await?;
        anyhow::ensure!(history.values() == [1, 3, 5], "{}", history.render());

        // Uninstall: the release's objects go, cluster-scoped ones too; the CRD stays.
        release.uninstall()?;
        let roles: Api<ClusterRole> = Api::all(admin.clone());
        for name in [format!("{ns}-agent"), format!("{ns}-scaler")] {
            anyhow::ensure!(roles.get_opt(&name).await?.is_none(), "ClusterRole {name} left behind");
        }
        anyhow::ensure!(
            deploys.get_opt("tidal-scaler").await?.is_none(),
            "the scaler Deployment is left behind"
        );
        kubectl(&stack, &["get", "crd", "scalingpolicies.tidal.dev"], None)?;
        eprintln!("helm: install, policy 1 -> 3, upgrade, policy 3 -> 5, uninstall; {}", history.render());
        Ok(())
    })
    .await
}

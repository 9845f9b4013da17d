//! Dashboards and alert rules against real data (issue #7): a real agent samples a real pod
//! cgroup (a busy loop under a CPU quota, so throttling is real) labelled from a KWOK pod, and
//! a real Kafka consumer group with lag; the stack's Prometheus scrapes it as job
//! `tidal-agent`. Then every panel expression of every dashboard, with its variables
//! substituted, must return a non-empty vector, and every alert expression must evaluate.
//! `promtool check rules` / `promtool test rules` run on the rule files too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use rdkafka::ClientConfig as RdConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tidal_e2e::cgroups::{CgroupGuard, hierarchies, mkdirs, set_container_id};
use tidal_e2e::{
    ChildGuard, Stack, free_port, in_namespace, repo_root, unique, wait_for, workspace_bin,
};

type R = anyhow::Result<()>;

async fn query(url: &str, q: &str) -> anyhow::Result<serde_json::Value> {
    let resp: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", q)])
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(resp["status"] == "success", "query failed: {q}\n{resp}");
    Ok(resp["data"].clone())
}

/// Every `expr` of every panel of a dashboard file, with its title.
fn panel_exprs(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    anyhow::ensure!(
        vars.contains(&"datasource"),
        "{}: no datasource variable",
        path.display()
    );
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        anyhow::ensure!(
            p["datasource"]["uid"] == "${datasource}",
            "{}: panel {} ignores $datasource",
            path.display(),
            p["title"]
        );
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("panel {} target without expr", p["title"]))?;
            out.push((
                p["title"].as_str().unwrap_or_default().to_string(),
                expr.to_string(),
            ));
        }
    }
    anyhow::ensure!(!out.is_empty(), "{}: no expressions", path.display());
    Ok(out)
}

/// Every alert `expr` of a rule file (single-line or `|` block).
fn rule_exprs(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)?;
    let lines: Vec<&str> = text.lines().collect();
    let (mut out, mut alert) = (Vec::new(), String::new());
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_start();
        if let Some(a) = l.strip_prefix("- alert:") {
            alert = a.trim().to_string();
        } else if let Some(e) = l.strip_prefix("expr:") {
            let e = e.trim();
            if e == "|" {
                let indent = lines[i + 1].len() - lines[i + 1].trim_start().len();
                let mut block = Vec::new();
                while i + 1 < lines.len()
                    && (lines[i + 1].trim().is_empty()
                        || lines[i + 1].len() - lines[i + 1].trim_start().len() >= indent)
                {
                    i += 1;
                    block.push(lines[i].trim());
                }
                out.push((alert.clone(), block.join(" ")));
            } else {
                out.push((alert.clone(), e.to_string()));
            }
        }
        i += 1;
    }
    anyhow::ensure!(!out.is_empty(), "{}: no alert expressions", path.display());
    Ok(out)
}

fn promtool(args: &[&str], dir: &Path) -> R {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "promtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_alert_expression_works_on_real_data() -> R {
    let rules = repo_root().join("manifests/rules");
    promtool(&["check", "rules", "tidal-agent.rules.yaml"], &rules)?;
    promtool(&["test", "rules", "tidal-agent.tests.yaml"], &rules)?;
    let stack = Stack::load()?;
    let client = stack.admin_client().await?;
    in_namespace(&client, "dash", |ns| with_data(stack, client.clone(), ns)).await
}

async fn with_data(stack: Stack, client: kube::Client, ns: String) -> R {
    let node = stack
        .kwok_nodes()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no KWOK node"))?;
    // A Burstable pod on the KWOK node, with a real cgroup on this machine.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.invalid/web:1",
            "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "500m"}}}]}
    }))?;
    let uid = pods
        .create(&PostParams::default(), &pod)
        .await?
        .metadata
        .uid
        .ok_or_else(|| anyhow::anyhow!("no uid"))?;
    let cid = format!(
        "{:064x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    set_container_id(&pods, "web", &cid).await?;
    let bases = hierarchies(Path::new("/sys/fs/cgroup"));
    let mut guard = CgroupGuard(Vec::new());
    let rel = PathBuf::from(format!("kubepods/burstable/pod{uid}/{cid}"));
    mkdirs(&bases, &rel, &mut guard)?;
    // A CPU quota of half a core (v1 cpu controller or v2 cpu.max), so throttling is real.
    for b in &bases {
        let (v1, v2) = (
            b.join(&rel).join("cpu.cfs_quota_us"),
            b.join(&rel).join("cpu.max"),
        );
        if v1.exists() {
            std::fs::write(&v1, "50000")?;
        } else if v2.exists() {
            std::fs::write(&v2, "50000 100000")?;
        }
    }
    let burner = ChildGuard::spawn(Command::new("sh").args(["-c", "while :; do :; done"]))?;
    for b in &bases {
        std::fs::write(b.join(&rel).join("cgroup.procs"), burner.0.id().to_string())?;
    }

    // Kafka: a group with lag that drains (consumer faster than producer).
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let (topic, group) = (unique("dash-t"), unique("dash-g"));
    let admin: AdminClient<DefaultClientContext> = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    for r in admin
        .create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (bootstrap, topic, group, stop) = (
            bootstrap.clone(),
            topic.clone(),
            group.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let producer: FutureProducer = RdConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()?;
            let committer: BaseConsumer = RdConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", &group)
                .create()?;
            let (mut produced, mut committed) = (0i64, 0i64);
            for i in 0..200 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let burst = if i < 5 { 200 } else { 10 };
                for _ in 0..burst {
                    for p in 0..2 {
                        producer
                            .send(
                                FutureRecord::<(), _>::to(&topic).payload("x").partition(p),
                                Duration::from_secs(10),
                            )
                            .await
                            .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
                    }
                }
                produced += burst;
                committed = (committed + 40).min(produced);
                let mut tpl = TopicPartitionList::new();
                for p in 0..2 {
                    tpl.add_partition_offset(&topic, p, Offset::Offset(committed))?;
                }
                committer.commit(&tpl, CommitMode::Sync)?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            anyhow::Ok(())
        })
    };

    // The agent, scraped by the stack's Prometheus as job tidal-agent.
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let cfg = std::env::temp_dir().join(format!("{}.json", unique("dash-kafka")));
    std::fs::write(
        &cfg,
        serde_json::json!({"interval_seconds": 1, "clusters": [{"name": "stack", "bootstrap": [bootstrap], "groups": format!("^{group}$")}]})
            .to_string(),
    )?;
    let _agent = ChildGuard::spawn(
        Command::new(workspace_bin("tidal-agent"))
            .args([
                "--listen",
                &addr,
                "--node-name",
                &node,
                "--interval-seconds",
                "1",
            ])
            .arg("--kafka-config")
            .arg(&cfg)
            .env("KUBECONFIG", stack.var("TIDAL_KUBECONFIG")?),
    )?;
    let _target = stack.register_scrape_target(&unique("agent-dash"), &addr, &[])?;
    let url = stack.prometheus_url()?.to_string();

    let subst = |e: &str| {
        e.replace("$__rate_interval", "30s")
            .replace("$namespace", &ns)
            .replace("$node", &addr)
            .replace("$instance", &addr)
            .replace("$cluster", "stack")
            .replace("$group", &group)
    };
    let dir = repo_root().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    anyhow::ensure!(
        files.len() >= 3,
        "expected the three dashboards in {}",
        dir.display()
    );
    let mut checked = 0;
    for f in &files {
        for (title, expr) in panel_exprs(f)? {
            let q = subst(&expr);
            let data = wait_for(
                &format!("{}: \"{title}\" to return data", f.display()),
                Duration::from_secs(90),
                || async {
                    let d = query(&url, &q).await.ok()?;
                    (d["resultType"] == "vector"
                        && d["result"].as_array().is_some_and(|r| !r.is_empty()))
                    .then_some(d)
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n  expr: {q}"))?;
            for s in data["result"].as_array().into_iter().flatten() {
                let v = s["value"][1].as_str().unwrap_or("");
                anyhow::ensure!(
                    v.parse::<f64>().is_ok(),
                    "{title}: non-numeric sample {v:?}"
                );
            }
            checked += 1;
        }
    }
    eprintln!("{checked} dashboard expressions returned data");
    for (alert, expr) in rule_exprs(&repo_root().join("manifests/rules/tidal-agent.rules.yaml"))? {
        let d = query(&url, &expr)
            .await
            .map_err(|e| anyhow::anyhow!("alert {alert}: {e}"))?;
        anyhow::ensure!(d["resultType"] == "vector", "alert {alert}: {d}");
    }
    stop.store(true, Ordering::Relaxed);
    load.await??;
    drop(burner);
    let _ = std::fs::remove_file(cfg);
    Ok(())
}

//! tidal-agent's `kafka_lag` sampler against the real Kafka broker of the stack (issue #4):
//! the agent binary runs with a `--kafka-config`, and its `/metrics` must show the exact lag
//! that librdkafka produced and committed; with an unreachable broker the lag series must be
//! absent (never 0) and `sampler_success` 0.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rdkafka::ClientConfig as RdConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tidal_core::schema;
use tidal_e2e::{ChildGuard, Stack, free_port, unique, wait_for, workspace_bin};

type R = anyhow::Result<()>;

/// Starts the agent with a Kafka config; returns the guard and the metrics URL.
fn start_agent(
    config: &serde_json::Value,
    name: &str,
) -> anyhow::Result<(ChildGuard, String, PathBuf)> {
    let bin = workspace_bin("tidal-agent");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` first",
        bin.display()
    );
    let path = std::env::temp_dir().join(format!("{}.json", unique(name)));
    std::fs::write(&path, config.to_string())?;
    let port = free_port()?;
    let agent = ChildGuard::spawn(
        Command::new(&bin)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--interval-seconds",
                "0.5",
            ])
            .arg("--kafka-config")
            .arg(&path),
    )?;
    Ok((agent, format!("http://127.0.0.1:{port}/metrics"), path))
}

/// The value of the first sample of `metric` whose line carries every `k="v"` in `want`.
fn find(body: &str, metric: &str, want: &[(&str, &str)]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| {
            want.iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn scrape(url: &str) -> Option<String> {
    tidal_e2e::http_get(url).await.ok()?.text().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_exports_exact_lag_from_the_real_broker() -> R {
    let stack = Stack::load()?;
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let topic = unique("agent-lag");
    let group = unique("agent-g");
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
    let producer: FutureProducer = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let produced = [30i64, 10];
    for (p, n) in produced.iter().enumerate() {
        for i in 0..*n {
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic)
                        .payload(&format!("{i}"))
                        .partition(p as i32),
                    Duration::from_secs(20),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
        }
    }
    let committed = [25i64, 10];
    let c: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (p, o) in committed.iter().enumerate() {
        tpl.add_partition_offset(&topic, p as i32, Offset::Offset(*o))?;
    }
    c.commit(&tpl, CommitMode::Sync)?;

    let config = serde_json::json!({
        "interval_seconds": 1,
        "clusters": [{"name": "stack", "bootstrap": [bootstrap], "granularity": "partition",
                      "groups": format!("^{group}$")}]
    });
    let (_agent, url, cfg_path) = start_agent(&config, "agent-kafka")?;
    let lag_p0 = [
        ("cluster", "stack"),
        ("group", group.as_str()),
        ("topic", topic.as_str()),
        ("partition", "0"),
    ];
    let body = wait_for(
        "lag series from the agent",
        Duration::from_secs(30),
        || async {
            let body = scrape(&url).await?;
            find(&body, schema::AGENT_KAFKA_LAG, &lag_p0).map(|_| body)
        },
    )
    .await?;
    for p in 0..2usize {
        let ps = p.to_string();
        let want = (produced[p] - committed[p]) as f64;
        let labels = [
            ("group", group.as_str()),
            ("topic", topic.as_str()),
            ("partition", ps.as_str()),
        ];
        assert_eq!(
            find(&body, schema::AGENT_KAFKA_LAG, &labels),
            Some(want),
            "partition {p}\n{body}"
        );
    }
    let g = [("group", group.as_str())];
    assert_eq!(
        find(
            &body,
            schema::AGENT_KAFKA_STATUS,
            &[("group", group.as_str()), ("status", "OK")]
        ),
        Some(1.0)
    );
    assert_eq!(find(&body, schema::AGENT_KAFKA_MEMBERS, &g), Some(0.0));
    assert_eq!(
        find(&body, schema::AGENT_KAFKA_PARTITIONS_WITH_LAG, &g),
        Some(1.0)
    );
    // The regex filter leaves every other group out.
    assert!(
        body.lines()
            .filter(|l| l.starts_with(schema::AGENT_KAFKA_LAG))
            .all(|l| l.contains(&group)),
        "{body}"
    );
    // One batched round: Metadata + ListGroups + DescribeGroups + OffsetFetch + 2 ListOffsets.
    assert_eq!(
        find(
            &body,
            schema::AGENT_KAFKA_ROUND_REQUESTS,
            &[("cluster", "stack")]
        ),
        Some(6.0)
    );
    assert_eq!(
        find(
            &body,
            "tidal_agent_sampler_success",
            &[("sampler", "kafka_lag")]
        ),
        Some(1.0),
        "{body}"
    );

    // The consume rate, from commit to commit: 30 more messages committed on partition 0
    // every 3 s is 10 msg/s. Each interval is 3 s plus the commit and the scrape, and the
    // agent stamps each commit with the round that saw it (up to a second late, over a span
    // of 2 or more intervals), so within 30 %. Then no commit while 5 messages wait: the
    // rate is unknown once the quiet spell passes two intervals, which the agent exports as 0.
    for i in 0..180 {
        producer
            .send(
                FutureRecord::<(), _>::to(&topic)
                    .payload(&format!("{i}"))
                    .partition(0),
                Duration::from_secs(20),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    let rate_labels = [("group", group.as_str()), ("topic", topic.as_str())];
    let mut rates = Vec::new();
    for k in 1..=6i64 {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(committed[0] + 30 * k))?;
        c.commit(&tpl, CommitMode::Sync)?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        // A scrape can miss (or a round omit the topic's series): a few tries.
        let mut rate = None;
        for _ in 0..5 {
            rate = scrape(&url)
                .await
                .and_then(|b| find(&b, schema::AGENT_KAFKA_CONSUME_RATE, &rate_labels));
            if rate.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rates.push(rate);
    }
    // The first offset the agent saw (25) has no known commit time, so two commits seen to
    // happen are there from the second scrape on; the rate is checked from the third.
    for (k, r) in rates.iter().enumerate().skip(2) {
        let r =
            r.ok_or_else(|| anyhow::anyhow!("no consume rate after commit {}: {rates:?}", k + 1))?;
        anyhow::ensure!(
            (7.0..=13.0).contains(&r),
            "consume rate after commit {}: {r}, not 10 msg/s within 30 %; all: {rates:?}",
            k + 1
        );
    }
    wait_for(
        "the consume rate to read 0 after the commits stop",
        Duration::from_secs(20),
        || async {
            let body = scrape(&url).await?;
            (find(&body, schema::AGENT_KAFKA_CONSUME_RATE, &rate_labels)? == 0.0).then_some(())
        },
    )
    .await?;
    let _ = std::fs::remove_file(cfg_path);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_drops_the_lag_series_and_fails_the_sampler() -> R {
    let dead = format!("127.0.0.1:{}", free_port()?);
    let config = serde_json::json!({
        "interval_seconds": 1,
        "clusters": [{"name": "dead", "bootstrap": [dead], "request_timeout_seconds": 1}]
    });
    let (_agent, url, cfg_path) = start_agent(&config, "agent-kafka-dead")?;
    // Before the first round ends the sampler already reads 0 (reason `no_round_yet`); wait
    // for the failed round itself, counted under its fixed reason.
    let body = wait_for(
        "kafka_lag sampler_success=0 after a failed round",
        Duration::from_secs(30),
        || async {
            let body = scrape(&url).await?;
            let failed = find(
                &body,
                "tidal_agent_sampler_success",
                &[("sampler", "kafka_lag")],
            ) == Some(0.0);
            let counted = find(
                &body,
                "tidal_agent_sample_errors_total",
                &[("sampler", "kafka_lag"), ("reason", "unreachable")],
            )
            .is_some_and(|n| n >= 1.0);
            (failed && counted).then_some(body)
        },
    )
    .await?;
    assert!(
        !body.contains(schema::AGENT_KAFKA_LAG),
        "no lag series at all, never 0:\n{body}"
    );
    assert!(
        find(
            &body,
            "tidal_agent_sample_errors_total",
            &[("sampler", "kafka_lag"), ("reason", "unreachable")]
        )
        .is_some_and(|n| n >= 1.0),
        "error counted with a fixed reason:\n{body}"
    );
    // The other samplers keep working.
    assert_eq!(
        find(&body, "tidal_agent_sampler_success", &[("sampler", "node")]),
        Some(1.0),
        "{body}"
    );
    let _ = std::fs::remove_file(cfg_path);
    Ok(())
}

/// Sets a KWOK pod's IP the way a kubelet reports it (KWOK assigns one from its CIDR), so
/// that consumers connecting from 127.0.0.1 count as running in this pod.
async fn set_pod_ip(pods: &kube::Api<k8s_openapi::api::core::v1::Pod>, name: &str, ip: &str) -> R {
    for _ in 0..20 {
        let mut p = wait_for("pod running", Duration::from_secs(60), || async {
            let p = pods.get(name).await.ok()?;
            (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
        })
        .await?;
        if let Some(s) = p.status.as_mut() {
            s.pod_ip = Some(ip.to_string());
            s.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
                ip: ip.to_string(),
            }]);
        }
        match pods.replace_status(name, &Default::default(), &p).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("could not set the IP of pod {name}")
}

/// Lag series of `group` in a scrape: partition -> lag.
fn lags(body: &str, group: &str) -> std::collections::BTreeMap<String, f64> {
    body.lines()
        .filter(|l| {
            l.starts_with(&format!("{}{{", schema::AGENT_KAFKA_LAG))
                && l.contains(&format!("group=\"{group}\""))
        })
        .filter_map(|l| {
            let topic = l.split("topic=\"").nth(1)?.split('"').next()?;
            let part = l.split("partition=\"").nth(1)?.split('"').next()?;
            Some((
                format!("{topic}/{part}"),
                l.rsplit(' ').next()?.parse().ok()?,
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribution_splits_partitions_by_node_with_no_double_count() -> R {
    let stack = Stack::load()?;
    let client = stack.admin_client().await?;
    tidal_e2e::in_namespace(&client, "kafka-attr", |ns| {
        attribution(stack, client.clone(), ns)
    })
    .await
}

async fn attribution(stack: Stack, client: kube::Client, ns: String) -> R {
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let nodes = stack.kwok_nodes()?;
    anyhow::ensure!(nodes.len() >= 2, "needs two KWOK nodes");
    // The consumer "runs" in a pod on node 0 whose IP is the one the broker sees.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), &ns);
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "consumer"},
        "spec": {"nodeName": nodes[0], "containers": [{"name": "c", "image": "registry.invalid/consumer:1"}]}
    }))?;
    pods.create(&Default::default(), &pod).await?;
    set_pod_ip(&pods, "consumer", "127.0.0.1").await?;

    let admin: AdminClient<DefaultClientContext> = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let (ta, tb) = (unique("attr-a"), unique("attr-b"));
    for (t, n) in [(&ta, 3), (&tb, 2)] {
        for r in admin
            .create_topics(
                &[NewTopic::new(t, n, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await?
        {
            r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
        }
    }
    let producer: FutureProducer = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    for (t, n) in [(&ta, 3), (&tb, 2)] {
        for p in 0..n {
            for i in 0..10 {
                producer
                    .send(
                        FutureRecord::<(), _>::to(t)
                            .payload(&format!("{i}"))
                            .partition(p),
                        Duration::from_secs(20),
                    )
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
            }
        }
    }
    // Group A: a live member (owns all of topic A), committed at 4 -> lag 6 on each partition.
    let (ga, gb) = (unique("attr-ga"), unique("attr-gb"));
    let member: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &ga)
        .set("enable.auto.commit", "false")
        .create()?;
    member.subscribe(&[&ta])?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while member.assignment()?.count() < 3 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no assignment for {ga}"
        );
        let _ = member.poll(Duration::from_millis(200));
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(&ta, p, Offset::Offset(4))?;
    }
    member.commit(&tpl, CommitMode::Sync)?;
    // Group B: no members (nobody owns its partitions), committed at 7 -> lag 3 each.
    let c: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &gb)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(&tb, p, Offset::Offset(7))?;
    }
    c.commit(&tpl, CommitMode::Sync)?;

    let config = serde_json::json!({
        "interval_seconds": 1,
        "clusters": [{"name": "stack", "bootstrap": [bootstrap], "granularity": "partition",
                      "groups": format!("^({ga}|{gb})$")}]
    });
    let kubeconfig = stack.var("TIDAL_KUBECONFIG")?.to_string();
    let start = |node: &str, name: &str| -> anyhow::Result<(ChildGuard, String)> {
        let path = std::env::temp_dir().join(format!("{}.json", unique(name)));
        std::fs::write(&path, config.to_string())?;
        let port = free_port()?;
        let g = ChildGuard::spawn(
            Command::new(workspace_bin("tidal-agent"))
                .args([
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--node-name",
                    node,
                    "--attribute-to-node",
                ])
                .args(["--lease-namespace", &ns, "--interval-seconds", "0.5"])
                .arg("--kafka-config")
                .arg(&path)
                .env("KUBECONFIG", &kubeconfig),
        )?;
        Ok((g, format!("http://127.0.0.1:{port}/metrics")))
    };
    // The agent on node 1 starts first and takes the Lease.
    let (_a1, url1) = start(&nodes[1], "attr-1")?;
    let leader = [("cluster", "stack")];
    wait_for("node 1 elected", Duration::from_secs(30), || async {
        let b = scrape(&url1).await?;
        (find(&b, schema::AGENT_KAFKA_ATTRIBUTION_LEADER, &leader) == Some(1.0)).then_some(())
    })
    .await?;
    let (_a0, url0) = start(&nodes[0], "attr-0")?;

    let want_a: std::collections::BTreeMap<String, f64> =
        (0..3).map(|p| (format!("{ta}/{p}"), 6.0)).collect();
    let want_b: std::collections::BTreeMap<String, f64> =
        (0..2).map(|p| (format!("{tb}/{p}"), 3.0)).collect();
    // Node 0 exports what its consumer owns; node 1 (elected) exports the unowned group B.
    let (b0, b1) = wait_for(
        "each agent exports its share",
        Duration::from_secs(60),
        || async {
            let (b0, b1) = (scrape(&url0).await?, scrape(&url1).await?);
            (lags(&b0, &ga) == want_a && lags(&b1, &gb) == want_b).then_some((b0, b1))
        },
    )
    .await?;
    assert!(
        lags(&b0, &gb).is_empty(),
        "node 0 must not export unowned partitions:\n{b0}"
    );
    assert!(
        lags(&b1, &ga).is_empty(),
        "node 1 must not export node 0's partitions:\n{b1}"
    );
    assert_eq!(
        find(&b0, schema::AGENT_KAFKA_ATTRIBUTION_LEADER, &leader),
        Some(0.0)
    );
    // Group-level series come from the elected agent only.
    assert!(
        find(&b1, schema::AGENT_KAFKA_MEMBERS, &[("group", ga.as_str())]) == Some(1.0),
        "{b1}"
    );
    assert!(
        find(&b0, schema::AGENT_KAFKA_MEMBERS, &[("group", ga.as_str())]).is_none(),
        "{b0}"
    );

    // The consumer leaves: its partitions have no owner now, so the elected agent takes them.
    member.unsubscribe();
    drop(member);
    wait_for(
        "unowned partitions move to the elected agent",
        Duration::from_secs(60),
        || async {
            let (b0, b1) = (scrape(&url0).await?, scrape(&url1).await?);
            (lags(&b1, &ga) == want_a && lags(&b0, &ga).is_empty()).then_some(())
        },
    )
    .await?;
    Ok(())
}

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
    reqwest::get(url).await.ok()?.text().await.ok()
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
    let body = wait_for(
        "kafka_lag sampler_success=0",
        Duration::from_secs(30),
        || async {
            let body = scrape(&url).await?;
            (find(
                &body,
                "tidal_agent_sampler_success",
                &[("sampler", "kafka_lag")],
            ) == Some(0.0))
            .then_some(body)
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

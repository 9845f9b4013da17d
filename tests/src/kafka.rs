//! Real Kafka producers, topics and commits for tests, with librdkafka (rdkafka): an
//! independent client, so a bug in Tidal's protocol code cannot hide by being on both sides.

use std::time::Duration;

use rdkafka::ClientConfig as RdConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// Creates `name` with `partitions` partitions (replication 1).
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    for r in admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("create topic {t}: {e}"))?;
    }
    Ok(())
}

/// Produces `counts[p]` messages to partition `p` of `topic`, acknowledged by the broker.
pub async fn produce(bootstrap: &str, topic: &str, counts: &[i64]) -> anyhow::Result<()> {
    let producer: FutureProducer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "30000")
        .create()?;
    for (p, n) in counts.iter().enumerate() {
        for i in 0..*n {
            let payload = format!("{topic}/{p}/{i}");
            producer
                .send(
                    FutureRecord::<(), _>::to(topic)
                        .payload(&payload)
                        .partition(p as i32),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("produce to {topic}/{p}: {e}"))?;
        }
    }
    Ok(())
}

/// Commits offsets for a group without joining it (a "simple" consumer group).
pub fn commit(bootstrap: &str, group: &str, offsets: &[(&str, i32, i64)]) -> anyhow::Result<()> {
    let c: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
    }
    c.commit(&tpl, CommitMode::Sync)?;
    Ok(())
}

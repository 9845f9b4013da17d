//! Real Kafka producers, topics and commits for tests, with librdkafka (rdkafka): an
//! independent client, so a bug in Tidal's protocol code cannot hide by being on both sides.

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

/// Deletes `topic` and the consumer group `group` (best effort: errors are ignored; at most
/// 30 s).
pub async fn delete_topic_and_group(bootstrap: &str, topic: &str, group: &str) {
    let Ok(admin) = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create::<AdminClient<DefaultClientContext>>()
    else {
        return;
    };
    let opts = AdminOptions::new()
        .operation_timeout(Some(std::time::Duration::from_secs(10)))
        .request_timeout(Some(std::time::Duration::from_secs(10)));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let _ = admin.delete_groups(&[group], &opts).await;
        let _ = admin.delete_topics(&[topic], &opts).await;
    })
    .await;
}

/// Produces `counts[p]` messages to partition `p` of `topic`, acknowledged by the broker.
pub async fn produce(bootstrap: &str, topic: &str, counts: &[i64]) -> anyhow::Result<()> {
    let producer: FutureProducer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "30000")
        .create()?;
    // Pipelined: every record is queued before any delivery is awaited (one awaited send at
    // a time costs librdkafka's linger per message: 3,000 messages took 19 s). At most
    // `IN_FLIGHT` deliveries are pending at once.
    const IN_FLIGHT: usize = 10_000;
    let mut pending = Vec::new();
    for (p, n) in counts.iter().enumerate() {
        for i in 0..*n {
            let payload = format!("{topic}/{p}/{i}");
            let delivery = producer
                .send_result(
                    FutureRecord::<(), _>::to(topic)
                        .payload(&payload)
                        .partition(p as i32),
                )
                .map_err(|(e, _)| anyhow::anyhow!("queue a record for {topic}/{p}: {e}"))?;
            pending.push((p, delivery));
            if pending.len() >= IN_FLIGHT {
                await_deliveries(topic, std::mem::take(&mut pending)).await?;
            }
        }
    }
    await_deliveries(topic, pending).await
}

async fn await_deliveries(
    topic: &str,
    pending: Vec<(usize, rdkafka::producer::DeliveryFuture)>,
) -> anyhow::Result<()> {
    for (p, delivery) in pending {
        delivery
            .await
            .map_err(|_| anyhow::anyhow!("produce to {topic}/{p}: the producer was dropped"))?
            .map_err(|(e, _)| anyhow::anyhow!("produce to {topic}/{p}: {e}"))?;
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

/// A topic `topic` of `counts.len()` partitions with `counts[p]` messages in partition `p`,
/// and `groups` committed at offset 0 of every partition: each group lags `counts`, in all
/// their sum.
pub async fn lagging_groups(
    bootstrap: &str,
    topic: &str,
    counts: &[i64],
    groups: &[&str],
) -> anyhow::Result<()> {
    create_topic(bootstrap, topic, i32::try_from(counts.len())?).await?;
    produce(bootstrap, topic, counts).await?;
    let zero: Vec<(&str, i32, i64)> = (0..counts.len())
        .map(|p| Ok((topic, i32::try_from(p)?, 0)))
        .collect::<anyhow::Result<_>>()?;
    for group in groups {
        commit(bootstrap, group, &zero)?;
    }
    Ok(())
}

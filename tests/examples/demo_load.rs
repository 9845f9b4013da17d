//! Load for `scripts/demo.sh`: produces to a topic at a fixed rate for a while, and runs a
//! consumer group that commits more slowly than the producer, so lag grows and then drains.
//!
//! `demo_load BOOTSTRAP TOPIC GROUP SECONDS` — producer at 200 msg/s for SECONDS, consumer at
//! 120 msg/s, then the producer stops and the consumer catches up (bounded: 2 x SECONDS).

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let (bootstrap, topic, group) = (
        a.get(1).cloned().unwrap_or_default(),
        a.get(2).cloned().unwrap_or_default(),
        a.get(3).cloned().unwrap_or_default(),
    );
    anyhow::ensure!(
        !bootstrap.is_empty() && !topic.is_empty() && !group.is_empty(),
        "usage: demo_load BOOTSTRAP TOPIC GROUP SECONDS"
    );
    let secs: u64 = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(20);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    for r in admin
        .create_topics(
            &[NewTopic::new(&topic, 4, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?
    {
        if let Err((t, e)) = r
            && e != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
        {
            anyhow::bail!("create {t}: {e}");
        }
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let start = Instant::now();
    let (mut produced, mut consumed) = (0u64, 0u64);
    let tick = Duration::from_millis(50);
    while start.elapsed() < Duration::from_secs(secs * 2) {
        let t = Instant::now();
        if start.elapsed() < Duration::from_secs(secs) {
            for _ in 0..10 {
                let key = produced.to_string();
                let _ = producer.send(BaseRecord::to(&topic).key(&key).payload("order"));
                produced += 1;
            }
            producer.poll(Duration::ZERO);
        }
        // 6 messages per 50 ms = 120/s.
        for _ in 0..6 {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(1)) {
                consumed += 1;
            }
        }
        if consumed > 0 {
            let _ = consumer.commit_consumer_state(CommitMode::Async);
        }
        if let Some(rest) = tick.checked_sub(t.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    producer.flush(Duration::from_secs(10))?;
    eprintln!("demo load: produced {produced}, consumed {consumed}");
    Ok(())
}

//! Kafka lag collection benchmark (issue #4): Tidal's side of `tidal-bench kafka`, run by
//! `scripts/bench-kafka.sh`.
//!
//! [`setup`] creates the scenario on the stack's broker, idempotently: 200 topics x 10
//! partitions (2,000 partitions), one message per partition, and 500 consumer groups, group j
//! committing offset 0 on all 10 partitions of topic j % 200 (lag 1 each).
//!
//! [`measure`] runs warm-up rounds, then ROUNDS rounds of
//! `tidal_core::kafka::Client::collect(All)` and gives one JSON object (the same as the Java
//! peer's line, bench/peers/KafkaAdminLag.java): median and p90 round time, requests per
//! round, CPU seconds the process used over the measured rounds, and the total lag it saw (to
//! check both peers see the same data).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig as RdConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tidal_core::kafka::{Client, ClientConfig, ResetPolicy, Selection, partition_lag};

const TOPICS: usize = 200;
const PARTITIONS: i32 = 10;
const GROUPS: usize = 500;

fn topic(i: usize) -> String {
    format!("bench-t-{i:03}")
}

pub async fn setup(bootstrap: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let new: Vec<String> = (0..TOPICS).map(topic).collect();
    let specs: Vec<NewTopic> = new
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let mut created = 0;
    // The broker answers within a minute or the setup fails (the default waits without end).
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(60)))
        .request_timeout(Some(Duration::from_secs(90)));
    for r in admin.create_topics(&specs, &opts).await? {
        match r {
            Ok(_) => created += 1,
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => anyhow::bail!("create {t}: {e}"),
        }
    }
    eprintln!(
        "topics: {created} created, {} already there",
        TOPICS - created
    );
    if created > 0 {
        let producer: FutureProducer = RdConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "5")
            .create()?;
        let mut sends = Vec::new();
        for t in &new {
            for p in 0..PARTITIONS {
                sends.push(
                    producer
                        .send_result(FutureRecord::<(), _>::to(t).payload("x").partition(p))
                        .map_err(|(e, _)| e)?,
                );
            }
        }
        for s in sends {
            s.await?.map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
        }
        eprintln!("produced {} messages", TOPICS * PARTITIONS as usize);
    }
    if created == 0 {
        // Topics were there: skip the commits if every bench group already has its offsets.
        let mut client = Client::new(ClientConfig::new("bench", &[bootstrap]))?;
        let round = client.collect(&Selection::All).await?;
        let ready = round
            .groups
            .iter()
            .filter(|(g, info)| {
                g.starts_with("bench-g-") && info.committed.len() == PARTITIONS as usize
            })
            .count();
        if ready == GROUPS {
            eprintln!("groups: all {GROUPS} already committed");
            return Ok(());
        }
    }
    // The commits are synchronous: on a blocking thread, so they hold no runtime worker, and
    // stopped between two commits when the run gives up (this future dropped).
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let bootstrap = bootstrap.to_string();
    tokio::task::spawn_blocking(move || commit_groups(&bootstrap, &stop)).await?
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Group j commits offset 0 on every partition of topic j % 200; returns early (`Err`) once
/// `stop` is set.
fn commit_groups(bootstrap: &str, stop: &AtomicBool) -> anyhow::Result<()> {
    for j in 0..GROUPS {
        anyhow::ensure!(!stop.load(Ordering::Relaxed), "stopped after {j} commits");
        let group = format!("bench-g-{j:03}");
        let c: BaseConsumer = RdConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", &group)
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(&topic(j % TOPICS), p, Offset::Offset(0))?;
        }
        c.commit(&tpl, CommitMode::Sync)?;
        if j % 100 == 99 {
            eprintln!("committed {} groups", j + 1);
        }
    }
    Ok(())
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, fields 14 and 15 of /proc/self/stat, in clock ticks.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the ')' the fields start at field 3 (state), so utime (14) and stime (15) are 11, 12.
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

pub async fn measure(bootstrap: &str, rounds: usize) -> anyhow::Result<serde_json::Value> {
    let mut cfg = ClientConfig::new("bench", &[bootstrap]);
    cfg.request_timeout = Duration::from_secs(10);
    let mut client = Client::new(cfg)?;
    for _ in 0..3 {
        client.collect(&Selection::All).await?;
    }
    let cpu0 = cpu_seconds();
    let mut times = Vec::with_capacity(rounds);
    let (mut requests, mut total_lag, mut groups, mut partitions) = (0, 0u64, 0, 0);
    for _ in 0..rounds {
        let t0 = Instant::now();
        let round = client.collect(&Selection::All).await?;
        // Include the lag arithmetic in the measured time, as the sampler does it each round.
        let mut lag = 0u64;
        let mut n = 0;
        for (_, info) in round
            .groups
            .iter()
            .filter(|(g, _)| g.starts_with("bench-g-"))
        {
            for (tp, committed) in &info.committed {
                let offsets = round.partitions.get(tp).and_then(|p| p.offsets);
                lag += partition_lag(Some(*committed), offsets, ResetPolicy::Latest).unwrap_or(0);
                n += 1;
            }
        }
        times.push(t0.elapsed().as_secs_f64());
        anyhow::ensure!(round.errors.is_empty(), "round errors: {:?}", round.errors);
        requests = round.requests.total();
        total_lag = lag;
        groups = round
            .groups
            .keys()
            .filter(|g| g.starts_with("bench-g-"))
            .count();
        partitions = n;
    }
    let cpu = cpu_seconds() - cpu0;
    times.sort_by(f64::total_cmp);
    let pct = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok(serde_json::json!({
        "peer": "tidal", "rounds": rounds, "median_ms": pct(0.5) * 1e3, "p90_ms": pct(0.9) * 1e3,
        "cpu_seconds": cpu, "cpu_ms_per_round": cpu * 1e3 / rounds as f64, "requests_per_round": requests,
        "groups": groups, "group_partitions": partitions, "total_lag": total_lag
    }))
}

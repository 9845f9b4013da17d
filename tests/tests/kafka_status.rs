//! Burrow-style statuses and time lag from real collection rounds (issue #4): a producer at a
//! known rate, and consumer groups (librdkafka commits) that keep up, fall behind, stall, stop
//! or rewind. Every round is a real `Client::collect` against the stack's broker; the history
//! (`tidal_core::kafka::PartitionHistory`) is the same one the agent's sampler keeps.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig as RdConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tidal_core::kafka::{Client, ClientConfig, PartitionHistory, Selection, Status};
use tidal_e2e::{Stack, unique};

type R = anyhow::Result<()>;

const RATE_PER_SECOND: u64 = 40;
const ROUND: Duration = Duration::from_millis(500);
const ROUNDS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_and_time_lag_follow_what_the_consumers_do() -> R {
    let stack = Stack::load()?;
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let topic = unique("status-t");
    let admin: AdminClient<DefaultClientContext> = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    for r in admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }

    // A producer at a known rate; it records when each offset became the log end.
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let produced_at = Arc::new(std::sync::Mutex::new(Vec::<(i64, f64)>::new()));
    let producer_task = {
        let (bootstrap, topic, stop, produced_at) = (
            bootstrap.clone(),
            topic.clone(),
            stop.clone(),
            produced_at.clone(),
        );
        tokio::spawn(async move {
            let p: FutureProducer = RdConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("linger.ms", "0")
                .create()?;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let d = p
                    .send(
                        FutureRecord::<(), _>::to(&topic).payload("m").partition(0),
                        Duration::from_secs(10),
                    )
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
                anyhow::ensure!(d.partition == 0);
                let off = d.offset;
                produced_at
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push((off + 1, start.elapsed().as_secs_f64()));
                next += Duration::from_millis(1000 / RATE_PER_SECOND);
                tokio::time::sleep_until(next.into()).await;
            }
            anyhow::Ok(())
        })
    };

    let names = ["ok", "warn", "stall", "stop", "rewind"];
    let groups: HashMap<&str, String> = names
        .iter()
        .map(|n| (*n, unique(&format!("status-{n}"))))
        .collect();
    let committers: HashMap<&str, BaseConsumer> = names
        .iter()
        .map(|n| {
            let c: BaseConsumer = RdConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", &groups[n])
                .create()?;
            Ok((*n, c))
        })
        .collect::<anyhow::Result<_>>()?;
    let commit = |n: &str, offset: i64| -> R {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(offset))?;
        committers[n].commit(&tpl, CommitMode::Sync)?;
        Ok(())
    };

    let mut client = Client::new(ClientConfig::new("stack", &[&bootstrap]))?;
    let sel = Selection::Groups(groups.values().cloned().collect());
    let mut hist: HashMap<&str, PartitionHistory> = HashMap::new();
    let mut last_end = 0i64;
    let mut stall_at = None;
    let mut round_times = Vec::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round_no in 0..ROUNDS {
        let end = produced_at
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .last()
            .map_or(0, |x| x.0);
        // What each consumer does this round:
        commit("ok", end)?; // keeps up
        commit("warn", (round_no as i64) * 2)?; // moves, but far slower than the producer
        if round_no == 0 {
            commit("stall", end.max(1))?; // commits once, never moves again
            stall_at = Some(end.max(1));
        }
        if round_no < 4 {
            commit("stop", (round_no as i64 + 1) * 3)?; // moves for 4 rounds, then nothing
        }
        let rewind = if round_no == ROUNDS - 2 {
            1
        } else {
            (end - 5).max(2)
        };
        commit("rewind", rewind)?; // follows, then jumps back
        let round = client.collect(&sel).await?;
        assert!(round.errors.is_empty(), "{:?}", round.errors);
        let now = start.elapsed().as_secs_f64();
        round_times.push(now);
        let offsets = round.partitions[&(topic.clone(), 0)]
            .offsets
            .ok_or_else(|| anyhow::anyhow!("no offsets"))?;
        assert!(offsets.log_end >= last_end, "log end never goes back");
        last_end = offsets.log_end;
        for n in names {
            let committed = round.groups[&groups[n]]
                .committed
                .get(&(topic.clone(), 0))
                .copied();
            hist.entry(n)
                .or_default()
                .observe(now, offsets.log_end, committed);
        }
        tokio::time::sleep(ROUND).await;
    }
    stop.store(true, Ordering::Relaxed);
    producer_task.await??;

    let now = start.elapsed().as_secs_f64();
    let status: HashMap<&str, Status> = names.iter().map(|n| (*n, hist[n].status(now))).collect();
    eprintln!("statuses: {status:?}");
    assert_eq!(status["ok"], Status::Ok);
    assert_eq!(status["warn"], Status::Warn);
    assert_eq!(status["stall"], Status::Stall);
    assert_eq!(status["stop"], Status::Stop);
    assert_eq!(status["rewind"], Status::Rewind);

    // Time lag of the stalled group: the time since its committed offset was the log end,
    // from the producer's own record of when that offset was written.
    let c = stall_at.ok_or_else(|| anyhow::anyhow!("no stall offset"))?;
    let written = produced_at
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
        .find(|(o, _)| *o >= c)
        .map(|x| x.1)
        .ok_or_else(|| anyhow::anyhow!("offset {c} never produced"))?;
    let truth = now - written;
    let estimate = hist["stall"]
        .time_lag(c, now)
        .ok_or_else(|| anyhow::anyhow!("no time-lag estimate"))?;
    eprintln!("stall group time lag: estimate {estimate:.2}s, truth {truth:.2}s");
    // Tolerance: one collection round (the table's resolution) plus produce/ack jitter.
    assert!(
        (estimate - truth).abs() <= ROUND.as_secs_f64() + 0.3,
        "estimate {estimate:.2}s vs truth {truth:.2}s"
    );
    // The produce rate over the last rounds vs what the producer itself wrote in that window.
    let rate = hist["ok"]
        .produce_rate()
        .ok_or_else(|| anyhow::anyhow!("no produce rate"))?;
    let window = &round_times[round_times
        .len()
        .saturating_sub(tidal_core::kafka::history::STATUS_WINDOW)..];
    let (t_a, t_b) = (window[0], window[window.len() - 1]);
    let written = produced_at
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
        .filter(|(_, t)| *t > t_a && *t <= t_b)
        .count();
    let actual = written as f64 / (t_b - t_a);
    eprintln!(
        "produce rate: {rate:.1}/s measured, {actual:.1}/s written by the producer in the window (paced at {RATE_PER_SECOND}/s)"
    );
    assert!(
        (rate - actual).abs() <= actual * 0.15 + 2.0,
        "produce rate {rate} vs {actual}"
    );
    Ok(())
}

//! `tidal-bench-consumer`: the real Kafka consumer of the peers' trace replay (issue #15,
//! `tidal-bench peers --parts replay`). It runs in a pod on the stack's real node, from the
//! image `scripts/image.sh --consumer` builds.
//!
//! It joins a consumer group with librdkafka's defaults (eager `range,roundrobin` assignment,
//! offsets committed automatically every 5 s, so the committed offset trails consumption by
//! 2.5 s on average, as `tidal-sim simulate --commit-lag-seconds` models). It spends `--cpu-ms`
//! of its own thread's CPU time on every message. Its pod's CPU limit then caps its rate: with
//! a limit of 20m, 1.3 ms of work per message and the client's own CPU, about 10 messages a
//! second, which is `--capacity-per-replica` in the model (bench/src/peers/driver/replay.rs). It stops on SIGTERM and SIGINT, leaving the group
//! (its stored offsets are committed on the way out).
//!
//! The autoscalers see the group's committed offsets, which trail consumption. So that the
//! benchmark can also see the true backlog (the model's `queue`, which its SLO is on), every
//! 250 ms the consumer also commits its position (the next offset it will process) in each of
//! its partitions for a second group, `--position-group`, that no consumer joins and no
//! autoscaler reads.
//!
//! Environment (or flags): `TIDAL_CONSUMER_BOOTSTRAP`, `TIDAL_CONSUMER_GROUP`,
//! `TIDAL_CONSUMER_TOPIC`, `TIDAL_CONSUMER_CPU_MS`, `TIDAL_CONSUMER_POSITION_GROUP`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

#[derive(Parser)]
#[command(
    name = "tidal-bench-consumer",
    about = "A Kafka consumer that spends a fixed CPU time per message (the peers' trace replay)"
)]
struct Args {
    #[arg(long, env = "TIDAL_CONSUMER_BOOTSTRAP")]
    bootstrap: String,
    #[arg(long, env = "TIDAL_CONSUMER_GROUP")]
    group: String,
    #[arg(long, env = "TIDAL_CONSUMER_TOPIC")]
    topic: String,
    /// CPU time spent on each message, in milliseconds of this thread's CPU clock.
    #[arg(long, env = "TIDAL_CONSUMER_CPU_MS", default_value_t = 2.0)]
    cpu_ms: f64,
    /// The group this consumer's positions are committed to every 250 ms (none: not done).
    #[arg(long, env = "TIDAL_CONSUMER_POSITION_GROUP")]
    position_group: Option<String>,
}

/// How often the position is committed to `--position-group`.
const POSITION_EVERY: Duration = Duration::from_millis(250);

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec.unsigned_abs(), t.tv_nsec as u32)
}

/// Spends `cost` of this thread's CPU time (waiting while throttled does not count).
fn burn(cost: Duration) {
    let until = thread_cpu() + cost;
    let mut x = 0u64;
    while thread_cpu() < until {
        for i in 0..1000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
}

/// Commits `consumer`'s position in each assigned partition it has consumed from, for the
/// group of `to` (a failure is only logged: the next one follows in 250 ms).
fn commit_positions(consumer: &BaseConsumer, to: &BaseConsumer) {
    let Ok(pos) = consumer.position() else {
        return;
    };
    let mut tpl = TopicPartitionList::new();
    for e in pos.elements() {
        if let Offset::Offset(o) = e.offset() {
            let _ = tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o));
        }
    }
    if tpl.count() > 0
        && let Err(e) = to.commit(&tpl, CommitMode::Sync)
    {
        eprintln!("tidal-bench-consumer: commit the position: {e}");
    }
    to.poll(Duration::ZERO);
}

fn run(args: &Args, stop: &AtomicBool) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("client.id", "tidal-bench-consumer")
        .set("auto.offset.reset", "earliest")
        // librdkafka's defaults, stated: the committed offset trails by 2.5 s on average.
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "5000")
        // Prefetch at most 8 MB (the default, 64 MB, is more than the pod's memory limit).
        .set("queued.max.messages.kbytes", "8192")
        // A consumer killed before it left the group holds its partitions this long (the
        // default, 45 s, would charge a long stall to whichever autoscaler scaled down).
        .set("session.timeout.ms", "10000")
        .create()
        .map_err(|e| anyhow::anyhow!("consumer for group {}: {e}", args.group))?;
    let positions: Option<BaseConsumer> = match &args.position_group {
        Some(g) => Some(
            ClientConfig::new()
                .set("bootstrap.servers", &args.bootstrap)
                .set("group.id", g)
                .set("enable.auto.commit", "false")
                .create()
                .map_err(|e| anyhow::anyhow!("client for the position group {g}: {e}"))?,
        ),
        None => None,
    };
    consumer
        .subscribe(&[&args.topic])
        .map_err(|e| anyhow::anyhow!("subscribe to {}: {e}", args.topic))?;
    let cost = Duration::from_secs_f64(args.cpu_ms / 1000.0);
    let mut done = 0u64;
    let mut last = Instant::now();
    let mut committed = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(p) = &positions
            && committed.elapsed() >= POSITION_EVERY
        {
            committed = Instant::now();
            commit_positions(&consumer, p);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                burn(cost);
                std::hint::black_box(m.payload());
                done += 1;
            }
            Some(Err(e)) => eprintln!("tidal-bench-consumer: {e}"),
            None => {}
        }
        if last.elapsed() >= Duration::from_secs(30) {
            eprintln!("tidal-bench-consumer: {done} messages so far");
            last = Instant::now();
        }
    }
    // Leaves the group; librdkafka commits the stored offsets first (auto commit).
    if let Some(p) = &positions {
        commit_positions(&consumer, p);
    }
    consumer.unsubscribe();
    Ok(done)
}

/// Sets `stop` on the first SIGTERM or SIGINT (a thread of its own with a small tokio runtime).
fn on_signal(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let (mut term, mut int) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    std::thread::spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        });
        stop.store(true, Ordering::Relaxed);
    });
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = on_signal(stop.clone()) {
        eprintln!("tidal-bench-consumer: cannot handle SIGTERM: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "tidal-bench-consumer: group {} on {} at {}, {} ms of CPU per message",
        args.group, args.topic, args.bootstrap, args.cpu_ms
    );
    match run(&args, &stop) {
        Ok(n) => {
            eprintln!("tidal-bench-consumer: stopped after {n} messages");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tidal-bench-consumer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

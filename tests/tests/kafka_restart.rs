//! The lag client across a real broker restart (issue #4). This is its own test binary
//! because it stops the stack's Kafka: cargo runs test binaries one at a time, so no other
//! test sees the broker down. The broker is started again with `scripts/stack.sh up`, which
//! starts only what is not running.

use std::process::Command;
use std::time::{Duration, Instant};

use tidal_core::kafka::{
    Client, ClientConfig, KafkaError, ResetPolicy, Round, Selection, partition_lag,
};
use tidal_e2e::kafka::{commit, create_topic, produce};
use tidal_e2e::{Stack, repo_root, unique};

type R = anyhow::Result<()>;

fn lag_of(round: &Round, group: &str, topic: &str, p: i32) -> Option<u64> {
    let committed = round
        .groups
        .get(group)?
        .committed
        .get(&(topic.to_string(), p))
        .copied();
    partition_lag(
        committed,
        round.partitions.get(&(topic.to_string(), p))?.offsets,
        ResetPolicy::Latest,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_exact_before_unknown_during_and_exact_after_a_broker_restart() -> R {
    let stack = Stack::load()?;
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let topic = unique("restart-t");
    let group = unique("restart-g");
    create_topic(&bootstrap, &topic, 1).await?;
    produce(&bootstrap, &topic, &[40]).await?;
    commit(&bootstrap, &group, &[(&topic, 0, 15)])?;

    let mut cfg = ClientConfig::new("stack", &[&bootstrap]);
    cfg.request_timeout = Duration::from_secs(2);
    let mut client = Client::new(cfg)?;
    let sel = Selection::Groups(vec![group.clone()]);
    let before = client.collect(&sel).await?;
    assert_eq!(lag_of(&before, &group, &topic, 0), Some(25));

    // Stop the broker (its whole process group, as `stack.sh down` would).
    let dir = stack
        .env_file
        .parent()
        .map(|d| d.to_path_buf())
        .unwrap_or_default();
    let pid: i32 = std::fs::read_to_string(dir.join("pids/kafka.pid"))?
        .trim()
        .parse()?;
    let status = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pid}")])
        .status()?;
    anyhow::ensure!(status.success(), "could not stop kafka (pid {pid})");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        anyhow::ensure!(Instant::now() < deadline, "kafka (pid {pid}) did not stop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // While it is down: an error, never a lag of 0.
    match client.collect(&sel).await {
        Err(e @ KafkaError::NoBrokerReachable { .. }) => {
            assert!(e.to_string().contains(&bootstrap), "{e}")
        }
        other => anyhow::bail!("expected NoBrokerReachable with the broker down, got {other:?}"),
    }

    let up = Command::new(repo_root().join("scripts/stack.sh"))
        .arg("up")
        .env("TIDAL_STACK_DIR", &dir)
        .output()?;
    anyhow::ensure!(
        up.status.success(),
        "stack.sh up failed:\n{}",
        String::from_utf8_lossy(&up.stderr)
    );

    // The same client reconnects (after its backoff) and reads the same lag again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        match client.collect(&sel).await {
            Ok(r) if r.errors.is_empty() && lag_of(&r, &group, &topic, 0).is_some() => break r,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
            other => anyhow::bail!("no clean round within 60s of the restart: {other:?}"),
        }
    };
    assert_eq!(
        lag_of(&after, &group, &topic, 0),
        Some(25),
        "same lag after the restart"
    );

    // And it keeps tracking: 10 more messages, a commit at 45 -> lag 5.
    produce(&bootstrap, &topic, &[10]).await?;
    commit(&bootstrap, &group, &[(&topic, 0, 45)])?;
    let later = client.collect(&sel).await?;
    assert_eq!(lag_of(&later, &group, &topic, 0), Some(5));
    Ok(())
}

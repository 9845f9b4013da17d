//! The closed loop of `scripts/demo.sh`: drives real load at a Deployment that a real
//! tidal-scaler controls, and shows every second how the replicas follow.
//!
//! `demo_loop NAMESPACE DEPLOYMENT BOOTSTRAP TOPIC GROUP AGENT_URL SCALER_URLS CSV`
//!
//! The Deployment runs on the stack's real node: its containers are busybox loops that burn
//! CPU while `/tmp/load` exists, and idle otherwise. `SCALER_URLS` lists the scaler replicas'
//! metrics addresses (comma separated); the leader's figures are shown.
//!
//! Timeline (bounded: at most 200 s):
//! 1. idle;
//! 2. CPU: `kubectl exec` turns the load on in the first pod (its busy loop is capped by its
//!    CPU limit, far above its request), so the `cpu` metric asks for more replicas;
//! 3. idle again: replicas come down after the policy's stabilization window;
//! 4. Kafka: a backlog is produced at once; the `lag` metric asks for lag / lagPerReplica
//!    replicas (capped at the partition count), reached within the HPA's default scale-up
//!    limit (1 -> 5, then 6 fifteen seconds later); 20 s after the backlog a consumer drains
//!    it at a fixed rate, committing, and the replicas follow the lag down.
//!
//! The in-cluster agent reads the containers' usage from the cgroups the kubelet made. Writes `t,cpu (millicores),lag (messages),desired@right,
//! replicas@right` to CSV for `tidal-sim plot`.
//!
//! It then checks what the README promises and exits non-zero when the loop did not do it
//! ([`Outcome::check`]): more than one replica under the CPU load, back to one before the
//! backlog, and the partition cap for the backlog (its lag over `lagPerReplica`).

use std::io::Write;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use rdkafka::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tidal_core::kafka::{Client, ClientConfig, ResetPolicy, Selection, partition_lag};
use tidal_e2e::kafka::{commit, create_topic, produce};

const PARTITIONS: i32 = 6;
const BACKLOG_PER_PARTITION: i64 = 500;
const DRAIN_PER_SECOND: usize = 60;
/// The policy's `lagPerReplica` (scripts/demo.sh).
const LAG_PER_REPLICA: i64 = 500;

/// What the replicas did in each phase.
#[derive(Debug, Default)]
struct Outcome {
    /// The highest replica count during the CPU phase, and when it was first above one.
    cpu_max: i32,
    cpu_first_up_s: Option<u64>,
    /// The lowest count between the CPU load's end and the backlog.
    idle_min: Option<i32>,
    /// The highest count once the backlog was produced.
    kafka_max: i32,
}

impl Outcome {
    fn see(&mut self, second: u64, phase: &str, replicas: Option<i32>) {
        let Some(r) = replicas else { return };
        if phase.starts_with("CPU") {
            self.cpu_max = self.cpu_max.max(r);
            if r > 1 && self.cpu_first_up_s.is_none() {
                self.cpu_first_up_s = Some(second);
            }
        } else if phase.starts_with("idle (load removed)") {
            self.idle_min = Some(self.idle_min.map_or(r, |m| m.min(r)));
        } else if phase.starts_with("Kafka") {
            self.kafka_max = self.kafka_max.max(r);
        }
    }

    /// The README's claims for this run; `cpu` is false when the CPU phase was skipped.
    fn check(&self) -> Vec<String> {
        let mut failed = Vec::new();
        if self.cpu_max <= 1 {
            failed.push(format!(
                "CPU load: the replicas never went above 1 (max {})",
                self.cpu_max
            ));
        }
        if self.idle_min != Some(1) {
            failed.push(format!(
                "load removed: the replicas did not come back to 1 before the backlog (lowest {:?})",
                self.idle_min
            ));
        }
        let want = (BACKLOG_PER_PARTITION * i64::from(PARTITIONS) / LAG_PER_REPLICA)
            .min(i64::from(PARTITIONS));
        if i64::from(self.kafka_max) != want {
            failed.push(format!(
                "Kafka backlog: the replicas peaked at {}, want {want} (lag {} / {LAG_PER_REPLICA} per replica, capped at {PARTITIONS} partitions)",
                self.kafka_max,
                BACKLOG_PER_PARTITION * i64::from(PARTITIONS)
            ));
        }
        failed
    }
}

/// The sum of every sample of `metric` whose line contains all of `want`.
async fn scrape_sum(url: &str, metric: &str, want: &[String]) -> Option<f64> {
    let body = tidal_e2e::http_get(url).await.ok()?.text().await.ok()?;
    let mut found = false;
    let mut sum = 0.0;
    for l in body.lines() {
        if l.starts_with(&format!("{metric}{{"))
            && want.iter().all(|w| l.contains(w.as_str()))
            && let Some(v) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok())
        {
            sum += v;
            found = true;
        }
    }
    found.then_some(sum)
}

async fn lag(client: &mut Client, group: &str, topic: &str) -> Option<u64> {
    let round = client
        .collect(&Selection::Groups(vec![group.to_string()]))
        .await
        .ok()?;
    let g = round.groups.get(group)?;
    let mut total = 0;
    for p in 0..PARTITIONS {
        let tp = (topic.to_string(), p);
        total += partition_lag(
            g.committed.get(&tp).copied(),
            round.partitions.get(&tp)?.offsets,
            ResetPolicy::Latest,
        )?;
    }
    Some(total)
}

/// Turns the busy loop of `pod` on or off: `kubectl exec` (API server -> kubelet -> containerd)
/// creates or removes `/tmp/load` in its container.
fn set_load(ns: &str, pod: &str, container: &str, on: bool) -> anyhow::Result<()> {
    let kubectl = std::env::var("TIDAL_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let script = if on {
        "touch /tmp/load"
    } else {
        "rm -f /tmp/load"
    };
    let out = std::process::Command::new(&kubectl)
        .args([
            "-n", ns, "exec", pod, "-c", container, "--", "/bin/sh", "-c", script,
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl exec {ns}/{pod} `{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [ns, deploy, bootstrap, topic, group, agent, scalers, csv] = a.as_slice() else {
        anyhow::bail!(
            "usage: demo_loop NAMESPACE DEPLOYMENT BOOTSTRAP TOPIC GROUP AGENT_URL SCALER_URLS CSV"
        );
    };
    let scalers: Vec<&str> = scalers.split(',').filter(|s| !s.is_empty()).collect();
    let client = kube::Client::try_default().await?;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);

    // Kafka: the topic and a group that committed offset 0 everywhere (no lag yet).
    create_topic(bootstrap, topic, PARTITIONS).await?;
    let zero: Vec<(&str, i32, i64)> = (0..PARTITIONS).map(|p| (topic.as_str(), p, 0)).collect();
    commit(bootstrap, group, &zero)?;
    let mut lag_client = Client::new(ClientConfig::new("demo", &[bootstrap.as_str()]))?;

    // The pod that gets the CPU load: the Deployment's only pod at the start.
    let loaded = pods
        .list(&kube::api::ListParams::default().labels(&format!("app={deploy}")))
        .await?
        .items
        .into_iter()
        .find_map(|p| p.metadata.name)
        .ok_or_else(|| anyhow::anyhow!("Deployment {ns}/{deploy} has no pod"))?;
    let mut load_on = false;

    let mut out = std::fs::File::create(csv)?;
    writeln!(
        out,
        "t,cpu (millicores),lag (messages),desired@right,replicas@right"
    )?;
    println!(
        "    {:>4}  {:<22} {:>10} {:>8} {:>8} {:>9} {:>6}",
        "t", "phase", "cpu (m)", "lag", "desired", "replicas", "ready"
    );

    let ns_label = format!("namespace=\"{ns}\"");
    let policy_label = format!("policy=\"{deploy}\"");
    let start = Instant::now();
    let mut drain: Option<BaseConsumer> = None;
    let mut drained = 0usize;
    let mut backlog_sent = false;
    let mut last_commit = Instant::now();
    let mut outcome = Outcome::default();
    for second in 0..200u64 {
        let t = start.elapsed().as_secs_f64();
        let phase = match second {
            0..5 => "idle",
            5..45 => "CPU: busy loop on",
            45..65 => "idle (load removed)",
            // Held for 20 s: the HPA's default scale-up limit (4 pods or 100% per 15 s) allows
            // 1 -> 5 at once and the partition cap of 6 fifteen seconds later.
            65..85 => "Kafka: backlog produced",
            _ => "Kafka: draining",
        };
        // Phase transitions.
        let want_load = phase.starts_with("CPU");
        if want_load != load_on {
            set_load(ns, &loaded, deploy, want_load)?;
            load_on = want_load;
        }
        if phase.starts_with("Kafka: backlog") && !backlog_sent {
            produce(
                bootstrap,
                topic,
                &[BACKLOG_PER_PARTITION; PARTITIONS as usize],
            )
            .await?;
            backlog_sent = true;
        }
        if phase.starts_with("Kafka: draining") && drain.is_none() {
            let c: BaseConsumer = RdConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .create()?;
            let mut tpl = TopicPartitionList::new();
            for p in 0..PARTITIONS {
                tpl.add_partition_offset(topic, p, Offset::Offset(0))?;
            }
            c.assign(&tpl)?;
            drain = Some(c);
        }
        if let Some(c) = &drain {
            // DRAIN_PER_SECOND messages per second, committed every second.
            let mut n = 0;
            let until = Instant::now() + Duration::from_millis(900);
            while n < DRAIN_PER_SECOND && Instant::now() < until {
                if let Some(Ok(_)) = c.poll(Duration::from_millis(20)) {
                    n += 1;
                }
            }
            drained += n;
            if last_commit.elapsed() >= Duration::from_millis(900) {
                let _ = c.commit_consumer_state(CommitMode::Sync);
                last_commit = Instant::now();
            }
        }

        let cpu = scrape_sum(
            &format!("{agent}/metrics"),
            "tidal_agent_container_cpu_usage_cores",
            &[ns_label.clone(), format!("container=\"{deploy}\"")],
        )
        .await;
        let lag_now = lag(&mut lag_client, group, topic).await;
        let mut desired = None;
        for scaler in &scalers {
            desired = scrape_sum(
                &format!("{scaler}/metrics"),
                "tidal_scaler_desired_replicas",
                &[ns_label.clone(), policy_label.clone()],
            )
            .await;
            if desired.is_some() {
                break;
            }
        }
        let d = deploys.get(deploy).await.ok();
        let replicas = d.as_ref().and_then(|d| d.spec.as_ref()?.replicas);
        let ready = d
            .as_ref()
            .and_then(|d| d.status.as_ref()?.ready_replicas)
            .unwrap_or(0);
        outcome.see(second, phase, replicas);
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        println!(
            "    {:>3}s  {:<22} {:>10} {:>8} {:>8} {:>9} {:>6}",
            second,
            phase,
            show(cpu.map(|c| c * 1000.0)),
            lag_now.map_or("-".into(), |l| l.to_string()),
            show(desired),
            replicas.map_or("-".into(), |r| r.to_string()),
            ready
        );
        let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
        writeln!(
            out,
            "{t:.1},{},{},{},{}",
            cell(cpu.map(|c| c * 1000.0)),
            cell(lag_now.map(|l| l as f64)),
            cell(desired),
            cell(replicas.map(f64::from))
        )?;
        if second > 140 && lag_now == Some(0) && replicas == Some(1) {
            break;
        }
        let next = start + Duration::from_secs(second + 1);
        if let Some(rest) = next.checked_duration_since(Instant::now()) {
            tokio::time::sleep(rest).await;
        }
    }
    if load_on {
        set_load(ns, &loaded, deploy, false)?;
    }
    eprintln!("    drained {drained} messages; samples in {csv}");
    let failed = outcome.check();
    eprintln!(
        "    CPU load: up to {} replicas (first above 1 at {}s, the load started at 5s); load removed: down to {}",
        outcome.cpu_max,
        outcome.cpu_first_up_s.map_or("-".into(), |s| s.to_string()),
        outcome.idle_min.map_or("-".into(), |m| m.to_string()),
    );
    eprintln!("    Kafka backlog: up to {} replicas", outcome.kafka_max);
    anyhow::ensure!(
        failed.is_empty(),
        "the closed loop did not do what the README says:\n  {}",
        failed.join("\n  ")
    );
    eprintln!("    every check passed");
    Ok(())
}

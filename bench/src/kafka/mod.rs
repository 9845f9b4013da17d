//! `tidal-bench kafka`: the Kafka lag-collection benchmark of issue #4 and the section "Kafka
//! lag collection (issue #4)" of bench/RESULTS.md.
//!
//! Scenario on the stack's real broker: 200 topics x 10 partitions (2,000 partitions), 500
//! consumer groups with committed offsets (5,000 group-partitions). Measures, in one run:
//! - Tidal: `tidal_core::kafka::Client::collect`, one batched round ([`driver::measure`]);
//! - the peer: Apache Kafka's Java Admin client doing the same round (the calls kminion
//!   makes), in a warm JVM (bench/peers/KafkaAdminLag.java, compiled by the script);
//! - the release tidal-agent with a kafka_lag sampler on the same scenario (per-partition
//!   series, 1 s interval): its peak RSS (target < 50 MiB) and the total lag it exports.

pub mod driver;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::drive::{Ended, bounded, note, step};
use crate::parts::{AgentBin, Io};
use crate::py::{self, fixed, fixed_of, str as pstr, thousands};
use crate::results::Section;

pub const SECTION: Section = Section {
    name: Some("kafka"),
    heading: "## Kafka lag collection (issue #4)",
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The stack's Kafka (`TIDAL_KAFKA_BOOTSTRAP` from its env file).
    #[arg(
        long,
        env = "TIDAL_KAFKA_BOOTSTRAP",
        required_unless_present = "from_json"
    )]
    bootstrap: Option<String>,
    /// Measured rounds, after 3 warm-up rounds, for Tidal and the peer.
    #[arg(long, env = "TIDAL_BENCH_KAFKA_ROUNDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    rounds: u64,
    /// How long the agent samples the scenario before its RSS is read, seconds.
    #[arg(long, env = "TIDAL_BENCH_KAFKA_AGENT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    agent_seconds: u64,
    #[command(flatten)]
    agent: AgentBin,
    /// The Java peer's class path: the compiled KafkaAdminLag and Kafka's client jars.
    #[arg(long, required_unless_present = "from_json")]
    peer_classpath: Option<String>,
    /// The `java` to run the peer with.
    #[arg(long, default_value = "java")]
    java: PathBuf,
    /// The whole run's time limit, seconds (default: 600 + the agent's seconds + 2 per
    /// round): the scenario's setup, both peers' rounds and the agent's window.
    #[arg(long, env = "TIDAL_BENCH_KAFKA_LIMIT_SECONDS",
          value_parser = clap::value_parser!(u64).range(60..=7200))]
    limit_seconds: Option<u64>,
    /// --from-json takes one object with `tidal`, `peer` and `agent` (each as measured) and
    /// `agent_seconds`.
    #[command(flatten)]
    io: Io,
}

/// Refuses figures that do not describe the same data: both peers and the agent must have
/// seen the scenario's 500 groups and the same lag.
fn check(t: &Value, p: &Value, a: &Value) -> anyhow::Result<()> {
    let eq =
        |x: &Value, y: &Value| matches!((py::num(x), py::num(y)), (Some(x), Some(y)) if x == y);
    anyhow::ensure!(
        eq(&t["groups"], &json!(500))
            && eq(&t["total_lag"], &p["total_lag"])
            && eq(&t["group_partitions"], &p["group_partitions"]),
        "Tidal and the peer saw different data: {t} / {p}"
    );
    anyhow::ensure!(
        eq(&a["sampler_success"], &json!(1))
            && eq(&a["total_lag"], &t["total_lag"])
            && eq(&a["lag_series"], &t["group_partitions"]),
        "the agent exported other figures than Tidal's client saw: {a} / {t}"
    );
    Ok(())
}

/// What one run measured: Tidal's client, the Java peer and the agent, each as measured, and
/// how long the agent sampled (seconds, as the command line gave it).
pub struct Figures {
    pub tidal: Value,
    pub peer: Value,
    pub agent: Value,
    pub agent_seconds: String,
}

/// The section, from one run's figures (`today`: its date).
fn render(f: &Figures, today: &str) -> anyhow::Result<String> {
    let (t, p, a, agent_seconds) = (&f.tidal, &f.peer, &f.agent, &f.agent_seconds);
    check(t, p, a)?;
    let n = |v: &Value| py::num(v).unwrap_or(f64::NAN);
    let r_time = n(&t["median_ms"]) / n(&p["median_ms"]);
    let r_cpu = n(&t["cpu_ms_per_round"]) / py::max(n(&p["cpu_ms_per_round"]), 1e-9);
    let ok = |b: bool| if b { "met" } else { "**missed**" };
    Ok(format!(
        "<!-- kafka:begin (written by scripts/bench-kafka.sh) -->
## Kafka lag collection (issue #4)

One run on {today}, the stack's single Kafka 4.1.1 broker, 2,000 partitions in
200 topics, 500 consumer groups, {} committed group-partitions, {}
measured rounds after 3 warm-up rounds each. Both peers saw the same total lag ({}).

| measure | Tidal (`tidal_core::kafka`) | Kafka Java Admin (peer) | ratio Tidal/peer | target |
| --- | ---: | ---: | ---: | --- |
| round time, median | {} ms | {} ms | {} | < 250 ms: {}; ratio ≤ 0.5: {} |
| round time, p90 | {} ms | {} ms | {} | |
| CPU per round | {} ms | {} ms | {} | ratio ≤ 0.5: {} |
| requests per round | {} | — | | O(brokers + coordinators) |
| agent RSS, peak (release `tidal-agent`, kafka_lag sampler, {} per-partition series, 1 s interval, {agent_seconds} s) | {} MiB (now {}) | — | | < 50 MiB: {} |

The peer is not kminion: kminion's Go module cannot be fetched on this machine, so the
official Java Admin client (the same ListGroups / DescribeGroups / batched OffsetFetch /
ListOffsets calls, warm JVM) stands in. Round time includes the broker's own work, which
both peers share. Tidal's client CPU is the process's utime+stime over the measured rounds
(1/100 s resolution). The agent row is the whole agent process (node and cgroup samplers of
this host included); it exported the same total lag ({}) as both peers.
<!-- kafka:end -->",
        thousands(&t["group_partitions"]),
        pstr(&t["rounds"]),
        thousands(&t["total_lag"]),
        fixed_of(&t["median_ms"], 1),
        fixed_of(&p["median_ms"], 1),
        fixed(r_time, 2),
        ok(n(&t["median_ms"]) < 250.0),
        ok(r_time <= 0.5),
        fixed_of(&t["p90_ms"], 1),
        fixed_of(&p["p90_ms"], 1),
        fixed(n(&t["p90_ms"]) / n(&p["p90_ms"]), 2),
        fixed_of(&t["cpu_ms_per_round"], 1),
        fixed_of(&p["cpu_ms_per_round"], 1),
        fixed(r_cpu, 2),
        ok(r_cpu <= 0.5),
        pstr(&t["requests_per_round"]),
        thousands(&a["lag_series"]),
        fixed_of(&a["peak_rss_mib"], 1),
        fixed_of(&a["rss_mib"], 1),
        ok(n(&a["peak_rss_mib"]) < 50.0),
        thousands(&a["total_lag"]),
    ))
}

/// The results file with the section replaced (or appended).
pub fn record(doc: &str, figures: &Figures, today: &str) -> anyhow::Result<String> {
    Ok(SECTION.replace(doc, &render(figures, today)?))
}

/// What the agent says after sampling the scenario: its lag series, their total, whether its
/// last kafka_lag round succeeded, and its RSS now and at its peak (`VmRSS`, `VmHWM`, MiB).
pub fn agent_figures(metrics: &str, status: &str) -> Value {
    let (mut lag, mut series, mut ok) = (0.0f64, 0u64, Value::Null);
    let value = |line: &str| {
        line.rsplit_once(' ')
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
    };
    for line in metrics.lines() {
        if line.starts_with("tidal_agent_kafka_consumergroup_lag{") {
            series += 1;
            lag += value(line).unwrap_or(f64::NAN);
        } else if line.starts_with("tidal_agent_sampler_success{sampler=\"kafka_lag\"") {
            ok = value(line).map_or(Value::Null, |v| json!(v));
        }
    }
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(Value::Null, |k| json!(k as f64 / 1024.0))
    };
    json!({
        "lag_series": series, "total_lag": lag.trunc() as i64, "sampler_success": ok,
        "rss_mib": kib("VmRSS"), "peak_rss_mib": kib("VmHWM"),
    })
}

/// Runs the release agent with a kafka_lag sampler on the scenario for `seconds`, then reads
/// its `/metrics` and `/proc/<pid>/status`.
async fn measure_agent(
    bin: &Path,
    bootstrap: &str,
    seconds: u64,
    work: &Path,
) -> anyhow::Result<Value> {
    let config = work.join("kafka.json");
    std::fs::write(
        &config,
        json!({"interval_seconds": 1, "clusters": [{"name": "bench", "bootstrap": [bootstrap],
               "groups": "^bench-g-", "granularity": "partition"}]})
        .to_string(),
    )?;
    let port = tidal_e2e::free_port()?;
    let log = work.join("agent.log");
    let file = std::fs::File::create(&log)?;
    let mut agent = tidal_e2e::ChildGuard::spawn(
        Command::new(bin)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--kafka-config")
            .arg(&config)
            .stdout(file.try_clone()?)
            .stderr(file),
    )
    .map_err(|e| anyhow::anyhow!("starting {}: {e}", bin.display()))?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    if let Ok(Some(status)) = agent.0.try_wait() {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = tail.lines().collect();
        anyhow::bail!(
            "the agent exited early ({status}):\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        );
    }
    let metrics = tidal_e2e::http_get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| anyhow::anyhow!("could not scrape the agent: {e}"))?
        .text()
        .await?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.0.id()))?;
    Ok(agent_figures(&metrics, &status))
}

/// The Java peer's last line of output: `java -Xmx512m -cp CP KafkaAdminLag BOOTSTRAP ROUNDS`
/// (killed if the run gives up; its stderr goes into the error when it fails).
async fn measure_peer(
    java: &Path,
    classpath: &str,
    bootstrap: &str,
    rounds: u64,
) -> anyhow::Result<Value> {
    let out = tokio::process::Command::new(java)
        .args(["-Xmx512m", "-cp", classpath, "KafkaAdminLag", bootstrap])
        .arg(rounds.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("running {}: {e}", java.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        anyhow::bail!(
            "the Java peer failed ({}); its stderr:\n{}",
            out.status,
            lines[lines.len().saturating_sub(30)..].join("\n")
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    py::loads(last).map_err(|e| anyhow::anyhow!("the Java peer's output {last:?}: {e}"))
}

/// The run's time limit, seconds.
pub fn limit(args: &Args) -> u64 {
    args.limit_seconds
        .unwrap_or(600 + args.agent_seconds + 2 * args.rounds)
}

/// The scenario, then Tidal's rounds, the Java peer's and the agent's window.
async fn measure(args: &Args, agent: &Path, work: &Path) -> anyhow::Result<Figures> {
    let (Some(bootstrap), Some(classpath)) = (&args.bootstrap, &args.peer_classpath) else {
        anyhow::bail!("--bootstrap and --peer-classpath are needed to measure");
    };
    step("creating the scenario (idempotent): 200 topics x 10 partitions, 500 groups");
    driver::setup(bootstrap).await?;
    step(format!("measuring Tidal: {} rounds", args.rounds));
    let t = driver::measure(bootstrap, args.rounds as usize).await?;
    note(t.to_string());
    step(format!(
        "measuring the Java Admin peer: {} rounds",
        args.rounds
    ));
    let p = measure_peer(&args.java, classpath, bootstrap, args.rounds).await?;
    note(p.to_string());
    step(format!(
        "measuring the agent's RSS with the kafka_lag sampler on this scenario: {}s",
        args.agent_seconds
    ));
    let a = measure_agent(agent, bootstrap, args.agent_seconds, work).await?;
    note(a.to_string());
    Ok(Figures {
        tidal: t,
        peer: p,
        agent: a,
        agent_seconds: args.agent_seconds.to_string(),
    })
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    let mut target = args.io.results.open()?;
    let figures = match &args.io.from_json {
        Some(file) => {
            let text = std::fs::read_to_string(file)?;
            let v = py::loads(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let agent_seconds = match &v["agent_seconds"] {
                Value::String(s) => s.clone(),
                other => pstr(other),
            };
            Figures {
                tidal: v["tidal"].clone(),
                peer: v["peer"].clone(),
                agent: v["agent"].clone(),
                agent_seconds,
            }
        }
        None => {
            let agent = args.agent.get()?;
            let (work, temporary) = crate::drive::work_dir(args.io.work.clone(), "kafka")?;
            let limit = limit(&args);
            step(format!("the Kafka lag benchmark (at most {limit}s)"));
            let mut measured = None;
            // Bounded; on SIGTERM or SIGINT the run is dropped: the agent and the Java peer
            // are killed, the commits stop.
            let ended = bounded(Duration::from_secs(limit), async {
                measured = Some(measure(&args, agent, &work).await?);
                Ok(())
            })
            .await;
            if temporary {
                let _ = std::fs::remove_dir_all(&work);
            }
            match (ended, measured) {
                (Ended::Done, Some(figures)) => figures,
                (Ended::Interrupted(s), _) => {
                    eprintln!(
                        "tidal-bench kafka: interrupted by {s}; stopped; {} is unchanged",
                        target.path().display()
                    );
                    return Ok(ExitCode::from(130));
                }
                (Ended::Failed(reason), _) => anyhow::bail!(
                    "the Kafka benchmark stopped early ({reason}); {} is unchanged",
                    target.path().display()
                ),
                (Ended::Done, None) => anyhow::bail!("nothing measured"),
            }
        }
    };
    step("writing the section");
    let doc = record(target.doc(), &figures, &crate::run::local_date())?;
    target.update(doc)?;
    if target.writes() {
        note(format!("written to {}", target.path().display()));
    }
    target.print(&SECTION);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_figures_are_read_as_the_script_read_them() {
        let metrics = "# HELP x\ntidal_agent_kafka_consumergroup_lag{group=\"a\",partition=\"0\"} 2\n\
                       tidal_agent_kafka_consumergroup_lag{group=\"a\",partition=\"1\"} 3.5\n\
                       tidal_agent_sampler_success{sampler=\"kafka_lag\"} 1\n\
                       tidal_agent_sampler_success{sampler=\"cgroup\"} 0\n";
        let status = "Name:\ttidal-agent\nVmHWM:\t   26726 kB\nVmRSS:\t   24986 kB\n";
        assert_eq!(
            py::dumps(&agent_figures(metrics, status)),
            r#"{"lag_series": 2, "peak_rss_mib": 26.099609375, "rss_mib": 24.400390625, "sampler_success": 1.0, "total_lag": 5}"#
        );
    }
}

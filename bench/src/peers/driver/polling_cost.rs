//! What KEDA's `pollingInterval` costs it: the kafka part's last phase. One of its two
//! ScaledObjects at a time (the other paused by `autoscaling.keda.sh/paused`, which stops its
//! scale loop, closes its scalers and deletes its HPA), each for [`WINDOW`]: the Kafka requests
//! the KEDA operator makes and the CPU it spends; Tidal's requests over the same windows.
//!
//! 1. both paused: what reaches the broker as KEDA's client with none of its scalers running
//!    (the counts below rest on it being none);
//! 2. `pollingInterval` 30 s (the default), `minReplicaCount` 1, alone;
//! 3. `pollingInterval: 1`, `minReplicaCount` 1, alone. At `minReplicaCount` ≥ 1 the interval
//!    has no effect: KEDA 2.21's scale loop does not query the scaler while an HPA reads the
//!    metric (`ScaledObject::IsPollingIntervalRelevant` false: no `idleReplicaCount`, no
//!    `useCachedMetrics`; `UsesHPAObservations`: no `scalingModifiers`; and the HPA's
//!    `ScalingActive` True, which each window waits for): it reuses the HPA's reads, one per
//!    15 s sync;
//! 4. the same with `minReplicaCount: 0`, where the interval is relevant and each poll queries
//!    Kafka (at lag 0 KEDA scales the copy to 0, and its HPA stops reading).
//!
//! The requests are counted in the broker's own request log: `kafka.request.logger` at DEBUG
//! (a dynamic broker-logger setting through Kafka's `ConfigCommand`) writes one `Completed
//! request:` line per request into the broker's log, with the client's id and the request's
//! kind. KEDA's Kafka scaler is sarama, whose default client id is [`KEDA_CLIENT`]; Tidal's
//! scaler is [`CLIENT_ID`]. The logger goes back to WARN, the level of the stack's `kafka`
//! loggers (scripts/stack/kafka.sh), at the end of the phase, also when it fails; should the
//! driver die first, the script's cleanup does it (it is recorded in [`Created`]).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tidal_e2e::bench::{Created, progress};
use tidal_e2e::peers::scaled_objects;
use tidal_e2e::{Stack, wait_for};
use tidal_scaler::sources::kafka::CLIENT_ID;

use super::{APP, R, component_cpu_seconds};

/// Each window's length: 8 of the HPA's 15 s syncs, so that the phase at which a window starts
/// moves a count by one sync in eight at most.
const WINDOW: Duration = Duration::from_secs(120);
/// The longest the phase takes: four windows, the waits for KEDA between them (the last up
/// to its 300 s `cooldownPeriod`) and the two `ConfigCommand` runs (60 s each at most).
pub const LIMIT: Duration = Duration::from_secs(4 * 120 + 5 * 120 + 360 + 2 * 60);
/// sarama's default `Config.ClientID` (KEDA's Kafka scaler does not set one).
const KEDA_CLIENT: &str = "sarama";
const PAUSED: &str = "autoscaling.keda.sh/paused";

/// The requests of one window, by client id and then by request kind.
type Counts = BTreeMap<String, BTreeMap<String, u64>>;

/// The client id and request kind of one broker log line, when it is a request log line.
fn parse_line(line: &str) -> Option<(String, String)> {
    // The JSON object, then the logger's name (the stack's pattern `[%d] %p %m (%c)`).
    let json = line.split_once("Completed request:")?.1;
    let v: Value = serde_json::Deserializer::from_str(json)
        .into_iter()
        .next()?
        .ok()?;
    let h = &v["requestHeader"];
    Some((
        h["clientId"].as_str()?.to_string(),
        h["requestApiKeyName"].as_str()?.to_string(),
    ))
}

/// The request log lines in `path` from byte `from` on (a line that is not UTF-8 is read
/// lossily: a client id may hold any bytes).
fn count_from(path: &Path, from: u64) -> R<Counts> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::new(f);
    let mut counts = Counts::new();
    let mut buf = Vec::new();
    while reader.read_until(b'\n', &mut buf)? > 0 {
        if let Some((client, api)) = parse_line(&String::from_utf8_lossy(&buf)) {
            *counts.entry(client).or_default().entry(api).or_default() += 1;
        }
        buf.clear();
    }
    Ok(counts)
}

fn total(counts: &Counts, client: &str) -> u64 {
    counts.get(client).map_or(0, |by| by.values().sum())
}

/// The stack's broker id (`node.id` in its server.properties).
fn broker_id(stack: &Stack) -> R<String> {
    let file = format!("{}/kafka/server.properties", stack.var("TIDAL_STACK_DIR")?);
    std::fs::read_to_string(&file)?
        .lines()
        .find_map(|l| l.strip_prefix("node.id="))
        .map(|id| id.trim().to_string())
        .ok_or_else(|| anyhow::anyhow!("no node.id in {file}"))
}

/// `kafka.request.logger` at `level` on broker `id`.
async fn request_logging(stack: &Stack, id: &str, level: &str) -> R<()> {
    let dir = stack.var("TIDAL_STACK_DIR")?;
    let run = tokio::process::Command::new("java")
        .arg("-cp")
        .arg(format!("{}/lib/*", stack.var("TIDAL_KAFKA_HOME")?))
        .arg(format!(
            "-Dlog4j2.configurationFile={dir}/kafka/log4j2.properties"
        ))
        .arg("kafka.admin.ConfigCommand")
        .args(["--bootstrap-server", stack.var("TIDAL_KAFKA_BOOTSTRAP")?])
        .args(["--entity-type", "broker-loggers", "--entity-name", id])
        .args(["--alter", "--add-config"])
        .arg(format!("kafka.request.logger={level}"))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .map_err(|_| anyhow::anyhow!("Kafka's ConfigCommand did not finish within 60 s"))??;
    anyhow::ensure!(
        out.status.success(),
        "Kafka's ConfigCommand could not set kafka.request.logger={level} on broker {id}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// What to wait for after a change to a ScaledObject.
#[derive(Clone, Copy, PartialEq)]
enum Settled {
    /// Paused: its HPA deleted.
    HpaGone,
    /// Resumed: its HPA back and reading the lag.
    HpaReads,
    /// Resumed at `minReplicaCount` 0 and lag 0: KEDA scales the copy to 0.
    ScaledToZero,
}

/// Merge-patches the ScaledObject in `ns` and waits until KEDA has acted on it.
async fn change(admin: &kube::Client, ns: &str, patch: Value, settled: Settled) -> R<()> {
    scaled_objects(admin, ns)
        .patch(APP, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(admin.clone(), ns);
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(admin.clone(), ns);
    let hpa = format!("keda-hpa-{APP}");
    let what = match settled {
        Settled::HpaGone => "KEDA deletes the paused ScaledObject's HPA",
        Settled::HpaReads => "the resumed ScaledObject's HPA reads the lag",
        Settled::ScaledToZero => "KEDA scales the copy to 0 (minReplicaCount 0, lag 0)",
    };
    // Scaling to 0 waits for the cooldownPeriod (300 s) since the lag was last above 0.
    let limit = if settled == Settled::ScaledToZero {
        360
    } else {
        120
    };
    wait_for(what, Duration::from_secs(limit), || async {
        match settled {
            Settled::HpaGone => hpas.get_opt(&hpa).await.ok()?.is_none().then_some(()),
            Settled::HpaReads => {
                let s = serde_json::to_value(hpas.get_opt(&hpa).await.ok()??.status).ok()?;
                s["currentMetrics"][0]["external"]["current"]["averageValue"]
                    .is_string()
                    .then_some(())
            }
            Settled::ScaledToZero => {
                let d = deploys.get(APP).await.ok()?;
                (d.spec?.replicas == Some(0)).then_some(())
            }
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{ns}: {e}"))
}

fn pause(paused: bool) -> Value {
    json!({"metadata": {"annotations": {PAUSED: if paused { json!("true") } else { Value::Null }}}})
}

/// One window: the requests each client made and the KEDA operator's CPU.
async fn window(stack: &Stack, log: &Path, label: &str) -> R<Value> {
    let from = std::fs::metadata(log)?.len();
    let cpu0 = component_cpu_seconds(stack, "keda-operator");
    let start = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, component_cpu_seconds(stack, "keda-operator")) {
        (Some(a), Some(b)) => Some((b - a) / seconds),
        _ => None,
    };
    let counts = count_from(log, from)?;
    let (keda, tidal) = (total(&counts, KEDA_CLIENT), total(&counts, CLIENT_ID));
    progress(format!(
        "polling cost, {label}: {keda} Kafka requests from KEDA, {tidal} from Tidal in {seconds:.0} s"
    ));
    let of = |client: &str| counts.get(client).cloned().unwrap_or_default();
    Ok(json!({
        "seconds": seconds,
        "keda_requests": keda,
        "keda_by_request": of(KEDA_CLIENT),
        "tidal_requests": tidal,
        "tidal_by_request": of(CLIENT_ID),
        "keda_operator_cpu_cores": cpu,
    }))
}

async fn windows(
    stack: &Stack,
    admin: &kube::Client,
    log: &Path,
    default_ns: &str,
    fast_ns: &str,
) -> R<Value> {
    change(admin, default_ns, pause(true), Settled::HpaGone).await?;
    change(admin, fast_ns, pause(true), Settled::HpaGone).await?;
    let none = window(stack, log, "both KEDA ScaledObjects paused").await?;
    let stray = none["keda_requests"].as_u64().unwrap_or(u64::MAX);
    anyhow::ensure!(
        stray == 0,
        "{stray} Kafka requests with client id {KEDA_CLIENT} while both ScaledObjects were \
         paused: the requests counted would not be KEDA's scalers' alone"
    );
    change(admin, default_ns, pause(false), Settled::HpaReads).await?;
    let default = window(stack, log, "pollingInterval 30 s alone").await?;
    change(admin, default_ns, pause(true), Settled::HpaGone).await?;
    change(admin, fast_ns, pause(false), Settled::HpaReads).await?;
    let fast = window(stack, log, "pollingInterval 1 s alone").await?;
    change(
        admin,
        fast_ns,
        json!({"spec": {"minReplicaCount": 0}}),
        Settled::ScaledToZero,
    )
    .await?;
    let fast_zero = window(stack, log, "pollingInterval 1 s, minReplicaCount 0, alone").await?;
    Ok(json!({
        "window_seconds": WINDOW.as_secs(),
        "both_paused": none,
        "keda-lag": default,
        "keda-lag-1s": fast,
        "keda-lag-1s-min0": fast_zero,
    }))
}

/// The phase (see the module's comment), with the broker's request log on only for it.
/// Leaves both ScaledObjects paused or at 0: it comes after the part's figures.
pub(super) async fn measure(
    stack: &Stack,
    admin: &kube::Client,
    created: &Created,
    default_ns: &str,
    fast_ns: &str,
) -> R<Value> {
    let log = PathBuf::from(format!("{}/logs/kafka.log", stack.var("TIDAL_STACK_DIR")?));
    let id = broker_id(stack)?;
    created.kafka_request_logger(&id);
    // Tried back to WARN whatever happened, also when turning it up failed half-way.
    let measured = match request_logging(stack, &id, "DEBUG").await {
        Ok(()) => windows(stack, admin, &log, default_ns, fast_ns).await,
        Err(e) => Err(e),
    };
    let restored = request_logging(stack, &id, "WARN").await;
    if restored.is_ok() {
        created.kafka_request_logger_restored(&id);
    }
    let out = measured?;
    restored?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_gives_its_client_and_kind_and_other_lines_nothing() {
        let line = r#"[2026-12-05 11:24:43,316] DEBUG Completed request:{"isForwarded":false,"requestHeader":{"requestApiKey":9,"requestApiVersion":8,"correlationId":35,"clientId":"sarama","requestApiKeyName":"OFFSET_FETCH"},"request":{"groupId":"g"},"connection":"127.0.0.1:27092-127.0.0.1:59686-1-0","totalTimeMs":2.3} (kafka.request.logger)"#;
        assert_eq!(
            parse_line(line),
            Some(("sarama".to_string(), "OFFSET_FETCH".to_string()))
        );
        assert_eq!(
            parse_line("[2026-12-05 11:24:43,316] INFO started (kafka.server.KafkaRaftServer)"),
            None
        );
        // A line cut short (the broker stopped mid-write) is not counted.
        assert_eq!(parse_line(&line[..line.len() / 2]), None);
    }

    #[test]
    fn a_log_is_counted_from_an_offset_by_client_and_kind_whatever_its_bytes() -> R<()> {
        let dir = std::env::temp_dir().join(tidal_e2e::unique("polling-cost"));
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("kafka.log");
        let req = |client: &str, api: &str| {
            format!(
                "[t] DEBUG Completed request:{{\"requestHeader\":{{\"clientId\":\"{client}\",\"requestApiKeyName\":\"{api}\"}}}} (kafka.request.logger)\n"
            )
        };
        let before = req("sarama", "METADATA");
        let mut text = before.clone().into_bytes();
        text.extend(req("sarama", "OFFSET_FETCH").bytes());
        text.extend(req("sarama", "OFFSET_FETCH").bytes());
        text.extend(b"[t] WARN \xff not UTF-8 (kafka)\n");
        text.extend(req(CLIENT_ID, "LIST_OFFSETS").bytes());
        std::fs::write(&log, text)?;
        let counts = count_from(&log, before.len() as u64);
        std::fs::remove_dir_all(&dir)?;
        let counts = counts?;
        assert_eq!(total(&counts, KEDA_CLIENT), 2);
        assert_eq!(counts[KEDA_CLIENT]["OFFSET_FETCH"], 2);
        assert_eq!(total(&counts, CLIENT_ID), 1);
        assert_eq!(total(&counts, "nobody"), 0);
        Ok(())
    }
}

//! A hostile "Kafka broker" named by a ScalingPolicy, against the real `tidal-scaler` binary on
//! the real stack (issue #14, item 6; docs/reliability.md): its peak RSS (`VmHWM`) stays well
//! under the manifests' memory limit, the policy's status names the metric with an error that
//! echoes nothing the server sent, and the Deployment is never scaled on the unknown lag.
//!
//! Before the Kafka client was hardened, one policy naming a server that answers with a
//! 256 MiB length prefix took the scaler to 290 MiB RSS, over the 192Mi limit. The hostile
//! server is tidal-core's scripted fake broker (`tidal_core::kafka::fake`, the `fake-broker`
//! feature, enabled only for this crate's tests), on 127.0.0.1: nothing leaves the machine.
//! The scaler is the debug build of `cargo build --workspace --bins` (as scripts/test.sh does),
//! with production defaults for every `--kafka-*` flag, the manifests' RBAC, and the hostile
//! server configured as `--kafka-cluster hostile=127.0.0.1:<port>`.
//!
//! Every case prints one `hostile-broker RSS:` line (idle and peak `VmHWM`, `VmRSS` at the end,
//! the limit, connections and rounds), the figures of bench/RESULTS.md:
//!
//! ```text
//! cargo build --workspace --bins --locked
//! cargo test -p tidal-e2e --locked --test hostile_broker -- --nocapture 2>&1 | grep "hostile-broker RSS"
//! ```

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tidal_core::kafka::fake::{Action, Fake, Req, api_versions, metadata};
use tidal_core::kafka::limits::DEFAULT_MAX_FRAME_BYTES;
use tidal_e2e::builders::{deployment, policy};
use tidal_e2e::manifests::{ScalerRbac, ensure_crd, scaler_memory_limit};
use tidal_e2e::scaler::{Memory, ReplicaHistory, Scaler, condition, metric_error, policy_status};
use tidal_e2e::{Stack, in_namespace};
use tidal_scaler::api::ScalingPolicy;

type R = anyhow::Result<()>;

const MIB: u64 = 1 << 20;
const API_VERSIONS: i16 = 18;
const METADATA: i16 = 3;
/// How long the policy runs against the hostile server: many 1 s cycles, and at least three
/// whole rounds even when every round runs into its 6 s deadline.
const RUN: Duration = Duration::from_secs(25);
/// The peak must stay this far under the limit (a quarter of it: 48 MiB of 192Mi).
const MARGIN_FRACTION: f64 = 0.25;
/// In everything the fake sends. Six bytes: it also replaces the topic name `orders` of the
/// fake's Metadata answers, so those stay well formed.
const MARKER: &str = "Qx7Zmk";
/// Nor may the announced length be echoed.
const ANNOUNCED_200_MIB: &str = "209715200";
const ERRORS: &str = "tidal_scaler_errors_total";
const SCALE_EVENTS: &str = "tidal_scaler_scale_events_total";

/// `script`, counting the requests it answers in the returned counter.
fn counted(
    script: impl Fn(Req) -> Action + Send + Sync + 'static,
) -> (
    Arc<AtomicUsize>,
    impl Fn(Req) -> Action + Send + Sync + 'static,
) {
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let counted = move |r| {
        count.fetch_add(1, Ordering::SeqCst);
        script(r)
    };
    (requests, counted)
}

/// `n` bytes of the marker, repeated.
fn marker_bytes(n: usize) -> Vec<u8> {
    MARKER.bytes().cycle().take(n).collect()
}

/// A well-formed Metadata answer with `brokers` brokers (all 127.0.0.1:`port`, the fake
/// itself, so nothing would leave the machine even if they were contacted) and one topic
/// named [`MARKER`].
fn marked_metadata(req: Req, brokers: i32, port: u16) -> Vec<u8> {
    let list: Vec<(i32, String, i32)> = (0..brokers)
        .map(|id| (id, "127.0.0.1".to_string(), i32::from(port)))
        .collect();
    let mut frame = metadata(req, &list, 4);
    if let Some(at) = frame.windows(6).position(|w| w == b"orders") {
        frame[at..at + 6].copy_from_slice(MARKER.as_bytes());
    }
    frame
}

/// (a) Every request is answered with a 200 MiB length prefix, then marker bytes dribbled
/// (1 KiB every 50 ms) for as long as the connection stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_length_prefix_then_a_dribble() -> R {
    let (requests, script) = counted(|_| {
        let mut bytes = (200 * MIB as i32).to_be_bytes().to_vec();
        bytes.extend(marker_bytes(1 << 20));
        Action::Dribble {
            bytes,
            chunk: 1024,
            every: Duration::from_millis(50),
        }
    });
    let fake = Fake::start(script).await;
    run_case(
        "200MiB-prefix",
        vec![(fake, requests)],
        &["max_frame_bytes"],
    )
    .await
}

/// ApiVersions answered, then Metadata answered with a frame of exactly
/// `--kafka-max-frame-bytes` (16 MiB) of marker bytes, at full speed.
fn garbage_at_the_cap(r: Req) -> Action {
    // Built once: making 16 MiB byte by byte (a debug build) on every request would hold the
    // test's own runtime threads.
    static FRAME: OnceLock<Vec<u8>> = OnceLock::new();
    match r.api_key {
        API_VERSIONS => Action::Send(api_versions(r)),
        _ => Action::Send(
            FRAME
                .get_or_init(|| {
                    let mut bytes = (DEFAULT_MAX_FRAME_BYTES as i32).to_be_bytes().to_vec();
                    bytes.extend(marker_bytes(DEFAULT_MAX_FRAME_BYTES));
                    bytes
                })
                .clone(),
        ),
    }
}

/// (a') The worst one server can do within the cap: a frame of exactly the cap (16 MiB) of
/// garbage, every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_at_the_cap_of_garbage_every_round() -> R {
    let (requests, script) = counted(garbage_at_the_cap);
    let fake = Fake::start(script).await;
    run_case(
        "16MiB-garbage",
        vec![(fake, requests)],
        &["malformed response"],
    )
    .await
}

/// (a'') The same from eight configured clusters at once, one policy with a metric on each:
/// the scaler collects up to eight clusters concurrently (`MAX_CONCURRENT_ROUNDS`), so the
/// frame cap is paid eight times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clusters_with_frames_at_the_cap_at_once() -> R {
    let mut fakes = Vec::new();
    for _ in 0..8 {
        let (requests, script) = counted(garbage_at_the_cap);
        fakes.push((Fake::start(script).await, requests));
    }
    run_case("8x16MiB-garbage", fakes, &["malformed response"]).await
}

/// (b) Metadata advertises 10,000 brokers (the cap is 1,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_advertised_brokers() -> R {
    let port = Arc::new(OnceLock::<u16>::new());
    let known = port.clone();
    let (requests, script) = counted(move |r| match r.api_key {
        API_VERSIONS => Action::Send(api_versions(r)),
        METADATA => Action::Send(marked_metadata(
            r,
            10_000,
            known.get().copied().unwrap_or(1),
        )),
        _ => Action::Close,
    });
    let fake = Fake::start(script).await;
    let _ = port.set(fake.port);
    run_case("10k-brokers", vec![(fake, requests)], &["max_brokers"]).await
}

/// (c) A well-formed Metadata answer sent one byte a second (it would take over a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_one_byte_a_second() -> R {
    let port = Arc::new(OnceLock::<u16>::new());
    let known = port.clone();
    let (requests, script) = counted(move |r| match r.api_key {
        API_VERSIONS => Action::Send(api_versions(r)),
        _ => Action::Dribble {
            bytes: marked_metadata(r, 1, known.get().copied().unwrap_or(1)),
            chunk: 1,
            every: Duration::from_secs(1),
        },
    });
    let fake = Fake::start(script).await;
    let _ = port.set(fake.port);
    run_case(
        "slow-1B/s",
        vec![(fake, requests)],
        &["timed out", "round_timeout"],
    )
    .await
}

/// (c') Connections accepted, no request ever answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_answers() -> R {
    let (requests, script) = counted(|_| Action::Stall);
    let fake = Fake::start(script).await;
    run_case(
        "silent",
        vec![(fake, requests)],
        &["timed out", "round_timeout"],
    )
    .await
}

/// Runs one case in a fresh namespace with the manifests' scaler RBAC.
async fn run_case(
    case: &'static str,
    fakes: Vec<(Fake, Arc<AtomicUsize>)>,
    expect: &'static [&'static str],
) -> R {
    let stack = Stack::load()?;
    let admin = stack.admin_client().await?;
    // Tests of this binary run at once, and the first `kubectl apply` of the CRD on a fresh
    // stack can race another one (AlreadyExists): once more.
    if ensure_crd(&stack).is_err() {
        ensure_crd(&stack)?;
    }
    let limit = scaler_memory_limit(&stack)?;
    let node = stack
        .kwok_nodes()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no KWOK node"))?;
    let client = admin.clone();
    in_namespace(&admin, "hostile-broker", |ns| async move {
        let rbac = ScalerRbac::install(&stack, &client, &ns).await?;
        let result = hostile(
            case,
            &fakes,
            expect,
            limit,
            &client,
            &ns,
            &node,
            &rbac.kubeconfig,
        )
        .await;
        rbac.remove(&stack)?;
        result
    })
    .await
}

#[allow(clippy::too_many_arguments)]
async fn hostile(
    case: &str,
    fakes: &[(Fake, Arc<AtomicUsize>)],
    expect: &[&str],
    limit: u64,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
) -> R {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    deploys
        .create(
            &PostParams::default(),
            &deployment("consumer", node, 2, "10m")?,
        )
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), "consumer").await?;
    // Cluster `hostile` (then `hostile1`, ...) and metric `lag` (`lag1`, ...) per fake.
    let suffix = |i: usize| if i == 0 { String::new() } else { i.to_string() };
    let clusters: Vec<String> = fakes
        .iter()
        .enumerate()
        .map(|(i, (fake, _))| format!("hostile{}={}", suffix(i), fake.addr))
        .collect();
    let metric_names: Vec<String> = (0..fakes.len())
        .map(|i| format!("lag{}", suffix(i)))
        .collect();
    let metrics: Vec<serde_json::Value> = (0..fakes.len())
        .map(|i| {
            json!({"name": metric_names[i], "kafkaLag": {"cluster": format!("hostile{}", suffix(i)),
                   "group": "g", "topics": ["orders"], "lagPerReplica": 10}})
        })
        .collect();
    let mut scaler = Scaler::start(
        kubeconfig,
        ns,
        "scaler-hostile",
        &[
            "--leader-elect=false",
            "--kafka-cluster",
            &clusters.join(","),
        ],
    )?;
    let log = |scaler: &Scaler| format!("{}\nscaler log:\n{}", history.render(), scaler.tail());

    // Idle: serving, a few cycles with no policy.
    tidal_e2e::wait_for(
        "the scaler's metrics server",
        Duration::from_secs(30),
        || async { scaler.scrape().await },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; {}", log(&scaler)))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = Memory::of(scaler.pid())?;

    policies
        .create(
            &PostParams::default(),
            &policy(
                "consumer",
                json!({
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "consumer"},
                    "minReplicas": 0, "maxReplicas": 10,
                    "metrics": metrics,
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}
                }),
            )?,
        )
        .await?;
    let started = Instant::now();
    // When the metric first showed an error, and every distinct ScalingActive message while
    // it had one.
    let mut first_error: Option<Duration> = None;
    let mut messages: Vec<String> = Vec::new();
    while started.elapsed() < RUN {
        let status = policy_status(&policies, "consumer").await;
        let text = status.to_string();
        anyhow::ensure!(
            !text.contains(MARKER) && !text.contains(ANNOUNCED_200_MIB),
            "{case}: the status echoes what the server sent: {text}\n{}",
            log(&scaler)
        );
        if metric_error(&status, "lag").is_some() {
            let active = condition(&status, "ScalingActive");
            let message = active["message"].as_str().unwrap_or_default().to_string();
            if first_error.is_none() {
                first_error = Some(started.elapsed());
            }
            if !messages.contains(&message) {
                messages.push(message);
            }
        }
        anyhow::ensure!(
            scaler.child.0.try_wait()?.is_none(),
            "{case}: the scaler exited\n{}",
            log(&scaler)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let end = Memory::of(scaler.pid())?;
    // A busy debug build may miss the 2 s scrape timeout: a few tries.
    let mut scraped = None;
    for _ in 0..5 {
        if let (Ok(errors), Ok(scale_events)) =
            (scaler.family(ERRORS).await, scaler.sum(SCALE_EVENTS).await)
        {
            scraped = Some((errors, scale_events));
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (errors, scale_events) = scraped.ok_or_else(|| {
        anyhow::anyhow!(
            "{case}: the metrics server does not answer\n{}",
            log(&scaler)
        )
    })?;
    // (Read again if the API server does not answer at once.)
    let status = tidal_e2e::wait_for("the policy's status", Duration::from_secs(30), || async {
        Some(policy_status(&policies, "consumer").await).filter(|s| !s.is_null())
    })
    .await?;
    let reason = metric_error(&status, "lag").unwrap_or_default().to_string();
    let without_error: Vec<&String> = metric_names
        .iter()
        .filter(|m| metric_error(&status, m).is_none())
        .collect();
    let active = condition(&status, "ScalingActive");
    let last = active["message"].as_str().unwrap_or_default().to_string();
    let requests: Vec<usize> = fakes
        .iter()
        .map(|(_, r)| r.load(Ordering::SeqCst))
        .collect();
    let connections: Vec<usize> = fakes.iter().map(|(f, _)| f.accepted()).collect();
    let mib = |b: u64| b as f64 / MIB as f64;
    // The figures first, so they are there even when an assertion below fails.
    eprintln!(
        "hostile-broker RSS: case={case} idle_peak={:.1}MiB peak={:.1}MiB rss_end={:.1}MiB \
         limit={:.0}MiB growth={:.1}MiB connections={connections:?} requests={requests:?} \
         first_error_after={} errors={errors:?}\n  messages: {messages:#?}\n  last: {reason}: {last}",
        mib(idle.peak),
        mib(end.peak),
        mib(end.rss),
        mib(limit),
        mib(end.peak.saturating_sub(idle.peak)),
        first_error
            .as_ref()
            .map_or("never".into(), |t| format!("{:.1}s", t.as_secs_f64())),
    );

    // Alive, and well under the limit.
    anyhow::ensure!(
        scaler.child.0.try_wait()?.is_none(),
        "{case}: the scaler exited\n{}",
        log(&scaler)
    );
    let ceiling = (limit as f64 * (1.0 - MARGIN_FRACTION)) as u64;
    anyhow::ensure!(
        end.peak <= ceiling,
        "{case}: peak RSS {:.1} MiB is over {:.1} MiB (the manifests' limit {:.0} MiB less {:.0}%)",
        mib(end.peak),
        mib(ceiling),
        mib(limit),
        MARGIN_FRACTION * 100.0
    );

    // The metric has an error, and ScalingActive=False says why in the client's words: the
    // metric, the cluster and the step or the cap; while the client backs off from a bootstrap
    // broker that failed on connect (1, 2, 4, 8 s...), it says only that, so the cause must
    // show in some of the messages and every message must be one or the other.
    anyhow::ensure!(
        first_error.is_some(),
        "{case}: no error on metric lag in {RUN:?}; status {status}\n{}",
        log(&scaler)
    );
    anyhow::ensure!(
        !reason.is_empty() && without_error.is_empty() && active["status"] == "False",
        "{case}: metrics {without_error:?} have no error at the end; status {status}"
    );
    let names = |message: &str, causes: &[&str]| {
        causes.iter().any(|e| message.contains(e))
            && message.contains("metric lag")
            && message.contains("kafka cluster \"hostile")
    };
    anyhow::ensure!(
        messages.iter().any(|m| names(m, expect)),
        "{case}: no ScalingActive message names the metric, the cluster and one of {expect:?}: \
         {messages:#?}"
    );
    let or_backoff: Vec<&str> = expect.iter().copied().chain(["backing off"]).collect();
    for message in messages.iter().chain([&last]) {
        anyhow::ensure!(
            names(message, &or_backoff),
            "{case}: ScalingActive's message {message:?} does not name the metric, the cluster \
             and one of {or_backoff:?}"
        );
    }
    // Nor do the Events carry what the server sent.
    let event_list = events.list(&ListParams::default()).await?;
    let event_text = serde_json::to_string(&event_list.items)?;
    anyhow::ensure!(
        !event_text.contains(MARKER) && !event_text.contains(ANNOUNCED_200_MIB),
        "{case}: an Event echoes what the server sent: {event_text}"
    );
    // No scale on unknown lag (minReplicas 0: never to zero either).
    let values: Vec<i32> = history.changes().iter().map(|c| c.replicas).collect();
    anyhow::ensure!(
        values == [2] && scale_events == 0.0,
        "{case}: wrong actuation on unknown lag ({scale_events} scale events)\n{}",
        log(&scaler)
    );
    // Several rounds reached the server.
    anyhow::ensure!(
        requests.iter().all(|n| *n >= 3),
        "{case}: requests that reached each hostile server: {requests:?}\n{}",
        log(&scaler)
    );
    Ok(())
}

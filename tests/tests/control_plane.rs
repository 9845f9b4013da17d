//! Faults of the control plane itself (issue #14, item 6; docs/reliability.md): the stack's
//! real kube-apiserver, its real etcd and its Kafka broker, each killed with SIGKILL and
//! brought back by `scripts/stack.sh up`, and a storm of 429s from the real API server (API
//! Priority and Fairness, on as in every cluster: the scaler's account put in a level with no
//! seats, kept busy by requests of the same account that the API server holds), while a scaler of the test's own (the manifests' RBAC, a 3 s lease) holds a
//! Kafka-lag workload at its right count.
//!
//! Zero wrong actuations: the count must not move during the outage nor after it, the scaler
//! must not exit, and it must lead and act again once the control plane is back. These faults
//! disturb the whole stack, so they live in a test binary of their own (cargo runs test
//! binaries one at a time) and take a lock, so they never overlap each other.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, PostParams, VersionMatch};
use serde_json::json;
use tidal_e2e::builders::{deployment, policy};
use tidal_e2e::kafka::{commit, create_topic, produce};
use tidal_e2e::manifests::kubectl;
use tidal_e2e::scaler::{ReplicaHistory, Scaler, in_scaler_namespace};
use tidal_e2e::{Stack, repo_root, unique, wait_for};
use tidal_scaler::api::ScalingPolicy;

type R = anyhow::Result<()>;

const SCALE_EVENTS: &str = "tidal_scaler_scale_events_total";

/// One control-plane fault at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the component stays dead: longer than the scaler's 3 s lease, shorter than the
/// 10 s renew deadline of the stack's other controllers (the broker's restart adds its own
/// start-up, about 10 s, under `stack.sh up`).
const DOWN_FOR: Duration = Duration::from_secs(6);

/// SIGKILLs the stack's `component` (its pid file under the stack's directory), waits
/// `DOWN_FOR`, then runs `scripts/stack.sh up`, which starts what is not running and waits
/// until it is ready. Returns how long `up` took.
async fn kill_and_restart(stack: &Stack, component: &str) -> anyhow::Result<Duration> {
    let dir = stack
        .env_file
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no stack directory above {:?}", stack.env_file))?;
    let pidfile = dir.join("pids").join(format!("{component}.pid"));
    let pid: u32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
    // The whole process group (each component runs in its own session): Kafka's start
    // script and its JVM together.
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()?;
    anyhow::ensure!(killed.success(), "could not kill {component} (pid {pid})");
    tokio::time::sleep(DOWN_FOR).await;
    let started = Instant::now();
    let dir = dir.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(repo_root().join("scripts/stack.sh"))
            .arg("up")
            .env("TIDAL_STACK_DIR", dir)
            .output()
    })
    .await??;
    anyhow::ensure!(
        out.status.success(),
        "scripts/stack.sh up after killing {component} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(started.elapsed())
}

/// Every component of the stack still runs (`scripts/stack.sh status`).
fn stack_intact(stack: &Stack) -> R {
    let dir = stack.env_file.parent().unwrap_or(Path::new("."));
    let out = Command::new(repo_root().join("scripts/stack.sh"))
        .arg("status")
        .env("TIDAL_STACK_DIR", dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "a stack component stopped after the fault:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiserver_killed_and_restarted_causes_no_wrong_actuation() -> R {
    hold_through(Fault::Kill("kube-apiserver")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_killed_and_restarted_causes_no_wrong_actuation() -> R {
    hold_through(Fault::Kill("etcd")).await
}

/// The lag is unknown while the broker is down: with `minReplicas: 0`, neither a scale-down
/// nor a scale to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_broker_killed_and_restarted_causes_no_wrong_actuation() -> R {
    hold_through(Fault::Kill("kafka")).await
}

/// The real API server refuses the scaler's requests with 429 for [`STORM_FOR`] (see
/// [`storm`]); its lease runs out, it writes nothing, and it leads and acts again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_on_the_scalers_account_causes_no_wrong_actuation() -> R {
    hold_through(Fault::Storm).await
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGKILL a stack component, bring it back with `scripts/stack.sh up`.
    Kill(&'static str),
    /// The real API server answers 429 to the scaler's account (API Priority and Fairness).
    Storm,
}

/// A consumer at its right count (lag 30, 10 per replica: 3) through `fault`; then more lag,
/// to show the scaler acts again.
async fn hold_through(fault: Fault) -> R {
    let _serial = SERIAL.lock().await;
    let prefix = match fault {
        Fault::Kill(c) => format!("cp-{}", &c[..4]),
        Fault::Storm => "cp-storm".into(),
    };
    in_scaler_namespace(&prefix, |env| async move {
        hold(
            &env.stack,
            &env.admin,
            &env.ns,
            &env.node,
            &env.kubeconfig,
            fault,
        )
        .await
    })
    .await
}

/// How long the storm lasts: several 3 s leases.
const STORM_FOR: Duration = Duration::from_secs(15);
/// The requests of priority level `level` the API server refused (its own count,
/// `apiserver_flowcontrol_rejected_requests_total`).
fn rejected(stack: &Stack, level: &str) -> anyhow::Result<f64> {
    let metrics = kubectl(stack, &["get", "--raw", "/metrics"], None)?;
    let label = format!("priority_level=\"{level}\"");
    Ok(metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_flowcontrol_rejected_requests_total{") && l.contains(&label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Puts the scaler's ServiceAccount `ns/tidal-scaler` in a priority level of its own with no
/// seats at all (`nominalConcurrencyShares: 0`, nothing lent or borrowed) and
/// `limitResponse: Reject`, for `STORM_FOR`, and keeps one request of that level executing
/// all along ([`occupy`]): the real API server then answers 429 to the scaler's requests, as
/// it does to a client its priority level cannot serve. A seatless level alone is not enough:
/// the API server still dispatches a request to a level with no request executing (its
/// queueset lets a request wider than the limit through when the level is idle,
/// `canAccommodateSeatsLocked` in k8s.io/apiserver), which is why a first version of this test
/// saw no 429 on an idle CI machine. Returns the API server's count of requests refused at
/// that level, and how long after the first 429 `scaler` stopped leading (its Lease could not
/// be renewed), if it did. The flowcontrol objects are removed after, even on failure.
async fn storm(
    stack: &Stack,
    ns: &str,
    kubeconfig: &Path,
    scaler: &Scaler,
) -> anyhow::Result<(u64, Option<Duration>)> {
    let name = unique("tidal-storm");
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
         "metadata": {"name": name},
         "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 0,
                  "lendablePercent": 0, "borrowingLimitPercent": 0,
                  "limitResponse": {"type": "Reject"}}}},
        {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
         "metadata": {"name": name},
         "spec": {"priorityLevelConfiguration": {"name": name}, "matchingPrecedence": 100,
                  "distinguisherMethod": {"type": "ByUser"},
                  "rules": [{"subjects": [{"kind": "ServiceAccount",
                                           "serviceAccount": {"namespace": ns, "name": "tidal-scaler"}}],
                             "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                                "namespaces": ["*"], "clusterScope": true}],
                             "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}}
    ]})
    .to_string();
    kubectl(stack, &["apply", "-f", "-"], Some(&objects))?;
    let stop = Arc::new(AtomicBool::new(false));
    let jailed = async {
        // The scaler's own account, without kube's retries.
        let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?;
        config.default_retry = false;
        let account = kube::Client::try_from(config)?;
        let occupiers: Vec<_> = (0..OCCUPIERS)
            .map(|_| tokio::spawn(occupy(Api::namespaced(account.clone(), ns), stop.clone())))
            .collect();
        // A probe: the level is in force once it answers 429.
        let deploys: Api<Deployment> = Api::namespaced(account.clone(), ns);
        let first = wait_for("the first 429", Duration::from_secs(30), || async {
            match deploys.get("consumer").await {
                Err(kube::Error::Api(e)) if e.code == 429 => Some(()),
                _ => None,
            }
        })
        .await;
        // Through the storm, whether the scaler still leads (its own metrics, not the API).
        let mut deposed = None;
        if first.is_ok() {
            let started = Instant::now();
            while started.elapsed() < STORM_FOR {
                if deposed.is_none() && scaler.leader().await == Some(0.0) {
                    deposed = Some(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut held = 0;
        for o in occupiers {
            held += o.await?;
        }
        first?;
        eprintln!("429 storm: the occupiers' requests held the level for {held} x ~3 s");
        anyhow::Ok((rejected(stack, &name)? as u64, deposed))
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let removed = kubectl(
        stack,
        &[
            "delete",
            "flowschema,prioritylevelconfiguration",
            &name,
            "--wait=true",
        ],
        None,
    );
    let refused = jailed?;
    removed?;
    Ok(refused)
}

/// Concurrent occupiers of the storm's level: while one holds the level, the others' requests
/// are refused at once and retried every [`OCCUPY_RETRY`], so a next one takes over within
/// milliseconds of the last one's end.
const OCCUPIERS: usize = 4;
const OCCUPY_RETRY: Duration = Duration::from_millis(10);

/// Keeps a request of the scaler's account executing at the API server until `stop`: a LIST
/// of pods at a resourceVersion the watch cache has not reached, which the API server holds
/// for 3 s waiting for it (`blockTimeout` of its watch cache) and then answers 504 "Too large
/// resource version". An ordinary request, not a long-running one, so it holds its level's
/// seat all along. Returns how many of its requests were held (not refused).
async fn occupy(pods: Api<k8s_openapi::api::core::v1::Pod>, stop: Arc<AtomicBool>) -> u64 {
    let far_ahead = ListParams {
        resource_version: Some(i64::MAX.to_string()),
        version_match: Some(VersionMatch::NotOlderThan),
        ..ListParams::default()
    };
    let mut held = 0;
    while !stop.load(Ordering::Relaxed) {
        match pods.list(&far_ahead).await {
            Err(kube::Error::Api(e)) if e.code == 429 => {
                tokio::time::sleep(OCCUPY_RETRY).await;
            }
            _ => held += 1,
        }
    }
    held
}

async fn hold(
    stack: &Stack,
    client: &kube::Client,
    ns: &str,
    node: &str,
    kubeconfig: &Path,
    fault: Fault,
) -> R {
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let (topic, group) = (unique("cp-t"), unique("cp-g"));
    // Six partitions: KEDA's rule caps the count at the partition count.
    create_topic(&bootstrap, &topic, 6).await?;
    produce(&bootstrap, &topic, &[5; 6]).await?;
    let zero: Vec<(&str, i32, i64)> = (0..6).map(|p| (topic.as_str(), p, 0)).collect();
    commit(&bootstrap, &group, &zero)?;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let policies: Api<ScalingPolicy> = Api::namespaced(client.clone(), ns);
    deploys
        .create(
            &PostParams::default(),
            &deployment("consumer", node, 3, "10m")?,
        )
        .await?;
    let history = ReplicaHistory::watch(deploys.clone(), "consumer").await?;
    let cluster = format!("stack={bootstrap}");
    // Where the lag itself goes unknown, zero is allowed: it must still not happen.
    let min_replicas = if matches!(fault, Fault::Kill("kafka")) {
        0
    } else {
        1
    };
    let scaler = Scaler::start(
        kubeconfig,
        ns,
        "scaler-cp",
        &[
            "--kafka-cluster",
            &cluster,
            "--lease-name",
            "tidal-scaler",
            "--lease-duration-seconds",
            "3",
        ],
    )?;
    policies
        .create(
            &PostParams::default(),
            &policy(
                "consumer",
                json!({
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "consumer"},
                    "minReplicas": min_replicas, "maxReplicas": 6,
                    "metrics": [{"name": "lag", "kafkaLag": {"cluster": "stack", "group": group,
                                 "topics": [topic], "lagPerReplica": 10}}],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}
                }),
            )?,
        )
        .await?;
    let log = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("{e}; {}\nscaler log:\n{}", history.render(), scaler.tail())
    };
    let seen = std::sync::Mutex::new(String::new());
    wait_for(
        "the scaler leads and reads lag 30 (10 per replica)",
        Duration::from_secs(60),
        || async {
            let v = scaler.family("tidal_scaler_metric_value").await.ok()?;
            if let Ok(mut s) = seen.lock() {
                *s = format!("{v:?}");
            }
            let lag = v
                .iter()
                .find(|(l, _)| l.contains("metric=\"lag\""))
                .map(|(_, v)| *v)?;
            (lag == 10.0 && scaler.leader().await == Some(1.0)).then_some(())
        },
    )
    .await
    .map_err(|e| {
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        log(&format!("{e}; tidal_scaler_metric_value: {seen}"))
    })?;
    let scaled_before = scaler.sum(SCALE_EVENTS).await?;

    let fault_at = history.started.elapsed();
    let what = match fault {
        Fault::Kill(component) => {
            let up_took = kill_and_restart(stack, component).await?;
            format!(
                "{component} killed at t={:.1}s for {:.0}s; `stack.sh up` took {:.1}s",
                fault_at.as_secs_f64(),
                DOWN_FOR.as_secs_f64(),
                up_took.as_secs_f64()
            )
        }
        Fault::Storm => {
            let (refused, deposed) = storm(stack, ns, kubeconfig, &scaler).await?;
            // Its Lease could not be renewed: it stopped leading (and so writing) within
            // about a lease (3 s) of the first 429.
            let deposed = deposed.ok_or_else(|| {
                log(&format!(
                    "the scaler led through the whole {STORM_FOR:?} storm: its Lease renewals \
                     were not refused"
                ))
            })?;
            let log = std::fs::read_to_string(&scaler.log)?;
            // kube's message for a 429 with the API server's Status (reason TooManyRequests).
            let refusals = log.matches("Too many requests").count();
            anyhow::ensure!(
                refusals > 0,
                "the scaler's own requests were never refused with 429 (the level refused \
                 {refused}); scaler log:\n{}",
                scaler.tail()
            );
            format!(
                "429 storm from t={:.1}s for {:.0}s: the API server refused {refused} requests \
                 at the scaler's level; the scaler logged {refusals} refusals and stopped \
                 leading {:.1}s after the first 429",
                fault_at.as_secs_f64(),
                STORM_FOR.as_secs_f64(),
                deposed.as_secs_f64()
            )
        }
    };
    let back = Instant::now();
    // It leads again (its lease ran out while the API was gone) ...
    wait_for(
        "the scaler leads again",
        Duration::from_secs(60),
        || async { (scaler.leader().await == Some(1.0)).then_some(()) },
    )
    .await
    .map_err(|e| log(&e))?;
    let led_after = back.elapsed();
    // ... and keeps deciding 3 for a while with everything relisted.
    tokio::time::sleep(Duration::from_secs(8)).await;
    anyhow::ensure!(
        history.values() == [3],
        "wrong actuation around {fault:?}: {}\nscaler log:\n{}",
        history.render(),
        scaler.tail()
    );
    let scaled_after = scaler.sum(SCALE_EVENTS).await?;
    anyhow::ensure!(
        scaled_after == scaled_before,
        "the scaler counted scale writes around {fault:?} ({scaled_before} -> {scaled_after}); \
         scaler log:\n{}",
        scaler.tail()
    );

    // It acts again: twice the lag, twice the consumers.
    let more = Instant::now();
    produce(&bootstrap, &topic, &[5; 6]).await?;
    let up = history
        .wait_for(6, Duration::from_secs(45))
        .await
        .map_err(|e| log(&e))?;
    anyhow::ensure!(history.values() == [3, 6], "{}", history.render());
    stack_intact(stack)?;
    eprintln!(
        "{what}; the scaler led again {:.1}s after; held at 3; then lag 60 -> 6 in {:.1}s \
         (at t={:.1}s); {}",
        led_after.as_secs_f64(),
        more.elapsed().as_secs_f64(),
        up.at.as_secs_f64(),
        history.render()
    );
    Ok(())
}

//! `tidal-scaler run`: wires the watch caches, the sources, the election, the controller and
//! the HTTP server together, and shuts down gracefully on SIGTERM or Ctrl-C (the cycle in
//! progress finishes, the Lease is left to expire).

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tidal_core::lease::{self, Leadership};

use crate::actuators::Writer;
use crate::api::ScalingPolicy;
use crate::cli::{PrometheusAuthArgs, RunArgs};
use crate::controller::target::Caches;
use crate::controller::{Controller, Settings, Sources, trim};
use crate::metrics::Metrics;
use crate::readiness::{self, NeededApi, Problem, Readiness, RetryBackoff};
use crate::sources::agents::{AgentSource, Discovery};
use crate::sources::http::{BasicAuth, PrometheusAuth};
use crate::sources::kafka::{KafkaOptions, KafkaSource};
use crate::sources::prometheus::PrometheusSource;
use crate::watchdog::Watchdog;
use tidal_core::kafka::Limits;
use tidal_core::kafka::config::KafkaConfig;
use tidal_core::tls::TlsFiles;

fn api_for<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A watch cache of `api` holding objects cut down by `trim` (see `controller::trim`); the
/// future drives it. A failed list or watch is explained in `readiness` under the API's
/// plural (a missing CRD or a 403 names the fix) and retried with [`RetryBackoff`]; the
/// problem clears on the next success.
fn cache<K>(
    api: Api<K>,
    config: watcher::Config,
    needed: NeededApi,
    scope: String,
    readiness: Readiness,
    trim: fn(&mut K),
) -> (Store<K>, impl Future<Output = ()>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let (backoff, success) = RetryBackoff::new();
    let stream = watcher(api, config).backoff(backoff).modify(trim);
    let fut = async move {
        let stream = reflector::reflector(writer, stream);
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                // Init comes before every relist, including one that then fails: not a
                // success yet.
                Ok(watcher::Event::Init) => {}
                Ok(_) => {
                    success.succeeded();
                    readiness.clear(needed.plural);
                }
                Err(e) => {
                    let (verb, err) = match &e {
                        watcher::Error::InitialListFailed(err) => ("list", Some(err)),
                        watcher::Error::WatchStartFailed(err)
                        | watcher::Error::WatchFailed(err) => ("watch", Some(err)),
                        _ => ("watch", None),
                    };
                    let problem = match err {
                        Some(err) => readiness::explain(&needed, verb, &scope, err),
                        None => Problem {
                            message: format!("watch {} {scope} failed: {e}", needed.qualified()),
                            needs_action: false,
                        },
                    };
                    readiness.report(needed.plural, problem);
                }
            }
        }
    };
    (reader, fut)
}

fn identity(args: &RunArgs) -> String {
    args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "tidal-scaler".into());
        format!("{host}-{}", std::process::id())
    })
}

/// A body cap flag: at least 64 KiB.
fn body_cap(what: &'static str, v: usize) -> anyhow::Result<usize> {
    anyhow::ensure!(
        v >= 64 << 10,
        "{what} must be at least 65536 bytes, got {v}"
    );
    Ok(v)
}

fn secs(what: &'static str, v: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        v.is_finite() && v > 0.0 && v <= 3600.0,
        "{what} must be between 0 and 3600 seconds, got {v}"
    );
    Ok(Duration::from_secs_f64(v))
}

/// The Kafka source's timeouts, caps and raw-address policy from the `--kafka-*` flags.
fn kafka_options(args: &RunArgs) -> anyhow::Result<KafkaOptions> {
    let request = secs("--kafka-timeout-seconds", args.kafka_timeout_seconds)?;
    let mut o = KafkaOptions::new(request);
    if let Some(r) = args.kafka_round_timeout_seconds {
        o.round_timeout = secs("--kafka-round-timeout-seconds", r)?;
    }
    let cap = |what: &str, v: usize, min: usize| -> anyhow::Result<usize> {
        anyhow::ensure!(v >= min, "{what} must be at least {min}, got {v}");
        Ok(v)
    };
    o.limits = Limits {
        max_frame_bytes: cap(
            "--kafka-max-frame-bytes",
            args.kafka_max_frame_bytes,
            64 << 10,
        )?,
        max_brokers: cap("--kafka-max-brokers", args.kafka_max_brokers, 1)?,
        max_groups: cap("--kafka-max-groups", args.kafka_max_groups, 1)?,
        max_partitions: cap("--kafka-max-partitions", args.kafka_max_partitions, 1)?,
    };
    o.frame_budget_bytes = match args.kafka_frame_budget_bytes {
        Some(b) => cap("--kafka-frame-budget-bytes", b, o.limits.max_frame_bytes)?,
        None => o.limits.max_frame_bytes.saturating_mul(2),
    };
    o.allow_raw_addresses = args.kafka_allow_raw_addresses;
    if o.allow_raw_addresses {
        tracing::warn!(
            "--kafka-allow-raw-addresses: any ScalingPolicy may make the scaler connect to any host:port"
        );
    }
    Ok(o)
}

/// The Prometheus source's credentials and TLS from the `--prometheus-*` flags.
fn prometheus_auth(a: &PrometheusAuthArgs) -> anyhow::Result<PrometheusAuth> {
    let basic = match (
        &a.prometheus_basic_auth_username,
        &a.prometheus_basic_auth_password_file,
    ) {
        (Some(username), Some(password_file)) => Some(BasicAuth {
            username: username.clone(),
            password_file: password_file.clone(),
        }),
        (None, None) => None,
        (Some(_), None) => anyhow::bail!(
            "--prometheus-basic-auth-username needs --prometheus-basic-auth-password-file"
        ),
        (None, Some(_)) => anyhow::bail!(
            "--prometheus-basic-auth-password-file needs --prometheus-basic-auth-username"
        ),
    };
    Ok(PrometheusAuth {
        bearer_token_file: a.prometheus_bearer_token_file.clone(),
        basic,
        tls: TlsFiles {
            ca_file: a.prometheus_ca_file.clone(),
            cert_file: a.prometheus_cert_file.clone(),
            key_file: a.prometheus_key_file.clone(),
            server_name: None,
        },
    })
}

/// Wires the caches, sources, election and server, then runs the controller until
/// SIGTERM/Ctrl-C.
pub async fn run_controller(args: RunArgs) -> anyhow::Result<()> {
    let fast = secs("--fast-interval-seconds", args.fast_interval_seconds)?;
    let slow = secs(
        "--prometheus-interval-seconds",
        args.prometheus_interval_seconds,
    )?;
    let clients = crate::kube_client::clients(crate::kube_client::Timeouts {
        connect: secs(
            "--kube-connect-timeout-seconds",
            args.kube_connect_timeout_seconds,
        )?,
        read: secs(
            "--kube-read-timeout-seconds",
            args.kube_read_timeout_seconds,
        )?,
    })
    .await?;
    // Requests (writes, the Lease, scale reads) time out; watches get their own client.
    let client = clients.requests;
    let watch_client = clients.watches;
    let watchdog = Watchdog::new(match args.cycle_watchdog_seconds {
        Some(s) => secs("--cycle-watchdog-seconds", s)?,
        None => crate::watchdog::default_limit(fast),
    });
    let metrics = Metrics::with_policy_series_limit(args.max_policy_series);
    let id = identity(&args);

    let leadership = if args.leader_elect {
        let (l, _task) = lease::Election {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: id.clone(),
            duration: Duration::from_secs(args.lease_duration_seconds.max(2)),
            purpose: "scaling workloads",
        }
        .spawn(client.clone());
        l
    } else {
        tracing::warn!(
            "leader election is off: this process writes unconditionally; run exactly one"
        );
        Leadership::always()
    };

    let ns = args.namespace.as_deref();
    let scope = match ns {
        Some(ns) => format!("in namespace {ns}"),
        None => "cluster-wide".to_string(),
    };
    let readiness = Readiness::new();
    let mut policy_watch = watcher::Config::default();
    let mut policy_scope = scope.clone();
    if let Some(sel) = args.policy_selector.as_deref().filter(|s| !s.is_empty()) {
        policy_watch = policy_watch.labels(sel);
        policy_scope = format!("{scope} with labels {sel} (--policy-selector)");
    }
    let (policies, policies_fut) = cache(
        api_for::<ScalingPolicy>(&watch_client, ns),
        policy_watch,
        NeededApi::SCALING_POLICIES,
        policy_scope,
        readiness.clone(),
        trim::policy,
    );
    let (pods, pods_fut) = cache(
        api_for::<Pod>(&watch_client, ns),
        watcher::Config::default(),
        NeededApi::PODS,
        scope.clone(),
        readiness.clone(),
        trim::pod,
    );
    let (deployments, deployments_fut) = cache(
        api_for::<Deployment>(&watch_client, ns),
        watcher::Config::default(),
        NeededApi::DEPLOYMENTS,
        scope.clone(),
        readiness.clone(),
        trim::deployment,
    );
    let (statefulsets, statefulsets_fut) = cache(
        api_for::<StatefulSet>(&watch_client, ns),
        watcher::Config::default(),
        NeededApi::STATEFULSETS,
        scope.clone(),
        readiness.clone(),
        trim::statefulset,
    );
    let (hpas, hpas_fut) = cache(
        api_for::<HorizontalPodAutoscaler>(&watch_client, ns),
        watcher::Config::default(),
        NeededApi::HPAS,
        scope.clone(),
        readiness.clone(),
        trim::hpa,
    );
    tokio::spawn(hpas_fut);
    tokio::spawn(policies_fut);
    tokio::spawn(pods_fut);
    tokio::spawn(deployments_fut);
    tokio::spawn(statefulsets_fut);

    let agent_timeout = secs("--agent-timeout-seconds", args.agent_timeout_seconds)?;
    let agent_max_age = secs("--agent-max-age-seconds", args.agent_max_age_seconds)?;
    let agents = if !args.agent_url.is_empty() {
        Some(
            AgentSource::new(Discovery::Static(args.agent_url.clone()), agent_timeout)?
                .with_max_age(agent_max_age)
                .with_max_body_bytes(body_cap(
                    "--agent-max-body-bytes",
                    args.agent_max_body_bytes,
                )?),
        )
    } else {
        match &args.agent_selector {
            Some(sel) => Some(
                AgentSource::new(
                    Discovery::Pods {
                        client: client.clone(),
                        namespace: args.agent_namespace.clone(),
                        selector: sel.clone(),
                        port: args.agent_port,
                    },
                    agent_timeout,
                )?
                .with_max_age(agent_max_age)
                .with_max_body_bytes(body_cap(
                    "--agent-max-body-bytes",
                    args.agent_max_body_bytes,
                )?),
            ),
            None => None,
        }
    };
    let prometheus = match &args.prometheus_url {
        Some(url) => Some(
            PrometheusSource::with_auth(
                url,
                secs(
                    "--prometheus-timeout-seconds",
                    args.prometheus_timeout_seconds,
                )?,
                prometheus_auth(&args.prometheus_auth)?,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_max_body_bytes(body_cap(
                "--prometheus-max-body-bytes",
                args.prometheus_max_body_bytes,
            )?),
        ),
        None => None,
    };
    let kafka_file = match &args.kafka_config {
        Some(path) => Some(
            KafkaConfig::load(path, crate::sources::kafka::CLIENT_ID)
                .map_err(|e| anyhow::anyhow!("--kafka-config {e}"))?,
        ),
        None => None,
    };
    let kafka = Arc::new(
        KafkaSource::new(
            &args.kafka_cluster,
            kafka_file.as_ref(),
            kafka_options(&args)?,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    tracing::info!(
        identity = %id,
        agents = agents.is_some(),
        prometheus = prometheus.is_some(),
        fast_interval = ?fast,
        prometheus_interval = ?slow,
        "tidal-scaler starting"
    );

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}: cannot bind", args.listen))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(crate::server::serve(
        listener,
        metrics.clone(),
        readiness.clone(),
        watchdog.clone(),
        stopped(stop_rx.clone()),
    ));

    let caches = Caches {
        pods,
        deployments,
        statefulsets,
        hpas,
    };
    {
        let (p, c) = (policies.clone(), caches.clone());
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let synced = tokio::join!(
                p.wait_until_ready(),
                c.pods.wait_until_ready(),
                c.deployments.wait_until_ready(),
                c.statefulsets.wait_until_ready(),
                c.hpas.wait_until_ready()
            );
            if synced.0.is_ok()
                && synced.1.is_ok()
                && synced.2.is_ok()
                && synced.3.is_ok()
                && synced.4.is_ok()
            {
                tracing::info!(policies = p.state().len(), "caches synced");
                readiness.mark_synced();
            }
        });
    }
    if args.leader_elect {
        // The election logs its own errors; readiness shows a missing or forbidden Lease API.
        let (leadership, readiness) = (leadership.clone(), readiness.clone());
        tokio::spawn(async move {
            loop {
                match leadership.problem() {
                    Some(message) => readiness.note(
                        "lease",
                        Problem {
                            message,
                            needs_action: true,
                        },
                    ),
                    None => readiness.clear("lease"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    let writer = Writer::new(client.clone(), leadership, metrics.clone(), &id);
    let controller = Controller::new(
        writer,
        caches,
        policies,
        Sources {
            agents,
            prometheus,
            kafka,
        },
        Settings {
            fast_interval: fast,
            prometheus_interval: slow,
            vertical_min_samples: args.vertical_min_samples,
            vertical_apply_interval: secs(
                "--vertical-apply-interval-seconds",
                args.vertical_apply_interval_seconds,
            )?,
            vertical_checkpoint_interval: secs(
                "--vertical-checkpoint-interval-seconds",
                args.vertical_checkpoint_interval_seconds,
            )?,
            status_refresh_per_second: {
                let r = args.status_refresh_per_second;
                anyhow::ensure!(
                    r.is_finite() && (0.1..=10_000.0).contains(&r),
                    "--status-refresh-per-second must be between 0.1 and 10000, got {r}"
                );
                r
            },
            ..Settings::default()
        },
    )
    .with_watchdog(watchdog);
    let ready_for_loop = readiness.clone();
    let control = tokio::spawn(async move {
        // Decide nothing before the caches hold the cluster's state.
        while !ready_for_loop.is_synced() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        controller.run(stopped(stop_rx)).await;
    });

    tidal_core::process::shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), control).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

//! `tidal-agent`: the per-node sampler and exporter.
//!
//! The binary parses its flags (see [`tidal_agent::cli`]), detects the cgroup hierarchy,
//! starts the pod watch when the API is reachable, runs the sampling loop on its own thread
//! and serves `/healthz`, `/readyz` and `/metrics`.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tidal_agent::cli::{Cli, Mode};
use tidal_agent::fdcache::FdBudget;
use tidal_agent::pods::{self, PodMetaByUid};
use tidal_agent::sampler::Sampler;
use tidal_agent::samplers::cgroup::{CgroupSampler, Hierarchy, Scope};
use tidal_agent::samplers::kafka_lag::{Attribution, KafkaLagSampler};
use tidal_agent::samplers::node::NodeSampler;
use tidal_agent::server;
use tidal_agent::snapshot::{Runner, Shared};
use tidal_core::kafka::config::KafkaConfig;
use tidal_core::lease::Election;

// One thread serves HTTP, the pod watch and the Kafka tasks; sampling has its own thread.
// (A multi-thread runtime kept ~3 MiB more of per-thread malloc arenas for no gain.)
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tidal_core::process::init_tracing(tidal_core::process::LogTo::Stdout, cli.log_format);
    cli.validate()?;
    tracing::info!(
        build = %tidal_core::build::describe("tidal-agent"),
        listen = %cli.listen,
        mode = ?cli.mode,
        proc_root = %cli.proc_root.display(),
        cgroup_root = %cli.cgroup_root.display(),
        "starting"
    );

    // The cgroup sampler keeps interface files open (up to half of the soft limit).
    let nofile = tidal_agent::fdcache::raise_nofile_limit();
    let pods = start_pod_watch(&cli).await;
    let mut samplers: Vec<Box<dyn Sampler>> = vec![Box::new(NodeSampler::new(&cli.proc_root))];
    match Hierarchy::detect(&cli.cgroup_root) {
        Ok(h) => {
            tracing::info!(mode = ?h.mode(), hierarchy = ?h, "cgroup hierarchy detected");
            let scope = match cli.mode {
                Mode::Daemonset => Scope::Node,
                Mode::Sidecar => Scope::OwnPod {
                    proc_root: cli.proc_root.clone(),
                },
            };
            let budget = FdBudget::from_rlimit(cli.max_open_files);
            tracing::debug!(
                nofile,
                max_open_files = budget.cap(),
                "cgroup files held open"
            );
            samplers.push(Box::new(CgroupSampler::with_budget(
                h,
                scope,
                pods.clone().unwrap_or_default(),
                budget,
            )));
        }
        Err(e) => tracing::warn!(error = %e, "no cgroup hierarchy: only node series are exported"),
    }

    if let Some(path) = &cli.kafka_config {
        // A config that does not parse is fatal at start: better than running without lag.
        let cfg = KafkaConfig::load(path, "tidal-agent").context("--kafka-config")?;
        tracing::info!(clusters = cfg.clusters.len(), interval = ?cfg.interval, "kafka_lag sampler on");
        let attribution = if cli.attribute_to_node {
            Some(start_attribution(&cli, pods.clone()).await?)
        } else {
            None
        };
        samplers.push(Box::new(KafkaLagSampler::start(cfg, attribution)));
    } else if cli.attribute_to_node {
        anyhow::bail!("--attribute-to-node needs --kafka-config");
    }

    let shared = Shared::new(cli.stale_after());
    let runner =
        Runner::new(samplers, pods, shared.clone()).compatible_names(cli.compatible_metric_names);
    let interval = Duration::from_secs_f64(cli.interval_seconds);
    std::thread::Builder::new()
        .name("sampler".into())
        .spawn(move || runner.run_forever(interval))
        .context("starting the sampling thread")?;

    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding --listen {}", cli.listen))?;
    server::serve(listener, shared, tidal_core::process::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The election and pod IPs `--attribute-to-node` needs; an error names what is missing.
async fn start_attribution(cli: &Cli, pods: Option<PodMetaByUid>) -> anyhow::Result<Attribution> {
    let (Some(node), Some(pods)) = (cli.node_name.clone(), pods) else {
        anyhow::bail!(
            "--attribute-to-node needs --node-name (NODE_NAME) and Kubernetes API access to see this node's pods"
        );
    };
    let client = kube::Client::try_default()
        .await
        .context("--attribute-to-node: Kubernetes API")?;
    let (leadership, _election) = Election {
        namespace: cli.lease_namespace.clone(),
        name: "tidal-agent-kafka-lag".to_string(),
        identity: node,
        duration: Duration::from_secs(15),
        purpose: "exporting unowned Kafka partitions",
    }
    .spawn(client);
    Ok(Attribution { pods, leadership })
}

/// Starts watching this node's pods, or says once why series will be labelled by UID only.
async fn start_pod_watch(cli: &Cli) -> Option<PodMetaByUid> {
    let Some(node) = cli.node_name.clone() else {
        tracing::info!(
            "no --node-name (NODE_NAME): pod metadata disabled; series are labelled by pod UID"
        );
        return None;
    };
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(
                error = %e,
                "no Kubernetes API access (no kubeconfig, not in a cluster): series are labelled by pod UID, or by cgroup path outside Kubernetes"
            );
            return None;
        }
    };
    let index = PodMetaByUid::default();
    tokio::spawn(pods::watch(client, node, index.clone()));
    Some(index)
}

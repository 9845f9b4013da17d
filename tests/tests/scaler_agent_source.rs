//! The scaler's fast-path source ([`tidal_scaler::sources::agents::AgentSource`]) against a
//! real `tidal-agent`: a KWOK pod on the real API server, its container cgroup made on this
//! machine with a real busy loop inside, the agent watching the KWOK node.
//!
//! Checks that the source reports the pod's CPU as the agent measured it (≈ the CPU the kernel
//! accounted to the loop, ± 15% as in `agent_kwok.rs`; the loop is one thread, so at most one
//! core) and its memory working set, and that an agent URL nothing listens on is one
//! `Unreachable` error naming that URL while the good agent's pods are still returned.
//!
//! Needs root (to create cgroups) and the agent binary (`cargo build -p tidal-agent --bins`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;
use tidal_e2e::cgroups::{
    CgroupGuard, container_id, hierarchies, kwok_pod, mkdirs, proc_cpu_seconds, set_container_id,
    spawn_burner,
};
use tidal_e2e::{Stack, free_port, in_namespace, spawn_node_agent, wait_for};
use tidal_scaler::sources::SourceError;
use tidal_scaler::sources::agents::{AgentScrape, AgentSource, Discovery};

type R = anyhow::Result<()>;

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_source_reads_a_real_agent_and_survives_a_dead_one() -> R {
    let stack = Stack::load()?;
    let client = stack.admin_client().await?;
    let node = stack
        .kwok_nodes()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no KWOK node"))?;
    in_namespace(&client, "scaler-agents", |ns| {
        scrape_real_agent(stack, client.clone(), node, ns)
    })
    .await
}

async fn scrape_real_agent(stack: Stack, client: kube::Client, node: String, ns: String) -> R {
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let created = pods
        .create(
            &PostParams::default(),
            &kwok_pod("burn", &node, json!({"requests": {"cpu": "100m"}}))?,
        )
        .await?;
    let uid = created
        .metadata
        .uid
        .ok_or_else(|| anyhow::anyhow!("pod without uid"))?;
    let cid = container_id(0)?;
    set_container_id(&pods, "burn", &cid).await?;

    let bases = hierarchies(Path::new("/sys/fs/cgroup"));
    anyhow::ensure!(
        !bases.is_empty(),
        "no cgroup hierarchy mounted under /sys/fs/cgroup"
    );
    let mut cg = CgroupGuard(Vec::new());
    let rel = PathBuf::from(format!("kubepods/burstable/pod{uid}/{cid}"));
    mkdirs(&bases, &rel, &mut cg)?;
    let burner = spawn_burner(&bases, &rel)?;

    let port = free_port()?;
    let _agent = spawn_node_agent(&stack, &node, &format!("127.0.0.1:{port}"), "0.5")?;
    let good = format!("http://127.0.0.1:{port}");
    // Nothing listens here (bound, then released).
    let dead_port = free_port()?;
    let dead_url = format!("http://127.0.0.1:{dead_port}/metrics");
    let source = AgentSource::new(
        Discovery::Static(vec![good, format!("http://127.0.0.1:{dead_port}")]),
        Duration::from_secs(2),
    )?;
    let key = (ns.clone(), "burn".to_string());

    // Every round: two agents, the dead one a single Unreachable error naming its URL.
    let check_round = |got: &AgentScrape| -> R {
        anyhow::ensure!(
            (got.agents, got.agents_ok) == (2, 1),
            "agents {} ok {}: {:?}",
            got.agents,
            got.agents_ok,
            got.errors
        );
        match &got.errors[..] {
            [e @ SourceError::Unreachable { url, .. }] => {
                anyhow::ensure!(url == &dead_url, "{e}");
                anyhow::ensure!(e.to_string().contains(&dead_url), "{e}");
                anyhow::ensure!(e.label() == "unreachable");
            }
            other => anyhow::bail!("expected one Unreachable error, got {other:?}"),
        }
        Ok(())
    };

    // Until the agent has matched the cgroup to the API pod and has two CPU samples.
    let first = wait_for(
        "the burn pod's CPU and memory from the agent",
        Duration::from_secs(60),
        || async {
            let got = source.scrape(now_unix()).await;
            let usage = got.pods.get(&key)?;
            (usage.value("cpu", None).is_some() && usage.value("memory", None).is_some())
                .then_some(got)
        },
    )
    .await?;
    check_round(&first)?;
    let usage = &first.pods[&key];
    assert_eq!(
        usage.containers.keys().collect::<Vec<_>>(),
        ["app"],
        "only the container, not the pod-level cgroup: {usage:?}"
    );
    let memory = usage
        .value("memory", Some("app"))
        .ok_or_else(|| anyhow::anyhow!("no memory working set: {usage:?}"))?;
    assert!(memory >= 0.0, "{memory}");

    // The agent's CPU rate over ~3 s of scrapes against the kernel's accounting of the loop
    // over the same span (how much CPU the loop gets depends on the machine's load).
    let (t_a, proc_a) = (Instant::now(), proc_cpu_seconds(burner.0.id())?);
    let mut cpu = Vec::new();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let at = now_unix();
        let got = source.scrape(at).await;
        check_round(&got)?;
        let usage = got
            .pods
            .get(&key)
            .ok_or_else(|| anyhow::anyhow!("burn pod missing: {:?}", got.pods.keys()))?;
        // Stamped with the agent's sample time: the scrape's time minus the snapshot's age
        // (at most the source's 3 s bound, or it would have been refused).
        let ts = usage.timestamp_unix_seconds;
        assert!(
            ts <= at && ts >= at - 3.0,
            "sample time {ts} for a scrape at {at}"
        );
        cpu.push(
            usage
                .value("cpu", None)
                .ok_or_else(|| anyhow::anyhow!("no cpu: {usage:?}"))?,
        );
    }
    let (t_b, proc_b) = (Instant::now(), proc_cpu_seconds(burner.0.id())?);
    let kernel = (proc_b - proc_a) / (t_b - t_a).as_secs_f64();
    let mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
    eprintln!(
        "burn pod cpu from the source: mean {mean:.3} cores {cpu:.3?}; kernel accounting of \
         the loop {kernel:.3} cores"
    );
    assert!(kernel > 0.3, "the busy loop barely ran ({kernel} cores)");
    assert!(
        (mean - kernel).abs() <= 0.15 * kernel,
        "source {mean} cores vs kernel {kernel} cores"
    );
    assert!(mean <= 1.15, "one thread cannot use {mean} cores");
    drop(burner);

    // The agent answers 404 off its /metrics path: an Http error naming the URL.
    let wrong = format!("http://127.0.0.1:{port}/not/metrics");
    let got = AgentSource::new(
        Discovery::Static(vec![wrong.clone()]),
        Duration::from_secs(2),
    )?
    .scrape(now_unix())
    .await;
    match &got.errors[..] {
        [
            e @ SourceError::Http {
                status: 404, url, ..
            },
        ] if url == &wrong => eprintln!("{e}"),
        other => anyhow::bail!("expected one HTTP 404 naming {wrong}, got {other:?}"),
    }
    assert!(got.pods.is_empty());
    Ok(())
}

/// A real `tidal-agent` whose sampler hangs (a container cgroup appears whose `cpu.stat` is a
/// FIFO with no writer, so its `open` blocks, as a read of a hung file system would) keeps
/// serving its last snapshot, but says how old it is; the scaler's source then refuses it as
/// `Stale` and uses none of its pods (they count as missing: no scale-down on them). Runs on a
/// fixture cgroup tree, since a FIFO cannot be made in cgroupfs; `/proc` is the real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_agents_old_data_is_refused_as_stale() -> R {
    let root = std::env::temp_dir().join(tidal_e2e::unique("hung-agent-cgroups"));
    let ctr = root.join(format!(
        "kubepods/besteffort/pod0f0f0f0f-1111-2222-3333-444444444444/{}",
        "cd".repeat(32)
    ));
    std::fs::create_dir_all(&ctr)?;
    std::fs::write(root.join("cgroup.controllers"), "cpu memory\n")?;
    std::fs::write(ctr.join("cpu.stat"), "usage_usec 2000000\n")?;
    std::fs::write(ctr.join("memory.current"), "8192\n")?;
    let result = hung_agent(&root).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn hung_agent(root: &Path) -> R {
    let bin = tidal_e2e::workspace_bin("tidal-agent");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` first",
        bin.display()
    );
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let _agent = tidal_e2e::ChildGuard::spawn(
        std::process::Command::new(&bin)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--interval-seconds",
                "0.2",
            ])
            .args(["--stale-after-seconds", "1"])
            .arg("--cgroup-root")
            .arg(root)
            .env("KUBECONFIG", root.join("no-kubeconfig"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )?;
    let source = AgentSource::new(Discovery::Static(vec![url.clone()]), Duration::from_secs(2))?
        .with_max_age(Duration::from_secs(1));
    let fresh = wait_for(
        "the agent's first fresh scrape",
        Duration::from_secs(15),
        || async {
            let s = source.scrape(now_unix()).await;
            (s.agents_ok == 1).then_some(s)
        },
    )
    .await?;
    anyhow::ensure!(fresh.errors.is_empty(), "{:?}", fresh.errors);

    let hung = root.join(format!(
        "kubepods/besteffort/pod0f0f0f0f-1111-2222-3333-444444444444/{}",
        "ef".repeat(32)
    ));
    std::fs::create_dir_all(&hung)?;
    let fifo = hung.join("cpu.stat");
    anyhow::ensure!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()?
            .success(),
        "mkfifo {}",
        fifo.display()
    );
    let started = Instant::now();
    let stale = wait_for(
        "the source to call the agent stale",
        Duration::from_secs(10),
        || async {
            let s = source.scrape(now_unix()).await;
            (s.agents_ok == 0 && !s.errors.is_empty()).then_some(s)
        },
    )
    .await?;
    eprintln!(
        "hung sampler refused as stale after {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        stale.errors[0]
    );
    match &stale.errors[..] {
        [SourceError::Stale { url: u, detail, .. }] => {
            anyhow::ensure!(u == &format!("{url}/metrics"), "{u}");
            anyhow::ensure!(detail.contains("old (bound 1.0s)"), "{detail}");
        }
        other => anyhow::bail!("want one Stale error, got {other:?}"),
    }
    anyhow::ensure!(
        stale.pods.is_empty(),
        "stale pods were used: {:?}",
        stale.pods
    );
    // Its /healthz fails too (the kubelet would restart it).
    let health = tidal_e2e::http_get(format!("{url}/healthz")).await?;
    anyhow::ensure!(health.status().as_u16() == 503, "{}", health.status());
    // Release the blocked open.
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(0o4000) // O_NONBLOCK: never wait for a reader
        .open(&fifo);
    Ok(())
}

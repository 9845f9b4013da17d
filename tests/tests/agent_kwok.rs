//! tidal-agent against the real stack: pods on a KWOK node, pod-shaped cgroups on this
//! machine, the agent binary watching that node through the real kube-apiserver.
//!
//! KWOK pods have no containers, so the test creates the cgroups the kubelet would have made
//! (cgroupfs driver: `kubepods/<qos>/pod<uid>/<container id>`, in every mounted hierarchy) and
//! sets `status.containerStatuses[].containerID` the way a kubelet reports it (KWOK v0.7's
//! built-in stages leave it unset). It then scrapes the agent and checks that the series carry
//! namespace, pod, container, pod_uid and qos_class labels and the spec's requests, and that a
//! real busy loop moved into the Burstable pod's container cgroup shows up as
//! usage / request ≈ 1 core / 100m = 10 (± 15%).
//!
//! Needs root (to create cgroups) and the agent binary (`cargo build --bins`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;
use tidal_e2e::cgroups::{
    CgroupGuard, container_id, hierarchies, kwok_pod as pod, mkdirs, proc_cpu_seconds,
    set_container_id, spawn_burner,
};
use tidal_e2e::{Stack, free_port, in_namespace, spawn_node_agent, wait_for, workspace_bin};

type R = anyhow::Result<()>;

/// The value of the first sample of `metric` whose line contains every label in `want`.
fn find(body: &str, metric: &str, want: &[String]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| want.iter().all(|w| l.contains(w.as_str())))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_labels_kwok_pods_from_the_api() -> R {
    let stack = Stack::load()?;
    let client = stack.admin_client().await?;
    let node = stack
        .kwok_nodes()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no KWOK node"))?;
    let bin = workspace_bin("tidal-agent");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` first",
        bin.display()
    );

    in_namespace(&client, "agent-kwok", |ns| {
        labels_and_usage(stack, client.clone(), node, ns)
    })
    .await
}

async fn labels_and_usage(stack: Stack, client: kube::Client, node: String, ns: String) -> R {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let burst = pods
        .create(
            &PostParams::default(),
            &pod(
                "burst",
                &node,
                json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}),
            )?,
        )
        .await?;
    let guar = pods
        .create(
            &PostParams::default(),
            &pod("guar", &node, json!({"requests": {"cpu": "200m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "32Mi"}}))?,
        )
        .await?;
    let uid = |p: &Pod| {
        p.metadata
            .uid
            .clone()
            .ok_or_else(|| anyhow::anyhow!("pod without uid"))
    };
    let (burst_uid, guar_uid) = (uid(&burst)?, uid(&guar)?);
    let burst_cid = container_id(0)?;
    let guar_cid = container_id(1)?;
    set_container_id(&pods, "burst", &burst_cid).await?;
    set_container_id(&pods, "guar", &guar_cid).await?;

    let bases = hierarchies(Path::new("/sys/fs/cgroup"));
    anyhow::ensure!(
        !bases.is_empty(),
        "no cgroup hierarchy mounted under /sys/fs/cgroup"
    );
    let mut cg = CgroupGuard(Vec::new());
    mkdirs(
        &bases,
        &PathBuf::from(format!("kubepods/burstable/pod{burst_uid}/{burst_cid}")),
        &mut cg,
    )?;
    mkdirs(
        &bases,
        &PathBuf::from(format!("kubepods/pod{guar_uid}/{guar_cid}")),
        &mut cg,
    )?;
    // A pod with a cgroup but no API object: exported, labelled by UID.
    let orphan_uid = "00000000-0000-4000-8000-0000000000aa";
    mkdirs(
        &bases,
        &PathBuf::from(format!("kubepods/besteffort/pod{orphan_uid}")),
        &mut cg,
    )?;

    // A real busy loop in the Burstable pod's container cgroup (killed before the rmdirs, as
    // it is declared after the guard): 1 core against a 100m request.
    let burner = spawn_burner(
        &bases,
        Path::new(&format!("kubepods/burstable/pod{burst_uid}/{burst_cid}")),
    )?;

    let port = free_port()?;
    let _agent = spawn_node_agent(&stack, &node, &format!("127.0.0.1:{port}"), "0.5")?;
    let http = tidal_e2e::http();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let l = |k: &str, v: &str| format!("{k}=\"{v}\"");
    let burst_app = vec![
        l("namespace", &ns),
        l("pod", "burst"),
        l("container", "app"),
        l("pod_uid", &burst_uid),
        l("qos_class", "Burstable"),
    ];
    let body = wait_for(
        "agent series labelled from the API",
        Duration::from_secs(60),
        || {
            let (http, url, want) = (http.clone(), url.clone(), burst_app.clone());
            async move {
                let body = http.get(&url).send().await.ok()?.text().await.ok()?;
                find(
                    &body,
                    "tidal_agent_container_memory_working_set_bytes",
                    &want,
                )
                .map(|_| body)
            }
        },
    )
    .await?;

    assert!(
        find(
            &body,
            "tidal_agent_container_cpu_usage_seconds_total",
            &burst_app
        )
        .is_some(),
        "{body}"
    );
    assert_eq!(
        find(&body, "tidal_agent_container_cpu_request_cores", &burst_app),
        Some(0.1)
    );
    assert_eq!(
        find(&body, "tidal_agent_container_cpu_limit_cores", &burst_app),
        Some(0.5)
    );
    assert_eq!(
        find(
            &body,
            "tidal_agent_container_memory_request_bytes",
            &burst_app
        ),
        Some(67_108_864.0)
    );
    let guar_app = vec![
        l("namespace", &ns),
        l("pod", "guar"),
        l("container", "app"),
        l("qos_class", "Guaranteed"),
    ];
    assert!(
        find(
            &body,
            "tidal_agent_container_memory_working_set_bytes",
            &guar_app
        )
        .is_some(),
        "{body}"
    );
    assert_eq!(
        find(&body, "tidal_agent_container_memory_limit_bytes", &guar_app),
        Some(33_554_432.0)
    );
    // Pod-level series: container="".
    let guar_pod = vec![
        l("pod", "guar"),
        l("container", ""),
        l("qos_class", "Guaranteed"),
    ];
    assert!(
        find(
            &body,
            "tidal_agent_container_cpu_usage_seconds_total",
            &guar_pod
        )
        .is_some(),
        "{body}"
    );
    let orphan = vec![
        l("namespace", ""),
        l("pod", ""),
        l("pod_uid", orphan_uid),
        l("qos_class", "BestEffort"),
    ];
    assert!(
        find(
            &body,
            "tidal_agent_container_memory_working_set_bytes",
            &orphan
        )
        .is_some(),
        "{body}"
    );
    assert!(body.contains("tidal_agent_pod_metadata_synced 1"), "{body}");
    assert!(
        body.contains("tidal_agent_sampler_success{sampler=\"cgroup\"} 1"),
        "{body}"
    );

    // The container's CPU as the agent reports it must match what the kernel accounted to the
    // busy loop (its /proc/<pid>/stat) over the same 3 seconds, and the exported utilization
    // must be exactly usage / request. (How much CPU the loop gets depends on the machine's
    // load, so the loop's own accounting is the reference, not "1 core".)
    let proc_cpu = proc_cpu_seconds;
    let scrape = || async { http.get(&url).send().await?.text().await };
    let counter = |body: &str| {
        find(
            body,
            "tidal_agent_container_cpu_usage_seconds_total",
            &burst_app,
        )
    };
    let (body_a, proc_a) = (scrape().await?, proc_cpu(burner.0.id())?);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (body_b, proc_b) = (scrape().await?, proc_cpu(burner.0.id())?);
    let agent_delta = counter(&body_b)
        .zip(counter(&body_a))
        .map(|(b, a)| b - a)
        .ok_or_else(|| anyhow::anyhow!("no CPU counter"))?;
    let proc_delta = proc_b - proc_a;
    eprintln!(
        "burst/app: agent counter +{agent_delta:.3}s, kernel accounting of the loop +{proc_delta:.3}s over 3s"
    );
    assert!(
        proc_delta > 0.3,
        "the busy loop barely ran ({proc_delta}s of CPU in 3s)"
    );
    assert!(
        (agent_delta - proc_delta).abs() <= 0.15 * proc_delta,
        "agent CPU +{agent_delta}s vs kernel +{proc_delta}s"
    );
    let usage = find(&body_b, "tidal_agent_container_cpu_usage_cores", &burst_app)
        .ok_or_else(|| anyhow::anyhow!("no usage gauge"))?;
    let ratio = find(
        &body_b,
        "tidal_agent_container_cpu_request_utilization_ratio",
        &burst_app,
    )
    .ok_or_else(|| anyhow::anyhow!("no utilization ratio"))?;
    eprintln!("burst/app cpu usage {usage:.3} cores / request 0.1 = {ratio:.3}");
    assert!(
        (ratio - usage / 0.1).abs() <= 1e-9 * ratio.max(1.0),
        "ratio {ratio} != usage {usage} / 0.1"
    );
    assert!(usage > 0.0);
    drop(burner);

    let ready = http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await?;
    assert_eq!(ready.status().as_u16(), 200);
    Ok(())
}

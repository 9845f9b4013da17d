//! Series that collide (issue #16). The stack's Prometheus scrapes the real node's kubelet
//! cAdvisor as a kube-prometheus-stack does (job `kubelet`, `/metrics/cadvisor`, through the
//! API server's node proxy: scripts/stack/node.sh) beside the in-cluster agent of
//! manifests/overlays/local (job `tidal-agent`). By default the agent exports none of the names
//! cAdvisor and node_exporter export, so a query without a `job` filter counts each container
//! once; the agent's series of the same meaning, under Tidal's names, agree with cAdvisor's.
//! (Every dashboard and rule expression reading Tidal's own job is checked by
//! tests/tests/dashboards.rs, against this same Prometheus.)

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use tidal_core::schema;
use tidal_e2e::realnode::{NodeLock, RealNode};
use tidal_e2e::{Stack, wait_for};

type R = anyhow::Result<()>;

/// An instant query's samples: `(labels, value)`.
async fn query(prometheus: &str, q: &str) -> anyhow::Result<Vec<(Value, f64)>> {
    let data = tidal_e2e::prometheus_query(prometheus, q).await?;
    Ok(data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let v = s["value"][1].as_str()?.parse().ok()?;
            Some((s["metric"].clone(), v))
        })
        .collect())
}

/// The one value of a query that sums to a single sample.
async fn one(prometheus: &str, q: &str) -> Option<f64> {
    match query(prometheus, q).await.ok()?.as_slice() {
        [(_, v)] if v.is_finite() => Some(*v),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_s_series_do_not_collide_with_the_kubelet_s() -> R {
    let stack = Stack::load()?;
    let node = RealNode::installed(&stack).await?;
    let _lock = NodeLock::shared(&stack).await?;
    let client = stack.admin_client().await?;
    let prometheus = stack.prometheus_url()?.to_string();
    let agent = node.agent_pod(&client, Duration::from_secs(60)).await?;
    let pod = agent.metadata.name.clone().unwrap_or_default();
    let ns = agent.metadata.namespace.clone().unwrap_or_default();

    // The agent's own container, seen by both: cAdvisor's working set (by cAdvisor's name,
    // with no job filter, as a dashboard written for cAdvisor reads it) and the agent's.
    let unfiltered = format!(
        "sum(container_memory_working_set_bytes{{namespace=\"{ns}\", pod=\"{pod}\", container=\"agent\"}})"
    );
    let tidal = format!(
        "sum({}{{job=\"tidal-agent\", namespace=\"{ns}\", pod=\"{pod}\", container=\"agent\"}})",
        schema::CONTAINER_MEMORY_WORKING_SET_BYTES
    );
    let (cadvisor, agent_ws) = wait_for(
        &format!(
            "cAdvisor (job kubelet) and the agent (job tidal-agent) both scraped for {ns}/{pod}"
        ),
        Duration::from_secs(120),
        || async {
            Some((
                one(&prometheus, &unfiltered).await?,
                one(&prometheus, &tidal).await?,
            ))
        },
    )
    .await?;

    // Every series under a cAdvisor or node_exporter name comes from the kubelet: none from
    // the agent (in-cluster or any the tests run), so none is counted twice.
    let upstream: Vec<&str> = schema::COMPATIBLE_NAMES.iter().map(|(_, u)| *u).collect();
    let jobs: BTreeSet<String> = query(
        &prometheus,
        &format!("count by (job) ({{__name__=~\"{}\"}})", upstream.join("|")),
    )
    .await?
    .into_iter()
    .filter_map(|(labels, _)| labels["job"].as_str().map(String::from))
    .collect();
    anyhow::ensure!(
        jobs == BTreeSet::from(["kubelet".to_string()]),
        "series under cAdvisor/node_exporter names come from the jobs {jobs:?}, not only the kubelet's"
    );
    // And Tidal's names only from Tidal's agents.
    let foreign = query(
        &prometheus,
        &format!(
            "count by (job) ({{__name__=~\"{}\", job!~\"tidal.*|kubernetes-tidal.*\"}})",
            schema::COMPATIBLE_NAMES
                .iter()
                .map(|(t, _)| *t)
                .collect::<Vec<_>>()
                .join("|")
        ),
    )
    .await?;
    anyhow::ensure!(
        foreign.is_empty(),
        "Tidal's agent series from other jobs: {foreign:?}"
    );

    // The query without a job filter counts the container once: it agrees with the agent's
    // own series of the same meaning (both read the same cgroup, a few seconds apart), where
    // a collision would double it.
    let ratio = cadvisor / agent_ws;
    eprintln!(
        "{ns}/{pod} container agent: working set by cAdvisor's name, unfiltered {cadvisor:.0} B; \
         the agent's {agent_ws:.0} B (ratio {ratio:.3})"
    );
    anyhow::ensure!(
        (0.75..1.33).contains(&ratio),
        "an unfiltered cAdvisor-name query gives {cadvisor} B against the agent's {agent_ws} B: \
         counted twice, or not the same container"
    );
    Ok(())
}

//! Smoke test of the real local stack (issue #2). Every assertion here is answered by a real
//! component: kube-apiserver + controller-manager + scheduler + KWOK, Apache Kafka, Prometheus.
//! Run through `scripts/test.sh`, which brings the stack up first.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;
use tidal_e2e::builders::{KwokDeployment, Placement};
use tidal_e2e::{ChildGuard, Stack, free_port, in_namespace, unique, wait_for, workspace_bin};

type R = anyhow::Result<()>;

/// Running pods of the app that sit on a KWOK node.
async fn running_on_kwok(pods: &Api<Pod>, app: &str, nodes: &[String]) -> usize {
    let Ok(list) = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
    else {
        return 0;
    };
    list.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| nodes.contains(n))
        })
        .count()
}

#[tokio::test]
async fn deployment_runs_on_kwok_and_follows_its_scale_subresource() -> R {
    let stack = Stack::load()?;
    let client = stack.admin_client().await?;
    let nodes = stack.kwok_nodes()?;
    assert!(
        nodes.len() >= 2,
        "the stack must run at least 2 KWOK nodes, has {nodes:?}"
    );
    in_namespace(&client, "smoke-deploy", |ns| {
        scale_follows(client.clone(), ns, nodes)
    })
    .await
}

async fn scale_follows(client: kube::Client, ns: String, nodes: Vec<String>) -> R {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    deploys
        .create(
            &PostParams::default(),
            &KwokDeployment::new("web", Placement::AnyKwokNode)
                .replicas(2)
                .requests("100m", "64Mi")
                .labelled()
                .build()?,
        )
        .await?;
    let n = wait_for(
        "2 running pods on KWOK nodes",
        Duration::from_secs(60),
        || async {
            let n = running_on_kwok(&pods, "web", &nodes).await;
            (n == 2).then_some(n)
        },
    )
    .await?;
    assert_eq!(n, 2);

    // Scale through the scale subresource, as the scaler will.
    let pp = PatchParams::apply("tidal-e2e").force();
    let scale = deploys
        .patch_scale(
            "web",
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "spec": {"replicas": 5}}),
            ),
        )
        .await?;
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(5));
    wait_for(
        "5 running pods after scale-up",
        Duration::from_secs(60),
        || async { (running_on_kwok(&pods, "web", &nodes).await == 5).then_some(()) },
    )
    .await?;
    let ready = wait_for(
        "deployment status readyReplicas=5",
        Duration::from_secs(30),
        || async {
            let d = deploys.get("web").await.ok()?;
            let s = d.status?;
            (s.ready_replicas == Some(5)).then_some(s)
        },
    )
    .await?;
    assert_eq!(ready.replicas, Some(5));
    let current = deploys.get_scale("web").await?;
    assert_eq!(current.status.map(|s| s.replicas), Some(5));

    deploys
        .patch_scale(
            "web",
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "spec": {"replicas": 1}}),
            ),
        )
        .await?;
    wait_for(
        "1 pod after scale-down",
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let live = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count();
            (live == 1).then_some(())
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn kafka_produce_and_consume_with_a_committed_group() -> R {
    let stack = Stack::load()?;
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let topic = unique("smoke-topic");
    let group = unique("smoke-group");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let res = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    for r in res {
        r.map_err(|(t, e)| anyhow::anyhow!("create topic {t}: {e}"))?;
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "20000")
        .create()?;
    const N: i64 = 30;
    for i in 0..N {
        let key = format!("k{i}");
        let payload = format!("message {i}");
        let partition = (i % 3) as i32;
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(&key)
                    .payload(&payload)
                    .partition(partition),
                Duration::from_secs(20),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce {i}: {e}"))?;
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let mut seen = 0i64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen < N && std::time::Instant::now() < deadline {
        if let Some(msg) = consumer.poll(Duration::from_millis(500)) {
            let msg = msg?;
            assert!(msg.payload().is_some_and(|p| p.starts_with(b"message ")));
            seen += 1;
        }
    }
    assert_eq!(seen, N, "consumed every produced message");
    consumer.commit_consumer_state(CommitMode::Sync)?;

    // Read the committed offsets back from the broker through a second, idle member.
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(&topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    let mut total = 0i64;
    for e in committed.elements() {
        match e.offset() {
            Offset::Offset(o) => {
                assert_eq!(o, N / 3, "partition {} committed offset", e.partition());
                total += o;
            }
            other => anyhow::bail!(
                "partition {} has no committed offset: {other:?}",
                e.partition()
            ),
        }
    }
    assert_eq!(total, N);
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
    Ok(())
}

async fn prom_query(url: &str, query: &str) -> anyhow::Result<serde_json::Value> {
    Ok(tidal_e2e::prometheus_query(url, query).await?["result"].clone())
}

/// The value of the first sample of an instant query, once the query returns one.
async fn prom_value(url: &str, query: &str, what: &str) -> anyhow::Result<f64> {
    Ok(wait_for(what, Duration::from_secs(30), || async {
        let r = prom_query(url, query).await.ok()?;
        r[0]["value"][1].as_str()?.parse::<f64>().ok()
    })
    .await?)
}

#[tokio::test]
async fn prometheus_scrapes_itself_and_a_real_tidal_agent() -> R {
    let stack = Stack::load()?;
    let url = stack.prometheus_url()?.to_string();

    // Right after `stack.sh up` the first self-scrape may not have happened yet.
    let up = prom_value(&url, r#"up{job="prometheus"}"#, "prometheus self-scrape").await?;
    assert_eq!(up, 1.0, "prometheus self-scrape");

    // Start the real agent binary and let Prometheus discover it through file_sd.
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let bin = workspace_bin("tidal-agent");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` first",
        bin.display()
    );
    let _agent = ChildGuard::spawn(Command::new(&bin).args(["--listen", &addr]))?;
    let _target =
        stack.register_scrape_target(&unique("smoke-agent"), &addr, &[("component", "agent")])?;
    let up = prom_value(
        &url,
        &format!(r#"up{{job="tidal",instance="{addr}"}}"#),
        "agent up",
    )
    .await?;
    assert_eq!(up, 1.0, "agent target up");
    let info = prom_query(
        &url,
        &format!(r#"tidal_agent_build_info{{instance="{addr}"}}"#),
    )
    .await?;
    assert_eq!(info[0]["value"][1], "1", "{info}");
    assert_eq!(
        info[0]["metric"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{info}"
    );

    // The real samplers' series reach Prometheus: both samplers succeed, node memory equals
    // what /proc/meminfo says, and CPU utilization is a ratio (computed from two samples).
    let ok_q = format!(r#"tidal_agent_sampler_success{{instance="{addr}"}}"#);
    let samplers = wait_for(
        "sampler_success series",
        Duration::from_secs(30),
        || async {
            let r = prom_query(&url, &ok_q).await.ok()?;
            (r.as_array()?.len() >= 2).then_some(r)
        },
    )
    .await?;
    for s in samplers.as_array().into_iter().flatten() {
        assert_eq!(
            s["value"][1], "1",
            "sampler {} failed: {s}",
            s["metric"]["sampler"]
        );
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let total_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no MemTotal in /proc/meminfo"))?;
    let q = format!(r#"tidal_agent_node_memory_total_bytes{{instance="{addr}"}}"#);
    assert_eq!(
        prom_value(&url, &q, "node memory total").await?,
        total_kib * 1024.0
    );
    let q = format!(r#"tidal_agent_node_cpu_utilization_ratio{{instance="{addr}"}}"#);
    let cpu = prom_value(&url, &q, "node CPU utilization").await?;
    assert!(
        (0.0..=1.0).contains(&cpu),
        "node CPU utilization {cpu} is not a ratio"
    );
    Ok(())
}

#[tokio::test]
async fn a_token_without_rights_gets_403() -> R {
    let stack = Stack::load()?;
    let nobody = stack.nobody_client().await?;
    let pods: Api<Pod> = Api::namespaced(nobody.clone(), "default");
    match pods.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.contains("tidal-nobody"),
                "message names the user: {status:?}"
            );
        }
        other => anyhow::bail!("expected 403 Forbidden, got {other:?}"),
    }
    let deploys: Api<Deployment> = Api::namespaced(nobody, "default");
    let err = deploys
        .patch_scale(
            "anything",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect_err("a scale patch without rights must fail");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err:?}"
    );
    // The same token is authenticated (not 401): the API server knows who it is.
    let admin = stack.admin_client().await?;
    let ok: Api<Pod> = Api::namespaced(admin, "default");
    ok.list(&ListParams::default().limit(1)).await?;
    Ok(())
}

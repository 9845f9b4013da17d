//! The peers come up and answer (issue #15): metrics-server, registered through the API
//! server's aggregation layer, serves the real node's and its pods' usage read from the
//! kubelet, and the kube-controller-manager's own HPA controller scales a real Deployment on
//! it; KEDA's operator and metrics API server scale one on a consumer group's lag; the VPA's
//! recommender recommends for one, its updater resizes one in place and its admission
//! controller's webhook sets a new pod's requests. The side-by-side figures are
//! `scripts/bench-peers.sh`'s, not a test's.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tidal_e2e::bench::app_pods;
use tidal_e2e::kafka::{commit, create_topic, produce};
use tidal_e2e::peers::{
    node_metrics, pod_metrics, quantity, scaled_objects, vertical_pod_autoscalers, with_peers,
};
use tidal_e2e::realnode::{RealNode, wait_ready};
use tidal_e2e::scaler::ReplicaHistory;
use tidal_e2e::{unique, wait_for};
use tidal_scaler::api::convert::parse_quantity;

type R = anyhow::Result<()>;

/// A Deployment `web` of one idle pod (container `idle`) on the real node.
async fn idle_web(node: &RealNode, c: &kube::Client, ns: &str) -> anyhow::Result<Api<Deployment>> {
    let container = node.busybox("idle", "sleep 3600", Some(("10m", "8Mi")), None);
    node.create_deployment(c, ns, "web", container).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_server_serves_the_real_node_and_its_pods() -> R {
    with_peers("peers-ms", &[], |_, node, c, ns| async move {
        // Its first scrape comes one resolution (15 s) after its start.
        let usage = wait_for(
            &format!("metrics-server's NodeMetrics for {}", node.name),
            Duration::from_secs(60),
            || async {
                let m = node_metrics(&c, &node.name).await.ok()?;
                Some((
                    quantity(&m.data["usage"]["cpu"])?,
                    quantity(&m.data["usage"]["memory"])?,
                ))
            },
        )
        .await?;
        anyhow::ensure!(
            usage.0 > 0.0 && usage.1 > 0.0,
            "node {} usage cpu {} cores, memory {} bytes",
            node.name,
            usage.0,
            usage.1
        );
        let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
        let container = node.busybox("sleeper", "sleep 3600", Some(("10m", "8Mi")), None);
        pods.create(
            &PostParams::default(),
            &node.pod("sleeper", &[], vec![container]),
        )
        .await?;
        wait_ready(&pods, "sleeper", Duration::from_secs(90)).await?;
        let m = wait_for(
            "metrics-server's PodMetrics for the pod",
            Duration::from_secs(90),
            || async { pod_metrics(&c, &ns, "sleeper").await.ok() },
        )
        .await?;
        let containers = m.data["containers"].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(
            containers.len() == 1 && containers[0]["name"] == "sleeper",
            "PodMetrics {ns}/sleeper lists containers {containers:?}"
        );
        let memory = quantity(&containers[0]["usage"]["memory"]);
        anyhow::ensure!(
            memory.is_some_and(|m| m > 0.0) && quantity(&containers[0]["usage"]["cpu"]).is_some(),
            "PodMetrics {ns}/sleeper usage {}",
            containers[0]["usage"]
        );
        anyhow::ensure!(
            m.data["window"].as_str().is_some() && m.data["timestamp"].as_str().is_some(),
            "PodMetrics {ns}/sleeper without timestamp or window: {}",
            m.data
        );
        Ok(())
    })
    .await
}

/// A busy pod at 400 % of its request under an HPA (50 %, 1..2): the controller-manager's HPA,
/// reading metrics-server, scales the Deployment to 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hpa_scales_a_real_deployment_on_metrics_server() -> R {
    with_peers("peers-hpa", &[], |_, node, c, ns| async move {
        let container = node.busy("burn", ("100m", "16Mi"), ("400m", "64Mi"));
        let deploys = node.create_deployment(&c, &ns, "web", container).await?;
        let history = ReplicaHistory::watch(deploys.clone(), "web").await?;
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(c.clone(), &ns);
        let hpa = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 2,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 50}}}]
            }
        });
        hpas.create(&PostParams::default(), &serde_json::from_value(hpa)?)
            .await?;
        // The pod starts, metrics-server reads it (15 s resolution), the HPA syncs (15 s).
        if let Err(e) = history.wait_for(2, Duration::from_secs(150)).await {
            let status = serde_json::to_value(hpas.get("web").await?.status)?;
            anyhow::bail!("{e}; HPA status {status}");
        }
        // The HPA is the only writer of this Deployment's scale: it says when it wrote it (in
        // its status, written just after the scale).
        wait_for(
            "the HPA's status to record the scale (lastScaleTime)",
            Duration::from_secs(45),
            || async {
                let h = hpas.get("web").await.ok()?;
                h.status?.last_scale_time.map(|_| ())
            },
        )
        .await?;
        Ok(())
    })
    .await
}

/// KEDA's operator and metrics API server: a ScaledObject with the `kafka` trigger on a
/// consumer group with a backlog becomes an HPA on an external metric, which KEDA's metrics
/// API server answers from the broker (through the operator's gRPC metrics service), and the
/// HPA scales a real Deployment on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keda_scales_a_real_deployment_on_kafka_lag() -> R {
    with_peers(
        "peers-keda",
        &[("TIDAL_KEDA_VERSION", "KEDA")],
        |stack, node, c, ns| async move {
            let bootstrap = stack.var("TIDAL_KAFKA_BOOTSTRAP")?.to_string();
            let topic = unique("peers-keda");
            let group = unique("peers-keda-group");
            create_topic(&bootstrap, &topic, 2).await?;
            commit(&bootstrap, &group, &[(&topic, 0, 0), (&topic, 1, 0)])?;
            produce(&bootstrap, &topic, &[50, 50]).await?;
            let history = ReplicaHistory::watch(idle_web(&node, &c, &ns).await?, "web").await?;
            let scaled = scaled_objects(&c, &ns);
            let so: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                "metadata": {"name": "web"},
                "spec": {
                    "scaleTargetRef": {"name": "web"}, "minReplicaCount": 1, "maxReplicaCount": 2,
                    "triggers": [{"type": "kafka", "metadata": {"bootstrapServers": bootstrap,
                        "consumerGroup": group, "topic": topic, "lagThreshold": "10"}}]
                }
            }))?;
            scaled.create(&PostParams::default(), &so).await?;
            // Lag 100 at 10 per replica: the HPA KEDA makes wants 10, capped at 2.
            let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(c.clone(), &ns);
            let hpa_status = || async {
                match hpas.get_opt("keda-hpa-web").await {
                    Ok(Some(h)) => serde_json::to_value(h.status).unwrap_or_default(),
                    _ => Value::Null,
                }
            };
            if let Err(e) = history.wait_for(2, Duration::from_secs(120)).await {
                anyhow::bail!("{e}; KEDA's HPA keda-hpa-web: {}", hpa_status().await);
            }
            // The HPA writes the scale before its status: the external metric it read shows a
            // moment later (seen: `{"desiredReplicas":0}` just after the scale write).
            let lag = wait_for(
                "KEDA's HPA keda-hpa-web reports the external lag it read",
                Duration::from_secs(45),
                || async {
                    let s = hpa_status().await;
                    quantity(&s["currentMetrics"][0]["external"]["current"]["averageValue"])
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(
                lag >= 10.0,
                "KEDA's HPA read an external lag per replica of {lag}: {}",
                hpa_status().await
            );
            Ok(())
        },
    )
    .await
}

/// The VPA's recommender: a VerticalPodAutoscaler (`updateMode: "Off"`, as Tidal's `Off`)
/// on a real Deployment gets a recommendation for its container, read from metrics-server, at
/// the recommender's first loop after the pod has usage (its loop runs every minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vpa_recommender_recommends_for_a_real_deployment() -> R {
    let needs = [("TIDAL_VPA_VERSION", "the VPA recommender")];
    with_peers("peers-vpa", &needs, |_, node, c, ns| async move {
        idle_web(&node, &c, &ns).await?;
        let vpas = vertical_pod_autoscalers(&c, &ns);
        let vpa: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "updatePolicy": {"updateMode": "Off"}}
        }))?;
        vpas.create(&PostParams::default(), &vpa).await?;
        let rec = wait_for(
            "the VPA recommender's recommendation for container idle",
            Duration::from_secs(200),
            || async {
                let v = vpas.get("web").await.ok()?;
                v.data["status"]["recommendation"]["containerRecommendations"]
                    .as_array()?
                    .iter()
                    .find(|r| r["containerName"] == "idle")
                    .cloned()
            },
        )
        .await?;
        for bound in ["target", "lowerBound", "upperBound"] {
            anyhow::ensure!(
                quantity(&rec[bound]["cpu"]).is_some_and(|v| v > 0.0)
                    && quantity(&rec[bound]["memory"]).is_some_and(|v| v > 0.0),
                "the VPA's {bound}: {rec}"
            );
        }
        Ok(())
    })
    .await
}

/// Each container's `(cpu, memory)` requests of `pod`, in its spec and (when the kubelet has
/// reported them) as applied, with the pod's UID and restart count.
fn requests(pod: &Pod) -> Value {
    json!({
        "uid": pod.metadata.uid,
        "spec": pod.spec.as_ref().map(|s| s.containers.iter().map(|c| {
            c.resources.as_ref().and_then(|r| r.requests.clone())
        }).collect::<Vec<_>>()),
        "applied": pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map(|cs| {
            cs.iter().map(|c| json!({
                "requests": c.resources.as_ref().and_then(|r| r.requests.clone()),
                "restarts": c.restart_count,
            })).collect::<Vec<_>>()
        }),
        "annotations": pod.metadata.annotations,
    })
}

/// The requests `(cpu cores, memory bytes)` of container `idle` in `pod`'s spec (`applied`:
/// as the kubelet reports them in its status).
fn idle_requests(pod: &Pod, applied: bool) -> Option<(f64, f64)> {
    let r = if applied {
        let s = pod.status.as_ref()?.container_statuses.as_ref()?;
        s.iter()
            .find(|c| c.name == "idle")?
            .resources
            .clone()?
            .requests?
    } else {
        let c = pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == "idle")?;
        c.resources.clone()?.requests?
    };
    let q = |k: &str| parse_quantity(&r.get(k)?.0).ok();
    Some((q("cpu")?, q("memory")?))
}

/// The VPA's updater and admission controller (`updateMode: InPlaceOrRecreate`, as Tidal's
/// `InPlace`) on a real Deployment of 2 pods (the updater's `--min-replicas`) whose requests,
/// 10m and 8Mi, are below the recommender's floors (25m and 250Mi for a one-container pod),
/// so outside any recommendation's range: the updater resizes a running pod in place through
/// the kubelet (same UID, no restart, the kubelet's reported requests equal the spec's), and a
/// pod created afterwards gets the recommendation from the admission controller's webhook,
/// which the API server calls through its Service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vpa_updater_resizes_in_place_and_its_webhook_sets_new_pods() -> R {
    let needs = [
        ("TIDAL_VPA_VERSION", "the VPA"),
        ("TIDAL_VPA_UPDATER_METRICS_URL", "the VPA updater"),
    ];
    with_peers("peers-vpa-up", &needs, |_, node, c, ns| async move {
        let container = node.busybox("idle", "sleep 3600", Some(("10m", "8Mi")), None);
        let deploys: Api<Deployment> = Api::namespaced(c.clone(), &ns);
        deploys
            .create(
                &PostParams::default(),
                &node.deployment("web", 2, container),
            )
            .await?;
        let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
        let first = wait_for("2 running pods of web", Duration::from_secs(90), || async {
            let l = app_pods(&pods, "web").await.ok()?;
            let running = l
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
            let uids: Vec<String> = running.filter_map(|p| p.metadata.uid.clone()).collect();
            (uids.len() == 2).then_some(uids)
        })
        .await?;
        let vpas = vertical_pod_autoscalers(&c, &ns);
        let vpa: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "updatePolicy": {"updateMode": "InPlaceOrRecreate"}}
        }))?;
        vpas.create(&PostParams::default(), &vpa).await?;
        let created = std::time::Instant::now();
        // The recommender's first loop with usage (up to 200 s here), then the updater's next
        // loop (1 min), which resizes one of the 2 pods (its eviction tolerance, 0.5 of 2).
        let resized = wait_for(
            "a pod of web resized in place by the VPA updater",
            Duration::from_secs(420),
            || async {
                let l = app_pods(&pods, "web").await.ok()?;
                l.into_iter().find(|p| {
                    let same = p.metadata.uid.as_ref().is_some_and(|u| first.contains(u));
                    let applied = idle_requests(p, true);
                    same && idle_requests(p, false).is_some_and(|(cpu, mem)| {
                        cpu >= 0.025
                            && mem >= 250.0 * 1024.0 * 1024.0
                            && applied == Some((cpu, mem))
                    })
                })
            },
        )
        .await?;
        let restarts: i32 = resized
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or(-1);
        anyhow::ensure!(
            restarts == 0,
            "resized with a restart: {}",
            requests(&resized)
        );
        eprintln!(
            "resized in place {:.0} s after the VPA was created: {}",
            created.elapsed().as_secs_f64(),
            requests(&resized)
        );
        let l = app_pods(&pods, "web").await?;
        let uids: Vec<_> = l.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        anyhow::ensure!(
            first.iter().all(|u| uids.contains(u)),
            "a pod of web was replaced, not resized in place: {first:?} then {uids:?}"
        );
        // A third pod: the webhook sets the recommendation at its creation.
        deploys
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 3}})),
            )
            .await?;
        let third = wait_for(
            "the third pod of web, created",
            Duration::from_secs(60),
            || async {
                let l = app_pods(&pods, "web").await.ok()?;
                l.into_iter()
                    .find(|p| p.metadata.uid.as_ref().is_some_and(|u| !first.contains(u)))
            },
        )
        .await?;
        let annotated = third
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("vpaUpdates"))
            .is_some_and(|v| v.starts_with("Pod resources updated by web:"));
        anyhow::ensure!(
            annotated
                && idle_requests(&third, false)
                    .is_some_and(|(cpu, mem)| cpu >= 0.025 && mem >= 250.0 * 1024.0 * 1024.0),
            "the admission controller did not set the third pod's requests: {}",
            requests(&third)
        );
        eprintln!("the third pod, as created: {}", requests(&third));
        Ok(())
    })
    .await
}

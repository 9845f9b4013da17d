//! The controller with a slow Prometheus: a CPU policy read through the agents is decided
//! every fast interval while a Prometheus policy waits for its source, and that policy holds
//! (no scale) once the Prometheus budget passes. A fake API server on 127.0.0.1 records the
//! writes; a fake agent and a Prometheus that answers only after 10 s are local servers too.

use std::convert::Infallible;
use std::sync::Mutex;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::runtime::reflector;
use kube::runtime::watcher;
use tidal_core::lease::Leadership;
use tidal_core::schema::{AGENT_CONTAINER_CPU_USAGE_CORES, AGENT_SNAPSHOT_AGE_SECONDS};
use tokio::net::TcpListener;

use super::*;
use crate::metrics::Metrics;
use crate::sources::agents::Discovery;
use crate::sources::body::tests::{Framing, serve_body};
use crate::sources::kafka::KafkaOptions;

/// One request the fake API server saw: when (since the test's start), method, path, body.
type Seen = (Duration, String, String, String);

async fn fake_api(t0: Instant) -> (kube::Client, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let shared = shared.clone();
                    async move {
                        let (method, path) =
                            (req.method().to_string(), req.uri().path().to_string());
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let text = String::from_utf8_lossy(&body).into_owned();
                        shared.lock().expect("lock").push((
                            t0.elapsed(),
                            method,
                            path,
                            text.clone(),
                        ));
                        // Echo the object back: a Scale for a scale PUT, an Event for a POST.
                        let resp = Response::builder()
                            .status(200)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(text)))
                            .unwrap_or_default();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let url = format!("http://{addr}").parse().expect("url");
    (
        kube::Client::try_from(kube::Config::new(url)).expect("client"),
        seen,
    )
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "7", "uid": format!("d-{name}")},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}}},
        "status": {"replicas": 1},
    }))
    .expect("deployment")
}

fn pod(name: &str, app: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}, "uid": format!("p-{name}")},
        "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "100m"}}}]},
        "status": {"phase": "Running", "startTime": "2020-01-01T00:00:00Z",
                   "conditions": [{"type": "Ready", "status": "True",
                                   "lastTransitionTime": "2020-01-01T00:00:00Z"}]},
    }))
    .expect("pod")
}

fn policy(name: &str, target: &str, metric: serde_json::Value) -> ScalingPolicy {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": "shop", "generation": 1, "uid": format!("u-{name}")},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                 "minReplicas": 1, "maxReplicas": 10, "metrics": [metric]},
    }))
    .expect("policy")
}

fn store<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    reader
}

fn decisions(metrics: &Metrics) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, metrics.registry()).expect("encode");
    text.lines()
        .find_map(|l| l.strip_prefix("tidal_scaler_decision_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_cpu_policy_is_decided_on_time_while_prometheus_is_slow() {
    let t0 = Instant::now();
    let (client, seen) = fake_api(t0).await;
    let agent_body = format!(
        "# TYPE {AGENT_CONTAINER_CPU_USAGE_CORES} gauge\n\
         {AGENT_CONTAINER_CPU_USAGE_CORES}{{namespace=\"shop\",pod=\"web-1\",container=\"app\"}} 0.4\n\
         {AGENT_SNAPSHOT_AGE_SECONDS} 0.1\n"
    );
    let (agent_url, _, agent) = serve_body(
        agent_body.clone().into_bytes(),
        agent_body.len(),
        Framing::Length,
        Duration::ZERO,
    )
    .await;
    // Prometheus answers after 10 s; its budget is 1.5 s.
    let answer = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"100"]}}"#;
    let (prom_url, _, prom) = serve_body(
        answer.to_vec(),
        answer.len(),
        Framing::Length,
        Duration::from_secs(10),
    )
    .await;
    let budget = Duration::from_millis(1500);
    let fast = Duration::from_millis(200);

    let metrics = Metrics::new();
    let writer = Writer::new(client, Leadership::always(), metrics.clone(), "test");
    let caches = Caches {
        pods: store(vec![pod("web-1", "web"), pod("api-1", "api")]),
        deployments: store(vec![deployment("web"), deployment("api")]),
        statefulsets: store::<StatefulSet>(vec![]),
        hpas: store::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>(vec![]),
    };
    let policies = store(vec![
        policy(
            "cpu",
            "web",
            serde_json::json!({"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 50}}),
        ),
        policy(
            "q",
            "api",
            serde_json::json!({"name": "q", "prometheus": {"query": "vector(100)", "targetValue": "1"}}),
        ),
    ]);
    let sources = Sources {
        agents: Some(
            AgentSource::new(Discovery::Static(vec![agent_url]), Duration::from_secs(1))
                .expect("agents"),
        ),
        prometheus: Some(PrometheusSource::new(&prom_url, budget).expect("prometheus")),
        kafka: Arc::new(
            KafkaSource::new(&[], None, KafkaOptions::new(Duration::from_secs(1))).expect("kafka"),
        ),
    };
    let settings = Settings {
        fast_interval: fast,
        ..Settings::default()
    };
    let controller = Controller::new(writer, caches, policies, sources, settings);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let run = tokio::spawn(controller.run(async move {
        let _ = stopped.await;
    }));

    // Well before Prometheus's budget passes, the CPU policy has been decided several times
    // (once per 200 ms tick), and scaled its target.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let early = decisions(&metrics);
    let scale_put = seen
        .lock()
        .expect("lock")
        .iter()
        .find(|(_, m, p, _)| m == "PUT" && p.ends_with("/deployments/web/scale"))
        .cloned();
    assert!(
        early >= 3,
        "only {early} decisions in 1.1 s: the fast path waited"
    );
    let (at, _, _, body) = scale_put.expect("the CPU policy scaled web");
    assert!(
        at < t0.elapsed()
            && at.saturating_sub(started.duration_since(t0)) < Duration::from_millis(900),
        "web was scaled {at:?} after the start: not within its interval"
    );
    assert!(body.contains("\"replicas\":4"), "{body}");

    // After the budget the Prometheus policy holds: its status says why, nothing is scaled.
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
    let seen = seen.lock().expect("lock").clone();
    assert!(
        !seen
            .iter()
            .any(|(_, m, p, _)| m == "PUT" && p.ends_with("/deployments/api/scale")),
        "api must not be scaled on missing data"
    );
    let (at, _, _, status) = seen
        .iter()
        .find(|(_, m, p, _)| m == "PATCH" && p.ends_with("/scalingpolicies/q/status"))
        .expect("the Prometheus policy's status");
    assert!(
        status.contains("prometheus http://127.0.0.1")
            && status.contains("vector(100)")
            && (status.contains("timed out") || status.contains("no answer within the budget"))
            && status.contains("\"status\":\"False\",\"type\":\"ScalingActive\"")
            && status.contains("\"desiredReplicas\":1"),
        "{status}"
    );
    assert!(*at >= budget, "held at {at:?}, before the budget");
    assert!(
        decisions(&metrics) > early,
        "the CPU policy kept being decided"
    );
    agent.abort();
    prom.abort();
}

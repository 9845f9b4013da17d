//! [`put_scale`]'s fence against a fake API server on 127.0.0.1: every PUT of the scale
//! answers 409 (or 200 once `accept_after` PUTs were refused), every GET the scale with the
//! replicas "another writer" set. The requests the fence sends are recorded.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::Deployment;
use kube::discovery::ApiResource;
use tokio::net::TcpListener;

use super::*;

#[derive(Default)]
struct Fake {
    /// `spec.replicas` as a GET returns it.
    replicas: i32,
    /// PUTs refused with 409 before one is accepted (`u32::MAX`: never accepted).
    accept_after: u32,
    puts: u32,
    /// "PUT rv=…" / "GET" in order.
    log: Vec<String>,
}

fn json(code: u16, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

async fn handle(fake: Arc<Mutex<Fake>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut f = fake.lock().expect("lock");
    let scale = |replicas: i32, rv: &str| {
        serde_json::json!({
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": rv},
            "spec": {"replicas": replicas}, "status": {"replicas": replicas},
        })
    };
    if method == Method::PUT {
        let sent: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let rv = sent["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        f.log.push(format!("PUT rv={rv}"));
        f.puts += 1;
        if f.puts > f.accept_after {
            let replicas = sent["spec"]["replicas"].as_i64().unwrap_or(0) as i32;
            f.replicas = replicas;
            return json(200, scale(replicas, "99"));
        }
        json(
            409,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "the object has been modified", "reason": "Conflict", "code": 409,
            }),
        )
    } else {
        f.log.push("GET".into());
        let rv = format!("{}", 20 + f.log.len());
        json(200, scale(f.replicas, &rv))
    }
}

/// Starts the fake; returns an `Api` on it and the shared state.
async fn fake(replicas: i32, accept_after: u32) -> (Api<DynamicObject>, Arc<Mutex<Fake>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(Mutex::new(Fake {
        replicas,
        accept_after,
        ..Default::default()
    }));
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(shared, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let url = format!("http://{addr}").parse().expect("url");
    let client = kube::Client::try_from(kube::Config::new(url)).expect("client");
    (
        Api::namespaced_with(client, "shop", &ApiResource::erase::<Deployment>(&())),
        state,
    )
}

fn target() -> ScaleTarget {
    ScaleTarget {
        resource: ApiResource::erase::<Deployment>(&()),
        namespace: "shop".into(),
        name: "web".into(),
    }
}

fn observed(replicas: i32) -> ObservedScale {
    ObservedScale {
        replicas,
        resource_version: Some("10".into()),
    }
}

async fn run(
    api: &Api<DynamicObject>,
    observed: &ObservedScale,
    desired: i32,
    is_leader: impl Fn() -> bool,
) -> Result<ScaleOutcome, ActuateError> {
    tokio::time::timeout(
        Duration::from_secs(10),
        put_scale(api, &target(), observed, desired, is_leader, |_| {}),
    )
    .await
    .expect("bounded")
}

fn log(state: &Arc<Mutex<Fake>>) -> Vec<String> {
    state.lock().expect("lock").log.clone()
}

/// Another writer moved `spec.replicas` 2 -> 5 after our read: one PUT (the 409), one GET,
/// no second PUT, and the target keeps the other writer's 5.
#[tokio::test]
async fn another_writers_count_is_never_overwritten() {
    let (api, state) = fake(5, u32::MAX).await;
    let out = run(&api, &observed(2), 4, || true).await;
    assert_eq!(
        out,
        Err(ActuateError::Superseded {
            object: target().describe(),
            expected: 2,
            found: 5,
        })
    );
    assert_eq!(log(&state), ["PUT rv=10", "GET"]);
    assert_eq!(state.lock().expect("lock").replicas, 5);
}

/// Only the resourceVersion moved (the count is still the observed 2): retried on the fresh
/// version, and applied.
#[tokio::test]
async fn a_conflict_without_a_replica_change_is_retried_on_the_fresh_version() {
    let (api, state) = fake(2, 1).await;
    let out = run(&api, &observed(2), 4, || true).await;
    assert_eq!(out, Ok(ScaleOutcome::Applied { attempts: 2 }));
    assert_eq!(log(&state), ["PUT rv=10", "GET", "PUT rv=22"]);
    assert_eq!(state.lock().expect("lock").replicas, 4);
}

/// Conflicts that never end: MAX_ATTEMPTS PUTs, then `Conflict`.
#[tokio::test]
async fn endless_conflicts_give_up_after_max_attempts() {
    let (api, state) = fake(2, u32::MAX).await;
    let out = run(&api, &observed(2), 4, || true).await;
    assert!(
        matches!(out, Err(ActuateError::Conflict { attempts, .. }) if attempts == MAX_ATTEMPTS),
        "{out:?}"
    );
    let puts = log(&state).iter().filter(|l| l.starts_with("PUT")).count();
    assert_eq!(puts, MAX_ATTEMPTS as usize);
}

/// Leadership lost between the first attempt and the retry: the retry is not sent.
#[tokio::test]
async fn leadership_is_checked_again_before_a_retry() {
    let (api, state) = fake(2, u32::MAX).await;
    let asked = std::sync::atomic::AtomicU32::new(0);
    let out = run(&api, &observed(2), 4, || {
        asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
    })
    .await;
    assert!(
        matches!(out, Err(ActuateError::NotLeader { .. })),
        "{out:?}"
    );
    assert_eq!(log(&state), ["PUT rv=10", "GET"], "no second PUT");
}

//! The scaler's HTTP server: `/metrics` (OpenMetrics or text 0.0.4, negotiated as the agent
//! does), `/healthz` (the controller's loop completes cycles: 503 saying for how long it has
//! been stuck otherwise, see `watchdog`) and `/readyz` (the caches are synced and every API the
//! scaler needs is served and allowed; otherwise 503 with the reasons, see `readiness`).

use std::future::Future;

use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use tidal_core::exposition::{OPENMETRICS, TEXT_004, to_text_004, wants_openmetrics};
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::watchdog::Watchdog;

fn respond(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// Answers one request.
pub fn handle<B>(
    metrics: &Metrics,
    ready: &Readiness,
    watchdog: &Watchdog,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    match req.uri().path() {
        "/healthz" => match watchdog.verdict().message() {
            Some(stuck) => respond(StatusCode::SERVICE_UNAVAILABLE, PLAIN, stuck),
            None => respond(StatusCode::OK, PLAIN, "ok\n".into()),
        },
        "/readyz" if ready.is_ready() => respond(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => respond(StatusCode::SERVICE_UNAVAILABLE, PLAIN, ready.body()),
        "/metrics" => {
            let mut body = String::new();
            if let Err(e) = prometheus_client::encoding::text::encode(&mut body, metrics.registry())
            {
                return respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    PLAIN,
                    format!("encoding metrics failed: {e}\n"),
                );
            }
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            if wants_openmetrics(accept) {
                respond(StatusCode::OK, OPENMETRICS, body)
            } else {
                respond(StatusCode::OK, TEXT_004, to_text_004(&body))
            }
        }
        _ => respond(StatusCode::NOT_FOUND, PLAIN, "not found\n".into()),
    }
}

/// Serves until `shutdown` completes, with the shared hardened loop
/// ([`tidal_core::http::serve`]: header-read timeout, connection limit, accept back-off).
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    ready: Readiness,
    watchdog: Watchdog,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tidal_core::http::serve(
        listener,
        tidal_core::http::Limits::default(),
        move |req: &Request<Incoming>| handle(&metrics, &ready, &watchdog, req),
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, accept: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri(path);
        if let Some(a) = accept {
            b = b.header(header::ACCEPT, a);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn routes_and_negotiation() {
        let m = Metrics::new();
        let ready = Readiness::new();
        let dog = Watchdog::new(std::time::Duration::from_secs(30));
        assert_eq!(
            handle(&m, &ready, &dog, &get("/healthz", None)).status(),
            200
        );
        assert_eq!(
            handle(&m, &ready, &dog, &get("/readyz", None)).status(),
            503
        );
        ready.mark_synced();
        assert_eq!(
            handle(&m, &ready, &dog, &get("/readyz", None)).status(),
            200
        );
        assert_eq!(handle(&m, &ready, &dog, &get("/nope", None)).status(), 404);
        let text = handle(&m, &ready, &dog, &get("/metrics", None));
        assert_eq!(text.headers()[header::CONTENT_TYPE], TEXT_004);
        let om = handle(
            &m,
            &ready,
            &dog,
            &get(
                "/metrics",
                Some("application/openmetrics-text;version=1.0.0"),
            ),
        );
        assert_eq!(om.headers()[header::CONTENT_TYPE], OPENMETRICS);
    }

    /// `/healthz` follows the watchdog: 200 before the loop starts and while cycles
    /// complete; 503 saying for how long once none completed within the limit.
    #[tokio::test]
    async fn healthz_fails_when_no_cycle_completed_within_the_limit() {
        let m = Metrics::new();
        let ready = Readiness::new();
        let dog = Watchdog::new(std::time::Duration::from_millis(100));
        let health = |dog: &Watchdog| handle(&m, &ready, dog, &get("/healthz", None));
        assert_eq!(health(&dog).status(), 200, "not started: not judged");
        dog.start();
        assert_eq!(health(&dog).status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let resp = health(&dog);
        assert_eq!(resp.status(), 503);
        let body = String::from_utf8(
            http_body_util::BodyExt::collect(resp.into_body())
                .await
                .expect("body")
                .to_bytes()
                .to_vec(),
        )
        .expect("utf-8");
        assert!(
            body.starts_with("controller stuck: no cycle completed for 0.")
                && body.contains("(limit 0.1s"),
            "{body}"
        );
        dog.beat();
        assert_eq!(health(&dog).status(), 200, "a completed cycle clears it");
    }
}

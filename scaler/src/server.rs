//! The scaler's HTTP server: `/metrics` (OpenMetrics or text 0.0.4, negotiated as the agent
//! does), `/healthz` (the process runs) and `/readyz` (the caches are synced and every API the
//! scaler needs is served and allowed; otherwise 503 with the reasons, see `readiness`).

use std::future::Future;

use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use tidal_core::exposition::{OPENMETRICS, TEXT_004, to_text_004, wants_openmetrics};
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::readiness::Readiness;

fn respond(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// Answers one request.
pub fn handle<B>(metrics: &Metrics, ready: &Readiness, req: &Request<B>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    match req.uri().path() {
        "/healthz" => respond(StatusCode::OK, PLAIN, "ok\n".into()),
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
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tidal_core::http::serve(
        listener,
        tidal_core::http::Limits::default(),
        move |req: &Request<Incoming>| handle(&metrics, &ready, req),
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
        assert_eq!(handle(&m, &ready, &get("/healthz", None)).status(), 200);
        assert_eq!(handle(&m, &ready, &get("/readyz", None)).status(), 503);
        ready.mark_synced();
        assert_eq!(handle(&m, &ready, &get("/readyz", None)).status(), 200);
        assert_eq!(handle(&m, &ready, &get("/nope", None)).status(), 404);
        let text = handle(&m, &ready, &get("/metrics", None));
        assert_eq!(text.headers()[header::CONTENT_TYPE], TEXT_004);
        let om = handle(
            &m,
            &ready,
            &get(
                "/metrics",
                Some("application/openmetrics-text;version=1.0.0"),
            ),
        );
        assert_eq!(om.headers()[header::CONTENT_TYPE], OPENMETRICS);
    }
}

//! The HTTP server: `/metrics` (OpenMetrics or text 0.0.4, negotiated), `/healthz`, `/readyz`.
//!
//! A scrape never does I/O: it only encodes the snapshot the sampling loop last published
//! (see [`crate::snapshot`]). `/readyz` answers 200 only once the first complete pass has
//! been published, 503 before.

use std::convert::Infallible;
use std::future::Future;

use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::snapshot::{Shared, SnapshotCollector};

pub use tidal_core::exposition::{OPENMETRICS, TEXT_004, to_text_004, wants_openmetrics};

/// The registry: build info plus the snapshot collector: the reference encoding, which
/// `/metrics` reproduces byte for byte, faster (see [`crate::snapshot::encode_openmetrics`]). Unprefixed, since the container
/// series keep their kubelet/cAdvisor names; every name comes from `tidal_core::schema`.
pub fn registry(shared: Shared) -> Registry {
    let mut reg = Registry::default();
    let info = Family::<Vec<(String, String)>, Gauge>::default();
    info.get_or_create(&vec![(
        "version".to_string(),
        tidal_core::build::VERSION.to_string(),
    )])
    .set(1);
    reg.register(
        tidal_core::schema::AGENT_BUILD_INFO,
        "Build information of tidal-agent; always 1",
        info,
    );
    reg.register_collector(Box::new(SnapshotCollector(shared)));
    reg
}

fn respond(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// Answers one request (only the path and the Accept header matter).
pub fn handle<B>(shared: &Shared, req: &Request<B>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/healthz" => respond(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        "/readyz" if shared.ready() => {
            respond(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into())
        }
        "/readyz" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "no complete sample yet\n".into(),
        ),
        "/metrics" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            // Encoded once per snapshot and format (see `Shared::body`); no I/O.
            let om = wants_openmetrics(accept);
            let body = shared.body(om);
            let mut resp = Response::new(Full::new(body));
            let ctype = if om { OPENMETRICS } else { TEXT_004 };
            if let Ok(v) = header::HeaderValue::from_str(ctype) {
                resp.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            resp
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".into(),
        ),
    }
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shared: Shared,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let resp = handle(&shared, &req);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                    {
                        tracing::debug!(error = %e, "connection ended with error");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn negotiation() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(None));
    }

    #[test]
    fn text_004_drops_openmetrics_only_lines() {
        let om = "# HELP a_seconds x\n# TYPE a_seconds gauge\n# UNIT a_seconds seconds\na_seconds 1\n# EOF\n";
        assert_eq!(
            to_text_004(om),
            "# HELP a_seconds x\n# TYPE a_seconds gauge\na_seconds 1\n"
        );
    }

    /// The line-by-line conversion `to_text_004` replaced (it copies sample lines in blocks).
    fn line_by_line(openmetrics: &str) -> String {
        let counters: std::collections::HashSet<&str> = openmetrics
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
            .collect();
        let mut out = String::new();
        for l in openmetrics.lines() {
            if l == "# EOF" || l.starts_with("# UNIT ") {
                continue;
            }
            let meta = ["# HELP ", "# TYPE "].iter().find_map(|p| {
                let rest = l.strip_prefix(p)?;
                let (name, tail) = rest.split_once(' ')?;
                counters.contains(name).then_some((p, name, tail))
            });
            match meta {
                Some((p, name, tail)) => out.push_str(&format!("{p}{name}_total {tail}")),
                None => out.push_str(l),
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn text_004_block_copy_matches_the_line_by_line_conversion() {
        for om in [
            "",
            "# EOF\n",
            "a 1",
            "a 1\nb 2\n",
            "# HELP c_seconds H.\n# TYPE c_seconds counter\n# UNIT c_seconds seconds\nc_seconds_total{a=\"1\"} 2\nc_seconds_total{a=\"2\"} 3\n# HELP g G.\n# TYPE g gauge\ng 1\n\ng{x=\"#\"} 2\n# EOF\n",
            "# TYPE x counter\nx_total 1\n# HELP x no newline at the end",
        ] {
            assert_eq!(to_text_004(om), line_by_line(om), "{om:?}");
        }
    }

    #[test]
    fn build_info_is_encoded() {
        let mut body = String::new();
        encode(&mut body, &registry(Shared::default())).expect("encodes");
        assert!(body.contains("tidal_agent_build_info{version=\""), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[test]
    fn text_004_names_counters_by_their_total_series() {
        let om = "# HELP c_seconds Help text.\n# TYPE c_seconds counter\nc_seconds_total{a=\"1\"} 2\n# EOF\n";
        assert_eq!(
            to_text_004(om),
            "# HELP c_seconds_total Help text.\n# TYPE c_seconds_total counter\nc_seconds_total{a=\"1\"} 2\n"
        );
    }

    fn get(path: &str, accept: Option<&str>, shared: &Shared) -> Response<Full<Bytes>> {
        let mut req = Request::builder().uri(path);
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let req = req.body(()).expect("request");
        handle(shared, &req)
    }

    async fn body(resp: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf8")
    }

    #[tokio::test]
    async fn readyz_waits_for_the_first_snapshot_and_metrics_negotiate() {
        let shared = Shared::default();
        assert_eq!(
            get("/readyz", None, &shared).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get("/healthz", None, &shared).status(), StatusCode::OK);
        let mut b = crate::buffer::Buffer::new(std::time::Instant::now());
        b.counter(
            "container_cpu_usage_seconds_total",
            "CPU.",
            vec![("pod", "p".into())],
            3.0,
        );
        shared.store(crate::snapshot::Snapshot {
            families: b.into_parts().0,
        });
        assert_eq!(get("/readyz", None, &shared).status(), StatusCode::OK);

        let om = get(
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0"),
            &shared,
        );
        assert_eq!(om.headers()[header::CONTENT_TYPE], OPENMETRICS);
        let text = body(om).await;
        assert!(
            text.contains("container_cpu_usage_seconds_total{pod=\"p\"} 3.0\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");

        let plain = get("/metrics", Some("text/plain"), &shared);
        assert_eq!(plain.headers()[header::CONTENT_TYPE], TEXT_004);
        let text = body(plain).await;
        assert!(
            text.contains("# TYPE container_cpu_usage_seconds_total counter\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert_eq!(get("/nope", None, &shared).status(), StatusCode::NOT_FOUND);
    }
}

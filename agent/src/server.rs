//! The HTTP server: `/metrics` (OpenMetrics or text 0.0.4, negotiated), `/v1/usage` (the
//! compact usage document the scaler reads, [`tidal_core::usage`]), `/healthz`, `/readyz`.
//!
//! A scrape never does I/O: it only encodes the snapshot the sampling loop last published
//! (see [`crate::snapshot`]), followed by a per-scrape tail with the snapshot's age
//! (`tidal_agent_snapshot_age_seconds`), sent as a second chunk so the cached megabytes are
//! never copied. `/v1/usage` is the same snapshot's per-container CPU rate and working set,
//! with the same age, in a few percent of the bytes. `/readyz` answers 200 only once the first complete pass has been published,
//! 503 before. `/healthz` fails (503) when the sampler has not completed a round for longer
//! than its bound (`--stale-after-seconds`): a hung sampler must not serve old data as if
//! it were current, and the kubelet's liveness probe then restarts the agent.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode, header};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use tokio::net::TcpListener;

use crate::snapshot::Shared;

pub use tidal_core::exposition::{OPENMETRICS, TEXT_004, to_text_004, wants_openmetrics};

/// A response body of a few chunks, sent one after the other without being copied together.
#[derive(Debug, Default)]
pub struct Chunks(VecDeque<Bytes>);

impl Chunks {
    pub fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        Self(chunks.into_iter().filter(|c| !c.is_empty()).collect())
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.iter().map(|c| c.len() as u64).sum())
    }
}

fn respond(status: StatusCode, ctype: &str, body: String) -> Response<Chunks> {
    let mut resp = Response::new(Chunks::new([Bytes::from(body)]));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// Answers one request (only the path and the Accept header matter).
pub fn handle<B>(shared: &Shared, req: &Request<B>) -> Response<Chunks> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    match req.uri().path() {
        "/healthz" => match shared.stale() {
            None => respond(StatusCode::OK, PLAIN, "ok\n".into()),
            Some(why) => respond(StatusCode::SERVICE_UNAVAILABLE, PLAIN, format!("{why}\n")),
        },
        "/readyz" if shared.ready() => respond(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN,
            "no complete sample yet\n".into(),
        ),
        "/metrics" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            // Encoded once per snapshot and format (see `Shared::body`); no I/O. The tail
            // (the age, `# EOF`) is the only part written per scrape.
            let om = wants_openmetrics(accept);
            let mut resp = Response::new(Chunks::new([shared.body(om), shared.tail(om)]));
            let ctype = if om { OPENMETRICS } else { TEXT_004 };
            if let Ok(v) = header::HeaderValue::from_str(ctype) {
                resp.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            resp
        }
        // The compact usage document for the scaler, from the same snapshot: the cached `ns`
        // object between a per-request head (age, sample time) and the closing brace. The
        // head is made first: should a round publish in between, the age errs older.
        tidal_core::usage::USAGE_PATH => {
            let mut resp = Response::new(Chunks::new([
                shared.usage_head(),
                shared.usage_body(),
                Bytes::from_static(tidal_core::usage::USAGE_TAIL.as_bytes()),
            ]));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(tidal_core::usage::USAGE_CONTENT_TYPE),
            );
            resp
        }
        _ => respond(StatusCode::NOT_FOUND, PLAIN, "not found\n".into()),
    }
}

/// Serves until `shutdown` completes, with the shared hardened loop
/// ([`tidal_core::http::serve`]: header-read timeout, connection limit, accept back-off).
pub async fn serve(
    listener: TcpListener,
    shared: Shared,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tidal_core::http::serve(
        listener,
        tidal_core::http::Limits::default(),
        move |req: &Request<Incoming>| handle(&shared, req),
        shutdown,
    )
    .await
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
        encode(&mut body, &crate::snapshot::registry(Shared::default())).expect("encodes");
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

    fn get(path: &str, accept: Option<&str>, shared: &Shared) -> Response<Chunks> {
        let mut req = Request::builder().uri(path);
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let req = req.body(()).expect("request");
        handle(shared, &req)
    }

    async fn body(resp: Response<Chunks>) -> String {
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
            "tidal_agent_container_cpu_usage_seconds_total",
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
            text.contains("tidal_agent_container_cpu_usage_seconds_total{pod=\"p\"} 3.0\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");

        let plain = get("/metrics", Some("text/plain"), &shared);
        assert_eq!(plain.headers()[header::CONTENT_TYPE], TEXT_004);
        let text = body(plain).await;
        assert!(
            text.contains("# TYPE tidal_agent_container_cpu_usage_seconds_total counter\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert_eq!(get("/nope", None, &shared).status(), StatusCode::NOT_FOUND);
    }

    fn age_in(text: &str) -> f64 {
        let name = tidal_core::schema::AGENT_SNAPSHOT_AGE_SECONDS;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    #[tokio::test]
    async fn every_scrape_reports_the_snapshots_age_and_ends_well_formed() {
        let shared = Shared::default();
        let round = std::time::Instant::now() - std::time::Duration::from_millis(1500);
        shared.store_at(crate::snapshot::Snapshot::default(), round);
        let om = body(get(
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0"),
            &shared,
        ))
        .await;
        let first = age_in(&om);
        assert!((1.5..5.0).contains(&first), "age {first} in {om}");
        assert!(
            om.ends_with("# EOF\n") && om.matches("# EOF").count() == 1,
            "{om}"
        );
        // The body is cached, the age is not: a later scrape of the same snapshot is older.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let again = age_in(&body(get("/metrics", None, &shared)).await);
        assert!(again > first, "{again} <= {first}");
        // A new round resets it.
        shared.store(crate::snapshot::Snapshot::default());
        assert!(age_in(&body(get("/metrics", None, &shared)).await) < 1.0);
    }

    #[tokio::test]
    async fn usage_serves_the_snapshots_per_container_usage_and_age() {
        use tidal_core::schema::{
            AGENT_CONTAINER_CPU_USAGE_CORES, CONTAINER_MEMORY_WORKING_SET_BYTES,
        };
        use tidal_core::usage::{ContainerValues, USAGE_CONTENT_TYPE, USAGE_PATH, UsageDocument};
        let shared = Shared::default();
        let labels = |ns: &str, pod: &str, c: &str| {
            vec![
                ("namespace", ns.to_string()),
                ("pod", pod.to_string()),
                ("container", c.to_string()),
                ("pod_uid", "u1".to_string()),
            ]
        };
        let mut b = crate::buffer::Buffer::new(std::time::Instant::now());
        for (name, (ns, pod, c), v) in [
            (
                AGENT_CONTAINER_CPU_USAGE_CORES,
                ("shop", "web-1", "app"),
                0.5,
            ),
            (AGENT_CONTAINER_CPU_USAGE_CORES, ("shop", "web-1", ""), 0.7),
            (AGENT_CONTAINER_CPU_USAGE_CORES, ("", "", "x"), 0.1),
            (
                CONTAINER_MEMORY_WORKING_SET_BYTES,
                ("shop", "web-1", "app"),
                5e7,
            ),
            (
                CONTAINER_MEMORY_WORKING_SET_BYTES,
                ("shop", "web-1", "new"),
                1e6,
            ),
            (
                "tidal_agent_container_memory_rss_bytes",
                ("shop", "web-1", "app"),
                9.0,
            ),
        ] {
            b.gauge(name, "h", labels(ns, pod, c), v);
        }
        let round = std::time::Instant::now() - std::time::Duration::from_millis(1500);
        shared.store_at(
            crate::snapshot::Snapshot {
                families: b.into_parts().0,
            },
            round,
        );
        let resp = get(USAGE_PATH, None, &shared);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], USAGE_CONTENT_TYPE);
        let text = body(resp).await;
        assert!(!text.contains(' ') && !text.contains('\n'), "{text}");
        let doc: UsageDocument = serde_json::from_str(&text).expect("a usage document");
        let age = doc.age_seconds.expect("an age");
        assert!((1.5..5.0).contains(&age), "{text}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let sampled = doc.sampled_unix_seconds.expect("a sample time");
        assert!((now - sampled - age).abs() < 1.0, "{text}");
        // Only the non-empty namespace/pod/container series the scaler reads.
        assert_eq!(doc.namespaces.len(), 1, "{text}");
        let pod = &doc.namespaces["shop"]["web-1"];
        assert_eq!(pod.len(), 2, "{text}");
        assert_eq!(
            pod["app"],
            ContainerValues {
                cpu_cores: Some(Some(0.5)),
                working_set_bytes: Some(Some(5e7)),
            }
        );
        assert_eq!(
            pod["new"],
            ContainerValues {
                cpu_cores: None,
                working_set_bytes: Some(Some(1e6)),
            }
        );
        // The cached part is shared by later requests of the same snapshot; the age is not.
        assert_eq!(shared.usage_body().as_ptr(), shared.usage_body().as_ptr());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let again: UsageDocument =
            serde_json::from_str(&body(get(USAGE_PATH, None, &shared)).await).expect("parses");
        assert!(again.age_seconds.expect("an age") > age);
        assert_eq!(again.namespaces, doc.namespaces);
        // A new snapshot, a new document.
        shared.store(crate::snapshot::Snapshot::default());
        let empty: UsageDocument =
            serde_json::from_str(&body(get(USAGE_PATH, None, &shared)).await).expect("parses");
        assert!(empty.namespaces.is_empty());
        assert!(empty.age_seconds.expect("an age") < 1.0);
    }

    #[tokio::test]
    async fn healthz_fails_once_no_round_completed_within_the_bound() {
        let shared = Shared::new(std::time::Duration::from_secs(3));
        assert_eq!(get("/healthz", None, &shared).status(), StatusCode::OK);
        let long_ago = std::time::Instant::now() - std::time::Duration::from_secs(10);
        shared.store_at(crate::snapshot::Snapshot::default(), long_ago);
        let resp = get("/healthz", None, &shared);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let why = body(resp).await;
        assert!(why.contains("has not completed a round for 10."), "{why}");
        assert!(why.contains("bound 3.0s"), "{why}");
        // Ready stays true (it has data), but it is not healthy: the kubelet restarts it.
        assert_eq!(get("/readyz", None, &shared).status(), StatusCode::OK);
        shared.store(crate::snapshot::Snapshot::default());
        assert_eq!(get("/healthz", None, &shared).status(), StatusCode::OK);
    }
}

//! The Prometheus HTTP API: instant queries (`POST /api/v1/query`, form-encoded).
//!
//! The controller collects the distinct PromQL of every policy and runs each once per cycle
//! with [`PrometheusSource::query_all`] (bounded concurrency), so policies sharing a query
//! share one request.
//!
//! Results of type `vector` and `scalar` are read; `matrix` and `string` are
//! [`SourceError::Malformed`] (a policy's query must yield instant values). Sample values come
//! as strings (`"NaN"`, `"+Inf"`): non-finite ones are dropped, and a query left with no
//! finite sample is [`SourceError::NoData`], which the caller must never read as 0.
//! Prometheus's own errors (`{"status":"error","errorType":…,"error":…}`) become
//! [`SourceError::Http`] carrying its message and the query; connection failures and timeouts
//! are [`SourceError::Unreachable`].
//!
//! The server may require a bearer token or basic auth, and TLS with a client certificate
//! ([`PrometheusAuth`]); a 401 or 403 is [`SourceError::Http`] with its status.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;

use super::body::{self, BodyCap, DEFAULT_PROMETHEUS_MAX_BODY_BYTES};
use super::http::{PROMETHEUS_TLS_FLAGS, PrometheusAuth, client_builder, client_builder_with};
use super::{SourceError, error_chain, snippet};

/// The backend name in errors.
const BACKEND: &str = "prometheus";

/// At most this many queries in flight in [`PrometheusSource::query_all`].
pub const MAX_IN_FLIGHT: usize = 8;

/// One sample of an instant query's result.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    /// The series' labels (empty for a scalar result).
    pub labels: BTreeMap<String, String>,
    /// The value; always finite.
    pub value: f64,
    /// The evaluation time Prometheus reports for the sample (Unix seconds).
    pub timestamp_unix_seconds: f64,
}

/// A client for one Prometheus server.
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    /// `<base>/api/v1/query`.
    query_url: String,
    http: reqwest::Client,
    /// Credentials, read from their files before each query.
    auth: PrometheusAuth,
    /// Every [`query_all`](Self::query_all) finishes within this (each query's own timeout).
    budget: Duration,
    max_body: BodyCap,
}

impl PrometheusSource {
    /// A source for the Prometheus at `base_url` (e.g. `http://prometheus:9090`, a path prefix
    /// is kept: `http://host/prometheus`), with no credentials. Each query must finish within
    /// `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, SourceError> {
        Self::with_auth(base_url, timeout, PrometheusAuth::default())
    }

    /// A source that authenticates with `auth` (bearer token or basic auth, and TLS with a CA
    /// and a client certificate for an `https://` URL).
    ///
    /// An invalid URL (unparsable, not `http` or `https`, no host, credentials in it) or
    /// invalid `auth` is [`SourceError::NotConfigured`] naming the flag.
    pub fn with_auth(
        base_url: &str,
        timeout: Duration,
        auth: PrometheusAuth,
    ) -> Result<Self, SourceError> {
        // The URL is logged and written into statuses: credentials in it are refused, and an
        // error shows the URL only when it holds none.
        let parsed = reqwest::Url::parse(base_url.trim());
        let has_credentials = match &parsed {
            Ok(u) => !u.username().is_empty() || u.password().is_some(),
            Err(_) => base_url.contains('@'),
        };
        if has_credentials {
            return Err(SourceError::NotConfigured(
                "--prometheus-url: must not carry credentials (user:password@); use \
                 --prometheus-basic-auth-username and --prometheus-basic-auth-password-file"
                    .into(),
            ));
        }
        let invalid =
            |why: &str| SourceError::NotConfigured(format!("--prometheus-url {base_url:?}: {why}"));
        let url = parsed.map_err(|e| invalid(&e.to_string()))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid(&format!(
                "scheme {:?} is not supported (use http:// or https://)",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must not have a query or fragment"));
        }
        auth.check().map_err(SourceError::NotConfigured)?;
        if auth.has_tls_settings() && url.scheme() != "https" {
            return Err(invalid(
                "TLS settings (--prometheus-ca-file, --prometheus-cert-file) need an https:// URL",
            ));
        }
        // Only an https:// URL needs (and may fail on) a trust store.
        let builder = if url.scheme() == "https" {
            client_builder_with(
                auth.tls
                    .client_config(PROMETHEUS_TLS_FLAGS)
                    .map_err(SourceError::NotConfigured)?,
            )
        } else {
            client_builder()
        };
        let query_url = format!("{}/api/v1/query", url.as_str().trim_end_matches('/'));
        let http = builder
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| {
                invalid(&format!(
                    "cannot build the HTTP client: {}",
                    error_chain(&e)
                ))
            })?;
        if auth.has_credentials() && url.scheme() == "http" {
            tracing::warn!(
                url = %url,
                "Prometheus credentials are sent over plain HTTP: use an https:// URL"
            );
        }
        Ok(Self {
            query_url,
            http,
            auth,
            budget: timeout,
            max_body: BodyCap {
                bytes: DEFAULT_PROMETHEUS_MAX_BODY_BYTES,
                flag: "--prometheus-max-body-bytes",
            },
        })
    }

    /// An answer larger than `bytes` is [`SourceError::TooLarge`] and none of it is used
    /// (reading stops at the cap).
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body.bytes = bytes;
        self
    }

    /// The query endpoint (`<base>/api/v1/query`).
    pub fn query_url(&self) -> &str {
        &self.query_url
    }

    /// Runs one instant query at the server's current time.
    pub async fn query(&self, promql: &str) -> Result<Vec<PromSample>, SourceError> {
        let url = &self.query_url;
        let unreachable = |e: reqwest::Error| SourceError::Unreachable {
            backend: BACKEND,
            url: url.clone(),
            detail: format!("query {promql:?}: {}", error_chain(&e.without_url())),
        };
        let req = self
            .auth
            .apply(self.http.post(url))
            .await
            .map_err(SourceError::NotConfigured)?;
        let resp = req
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form_body(promql))
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status().as_u16();
        let context = format!("query {promql:?}: ");
        let body = body::read_text(resp, self.max_body, BACKEND, url, &context).await?;
        parse_response(url, promql, status, &body)
    }

    /// Runs every distinct query in `queries` once, at most [`MAX_IN_FLIGHT`] at a time, and
    /// returns each one's result keyed by the query text. The whole gathering finishes within
    /// the source's timeout (`--prometheus-timeout-seconds`): a query still queued or running
    /// then is [`SourceError::Unreachable`] saying so, and the others keep their results.
    pub async fn query_all(
        &self,
        queries: &[String],
    ) -> HashMap<String, Result<Vec<PromSample>, SourceError>> {
        let distinct: BTreeSet<String> = queries.iter().cloned().collect();
        let deadline = tokio::time::Instant::now() + self.budget;
        let budget = self.budget;
        // Owned queries: a closure taking `&String` would make the future `Send` only for one
        // lifetime, and a caller could not spawn it.
        futures::stream::iter(distinct)
            .map(|q: String| async move {
                let result = match tokio::time::timeout_at(deadline, self.query(&q)).await {
                    Ok(r) => r,
                    Err(_) => Err(SourceError::Unreachable {
                        backend: BACKEND,
                        url: self.query_url.clone(),
                        detail: format!(
                            "query {q:?}: no answer within the budget of {:.1}s \
                             (--prometheus-timeout-seconds)",
                            budget.as_secs_f64()
                        ),
                    }),
                };
                (q, result)
            })
            .buffer_unordered(MAX_IN_FLIGHT)
            .collect()
            .await
    }
}

/// `query=<promql>`, application/x-www-form-urlencoded (the WHATWG serializer: ASCII
/// alphanumerics and `*-._` as is, space as `+`, every other byte percent-encoded).
fn form_body(promql: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(6 + promql.len() * 3);
    out.push_str("query=");
    for b in promql.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    out
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// Absent for native-histogram samples (which carry `histogram` instead).
    #[serde(default)]
    value: Option<(f64, String)>,
}

/// Turns an `/api/v1/query` answer (HTTP `status`, `body`) for `promql` into samples.
///
/// Pure: the same rules as [`PrometheusSource::query`] without the request.
pub fn parse_response(
    url: &str,
    promql: &str,
    status: u16,
    body: &str,
) -> Result<Vec<PromSample>, SourceError> {
    let malformed = |detail: String| SourceError::Malformed {
        backend: BACKEND,
        url: url.to_string(),
        detail: format!("query {promql:?}: {detail}"),
    };
    let env: Envelope = match serde_json::from_str(body) {
        Ok(env) => env,
        Err(_) if !(200..300).contains(&status) => {
            return Err(SourceError::Http {
                backend: BACKEND,
                url: url.to_string(),
                status,
                detail: format!("query {promql:?}: {}", snippet(body)),
            });
        }
        Err(e) => return Err(malformed(format!("not the API's JSON ({e})"))),
    };
    if env.status != "success" {
        let kind = env.error_type.as_deref().unwrap_or("unknown");
        let msg = env.error.as_deref().unwrap_or("(no message)");
        return Err(SourceError::Http {
            backend: BACKEND,
            url: url.to_string(),
            status,
            detail: format!("query {promql:?}: {kind}: {msg}"),
        });
    }
    if !(200..300).contains(&status) {
        return Err(SourceError::Http {
            backend: BACKEND,
            url: url.to_string(),
            status,
            detail: format!("query {promql:?}: {}", snippet(body)),
        });
    }
    let data = env
        .data
        .ok_or_else(|| malformed("status success without data".to_string()))?;
    let value = |v: &str| -> Result<f64, SourceError> {
        tidal_core::exposition::parse_sample_value(v)
            .ok_or_else(|| malformed(format!("sample value {v:?} is not a number")))
    };
    let (total, samples) = match data.result_type.as_str() {
        "vector" => {
            let result: Vec<VectorSample> = serde_json::from_value(data.result)
                .map_err(|e| malformed(format!("vector result: {e}")))?;
            let total = result.len();
            let mut samples = Vec::with_capacity(total);
            for s in result {
                let Some((ts, v)) = s.value else { continue };
                samples.push(PromSample {
                    labels: s.metric,
                    value: value(&v)?,
                    timestamp_unix_seconds: ts,
                });
            }
            (total, samples)
        }
        "scalar" => {
            let (ts, v): (f64, String) = serde_json::from_value(data.result)
                .map_err(|e| malformed(format!("scalar result: {e}")))?;
            let sample = PromSample {
                labels: BTreeMap::new(),
                value: value(&v)?,
                timestamp_unix_seconds: ts,
            };
            (1, vec![sample])
        }
        other => {
            return Err(malformed(format!(
                "result type {other:?}: only vector and scalar results are usable (an instant \
                 query, not a range selector or string)"
            )));
        }
    };
    let finite: Vec<PromSample> = samples
        .into_iter()
        .filter(|s| s.value.is_finite())
        .collect();
    if finite.is_empty() {
        return Err(SourceError::NoData {
            backend: BACKEND,
            query: promql.to_string(),
            detail: if total == 0 {
                "empty result".to_string()
            } else {
                format!("{total} sample(s), none with a finite value (NaN or ±Inf)")
            },
        });
    }
    Ok(finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://prom:9090/api/v1/query";

    fn parse(status: u16, body: &str) -> Result<Vec<PromSample>, SourceError> {
        parse_response(URL, "q", status, body)
    }

    #[test]
    fn vector_with_labels_and_non_finite_values_dropped() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"prometheus","instance":"localhost:9090"},"value":[1700000000.123,"1"]},
            {"metric":{"job":"a"},"value":[1700000000.123,"NaN"]},
            {"metric":{"job":"b"},"value":[1700000000.123,"+Inf"]},
            {"metric":{"job":"c"},"value":[1700000000.123,"-Inf"]},
            {"metric":{"job":"d"},"value":[1700000000.123,"2.5e-3"]},
            {"metric":{"job":"h"},"histogram":[1700000000.123,{"count":"1","sum":"1"}]}
        ]}}"#;
        let got = parse(200, body).expect("vector");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].labels["job"], "prometheus");
        assert_eq!(got[0].labels["__name__"], "up");
        assert_eq!(got[0].value, 1.0);
        assert_eq!(got[0].timestamp_unix_seconds, 1_700_000_000.123);
        assert_eq!(got[1].value, 0.0025);
    }

    #[test]
    fn scalar() {
        let body =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"42"]}}"#;
        let got = parse(200, body).expect("scalar");
        assert_eq!(
            got,
            vec![PromSample {
                labels: BTreeMap::new(),
                value: 42.0,
                timestamp_unix_seconds: 1_700_000_000.0
            }]
        );
    }

    #[test]
    fn no_finite_sample_is_no_data_naming_the_query() {
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        let nan_scalar =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        let nan_vec = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        for (body, detail) in [
            (empty, "empty result"),
            (nan_scalar, "1 sample(s), none with a finite value"),
            (nan_vec, "1 sample(s), none with a finite value"),
        ] {
            match parse_response(URL, "0/0", 200, body) {
                Err(e @ SourceError::NoData { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains("\"0/0\"") && msg.contains(detail), "{msg}");
                    assert_eq!(e.label(), "no_data");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn matrix_and_string_are_malformed_naming_the_query() {
        for (t, result) in [("matrix", "[]"), ("string", r#"[1,"x"]"#)] {
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"{t}","result":{result}}}}}"#
            );
            match parse_response(URL, "up[5m]", 200, &body) {
                Err(e @ SourceError::Malformed { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains("\"up[5m]\"") && msg.contains(t), "{msg}");
                }
                other => panic!("{t}: {other:?}"),
            }
        }
    }

    #[test]
    fn prometheus_error_is_http_with_its_message_and_the_query() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"}"#;
        match parse_response(URL, "sum(", 400, body) {
            Err(SourceError::Http {
                status,
                detail,
                url,
                ..
            }) => {
                assert_eq!(status, 400);
                assert_eq!(url, URL);
                assert!(detail.contains("\"sum(\""), "{detail}");
                assert!(detail.contains("bad_data"), "{detail}");
                assert!(detail.contains("unclosed left parenthesis"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        // A proxy's HTML error page.
        match parse(502, "<html>Bad Gateway</html>") {
            Err(SourceError::Http { status, detail, .. }) => {
                assert_eq!(status, 502);
                assert!(detail.contains("Bad Gateway"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for body in [
            "not json",
            r#"{"status":"success"}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":{"x":1}}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1]}}"#,
        ] {
            assert!(
                matches!(parse(200, body), Err(SourceError::Malformed { .. })),
                "{body}: {:?}",
                parse(200, body)
            );
        }
    }

    #[test]
    fn url_validation_names_the_flag() {
        for bad in [
            "",
            "prometheus:9090",
            "http://",
            "http://tidal:s3cret@p:9090",
            "ftp://u:s3cret@p",
            "http://u:s3cret@p/?x=1",
            "https://u:s3cret@",
            "ftp://p",
            "http://p:9090/?x=1",
        ] {
            match PrometheusSource::new(bad, Duration::from_secs(1)) {
                Err(SourceError::NotConfigured(msg)) => {
                    assert!(msg.contains("--prometheus-url"), "{bad}: {msg}");
                    assert!(!msg.contains("s3cret"), "{bad}: {msg}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let tls_on_http = PrometheusAuth {
            tls: tidal_core::tls::TlsFiles {
                ca_file: Some("/etc/hostname".into()),
                ..Default::default()
            },
            ..PrometheusAuth::default()
        };
        match PrometheusSource::with_auth("http://p:9090", Duration::from_secs(1), tls_on_http) {
            Err(SourceError::NotConfigured(msg)) => {
                assert!(msg.contains("need an https:// URL"), "{msg}")
            }
            other => panic!("{other:?}"),
        }
        let tls = PrometheusSource::new("https://p:9090", Duration::from_secs(1)).expect("valid");
        assert_eq!(tls.query_url(), "https://p:9090/api/v1/query");
        let ok = PrometheusSource::new("http://p:9090/", Duration::from_secs(1)).expect("valid");
        assert_eq!(ok.query_url(), "http://p:9090/api/v1/query");
        let prefixed =
            PrometheusSource::new("http://p/prom", Duration::from_secs(1)).expect("valid");
        assert_eq!(prefixed.query_url(), "http://p/prom/api/v1/query");
    }

    #[tokio::test]
    async fn query_all_can_run_in_a_spawned_task() {
        // Compiles only if the future is `Send` for any lifetime (what tokio::spawn needs).
        let src =
            PrometheusSource::new("http://127.0.0.1:1", Duration::from_secs(1)).expect("valid");
        let got = tokio::spawn(async move { src.query_all(&[]).await })
            .await
            .expect("task");
        assert!(got.is_empty());
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_body(r#"sum(rate(x{a="b c"}[1m])) / 2 + 1 & é"#),
            "query=sum%28rate%28x%7Ba%3D%22b+c%22%7D%5B1m%5D%29%29+%2F+2+%2B+1+%26+%C3%A9"
        );
    }

    /// The answer is read under `--prometheus-max-body-bytes`: exactly the cap is parsed and
    /// used; one byte over is `TooLarge` naming the URL and the cap (nothing parsed).
    #[tokio::test]
    async fn an_answer_over_the_body_cap_is_too_large() {
        use crate::sources::body::tests::{Framing, serve_body};
        let answer =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"42"]}}"#
                .to_vec();
        let (url, _, task) = serve_body(
            answer.clone(),
            answer.len(),
            Framing::Length,
            Duration::ZERO,
        )
        .await;
        let src = PrometheusSource::new(&url, Duration::from_secs(2))
            .expect("valid")
            .with_max_body_bytes(answer.len());
        assert_eq!(src.query("q").await.expect("at the cap")[0].value, 42.0);
        let src = src.with_max_body_bytes(answer.len() - 1);
        match src.query("q").await {
            Err(e @ SourceError::TooLarge { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("{url}/api/v1/query"))
                        && msg.contains(&format!("cap of {} bytes", answer.len() - 1))
                        && msg.contains("--prometheus-max-body-bytes"),
                    "{msg}"
                );
            }
            other => panic!("{other:?}"),
        }
        task.abort();
    }

    /// A Prometheus that answers after the budget: every query of the gathering is an error
    /// saying so, within the budget (not after the answer).
    #[tokio::test]
    async fn a_slow_prometheus_is_cut_at_the_budget() {
        use crate::sources::body::tests::{Framing, serve_body};
        let answer = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#;
        let (url, _, task) = serve_body(
            answer.to_vec(),
            answer.len(),
            Framing::Length,
            Duration::from_secs(5),
        )
        .await;
        let src = PrometheusSource::new(&url, Duration::from_millis(400)).expect("valid");
        let queries: Vec<String> = (0..20).map(|i| format!("vector({i})")).collect();
        let started = std::time::Instant::now();
        let got = src.query_all(&queries).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(got.len(), 20);
        for r in got.values() {
            assert!(
                matches!(r, Err(e @ SourceError::Unreachable { .. }) if e.to_string().contains("0.4s") || e.to_string().contains("timed out")),
                "{r:?}"
            );
        }
        task.abort();
    }
}

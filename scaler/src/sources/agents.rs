//! The fast path: scrape every `tidal-agent` directly and read per-container CPU and memory,
//! without waiting for Prometheus.
//!
//! Each agent is asked for its compact usage document ([`tidal_core::usage`], `/v1/usage`):
//! the same snapshot as its `/metrics`, but only the two series per container read here, a few
//! percent of the bytes, read without the exposition parser. An agent that does not serve it
//! (404 from an agent older than this scaler, or an answer that is not JSON) is scraped at its
//! `/metrics` as before, fully parsed ([`exposition`]); that is remembered per agent (logged
//! once), and asked again after [`LEGACY_RECHECK`] in case it was upgraded in place. Both
//! give the same [`PodUsage`] and the same errors: an agent is named by its `/metrics` URL.
//!
//! The agents are found by [`Discovery`]: a static list of base URLs, or the pods matching a
//! label selector (Running, with a pod IP). All agents are scraped concurrently, each with its
//! own timeout; one agent failing costs only its own pods (the failure is reported in
//! [`AgentScrape::errors`], naming its URL), never the others'.
//!
//! From each scrape (either format) the source reads two series per container (names from
//! [`tidal_core::schema`]), labelled `namespace`, `pod`, `container` (plus `pod_uid`,
//! `qos_class`):
//!
//! - [`AGENT_CONTAINER_CPU_USAGE_CORES`]: the agent's CPU rate between its last two samples;
//! - [`CONTAINER_MEMORY_WORKING_SET_BYTES`]: usage − inactive_file, as the kubelet computes it.
//!
//! Series without a namespace, pod or container (pod-level cgroups have `container=""`; pods
//! the agent cannot yet match to the API are labelled only by `pod_uid`) are skipped. A NaN,
//! infinite or negative value leaves that container's value absent (`None`), never 0; so does
//! a missing series (the agent exports the CPU rate only from its second sample on).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tidal_core::schema::{
    AGENT_CONTAINER_CPU_USAGE_CORES, AGENT_SNAPSHOT_AGE_SECONDS,
    CONTAINER_MEMORY_WORKING_SET_BYTES, compatible_name,
};
use tidal_core::usage::{ContainerValues, USAGE_CONTENT_TYPE, USAGE_PATH, UsageDocument};

use super::body::{self, BodyCap, DEFAULT_AGENT_MAX_BODY_BYTES};
use super::exposition::{self, ExpositionError};
use super::{PodKey, PodUsage, SourceError, error_chain, snippet};

/// The backend name in errors.
const BACKEND: &str = "tidal-agent";

/// At most this many scrapes in flight (a large cluster has one agent per node).
const MAX_IN_FLIGHT: usize = 64;

/// What the scaler asks the agent for: the text format 0.0.4 (the parser also reads the
/// OpenMetrics text an agent may send instead).
const ACCEPT: &str =
    "text/plain;version=0.0.4;q=1.0,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1";

/// An agent found not to serve the usage document is asked again after this long (an agent
/// upgraded in place at a fixed URL); until then it is scraped at `/metrics` only.
pub const LEGACY_RECHECK: Duration = Duration::from_secs(600);

/// How the agents are found.
#[derive(Clone)]
pub enum Discovery {
    /// Fixed base URLs such as `http://127.0.0.1:9464` (`/metrics` is appended unless the URL
    /// already ends with it).
    Static(Vec<String>),
    /// The pods in `namespace` matching the label `selector` that are Running and have a pod
    /// IP, scraped at `http://<podIP>:<port>/metrics`.
    Pods {
        /// Client used to list the pods.
        client: kube::Client,
        /// Namespace of the agent pods.
        namespace: String,
        /// Label selector, e.g. `app.kubernetes.io/name=tidal-agent`.
        selector: String,
        /// The agents' metrics port.
        port: u16,
    },
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Static(urls) => f.debug_tuple("Static").field(urls).finish(),
            Self::Pods {
                namespace,
                selector,
                port,
                ..
            } => f
                .debug_struct("Pods")
                .field("namespace", namespace)
                .field("selector", selector)
                .field("port", port)
                .finish_non_exhaustive(),
        }
    }
}

/// The result of one round over all agents.
#[derive(Debug, Clone, Default)]
pub struct AgentScrape {
    /// Usage of every pod some agent reported, by `(namespace, pod)`.
    pub pods: HashMap<PodKey, PodUsage>,
    /// One error per agent that could not be scraped or parsed (naming its URL), plus one if
    /// discovery itself failed.
    pub errors: Vec<SourceError>,
    /// How many agents were found.
    pub agents: usize,
    /// How many of them were scraped and parsed.
    pub agents_ok: usize,
}

/// Scrapes the agents found by a [`Discovery`].
#[derive(Debug, Clone)]
pub struct AgentSource {
    discovery: Discovery,
    http: reqwest::Client,
    max_age_seconds: f64,
    max_body: BodyCap,
    /// The agents (by `/metrics` URL) that did not serve the usage document, and when that
    /// was last seen; shared by clones.
    legacy: Arc<Mutex<HashMap<String, Instant>>>,
}

/// What one agent answered: its usage document, or (an older agent) its `/metrics` text.
enum Scraped {
    Usage(String),
    Metrics(String),
}

/// The flag of the agent scrape's body cap.
const MAX_BODY_FLAG: &str = "--agent-max-body-bytes";

/// The default bound on an agent's data age: three of its default 1 s sampling intervals.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3);

impl AgentSource {
    /// A source over `discovery`; each scrape (connect, request and body) must finish within
    /// `timeout`.
    ///
    /// Fails only if the HTTP client cannot be built (a broken system configuration).
    pub fn new(discovery: Discovery, timeout: Duration) -> Result<Self, SourceError> {
        let http = super::http::client_builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| {
                SourceError::NotConfigured(format!(
                    "agent scraper: cannot build the HTTP client: {}",
                    error_chain(&e)
                ))
            })?;
        Ok(Self {
            discovery,
            http,
            max_age_seconds: DEFAULT_MAX_AGE.as_secs_f64(),
            max_body: BodyCap {
                bytes: DEFAULT_AGENT_MAX_BODY_BYTES,
                flag: MAX_BODY_FLAG,
            },
            legacy: Arc::default(),
        })
    }

    /// A scrape body larger than `bytes` is [`SourceError::TooLarge`] and none of it is used
    /// (reading stops at the cap).
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body.bytes = bytes;
        self
    }

    /// Data older than `max_age` (by the agent's own `tidal_agent_snapshot_age_seconds`) is
    /// not used: that agent's pods count as missing, under the HPA's rules for missing pods
    /// (no scale-down on them).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age_seconds = max_age.as_secs_f64();
        self
    }

    /// The `/metrics` URLs to scrape now (lists the pods for [`Discovery::Pods`]).
    pub async fn targets(&self) -> Result<Vec<String>, SourceError> {
        match &self.discovery {
            Discovery::Static(urls) => Ok(urls.iter().map(|u| metrics_url(u)).collect()),
            Discovery::Pods {
                client,
                namespace,
                selector,
                port,
            } => {
                let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
                let list = api
                    .list(&ListParams::default().labels(selector))
                    .await
                    .map_err(|e| discovery_error(namespace, selector, &e))?;
                let mut urls: Vec<String> = list
                    .items
                    .iter()
                    .filter_map(|p| {
                        let status = p.status.as_ref()?;
                        let running = status.phase.as_deref() == Some("Running");
                        let ip = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
                        running.then(|| pod_metrics_url(ip, *port))
                    })
                    .collect();
                urls.sort();
                urls.dedup();
                Ok(urls)
            }
        }
    }

    /// Scrapes every agent once, concurrently, and merges what they report. The pods of an
    /// agent get `timestamp_unix_seconds = now_unix_seconds - age`, its snapshot's age as the
    /// agent reports it (measured on the agent's monotonic clock, so no clock agreement is
    /// needed; `now_unix_seconds` is taken before the requests, so this errs older). An agent
    /// whose age is over the bound, or missing, is a [`SourceError::Stale`] and its pods are
    /// left out.
    pub async fn scrape(&self, now_unix_seconds: f64) -> AgentScrape {
        let mut out = AgentScrape::default();
        let urls = match self.targets().await {
            Ok(urls) => urls,
            Err(e) => {
                out.errors.push(e);
                return out;
            }
        };
        out.agents = urls.len();
        self.forget_legacy_except(&urls);
        let mut bodies = futures::stream::iter(urls)
            .map(|url| async move {
                let body = self.scrape_one(&url).await;
                (url, body)
            })
            .buffer_unordered(MAX_IN_FLIGHT);
        while let Some((url, body)) = bodies.next().await {
            let stale = |detail| SourceError::Stale {
                backend: BACKEND,
                url: url.clone(),
                detail,
            };
            let malformed = |detail| SourceError::Malformed {
                backend: BACKEND,
                url: url.clone(),
                detail,
            };
            let result = body.and_then(|body| match body {
                Scraped::Metrics(body) => {
                    let age = fresh_age(&body, self.max_age_seconds).map_err(stale)?;
                    ingest(&body, now_unix_seconds - age, &mut out.pods)
                        .map_err(|e| malformed(e.to_string()))
                }
                Scraped::Usage(body) => {
                    let doc = parse_usage(&body).map_err(malformed)?;
                    let age = judge_age(usage_age(&doc), self.max_age_seconds).map_err(stale)?;
                    Ok(ingest_usage(doc, now_unix_seconds - age, &mut out.pods))
                }
            });
            match result {
                Ok(_) => out.agents_ok += 1,
                Err(e) => out.errors.push(e),
            }
        }
        out
    }

    /// One agent's usage: its usage document, unless it is known not to serve one (or turns
    /// out not to), then its `/metrics`.
    async fn scrape_one(&self, url: &str) -> Result<Scraped, SourceError> {
        if !self.is_legacy(url) {
            match self.fetch_usage(url).await? {
                Some(body) => return Ok(Scraped::Usage(body)),
                None => self.mark_legacy(url),
            }
        }
        self.fetch(url).await.map(Scraped::Metrics)
    }

    fn legacy(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.legacy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Known not to serve the usage document, and not yet due to be asked again.
    fn is_legacy(&self, url: &str) -> bool {
        self.legacy()
            .get(url)
            .is_some_and(|seen| seen.elapsed() < LEGACY_RECHECK)
    }

    /// Remembers that the agent at `url` does not serve the usage document; logged the first
    /// time only.
    fn mark_legacy(&self, url: &str) {
        if self
            .legacy()
            .insert(url.to_string(), Instant::now())
            .is_none()
        {
            tracing::info!(
                agent = url,
                "no usage document from this tidal-agent at {USAGE_PATH} (an older agent, or a \
                 proxy that lets only /metrics through): reading its full /metrics instead"
            );
        }
    }

    /// Keeps the memory of agents that are still there (pod IPs come and go).
    fn forget_legacy_except(&self, urls: &[String]) {
        let mut legacy = self.legacy();
        if !legacy.is_empty() {
            let found: std::collections::HashSet<&str> = urls.iter().map(String::as_str).collect();
            legacy.retain(|u, _| found.contains(u.as_str()));
        }
    }

    /// One GET of the usage document of the agent at `url` (its `/metrics` URL, which names
    /// it in errors). `None` when the agent does not serve it, or something in front of it
    /// does not let it through (see [`reads_metrics_instead`]).
    async fn fetch_usage(&self, url: &str) -> Result<Option<String>, SourceError> {
        let usage = usage_url(url);
        let context = format!("GET {USAGE_PATH}: ");
        let resp = self
            .http
            .get(&usage)
            .header(reqwest::header::ACCEPT, USAGE_CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| SourceError::Unreachable {
                backend: BACKEND,
                url: url.to_string(),
                detail: format!("{context}{}", error_chain(&e.without_url())),
            })?;
        let status = resp.status();
        let json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case(USAGE_CONTENT_TYPE))
            });
        if reads_metrics_instead(status, json) {
            return Ok(None);
        }
        let body = body::read_text(resp, self.max_body, BACKEND, url, &context).await?;
        if !status.is_success() {
            return Err(SourceError::Http {
                backend: BACKEND,
                url: url.to_string(),
                status: status.as_u16(),
                detail: format!("{context}{}", snippet(&body)),
            });
        }
        Ok(Some(body))
    }

    /// One GET of `url`, returning the body.
    async fn fetch(&self, url: &str) -> Result<String, SourceError> {
        let unreachable = |e: reqwest::Error| SourceError::Unreachable {
            backend: BACKEND,
            url: url.to_string(),
            detail: error_chain(&e.without_url()),
        };
        let resp = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, ACCEPT)
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status();
        let body = body::read_text(resp, self.max_body, BACKEND, url, "").await?;
        if !status.is_success() {
            return Err(SourceError::Http {
                backend: BACKEND,
                url: url.to_string(),
                status: status.as_u16(),
                detail: snippet(&body),
            });
        }
        Ok(body)
    }
}

/// Reads the per-container CPU and memory series of one agent's scrape into `pods`, stamping
/// every pod it touches with `now_unix_seconds`. Returns how many series it used.
///
/// Pure. The body is parsed completely before `pods` is touched, so a malformed body changes
/// nothing. A container already in `pods` (reported by another agent) keeps the values this
/// body does not have.
pub fn ingest(
    body: &str,
    now_unix_seconds: f64,
    pods: &mut HashMap<PodKey, PodUsage>,
) -> Result<usize, ExpositionError> {
    // An agent run with --compatible-metric-names writes the working set under cAdvisor's
    // name: the same series.
    let working_set_compatible = compatible_name(CONTAINER_MEMORY_WORKING_SET_BYTES);
    let samples = exposition::parse(body, |name| {
        name == AGENT_CONTAINER_CPU_USAGE_CORES
            || name == CONTAINER_MEMORY_WORKING_SET_BYTES
            || name == working_set_compatible
    })?;
    let mut used = 0;
    for s in &samples {
        let nonempty = |l: &str| s.label(l).filter(|v| !v.is_empty());
        let (Some(namespace), Some(pod), Some(container)) = (
            nonempty("namespace"),
            nonempty("pod"),
            nonempty("container"),
        ) else {
            continue;
        };
        let value = (s.value.is_finite() && s.value >= 0.0).then_some(s.value);
        let usage = pods
            .entry((namespace.to_string(), pod.to_string()))
            .or_default();
        usage.timestamp_unix_seconds = now_unix_seconds;
        let c = usage.containers.entry(container.to_string()).or_default();
        if s.name == AGENT_CONTAINER_CPU_USAGE_CORES {
            c.cpu_cores = value;
        } else {
            c.memory_working_set_bytes = value;
        }
        used += 1;
    }
    Ok(used)
}

/// `tidal_agent_snapshot_age_seconds` of one agent's body. The agent writes it in the last
/// lines of every response, so this looks only at the end.
pub fn snapshot_age(body: &str) -> Option<f64> {
    let needle = format!("\n{AGENT_SNAPSHOT_AGE_SECONDS} ");
    let at = body.rfind(&needle)? + needle.len();
    let value = body[at..].split(['\n', ' ']).next()?;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// The age of `body`'s data if it is within `max_age_seconds`; otherwise why not.
fn fresh_age(body: &str, max_age_seconds: f64) -> Result<f64, String> {
    judge_age(snapshot_age(body), max_age_seconds)
}

/// `age` if it is known and within `max_age_seconds`; otherwise why not.
fn judge_age(age: Option<f64>, max_age_seconds: f64) -> Result<f64, String> {
    match age {
        None => Err(format!(
            "the scrape has no valid {AGENT_SNAPSHOT_AGE_SECONDS} (an agent older than this \
             scaler?), so its data's age is unknown"
        )),
        Some(age) if age > max_age_seconds => Err(format!(
            "its data is {age:.1}s old (bound {max_age_seconds:.1}s): the agent's sampler is \
             behind or hung; its pods count as missing"
        )),
        Some(age) => Ok(age),
    }
}

/// One agent's usage document ([`tidal_core::usage`]), or why it is not one.
pub fn parse_usage(body: &str) -> Result<UsageDocument, String> {
    serde_json::from_str(body).map_err(|e| format!("usage document ({USAGE_PATH}): {e}"))
}

/// The document's snapshot age, under the rule [`snapshot_age`] applies to `/metrics`.
pub fn usage_age(doc: &UsageDocument) -> Option<f64> {
    doc.age_seconds.filter(|v| v.is_finite() && *v >= 0.0)
}

/// [`ingest`] for a usage document: the same per-container values into `pods`, stamping
/// every pod it touches with `now_unix_seconds`; returns how many values (series) it used.
///
/// The same rules: entries without a namespace, pod or container are skipped; a value that is
/// negative, not finite or `null` leaves that container's value absent (`None`), never 0; a
/// value the document does not have (an absent key) leaves what `pods` holds (another agent's).
/// A later value of a container replaces an earlier one, as in the text (the agent writes each
/// container once, with the last value the text would have).
pub fn ingest_usage(
    doc: UsageDocument,
    now_unix_seconds: f64,
    pods: &mut HashMap<PodKey, PodUsage>,
) -> usize {
    let mut used = 0;
    for (namespace, in_namespace) in doc.namespaces {
        if namespace.is_empty() {
            continue;
        }
        for (pod, containers) in in_namespace {
            if pod.is_empty() {
                continue;
            }
            let has = |(container, values): &(&String, &ContainerValues)| {
                !container.is_empty()
                    && (values.cpu_cores.is_some() || values.working_set_bytes.is_some())
            };
            if !containers.iter().any(|c| has(&c)) {
                continue;
            }
            let usage = pods.entry((namespace.clone(), pod)).or_default();
            usage.timestamp_unix_seconds = now_unix_seconds;
            for (container, values) in containers {
                if !has(&(&container, &values)) {
                    continue;
                }
                let c = usage.containers.entry(container).or_default();
                let valid = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);
                if let Some(cpu) = values.cpu_cores {
                    c.cpu_cores = valid(cpu);
                    used += 1;
                }
                if let Some(ws) = values.working_set_bytes {
                    c.memory_working_set_bytes = valid(ws);
                    used += 1;
                }
            }
        }
    }
    used
}

/// Whether an answer at the usage document's path means "read this agent's `/metrics`
/// instead" (remembered for the agent): a 404 (an agent older than the document), a success
/// that is not JSON (a server that answers every path with its exposition), or a refusal of
/// the path itself by the agent or something in front of it (any other 4xx but 408 and 429,
/// or a 501: a path-filtering auth proxy or gateway that lets only `/metrics` through). A
/// 408, a 429 or a 5xx is the agent's trouble of the moment, and an error like any other.
fn reads_metrics_instead(status: reqwest::StatusCode, json: bool) -> bool {
    use reqwest::StatusCode as S;
    (status.is_success() && !json)
        || status == S::NOT_IMPLEMENTED
        || (status.is_client_error()
            && status != S::REQUEST_TIMEOUT
            && status != S::TOO_MANY_REQUESTS)
}

/// The usage document's URL of the agent whose `/metrics` URL is `metrics`.
fn usage_url(metrics: &str) -> String {
    let base = metrics.strip_suffix("/metrics").unwrap_or(metrics);
    format!("{}{USAGE_PATH}", base.trim_end_matches('/'))
}

/// `base` + `/metrics`, unless `base` already names the path.
fn metrics_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/metrics") {
        base.to_string()
    } else {
        format!("{base}/metrics")
    }
}

/// `http://<ip>:<port>/metrics`, bracketing IPv6 addresses.
fn pod_metrics_url(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("http://[{ip}]:{port}/metrics")
    } else {
        format!("http://{ip}:{port}/metrics")
    }
}

fn discovery_error(namespace: &str, selector: &str, e: &kube::Error) -> SourceError {
    let url = format!("pods in namespace {namespace:?} matching {selector:?}");
    match e {
        kube::Error::Api(status) => SourceError::Http {
            backend: "kube-apiserver",
            url,
            status: status.code,
            detail: status.message.clone(),
        },
        other => SourceError::Unreachable {
            backend: "kube-apiserver",
            url,
            detail: error_chain(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::ContainerUsage;

    const BODY: &str = r#"# HELP tidal_agent_build_info Build information of tidal-agent; always 1.
# TYPE tidal_agent_build_info gauge
tidal_agent_build_info{version="0.1.0"} 1
# HELP tidal_agent_container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.
# TYPE tidal_agent_container_cpu_usage_seconds_total counter
tidal_agent_container_cpu_usage_seconds_total{namespace="shop",pod="web-1",container="app",pod_uid="u1",qos_class="Burstable"} 1234.5
# HELP tidal_agent_container_memory_working_set_bytes Current working set in bytes (usage - inactive_file).
# TYPE tidal_agent_container_memory_working_set_bytes gauge
tidal_agent_container_memory_working_set_bytes{namespace="shop",pod="web-1",container="app",pod_uid="u1",qos_class="Burstable"} 52428800
tidal_agent_container_memory_working_set_bytes{namespace="shop",pod="web-1",container="sidecar",pod_uid="u1",qos_class="Burstable"} 1048576
tidal_agent_container_memory_working_set_bytes{namespace="shop",pod="web-1",container="",pod_uid="u1",qos_class="Burstable"} 60000000
tidal_agent_container_memory_working_set_bytes{namespace="",pod="",container="",pod_uid="00000000-0000-4000-8000-0000000000aa",qos_class="BestEffort"} 4096
tidal_agent_container_memory_working_set_bytes{namespace="",pod="",container="abc123",pod_uid="u9",qos_class="BestEffort"} 4096
tidal_agent_container_memory_working_set_bytes{namespace="shop",pod="web-2",container="app",pod_uid="u2",qos_class="Guaranteed"} 1e8
# HELP tidal_agent_container_cpu_usage_cores CPU usage rate between the last two samples, in cores.
# TYPE tidal_agent_container_cpu_usage_cores gauge
tidal_agent_container_cpu_usage_cores{namespace="shop",pod="web-1",container="app",pod_uid="u1",qos_class="Burstable"} 0.5
tidal_agent_container_cpu_usage_cores{namespace="shop",pod="web-1",container="sidecar",pod_uid="u1",qos_class="Burstable"} 0.25
tidal_agent_container_cpu_usage_cores{namespace="shop",pod="web-1",container="",pod_uid="u1",qos_class="Burstable"} 0.8
tidal_agent_container_cpu_usage_cores{namespace="shop",pod="web-2",container="app",pod_uid="u2",qos_class="Guaranteed"} NaN
tidal_agent_container_cpu_usage_cores{namespace="other",pod="neg",container="app",pod_uid="u3",qos_class="Guaranteed"} -0.1
tidal_agent_container_cpu_usage_cores{namespace="other",pod="inf",container="app",pod_uid="u4",qos_class="Guaranteed"} +Inf
"#;

    fn key(ns: &str, pod: &str) -> PodKey {
        (ns.to_string(), pod.to_string())
    }

    #[test]
    fn ingests_per_container_series() {
        let mut pods = HashMap::new();
        let used = ingest(BODY, 1_700_000_000.5, &mut pods).expect("parses");
        assert_eq!(used, 8);
        assert_eq!(pods.len(), 4, "{pods:?}");
        let web1 = &pods[&key("shop", "web-1")];
        assert_eq!(web1.timestamp_unix_seconds, 1_700_000_000.5);
        assert_eq!(
            web1.containers["app"],
            ContainerUsage {
                cpu_cores: Some(0.5),
                memory_working_set_bytes: Some(52_428_800.0)
            }
        );
        // The pod-level series (container="") is not counted again.
        assert_eq!(web1.containers.len(), 2);
        assert_eq!(web1.value("cpu", None), Some(0.75));
        assert_eq!(web1.value("memory", None), Some(53_477_376.0));
    }

    #[test]
    fn non_finite_or_negative_is_absent_never_zero() {
        let mut pods = HashMap::new();
        ingest(BODY, 1.0, &mut pods).expect("parses");
        let web2 = &pods[&key("shop", "web-2")];
        assert_eq!(web2.containers["app"].cpu_cores, None);
        assert_eq!(web2.containers["app"].memory_working_set_bytes, Some(1e8));
        assert_eq!(web2.value("cpu", None), None);
        assert_eq!(pods[&key("other", "neg")].containers["app"].cpu_cores, None);
        assert_eq!(pods[&key("other", "inf")].containers["app"].cpu_cores, None);
    }

    #[test]
    fn series_without_namespace_pod_or_container_are_skipped() {
        let mut pods = HashMap::new();
        ingest(BODY, 1.0, &mut pods).expect("parses");
        assert!(
            pods.keys()
                .all(|(ns, pod)| !ns.is_empty() && !pod.is_empty())
        );
        let body = "tidal_agent_container_memory_working_set_bytes{pod=\"p\",container=\"c\"} 1\n";
        let mut pods = HashMap::new();
        assert_eq!(ingest(body, 1.0, &mut pods), Ok(0));
        assert!(pods.is_empty());
    }

    #[test]
    fn cpu_missing_until_the_agent_has_two_samples() {
        let body = "tidal_agent_container_memory_working_set_bytes{namespace=\"a\",pod=\"p\",container=\"c\"} 10\n";
        let mut pods = HashMap::new();
        ingest(body, 1.0, &mut pods).expect("parses");
        let p = &pods[&key("a", "p")];
        assert_eq!(p.value("cpu", None), None);
        assert_eq!(p.value("memory", Some("c")), Some(10.0));
    }

    /// An agent run with `--compatible-metric-names` writes cAdvisor's name for the working
    /// set: read the same; any other `container_*` series (a cAdvisor page) is not usage.
    #[test]
    fn a_compatible_agent_s_working_set_is_read_too() {
        let body = "container_memory_working_set_bytes{namespace=\"a\",pod=\"p\",container=\"c\"} 10\n\
                    container_memory_usage_bytes{namespace=\"a\",pod=\"p\",container=\"c\"} 99\n";
        let mut pods = HashMap::new();
        assert_eq!(ingest(body, 1.0, &mut pods), Ok(1));
        assert_eq!(pods[&key("a", "p")].value("memory", Some("c")), Some(10.0));
    }

    #[test]
    fn malformed_body_changes_nothing_and_names_the_line() {
        let mut pods = HashMap::new();
        ingest(BODY, 1.0, &mut pods).expect("parses");
        let before = pods.clone();
        let bad = format!(
            "{BODY}tidal_agent_container_cpu_usage_cores{{namespace=\"x\",pod=\"y\",container=\"z\"}} abc\n"
        );
        let e = ingest(&bad, 2.0, &mut pods).expect_err("garbage value");
        assert_eq!(e.line, BODY.lines().count() + 1);
        assert!(e.to_string().contains("\"abc\""), "{e}");
        assert_eq!(pods, before);
    }

    #[test]
    fn two_agents_merge_and_openmetrics_is_read() {
        let mut pods = HashMap::new();
        ingest(BODY, 1.0, &mut pods).expect("parses");
        let om = "# TYPE tidal_agent_container_cpu_usage_cores gauge\n# UNIT tidal_agent_container_cpu_usage_cores cores\ntidal_agent_container_cpu_usage_cores{namespace=\"b\",pod=\"q\",container=\"c\"} 2.0\n# EOF\n";
        ingest(om, 2.0, &mut pods).expect("parses");
        assert_eq!(pods[&key("b", "q")].value("cpu", None), Some(2.0));
        assert_eq!(pods[&key("b", "q")].timestamp_unix_seconds, 2.0);
        assert_eq!(pods[&key("shop", "web-1")].timestamp_unix_seconds, 1.0);
    }

    #[test]
    fn urls() {
        assert_eq!(
            metrics_url("http://127.0.0.1:9464"),
            "http://127.0.0.1:9464/metrics"
        );
        assert_eq!(metrics_url("http://h:1/"), "http://h:1/metrics");
        assert_eq!(metrics_url("http://h:1/metrics"), "http://h:1/metrics");
        assert_eq!(
            pod_metrics_url("10.0.0.7", 9464),
            "http://10.0.0.7:9464/metrics"
        );
        assert_eq!(
            pod_metrics_url("fd00::7", 9464),
            "http://[fd00::7]:9464/metrics"
        );
    }

    #[test]
    fn the_snapshot_age_is_read_from_the_tail_and_bounds_freshness() {
        let om = format!(
            "{BODY}# HELP {AGENT_SNAPSHOT_AGE_SECONDS} x\n# TYPE {AGENT_SNAPSHOT_AGE_SECONDS} gauge\n{AGENT_SNAPSHOT_AGE_SECONDS} 0.25\n# EOF\n"
        );
        assert_eq!(snapshot_age(&om), Some(0.25));
        let text = format!("{BODY}{AGENT_SNAPSHOT_AGE_SECONDS} 7.5\n");
        assert_eq!(snapshot_age(&text), Some(7.5));
        assert_eq!(fresh_age(&om, 3.0), Ok(0.25));
        let old = fresh_age(&text, 3.0).expect_err("7.5 s > 3 s");
        assert!(old.contains("7.5s old (bound 3.0s)"), "{old}");
        for bad in ["", "NaN", "-1", "+Inf", "x"] {
            let body = format!("{BODY}{AGENT_SNAPSHOT_AGE_SECONDS} {bad}\n");
            assert_eq!(snapshot_age(&body), None, "{bad:?}");
            assert!(fresh_age(&body, 3.0).is_err(), "{bad:?}");
        }
        // Only a whole metric name counts (not a longer one that starts with it).
        let other = format!("{BODY}{AGENT_SNAPSHOT_AGE_SECONDS}_max 1\n");
        assert_eq!(snapshot_age(&other), None);
        assert!(
            fresh_age(BODY, 3.0)
                .expect_err("no age")
                .contains("unknown")
        );
    }

    /// One tidal-agent scrape served from a local socket: `body`, once per connection.
    async fn serve_once(body: String) -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn samples_are_stamped_with_the_agents_age_and_stale_agents_are_left_out() {
        let (fresh_url, fresh) =
            serve_once(format!("{BODY}{AGENT_SNAPSHOT_AGE_SECONDS} 0.5\n")).await;
        let src = AgentSource::new(Discovery::Static(vec![fresh_url]), Duration::from_secs(2))
            .expect("client");
        let got = src.scrape(100.0).await;
        assert_eq!((got.agents, got.agents_ok), (1, 1), "{:?}", got.errors);
        assert!(!got.pods.is_empty());
        for u in got.pods.values() {
            assert_eq!(
                u.timestamp_unix_seconds, 99.5,
                "scrape time minus the agent's age"
            );
        }
        fresh.abort();

        // The same data 10 s old: an error naming the agent, and none of its pods.
        let (old_url, old) = serve_once(format!("{BODY}{AGENT_SNAPSHOT_AGE_SECONDS} 10\n")).await;
        let src = AgentSource::new(
            Discovery::Static(vec![old_url.clone()]),
            Duration::from_secs(2),
        )
        .expect("client")
        .with_max_age(Duration::from_secs(3));
        let got = src.scrape(100.0).await;
        assert_eq!((got.agents, got.agents_ok), (1, 0));
        assert!(got.pods.is_empty(), "{:?}", got.pods);
        match &got.errors[..] {
            [e @ SourceError::Stale { url, .. }] => {
                assert_eq!(url, &format!("{old_url}metrics"));
                assert!(e.to_string().contains("10.0s old (bound 3.0s)"), "{e}");
                assert_eq!(e.label(), "stale");
            }
            other => panic!("{other:?}"),
        }
        old.abort();
    }

    #[tokio::test]
    async fn scrape_can_run_in_a_spawned_task() {
        // Compiles only if the future is `Send` for any lifetime (what tokio::spawn needs).
        let src = AgentSource::new(Discovery::Static(Vec::new()), Duration::from_secs(1))
            .expect("client");
        let got = tokio::spawn(async move { src.scrape(1.0).await })
            .await
            .expect("task");
        assert_eq!((got.agents, got.agents_ok, got.errors.len()), (0, 0, 0));
    }

    #[tokio::test]
    async fn a_hung_agent_times_out_as_unreachable() {
        // Accepts connections (the kernel's backlog) but never answers.
        let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = hung.local_addr().expect("addr").port();
        let src = AgentSource::new(
            Discovery::Static(vec![format!("http://127.0.0.1:{port}/")]),
            Duration::from_millis(300),
        )
        .expect("client");
        let started = std::time::Instant::now();
        let got = src.scrape(1.0).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        match &got.errors[..] {
            [e @ SourceError::Unreachable { url, detail, .. }] => {
                assert_eq!(url, &format!("http://127.0.0.1:{port}/metrics"));
                assert!(detail.contains("timed out"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        drop(hung);
    }

    #[tokio::test]
    async fn an_unreachable_agent_is_one_error_naming_its_url() {
        // A port nothing listens on: bind, note the port, release.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let src = AgentSource::new(
            Discovery::Static(vec![base.clone()]),
            Duration::from_secs(2),
        )
        .expect("client");
        let got = src.scrape(5.0).await;
        assert_eq!((got.agents, got.agents_ok), (1, 0));
        assert!(got.pods.is_empty());
        match &got.errors[..] {
            [e @ SourceError::Unreachable { backend, url, .. }] => {
                eprintln!("{e}");
                assert_eq!(*backend, "tidal-agent");
                assert_eq!(url, &format!("{base}/metrics"));
            }
            other => panic!("{other:?}"),
        }
    }

    /// The scrape body is read under `--agent-max-body-bytes`: a body of exactly the cap is
    /// used; one byte more is `TooLarge` naming the agent's URL and the cap, and none of its
    /// pods are used.
    #[tokio::test]
    async fn a_scrape_over_the_body_cap_is_too_large_and_unused() {
        use crate::sources::body::tests::{Framing, serve_body};
        let body = format!("{BODY}{AGENT_SNAPSHOT_AGE_SECONDS} 0.5\n").into_bytes();
        let (url, _, task) =
            serve_body(body.clone(), body.len(), Framing::Close, Duration::ZERO).await;
        let at_cap = AgentSource::new(Discovery::Static(vec![url.clone()]), Duration::from_secs(2))
            .expect("client")
            .with_max_body_bytes(body.len());
        let got = at_cap.scrape(100.0).await;
        assert_eq!((got.agents, got.agents_ok), (1, 1), "{:?}", got.errors);
        assert!(!got.pods.is_empty());
        let over = at_cap.with_max_body_bytes(body.len() - 1);
        let got = over.scrape(100.0).await;
        assert_eq!((got.agents, got.agents_ok), (1, 0));
        assert!(got.pods.is_empty(), "{:?}", got.pods);
        match &got.errors[..] {
            [e @ SourceError::TooLarge { url: u, cap, .. }] => {
                assert_eq!(u, &format!("{url}/metrics"));
                assert_eq!(*cap, body.len() - 1);
                assert!(e.to_string().contains("--agent-max-body-bytes"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        task.abort();
    }

    /// One agent snapshot with every case the reader distinguishes: a container without a CPU
    /// rate yet, pod-level and unmatched cgroups (empty labels), a negative value, the same
    /// container twice (a pod recreated under its name while the old cgroup lingers), and the
    /// working set under its `--compatible-metric-names` name.
    fn agent_snapshot(compatible: bool) -> tidal_agent::snapshot::Snapshot {
        use tidal_core::schema::{AGENT_CONTAINER_CPU_REQUEST_CORES, CONTAINER_MEMORY_RSS};
        let labels = |ns: &str, pod: &str, c: &str, uid: &str| {
            vec![
                ("namespace", ns.to_string()),
                ("pod", pod.to_string()),
                ("container", c.to_string()),
                ("pod_uid", uid.to_string()),
                ("qos_class", "Burstable".to_string()),
            ]
        };
        let ws = if compatible {
            compatible_name(CONTAINER_MEMORY_WORKING_SET_BYTES)
        } else {
            CONTAINER_MEMORY_WORKING_SET_BYTES
        };
        let mut b = tidal_agent::buffer::Buffer::new(Instant::now());
        for (ns, pod, c, uid, cpu, mem) in [
            (
                "shop",
                "web-1",
                "app",
                "u1",
                Some(0.123_456_789_012_345_68),
                52_428_800.0,
            ),
            ("shop", "web-1", "sidecar", "u1", Some(1e-9), 1_048_576.0),
            ("shop", "web-1", "", "u1", Some(0.8), 60_000_000.0),
            ("shop", "web-2", "app", "u2", None, 1e8),
            ("shop", "web-3", "app", "u3", Some(-0.1), 3.0),
            ("shop", "db-0", "db", "old", Some(2.5), 7e9),
            ("shop", "db-0", "db", "new", Some(0.25), 6e9),
            ("", "", "", "u9", Some(1.0), 4096.0),
            ("", "", "abc", "u8", Some(1.0), 4096.0),
            ("other", "x\"y", "c\\d", "u7", Some(3.0), 1.5e-3),
        ] {
            if let Some(cpu) = cpu {
                b.gauge(
                    AGENT_CONTAINER_CPU_USAGE_CORES,
                    "Rate.",
                    labels(ns, pod, c, uid),
                    cpu,
                );
            }
            b.gauge(ws, "WS.", labels(ns, pod, c, uid), mem);
            b.gauge(CONTAINER_MEMORY_RSS, "RSS.", labels(ns, pod, c, uid), 1.0);
            b.gauge(
                AGENT_CONTAINER_CPU_REQUEST_CORES,
                "Req.",
                labels(ns, pod, c, uid),
                1.0,
            );
        }
        tidal_agent::snapshot::Snapshot {
            families: b.into_parts().0,
        }
    }

    /// The agent's `/metrics` body (either format) and usage document of one snapshot, as its
    /// server writes them.
    fn both_bodies(snap: tidal_agent::snapshot::Snapshot, openmetrics: bool) -> (String, String) {
        let shared = tidal_agent::snapshot::Shared::default();
        shared.store_at(snap, Instant::now() - Duration::from_millis(250));
        let metrics = [shared.body(openmetrics), shared.tail(openmetrics)].concat();
        let usage = [
            shared.usage_head(),
            shared.usage_body(),
            tidal_core::usage::USAGE_TAIL.as_bytes().to_vec().into(),
        ]
        .concat();
        (
            String::from_utf8(metrics).expect("utf8"),
            String::from_utf8(usage).expect("utf8"),
        )
    }

    /// What another agent reported before: values the next body may or may not replace.
    fn earlier() -> HashMap<PodKey, PodUsage> {
        let mut pods = HashMap::new();
        ingest(
            "tidal_agent_container_cpu_usage_cores{namespace=\"shop\",pod=\"web-2\",container=\"app\"} 9\n\
             tidal_agent_container_cpu_usage_cores{namespace=\"shop\",pod=\"gone\",container=\"app\"} 9\n",
            1.0,
            &mut pods,
        )
        .expect("parses");
        pods
    }

    #[test]
    fn the_usage_document_reads_exactly_as_the_metrics_text_of_the_same_snapshot() {
        for compatible in [false, true] {
            for openmetrics in [false, true] {
                let (metrics, usage) = both_bodies(agent_snapshot(compatible), openmetrics);
                assert!(usage.len() * 4 < metrics.len(), "{usage}");
                let mut from_text = earlier();
                let age = fresh_age(&metrics, 3.0).expect("fresh");
                ingest(&metrics, 100.0 - age, &mut from_text).expect("parses");
                let mut from_doc = earlier();
                let doc = parse_usage(&usage).expect("parses");
                let doc_age = judge_age(usage_age(&doc), 3.0).expect("fresh");
                // The same snapshot's age, read a moment apart.
                assert!((0.25..0.25 + 1.0).contains(&doc_age), "{doc_age}");
                assert!((doc_age - age).abs() < 1.0, "{doc_age} vs {age}");
                ingest_usage(doc, 100.0 - age, &mut from_doc);
                assert_eq!(from_doc, from_text, "compatible {compatible}, {usage}");
                // The cases themselves.
                let c = |pod: &str, c: &str| from_doc[&key("shop", pod)].containers[c];
                assert_eq!(c("web-1", "app").cpu_cores, Some(0.123_456_789_012_345_68));
                assert_eq!(c("web-1", "sidecar").cpu_cores, Some(1e-9));
                assert_eq!(from_doc[&key("shop", "web-1")].containers.len(), 2);
                assert_eq!(c("web-2", "app").cpu_cores, Some(9.0), "kept: no rate yet");
                assert_eq!(c("web-3", "app").cpu_cores, None, "negative");
                assert_eq!(c("db-0", "db").cpu_cores, Some(0.25), "the later series");
                assert_eq!(from_doc[&key("shop", "gone")].timestamp_unix_seconds, 1.0);
                assert_eq!(
                    from_doc[&key("other", "x\"y")].containers["c\\d"].memory_working_set_bytes,
                    Some(1.5e-3)
                );
                assert_eq!(from_doc.len(), 6);
            }
        }
    }

    #[test]
    fn a_usage_document_without_a_valid_age_is_stale_and_a_broken_one_malformed() {
        for bad in [
            "{\"ns\":{}}",
            "{\"a\":null,\"ns\":{}}",
            "{\"a\":-1,\"ns\":{}}",
        ] {
            let doc = parse_usage(bad).expect("parses");
            let e = judge_age(usage_age(&doc), 3.0).expect_err("no age");
            assert!(e.contains("unknown"), "{e}");
        }
        let doc = parse_usage("{\"a\":7.5,\"ns\":{}}").expect("parses");
        let e = judge_age(usage_age(&doc), 3.0).expect_err("old");
        assert!(e.contains("7.5s old (bound 3.0s)"), "{e}");
        for bad in [
            "",
            "{",
            "{\"a\":1,\"ns\":{\"x\":[]}}",
            "{\"a\":1,\"ns\":{\"x\":{\"p\":{\"c\":{\"c\":\"1,5\"}}}}}",
        ] {
            let e = parse_usage(bad).expect_err(bad);
            assert!(e.starts_with("usage document (/v1/usage): "), "{e}");
        }
        // Empty names and entries without values touch nothing.
        let doc = parse_usage(
            "{\"a\":0,\"ns\":{\"\":{\"p\":{\"c\":{\"c\":1}}},\"n\":{\"\":{\"c\":{\"c\":1}},\"p\":{\"\":{\"c\":1},\"c\":{}}}}}",
        )
        .expect("parses");
        let mut pods = HashMap::new();
        assert_eq!(ingest_usage(doc, 1.0, &mut pods), 0);
        assert!(pods.is_empty(), "{pods:?}");
    }

    #[test]
    fn which_answers_at_the_usage_path_read_metrics_instead() {
        use reqwest::StatusCode as S;
        // (status, JSON content type, read /metrics instead)
        let table = [
            (S::OK, true, false),
            (S::OK, false, true),
            (S::NOT_FOUND, false, true),
            (S::UNAUTHORIZED, false, true),
            (S::FORBIDDEN, false, true),
            (S::METHOD_NOT_ALLOWED, false, true),
            (S::BAD_REQUEST, false, true),
            (S::NOT_IMPLEMENTED, false, true),
            (S::REQUEST_TIMEOUT, false, false),
            (S::TOO_MANY_REQUESTS, false, false),
            (S::INTERNAL_SERVER_ERROR, false, false),
            (S::SERVICE_UNAVAILABLE, false, false),
            (S::BAD_GATEWAY, false, false),
        ];
        for (status, json, want) in table {
            assert_eq!(
                reads_metrics_instead(status, json),
                want,
                "{status} json={json}"
            );
        }
    }

    #[test]
    fn usage_urls() {
        assert_eq!(
            usage_url("http://10.0.0.7:9464/metrics"),
            "http://10.0.0.7:9464/v1/usage"
        );
        assert_eq!(
            usage_url("http://[fd00::7]:9464/metrics"),
            "http://[fd00::7]:9464/v1/usage"
        );
        assert_eq!(
            usage_url("https://p/agents/n1/metrics"),
            "https://p/agents/n1/v1/usage"
        );
    }

    /// A server answering `GET <path>` from `routes` (404 otherwise), counting the requests
    /// per path.
    async fn serve_routes(
        routes: Vec<(&'static str, &'static str, String)>,
    ) -> (
        String,
        Arc<Mutex<HashMap<String, usize>>>,
        tokio::task::JoinHandle<()>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counted = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut req = vec![0u8; 8192];
                let n = s.read(&mut req).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&req[..n]).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                *counted
                    .lock()
                    .expect("lock")
                    .entry(path.clone())
                    .or_default() += 1;
                let (status, ctype, body) = routes.iter().find(|(p, _, _)| *p == path).map_or(
                    ("404 Not Found", "text/plain", "not found\n".to_string()),
                    |(_, c, b)| ("200 OK", *c, b.clone()),
                );
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        (url, hits, task)
    }

    #[tokio::test]
    async fn an_agent_serving_the_usage_document_is_read_from_it_and_stamped_alike() {
        let (metrics, usage) = both_bodies(agent_snapshot(false), false);
        let (url, hits, task) = serve_routes(vec![
            ("/metrics", "text/plain; version=0.0.4", metrics.clone()),
            ("/v1/usage", "application/json", usage.clone()),
        ])
        .await;
        let src = AgentSource::new(Discovery::Static(vec![url.clone()]), Duration::from_secs(2))
            .expect("client");
        let got = src.scrape(100.0).await;
        assert_eq!((got.agents, got.agents_ok), (1, 1), "{:?}", got.errors);
        assert_eq!(hits.lock().expect("lock").get("/metrics"), None);
        let mut want = HashMap::new();
        let age = usage_age(&parse_usage(&usage).expect("parses")).expect("age");
        ingest(&metrics, 100.0 - age, &mut want).expect("parses");
        assert_eq!(got.pods, want);
        task.abort();

        // The same document 10 s old: stale; not JSON where JSON was promised: malformed.
        // Either names the agent as before, and none of its pods are used.
        let old = usage.replacen("{\"a\":", "{\"a\":10,\"x\":", 1);
        for (doc, label, says) in [
            (old, "stale", "10.0s old (bound 3.0s)"),
            ("{\"a\":0,".to_string(), "malformed", "usage document"),
        ] {
            let (url, _, task) = serve_routes(vec![("/v1/usage", "application/json", doc)]).await;
            let src =
                AgentSource::new(Discovery::Static(vec![url.clone()]), Duration::from_secs(2))
                    .expect("client");
            let got = src.scrape(100.0).await;
            assert!(got.pods.is_empty());
            match &got.errors[..] {
                [
                    e @ (SourceError::Stale { url: u, .. } | SourceError::Malformed { url: u, .. }),
                ] => {
                    assert_eq!(u, &format!("{url}/metrics"));
                    assert_eq!(e.label(), label);
                    assert!(e.to_string().contains(says), "{e}");
                }
                other => panic!("{other:?}"),
            }
            task.abort();
        }
    }

    /// An agent older than this scaler answers 404 at `/v1/usage`: it is read from its
    /// `/metrics` in the same round, and is not asked for the document again.
    #[tokio::test]
    async fn an_older_agent_s_404_falls_back_to_metrics_and_is_remembered() {
        let (metrics, _) = both_bodies(agent_snapshot(false), true);
        let (url, hits, task) = serve_routes(vec![(
            "/metrics",
            "application/openmetrics-text; version=1.0.0",
            metrics.clone(),
        )])
        .await;
        let src = AgentSource::new(Discovery::Static(vec![url.clone()]), Duration::from_secs(2))
            .expect("client");
        let mut want = HashMap::new();
        let age = snapshot_age(&metrics).expect("age");
        ingest(&metrics, 100.0 - age, &mut want).expect("parses");
        for round in 1..=3 {
            let got = src.scrape(100.0).await;
            assert_eq!((got.agents, got.agents_ok), (1, 1), "{:?}", got.errors);
            assert_eq!(got.pods, want);
            let hits = hits.lock().expect("lock").clone();
            assert_eq!(hits.get("/v1/usage"), Some(&1), "round {round}: {hits:?}");
            assert_eq!(hits.get("/metrics"), Some(&round), "{hits:?}");
        }
        // Remembered per agent: a clone shares it, another agent does not.
        assert!(src.clone().is_legacy(&format!("{url}/metrics")));
        assert!(!src.is_legacy("http://127.0.0.1:1/metrics"));
        // An agent no longer found is forgotten.
        src.forget_legacy_except(&[]);
        assert!(!src.is_legacy(&format!("{url}/metrics")));
        task.abort();
    }

    /// The real agent server, scraped by this source: the document path, and the same pods
    /// as its `/metrics` of the same snapshot.
    #[tokio::test]
    async fn the_real_agent_server_is_read_through_its_usage_document() {
        let shared = tidal_agent::snapshot::Shared::default();
        shared.store(agent_snapshot(false));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(tidal_agent::server::serve(
            listener,
            shared.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        let src = AgentSource::new(Discovery::Static(vec![url.clone()]), Duration::from_secs(2))
            .expect("client");
        let got = src.scrape(100.0).await;
        assert_eq!((got.agents, got.agents_ok), (1, 1), "{:?}", got.errors);
        assert!(!src.is_legacy(&format!("{url}/metrics")));
        let metrics =
            String::from_utf8([shared.body(false), shared.tail(false)].concat()).expect("utf8");
        let mut want = HashMap::new();
        ingest(&metrics, 0.0, &mut want).expect("parses");
        assert_eq!(got.pods.len(), want.len());
        for (k, u) in &got.pods {
            assert_eq!(u.containers, want[k].containers, "{k:?}");
            assert!((99.0..=100.0).contains(&u.timestamp_unix_seconds), "{u:?}");
        }
        let _ = stop.send(());
        let _ = server.await;
    }
}

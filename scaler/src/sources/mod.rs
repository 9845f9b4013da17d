//! Sources: where the controller's numbers come from. Each source turns one kind of backend
//! into timestamped values the controller hands to the engine as
//! [`Observation`](crate::engine::Observation)s.
//!
//! - [`exposition`]: a parser for the Prometheus text exposition the agents serve.
//! - [`agents`]: the fast path: scrape every `tidal-agent` directly, per-pod CPU and memory.
//! - [`prometheus`]: the Prometheus HTTP API, one instant query per distinct PromQL per cycle.
//! - [`kafka`]: consumer-group lag straight from the brokers (tidal-core's client).
//! - [`body`]: response bodies read under a size cap.
//! - [`http`]: the HTTP client with Tidal's TLS, and the Prometheus credentials.
//!
//! Rules every source follows (`docs/design.md`, "Core seams"): a value carries the time it
//! was measured; a missing, stale or non-finite value is an error or absent, never a zero.

pub mod agents;
pub mod body;
pub mod exposition;
pub mod http;
pub mod kafka;
pub mod prometheus;

use std::collections::BTreeMap;

/// `(namespace, pod)`.
pub type PodKey = (String, String);

/// One container's usage as an agent reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ContainerUsage {
    /// CPU in cores (a rate the agent computed between its samples).
    pub cpu_cores: Option<f64>,
    /// Memory working set in bytes (usage − inactive_file, as the kubelet computes it).
    pub memory_working_set_bytes: Option<f64>,
}

/// A pod's usage: per container, and when it was scraped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodUsage {
    /// By container name.
    pub containers: BTreeMap<String, ContainerUsage>,
    /// When the agent was scraped (Unix seconds).
    pub timestamp_unix_seconds: f64,
}

impl PodUsage {
    /// The pod's total for `resource` (`cpu` or `memory`), summed over containers, or for one
    /// container. `None` when any counted container lacks the value: a partial sum would read
    /// low and could cause a scale-down.
    pub fn value(&self, resource: &str, container: Option<&str>) -> Option<f64> {
        let pick = |c: &ContainerUsage| match resource {
            "cpu" => c.cpu_cores,
            "memory" => c.memory_working_set_bytes,
            _ => None,
        };
        match container {
            Some(name) => self.containers.get(name).and_then(pick),
            None => {
                if self.containers.is_empty() {
                    return None;
                }
                self.containers.values().map(pick).sum()
            }
        }
    }
}

/// Why a source could not give a value. Each variant has a fixed label for
/// `tidal_scaler_errors_total{reason}`; the message names the backend and what failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The backend did not answer (connection refused, DNS, timeout).
    #[error("{backend} {url}: unreachable: {detail}")]
    Unreachable {
        backend: &'static str,
        url: String,
        detail: String,
    },
    /// The backend answered with an HTTP error.
    #[error("{backend} {url}: HTTP {status}: {detail}")]
    Http {
        backend: &'static str,
        url: String,
        status: u16,
        detail: String,
    },
    /// The answer could not be parsed.
    #[error("{backend} {url}: malformed response: {detail}")]
    Malformed {
        backend: &'static str,
        url: String,
        detail: String,
    },
    /// The answer's body was larger than the cap; none of it was used.
    #[error("{backend} {url}: the response body is larger than the cap of {cap} bytes ({flag})")]
    TooLarge {
        backend: &'static str,
        url: String,
        cap: usize,
        flag: &'static str,
    },
    /// The query ran but returned nothing usable (no series, or only NaN/Inf/stale values).
    #[error("{backend}: query {query:?} returned no usable value: {detail}")]
    NoData {
        backend: &'static str,
        query: String,
        detail: String,
    },
    /// A Kafka round failed or left the group's lag unknown.
    #[error("kafka cluster {cluster:?}, group {group:?}: {detail}")]
    Kafka {
        cluster: String,
        group: String,
        detail: String,
    },
    /// The source answered with data too old to act on (or without saying how old it is).
    #[error("{backend} {url}: stale: {detail}")]
    Stale {
        backend: &'static str,
        url: String,
        detail: String,
    },
    /// A `kafkaLag.cluster` that is not a `--kafka-cluster` name, while raw addresses are not
    /// allowed. Nothing was contacted. The observation names the policy field
    /// (`spec.metrics[i].kafkaLag.cluster`).
    #[error(
        "{cluster:?} is not a Kafka cluster this scaler is configured with ({}); raw host:port \
         addresses are refused unless the scaler runs with --kafka-allow-raw-addresses",
        configured_names(.configured)
    )]
    KafkaClusterNotConfigured {
        cluster: String,
        configured: Vec<String>,
    },
    /// The source is not configured (for example no Prometheus URL was given).
    #[error("{0}")]
    NotConfigured(String),
}

fn configured_names(names: &[String]) -> String {
    if names.is_empty() {
        "no --kafka-cluster is set".into()
    } else {
        format!("--kafka-cluster names: {}", names.join(", "))
    }
}

impl SourceError {
    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Http { .. } => "http_error",
            Self::Malformed { .. } => "malformed",
            Self::TooLarge { .. } => "too_large",
            Self::NoData { .. } => "no_data",
            Self::Kafka { .. } => "kafka",
            Self::Stale { .. } => "stale",
            Self::NotConfigured(_) | Self::KafkaClusterNotConfigured { .. } => "not_configured",
        }
    }
}

/// An error and its sources, `: `-separated (reqwest's own message is only "error sending
/// request"; the cause is in the chain).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        source = s.source();
    }
    out
}

/// The first 200 characters of a response body, for an error message.
pub(crate) fn snippet(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(cpu: &[(&str, Option<f64>)]) -> PodUsage {
        PodUsage {
            containers: cpu
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        ContainerUsage {
                            cpu_cores: *v,
                            memory_working_set_bytes: Some(1.0),
                        },
                    )
                })
                .collect(),
            timestamp_unix_seconds: 0.0,
        }
    }

    #[test]
    fn pod_value_sums_containers_and_refuses_partial_sums() {
        let u = usage(&[("a", Some(0.25)), ("b", Some(0.5))]);
        assert_eq!(u.value("cpu", None), Some(0.75));
        assert_eq!(u.value("cpu", Some("b")), Some(0.5));
        assert_eq!(u.value("memory", None), Some(2.0));
        assert_eq!(u.value("cpu", Some("c")), None);
        assert_eq!(u.value("gpu", None), None);
        let partial = usage(&[("a", Some(0.25)), ("b", None)]);
        assert_eq!(partial.value("cpu", None), None, "a partial sum reads low");
        assert_eq!(PodUsage::default().value("cpu", None), None);
    }
}

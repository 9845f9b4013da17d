//! The scaler's self-metrics (names from `tidal_core::schema`), in the HPA and KEDA spirit:
//! desired and current replicas, each metric's value and target, decision and actuation
//! latency, errors by fixed reason, and whether this replica leads.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tidal_core::schema;

/// `{namespace, policy}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub namespace: String,
    pub policy: String,
}

/// `{namespace, policy, metric}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabels {
    pub namespace: String,
    pub policy: String,
    pub metric: String,
}

/// `{namespace, policy, direction}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScaleLabels {
    pub namespace: String,
    pub policy: String,
    pub direction: &'static str,
}

/// `{namespace, policy, condition}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub namespace: String,
    pub policy: String,
    pub condition: &'static str,
}

/// `{reason}`: a fixed label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// `{verb}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: &'static str,
}

/// `{state}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every scaler series; cheap to clone (the families are shared).
#[derive(Clone)]
pub struct Metrics {
    pub desired_replicas: Family<PolicyLabels, Gauge>,
    pub current_replicas: Family<PolicyLabels, Gauge>,
    pub metric_value: Family<MetricLabels, FloatGauge>,
    pub metric_target: Family<MetricLabels, FloatGauge>,
    pub decision_duration: Histogram,
    pub actuation_duration: Histogram,
    pub cycle_duration: Histogram,
    pub errors: Family<ReasonLabels, Counter>,
    pub scale_events: Family<ScaleLabels, Counter>,
    pub api_requests: Family<VerbLabels, Counter>,
    pub leader: Gauge,
    pub policies: Family<StateLabels, Gauge>,
    pub conditions: Family<ConditionLabels, Gauge>,
    pub status_queue: Gauge,
    registry: Arc<Registry>,
}

impl Metrics {
    /// All families, registered.
    pub fn new() -> Self {
        let mut reg = Registry::default();
        let info = Family::<Vec<(String, String)>, Gauge>::default();
        info.get_or_create(&vec![(
            "version".to_string(),
            tidal_core::build::VERSION.to_string(),
        )])
        .set(1);
        reg.register(
            schema::SCALER_BUILD_INFO,
            "Build information of tidal-scaler; always 1",
            info,
        );
        let m = Self {
            desired_replicas: Family::default(),
            current_replicas: Family::default(),
            metric_value: Family::default(),
            metric_target: Family::default(),
            // 10 µs .. ~5 s
            decision_duration: Histogram::new(exponential_buckets(1e-5, 3.0, 12)),
            // 1 ms .. ~20 s
            actuation_duration: Histogram::new(exponential_buckets(1e-3, 2.5, 12)),
            cycle_duration: Histogram::new(exponential_buckets(1e-3, 2.5, 12)),
            errors: Family::default(),
            scale_events: Family::default(),
            api_requests: Family::default(),
            leader: Gauge::default(),
            policies: Family::default(),
            conditions: Family::default(),
            status_queue: Gauge::default(),
            registry: Arc::new(Registry::default()),
        };
        let strip = |name: &'static str| name.strip_suffix("_total").unwrap_or(name);
        reg.register(
            schema::SCALER_DESIRED_REPLICAS,
            "Replica count the last decision asked for",
            m.desired_replicas.clone(),
        );
        reg.register(
            schema::SCALER_CURRENT_REPLICAS,
            "The target's spec.replicas when last read",
            m.current_replicas.clone(),
        );
        reg.register(
            schema::SCALER_METRIC_VALUE,
            "Current value of a policy metric (utilization as a ratio of the request)",
            m.metric_value.clone(),
        );
        reg.register(
            schema::SCALER_METRIC_TARGET,
            "Target of a policy metric, same units as the value",
            m.metric_target.clone(),
        );
        reg.register(
            schema::SCALER_DECISION_DURATION,
            "Engine time of one decision",
            m.decision_duration.clone(),
        );
        reg.register(
            schema::SCALER_ACTUATION_DURATION,
            "Time of one scale write, retries included",
            m.actuation_duration.clone(),
        );
        reg.register(
            schema::SCALER_CYCLE_DURATION,
            "One controller cycle over every due policy",
            m.cycle_duration.clone(),
        );
        reg.register(
            strip(schema::SCALER_ERRORS_TOTAL),
            "Errors by fixed reason",
            m.errors.clone(),
        );
        reg.register(
            strip(schema::SCALER_SCALE_EVENTS_TOTAL),
            "Replica changes applied, by direction",
            m.scale_events.clone(),
        );
        reg.register(
            strip(schema::SCALER_API_REQUESTS_TOTAL),
            "Requests sent to the API server (watches excluded)",
            m.api_requests.clone(),
        );
        reg.register(
            schema::SCALER_LEADER,
            "1 while this replica holds the Lease and may write",
            m.leader.clone(),
        );
        reg.register(
            schema::SCALER_POLICIES,
            "ScalingPolicies known, by state",
            m.policies.clone(),
        );
        reg.register(
            schema::SCALER_CONDITION,
            "1 while the policy's status condition is True, else 0",
            m.conditions.clone(),
        );
        reg.register(
            schema::SCALER_STATUS_QUEUE,
            "ScalingPolicy statuses waiting to be written",
            m.status_queue.clone(),
        );
        Self {
            registry: Arc::new(reg),
            ..m
        }
    }

    /// The registry to encode on `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Count one error with a fixed reason.
    pub fn error(&self, reason: &'static str) {
        self.errors.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Count one API request.
    pub fn request(&self, verb: &'static str) {
        self.api_requests.get_or_create(&VerbLabels { verb }).inc();
    }

    /// Drop every per-policy series of a deleted policy.
    pub fn forget_policy(&self, namespace: &str, policy: &str, metrics: &[String]) {
        let p = PolicyLabels {
            namespace: namespace.to_string(),
            policy: policy.to_string(),
        };
        self.desired_replicas.remove(&p);
        self.current_replicas.remove(&p);
        for metric in metrics {
            let l = MetricLabels {
                namespace: namespace.to_string(),
                policy: policy.to_string(),
                metric: metric.clone(),
            };
            self.metric_value.remove(&l);
            self.metric_target.remove(&l);
        }
        for condition in crate::api::ConditionType::ALL {
            self.conditions.remove(&ConditionLabels {
                namespace: namespace.to_string(),
                policy: policy.to_string(),
                condition: condition.as_str(),
            });
        }
        for direction in ["up", "down"] {
            self.scale_events.remove(&ScaleLabels {
                namespace: namespace.to_string(),
                policy: policy.to_string(),
                direction,
            });
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_named_from_the_schema_and_encodes() {
        let m = Metrics::new();
        m.error("unreachable");
        m.request("patch");
        m.leader.set(1);
        m.desired_replicas
            .get_or_create(&PolicyLabels {
                namespace: "ns".into(),
                policy: "p".into(),
            })
            .set(3);
        m.decision_duration.observe(1e-4);
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, m.registry()).expect("encodes");
        for name in [
            schema::SCALER_BUILD_INFO,
            schema::SCALER_DESIRED_REPLICAS,
            schema::SCALER_ERRORS_TOTAL,
            schema::SCALER_API_REQUESTS_TOTAL,
            schema::SCALER_LEADER,
            "tidal_scaler_decision_duration_seconds_bucket",
        ] {
            assert!(body.contains(name), "{name} missing from\n{body}");
        }
        m.forget_policy("ns", "p", &[]);
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, m.registry()).expect("encodes");
        assert!(!body.contains("policy=\"p\""), "{body}");
    }
}

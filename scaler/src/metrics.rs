//! The scaler's self-metrics (names from `tidal_core::schema`), in the HPA and KEDA spirit:
//! desired and current replicas, each metric's value and target, decision and actuation
//! latency, errors by fixed reason, and whether this replica leads. Per policy: each
//! evaluation's outcome and each failure's condition reason, for at most
//! [`DEFAULT_MAX_POLICY_SERIES`] policies (`--max-policy-series`); the rest share one
//! `policy="_overflow"` series, so the scaler's own cardinality stays bounded whatever the
//! number of policies (docs/controller.md, "Per-policy decisions and errors").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

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

/// `{namespace, policy, outcome}`: the outcome is one of [`Outcome`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub namespace: String,
    pub policy: String,
    pub outcome: &'static str,
}

/// `{namespace, policy, reason}`: the reason is one of [`POLICY_ERROR_REASONS`] or `Other`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyReasonLabels {
    pub namespace: String,
    pub policy: String,
    pub reason: &'static str,
}

/// What one evaluation of a policy came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// The replica count was raised.
    ScaledUp,
    /// The replica count was lowered.
    ScaledDown,
    /// The decision was the current count (or the target already had it).
    Unchanged,
    /// A change was decided but not written: paused, dry run, another autoscaler, another
    /// writer first, or leadership lost.
    NotApplied,
    /// The write of a decided change failed.
    Failed,
    /// No decision: the spec, an annotation or the target could not be used.
    Held,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::ScaledUp,
        Outcome::ScaledDown,
        Outcome::Unchanged,
        Outcome::NotApplied,
        Outcome::Failed,
        Outcome::Held,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::ScaledUp => "scaled_up",
            Outcome::ScaledDown => "scaled_down",
            Outcome::Unchanged => "unchanged",
            Outcome::NotApplied => "not_applied",
            Outcome::Failed => "failed",
            Outcome::Held => "held",
        }
    }
}

/// The condition reasons counted per policy (the HPA's where it has one); any other reason
/// is counted as `Other`, so the label's values are this list and `Other`.
pub const POLICY_ERROR_REASONS: &[&str] = &[
    "InvalidSpec",
    "InvalidFormula",
    "InvalidAnnotation",
    "FailedGetScale",
    "FailedGetResourceMetric",
    "FailedGetContainerResourceMetric",
    "FailedGetPodsMetric",
    "FailedGetObjectMetric",
    "FailedGetExternalMetric",
    "InvalidMetric",
    "FailedRescale",
    "FailedUpdateRequests",
    "FailedResize",
];

/// The reason label for an unlisted reason.
pub const OTHER_REASON: &str = "Other";

/// The `policy` label shared by the policies past the bound (with `namespace=""`).
pub const OVERFLOW_POLICY: &str = "_overflow";

/// Policies with series of their own, by default.
pub const DEFAULT_MAX_POLICY_SERIES: usize = 1000;

/// The most `tidal_scaler_policy_*_total` series `limit` allows: every policy within the
/// bound and the overflow series, each with every outcome and every reason.
pub fn policy_series_bound(limit: usize) -> usize {
    (limit + 1) * (Outcome::ALL.len() + POLICY_ERROR_REASONS.len() + 1)
}

/// The outcomes and reasons one policy's counters have used (to drop them exactly when the
/// policy goes).
#[derive(Default)]
struct Used {
    outcomes: BTreeSet<Outcome>,
    reasons: BTreeSet<&'static str>,
}

/// Which policies have per-policy counters, by `(namespace, name)`.
#[derive(Default)]
struct Tracked {
    limit: usize,
    policies: BTreeMap<(String, String), Used>,
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
    pub policy_decisions: Family<OutcomeLabels, Counter>,
    pub policy_errors: Family<PolicyReasonLabels, Counter>,
    tracked: Arc<Mutex<Tracked>>,
    registry: Arc<Registry>,
}

impl Metrics {
    /// All families, registered, with the default per-policy bound.
    pub fn new() -> Self {
        Self::with_policy_series_limit(DEFAULT_MAX_POLICY_SERIES)
    }

    /// All families, registered; at most `limit` policies get counters of their own.
    pub fn with_policy_series_limit(limit: usize) -> Self {
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
            policy_decisions: Family::default(),
            policy_errors: Family::default(),
            tracked: Arc::new(Mutex::new(Tracked {
                limit,
                policies: BTreeMap::new(),
            })),
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
        reg.register(
            strip(schema::SCALER_POLICY_DECISIONS_TOTAL),
            "Evaluations of a policy, by outcome (bounded: see --max-policy-series)",
            m.policy_decisions.clone(),
        );
        reg.register(
            strip(schema::SCALER_POLICY_ERRORS_TOTAL),
            "Failed evaluations of a policy, by condition reason (bounded: see --max-policy-series)",
            m.policy_errors.clone(),
        );
        Self {
            registry: Arc::new(reg),
            ..m
        }
    }

    /// The `(namespace, policy)` labels for a policy's counters: its own while it is tracked
    /// or there is room, else the shared overflow. Records what it will use in `note`.
    fn policy_labels(
        &self,
        namespace: &str,
        policy: &str,
        note: impl FnOnce(&mut Used),
    ) -> (String, String) {
        let mut t = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), policy.to_string());
        if !t.policies.contains_key(&key) && t.policies.len() >= t.limit {
            return (String::new(), OVERFLOW_POLICY.to_string());
        }
        note(t.policies.entry(key.clone()).or_default());
        key
    }

    /// Count one evaluation of a policy.
    pub fn decision(&self, namespace: &str, policy: &str, outcome: Outcome) {
        let (namespace, policy) = self.policy_labels(namespace, policy, |u| {
            u.outcomes.insert(outcome);
        });
        self.policy_decisions
            .get_or_create(&OutcomeLabels {
                namespace,
                policy,
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Count one failure of a policy under its condition reason.
    pub fn policy_error(&self, namespace: &str, policy: &str, reason: &str) {
        let reason = POLICY_ERROR_REASONS
            .iter()
            .copied()
            .find(|r| *r == reason)
            .unwrap_or(OTHER_REASON);
        let (namespace, policy) = self.policy_labels(namespace, policy, |u| {
            u.reasons.insert(reason);
        });
        self.policy_errors
            .get_or_create(&PolicyReasonLabels {
                namespace,
                policy,
                reason,
            })
            .inc();
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

    /// Drop every per-policy series of a deleted policy (freeing its place in the bound).
    pub fn forget_policy(&self, namespace: &str, policy: &str, metrics: &[String]) {
        let used = self
            .tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .policies
            .remove(&(namespace.to_string(), policy.to_string()));
        if let Some(Used { outcomes, reasons }) = used {
            for outcome in outcomes {
                self.policy_decisions.remove(&OutcomeLabels {
                    namespace: namespace.to_string(),
                    policy: policy.to_string(),
                    outcome: outcome.as_str(),
                });
            }
            for reason in reasons {
                self.policy_errors.remove(&PolicyReasonLabels {
                    namespace: namespace.to_string(),
                    policy: policy.to_string(),
                    reason,
                });
            }
        }
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

    fn encoded(m: &Metrics) -> String {
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, m.registry()).expect("encodes");
        body
    }

    /// Lines of the two per-policy families, with their label sets.
    fn policy_series(body: &str) -> Vec<&str> {
        body.lines()
            .filter(|l| {
                l.starts_with(schema::SCALER_POLICY_DECISIONS_TOTAL)
                    || l.starts_with(schema::SCALER_POLICY_ERRORS_TOTAL)
            })
            .collect()
    }

    #[test]
    fn per_policy_counters_name_the_policy_outcome_and_reason() {
        let m = Metrics::new();
        m.decision("ns", "web", Outcome::ScaledUp);
        m.decision("ns", "web", Outcome::ScaledUp);
        m.policy_error("ns", "web", "FailedGetExternalMetric");
        // A reason outside the fixed list cannot add label values.
        m.policy_error("ns", "web", "SomethingNew: with text");
        let body = encoded(&m);
        for line in [
            "tidal_scaler_policy_decisions_total{namespace=\"ns\",policy=\"web\",outcome=\"scaled_up\"} 2",
            "tidal_scaler_policy_errors_total{namespace=\"ns\",policy=\"web\",reason=\"FailedGetExternalMetric\"} 1",
            "tidal_scaler_policy_errors_total{namespace=\"ns\",policy=\"web\",reason=\"Other\"} 1",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "{line} missing from\n{body}"
            );
        }
    }

    /// The documented bound: with a limit of N, the two families never hold more than
    /// (N + 1) x (outcomes + reasons + Other) series, whatever the policies and reasons; the
    /// policies past N are counted (not lost) under `_overflow`, and a deleted policy's place
    /// goes to the next one.
    #[test]
    fn per_policy_series_stay_within_the_bound() {
        const LIMIT: usize = 3;
        let m = Metrics::with_policy_series_limit(LIMIT);
        let mut reasons: Vec<&str> = POLICY_ERROR_REASONS.to_vec();
        reasons.extend(["Unlisted", "another one", ""]);
        let mut total = 0u64;
        for p in 0..10 {
            let name = format!("p{p}");
            for o in Outcome::ALL {
                m.decision("ns", &name, o);
                total += 1;
            }
            for r in &reasons {
                m.policy_error("ns", &name, r);
            }
        }
        let body = encoded(&m);
        let series = policy_series(&body);
        assert_eq!(policy_series_bound(LIMIT), 4 * 20);
        assert!(
            series.len() <= policy_series_bound(LIMIT),
            "{} series over the bound {}:\n{body}",
            series.len(),
            policy_series_bound(LIMIT)
        );
        // Exactly the bound here: every outcome and every reason was used by 3 policies and
        // by the overflow.
        assert_eq!(series.len(), policy_series_bound(LIMIT), "{body}");
        let policies: BTreeSet<&str> = series
            .iter()
            .filter_map(|l| l.split("policy=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(
            policies,
            BTreeSet::from(["p0", "p1", "p2", OVERFLOW_POLICY]),
            "{body}"
        );
        // Nothing is lost: every evaluation is counted, in its policy or in the overflow.
        let counted: f64 = series
            .iter()
            .filter(|l| l.starts_with(schema::SCALER_POLICY_DECISIONS_TOTAL))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        assert_eq!(counted, total as f64);

        // p1 goes: its series go, and its place is the next new policy's.
        m.forget_policy("ns", "p1", &[]);
        m.decision("ns", "p10", Outcome::Held);
        let body = encoded(&m);
        assert!(!body.contains("policy=\"p1\""), "{body}");
        assert!(
            body.contains("policy=\"p10\",outcome=\"held\"} 1"),
            "{body}"
        );
        m.decision("ns", "p11", Outcome::Held);
        assert!(!encoded(&m).contains("policy=\"p11\""));
    }
}

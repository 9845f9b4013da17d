//! Rounds: the slow sources of one cycle, gathered off the cycle.
//!
//! A cycle scrapes the agents itself (bounded by `--agent-timeout-seconds`) and evaluates at
//! once every due policy that needs nothing else. Prometheus queries and Kafka lag are
//! gathered by tasks of their own (each bounded by its budget: `--prometheus-timeout-seconds`
//! for the whole gathering, the round deadline for each Kafka cluster), and the policies that
//! need them wait in a [`Round`] until every source they use has answered, without holding
//! back the next cycle. The controller evaluates them when the last of their sources arrives
//! (its one writer, in its own loop), with the cycle's data and time.

use std::collections::HashMap;
use std::sync::Arc;

use crate::api::ScalingPolicy;
use crate::sources::SourceError;
use crate::sources::kafka::{LagQuery, LagReading};
use crate::sources::prometheus::PromSample;

use super::observe::Gathered;

/// The sources a policy's evaluation waits for, besides the agents the cycle scrapes itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub prometheus: bool,
    pub kafka: bool,
}

impl Needs {
    /// What `p` waits for. `agents` / `prometheus`: whether those sources are configured (an
    /// unconfigured one is an immediate error, nothing to wait for).
    pub fn of(p: &ScalingPolicy, agents: bool, prometheus: bool) -> Self {
        let vertical = p.spec.vertical.is_some();
        let usage = vertical || p.spec.metrics.iter().any(|m| m.resource.is_some());
        Self {
            prometheus: prometheus
                && ((usage && !agents) || p.spec.metrics.iter().any(|m| m.prometheus.is_some())),
            kafka: p.spec.metrics.iter().any(|m| m.kafka_lag.is_some()),
        }
    }

    /// Needs nothing the cycle does not gather itself.
    pub fn none(self) -> bool {
        !self.prometheus && !self.kafka
    }
}

/// A slow source's answer for the round `id`.
#[derive(Debug)]
pub enum Arrival {
    /// Every query's result, by PromQL.
    Prometheus(HashMap<String, Result<Vec<PromSample>, SourceError>>),
    /// One reading per lag query, in the order of the queries.
    Kafka(Vec<LagQuery>, Vec<Result<LagReading, SourceError>>),
}

/// One cycle's policies waiting for slow sources, and what has arrived so far.
#[derive(Debug)]
pub struct Round {
    /// The cycle's time (Unix seconds): the decision is the cycle's.
    pub now: f64,
    pub gathered: Gathered,
    pub prometheus_pending: bool,
    pub kafka_pending: bool,
    /// No agents: the usage comes from the Prometheus resource queries.
    pub usage_via_prometheus: bool,
    pub waiting: Vec<(Arc<ScalingPolicy>, Needs)>,
}

impl Round {
    /// Records `arrival`; returns the policies whose sources have all answered now (removed
    /// from the round).
    pub fn arrive(&mut self, arrival: Arrival) -> Vec<Arc<ScalingPolicy>> {
        match arrival {
            Arrival::Prometheus(results) => {
                self.gathered.prometheus.extend(results);
                self.prometheus_pending = false;
                if self.usage_via_prometheus {
                    self.gathered.usage =
                        Some(super::usage_via_prometheus(&self.gathered.prometheus));
                }
            }
            Arrival::Kafka(queries, readings) => {
                self.gathered
                    .kafka
                    .extend(queries.into_iter().zip(readings));
                self.kafka_pending = false;
            }
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, n)| self.ready(*n));
        self.waiting = waiting;
        ready.into_iter().map(|(p, _)| p).collect()
    }

    fn ready(&self, n: Needs) -> bool {
        let waits = (n.prometheus && self.prometheus_pending) || (n.kafka && self.kafka_pending);
        !waits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(metrics: serde_json::Value, vertical: bool) -> Arc<ScalingPolicy> {
        let mut spec = serde_json::json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"},
            "maxReplicas": 10,
            "metrics": metrics
        });
        if vertical {
            spec["vertical"] = serde_json::json!({"mode": "Off"});
        }
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy",
                "metadata": {"name": "p", "namespace": "ns"},
                "spec": spec,
            }))
            .expect("policy"),
        )
    }

    fn cpu() -> serde_json::Value {
        serde_json::json!({"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 50}})
    }
    fn prom() -> serde_json::Value {
        serde_json::json!({"name": "q", "prometheus": {"query": "vector(1)", "targetValue": "1"}})
    }
    fn lag() -> serde_json::Value {
        serde_json::json!({"name": "lag", "kafkaLag": {"cluster": "c", "group": "g", "lagPerReplica": 10}})
    }

    #[test]
    fn a_policy_waits_only_for_the_sources_it_uses() {
        let n = |m: serde_json::Value, agents, prometheus| {
            Needs::of(&policy(m, false), agents, prometheus)
        };
        let p = |prometheus, kafka| Needs { prometheus, kafka };
        // CPU through the agents: nothing to wait for, even with Prometheus configured.
        assert!(n(serde_json::json!([cpu()]), true, true).none());
        // CPU without agents: through Prometheus.
        assert_eq!(n(serde_json::json!([cpu()]), false, true), p(true, false));
        // Nothing configured: an immediate error, nothing to wait for.
        assert!(n(serde_json::json!([cpu(), prom()]), false, false).none());
        assert_eq!(n(serde_json::json!([lag()]), true, true), p(false, true));
        assert_eq!(
            n(serde_json::json!([cpu(), prom(), lag()]), true, true),
            p(true, true)
        );
        // Vertical without agents learns from the Prometheus usage.
        assert_eq!(
            Needs::of(&policy(serde_json::json!([lag()]), true), false, true),
            p(true, true)
        );
    }

    #[test]
    fn a_policy_is_released_when_the_last_of_its_sources_arrives() {
        let both = policy(serde_json::json!([prom(), lag()]), false);
        let only_lag = policy(serde_json::json!([lag()]), false);
        let mut round = Round {
            now: 1.0,
            gathered: Gathered::default(),
            prometheus_pending: true,
            kafka_pending: true,
            usage_via_prometheus: false,
            waiting: vec![
                (
                    both.clone(),
                    Needs {
                        prometheus: true,
                        kafka: true,
                    },
                ),
                (
                    only_lag.clone(),
                    Needs {
                        prometheus: false,
                        kafka: true,
                    },
                ),
            ],
        };
        let ready = round.arrive(Arrival::Kafka(Vec::new(), Vec::new()));
        assert_eq!(ready.len(), 1);
        assert!(Arc::ptr_eq(&ready[0], &only_lag));
        let ready = round.arrive(Arrival::Prometheus(HashMap::new()));
        assert_eq!(ready.len(), 1);
        assert!(Arc::ptr_eq(&ready[0], &both));
        assert!(round.waiting.is_empty());
    }
}

//! The engine history a policy keeps between cycles: restored from the status checkpoint
//! when there is none in memory, compacted after every decision.

use std::collections::BTreeMap;

use crate::api::{Checkpoint, ScalingPolicy};
use crate::engine::types::{self as engine, NextState};

/// The history `p`'s decision continues from: the one `remembered`, else the one its status
/// checkpoint holds (a new leader's, or a restarted scaler's, first evaluation), else none.
pub(super) fn restored(remembered: Option<&NextState>, p: &ScalingPolicy) -> Option<NextState> {
    match remembered {
        Some(h) => Some(h.clone()),
        None => p
            .status
            .as_ref()
            .and_then(|s| s.checkpoint.as_ref())
            .map(Checkpoint::to_engine),
    }
}

/// Keep, for each replica count, only the newest recommendation: every stabilization window
/// is a suffix of the history and takes a min or a max, so an older entry with the same count
/// never changes the answer. This bounds the history by `max - min + 1` entries.
pub fn compact(next: &NextState) -> NextState {
    let mut newest: BTreeMap<i32, f64> = BTreeMap::new();
    for r in &next.recommendations {
        let e = newest.entry(r.replicas).or_insert(r.at_unix_seconds);
        if r.at_unix_seconds > *e {
            *e = r.at_unix_seconds;
        }
    }
    let mut recommendations: Vec<engine::Recommendation> = newest
        .into_iter()
        .map(|(replicas, at)| engine::Recommendation {
            replicas,
            at_unix_seconds: at,
        })
        .collect();
    recommendations.sort_by(|a, b| a.at_unix_seconds.total_cmp(&b.at_unix_seconds));
    NextState {
        recommendations,
        scale_events: next.scale_events.clone(),
        last_active_unix_seconds: next.last_active_unix_seconds,
    }
}

/// A recommendation of `replicas` at `at` (Unix seconds), for tests.
#[cfg(test)]
pub(super) fn rec(replicas: i32, at: f64) -> engine::Recommendation {
    engine::Recommendation {
        replicas,
        at_unix_seconds: at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compaction never changes a stabilization answer: for every window suffix, the min and
    /// the max over the compacted history equal those over the full history.
    #[test]
    fn compaction_keeps_every_window_min_and_max() {
        let full = NextState {
            recommendations: (0..300)
                .map(|i| rec(3 + (i * 7 % 5), f64::from(i)))
                .collect(),
            scale_events: vec![],
            last_active_unix_seconds: Some(1.0),
        };
        let small = compact(&full);
        assert!(small.recommendations.len() <= 5, "{small:?}");
        assert_eq!(small.last_active_unix_seconds, Some(1.0));
        for cutoff in 0..300 {
            let c = f64::from(cutoff);
            let window = |s: &NextState| -> (i32, i32) {
                let v: Vec<i32> = s
                    .recommendations
                    .iter()
                    .filter(|r| r.at_unix_seconds >= c)
                    .map(|r| r.replicas)
                    .collect();
                (
                    v.iter().copied().min().unwrap_or(0),
                    v.iter().copied().max().unwrap_or(0),
                )
            };
            assert_eq!(window(&full), window(&small), "cutoff {cutoff}");
        }
    }

    /// The history a decision continues from: the remembered one wins over the status
    /// checkpoint, which a policy without one in memory continues from; with neither, none.
    #[test]
    fn the_remembered_history_wins_over_the_status_checkpoint() {
        let history = |replicas: i32| NextState {
            recommendations: vec![rec(replicas, 100.0)],
            scale_events: vec![],
            last_active_unix_seconds: None,
        };
        let policy = |checkpoint: Option<&NextState>| -> ScalingPolicy {
            let mut p: ScalingPolicy = serde_json::from_value(serde_json::json!({
                "apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                         "maxReplicas": 4,
                         "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 50}}]},
            }))
            .expect("policy");
            p.status = checkpoint.map(|c| crate::api::ScalingPolicyStatus {
                checkpoint: Some(Checkpoint::from_engine(c)),
                ..Default::default()
            });
            p
        };
        let (memory, status) = (history(3), history(5));
        let replicas = |h: Option<NextState>| h.map(|h| h.recommendations[0].replicas);
        assert_eq!(
            replicas(restored(Some(&memory), &policy(Some(&status)))),
            Some(3)
        );
        assert_eq!(replicas(restored(Some(&memory), &policy(None))), Some(3));
        assert_eq!(replicas(restored(None, &policy(Some(&status)))), Some(5));
        assert_eq!(restored(None, &policy(None)), None);
    }
}

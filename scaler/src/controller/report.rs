//! What a cycle reports, and how a scale write's outcome is logged, counted and reported.

use super::plan::{Applied, ScaleIntent};
use crate::actuators::ActuateError;
use crate::actuators::replicas::ScaleOutcome;
use crate::metrics::Metrics;

/// One cycle's summary (for logs, tests and the benchmark).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    pub due: usize,
    pub scaled: usize,
    pub failures: usize,
}

/// Records what the scale write of `intent` for `policy` (`namespace/name`) did: a write that
/// changed the target is a scale, one superseded by another writer or refused for lost
/// leadership is a hold (counted as an error, no failure), any other error is a failure. The
/// `SuccessfulRescale` Event's failure is counted and logged, never fatal.
pub(super) fn record_scale(
    metrics: &Metrics,
    policy: &str,
    intent: &ScaleIntent,
    applied: &Applied,
    report: &mut CycleReport,
) {
    let (from, to) = (intent.from, intent.to);
    match &applied.scale {
        Ok(ScaleOutcome::Applied { attempts }) => {
            report.scaled += 1;
            tracing::info!(policy = %policy, from, to, attempts, reason = %intent.reason, "scaled");
        }
        Ok(ScaleOutcome::Unchanged) => {}
        Err(e) => {
            metrics.error(e.label());
            match e {
                ActuateError::Superseded { .. } => {
                    tracing::info!(policy = %policy, error = %e, "holding: superseded by another writer")
                }
                ActuateError::NotLeader { .. } => {
                    tracing::info!(policy = %policy, error = %e, "holding: leadership lost")
                }
                _ => report.failures += 1,
            }
        }
    }
    if let Some(e) = &applied.event {
        metrics.error(e.label());
        tracing::warn!(error = %e, "event not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ReasonLabels;

    fn errors(metrics: &Metrics, reason: &'static str) -> u64 {
        metrics.errors.get_or_create(&ReasonLabels { reason }).get()
    }

    /// Every outcome of a scale write, as the report counts it and the errors metric labels
    /// it: a scale, nothing to write, the two holds (no failure) and a refused write.
    #[test]
    fn a_scale_write_is_reported_by_its_outcome() {
        let intent = ScaleIntent {
            from: 2,
            to: 4,
            reason: "cpu above target".into(),
        };
        let object = || "deployments/web/scale in namespace shop".to_string();
        let cases = [
            (Ok(ScaleOutcome::Applied { attempts: 1 }), (1, 0), None),
            (Ok(ScaleOutcome::Unchanged), (0, 0), None),
            (
                Err(ActuateError::Superseded {
                    object: object(),
                    expected: 2,
                    found: 5,
                }),
                (0, 0),
                Some("superseded"),
            ),
            (
                Err(ActuateError::NotLeader { what: object() }),
                (0, 0),
                Some("not_leader"),
            ),
            (
                Err(ActuateError::Api {
                    verb: "replace",
                    object: object(),
                    code: 422,
                    detail: "invalid".into(),
                }),
                (0, 1),
                Some("api_error"),
            ),
        ];
        for (scale, (scaled, failures), label) in cases {
            let metrics = Metrics::new();
            let mut report = CycleReport::default();
            let what = format!("{scale:?}");
            let applied = Applied { scale, event: None };
            record_scale(&metrics, "shop/web", &intent, &applied, &mut report);
            assert_eq!(
                (report.scaled, report.failures),
                (scaled, failures),
                "{what}"
            );
            if let Some(label) = label {
                assert_eq!(errors(&metrics, label), 1, "{what}");
            }
        }
    }

    /// An Event that could not be recorded is counted, and the scale still counts.
    #[test]
    fn a_failed_rescale_event_is_counted_not_fatal() {
        let metrics = Metrics::new();
        let mut report = CycleReport::default();
        let intent = ScaleIntent {
            from: 2,
            to: 3,
            reason: String::new(),
        };
        let event = ActuateError::Forbidden {
            verb: "create",
            object: "events in namespace shop".into(),
            detail: "no".into(),
            grant: crate::actuators::Grant::Base,
        };
        let label = event.label();
        let applied = Applied {
            scale: Ok(ScaleOutcome::Applied { attempts: 2 }),
            event: Some(event),
        };
        record_scale(&metrics, "shop/web", &intent, &applied, &mut report);
        assert_eq!(
            report,
            CycleReport {
                due: 0,
                scaled: 1,
                failures: 0
            }
        );
        assert_eq!(errors(&metrics, label), 1);
    }
}

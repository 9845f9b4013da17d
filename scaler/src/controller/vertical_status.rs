//! The vertical step's part of a policy's status: the mode it runs in, and how its result
//! (recommendations, histograms, a failed request write) is merged into the status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::requests::VerticalWriteFailure;
use crate::api::{ConditionType, ContainerRecommendationStatus, ScalingPolicyStatus, VerticalMode};
use crate::engine::vertical::{VerticalCheckpoint, VerticalError};

/// What the vertical step gives the status.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Recommended {
    /// The containers' recommendations (`status.recommendations`).
    pub recommendations: Vec<ContainerRecommendationStatus>,
    /// The histograms to keep in the status (only while the checkpoint object cannot be
    /// written).
    pub in_status: Option<VerticalCheckpoint>,
    /// The failed request write (between rounds, the last round's).
    pub failed: Option<VerticalWriteFailure>,
}

/// The mode the vertical step runs in when the gate lets the target be written or not
/// (`gate_writes`). Held (paused, another autoscaler, dry run): recommend, change no request.
pub(super) fn vertical_mode(mode: VerticalMode, gate_writes: bool) -> VerticalMode {
    match mode {
        VerticalMode::InPlace | VerticalMode::Template if !gate_writes => VerticalMode::Off,
        m => m,
    }
}

/// Merges the vertical step's `result` into `status` (`old` is the status the cycle started
/// from) and returns whether a request write failed (a failure of the cycle):
///
/// - `Ok`: its recommendations and, where the status has a checkpoint, its histograms (none
///   once the checkpoint object holds them); a failed write sets `AbleToScale=False` (see
///   [`vertical_write_failed`]).
/// - `Err(None)`: the stored checkpoint was not read. Without the stored history, a fresh one
///   would overwrite it: this cycle keeps what the status had (its recommendations and its
///   copy of the histograms), and the read is tried again next cycle.
/// - `Err(Some(_))`: the recommender failed: the status keeps the copy of the histograms it had
///   (if any).
pub(super) fn merge_vertical(
    status: &mut ScalingPolicyStatus,
    old: &ScalingPolicyStatus,
    result: Result<Recommended, Option<VerticalError>>,
    now: &Time,
) -> bool {
    let keep_histograms = |status: &mut ScalingPolicyStatus| {
        if let (Some(c), Some(o)) = (status.checkpoint.as_mut(), old.checkpoint.as_ref()) {
            c.vertical = o.vertical.clone();
        }
    };
    match result {
        Ok(r) => {
            status.recommendations = r.recommendations;
            if let Some(c) = status.checkpoint.as_mut() {
                c.vertical = r.in_status;
            }
            if let Some(f) = r.failed {
                vertical_write_failed(status, old, &f, now);
                return true;
            }
        }
        Err(None) => {
            status.recommendations = old.recommendations.clone();
            keep_histograms(status);
        }
        Err(Some(_)) => keep_histograms(status),
    }
    false
}

/// Sets `AbleToScale=False` for a failed vertical write. The CRD's condition types are the
/// HPA's three; a horizontal failure already there keeps its reason and gets this message
/// appended. `lastTransitionTime` is the previous status's while it was already False.
pub(super) fn vertical_write_failed(
    status: &mut ScalingPolicyStatus,
    old: &ScalingPolicyStatus,
    failure: &VerticalWriteFailure,
    now: &Time,
) {
    use crate::api::{ConditionStatus, ScalingCondition};
    let message = format!(
        "the scaler was unable to change the containers' requests: {}",
        failure.message
    );
    let since = old
        .conditions
        .iter()
        .find(|c| c.kind == ConditionType::AbleToScale && c.status == ConditionStatus::False)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    match status
        .conditions
        .iter_mut()
        .find(|c| c.kind == ConditionType::AbleToScale)
    {
        Some(c) if c.status == ConditionStatus::False => {
            let previous = c.message.take().unwrap_or_default();
            c.message = Some(format!("{previous}; {message}"));
        }
        Some(c) => {
            c.status = ConditionStatus::False;
            c.reason = Some(failure.reason.into());
            c.message = Some(message);
            c.last_transition_time = Some(since);
        }
        None => status.conditions.insert(
            0,
            ScalingCondition {
                kind: ConditionType::AbleToScale,
                status: ConditionStatus::False,
                reason: Some(failure.reason.into()),
                message: Some(message),
                last_transition_time: Some(since),
            },
        ),
    }
    status.refresh_ready(old, now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::time_of;
    use crate::engine::types as engine;

    #[test]
    fn a_failed_vertical_write_turns_ready_false() {
        let cond = |kind, reason: &str| engine::Condition {
            kind,
            status: true,
            reason: reason.into(),
            message: String::new(),
        };
        let mut status = ScalingPolicyStatus::default();
        status.set_conditions(
            &[
                cond(engine::ConditionType::AbleToScale, "ReadyForNewScale"),
                cond(engine::ConditionType::ScalingActive, "ValidMetricFound"),
            ],
            &time_of(100.0),
        );
        let old = status.clone();
        let failure = VerticalWriteFailure {
            reason: "FailedResize",
            message: "patch pods/resize forbidden".into(),
        };
        vertical_write_failed(&mut status, &old, &failure, &time_of(200.0));
        let ready = status
            .conditions
            .iter()
            .find(|c| c.kind == ConditionType::Ready)
            .expect("Ready");
        assert_eq!(ready.status, crate::api::ConditionStatus::False);
        assert_eq!(ready.reason.as_deref(), Some("FailedResize"));
        assert_eq!(ready.last_transition_time, Some(time_of(200.0)));
        assert_eq!(
            status
                .conditions
                .iter()
                .filter(|c| c.kind == ConditionType::Ready)
                .count(),
            1
        );
        // The next cycle fails the same way: Ready keeps its transition time.
        let old = status.clone();
        let mut next = old.clone();
        next.set_conditions(
            &[
                cond(engine::ConditionType::AbleToScale, "ReadyForNewScale"),
                cond(engine::ConditionType::ScalingActive, "ValidMetricFound"),
            ],
            &time_of(300.0),
        );
        vertical_write_failed(&mut next, &old, &failure, &time_of(300.0));
        let ready = next
            .conditions
            .iter()
            .find(|c| c.kind == ConditionType::Ready)
            .expect("Ready");
        assert_eq!(ready.status, crate::api::ConditionStatus::False);
        assert_eq!(ready.last_transition_time, Some(time_of(200.0)));
    }

    /// Held by the gate, the writing modes only recommend; the others run as they are, and a
    /// gate that writes changes no mode.
    #[test]
    fn a_held_gate_turns_the_writing_modes_off() {
        use VerticalMode::*;
        let cases = [
            (Off, false, Off),
            (Recommend, false, Recommend),
            (InPlace, false, Off),
            (Template, false, Off),
            (Off, true, Off),
            (Recommend, true, Recommend),
            (InPlace, true, InPlace),
            (Template, true, Template),
        ];
        for (mode, writes, want) in cases {
            assert_eq!(
                vertical_mode(mode, writes),
                want,
                "{mode:?}, writes: {writes}"
            );
        }
    }

    fn recommendation(container: &str) -> ContainerRecommendationStatus {
        ContainerRecommendationStatus {
            container_name: container.into(),
            target: None,
            lower_bound: None,
            upper_bound: None,
            uncapped_target: None,
        }
    }

    /// Histograms told apart by their version.
    fn histograms(version: u32) -> VerticalCheckpoint {
        VerticalCheckpoint {
            version,
            containers: Default::default(),
        }
    }

    /// A status with recommendations for `container` and, with `vertical`, a checkpoint that
    /// holds those histograms.
    fn status(container: &str, vertical: Option<u32>) -> ScalingPolicyStatus {
        ScalingPolicyStatus {
            recommendations: vec![recommendation(container)],
            checkpoint: Some(crate::api::Checkpoint {
                vertical: vertical.map(histograms),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn vertical_of(s: &ScalingPolicyStatus) -> Option<u32> {
        s.checkpoint
            .as_ref()
            .and_then(|c| c.vertical.as_ref())
            .map(|v| v.version)
    }

    fn able_to_scale(s: &ScalingPolicyStatus) -> Option<crate::api::ConditionStatus> {
        s.conditions
            .iter()
            .find(|c| c.kind == ConditionType::AbleToScale)
            .map(|c| c.status)
    }

    /// A result goes into the status as its recommendations and its histograms (none once the
    /// object holds them); a failed write also turns `AbleToScale` False and counts.
    #[test]
    fn a_vertical_result_replaces_the_recommendations_and_histograms() {
        let old = status("old", Some(1));
        for in_status in [Some(3), None] {
            let mut new = status("settled", Some(2));
            let result = Recommended {
                recommendations: vec![recommendation("app")],
                in_status: in_status.map(histograms),
                failed: None,
            };
            assert!(!merge_vertical(&mut new, &old, Ok(result), &time_of(100.0)));
            assert_eq!(new.recommendations, [recommendation("app")]);
            assert_eq!(vertical_of(&new), in_status);
            assert_eq!(able_to_scale(&new), None, "no condition set");
        }
        let mut new = status("settled", Some(2));
        let failed = VerticalWriteFailure {
            reason: "FailedResize",
            message: "patch pods/resize forbidden".into(),
        };
        let result = Recommended {
            recommendations: vec![recommendation("app")],
            in_status: None,
            failed: Some(failed),
        };
        assert!(merge_vertical(&mut new, &old, Ok(result), &time_of(100.0)));
        assert_eq!(new.recommendations, [recommendation("app")]);
        assert_eq!(vertical_of(&new), None);
        assert_eq!(
            able_to_scale(&new),
            Some(crate::api::ConditionStatus::False)
        );
        // A status without a checkpoint gets none.
        let mut bare = ScalingPolicyStatus::default();
        let result = Recommended {
            in_status: Some(histograms(3)),
            ..Default::default()
        };
        assert!(!merge_vertical(
            &mut bare,
            &old,
            Ok(result),
            &time_of(100.0)
        ));
        assert_eq!(bare.checkpoint, None);
    }

    /// Without the stored checkpoint read, the status keeps the old recommendations and the
    /// old copy of the histograms; after the recommender failed, only the old histograms.
    #[test]
    fn a_vertical_step_that_did_not_run_keeps_the_old_status() {
        let old = status("old", Some(1));
        let mut new = status("settled", Some(2));
        assert!(!merge_vertical(&mut new, &old, Err(None), &time_of(100.0)));
        assert_eq!(new.recommendations, [recommendation("old")]);
        assert_eq!(vertical_of(&new), Some(1));

        let failed = VerticalError::Invalid {
            field: "policy".into(),
            problem: "no vertical state".into(),
        };
        let mut new = status("settled", Some(2));
        assert!(!merge_vertical(
            &mut new,
            &old,
            Err(Some(failed)),
            &time_of(100.0)
        ));
        assert_eq!(new.recommendations, [recommendation("settled")]);
        assert_eq!(vertical_of(&new), Some(1));

        // An old status without histograms: none kept.
        let old = status("old", None);
        for result in [
            Err(None),
            Err(Some(VerticalError::Invalid {
                field: "policy".into(),
                problem: "no vertical state".into(),
            })),
        ] {
            let mut new = status("settled", Some(2));
            merge_vertical(&mut new, &old, result, &time_of(100.0));
            assert_eq!(vertical_of(&new), None);
        }
    }
}

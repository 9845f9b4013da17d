//! The vertical step's part of a policy's status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::requests::VerticalWriteFailure;
use crate::api::{ConditionType, ScalingPolicyStatus};

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
}

//! Kubernetes Events on the ScalingPolicy, as the HPA emits them on the HPA object:
//! `SuccessfulRescale` with "New size: 5; reason: cpu resource utilization (percentage of
//! request) above target", and warnings such as `FailedRescale` or `InvalidSpec`.
//! kube-runtime's recorder (events.k8s.io/v1) aggregates repeats into a series.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::{ActuateError, Writer};

/// The recorder, named after the controller and this replica.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: kube::Client, identity: &str) -> Self {
        Self {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "tidal-scaler".into(),
                    instance: Some(identity.to_string()),
                },
            ),
        }
    }
}

/// The HPA's message for an applied rescale (`horizontal.go`:
/// `"New size: %d; reason: %s"`).
pub fn rescale_note(desired: i32, reason: &str) -> String {
    format!("New size: {desired}; reason: {reason}")
}

impl Writer {
    /// Publish an Event about `regarding` (the policy).
    pub async fn event(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), ActuateError> {
        let object = format!(
            "events for {}/{}",
            regarding.namespace.as_deref().unwrap_or_default(),
            regarding.name.as_deref().unwrap_or_default()
        );
        self.ensure_leader(|| object.clone())?;
        self.metrics().request("create_event");
        self.recorder
            .recorder
            .publish(
                &Event {
                    type_: if warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: reason.to_string(),
                    note: Some(note.chars().take(1000).collect()),
                    action: action.to_string(),
                    secondary: None,
                },
                regarding,
            )
            .await
            .map_err(|e| ActuateError::from_kube("create", &object, e))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rescale_note_matches_the_hpa() {
        assert_eq!(
            super::rescale_note(
                5,
                "cpu resource utilization (percentage of request) above target"
            ),
            "New size: 5; reason: cpu resource utilization (percentage of request) above target"
        );
    }
}

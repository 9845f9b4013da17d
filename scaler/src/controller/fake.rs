//! A recording fake of [`Actuate`] for the controller's unit tests: it records every write
//! asked for, in order, and answers with scripted results (a write the script does not cover
//! succeeds).

use std::collections::VecDeque;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;

use super::plan::Actuate;
use crate::actuators::ActuateError;
use crate::actuators::replicas::{ObservedScale, ScaleOutcome, ScaleTarget};
use crate::actuators::resources::{ContainerRequests, TemplateKind};

pub(super) struct Recorder {
    scale: Result<ScaleOutcome, ActuateError>,
    event: Result<(), ActuateError>,
    /// The answers to request writes (resizes and template patches), in order.
    requests: Mutex<VecDeque<Result<(), ActuateError>>>,
    calls: Mutex<Vec<String>>,
}

impl Recorder {
    pub fn new(scale: Result<ScaleOutcome, ActuateError>, event: Result<(), ActuateError>) -> Self {
        Self {
            scale,
            event,
            requests: Mutex::new(VecDeque::new()),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Scripts the answers to the next request writes.
    pub fn answering_requests(self, answers: Vec<Result<(), ActuateError>>) -> Self {
        *self.requests.lock().expect("answers") = answers.into();
        self
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("calls").clone()
    }

    fn record(&self, call: String) {
        self.calls.lock().expect("calls").push(call);
    }

    fn next_request_answer(&self) -> Result<(), ActuateError> {
        self.requests
            .lock()
            .expect("answers")
            .pop_front()
            .unwrap_or(Ok(()))
    }
}

/// `app cpu=0.25` for each change, for the recorded calls.
fn changed(changes: &[ContainerRequests]) -> String {
    changes
        .iter()
        .flat_map(|c| {
            c.requests
                .iter()
                .map(move |(k, v)| format!("{} {k}={v}", c.container))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Actuate for Recorder {
    async fn scale(
        &self,
        target: &ScaleTarget,
        observed: &ObservedScale,
        to: i32,
    ) -> Result<ScaleOutcome, ActuateError> {
        self.record(format!(
            "scale {} from {} to {to}",
            target.describe(),
            observed.replicas
        ));
        self.scale.clone()
    }

    async fn event(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), ActuateError> {
        self.record(format!(
            "event {} {warning} {reason} {action}: {note}",
            regarding.name.as_deref().unwrap_or_default()
        ));
        self.event.clone()
    }

    async fn resize_pod(
        &self,
        namespace: &str,
        pod: &str,
        changes: &[ContainerRequests],
    ) -> Result<(), ActuateError> {
        self.record(format!("resize {namespace}/{pod}: {}", changed(changes)));
        self.next_request_answer()
    }

    async fn patch_template(
        &self,
        kind: TemplateKind,
        namespace: &str,
        name: &str,
        changes: &[ContainerRequests],
    ) -> Result<(), ActuateError> {
        self.record(format!(
            "patch template {kind:?} {namespace}/{name}: {}",
            changed(changes)
        ));
        self.next_request_answer()
    }
}

//! A policy's vertical history in the controller: where it is restored from.

use crate::api::ScalingPolicyCheckpoint;

/// A policy's ScalingPolicyCheckpoint as read before its vertical history is restored.
#[derive(Debug, Default)]
pub(super) struct Stored {
    /// The object, if one exists in a format this version reads.
    pub object: Option<ScalingPolicyCheckpoint>,
    /// Whether one exists (also one this version cannot read, which is then replaced).
    pub exists: bool,
}

/// A fixed share in `[0, 1)` of the checkpoint interval for a policy, to spread the
/// checkpoint writes of policies restored in the same cycle.
pub(super) fn spread_share(namespace: &str, name: &str) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    (namespace, name).hash(&mut h);
    (h.finish() % 1000) as f64 / 1000.0
}

//! The status a cycle starts from, and the one of a cycle whose scale write was superseded.

use crate::actuators::ActuateError;
use crate::api::{ScalingPolicy, ScalingPolicyStatus};

/// The status a new one starts from (fields a decision does not set, such as `lastScaleTime`,
/// carry over): the one last queued for the policy, else the cached one. Statuses are
/// written off the cycle, so the cache can lag the queue by more than a cycle (a backlog of
/// changes); starting from it would carry a superseded value over, and the newer status,
/// differing significantly, would replace the queued one (a scale's `lastScaleTime` lost).
pub(super) fn base_status(
    queued: Option<&ScalingPolicyStatus>,
    p: &ScalingPolicy,
) -> ScalingPolicyStatus {
    let mut status = queued.or(p.status.as_ref()).cloned().unwrap_or_default();
    let t = &p.spec.target_ref;
    status.reference = Some(format!("{}/{}", t.kind, t.name));
    status
}

/// The status of a cycle whose scale write was [`ActuateError::Superseded`]: it claims no
/// scale (the desired count is the one the target has, not the one that was not written) and
/// says why in the last decision's reasons.
pub(super) fn superseded(status: &mut ScalingPolicyStatus, observed: i32, e: &ActuateError) {
    // Until the next decision, the count to keep is the one the other writer set.
    let found = match e {
        ActuateError::Superseded { found, .. } => *found,
        _ => observed,
    };
    status.desired_replicas = Some(found);
    if let Some(ld) = status.last_decision.as_mut() {
        ld.reasons.push(format!("not applied: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::enqueue::significant;
    use crate::controller::time_of;

    /// A status written off the cycle may not be in the cache at the policy's next
    /// evaluation: the next status starts from the queued one, so a scale's `lastScaleTime`
    /// is kept and nothing significant changed makes it urgent again.
    #[test]
    fn the_next_status_starts_from_the_queued_one_not_the_lagging_cache() {
        let cached = ScalingPolicyStatus {
            last_scale_time: Some(time_of(100.0)),
            desired_replicas: Some(2),
            ..Default::default()
        };
        let p: ScalingPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy",
            "metadata": {"name": "web", "namespace": "shop", "generation": 1},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 4,
                     "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 50}}]},
            "status": cached,
        }))
        .expect("policy");
        // Cycle N scaled to 4 and queued that status; the cache still holds the old one.
        let mut scaled = base_status(None, &p);
        scaled.desired_replicas = Some(4);
        scaled.last_scale_time = Some(time_of(200.0));
        // Cycle N+1 decides the same.
        let mut next = base_status(Some(&scaled), &p);
        next.desired_replicas = Some(4);
        assert_eq!(next.last_scale_time, Some(time_of(200.0)));
        assert!(significant(&next) == significant(&scaled), "not urgent");
        // Without a queued status (a failed write, a new leader) the cache is the base.
        assert_eq!(base_status(None, &p).last_scale_time, Some(time_of(100.0)));
    }

    /// A superseded write claims no scale: the desired count is the other writer's, the
    /// reason says why, and `lastScaleTime` is kept.
    #[test]
    fn a_superseded_write_holds_without_claiming_a_scale() {
        let mut status = ScalingPolicyStatus {
            last_scale_time: Some(time_of(100.0)),
            desired_replicas: Some(4),
            last_decision: Some(Default::default()),
            ..Default::default()
        };
        let e = ActuateError::Superseded {
            object: "deployments/web/scale in namespace shop".into(),
            expected: 2,
            found: 5,
        };
        superseded(&mut status, 2, &e);
        assert_eq!(status.desired_replicas, Some(5));
        assert_eq!(status.last_scale_time, Some(time_of(100.0)));
        let reasons = &status.last_decision.expect("decision").reasons;
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("not applied") && r.contains("from 2 to 5")),
            "{reasons:?}"
        );
    }
}

//! Ported from kubernetes/autoscaler `vertical-pod-autoscaler/pkg/utils/vpa/capping_test.go`
//! (the policy cases), `api_test.go` (`TestGetContainerResourcePolicy`) and
//! `pkg/recommender/model/aggregate_container_state_test.go`
//! (`TestUpdateFromPolicyControlledResources`), each named in its doc comment. Limit-range and
//! container-limit capping are the updater's and the admission controller's, not the
//! recommender's, and are not ported.

use super::*;

/// `resource.NewScaledQuantity(v, 1)`: `v * 10`, as CPU cores (in millicores) or bytes.
fn cpu(v: i64) -> i64 {
    v * 10 * 1000
}

fn mem(v: i64) -> i64 {
    v * 10
}

fn amounts(c: i64, m: i64) -> PartialAmounts {
    PartialAmounts {
        cpu: Some(cpu(c)),
        memory: Some(mem(m)),
    }
}

/// minAllowed (40, 4000) and maxAllowed (45, 4500), scaled by 10, in base units.
fn min_max_policy() -> ContainerPolicy {
    ContainerPolicy {
        container_name: "ctr-name".into(),
        min_allowed: Resources::new(400.0, 40_000.0),
        max_allowed: Resources::new(450.0, 45_000.0),
        controlled_resources: None,
    }
}

/// capping_test.go `TestRecommendationCappedToMinMaxPolicy`.
#[test]
fn recommendation_capped_to_min_max_policy() {
    let policy = min_max_policy();
    let mut target = amounts(30, 5000);
    let mut lower = amounts(20, 4300);
    let mut upper = amounts(50, 5500);
    let notes = apply_policy(&mut target, Some(&policy));
    apply_policy(&mut lower, Some(&policy));
    apply_policy(&mut upper, Some(&policy));
    assert_eq!(target, amounts(40, 4500));
    assert!(
        notes.contains(&"cpu capped to minAllowed".to_owned()),
        "{notes:?}"
    );
    assert!(
        notes.contains(&"memory capped to maxAllowed".to_owned()),
        "{notes:?}"
    );
    assert_eq!(lower, amounts(40, 4300));
    assert_eq!(upper, amounts(45, 4500));
}

/// capping_test.go `TestApply`, the case with a recommendation and no policy: unchanged.
/// (The case with neither has no counterpart: a recommendation always exists here.)
#[test]
fn apply_without_policy() {
    let mut rec = amounts(5, 10);
    assert!(apply_policy(&mut rec, None).is_empty());
    assert_eq!(rec, amounts(5, 10));
}

/// capping_test.go `TestApplyVpa`: target, bounds capped; the uncapped target kept.
#[test]
fn apply_vpa() {
    let policy = min_max_policy();
    let mut target = amounts(30, 5000);
    let uncapped = target;
    let mut lower = amounts(20, 4300);
    let mut upper = amounts(50, 5500);
    for r in [&mut target, &mut lower, &mut upper] {
        apply_policy(r, Some(&policy));
    }
    assert_eq!(target, amounts(40, 4500));
    assert_eq!(uncapped, amounts(30, 5000));
    assert_eq!(lower, amounts(40, 4300));
    assert_eq!(upper, amounts(45, 4500));
}

/// api_test.go `TestGetContainerResourcePolicy`: by name, else `*`, else none.
#[test]
fn get_container_resource_policy() {
    let p1 = ContainerPolicy {
        min_allowed: Resources {
            cpu_cores: Some(100.0),
            memory_bytes: None,
        },
        ..ContainerPolicy::named("container1")
    };
    let p2 = ContainerPolicy {
        max_allowed: Resources {
            cpu_cores: None,
            memory_bytes: Some(1000.0),
        },
        ..ContainerPolicy::named("container2")
    };
    let policies = vec![p1.clone(), p2.clone()];
    assert_eq!(container_policy("container1", &policies), Some(&p1));
    assert_eq!(container_policy("container2", &policies), Some(&p2));
    assert_eq!(container_policy("container3", &policies), None);
    let default = ContainerPolicy {
        min_allowed: Resources {
            cpu_cores: Some(200.0),
            memory_bytes: None,
        },
        ..ContainerPolicy::named("*")
    };
    let policies = vec![p1.clone(), default.clone(), p2.clone()];
    assert_eq!(container_policy("container1", &policies), Some(&p1));
    assert_eq!(container_policy("container2", &policies), Some(&p2));
    assert_eq!(container_policy("container3", &policies), Some(&default));
}

/// aggregate_container_state_test.go `TestUpdateFromPolicyControlledResources`, all 5 cases.
#[test]
fn update_from_policy_controlled_resources() {
    let with = |list: Option<Vec<Resource>>| ContainerPolicy {
        controlled_resources: list,
        ..ContainerPolicy::named("c")
    };
    let cases: [(&str, Option<ContainerPolicy>, Vec<Resource>); 5] = [
        (
            "Explicit ControlledResources",
            Some(with(Some(vec![Resource::Cpu, Resource::Memory]))),
            vec![Resource::Cpu, Resource::Memory],
        ),
        (
            "Empty ControlledResources",
            Some(with(Some(vec![]))),
            vec![],
        ),
        (
            "ControlledResources with one resource",
            Some(with(Some(vec![Resource::Memory]))),
            vec![Resource::Memory],
        ),
        (
            "No ControlledResources specified - used default",
            Some(with(None)),
            vec![Resource::Cpu, Resource::Memory],
        ),
        (
            "Nil policy - use default",
            None,
            vec![Resource::Cpu, Resource::Memory],
        ),
    ];
    for (name, policy, want) in cases {
        assert_eq!(controlled_resources(policy.as_ref()), want, "{name}");
    }
}

/// capping.go `maybeCapToMin`/`maybeCapToMax`: a zero bound is no bound; min first, then max,
/// so max wins when they cross; a fractional bound is rounded up (`MilliValue`, `Value`).
#[test]
fn bound_details() {
    let zero = ContainerPolicy {
        min_allowed: Resources::new(0.0, 0.0),
        max_allowed: Resources::new(0.0, 0.0),
        ..ContainerPolicy::named("c")
    };
    let mut rec = amounts(5, 10);
    assert!(apply_policy(&mut rec, Some(&zero)).is_empty());
    assert_eq!(rec, amounts(5, 10));

    let crossed = ContainerPolicy {
        min_allowed: Resources::new(2.0, 2000.0),
        max_allowed: Resources::new(1.0, 1000.0),
        ..ContainerPolicy::named("c")
    };
    let mut rec = PartialAmounts {
        cpu: Some(500),
        memory: Some(500),
    };
    let notes = apply_policy(&mut rec, Some(&crossed));
    assert_eq!(rec.cpu, Some(1000));
    assert_eq!(rec.memory, Some(1000));
    assert_eq!(notes.len(), 4, "{notes:?}");

    let tiny = ContainerPolicy {
        min_allowed: Resources::new(0.0005, 0.5),
        ..ContainerPolicy::named("c")
    };
    let mut rec = PartialAmounts {
        cpu: Some(0),
        memory: Some(0),
    };
    apply_policy(&mut rec, Some(&tiny));
    assert_eq!(
        rec,
        PartialAmounts {
            cpu: Some(1),
            memory: Some(1)
        }
    );

    // Uncontrolled resources stay absent.
    let mut rec = PartialAmounts {
        cpu: None,
        memory: Some(0),
    };
    apply_policy(&mut rec, Some(&min_max_policy()));
    assert_eq!(rec.cpu, None);
}

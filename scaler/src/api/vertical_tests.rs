//! `spec.vertical` (YAML as a user writes it) into a `VerticalConfig`, and a recommendation
//! into `status.recommendations[]`.

use super::*;
use crate::api::VerticalSpec;

fn spec(yaml: &str) -> VerticalSpec {
    serde_norway::from_str(yaml).expect("valid YAML")
}

/// Quantities are parsed to base units; the estimator and controlled resources carried over;
/// everything else is the VPA's default.
#[test]
fn from_spec() {
    let s = spec(
        r#"
mode: Recommend
estimator: meanVariance
containerPolicies:
  - containerName: app
    minAllowed: { cpu: 250m, memory: 256Mi }
    maxAllowed: { cpu: "2", memory: 4Gi }
  - containerName: "*"
    controlledResources: [memory]
"#,
    );
    let cfg = VerticalConfig::try_from(&s).expect("valid");
    assert_eq!(cfg.estimator, EstimatorKind::MeanVariance);
    assert_eq!(cfg.container_policies.len(), 2);
    let app = &cfg.container_policies[0];
    assert_eq!(
        app.min_allowed,
        Resources::new(0.25, 256.0 * 1024.0 * 1024.0)
    );
    assert_eq!(
        app.max_allowed,
        Resources::new(2.0, 4.0 * 1024.0 * 1024.0 * 1024.0)
    );
    assert_eq!(app.controlled_resources, None);
    let rest = &cfg.container_policies[1];
    assert_eq!(rest.controlled_resources, Some(vec![Resource::Memory]));
    assert_eq!(rest.min_allowed, Resources::default());
    assert_eq!(cfg.safety_margin_fraction, 0.15);
    assert_eq!(
        VerticalConfig::try_from(&VerticalSpec::default()).expect("valid"),
        VerticalConfig::default()
    );
}

/// Bad quantities name their field.
#[test]
fn from_spec_errors() {
    let err = VerticalConfig::try_from(&spec(
        "containerPolicies: [{containerName: app, minAllowed: {cpu: lots}}]",
    ))
    .expect_err("not a quantity");
    assert_eq!(
        err.to_string(),
        "spec.vertical.containerPolicies[0].minAllowed.cpu: \"lots\" is not a quantity (e.g. 500m, 2Gi, 1.5, 1e3)"
    );
    let err = VerticalConfig::try_from(&spec(
        "containerPolicies: [{containerName: app, maxAllowed: {memory: -1Gi}}]",
    ))
    .expect_err("negative");
    assert_eq!(err.label(), "negative");
    assert!(
        err.to_string()
            .contains("containerPolicies[0].maxAllowed.memory"),
        "{err}"
    );
}

/// CPU as millicores, memory in bytes; uncontrolled resources and empty bounds left out.
#[test]
fn to_status() {
    let rec = ContainerRecommendation {
        container: "app".into(),
        target: Resources::new(0.791, 400e6),
        lower_bound: Resources {
            cpu_cores: Some(0.5),
            memory_bytes: None,
        },
        upper_bound: Resources::new(2.0, 1073741824.0),
        uncapped_target: Resources::default(),
        coordinated: vec![Resource::Cpu],
        capped: vec![],
        confidence: 2.0,
        total_samples: 2880,
    };
    let s = api::ContainerRecommendationStatus::from(&rec);
    assert_eq!(s.container_name, "app");
    let target = s.target.expect("target");
    assert_eq!(target.cpu.expect("cpu").0, "791m");
    assert_eq!(target.memory.expect("memory").0, "400000000");
    let lower = s.lower_bound.expect("lower");
    assert_eq!(lower.cpu.expect("cpu").0, "500m");
    assert!(lower.memory.is_none());
    assert_eq!(s.upper_bound.expect("upper").cpu.expect("cpu").0, "2");
    assert!(s.uncapped_target.is_none());
}

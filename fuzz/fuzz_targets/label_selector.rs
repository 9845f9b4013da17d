//! Label selectors: the scaler's parser for a scale subresource's `status.selector`
//! (`tidal_scaler::controller::target::parse_selector`) and the pod index that answers it
//! (`controller::pods_by_label::PodsByLabel::matching`).
//!
//! The input (via `arbitrary`) is a selector string, a selector built from requirements (keys
//! and values drawn from a small set of valid label keys and values, so that they collide),
//! and a few pods with labels. Checks: parsing arbitrary text never panics; the index gives
//! exactly the pods a scan with the same selector gives (an empty selector matches none); and
//! a selector written as Kubernetes writes it (`k in (a,b)`, `k!=v`, `!k`, ...) parses back to
//! the same requirements.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use arbitrary::Arbitrary;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{Expression, Selector, SelectorExt};
use libfuzzer_sys::fuzz_target;
use tidal_scaler::controller::pods_by_label::PodsByLabel;
use tidal_scaler::controller::target::parse_selector;

const KEYS: [&str; 6] = [
    "app",
    "tier",
    "app.kubernetes.io/name",
    "a-b_c.d",
    "in",
    "notin",
];
/// Label values: never empty (see `requirement`).
const VALUES: [&str; 5] = ["web", "db", "v1", "in", "a.b-c_d"];
const NAMESPACES: [&str; 2] = ["shop", "other"];

#[derive(Arbitrary, Debug)]
enum Op {
    In,
    NotIn,
    Equal,
    NotEqual,
    Exists,
    DoesNotExist,
}

#[derive(Arbitrary, Debug)]
struct Requirement {
    op: Op,
    key: u8,
    values: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct PodLabels {
    namespace: bool,
    labels: Vec<(u8, u8)>,
}

#[derive(Arbitrary, Debug)]
struct Case {
    text: String,
    requirements: Vec<Requirement>,
    pods: Vec<PodLabels>,
}

fn key(i: u8) -> String {
    KEYS[usize::from(i) % KEYS.len()].to_string()
}

fn value(i: u8) -> String {
    VALUES[usize::from(i) % VALUES.len()].to_string()
}

fn requirement(r: &Requirement) -> Expression {
    let k = key(r.key);
    let v = value(r.values.first().copied().unwrap_or(0));
    let set = || r.values.iter().map(|&i| value(i)).collect();
    match r.op {
        Op::In => Expression::In(k, set()),
        Op::NotIn => Expression::NotIn(k, set()),
        Op::Equal => Expression::Equal(k, v),
        Op::NotEqual => Expression::NotEqual(k, v),
        Op::Exists => Expression::Exists(k),
        Op::DoesNotExist => Expression::DoesNotExist(k),
    }
}

fn pod(i: usize, p: &PodLabels) -> Arc<Pod> {
    let labels: BTreeMap<String, String> =
        p.labels.iter().map(|&(k, v)| (key(k), value(v))).collect();
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(format!("p{i}")),
            namespace: Some(NAMESPACES[usize::from(p.namespace)].to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    })
}

fn names(pods: &[&Arc<Pod>]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect()
}

/// The index's answer must be the scan's.
fn same_as_scan(index: &PodsByLabel, pods: &[Arc<Pod>], sel: &Selector) {
    for ns in NAMESPACES {
        let got = names(&index.matching(ns, sel));
        let want: Vec<&Arc<Pod>> = if sel.selects_all() {
            Vec::new()
        } else {
            pods.iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
                .filter(|p| sel.matches(p.metadata.labels.as_ref().expect("labels")))
                .collect()
        };
        assert_eq!(got, names(&want), "selector {sel}");
    }
}

fuzz_target!(|c: Case| {
    let pods: Vec<Arc<Pod>> = c
        .pods
        .iter()
        .take(64)
        .enumerate()
        .map(|(i, p)| pod(i, p))
        .collect();
    let index = PodsByLabel::build(pods.clone());
    if let Ok(sel) = parse_selector(&c.text) {
        same_as_scan(&index, &pods, &sel);
    }
    let built: Selector = c.requirements.iter().map(requirement).collect();
    let text = built.to_string();
    let parsed = parse_selector(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(parsed, built, "{text:?}");
    same_as_scan(&index, &pods, &built);
});

//! Every alert links to its runbook, statically (no stack needed): each alert of
//! `manifests/rules/*.rules.yaml` has a `runbook_url` annotation pointing into
//! `docs/runbooks.md` of the repository named in the workspace `Cargo.toml`, at the anchor of
//! the alert's own `## <AlertName>` section, and that section exists with its four parts. The
//! runbooks name only series of `tidal_core::schema`, and the prometheus-operator overlay's
//! PrometheusRule holds exactly the rule files' groups (so it carries the same links).

use std::collections::{BTreeMap, BTreeSet};

use tidal_core::schema;
use tidal_e2e::repo_root;

use tidal_e2e::manifests::RULE_FILES;
const RUNBOOKS: &str = "docs/runbooks.md";
const PROMETHEUS_RULE: &str = "manifests/overlays/prometheus-operator/prometheusrule.yaml";

fn read(path: &str) -> String {
    let full = repo_root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

fn yaml(path: &str) -> serde_json::Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

/// The groups of every rule file, in order.
fn rule_groups() -> Vec<serde_json::Value> {
    RULE_FILES
        .iter()
        .flat_map(|f| {
            yaml(&format!("manifests/rules/{f}"))["groups"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| panic!("{f}: no groups"))
        })
        .collect()
}

/// `alert name -> its annotations`, over every rule file.
fn alerts() -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for group in rule_groups() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            if let Some(alert) = rule["alert"].as_str() {
                let dup = out.insert(alert.to_string(), rule["annotations"].clone());
                assert!(dup.is_none(), "alert {alert} is defined twice");
            }
        }
    }
    assert!(!out.is_empty(), "no alert in {RULE_FILES:?}");
    out
}

/// The workspace's `repository = "..."` (the project's canonical URL).
fn repository() -> String {
    read("Cargo.toml")
        .lines()
        .find_map(|l| {
            let v = l
                .trim()
                .strip_prefix("repository")?
                .trim()
                .strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_string())
        })
        .expect("Cargo.toml has a repository = \"...\"")
}

/// GitHub's anchor of a Markdown heading: lower case, punctuation other than `-` and `_`
/// dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// `## ` sections of the runbooks, outside code blocks: `heading -> body`.
fn sections(doc: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut fenced = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if !fenced && let Some(h) = line.strip_prefix("## ") {
            let h = h.trim().to_string();
            assert!(!out.contains_key(&h), "{RUNBOOKS}: two sections {h}");
            out.insert(h.clone(), String::new());
            current = Some(h);
            continue;
        }
        if let Some(body) = current.as_ref().and_then(|h| out.get_mut(h)) {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

#[test]
fn every_alert_has_a_runbook_url_to_its_own_section() {
    let base = format!(
        "{}/blob/main/{RUNBOOKS}#",
        repository().trim_end_matches('/')
    );
    let doc = read(RUNBOOKS);
    let sections = sections(&doc);
    let anchors: BTreeMap<String, &String> = sections.keys().map(|h| (anchor(h), h)).collect();
    let alerts = alerts();
    let mut problems = Vec::new();
    for (alert, annotations) in &alerts {
        let Some(url) = annotations["runbook_url"].as_str() else {
            problems.push(format!("{alert}: no runbook_url annotation"));
            continue;
        };
        let want = format!("{base}{}", alert.to_lowercase());
        if url != want {
            problems.push(format!("{alert}: runbook_url is {url}, expected {want}"));
        }
        let Some(fragment) = url.split_once('#').map(|(_, f)| f) else {
            continue;
        };
        match anchors.get(fragment) {
            Some(heading) if *heading == alert => {}
            Some(heading) => problems.push(format!(
                "{alert}: #{fragment} is the section \"## {heading}\", not \"## {alert}\""
            )),
            None => problems.push(format!(
                "{alert}: {RUNBOOKS} has no \"## {alert}\" section (anchor #{fragment})"
            )),
        }
        if let Some(body) = sections.get(alert.as_str()) {
            for part in [
                "**Meaning.**",
                "**Confirm.**",
                "**Likely causes",
                "**What to do.**",
            ] {
                if !body.contains(part) {
                    problems.push(format!("{RUNBOOKS}, {alert}: no {part} part"));
                }
            }
        }
    }
    // No runbook for an alert that does not exist (a renamed or removed one).
    for heading in sections.keys().filter(|h| h.starts_with("Tidal")) {
        if !alerts.contains_key(heading) {
            problems.push(format!(
                "{RUNBOOKS}: section \"## {heading}\" is not an alert of {RULE_FILES:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn runbooks_name_only_series_of_the_schema() {
    let doc = read(RUNBOOKS);
    let mut unknown = BTreeSet::new();
    let mut seen = 0;
    for (start, _) in doc.match_indices("tidal_") {
        let before = doc[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &doc[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        if !(name.starts_with(schema::AGENT_PREFIX) || name.starts_with(schema::SCALER_PREFIX)) {
            continue;
        }
        seen += 1;
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| schema::ALL.contains(b)))
            .unwrap_or(name);
        // `tidal_agent_node_*` and `tidal_agent_container_*` stand for families.
        if !schema::ALL.contains(&base) && !name.ends_with('_') {
            unknown.insert(name.to_string());
        }
    }
    assert!(seen > 0, "{RUNBOOKS} names no series");
    assert!(
        unknown.is_empty(),
        "{RUNBOOKS} names series that tidal_core::schema does not define: {unknown:?}"
    );
}

#[test]
fn the_prometheus_rule_holds_the_rule_files_groups() {
    let rule = yaml(PROMETHEUS_RULE);
    assert_eq!(rule["kind"], "PrometheusRule", "{PROMETHEUS_RULE}");
    assert!(
        rule["spec"]["groups"] == serde_json::Value::Array(rule_groups()),
        "{PROMETHEUS_RULE}: its groups differ from manifests/rules/*.rules.yaml: run \
         manifests/overlays/prometheus-operator/generate-rules.sh"
    );
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(anchor("TidalAgentDown"), "tidalagentdown");
    assert_eq!(
        anchor("Kafka consumer lag (`kafka_lag` sampler)"),
        "kafka-consumer-lag-kafka_lag-sampler"
    );
    assert_eq!(anchor("The scaler's RBAC"), "the-scalers-rbac");
}

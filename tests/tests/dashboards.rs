//! Dashboards and alert rules against real data (issue #7).
//!
//! - A real agent samples a real pod cgroup (a busy loop under a CPU quota, so throttling is
//!   real) labelled from a KWOK pod, and a real Kafka consumer group with lag; the stack's
//!   Prometheus scrapes it as job `tidal-agent`.
//! - Two real `tidal-scaler run` processes (Lease election: one leads, one follows), with
//!   exactly the manifests' RBAC, scale a Deployment of KWOK pods on the lag of a real consumer
//!   group whose backlog comes and goes (scale-ups and scale-downs), and hold a second policy
//!   whose broker is unreachable (errors). Prometheus scrapes both as job `tidal-scaler`.
//!
//! Then every template variable query and every panel expression of every dashboard, with the
//! variables substituted, must return a non-empty vector of finite numbers; every alert
//! expression must evaluate, and the scaler's alerts must say what the live data says (a
//! leader, cycles, the unreachable broker's input errors). `promtool check rules` and
//! `promtool test rules` run on the rule files, and every alert must have a firing and a
//! not-firing unit test. The recording rules (`tidal-recording.rules.yaml`, which the stack's
//! Prometheus loads) are promtool-tested too, each read by a panel whose data comes from it.
//! Finally the workload-scaling dashboard's own desired-vs-current and
//! value-vs-target queries, over the test's run (`query_range`), are written to
//! `scaling.csv` and drawn by `tidal-sim plot` as `scaling.svg`, in `target/e2e-pictures/`
//! (in `docs/img/` with `TIDAL_UPDATE_PICTURES=1`, which refreshes the README's picture).
//!
//! One test per dashboard (its shape and series, then its variables and panels on the data),
//! one for the alert and recording rules, one for the shipped set of dashboards and one for
//! the picture, so that a failure names what failed. The scenario that makes the data is set
//! up once per test binary and shared by them (see "the shared scenario" below).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use rdkafka::ClientConfig as RdConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::{Value, json};
use tidal_core::schema;
use tidal_e2e::builders::{KwokDeployment, Placement, policy};
use tidal_e2e::cgroups::{CgroupGuard, hierarchies, mkdirs, set_container_id};
use tidal_e2e::kafka::{commit, create_topic, produce};
use tidal_e2e::manifests::{ScalerRbac, ensure_crd};
use tidal_e2e::{
    ChildGuard, Stack, free_port, in_namespace, repo_root, unique, wait_for, workspace_bin,
};

type R = anyhow::Result<()>;

/// The dashboards this repository ships (and `dashboards/kustomization.yaml` installs).
const DASHBOARDS: &[&str] = &[
    "cluster-overview.json",
    "kafka-lag.json",
    "tidal-self.json",
    "workload-scaling.json",
];

/// The rule files, each with its `promtool test rules` file (`<name>.tests.yaml`).
const RULE_FILES: &[&str] = &["tidal-agent", "tidal-scaler"];

/// How long all panel expressions of a dashboard together may take to return data.
const PANEL_DEADLINE: Duration = Duration::from_secs(120);

/// A dashboard or rule check that failed; each names the file, the panel or alert, and the
/// expression as sent.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error("{file}: {what}")]
    Shape { file: String, what: String },
    #[error(
        "{file}: panel \"{panel}\" uses ${var}, which this test gives no value\n  expr: {expr}"
    )]
    Unsubstituted {
        file: String,
        panel: String,
        var: String,
        expr: String,
    },
    #[error("{file}: variable ${var}: {what}\n  query: {query}")]
    Variable {
        file: String,
        var: String,
        what: String,
        query: String,
    },
    #[error("{file}: {name} is not in tidal_core::schema (typo, or a series nobody exports)")]
    UnknownSeries { file: String, name: String },
    #[error("{} panel expression(s) failed within {}s:\n{}", .0.len(), PANEL_DEADLINE.as_secs(), .0.join("\n"))]
    Panels(Vec<String>),
    #[error("{file}: alert {alert}: {what}\n  expr: {expr}")]
    Alert {
        file: String,
        alert: String,
        what: String,
        expr: String,
    },
    #[error("{file}: alert {alert} has no promtool case where it {case}")]
    Untested {
        file: String,
        alert: String,
        case: &'static str,
    },
    #[error("promtool {args}: {output}")]
    Promtool { args: String, output: String },
}

// ---------------------------------------------------------------- Prometheus

async fn query(url: &str, q: &str) -> anyhow::Result<Value> {
    tidal_e2e::prometheus_query(url, q).await
}

async fn query_range(url: &str, q: &str, start: f64, end: f64) -> anyhow::Result<Value> {
    let resp: Value = tidal_e2e::http()
        .get(format!("{url}/api/v1/query_range"))
        .query(&[
            ("query", q.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", "1".to_string()),
        ])
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(
        resp["status"] == "success",
        "query_range failed: {q}\n{resp}"
    );
    Ok(resp["data"].clone())
}

/// The samples of an instant-vector answer, or why it does not count as data.
fn finite_samples(data: &Value) -> Result<Vec<(Value, f64)>, String> {
    if data["resultType"] != "vector" {
        return Err(format!("not an instant vector: {}", data["resultType"]));
    }
    let result = data["result"].as_array().cloned().unwrap_or_default();
    if result.is_empty() {
        return Err("empty result".into());
    }
    result
        .into_iter()
        .map(|s| {
            let raw = s["value"][1].as_str().unwrap_or_default().to_string();
            match raw.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok((s["metric"].clone(), v)),
                _ => Err(format!("sample {raw:?} of {} is not finite", s["metric"])),
            }
        })
        .collect()
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- dashboards

/// A template variable: its name and, for a `query` variable, its query.
struct Variable {
    name: String,
    query: Option<String>,
}

/// A query panel: its title and the `expr` of each target.
struct Panel {
    title: String,
    exprs: Vec<String>,
}

/// A dashboard file (`file` is its name in dashboards/).
struct Dashboard {
    file: String,
    variables: Vec<Variable>,
    panels: Vec<Panel>,
}

/// Reads a dashboard and checks its shape: uid, a "Tidal / " title, the `tidal` tag, a
/// `datasource` variable that every query panel uses, unique panel ids, text panels with
/// content and no queries.
fn load_dashboard(path: &Path) -> anyhow::Result<Dashboard> {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shape = |what: String| CheckError::Shape {
        file: file.clone(),
        what,
    };
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path)?)
        .map_err(|e| shape(format!("not JSON: {e}")))?;
    if !d["uid"].as_str().is_some_and(|u| u.starts_with("tidal-")) {
        return Err(shape(format!("uid {} does not start with tidal-", d["uid"])).into());
    }
    if !d["title"]
        .as_str()
        .is_some_and(|t| t.starts_with("Tidal / "))
    {
        return Err(shape(format!(
            "title {} does not start with \"Tidal / \"",
            d["title"]
        ))
        .into());
    }
    if !d["tags"]
        .as_array()
        .is_some_and(|t| t.contains(&json!("tidal")))
    {
        return Err(shape("no \"tidal\" tag".into()).into());
    }
    let variables: Vec<Variable> = d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| Variable {
            name: v["name"].as_str().unwrap_or_default().to_string(),
            query: (v["type"] == "query")
                .then(|| v["query"]["query"].as_str().map(str::to_string))
                .flatten(),
        })
        .collect();
    if !variables.iter().any(|v| v.name == "datasource") {
        return Err(shape("no datasource variable".into()).into());
    }
    let mut ids = BTreeSet::new();
    let mut panels = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        if !ids.insert(p["id"].to_string()) {
            return Err(shape(format!("panel id {} is used twice", p["id"])).into());
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if p["type"] == "text" {
            if !targets.is_empty() || p["options"]["content"].as_str().is_none_or(str::is_empty) {
                return Err(
                    shape(format!("text panel \"{title}\": queries, or no content")).into(),
                );
            }
            continue;
        }
        if p["datasource"]["uid"] != "${datasource}" {
            return Err(shape(format!("panel \"{title}\" ignores $datasource")).into());
        }
        let mut exprs = Vec::new();
        for t in &targets {
            if t["datasource"]["uid"] != "${datasource}" {
                return Err(
                    shape(format!("panel \"{title}\": a target ignores $datasource")).into(),
                );
            }
            match t["expr"].as_str() {
                Some(e) if !e.trim().is_empty() => exprs.push(e.to_string()),
                _ => return Err(shape(format!("panel \"{title}\": a target has no expr")).into()),
            }
        }
        if exprs.is_empty() {
            return Err(shape(format!("panel \"{title}\" has no queries")).into());
        }
        panels.push(Panel { title, exprs });
    }
    if panels.is_empty() {
        return Err(shape("no query panels".into()).into());
    }
    Ok(Dashboard {
        file,
        variables,
        panels,
    })
}

/// Replaces `$name` and `${name}` by the test's value (longest names first); `Err(name)` for
/// a variable left over.
fn substitute(expr: &str, values: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut names: Vec<&&str> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = expr.to_string();
    for name in names {
        let value = &values[*name];
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    match out.find('$') {
        None => Ok(out),
        Some(i) => Err(out[i + 1..]
            .trim_start_matches('{')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()),
    }
}

/// Every `tidal_*` series name an expression mentions, with a histogram's `_bucket`, `_count`
/// or `_sum` suffix removed.
fn tidal_series(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("tidal_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |e| start + e);
        // A part of a recorded name (`level:metric:operations`) is not a series read.
        let recorded = (start > 0 && bytes[start - 1] == b':') || bytes.get(end) == Some(&b':');
        if boundary && !recorded {
            let name = &expr[start..end];
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| schema::ALL.contains(b)))
                .unwrap_or(name);
            out.insert(base.to_string());
        }
        i = end.max(start + 1);
    }
    out
}

/// What in `expr` could read another job's series beside Tidal's (issue #16, "series that
/// collide"): a `tidal_agent_*` or `tidal_scaler_*` series selected without its job
/// (`job="tidal-agent"`, `job="tidal-scaler"`), or a kubelet/cAdvisor or node_exporter name
/// read at all. Recorded names (`level:metric:operations`) carry no job: their rules select it.
fn foreign_reads(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !word(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && word(b[i]) {
            i += 1;
        }
        let token = &expr[start..i];
        let in_recorded_name = (start > 0 && b[start - 1] == b':') || b.get(i) == Some(&b':');
        let in_string = expr[..start].matches('"').count() % 2 == 1;
        if in_recorded_name || in_string {
            continue;
        }
        if schema::tidal_name(token).is_some() {
            out.push(format!(
                "{token} is a kubelet/cAdvisor or node_exporter name: read Tidal's {}",
                schema::tidal_name(token).unwrap_or_default()
            ));
            continue;
        }
        let job = if token.starts_with(schema::AGENT_PREFIX) {
            "tidal-agent"
        } else if token.starts_with(schema::SCALER_PREFIX) {
            "tidal-scaler"
        } else {
            continue;
        };
        let selector = expr[i..]
            .strip_prefix('{')
            .and_then(|rest| rest.split_once('}'))
            .map(|(inner, _)| inner);
        if !selector.is_some_and(|inner| inner.contains(&format!("job=\"{job}\""))) {
            out.push(format!("{token} is read without job=\"{job}\""));
        }
    }
    out
}

/// The Tidal series `expr` reads, each of `tidal_core::schema` and none read from another
/// job ([`foreign_reads`]); `bad` makes the error of a foreign read, naming the place.
fn checked_series(
    file: &str,
    expr: &str,
    bad: impl Fn(String) -> CheckError,
) -> Result<BTreeSet<String>, CheckError> {
    if let Some(why) = foreign_reads(expr).into_iter().next() {
        return Err(bad(why));
    }
    let series = tidal_series(expr);
    if let Some(name) = series.iter().find(|s| !schema::ALL.contains(&s.as_str())) {
        return Err(CheckError::UnknownSeries {
            file: file.to_string(),
            name: name.clone(),
        });
    }
    Ok(series)
}

#[test]
fn foreign_reads_are_found() {
    assert!(foreign_reads(
        "sum by (namespace) (rate(tidal_agent_container_cpu_usage_seconds_total{job=\"tidal-agent\", namespace=~\"$ns\"}[1m])) / namespace_pod:tidal_agent_container_cpu_request_cores:sum{namespace=\"a\"}"
    )
    .is_empty());
    assert!(
        foreign_reads("label_values(tidal_scaler_build_info{job=\"tidal-scaler\"}, instance)")
            .is_empty()
    );
    assert_eq!(
        foreign_reads(
            "sum(tidal_agent_container_cpu_usage_cores{namespace=\"a\"}) + tidal_scaler_leader"
        )
        .len(),
        2
    );
    let found =
        foreign_reads("sum(rate(container_cpu_usage_seconds_total{job=\"tidal-agent\"}[1m]))");
    assert!(
        found.len() == 1 && found[0].contains("tidal_agent_container_cpu_usage_seconds_total"),
        "{found:?}"
    );
    assert_eq!(foreign_reads("node_load1 > 2").len(), 1);
    // A recorded name is not a read of the series in its middle.
    assert!(
        tidal_series(
            "namespace_pod:tidal_agent_container_cpu_cfs_throttled_periods:ratio_rate1m{a=\"b\"}"
        )
        .is_empty()
    );
    assert_eq!(
        tidal_series("rate(tidal_scaler_cycle_duration_seconds_bucket{job=\"tidal-scaler\"}[1m])"),
        BTreeSet::from(["tidal_scaler_cycle_duration_seconds".to_string()])
    );
}

// ---------------------------------------------------------------- rule files

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: String,
    expr: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RuleTests {
    rule_files: Vec<String>,
    tests: Vec<RuleTestGroup>,
}

#[derive(Deserialize)]
struct RuleTestGroup {
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
}

#[derive(Deserialize)]
struct ExprTest {
    expr: String,
    #[serde(default)]
    exp_samples: Vec<Value>,
}

/// The recording rules' file and its promtool tests.
const RECORDING: &str = "tidal-recording";

#[derive(Deserialize)]
struct RecordingFile {
    groups: Vec<RecordingGroup>,
}

#[derive(Deserialize)]
struct RecordingGroup {
    rules: Vec<Recording>,
}

#[derive(Deserialize)]
struct Recording {
    record: String,
    expr: String,
}

/// promtool on the recording rules and their tests; then, per rule: a `level:metric:ops`
/// name, Tidal's agent job selected wherever a series is read (so a cAdvisor or node_exporter
/// series of the same name is never counted), series names from the schema, a promtool case
/// with an expected value, and a dashboard panel that reads it. Returns the recorded names.
fn check_recording_rules(dashboards: &[Dashboard]) -> anyhow::Result<BTreeSet<String>> {
    let dir = repo_root().join("manifests/rules");
    let (rules_file, tests_file) = (
        format!("{RECORDING}.rules.yaml"),
        format!("{RECORDING}.tests.yaml"),
    );
    promtool(&["check", "rules", &rules_file], &dir)?;
    promtool(&["test", "rules", &tests_file], &dir)?;
    let rules: RecordingFile = read_yaml(&dir.join(&rules_file))?;
    let tests: RuleTests = read_yaml(&dir.join(&tests_file))?;
    let cases: Vec<&ExprTest> = tests
        .tests
        .iter()
        .flat_map(|g| &g.promql_expr_test)
        .collect();
    let exprs: Vec<&str> = dashboards
        .iter()
        .flat_map(|d| d.panels.iter().flat_map(|p| &p.exprs))
        .map(String::as_str)
        .collect();
    let mut names = BTreeSet::new();
    for rule in rules.groups.iter().flat_map(|g| &g.rules) {
        let bad = |what: String| CheckError::Shape {
            file: rules_file.clone(),
            what: format!("{}: {what}\n  expr: {}", rule.record, rule.expr),
        };
        if rule.record.split(':').count() != 3 {
            return Err(bad("the name is not level:metric:operations".into()).into());
        }
        checked_series(&rules_file, &rule.expr, bad)?;
        if !cases
            .iter()
            .any(|c| c.expr == rule.record && !c.exp_samples.is_empty())
        {
            return Err(bad(format!("no promql_expr_test case in {tests_file}")).into());
        }
        let read = |e: &&str| {
            e.match_indices(&rule.record).any(|(at, _)| {
                let next = e[at + rule.record.len()..].chars().next();
                !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            })
        };
        if !exprs.iter().any(read) {
            return Err(bad("no dashboard panel reads it".into()).into());
        }
        names.insert(rule.record.clone());
    }
    anyhow::ensure!(!names.is_empty(), "{rules_file}: no recording rule");
    Ok(names)
}

#[derive(Deserialize)]
struct AlertTest {
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<Value>,
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)?;
    serde_norway::from_str(&text).map_err(|e| {
        CheckError::Shape {
            file: path.display().to_string(),
            what: e.to_string(),
        }
        .into()
    })
}

fn promtool(args: &[&str], dir: &Path) -> R {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()?;
    if !out.status.success() {
        return Err(CheckError::Promtool {
            args: args.join(" "),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
        .into());
    }
    Ok(())
}

/// promtool on every rule file and its tests; then, per alert: summary, description and a
/// severity, series names from the schema, and a unit test where it fires and one where it
/// does not.
fn check_rule_files() -> anyhow::Result<Vec<(String, Rule)>> {
    let dir = repo_root().join("manifests/rules");
    let mut all = Vec::new();
    for name in RULE_FILES {
        let (rules_file, tests_file) = (format!("{name}.rules.yaml"), format!("{name}.tests.yaml"));
        promtool(&["check", "rules", &rules_file], &dir)?;
        promtool(&["test", "rules", &tests_file], &dir)?;
        let rules: RuleFile = read_yaml(&dir.join(&rules_file))?;
        let tests: RuleTests = read_yaml(&dir.join(&tests_file))?;
        if tests.rule_files != [rules_file.clone()] {
            return Err(CheckError::Shape {
                file: tests_file,
                what: format!("rule_files is {:?}, not [{rules_file}]", tests.rule_files),
            }
            .into());
        }
        let cases: Vec<&AlertTest> = tests
            .tests
            .iter()
            .flat_map(|g| &g.alert_rule_test)
            .collect();
        for group in rules.groups {
            for rule in group.rules {
                let bad = |what: String| CheckError::Alert {
                    file: rules_file.clone(),
                    alert: rule.alert.clone(),
                    what,
                    expr: rule.expr.clone(),
                };
                for key in ["summary", "description"] {
                    if rule
                        .annotations
                        .get(key)
                        .is_none_or(|a| a.trim().is_empty())
                    {
                        return Err(
                            bad(format!("no {key} annotation (group {})", group.name)).into()
                        );
                    }
                }
                if !matches!(
                    rule.labels.get("severity").map(String::as_str),
                    Some("warning" | "critical")
                ) {
                    return Err(bad("severity must be warning or critical".into()).into());
                }
                checked_series(&rules_file, &rule.expr, bad)?;
                let mine = || cases.iter().filter(|c| c.alertname == rule.alert);
                for (case, found) in [
                    ("fires", mine().any(|c| !c.exp_alerts.is_empty())),
                    ("does not fire", mine().any(|c| c.exp_alerts.is_empty())),
                ] {
                    if !found {
                        return Err(CheckError::Untested {
                            file: tests_file.clone(),
                            alert: rule.alert.clone(),
                            case,
                        }
                        .into());
                    }
                }
                all.push((rules_file.clone(), rule));
            }
        }
    }
    Ok(all)
}

// ---------------------------------------------------------------- the scaler

/// A running `tidal-scaler run` and its log.
struct Scaler {
    _child: ChildGuard,
    addr: String,
    log: PathBuf,
}

impl Scaler {
    fn start(kubeconfig: &Path, ns: &str, identity: &str, args: &[&str]) -> anyhow::Result<Self> {
        let bin = workspace_bin("tidal-scaler");
        anyhow::ensure!(
            bin.exists(),
            "{} is missing: run `cargo build --bins` first",
            bin.display()
        );
        let addr = format!("127.0.0.1:{}", free_port()?);
        let log = std::env::temp_dir().join(format!("{}.log", unique(identity)));
        let file = std::fs::File::create(&log)?;
        let child = ChildGuard::spawn(
            Command::new(&bin)
                .arg("run")
                .args(["--listen", &addr])
                .args(["--namespace", ns, "--lease-namespace", ns])
                .args(["--identity", identity])
                .args(args)
                .env("KUBECONFIG", kubeconfig)
                .env("RUST_LOG", "info")
                .stdout(file.try_clone()?)
                .stderr(file),
        )?;
        Ok(Self {
            _child: child,
            addr,
            log,
        })
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `tidal_scaler_leader` as this scaler serves it.
    async fn leader(&self) -> Option<f64> {
        let body = tidal_e2e::http_get(format!("http://{}/metrics", self.addr))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{} ", schema::SCALER_LEADER)))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Scaler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

// ---------------------------------------------------------------- the shared scenario
//
// The scenario (real agent, two scalers, Kafka groups, Prometheus scraping them) is set up
// once per test binary, on a thread of its own with its own runtime, the first time a test
// asks for it ([`scenario`]); the tests only query Prometheus. Each test that uses it is a
// [`Participant`]: the last one to finish stops the scenario and waits for its teardown
// (namespace, RBAC, scrape targets, child processes), and fails if the teardown does. Which
// tests are the participants of this run is asked of the test binary itself (`--list` with
// this run's filters), so a filtered run tears down too.

/// The tests that use the shared scenario (each a [`Participant`]).
const SCENARIO_TESTS: &[&str] = &[
    "alert_and_recording_rules_work_on_real_data",
    "cluster_overview_dashboard_works_on_real_data",
    "kafka_lag_dashboard_works_on_real_data",
    "tidal_self_dashboard_works_on_real_data",
    "workload_scaling_dashboard_works_on_real_data",
    "workload_scaling_picture_is_drawn_from_real_data",
];

/// How long the picture waits for the other tests of the scenario to finish querying it.
const PICTURE_WAIT: Duration = Duration::from_secs(900);

/// What the tests query: the running scenario's names and addresses.
struct Ready {
    url: String,
    ns: String,
    agent: String,
    agent_group: String,
    /// The leading and the following scaler's addresses.
    scalers: (String, String),
    scaler_a_log: PathBuf,
    /// When the scalers started (Unix seconds), where the picture begins.
    started: f64,
    /// Set to stop new backlog, so that the picture ends on the settled state.
    calm: Arc<AtomicBool>,
}

impl Ready {
    /// The values the tests give the dashboards' variables.
    fn values(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("__rate_interval", "30s".to_string()),
            ("namespace", self.ns.clone()),
            ("node", self.agent.clone()),
            ("instance", self.agent.clone()),
            ("cluster", "stack".to_string()),
            ("group", self.agent_group.clone()),
            ("scaler", format!("{}|{}", self.scalers.0, self.scalers.1)),
            ("policy", "consumer|stuck".to_string()),
            ("workload", "web".to_string()),
        ])
    }

    /// The last lines of scaler-a's log.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.scaler_a_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// The scenario's side of the hand-over: where it says it is ready, and the signal to stop.
struct Hold {
    ready: std::sync::mpsc::Sender<Ready>,
    stop: tokio::sync::oneshot::Receiver<()>,
}

/// The scenario as the tests see it: ready (or why not), and how to stop it.
struct Scenario {
    ready: Result<Ready, String>,
    /// The stop signal and the scenario's thread (which returns the teardown's outcome);
    /// taken by the last participant.
    running: Mutex<Option<(tokio::sync::oneshot::Sender<()>, Teardown)>>,
}

type Teardown = std::thread::JoinHandle<Result<(), String>>;

static SCENARIO: OnceLock<Scenario> = OnceLock::new();

/// The shared scenario, started by the first test that asks (the others wait for it).
fn scenario() -> anyhow::Result<&'static Ready> {
    SCENARIO
        .get_or_init(start_scenario)
        .ready
        .as_ref()
        .map_err(|e| anyhow::anyhow!("the shared scenario did not start: {e}"))
}

fn start_scenario() -> Scenario {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let hold = Hold {
        ready: ready_tx,
        stop: stop_rx,
    };
    let spawned = std::thread::Builder::new()
        .name("dashboards-scenario".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(run_scenario(hold))
                .map_err(|e| format!("{e:#}"))
        });
    let thread = match spawned {
        Ok(t) => t,
        Err(e) => {
            return Scenario {
                ready: Err(format!("spawning its thread: {e}")),
                running: Mutex::new(None),
            };
        }
    };
    match ready_rx.recv() {
        Ok(ready) => Scenario {
            ready: Ok(ready),
            running: Mutex::new(Some((stop_tx, thread))),
        },
        // It ended before it was ready: its error says why.
        Err(_) => Scenario {
            ready: Err(match thread.join() {
                Ok(Err(e)) => e,
                Ok(Ok(())) => "it ended without data".into(),
                Err(_) => "its thread panicked".into(),
            }),
            running: Mutex::new(None),
        },
    }
}

async fn run_scenario(hold: Hold) -> R {
    let stack = Stack::load()?;
    ensure_crd(&stack)?;
    let client = stack.admin_client().await?;
    in_namespace(&client, "dash", |ns| {
        with_data(stack, client.clone(), ns, hold)
    })
    .await
}

/// How many participants have not finished yet, and a signal on each that does.
static REMAINING: OnceLock<(Mutex<usize>, Condvar)> = OnceLock::new();

fn remaining() -> &'static (Mutex<usize>, Condvar) {
    REMAINING.get_or_init(|| (Mutex::new(participants()), Condvar::new()))
}

/// How many of [`SCENARIO_TESTS`] this run runs: this test binary's own `--list` with this
/// run's arguments (its filters, `--skip`, `--exact`, `--ignored`); all of them if that
/// cannot be read.
fn participants() -> usize {
    let listed = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .args(std::env::args_os().skip(1))
            .arg("--list")
            .output()
    });
    let names: BTreeSet<String> = match listed {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .map(str::to_string)
            .collect(),
        _ => BTreeSet::new(),
    };
    match SCENARIO_TESTS
        .iter()
        .filter(|t| names.contains(**t))
        .count()
    {
        0 => {
            eprintln!(
                "could not list this run's tests: the scenario stops after all of {SCENARIO_TESTS:?}"
            );
            SCENARIO_TESTS.len()
        }
        n => n,
    }
}

/// A test of the shared scenario: the last to finish ([`Participant::finish`], or dropped
/// on a panic) stops the scenario and waits for its teardown.
struct Participant {
    finished: bool,
}

impl Participant {
    /// This test, which must be one of [`SCENARIO_TESTS`] (libtest names each test's thread
    /// after the test), or the count would end the scenario under a running test.
    fn join() -> anyhow::Result<Self> {
        let me = std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string();
        anyhow::ensure!(
            SCENARIO_TESTS.contains(&me.as_str()),
            "test {me:?} uses the shared scenario but is not in SCENARIO_TESTS"
        );
        remaining();
        Ok(Self { finished: false })
    }

    /// The test's outcome, and the teardown's when this test is the last.
    fn finish(mut self, result: R) -> R {
        self.finished = true;
        match (result, leave()) {
            (result, Ok(())) => result,
            (Ok(()), Err(torn)) => Err(torn),
            (Err(e), Err(torn)) => Err(anyhow::anyhow!("{e:#}\n\nand then {torn:#}")),
        }
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        if !self.finished
            && let Err(e) = leave()
        {
            eprintln!("{e:#}");
        }
    }
}

/// One participant fewer; the last stops the scenario and returns its teardown's outcome.
fn leave() -> R {
    let (count, changed) = remaining();
    let last = {
        let mut left = count.lock().unwrap_or_else(|e| e.into_inner());
        *left = left.saturating_sub(1);
        changed.notify_all();
        *left == 0
    };
    let running = SCENARIO.get().and_then(|s| {
        s.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_if(|_| last)
    });
    let Some((stop, thread)) = running else {
        return Ok(());
    };
    let _ = stop.send(());
    match thread.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow::anyhow!(
            "the shared scenario's teardown failed: {e}"
        )),
        Err(_) => Err(anyhow::anyhow!(
            "the shared scenario's thread panicked in its teardown"
        )),
    }
}

/// Waits until this test is the only participant left (every other one has finished).
fn wait_for_the_others(timeout: Duration) -> R {
    let (count, changed) = remaining();
    let left = count.lock().unwrap_or_else(|e| e.into_inner());
    let (left, waited) = changed
        .wait_timeout_while(left, timeout, |left| *left > 1)
        .unwrap_or_else(|e| e.into_inner());
    anyhow::ensure!(
        !waited.timed_out(),
        "{} other test(s) of the scenario still running after {}s",
        *left - 1,
        timeout.as_secs()
    );
    Ok(())
}

/// Runs `check` on this test's own runtime against the ready scenario; an error carries the
/// tail of scaler-a's log.
fn with_scenario<F: Future<Output = R>>(check: impl FnOnce(&'static Ready) -> F) -> R {
    let ready = scenario()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(check(ready))
        .map_err(|e| anyhow::anyhow!("{e}\nscaler-a log:\n{}", ready.tail()))
}

/// One dashboard: its shape and series (no stack needed), then every variable and panel
/// expression on the scenario's data.
fn dashboard_works_on_real_data(file: &str) -> R {
    let me = Participant::join()?;
    let result = (|| {
        let dashboard = load_dashboard(&repo_root().join("dashboards").join(file))?;
        dashboard_series(&dashboard)?;
        with_scenario(|ready| async move {
            let values = ready.values();
            let boards = std::slice::from_ref(&dashboard);
            check_variables(&ready.url, boards, &values).await?;
            let checked = check_panels(&ready.url, boards, &values).await?;
            eprintln!("{file}: {checked} expressions returned finite data");
            Ok(())
        })
    })();
    me.finish(result)
}

// ---------------------------------------------------------------- the tests

#[test]
fn cluster_overview_dashboard_works_on_real_data() -> R {
    dashboard_works_on_real_data("cluster-overview.json")
}

#[test]
fn kafka_lag_dashboard_works_on_real_data() -> R {
    dashboard_works_on_real_data("kafka-lag.json")
}

#[test]
fn tidal_self_dashboard_works_on_real_data() -> R {
    dashboard_works_on_real_data("tidal-self.json")
}

#[test]
fn workload_scaling_dashboard_works_on_real_data() -> R {
    dashboard_works_on_real_data("workload-scaling.json")
}

/// The shipped set: the four dashboards, in the ConfigMap, every series they read in the
/// schema and every scaler series on some panel (no stack needed).
#[test]
fn the_shipped_dashboards_are_the_four_and_show_every_scaler_series() -> R {
    let dashboards = load_dashboards()?;
    anyhow::ensure!(dashboards.len() == DASHBOARDS.len());
    Ok(())
}

/// promtool on the alert and recording rules and their tests (no stack needed), then every
/// alert expression on the scenario's data.
#[test]
fn alert_and_recording_rules_work_on_real_data() -> R {
    let me = Participant::join()?;
    let result = (|| {
        let rules = check_rule_files()?;
        let dashboards = load_dashboards()?;
        // The panels on recorded series get their data from the stack's Prometheus, which
        // loads this file (scripts/stack.sh): the panel checks fail if it does not.
        let recorded = check_recording_rules(&dashboards)?;
        eprintln!("{} recording rules, each read by a panel", recorded.len());
        with_scenario(|ready| async move {
            let (leader, follower) = &ready.scalers;
            check_alerts(&ready.url, &rules, (leader, follower)).await
        })
    })();
    me.finish(result)
}

/// The picture, once every other test of the scenario has queried it: no new backlog, so
/// it ends on the settled state.
#[test]
fn workload_scaling_picture_is_drawn_from_real_data() -> R {
    let me = Participant::join()?;
    let result = (|| {
        let board = load_dashboard(&repo_root().join("dashboards/workload-scaling.json"))?;
        dashboard_series(&board)?;
        // Started (or its failure known) before the wait, whichever test came first.
        scenario()?;
        wait_for_the_others(PICTURE_WAIT)?;
        with_scenario(|ready| async move {
            ready.calm.store(true, Ordering::Relaxed);
            picture(ready, &board).await
        })
    })();
    me.finish(result)
}

/// The four dashboards, in the ConfigMap of `dashboards/kustomization.yaml`, each series they
/// name in the schema, and every scaler series of the schema on some panel.
fn load_dashboards() -> anyhow::Result<Vec<Dashboard>> {
    let dir = repo_root().join("dashboards");
    let mut found: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|f| f.ends_with(".json"))
        .collect();
    found.sort();
    anyhow::ensure!(
        found == DASHBOARDS,
        "{}: dashboards {found:?}, expected {DASHBOARDS:?}",
        dir.display()
    );
    let kustomization: Value = read_yaml(&dir.join("kustomization.yaml"))?;
    let files = &kustomization["configMapGenerator"][0]["files"];
    if files != &json!(DASHBOARDS) {
        return Err(CheckError::Shape {
            file: "dashboards/kustomization.yaml".into(),
            what: format!("the ConfigMap holds {files}, expected {DASHBOARDS:?}"),
        }
        .into());
    }
    let dashboards: Vec<Dashboard> = found
        .iter()
        .map(|f| load_dashboard(&dir.join(f)))
        .collect::<anyhow::Result<_>>()?;
    let mut used = BTreeSet::new();
    for d in &dashboards {
        used.extend(dashboard_series(d)?);
    }
    for name in schema::ALL
        .iter()
        .filter(|n| n.starts_with(schema::SCALER_PREFIX))
    {
        anyhow::ensure!(
            used.contains(*name),
            "scaler series {name} (tidal_core::schema) is on no dashboard panel"
        );
    }
    Ok(dashboards)
}

/// The Tidal series a dashboard's panels and variable queries read, each checked by
/// [`checked_series`].
fn dashboard_series(d: &Dashboard) -> anyhow::Result<BTreeSet<String>> {
    let mut used = BTreeSet::new();
    let queries = d.variables.iter().filter_map(|v| v.query.as_deref());
    for expr in d
        .panels
        .iter()
        .flat_map(|p| &p.exprs)
        .map(String::as_str)
        .chain(queries)
    {
        used.extend(checked_series(&d.file, expr, |why| CheckError::Shape {
            file: d.file.clone(),
            what: format!("{why}\n  expr: {expr}"),
        })?);
    }
    Ok(used)
}

/// The shared scenario, in namespace `ns`: everything that produces the data, held until
/// the last test has queried it (`hold`).
async fn with_data(stack: Stack, client: kube::Client, ns: String, hold: Hold) -> R {
    let node = stack
        .kwok_nodes()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no KWOK node"))?;
    // A Burstable pod on the KWOK node, with a real cgroup on this machine.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.invalid/web:1",
            "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "500m"}}}]}
    }))?;
    let uid = pods
        .create(&PostParams::default(), &pod)
        .await?
        .metadata
        .uid
        .ok_or_else(|| anyhow::anyhow!("no uid"))?;
    let cid = format!(
        "{:064x}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos()
    );
    set_container_id(&pods, "web", &cid).await?;
    let bases = hierarchies(Path::new("/sys/fs/cgroup"));
    let mut guard = CgroupGuard(Vec::new());
    let rel = PathBuf::from(format!("kubepods/burstable/pod{uid}/{cid}"));
    mkdirs(&bases, &rel, &mut guard)?;
    // A CPU quota of half a core (v1 cpu controller or v2 cpu.max), so throttling is real.
    for b in &bases {
        let (v1, v2) = (
            b.join(&rel).join("cpu.cfs_quota_us"),
            b.join(&rel).join("cpu.max"),
        );
        if v1.exists() {
            std::fs::write(&v1, "50000")?;
        } else if v2.exists() {
            std::fs::write(&v2, "50000 100000")?;
        }
    }
    let burner = ChildGuard::spawn(Command::new("sh").args(["-c", "while :; do :; done"]))?;
    for b in &bases {
        std::fs::write(b.join(&rel).join("cgroup.procs"), burner.0.id().to_string())?;
    }

    // Kafka: a group with lag that drains (consumer faster than producer).
    let bootstrap = stack.kafka_bootstrap()?.to_string();
    let (topic, group) = (unique("dash-t"), unique("dash-g"));
    let admin: AdminClient<DefaultClientContext> = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    for r in admin
        .create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (bootstrap, topic, group, stop) = (
            bootstrap.clone(),
            topic.clone(),
            group.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let producer: FutureProducer = RdConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()?;
            let committer: BaseConsumer = RdConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", &group)
                .create()?;
            let (mut produced, mut committed) = (0i64, 0i64);
            for i in 0..600 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let burst = if i < 5 { 200 } else { 10 };
                for _ in 0..burst {
                    for p in 0..2 {
                        producer
                            .send(
                                FutureRecord::<(), _>::to(&topic).payload("x").partition(p),
                                Duration::from_secs(10),
                            )
                            .await
                            .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
                    }
                }
                produced += burst;
                committed = (committed + 40).min(produced);
                let mut tpl = TopicPartitionList::new();
                for p in 0..2 {
                    tpl.add_partition_offset(&topic, p, Offset::Offset(committed))?;
                }
                committer.commit(&tpl, CommitMode::Sync)?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            anyhow::Ok(())
        })
    };

    // The agent, scraped by the stack's Prometheus as job tidal-agent.
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let cfg = std::env::temp_dir().join(format!("{}.json", unique("dash-kafka")));
    std::fs::write(
        &cfg,
        // A second cluster whose broker refuses connections (a closed local port): the
        // sampler's errors by reason (the self dashboard's panel) come from a real failure,
        // not from whatever the host happens to do.
        json!({"interval_seconds": 1, "clusters": [
            {"name": "stack", "bootstrap": [bootstrap], "groups": format!("^{group}$")},
            {"name": "refused", "bootstrap": ["127.0.0.1:9"], "groups": "^none$"},
        ]})
        .to_string(),
    )?;
    let _agent = ChildGuard::spawn(
        Command::new(workspace_bin("tidal-agent"))
            .args([
                "--listen",
                &addr,
                "--node-name",
                &node,
                "--interval-seconds",
                "1",
            ])
            .arg("--kafka-config")
            .arg(&cfg)
            .env("KUBECONFIG", stack.var("TIDAL_KUBECONFIG")?),
    )?;
    let _target = stack.register_scrape_target(&unique("agent-dash"), &addr, &[])?;

    let rbac = ScalerRbac::install(&stack, &client, &ns).await?;
    let fixture = Fixture {
        stack: &stack,
        client: &client,
        ns: &ns,
        node: &node,
        kubeconfig: &rbac.kubeconfig,
        agent: &addr,
        agent_group: &group,
    };
    let result = fixture.with_scalers(hold).await;
    let removed = rbac.remove(&stack);
    stop.store(true, Ordering::Relaxed);
    let loaded = load.await;
    drop(burner);
    let _ = std::fs::remove_file(cfg);
    result?;
    removed?;
    loaded??;
    Ok(())
}

/// What the scaler part of the test works with.
struct Fixture<'a> {
    stack: &'a Stack,
    client: &'a kube::Client,
    ns: &'a str,
    node: &'a str,
    kubeconfig: &'a Path,
    agent: &'a str,
    agent_group: &'a str,
}

impl Fixture<'_> {
    async fn with_scalers(&self, hold: Hold) -> R {
        let (stack, ns) = (self.stack, self.ns);
        let bootstrap = stack.kafka_bootstrap()?.to_string();
        let (topic, group) = (unique("dash-sc-t"), unique("dash-sc-g"));
        create_topic(&bootstrap, &topic, 3).await?;
        commit(
            &bootstrap,
            &group,
            &[(&topic, 0, 0), (&topic, 1, 0), (&topic, 2, 0)],
        )?;
        let deploys: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let policies: Api<tidal_scaler::api::ScalingPolicy> =
            Api::namespaced(self.client.clone(), ns);
        let lag = |cluster: &str| json!([{"name": "lag", "kafkaLag": {"cluster": cluster, "group": group, "topics": [topic], "lagPerReplica": 10}}]);
        // "stuck" is a configured cluster whose broker address nothing listens on.
        for (name, cluster) in [("consumer", "stack"), ("stuck", "stuck")] {
            deploys
                .create(
                    &PostParams::default(),
                    &KwokDeployment::new(name, Placement::Node(self.node))
                        .requests("10m", "16Mi")
                        .build()?,
                )
                .await?;
            let spec = json!({
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": 1, "maxReplicas": 4, "metrics": lag(cluster),
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 2}}
            });
            policies
                .create(&PostParams::default(), &policy(name, spec)?)
                .await?;
        }

        // Two replicas with leader election, as the base Deployment runs them.
        let started = now_unix();
        let cluster = format!("stack={bootstrap}");
        let job = [("job", "tidal-scaler")];
        let a = Scaler::start(
            self.kubeconfig,
            ns,
            "scaler-a",
            &[
                "--kafka-cluster",
                &cluster,
                "--kafka-cluster",
                "stuck=127.0.0.1:1",
            ],
        )?;
        let _ta = stack.register_scrape_target(&unique("scaler-dash-a"), &a.addr, &job)?;
        wait_for("scaler-a to lead", Duration::from_secs(30), || async {
            (a.leader().await == Some(1.0)).then_some(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}; scaler-a log:\n{}", a.tail()))?;
        let b = Scaler::start(
            self.kubeconfig,
            ns,
            "scaler-b",
            &[
                "--kafka-cluster",
                &cluster,
                "--kafka-cluster",
                "stuck=127.0.0.1:1",
            ],
        )?;
        let _tb = stack.register_scrape_target(&unique("scaler-dash-b"), &b.addr, &job)?;
        wait_for("scaler-b to follow", Duration::from_secs(30), || async {
            (b.leader().await == Some(0.0)).then_some(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}; scaler-b log:\n{}", b.tail()))?;

        // A backlog that comes and goes: after a few idle seconds, 120 messages (12 replicas'
        // worth at 10 each, capped at the 3 partitions), consumed 8s later; the policy scales
        // 1 -> 3 -> 1 every 16s.
        let calm = Arc::new(AtomicBool::new(false));
        let cycler = {
            let (bootstrap, topic, group) = (bootstrap.clone(), topic.clone(), group.clone());
            let calm = calm.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(4)).await;
                let mut end = 0;
                for _ in 0..40 {
                    if calm.load(Ordering::Relaxed) {
                        break;
                    }
                    produce(&bootstrap, &topic, &[40, 40, 40]).await?;
                    end += 40;
                    tokio::time::sleep(Duration::from_secs(8)).await;
                    commit(
                        &bootstrap,
                        &group,
                        &[(&topic, 0, end), (&topic, 1, end), (&topic, 2, end)],
                    )?;
                    tokio::time::sleep(Duration::from_secs(8)).await;
                }
                anyhow::Ok(())
            })
        };
        let result = self
            .serve((&a, &b), started, calm, hold)
            .await
            .map_err(|e| anyhow::anyhow!("{e}\nscaler-a log:\n{}", a.tail()));
        if cycler.is_finished() {
            cycler.await??;
        } else {
            cycler.abort();
        }
        result
    }

    /// Waits until Prometheus has seen three full up-and-down rounds, then hands the
    /// scenario to the tests ([`Hold::ready`]) and keeps it running until the last of them
    /// has finished ([`Hold::stop`]).
    async fn serve(
        &self,
        (a, b): (&Scaler, &Scaler),
        started: f64,
        calm: Arc<AtomicBool>,
        hold: Hold,
    ) -> R {
        let url = self.stack.prometheus_url()?.to_string();
        let ns = self.ns;
        // Three full up-and-down rounds seen by Prometheus: both directions have data, every
        // 30s window holds a scale write (actuation latency), and the picture shows a few.
        let downs = format!(
            "sum({}{{namespace=\"{ns}\", policy=\"consumer\", direction=\"down\"}})",
            schema::SCALER_SCALE_EVENTS_TOTAL
        );
        wait_for(
            "Prometheus to record three scale-downs of the consumer",
            Duration::from_secs(150),
            || async {
                let d = query(&url, &downs).await.ok()?;
                let (_, v) = finite_samples(&d).ok()?.into_iter().next()?;
                (v >= 3.0).then_some(())
            },
        )
        .await?;
        let Hold { ready, stop } = hold;
        let _ = ready.send(Ready {
            url,
            ns: ns.to_string(),
            agent: self.agent.to_string(),
            agent_group: self.agent_group.to_string(),
            scalers: (a.addr.clone(), b.addr.clone()),
            scaler_a_log: a.log.clone(),
            started,
            calm,
        });
        // Every sender gone (the tests' process ending) counts as the signal too.
        let _ = stop.await;
        Ok(())
    }
}

/// The workload-scaling dashboard's desired-vs-current and value-vs-target queries for the
/// consumer, over the run: docs/img/scaling.csv, drawn as docs/img/scaling.svg.
async fn picture(scenario: &Ready, board: &Dashboard) -> R {
    let (url, started) = (scenario.url.as_str(), scenario.started);
    let values: BTreeMap<&str, String> = BTreeMap::from([
        ("namespace", scenario.ns.to_string()),
        ("policy", "consumer".to_string()),
    ]);
    let exprs = |title: &str| -> anyhow::Result<Vec<String>> {
        let panel = board
            .panels
            .iter()
            .find(|p| p.title == title)
            .ok_or_else(|| anyhow::anyhow!("workload-scaling.json: no panel \"{title}\""))?;
        panel
            .exprs
            .iter()
            .map(|e| {
                substitute(e, &values).map_err(|v| anyhow::anyhow!("\"{title}\": ${v} left in {e}"))
            })
            .collect()
    };
    let replicas = exprs("Desired vs current replicas")?;
    let metric = exprs("Metric value vs target")?;
    // Settled at one replica, and a few seconds of it (bounded) on the right of the chart.
    for expr in &replicas {
        wait_for(
            "the consumer back at 1 replica in Prometheus",
            Duration::from_secs(30),
            || async {
                let (_, v) = finite_samples(&query(url, expr).await.ok()?)
                    .ok()?
                    .into_iter()
                    .next()?;
                (v == 1.0).then_some(())
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n  expr: {expr}"))?;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let columns = [
        ("desired replicas", &replicas[0]),
        ("current replicas", &replicas[1]),
        ("lag per replica@right", &metric[0]),
        ("target lag per replica@right", &metric[1]),
    ];
    let end = now_unix();
    let mut table: BTreeMap<i64, Vec<Option<f64>>> = BTreeMap::new();
    for (i, (name, expr)) in columns.iter().enumerate() {
        let data = query_range(url, expr, started, end).await?;
        let series = data["result"].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(
            series.len() == 1,
            "picture: {name}: {} series, expected 1\n  expr: {expr}",
            series.len()
        );
        for point in series[0]["values"].as_array().into_iter().flatten() {
            let (Some(t), Some(v)) = (
                point[0].as_f64(),
                point[1].as_str().and_then(|v| v.parse::<f64>().ok()),
            ) else {
                continue;
            };
            let row = table
                .entry((t - started).round() as i64)
                .or_insert_with(|| vec![None; columns.len()]);
            row[i] = v.is_finite().then_some(v);
        }
    }
    let column = |i: usize| table.values().filter_map(move |r| r[i]);
    let (lo, hi) = column(0).fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    anyhow::ensure!(
        lo == 1.0 && hi == 3.0,
        "picture: desired replicas ranged {lo}..{hi}, expected 1..3 (up to the partition count and back)"
    );
    let mut csv = format!(
        "# tests/tests/dashboards.rs: the workload-scaling dashboard's queries for a kafkaLag\n\
             # policy (10 messages per replica, 3 partitions) while a backlog of 120 comes and goes.\n\
             # Lag per replica as the HPA sees it: capped at partitions x target, over replicas.\n\
             t,{}\n",
        columns.map(|(n, _)| n).join(",")
    );
    for (t, row) in &table {
        let cells: Vec<String> = row
            .iter()
            .map(|v| v.map(|v| format!("{v}")).unwrap_or_default())
            .collect();
        csv.push_str(&format!("{t},{}\n", cells.join(",")));
    }
    // The committed picture (docs/img) is refreshed only on request, so a test run leaves
    // the working tree clean; otherwise it goes to target/e2e-pictures.
    let dir = if std::env::var_os("TIDAL_UPDATE_PICTURES").is_some() {
        repo_root().join("docs/img")
    } else {
        repo_root().join("target/e2e-pictures")
    };
    std::fs::create_dir_all(&dir)?;
    let (csv_path, svg_path) = (dir.join("scaling.csv"), dir.join("scaling.svg"));
    std::fs::write(&csv_path, csv)?;
    let bin = workspace_bin("tidal-sim");
    let out = Command::new(&bin)
        .arg("plot")
        .arg("--input")
        .arg(&csv_path)
        .arg("--output")
        .arg(&svg_path)
        .args([
            "--title",
            "ScalingPolicy on Kafka lag: desired vs current replicas (Prometheus)",
            "--y-label",
            "replicas",
            "--y2-label",
            "messages per replica",
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "tidal-sim plot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&svg_path)?;
    anyhow::ensure!(
        svg.contains("<svg") && svg.contains("desired replicas"),
        "{}: not the chart",
        svg_path.display()
    );
    eprintln!("wrote {} and {}", csv_path.display(), svg_path.display());
    Ok(())
}

/// Every query variable's `label_values(selector, label)`, run as `count by (label)
/// (selector)`, must list the test's value(s) for it; every variable must have a test value.
async fn check_variables(
    url: &str,
    dashboards: &[Dashboard],
    values: &BTreeMap<&str, String>,
) -> R {
    for d in dashboards {
        for v in d.variables.iter().filter(|v| v.name != "datasource") {
            let err = |what: String, query: &str| CheckError::Variable {
                file: d.file.clone(),
                var: v.name.clone(),
                what,
                query: query.to_string(),
            };
            let Some(want) = values.get(v.name.as_str()) else {
                return Err(err("no value in this test".into(), "").into());
            };
            let Some(q) = &v.query else { continue };
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .and_then(|s| s.rsplit_once(','))
                .ok_or_else(|| err("not label_values(<selector>, <label>)".into(), q))?;
            let (selector, label) = (inner.0.trim(), inner.1.trim());
            let selector = substitute(selector, values)
                .map_err(|var| err(format!("${var} has no value in this test"), q))?;
            let promql = format!("count by ({label}) ({selector})");
            wait_for(
                &format!("{}: ${}", d.file, v.name),
                Duration::from_secs(60),
                || async {
                    let data = query(url, &promql).await.ok()?;
                    let listed: BTreeSet<&str> = data["result"]
                        .as_array()?
                        .iter()
                        .filter_map(|s| s["metric"][label].as_str())
                        .collect();
                    want.split('|').all(|w| listed.contains(w)).then_some(())
                },
            )
            .await
            .map_err(|e| err(format!("does not list {want}: {e}"), &promql))?;
        }
    }
    Ok(())
}

/// Polls every panel expression until each returns a non-empty vector of finite numbers, or
/// [`PANEL_DEADLINE`] passes; then reports every one that did not, with the reason.
async fn check_panels(
    url: &str,
    dashboards: &[Dashboard],
    values: &BTreeMap<&str, String>,
) -> anyhow::Result<usize> {
    let mut pending: Vec<(String, String, String)> = Vec::new();
    for d in dashboards {
        for p in &d.panels {
            for expr in &p.exprs {
                let q = substitute(expr, values).map_err(|var| CheckError::Unsubstituted {
                    file: d.file.clone(),
                    panel: p.title.clone(),
                    var,
                    expr: expr.clone(),
                })?;
                pending.push((d.file.clone(), p.title.clone(), q));
            }
        }
    }
    let total = pending.len();
    let deadline = Instant::now() + PANEL_DEADLINE;
    let mut failures: BTreeMap<usize, String> = BTreeMap::new();
    let mut remaining: Vec<usize> = (0..total).collect();
    while !remaining.is_empty() {
        let mut next = Vec::new();
        for i in remaining {
            let (file, title, q) = &pending[i];
            let why = match query(url, q).await {
                Ok(data) => finite_samples(&data).err(),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = why {
                failures.insert(
                    i,
                    format!("  {file}: panel \"{title}\": {why}\n    expr: {q}"),
                );
                next.push(i);
            } else {
                failures.remove(&i);
            }
        }
        remaining = next;
        if remaining.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if !failures.is_empty() {
        return Err(CheckError::Panels(failures.into_values().collect()).into());
    }
    Ok(total)
}

/// What an alert expression must return against the live data of this test.
enum Live {
    /// It evaluates to an instant vector (anything else depends on timing).
    Evaluates,
    /// Nothing for this test's own scalers: the situation it alerts on is not the case here.
    /// Other scalers Prometheus scrapes (the README's in-cluster one, which saw earlier
    /// tests kill the API server) may rightly fire it.
    Empty,
    /// A series for the leading scaler: here, the unreachable broker's errors.
    LeaderSeries,
}

fn live(alert: &str) -> Live {
    match alert {
        "TidalScalerNotReconciling" | "TidalScalerNoLeader" | "TidalScalerWriteErrors" => {
            Live::Empty
        }
        "TidalScalerInputErrors" => Live::LeaderSeries,
        _ => Live::Evaluates,
    }
}

async fn check_alerts(url: &str, rules: &[(String, Rule)], (leader, follower): (&str, &str)) -> R {
    for (file, rule) in rules {
        let bad = |what: String| CheckError::Alert {
            file: file.clone(),
            alert: rule.alert.clone(),
            what,
            expr: rule.expr.clone(),
        };
        let d = query(url, &rule.expr)
            .await
            .map_err(|e| bad(e.to_string()))?;
        if d["resultType"] != "vector" {
            return Err(bad(format!("not an instant vector: {d}")).into());
        }
        let result = d["result"].as_array().cloned().unwrap_or_default();
        match live(&rule.alert) {
            Live::Evaluates => {}
            Live::Empty => {
                let ours: Vec<_> = result
                    .iter()
                    .filter(|s| {
                        s["metric"]["instance"] == leader || s["metric"]["instance"] == follower
                    })
                    .collect();
                if !ours.is_empty() {
                    return Err(bad(format!(
                        "expected nothing for {leader} and {follower}, got {ours:?}"
                    ))
                    .into());
                }
            }
            Live::LeaderSeries => {
                if !result.iter().any(|s| s["metric"]["instance"] == leader) {
                    return Err(
                        bad(format!("no series for the leader {leader}: {result:?}")).into(),
                    );
                }
            }
        }
    }
    Ok(())
}

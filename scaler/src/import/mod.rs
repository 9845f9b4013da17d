//! `tidal-scaler import`: an HPA (`autoscaling/v2`) or a KEDA ScaledObject
//! (`keda.sh/v1alpha1`) turned into an equivalent ScalingPolicy, with a note for every field
//! that has no exact equivalent (docs/migration.md).
//!
//! Pure: a parsed document in, a [`ScalingPolicy`] and its [`Note`]s out. The policy is
//! checked with the same validation the controller applies ([`ScalingPolicySpec::validate`]),
//! so what `import` prints is a policy the scaler accepts.
//!
//! - [`hpa`]: `HorizontalPodAutoscaler` (metrics, behavior, bounds);
//! - [`keda`]: `ScaledObject` (the `kafka`, `cpu`, `memory` and `prometheus` triggers, the
//!   HPA behavior, fallback, bounds, the pause annotations).

pub mod hpa;
pub mod keda;
mod source;

use std::fmt;

use serde_json::Value;

use crate::api::{ScalingPolicy, ScalingPolicySpec};

/// How far a field carried over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// Carried over, but the result depends on something `import` cannot see (a query
    /// guessed from an adapter's metric name, a Kafka cluster to configure): check it.
    Review,
    /// Tidal has no such setting; what it does instead is said.
    NoEquivalent,
}

/// One remark about one field of the source object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The source field, e.g. `spec.fallback` or `spec.triggers[1].metadata.sasl`.
    pub field: String,
    pub kind: NoteKind,
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            NoteKind::Review => "review",
            NoteKind::NoEquivalent => "no equivalent",
        };
        write!(f, "{}: {kind}: {}", self.field, self.message)
    }
}

/// What `import` needs beyond the object.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The `kafkaLag.cluster` to write for Kafka triggers: a `--kafka-cluster` or
    /// `--kafka-config` name of the scaler (default `kafka`, with a note).
    pub kafka_cluster: Option<String>,
}

/// The policy made from one object, and the notes about it.
#[derive(Debug, Clone)]
pub struct Imported {
    /// `<Kind> <namespace>/<name>` of the source.
    pub source: String,
    pub policy: ScalingPolicy,
    pub notes: Vec<Note>,
}

/// An object that cannot be imported, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {problem}")]
pub struct ImportError {
    /// `<Kind> <name>` or the document's position.
    pub object: String,
    pub field: String,
    pub problem: String,
}

/// Imports one object (an HPA or a ScaledObject, as JSON). `List`s are expanded by
/// [`import_all`].
pub fn import(doc: &Value, options: &ImportOptions) -> Result<Imported, ImportError> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let object = format!("{} {name}", if kind.is_empty() { "object" } else { kind });
    let refuse = |field: &str, problem: String| ImportError {
        object: object.clone(),
        field: field.to_string(),
        problem,
    };
    let imported = match (api_version, kind) {
        ("autoscaling/v2", "HorizontalPodAutoscaler") => hpa::import(doc),
        (v, "HorizontalPodAutoscaler") => {
            return Err(refuse(
                "apiVersion",
                format!("{v:?}: only autoscaling/v2 is read (kubectl get hpa -o yaml serves it)"),
            ));
        }
        ("keda.sh/v1alpha1", "ScaledObject") => keda::import(doc, options),
        _ => {
            return Err(refuse(
                "kind",
                format!(
                    "{api_version}/{kind} is neither an autoscaling/v2 HorizontalPodAutoscaler \
                     nor a keda.sh/v1alpha1 ScaledObject"
                ),
            ));
        }
    }
    .map_err(|(field, problem)| refuse(&field, problem))?;
    imported
        .policy
        .spec
        .validate()
        .map_err(|e| refuse(e.field(), format!("the imported policy is invalid: {e}")))?;
    Ok(imported)
}

/// What [`import_all`] made of a YAML stream.
#[derive(Debug, Clone, Default)]
pub struct ImportRun {
    pub imported: Vec<Imported>,
    /// Objects left out on purpose, and why (the HPAs KEDA makes for its ScaledObjects).
    pub skipped: Vec<String>,
}

/// The ScaledObject that owns an HPA (KEDA makes one per ScaledObject), if any.
fn keda_owner(doc: &Value) -> Option<&str> {
    doc["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| {
            o["kind"] == "ScaledObject"
                && o["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("keda.sh/"))
        })?["name"]
        .as_str()
}

/// Imports every object of a YAML stream (documents, and the items of `kind: List`, as
/// `kubectl get -o yaml` prints them). Empty documents are skipped, and so are the HPAs KEDA
/// makes (their ScaledObject is what to import).
pub fn import_all(yaml: &str, options: &ImportOptions) -> Result<ImportRun, ImportError> {
    let mut docs = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(yaml).enumerate() {
        let value: Value =
            serde::Deserialize::deserialize(doc).map_err(|e: serde_norway::Error| ImportError {
                object: format!("document {}", i + 1),
                field: ".".into(),
                problem: format!("not YAML: {e}"),
            })?;
        if value.is_null() {
            continue;
        }
        if value["kind"] == "List" {
            docs.extend(value["items"].as_array().into_iter().flatten().cloned());
        } else {
            docs.push(value);
        }
    }
    let mut run = ImportRun::default();
    for doc in &docs {
        if doc["kind"] == "HorizontalPodAutoscaler"
            && let Some(owner) = keda_owner(doc)
        {
            run.skipped.push(format!(
                "HorizontalPodAutoscaler {}: made by KEDA for ScaledObject {owner}; import the \
                 ScaledObject instead",
                doc["metadata"]["name"].as_str().unwrap_or_default()
            ));
            continue;
        }
        run.imported.push(import(doc, options)?);
    }
    Ok(run)
}

/// `behavior` (the HPA's, or KEDA's `horizontalPodAutoscalerConfig.behavior`), field for
/// field. A served HPA writes `tolerance` as a quantity (`50m`); Tidal's is a number.
fn behavior(f: &source::Field) -> Result<Option<crate::api::Behavior>, source::Refusal> {
    if !f.is_set() {
        return Ok(None);
    }
    let mut value = f.value.clone();
    for rules in ["scaleUp", "scaleDown"] {
        let tolerance = &mut value[rules]["tolerance"];
        if let Some(q) = tolerance.as_str() {
            let v = crate::api::parse_quantity(q).map_err(|why| {
                f.get(rules)
                    .get("tolerance")
                    .refuse(format!("{q:?}: {why}"))
            })?;
            *tolerance = serde_json::json!(v);
        }
    }
    serde_path_to_error::deserialize(value)
        .map(Some)
        .map_err(|e| {
            let at = e.path().to_string();
            (format!("{}.{at}", f.path), e.into_inner().to_string())
        })
}

/// The policy as YAML, after comment lines naming its source and every note.
pub fn render(imported: &Imported) -> Result<String, serde_json::Error> {
    let mut out = format!(
        "# Imported from {} by tidal-scaler import.\n",
        imported.source
    );
    if imported.notes.is_empty() {
        out.push_str("# Every field has an exact equivalent.\n");
    }
    for n in &imported.notes {
        out.push_str(&format!("# {n}\n"));
    }
    out.push_str(&format!(
        "# Both would scale the same workload: the policy holds (ConflictingAutoscaler) until \
         the {} is deleted or taken over (annotation tidal.dev/take-over, docs/migration.md).\n",
        imported.source.split(' ').next().unwrap_or("original")
    ));
    let value = serde_json::to_value(&imported.policy)?;
    out.push_str(&crate::api::yaml::to_yaml(&value));
    Ok(out)
}

/// A ScalingPolicy named and placed like `doc`, with `spec`, annotated with its origin.
fn policy_like(doc: &Value, spec: ScalingPolicySpec, origin: &str) -> ScalingPolicy {
    let mut p = ScalingPolicy::new(doc["metadata"]["name"].as_str().unwrap_or_default(), spec);
    p.metadata.namespace = doc["metadata"]["namespace"].as_str().map(str::to_string);
    p.metadata.annotations =
        Some([("tidal.dev/imported-from".to_string(), origin.to_string())].into());
    p
}

/// Adds a note about `f` if the source sets it.
fn note(notes: &mut Vec<Note>, f: &source::Field, kind: NoteKind, message: String) {
    if f.is_set() {
        notes.push(Note {
            field: f.path.clone(),
            kind,
            message,
        });
    }
}

/// A metric name the CRD accepts (`^[a-z][a-z0-9_]*$`, at most 63), unique among `taken`.
fn metric_name(wanted: &str, taken: &mut Vec<String>) -> String {
    let mut name: String = wanted
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '_' }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "m_");
    }
    name.truncate(60);
    let base = name.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    taken.push(name.clone());
    name
}

#[cfg(test)]
mod tests;

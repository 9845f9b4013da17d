//! `tidal-scaler recommend`: the vertical recommender once, offline, on JSON
//! (`docs/decide.md`, "recommend").
//!
//! The input carries a ScalingPolicy's `spec.vertical` as in the CRD, usage samples and OOM
//! kills, and optionally a stored checkpoint to resume from. [`replay_and_recommend`] feeds
//! them to a [`VerticalState`] through the calls the controller makes (`observe`,
//! `record_oom`, `recommend`, with `VerticalConfig::try_from(&VerticalSpec)` and the status
//! conversion), so the numbers are the ones the controller would write to
//! `status.recommendations`.
//!
//! Errors name the input field (`samples[3].cpuCores: -1 must not be negative`), as `decide`'s
//! do.

use serde::{Deserialize, Serialize};

use crate::api;
use crate::engine::vertical::{
    ContainerRecommendation, ModelConfig, OomOutcome, Resources, VerticalCheckpoint,
    VerticalConfig, VerticalError, VerticalState,
};

/// The whole input document.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    /// `spec.vertical` of a ScalingPolicy, exactly as in the CRD (camelCase, quantities).
    pub vertical: api::VerticalSpec,
    /// The time of the recommendation, in Unix seconds.
    pub now: f64,
    /// Usage samples, in any order (they are fed in time order).
    #[serde(default)]
    pub samples: Vec<Sample>,
    /// OOM kills.
    #[serde(default)]
    pub ooms: Vec<Oom>,
    /// A stored history to resume from: the `spec.vertical` of a ScalingPolicyCheckpoint, or
    /// what `--checkpoint-output` wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<VerticalCheckpoint>,
}

/// One usage sample of one container of one pod (what an agent reports each cycle).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sample {
    pub pod: String,
    pub container: String,
    /// When it was measured, in Unix seconds.
    pub at: f64,
    /// CPU usage in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    /// Memory working set in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<f64>,
    /// The container's requests at the time; the CPU request weighs the CPU sample (none
    /// counts as 0.1 core, the VPA's minimum weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Amounts>,
}

/// One OOM kill (`OOMKilled` in the pod's status).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Oom {
    pub pod: String,
    pub container: String,
    /// `terminated.finishedAt`, in Unix seconds.
    pub at: f64,
    /// The container's memory request at the kill (the controller passes it, as the VPA).
    pub memory_bytes: f64,
}

/// CPU cores and memory bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Amounts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<f64>,
}

impl From<Amounts> for Resources {
    fn from(a: Amounts) -> Self {
        Resources {
            cpu_cores: a.cpu_cores,
            memory_bytes: a.memory_bytes,
        }
    }
}

impl From<Resources> for Amounts {
    fn from(r: Resources) -> Self {
        Amounts {
            cpu_cores: r.cpu_cores,
            memory_bytes: r.memory_bytes,
        }
    }
}

/// The whole output document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// What the controller writes to `status.recommendations` (Kubernetes quantities).
    pub recommendations: Vec<api::ContainerRecommendationStatus>,
    /// The same recommendations in base units, with what they rest on.
    pub containers: Vec<ContainerDetail>,
    /// How many sample parts the history kept (a part not later than the previous one of the
    /// same pod and container is dropped, as the VPA drops it).
    pub samples_kept: Kept,
    /// What became of each OOM, in input order.
    pub ooms: Vec<OomResult>,
}

/// One container's recommendation in base units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDetail {
    pub container_name: String,
    pub target: Amounts,
    pub lower_bound: Amounts,
    pub upper_bound: Amounts,
    pub uncapped_target: Amounts,
    /// Days of history at one sample a minute (the VPA's `getConfidence`).
    pub confidence: f64,
    /// CPU samples aggregated (`TotalSamplesCount`); `InPlace`/`Template` change requests
    /// only from `--vertical-min-samples` (60) on.
    pub total_samples: u64,
    /// The VPA's capping annotations (`cpu capped to minAllowed`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<String>,
}

impl From<&ContainerRecommendation> for ContainerDetail {
    fn from(r: &ContainerRecommendation) -> Self {
        ContainerDetail {
            container_name: r.container.clone(),
            target: r.target.into(),
            lower_bound: r.lower_bound.into(),
            upper_bound: r.upper_bound.into(),
            uncapped_target: r.uncapped_target.into(),
            confidence: r.confidence,
            total_samples: r.total_samples,
            capped: r.capped.clone(),
        }
    }
}

/// Sample parts kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    pub cpu: u64,
    pub memory: u64,
}

/// What became of one OOM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OomResult {
    pub pod: String,
    pub container: String,
    pub at: f64,
    /// The memory peak recorded, `max(used + 100Mi, used * 1.2)`; absent when dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_memory_bytes: Option<f64>,
    /// Why it was dropped (`tooOld`: before the last memory sample's aggregation interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<String>,
}

/// A bad input, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InputError {
    pub field: String,
    pub problem: String,
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> InputError {
    InputError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Parse the input; a type error or an unknown field is named by its path
/// (`samples[0].cpuCores`, `vertical.containerPolicies[0].minAlowed`).
pub fn parse(text: &str) -> Result<Input, InputError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad("input", e.to_string()))?;
    let input: Input = serde_path_to_error::deserialize(&value).map_err(|e| {
        // A missing top-level field is reported at the root, `.`.
        let at = match e.path().to_string() {
            root if root == "." => "input".to_owned(),
            path => path,
        };
        bad(at, e.into_inner().to_string())
    })?;
    // The CRD type ignores unknown fields (the API server prunes them); here a misspelt field
    // would silently mean its default, so it is an error.
    let known =
        serde_json::to_value(&input.vertical).map_err(|e| bad("vertical", e.to_string()))?;
    if let Some(unknown) = unknown_field(&value["vertical"], &known, "vertical") {
        return Err(bad(unknown, "unknown field"));
    }
    Ok(input)
}

/// The first key of `given` (non-null) that `known` (its re-encoding) lacks, as a path.
fn unknown_field(given: &serde_json::Value, known: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match (given, known) {
        (Value::Object(g), Value::Object(k)) => g.iter().find_map(|(key, v)| match k.get(key) {
            Some(kv) => unknown_field(v, kv, &format!("{at}.{key}")),
            None if v.is_null() => None,
            None => Some(format!("{at}.{key}")),
        }),
        (Value::Array(g), Value::Array(k)) => g
            .iter()
            .zip(k)
            .enumerate()
            .find_map(|(i, (g, k))| unknown_field(g, k, &format!("{at}[{i}]"))),
        _ => None,
    }
}

/// One event in the order the controller would see it.
enum Event<'a> {
    Sample(usize, &'a Sample),
    Oom(usize, &'a Oom),
}

/// What [`replay_and_recommend`] returns: the output document and the history it built.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub output: Output,
    /// For `--checkpoint-output`, to resume from in a later input.
    pub checkpoint: VerticalCheckpoint,
}

/// Replay `input`'s samples and OOM kills in time order into a [`VerticalState`] (fresh, or
/// restored from the input's checkpoint), then recommend, as the controller does on one
/// policy.
pub fn replay_and_recommend(input: &Input) -> Result<Outcome, InputError> {
    validate(input)?;
    let config = VerticalConfig::try_from(&input.vertical).map_err(|e| vertical_field(&e))?;
    // The controller's model is always the default one (`controller/mod.rs`).
    let model = ModelConfig::default();
    let mut state = match &input.checkpoint {
        Some(cp) => VerticalState::from_checkpoint(model, cp),
        None => VerticalState::new(model),
    }
    .map_err(|e| bad("checkpoint", e.to_string()))?;
    let mut kept = Kept::default();
    let mut ooms: Vec<Option<OomResult>> = vec![None; input.ooms.len()];
    for event in order(input) {
        match event {
            Event::Sample(i, s) => {
                let usage = Resources {
                    cpu_cores: s.cpu_cores,
                    memory_bytes: s.memory_bytes,
                };
                let requests = s.requests.unwrap_or_default().into();
                let observed = state
                    .observe(&s.pod, &s.container, &usage, &requests, s.at)
                    .map_err(|e| bad(format!("samples[{i}]"), e.to_string()))?;
                kept.cpu += u64::from(observed.cpu);
                kept.memory += u64::from(observed.memory);
            }
            Event::Oom(i, o) => {
                let outcome = state
                    .record_oom(&o.pod, &o.container, o.memory_bytes, o.at)
                    .map_err(|e| bad(format!("ooms[{i}]"), e.to_string()))?;
                let (recorded, dropped) = match outcome {
                    OomOutcome::Recorded { memory_bytes } => (Some(memory_bytes), None),
                    OomOutcome::TooOld => (None, Some("tooOld".to_owned())),
                };
                ooms[i] = Some(OomResult {
                    pod: o.pod.clone(),
                    container: o.container.clone(),
                    at: o.at,
                    recorded_memory_bytes: recorded,
                    dropped,
                });
            }
        }
    }
    // No horizontal target: `recommend` has only the vertical spec (docs/decide.md).
    let recs = state
        .recommend(&config, &[], input.now)
        .map_err(|e| bad("vertical", e.to_string()))?;
    let output = Output {
        recommendations: recs
            .iter()
            .map(api::ContainerRecommendationStatus::from)
            .collect(),
        containers: recs.iter().map(ContainerDetail::from).collect(),
        samples_kept: kept,
        ooms: ooms.into_iter().flatten().collect(),
    };
    Ok(Outcome {
        output,
        checkpoint: state.checkpoint(),
    })
}

/// Samples in time order (stable), and each OOM where the controller learns of it: after the
/// samples of the first cycle at or after its time (a cycle observes its samples, then reads
/// the pods' OOM kills), or after every sample when no later sample exists.
fn order(input: &Input) -> Vec<Event<'_>> {
    let mut samples: Vec<(usize, &Sample)> = input.samples.iter().enumerate().collect();
    samples.sort_by(|a, b| a.1.at.total_cmp(&b.1.at));
    let mut ooms: Vec<(f64, usize, &Oom)> = input
        .ooms
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let seen = samples
                .iter()
                .map(|(_, s)| s.at)
                .find(|t| *t >= o.at)
                .unwrap_or(f64::INFINITY);
            (seen, i, o)
        })
        .collect();
    ooms.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut events = Vec::with_capacity(samples.len() + ooms.len());
    let mut next_oom = ooms.into_iter().peekable();
    for (i, s) in samples {
        while let Some((_, j, o)) = next_oom.next_if(|(seen, _, _)| *seen < s.at) {
            events.push(Event::Oom(j, o));
        }
        events.push(Event::Sample(i, s));
    }
    events.extend(next_oom.map(|(_, j, o)| Event::Oom(j, o)));
    events
}

/// Names, times and amounts, each error naming its field.
fn validate(input: &Input) -> Result<(), InputError> {
    let now = input.now;
    for (i, s) in input.samples.iter().enumerate() {
        let at = |f: &str| format!("samples[{i}].{f}");
        names(&at("pod"), &s.pod, &at("container"), &s.container)?;
        time(&at("at"), s.at, now)?;
        amount(&at("cpuCores"), s.cpu_cores)?;
        amount(&at("memoryBytes"), s.memory_bytes)?;
        if let Some(r) = &s.requests {
            amount(&at("requests.cpuCores"), r.cpu_cores)?;
            amount(&at("requests.memoryBytes"), r.memory_bytes)?;
        }
    }
    for (i, o) in input.ooms.iter().enumerate() {
        let at = |f: &str| format!("ooms[{i}].{f}");
        names(&at("pod"), &o.pod, &at("container"), &o.container)?;
        time(&at("at"), o.at, now)?;
        amount(&at("memoryBytes"), Some(o.memory_bytes))?;
    }
    Ok(())
}

fn names(
    pod_field: &str,
    pod: &str,
    container_field: &str,
    container: &str,
) -> Result<(), InputError> {
    for (field, v) in [(pod_field, pod), (container_field, container)] {
        if v.is_empty() {
            return Err(bad(field, "must not be empty"));
        }
    }
    Ok(())
}

fn time(field: &str, at: f64, now: f64) -> Result<(), InputError> {
    if at > now {
        return Err(bad(
            field,
            format!("{at} is after now ({now}); times are Unix seconds"),
        ));
    }
    Ok(())
}

fn amount(field: &str, v: Option<f64>) -> Result<(), InputError> {
    match v {
        Some(v) if v < 0.0 => Err(bad(field, format!("{v} must not be negative"))),
        _ => Ok(()),
    }
}

/// A spec conversion error, its field named as in this input (`vertical.…`).
fn vertical_field(e: &VerticalError) -> InputError {
    let text = e.to_string();
    let text = text.strip_prefix("spec.").unwrap_or(&text);
    match text.split_once(": ") {
        Some((field, problem)) if field.starts_with("vertical") => bad(field, problem),
        _ => bad("vertical", text),
    }
}

#[cfg(test)]
#[path = "recommend_tests.rs"]
mod tests;

//! The HPA replica calculator, ported from kubernetes/kubernetes
//! `pkg/controller/podautoscaler/replica_calculator.go` (and `metrics/utilization.go`).
//!
//! Everything works on Kubernetes milli-units (`i64`) and repeats upstream's integer
//! truncations and `float64` operations in the same order, so the replica counts are the
//! same bit for bit. Pod samples come in as a map from pod name to [`Sample`]; samples for pods
//! that are not in the pod list are kept (upstream keeps them too, see
//! `TestReplicaCalcSuperfluousMetrics`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::types::{ConditionStatus, Pod, PodCounts, PodPhase, Tolerances};

/// Errors of the replica calculator; the messages are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoMetricsForTargetedPods,
    #[error("no metrics returned matched known pods")]
    NoMetricsMatchedKnownPods,
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest {
        resource: String,
        container: String,
        pod: String,
    },
    #[error("missing pod-level request for {resource} in Pod {pod}")]
    MissingPodLevelRequest { resource: String, pod: String },
    #[error("container {container} not found in Pod {pod}")]
    ContainerNotFound { container: String, pod: String },
}

impl CalcError {
    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoPods => "no_pods",
            Self::NoMetricsForTargetedPods => "no_metrics_for_targeted_pods",
            Self::NoMetricsMatchedKnownPods => "no_metrics_matched_known_pods",
            Self::MissingRequest { .. } => "missing_request",
            Self::MissingPodLevelRequest { .. } => "missing_pod_level_request",
            Self::ContainerNotFound { .. } => "container_not_found",
        }
    }
}

impl Tolerances {
    /// Both directions the same.
    pub fn symmetric(t: f64) -> Self {
        Self {
            scale_down: t,
            scale_up: t,
        }
    }

    /// `Tolerances.isWithin`: `1 - down <= ratio <= 1 + up`.
    pub fn is_within(&self, usage_ratio: f64) -> bool {
        (1.0 - self.scale_down) <= usage_ratio && usage_ratio <= (1.0 + self.scale_up)
    }
}

/// One pod's sample (`metricsclient.PodMetric`), value in milli-units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub value: i64,
    pub timestamp_unix_seconds: f64,
    pub window_seconds: f64,
}

/// Pod samples by pod name. Hashed with FNV-1a (deterministic, fast on short names); only
/// order-independent sums are taken over it.
pub type PodMetrics<'a> = HashMap<&'a str, Sample, BuildHasherDefault<Fnv1a>>;

/// FNV-1a, 64 bit: a tiny fast hasher for pod names (no dependency, no random seed).
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The readiness settings `groupPods` uses, and the time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Readiness {
    pub cpu_initialization_period_seconds: f64,
    pub initial_readiness_delay_seconds: f64,
    pub now_unix_seconds: f64,
}

/// The outcome of `groupPods`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups<'a> {
    pub ready_count: usize,
    pub unready: BTreeSet<&'a str>,
    pub missing: BTreeSet<&'a str>,
    pub ignored: BTreeSet<&'a str>,
}

impl Groups<'_> {
    pub fn counts(&self) -> PodCounts {
        PodCounts {
            ready: self.ready_count,
            unready: self.unready.len(),
            missing: self.missing.len(),
            ignored: self.ignored.len(),
        }
    }
}

/// The group `groupPods` puts a pod in; `Ready` carries the pod's sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Ignored,
    Unready,
    Missing,
    Ready(i64),
}

/// One pod's group (`groupPods`' rules for one pod).
fn classify(pod: &Pod, sample: Option<&Sample>, is_cpu: bool, r: &Readiness) -> Class {
    if pod.deleting || pod.phase == PodPhase::Failed {
        return Class::Ignored;
    }
    if pod.phase == PodPhase::Pending {
        return Class::Unready;
    }
    let Some(sample) = sample else {
        return Class::Missing;
    };
    if is_cpu {
        let unready = match (pod.ready, pod.start_time_unix_seconds) {
            (Some(cond), Some(start)) => {
                if start + r.cpu_initialization_period_seconds > r.now_unix_seconds {
                    // Still initializing: unready, or no full metric window since the last
                    // readiness transition.
                    cond.status == ConditionStatus::False
                        || sample.timestamp_unix_seconds
                            < cond.last_transition_unix_seconds + sample.window_seconds
                } else {
                    // Unready and never been ready.
                    cond.status == ConditionStatus::False
                        && start + r.initial_readiness_delay_seconds
                            > cond.last_transition_unix_seconds
                }
            }
            _ => true,
        };
        if unready {
            return Class::Unready;
        }
    }
    Class::Ready(sample.value)
}

/// `groupPods`: deleted and Failed pods are ignored; Pending pods are unready; pods without a
/// sample are missing; for CPU, pods still initializing (or never ready) are unready.
pub fn group_pods<'a>(
    pods: &'a [Pod],
    metrics: &PodMetrics<'_>,
    is_cpu: bool,
    r: &Readiness,
) -> Groups<'a> {
    let mut g = Groups::default();
    for pod in pods {
        let name = pod.name.as_str();
        match classify(pod, metrics.get(name), is_cpu, r) {
            Class::Ignored => {
                g.ignored.insert(name);
            }
            Class::Unready => {
                g.unready.insert(name);
            }
            Class::Missing => {
                g.missing.insert(name);
            }
            Class::Ready(_) => g.ready_count += 1,
        }
    }
    g
}

/// Pods classified once for a calculation, plus the samples that match no pod (upstream keeps
/// those in its metrics map: they count in sums and lengths but have no request).
struct Classified {
    classes: Vec<Class>,
    counts: PodCounts,
    /// Samples whose name is not a pod's: how many, and their sum.
    extra_count: usize,
    extra_sum: i128,
}

fn classify_all(pods: &[Pod], metrics: &PodMetrics<'_>, is_cpu: bool, r: &Readiness) -> Classified {
    let mut counts = PodCounts {
        ready: 0,
        unready: 0,
        missing: 0,
        ignored: 0,
    };
    let mut matched = 0usize;
    let mut matched_sum: i128 = 0;
    let classes = pods
        .iter()
        .map(|pod| {
            let sample = metrics.get(pod.name.as_str());
            if let Some(s) = sample {
                matched += 1;
                matched_sum += i128::from(s.value);
            }
            let class = classify(pod, sample, is_cpu, r);
            match class {
                Class::Ignored => counts.ignored += 1,
                Class::Unready => counts.unready += 1,
                Class::Missing => counts.missing += 1,
                Class::Ready(_) => counts.ready += 1,
            }
            class
        })
        .collect();
    let total: i128 = metrics.values().map(|s| i128::from(s.value)).sum();
    Classified {
        classes,
        counts,
        extra_count: metrics.len().saturating_sub(matched),
        extra_sum: total - matched_sum,
    }
}

/// Base units to milli-units, rounding up like `Quantity.MilliValue()`. Values within 1e-6
/// milli of an integer are taken as that integer, so `0.3` is 300, not 301.
pub fn to_milli(v: f64) -> i64 {
    let x = v * 1000.0;
    let r = x.round();
    if (x - r).abs() < 1e-6 {
        r as i64
    } else {
        x.ceil() as i64
    }
}

fn container_sum(pod: &Pod, container: Option<&str>, resource: &str) -> Result<i64, CalcError> {
    let all = pod.containers.iter().chain(
        pod.init_containers
            .iter()
            .filter(|c| c.restart_policy_always),
    );
    let mut request = 0i64;
    for c in all {
        if container.is_none() || container == Some(c.name.as_str()) {
            let Some(v) = c.requests.get(resource) else {
                return Err(CalcError::MissingRequest {
                    resource: resource.to_owned(),
                    container: c.name.clone(),
                    pod: pod.name.clone(),
                });
            };
            request = request.saturating_add(to_milli(*v));
        }
        if container == Some(c.name.as_str()) {
            return Ok(request);
        }
    }
    match container {
        Some(name) => Err(CalcError::ContainerNotFound {
            container: name.to_owned(),
            pod: pod.name.clone(),
        }),
        None => Ok(request),
    }
}

/// One pod's request for `resource` (see [`calculate_requests`]).
fn pod_request(pod: &Pod, container: Option<&str>, resource: &str) -> Result<i64, CalcError> {
    let pod_level = container.is_none() && pod.requests.keys().any(|k| k == "cpu" || k == "memory");
    if !pod_level {
        return container_sum(pod, container, resource);
    }
    match pod.requests.get(resource) {
        Some(v) => Ok(to_milli(*v)),
        // `PodRequests` falls back to the containers for resources the pod leaves unset.
        None => container_sum(pod, None, resource).map_err(|_| CalcError::MissingPodLevelRequest {
            resource: resource.to_owned(),
            pod: pod.name.clone(),
        }),
    }
}

/// `calculateRequests`: the named container's request; else pod-level requests where the pod
/// sets them; else the sum over containers and restartable init containers.
pub fn calculate_requests<'a>(
    pods: &'a [Pod],
    container: Option<&str>,
    resource: &str,
) -> Result<BTreeMap<&'a str, i64>, CalcError> {
    pods.iter()
        .map(|pod| Ok((pod.name.as_str(), pod_request(pod, container, resource)?)))
        .collect()
}

/// `GetResourceUtilizationRatio` over `(usage, request)` pairs:
/// `utilization = sum(usage)*100 / sum(requests)` (integer division),
/// `ratio = utilization / target`. Returns `(ratio, utilization, raw average value)`.
fn utilization_ratio(
    pairs: impl Iterator<Item = (i64, i64)>,
    target_utilization: i32,
) -> Result<(f64, i32, i64), CalcError> {
    let (mut metrics_total, mut requests_total, mut entries) = (0i128, 0i128, 0i128);
    for (value, request) in pairs {
        metrics_total += i128::from(value);
        requests_total += i128::from(request);
        entries += 1;
    }
    if requests_total == 0 {
        return Err(CalcError::NoMetricsMatchedKnownPods);
    }
    let utilization = clamp_i32((metrics_total * 100) / requests_total);
    let raw = clamp_i64(metrics_total / entries);
    Ok((
        f64::from(utilization) / f64::from(target_utilization),
        utilization,
        raw,
    ))
}

/// `GetMetricUsageRatio`: `usage = sum / count` (integer division), `ratio = usage / target`.
fn metric_usage_ratio(total: i128, count: usize, target: i64) -> (f64, i64) {
    let usage = clamp_i64(total / (count.max(1) as i128));
    (usage as f64 / target as f64, usage)
}

fn clamp_i32(v: i128) -> i32 {
    v.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// `int32(math.Ceil(x))`, saturating instead of overflowing.
pub fn ceil_i32(x: f64) -> i32 {
    x.ceil() as i32
}

/// The result of a per-pod calculation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOutcome {
    pub replicas: i32,
    /// Utilization in percent (utilization targets only).
    pub utilization: Option<i32>,
    /// Average value in milli-units.
    pub average_value: i64,
    pub pods: PodCounts,
}

/// The shared tail of both calculations: keep `current` inside the tolerance or when the
/// re-check flips direction, else `ceil(new_ratio * counted)`.
fn recheck(
    current_replicas: i32,
    usage_ratio: f64,
    new_ratio: f64,
    counted: usize,
    tolerances: Tolerances,
) -> i32 {
    if tolerances.is_within(new_ratio)
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
    {
        return current_replicas;
    }
    let new_replicas = ceil_i32(new_ratio * counted as f64);
    if (new_ratio < 1.0 && new_replicas > current_replicas)
        || (new_ratio > 1.0 && new_replicas < current_replicas)
    {
        return current_replicas;
    }
    new_replicas
}

/// `GetResourceReplicas`: a Resource/ContainerResource metric with a `Utilization` target.
#[allow(clippy::too_many_arguments)]
pub fn resource_replicas(
    current_replicas: i32,
    target_utilization: i32,
    resource: &str,
    container: Option<&str>,
    tolerances: Tolerances,
    pods: &[Pod],
    metrics: &PodMetrics<'_>,
    readiness: &Readiness,
) -> Result<PodOutcome, CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let c = classify_all(pods, metrics, resource == "cpu", readiness);
    if c.counts.ready + c.extra_count == 0 {
        return Err(CalcError::NoMetricsForTargetedPods);
    }
    let requests = pods
        .iter()
        .map(|pod| pod_request(pod, container, resource))
        .collect::<Result<Vec<i64>, _>>()?;
    // Samples of pods outside the pod list have no request and do not count here.
    let ready = || {
        c.classes
            .iter()
            .zip(&requests)
            .filter_map(|(class, req)| match class {
                Class::Ready(v) => Some((*v, *req)),
                _ => None,
            })
    };
    let (usage_ratio, utilization, raw) = utilization_ratio(ready(), target_utilization)?;
    let out = |replicas| PodOutcome {
        replicas,
        utilization: Some(utilization),
        average_value: raw,
        pods: c.counts,
    };

    let scale_up_with_unready = c.counts.unready > 0 && usage_ratio > 1.0;
    if !scale_up_with_unready && c.counts.missing == 0 {
        if tolerances.is_within(usage_ratio) {
            return Ok(out(current_replicas));
        }
        return Ok(out(ceil_i32(usage_ratio * c.counts.ready as f64)));
    }

    // Scale-down: missing pods use max(100%, target) of their request; scale-up: 0.
    let fill_missing = usage_ratio != 1.0 && c.counts.missing > 0;
    let fallback = i64::from(target_utilization.max(100));
    let filled = c
        .classes
        .iter()
        .zip(&requests)
        .filter_map(|(class, req)| match class {
            Class::Missing if fill_missing => Some((
                if usage_ratio < 1.0 {
                    req.saturating_mul(fallback) / 100
                } else {
                    0
                },
                *req,
            )),
            Class::Unready if scale_up_with_unready => Some((0, *req)),
            _ => None,
        });
    let (new_ratio, _, _) = utilization_ratio(ready().chain(filled), target_utilization)?;
    let counted = c.counts.ready
        + c.extra_count
        + if fill_missing { c.counts.missing } else { 0 }
        + if scale_up_with_unready {
            c.counts.unready
        } else {
            0
        };
    Ok(out(recheck(
        current_replicas,
        usage_ratio,
        new_ratio,
        counted,
        tolerances,
    )))
}

/// `calcPlainMetricReplicas` (used by `GetRawResourceReplicas` and `GetMetricReplicas`): a
/// per-pod metric against a target average value (milli-units). `is_cpu` is true only for a
/// CPU Resource metric with an AverageValue target.
pub fn plain_metric_replicas(
    current_replicas: i32,
    target: i64,
    tolerances: Tolerances,
    pods: &[Pod],
    metrics: &PodMetrics<'_>,
    is_cpu: bool,
    readiness: &Readiness,
) -> Result<PodOutcome, CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let c = classify_all(pods, metrics, is_cpu, readiness);
    let count = c.counts.ready + c.extra_count;
    if count == 0 {
        return Err(CalcError::NoMetricsForTargetedPods);
    }
    let ready_sum: i128 = c
        .classes
        .iter()
        .map(|class| match class {
            Class::Ready(v) => i128::from(*v),
            _ => 0,
        })
        .sum();
    let total = ready_sum + c.extra_sum;
    let (usage_ratio, usage) = metric_usage_ratio(total, count, target);
    let out = |replicas| PodOutcome {
        replicas,
        utilization: None,
        average_value: usage,
        pods: c.counts,
    };

    let scale_up_with_unready = c.counts.unready > 0 && usage_ratio > 1.0;
    if !scale_up_with_unready && c.counts.missing == 0 {
        if tolerances.is_within(usage_ratio) {
            return Ok(out(current_replicas));
        }
        return Ok(out(ceil_i32(usage_ratio * c.counts.ready as f64)));
    }

    // Scale-down: missing pods use exactly the target; scale-up: 0. Unready pods count 0 on
    // a scale-up.
    let fill_missing = usage_ratio != 1.0 && c.counts.missing > 0;
    let missing_value = if usage_ratio < 1.0 { target } else { 0 };
    let mut new_total = total;
    let mut counted = count;
    if fill_missing {
        new_total += i128::from(missing_value) * c.counts.missing as i128;
        counted += c.counts.missing;
    }
    if scale_up_with_unready {
        counted += c.counts.unready;
    }
    let (new_ratio, _) = metric_usage_ratio(new_total, counted, target);
    Ok(out(recheck(
        current_replicas,
        usage_ratio,
        new_ratio,
        counted,
        tolerances,
    )))
}

/// `getReadyPodsCount`: Running pods whose Ready condition is True, deleting or not
/// ([`Pod::is_running_and_ready`]).
pub fn ready_pods_count(pods: &[Pod]) -> Result<i64, CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    Ok(pods.iter().filter(|p| p.is_running_and_ready()).count() as i64)
}

/// `getUsageRatioReplicaCount`: `ceil(ratio * readyPods)` outside the tolerance; with zero
/// current replicas, `ceil(ratio)` (scale from zero), tolerance not applied.
pub fn usage_ratio_replica_count(
    current_replicas: i32,
    usage_ratio: f64,
    tolerances: Tolerances,
    pods: &[Pod],
) -> Result<i32, CalcError> {
    if current_replicas != 0 {
        if tolerances.is_within(usage_ratio) {
            return Ok(current_replicas);
        }
        let ready = ready_pods_count(pods)?;
        let x = usage_ratio * ready as f64;
        if x > f64::from(i32::MAX) {
            return Ok(i32::MAX);
        }
        Ok(ceil_i32(x))
    } else {
        Ok(ceil_i32(usage_ratio))
    }
}

/// `GetObjectMetricReplicas`: an Object metric with a `Value` target. Returns
/// `(replicas, usage)`.
pub fn object_replicas(
    current_replicas: i32,
    usage: i64,
    target: i64,
    tolerances: Tolerances,
    pods: &[Pod],
) -> Result<(i32, i64), CalcError> {
    let ratio = usage as f64 / target as f64;
    Ok((
        usage_ratio_replica_count(current_replicas, ratio, tolerances, pods)?,
        usage,
    ))
}

/// `GetObjectPerPodMetricReplicas`: an Object metric with an `AverageValue` target, against
/// `status.replicas`. Returns `(replicas, usage per replica)`.
pub fn object_per_pod_replicas(
    status_replicas: i32,
    usage: i64,
    target_average: i64,
    tolerances: Tolerances,
) -> (i32, i64) {
    let mut replicas = status_replicas;
    let ratio = usage as f64 / (target_average as f64 * f64::from(replicas));
    if !tolerances.is_within(ratio) {
        replicas = ceil_i32(usage as f64 / target_average as f64);
    }
    let per_replica = (usage as f64 / f64::from(status_replicas)).ceil() as i64;
    (replicas, per_replica)
}

/// `GetExternalMetricReplicas`: an External metric with a `Value` target; the samples are
/// summed (capped at `i64::MAX`). Returns `(replicas, usage)`.
pub fn external_replicas(
    current_replicas: i32,
    values: &[i64],
    target: i64,
    tolerances: Tolerances,
    pods: &[Pod],
) -> Result<(i32, i64), CalcError> {
    let mut usage: i64 = 0;
    for v in values {
        if *v > 0 && usage > i64::MAX - v {
            usage = i64::MAX;
            break;
        }
        usage += v;
    }
    let ratio = usage as f64 / target as f64;
    Ok((
        usage_ratio_replica_count(current_replicas, ratio, tolerances, pods)?,
        usage,
    ))
}

/// `GetExternalPerPodMetricReplicas` (the KEDA path): `ceil(sum / targetPerPod)` when
/// `sum / (targetPerPod * statusReplicas)` is outside the tolerance. Returns
/// `(replicas, usage per replica)`.
pub fn external_per_pod_replicas(
    status_replicas: i32,
    values: &[i64],
    target_per_pod: i64,
    tolerances: Tolerances,
) -> (i32, i64) {
    // Upstream detects overflow by the sum turning negative; a checked sum caps the same
    // overflow without treating legitimately negative samples as overflow.
    let usage = values
        .iter()
        .try_fold(0i64, |acc, v| acc.checked_add(*v))
        .unwrap_or(i64::MAX);
    let mut replicas = status_replicas;
    let ratio = usage as f64 / (target_per_pod as f64 * f64::from(replicas));
    if !tolerances.is_within(ratio) {
        let r = (usage as f64 / target_per_pod as f64).ceil();
        replicas = if r > f64::from(i32::MAX) {
            i32::MAX
        } else {
            r as i32
        };
    }
    let per_replica = if usage as f64 >= i64::MAX as f64 {
        i64::MAX
    } else {
        (usage as f64 / f64::from(status_replicas)).ceil() as i64
    };
    (replicas, per_replica)
}

#[cfg(test)]
#[path = "replica_calc_tests.rs"]
mod tests;

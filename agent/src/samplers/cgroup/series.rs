//! The series the cgroup sampler emits: their table (name, help, kind) and the series and
//! labels of one cgroup.

use std::sync::Arc;
use std::time::Instant;

use tidal_core::schema;

use crate::buffer::{Kind, Labels};
use crate::pods::{ContainerMeta, PodMeta};
use crate::rate::Rate;

use super::discover::Target;
use super::read::Stats;

// The series the sampler emits: their index in [`SERIES`] and in [`Out`].
const CPU: usize = 0;
const WORKING_SET: usize = 1;
const RSS: usize = 2;
const CACHE: usize = 3;
const CFS_PERIODS: usize = 4;
const CFS_THROTTLED_PERIODS: usize = 5;
const CFS_THROTTLED_SECONDS: usize = 6;
/// cpu some/full, memory some/full, io some/full.
const PRESSURE: usize = 7;
const USAGE_CORES: usize = 13;
const CPU_REQUEST: usize = 14;
const CPU_REQUEST_UTILIZATION: usize = 15;
const CPU_LIMIT: usize = 16;
const CPU_LIMIT_UTILIZATION: usize = 17;
const MEMORY_REQUEST: usize = 18;
const MEMORY_REQUEST_UTILIZATION: usize = 19;
const MEMORY_LIMIT: usize = 20;
const MEMORY_LIMIT_UTILIZATION: usize = 21;
const COUNT: usize = 22;

/// Name, help and kind of each series the sampler emits.
pub(super) const SERIES: [(&str, &str, Kind); COUNT] = [
    (
        schema::CONTAINER_CPU_USAGE_SECONDS_TOTAL,
        "Cumulative cpu time consumed in seconds.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_MEMORY_WORKING_SET_BYTES,
        "Current working set in bytes (usage - inactive_file).",
        Kind::Gauge,
    ),
    (
        schema::CONTAINER_MEMORY_RSS,
        "Size of RSS in bytes.",
        Kind::Gauge,
    ),
    (
        schema::CONTAINER_MEMORY_CACHE,
        "Number of bytes of page cache memory.",
        Kind::Gauge,
    ),
    (
        schema::CONTAINER_CPU_CFS_PERIODS_TOTAL,
        "Number of elapsed enforcement period intervals.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_CPU_CFS_THROTTLED_PERIODS_TOTAL,
        "Number of throttled period intervals.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_CPU_CFS_THROTTLED_SECONDS_TOTAL,
        "Total time duration the container has been throttled.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_PRESSURE_CPU_WAITING,
        "Total time duration tasks waited for CPU.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_PRESSURE_CPU_STALLED,
        "Total time duration no tasks made progress due to CPU.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_PRESSURE_MEMORY_WAITING,
        "Total time duration tasks waited for memory.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_PRESSURE_MEMORY_STALLED,
        "Total time duration no tasks made progress due to memory.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_PRESSURE_IO_WAITING,
        "Total time duration tasks waited for IO.",
        Kind::Counter,
    ),
    (
        schema::CONTAINER_PRESSURE_IO_STALLED,
        "Total time duration no tasks made progress due to IO.",
        Kind::Counter,
    ),
    (
        schema::AGENT_CONTAINER_CPU_USAGE_CORES,
        "CPU usage rate between the last two samples, in cores.",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_CPU_REQUEST_CORES,
        "CPU request in cores.",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_CPU_REQUEST_UTILIZATION,
        "CPU usage rate / request (may exceed 1).",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_CPU_LIMIT_CORES,
        "CPU limit in cores.",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_CPU_LIMIT_UTILIZATION,
        "CPU usage rate / limit.",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_MEMORY_REQUEST_BYTES,
        "Memory request in bytes.",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_MEMORY_REQUEST_UTILIZATION,
        "Working set / memory request (may exceed 1).",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_MEMORY_LIMIT_BYTES,
        "Memory limit in bytes.",
        Kind::Gauge,
    ),
    (
        schema::AGENT_CONTAINER_MEMORY_LIMIT_UTILIZATION,
        "Working set / memory limit.",
        Kind::Gauge,
    ),
];

pub(super) type Out = [Vec<(Labels, f64)>; COUNT];

/// True for a container cgroup of a known pod whose ID is none of the pod's containers: the
/// pod's sandbox (pause) container, or a container the API has not reported yet (a new one, or
/// a restart). Such a cgroup gets no series. The kubelet's cAdvisor gives the sandbox
/// `container=""` (seen on the stack's real node, docs/real-node.md); here its usage is already
/// in the pod's own series (`container=""`, the pod cgroup, which contains it), and a series of
/// its own would need a label beyond namespace/pod/container to be told apart. A new
/// container's series start once the API reports its ID, rather than appearing for a moment
/// under its 64-hex ID. Without pod metadata the ID stays the only name there is.
pub(super) fn is_sandbox_or_unreported(t: &Target, meta: Option<&PodMeta>) -> bool {
    match (meta, t.container_id.as_deref(), &t.path_label) {
        (Some(m), Some(id), None) => m.container_by_id(id).is_none(),
        _ => false,
    }
}

/// The label set of a cgroup's series.
fn labels_of(t: &Target, meta: Option<&PodMeta>) -> Labels {
    let cmeta: Option<&ContainerMeta> = meta
        .zip(t.container_id.as_deref())
        .and_then(|(m, id)| m.container_by_id(id));
    let container = match (&t.path_label, &t.container_id, cmeta) {
        (Some(p), _, _) => p.clone(),
        (None, _, Some(c)) => c.name.clone(),
        (None, Some(id), None) => id.clone(),
        (None, None, _) => String::new(),
    };
    let qos = meta
        .map(|m| m.qos_class.clone())
        .filter(|q| !q.is_empty())
        .or_else(|| t.qos.map(|q| q.as_str().to_string()))
        .unwrap_or_default();
    vec![
        (
            "namespace",
            meta.map(|m| m.namespace.clone()).unwrap_or_default(),
        ),
        ("pod", meta.map(|m| m.name.clone()).unwrap_or_default()),
        ("container", container),
        ("pod_uid", t.uid.clone()),
        ("qos_class", qos),
    ]
    .into()
}

/// What one cgroup's series keep from round to round.
#[derive(Debug, Default)]
pub(super) struct SeriesState {
    /// The CPU counter's last value, for the usage rate.
    pub(super) rate: Rate,
    /// The pod metadata the labels were built from, and the labels.
    labels: Option<(Option<Arc<PodMeta>>, Labels)>,
}

/// Appends the series of the cgroup `t` to `out`.
pub(super) fn emit(
    out: &mut Out,
    t: &Target,
    state: &mut SeriesState,
    s: &Stats,
    meta: Option<&Arc<PodMeta>>,
    at: Instant,
) {
    // One label set per cgroup, rebuilt only when its pod's metadata changes; every series
    // shares it.
    let labels = match &state.labels {
        Some((m, l)) if m.as_ref().map(Arc::as_ptr) == meta.map(Arc::as_ptr) => l.clone(),
        _ => {
            let l = labels_of(t, meta.map(Arc::as_ref));
            state.labels = Some((meta.cloned(), l.clone()));
            l
        }
    };
    let meta = meta.map(Arc::as_ref);
    let cmeta: Option<&ContainerMeta> = meta
        .zip(t.container_id.as_deref())
        .and_then(|(m, id)| m.container_by_id(id));
    let mut put = |i: usize, v: f64| out[i].push((labels.clone(), v));
    put(CPU, s.cpu_usage_seconds);
    put(WORKING_SET, s.memory_working_set_bytes);
    put(RSS, s.memory_rss_bytes);
    put(CACHE, s.memory_cache_bytes);
    if let Some(v) = s.cfs_periods {
        put(CFS_PERIODS, v);
    }
    if let Some(v) = s.cfs_throttled_periods {
        put(CFS_THROTTLED_PERIODS, v);
    }
    if let Some(v) = s.cfs_throttled_seconds {
        put(CFS_THROTTLED_SECONDS, v);
    }
    for (i, v) in s.pressure.iter().enumerate() {
        if let Some(v) = v {
            put(PRESSURE + i, *v);
        }
    }

    // Requests: the container's own, or for the pod cgroup the pod-level request, else the
    // sum over containers and restartable init containers when all set one (HPA's rule).
    // Limits: the spec's, else what the cgroup enforces.
    let (cpu_req, mem_req, cpu_lim, mem_lim) = match (cmeta, t.container_id.is_none(), meta) {
        (Some(c), _, _) => (
            c.cpu_request_cores,
            c.memory_request_bytes,
            c.cpu_limit_cores.or(s.cpu_limit_cores),
            c.memory_limit_bytes.or(s.memory_limit_bytes),
        ),
        (None, true, Some(m)) => (
            m.cpu_request_cores(),
            m.memory_request_bytes(),
            s.cpu_limit_cores,
            s.memory_limit_bytes,
        ),
        _ => (None, None, s.cpu_limit_cores, s.memory_limit_bytes),
    };
    let rate = state.rate.update(s.cpu_usage_seconds, at);
    let ws = s.memory_working_set_bytes;
    if let Some(r) = rate {
        put(USAGE_CORES, r);
    }
    let pos = |v: Option<f64>| v.filter(|v| *v > 0.0);
    if let Some(req) = pos(cpu_req) {
        put(CPU_REQUEST, req);
        if let Some(r) = rate {
            put(CPU_REQUEST_UTILIZATION, r / req);
        }
    }
    if let Some(lim) = pos(cpu_lim) {
        put(CPU_LIMIT, lim);
        if let Some(r) = rate {
            put(CPU_LIMIT_UTILIZATION, r / lim);
        }
    }
    if let Some(req) = pos(mem_req) {
        put(MEMORY_REQUEST, req);
        put(MEMORY_REQUEST_UTILIZATION, ws / req);
    }
    if let Some(lim) = pos(mem_lim) {
        put(MEMORY_LIMIT, lim);
        put(MEMORY_LIMIT_UTILIZATION, ws / lim);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::samplers::cgroup::{CgroupPaths, Qos};

    fn meta_with(uid: &str, containers: &[(&str, &str)]) -> PodMeta {
        PodMeta {
            namespace: "ns".into(),
            name: "p".into(),
            uid: uid.into(),
            containers: containers
                .iter()
                .map(|(name, id)| ContainerMeta {
                    name: (*name).into(),
                    id: Some((*id).into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn sandbox_and_unreported_containers_get_no_series() {
        let (uid, app, pause) = ("u-1", "a".repeat(64), "b".repeat(64));
        let target = |id: Option<&str>| Target {
            rels: CgroupPaths::same(Path::new("kubepods/podu-1")),
            uid: uid.into(),
            qos: Some(Qos::Burstable),
            container_id: id.map(str::to_string),
            path_label: None,
        };
        let meta = meta_with(uid, &[("app", &app)]);
        // A known pod, an ID that is none of its containers': the sandbox (or a container the
        // API has not reported yet).
        assert!(is_sandbox_or_unreported(&target(Some(&pause)), Some(&meta)));
        // A known container of a known pod.
        assert!(!is_sandbox_or_unreported(&target(Some(&app)), Some(&meta)));
        // The pod's own cgroup.
        assert!(!is_sandbox_or_unreported(&target(None), Some(&meta)));
        // No metadata (no API access, or a pod the watch has not seen): the ID is the only
        // name, so the cgroup keeps its series.
        assert!(!is_sandbox_or_unreported(&target(Some(&pause)), None));
        assert!(!is_sandbox_or_unreported(&target(Some(&app)), None));
        // Outside Kubernetes (a path label): never skipped.
        let mut plain = target(Some(&pause));
        plain.path_label = Some("/svc/app".into());
        assert!(!is_sandbox_or_unreported(&plain, Some(&meta)));
    }
}

//! Pod metadata: a watch on this node's pods (field selector `spec.nodeName`), kept as a map
//! from pod UID to the few fields the samplers label series with.
//!
//! The samplers only read the in-memory [`PodMetaByUid`]; they never wait on the API. A pod whose
//! cgroup exists before the watch has seen it is still exported, labelled by its UID. Without
//! API access the index stays empty and every series is labelled by UID (or, outside
//! Kubernetes, by cgroup path).
//!
//! Requests and limits are exported as gauges (`tidal_agent_container_{cpu,memory}_{request,limit}_*`)
//! rather than labels: a label carrying a value would start a new series on every in-place
//! resize, while a gauge keeps one series per container and can be divided directly.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::runtime::{WatchStreamExt, watcher};

/// One container of a pod, as the API describes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerMeta {
    pub name: String,
    /// The runtime's container ID without the `<runtime>://` prefix, once the pod runs.
    pub id: Option<String>,
    pub cpu_request_cores: Option<f64>,
    pub cpu_limit_cores: Option<f64>,
    pub memory_request_bytes: Option<f64>,
    pub memory_limit_bytes: Option<f64>,
    /// An init container that runs to completion (not a restartable sidecar): not counted in
    /// the pod's request, as HPA does not count it.
    pub run_to_completion_init: bool,
}

/// The fields of a pod the agent labels series with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodMeta {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `Guaranteed`, `Burstable` or `BestEffort` (status.qosClass).
    pub qos_class: String,
    /// Containers, then init containers.
    pub containers: Vec<ContainerMeta>,
    /// Pod-level requests (`spec.resources`), when the pod sets them.
    pub pod_cpu_request_cores: Option<f64>,
    pub pod_memory_request_bytes: Option<f64>,
    /// `status.podIPs` (or `podIP`): the addresses a consumer in this pod connects from.
    pub pod_ips: Vec<String>,
}

impl PodMeta {
    /// The pod's CPU request, as HPA counts it: the pod-level request if set, else the sum over
    /// containers and restartable init containers, if every one of them sets one.
    pub fn cpu_request_cores(&self) -> Option<f64> {
        self.pod_cpu_request_cores
            .or_else(|| self.sum(|c| c.cpu_request_cores))
    }

    /// The pod's memory request (same rule as [`PodMeta::cpu_request_cores`]).
    pub fn memory_request_bytes(&self) -> Option<f64> {
        self.pod_memory_request_bytes
            .or_else(|| self.sum(|c| c.memory_request_bytes))
    }

    fn sum(&self, f: impl Fn(&ContainerMeta) -> Option<f64>) -> Option<f64> {
        let mut counted = self
            .containers
            .iter()
            .filter(|c| !c.run_to_completion_init)
            .peekable();
        counted.peek()?;
        counted.map(f).sum()
    }

    /// The container whose runtime ID is `id`.
    pub fn container_by_id(&self, id: &str) -> Option<&ContainerMeta> {
        self.containers.iter().find(|c| c.id.as_deref() == Some(id))
    }

    /// Builds the metadata from an API object; `None` without a UID.
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let uid = pod.metadata.uid.clone()?;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let ids: HashMap<&str, &str> = status
            .into_iter()
            .flat_map(|s| {
                s.container_statuses
                    .iter()
                    .flatten()
                    .chain(s.init_container_statuses.iter().flatten())
            })
            .filter_map(|cs| {
                Some((
                    cs.name.as_str(),
                    strip_runtime(cs.container_id.as_deref()?)?,
                ))
            })
            .collect();
        let containers = spec
            .map(|s| {
                let init = s.init_containers.iter().flatten().map(|c| {
                    let mut m = container_meta(c, ids.get(c.name.as_str()));
                    m.run_to_completion_init = c.restart_policy.as_deref() != Some("Always");
                    m
                });
                s.containers
                    .iter()
                    .map(|c| container_meta(c, ids.get(c.name.as_str())))
                    .chain(init)
                    .collect()
            })
            .unwrap_or_default();
        let pod_requests = spec
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref());
        Some(Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid,
            qos_class: status.and_then(|s| s.qos_class.clone()).unwrap_or_default(),
            containers,
            pod_cpu_request_cores: quantity(pod_requests, "cpu"),
            pod_memory_request_bytes: quantity(pod_requests, "memory"),
            pod_ips: status
                .map(|s| {
                    let mut ips: Vec<String> =
                        s.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
                    if ips.is_empty() {
                        ips.extend(s.pod_ip.clone());
                    }
                    ips
                })
                .unwrap_or_default(),
        })
    }
}

fn quantity(map: Option<&std::collections::BTreeMap<String, Quantity>>, key: &str) -> Option<f64> {
    map.and_then(|m| m.get(key))
        .and_then(|q| parse_quantity(&q.0))
}

fn container_meta(c: &Container, id: Option<&&str>) -> ContainerMeta {
    let res = c.resources.as_ref();
    let get = quantity;
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    ContainerMeta {
        name: c.name.clone(),
        id: id.map(|s| s.to_string()),
        cpu_request_cores: get(requests, "cpu").or_else(|| get(limits, "cpu")),
        cpu_limit_cores: get(limits, "cpu"),
        // The API server defaults a missing request to the limit; do the same for pods
        // created before defaulting ran (or fixtures).
        memory_request_bytes: get(requests, "memory").or_else(|| get(limits, "memory")),
        memory_limit_bytes: get(limits, "memory"),
        run_to_completion_init: false,
    }
}

/// `containerd://abc` → `abc`.
fn strip_runtime(id: &str) -> Option<&str> {
    let s = id.split_once("://").map_or(id, |(_, rest)| rest);
    (!s.is_empty()).then_some(s)
}

/// Parses a Kubernetes quantity (`100m`, `1.5`, `64Mi`, `1G`, `129e6`) into a plain number.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    if let Ok(v) = q.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    SUFFIXES.iter().find_map(|(suffix, mult)| {
        let num = q.strip_suffix(suffix)?;
        let v = num.parse::<f64>().ok()? * mult;
        v.is_finite().then_some(v)
    })
}

#[derive(Debug, Default)]
struct Inner {
    pods: HashMap<String, Arc<PodMeta>>,
    synced: bool,
}

/// This node's pods by UID, shared between the watch task and the samplers.
#[derive(Clone, Debug, Default)]
pub struct PodMetaByUid(Arc<RwLock<Inner>>);

impl PodMetaByUid {
    /// The pod with this UID, if the watch has seen it.
    pub fn get(&self, uid: &str) -> Option<Arc<PodMeta>> {
        self.0.read().ok()?.pods.get(uid).cloned()
    }

    /// True once the watch has listed the node's pods at least once.
    pub fn synced(&self) -> bool {
        self.0.read().map(|i| i.synced).unwrap_or(false)
    }

    /// Adds or replaces a pod.
    pub fn insert(&self, meta: PodMeta) {
        if let Ok(mut i) = self.0.write() {
            i.pods.insert(meta.uid.clone(), Arc::new(meta));
        }
    }

    /// Removes a pod.
    pub fn remove(&self, uid: &str) {
        if let Ok(mut i) = self.0.write() {
            i.pods.remove(uid);
        }
    }

    /// Replaces every pod (after a full list) and marks the index synced.
    pub fn replace(&self, pods: impl IntoIterator<Item = PodMeta>) {
        let pods = pods
            .into_iter()
            .map(|p| (p.uid.clone(), Arc::new(p)))
            .collect();
        if let Ok(mut i) = self.0.write() {
            i.pods = pods;
            i.synced = true;
        }
    }

    /// Every pod IP on this node (Kafka consumers in these pods connect from them).
    pub fn pod_ips(&self) -> std::collections::HashSet<String> {
        self.0
            .read()
            .map(|i| {
                i.pods
                    .values()
                    .flat_map(|p| p.pod_ips.iter().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of pods known.
    pub fn len(&self) -> usize {
        self.0.read().map(|i| i.pods.len()).unwrap_or(0)
    }

    /// True if no pod is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Watches the pods of `node` and keeps `index` up to date, until the stream ends.
/// Errors are retried with kube's default backoff and logged.
pub async fn watch(client: kube::Client, node: String, index: PodMetaByUid) {
    let api: kube::Api<Pod> = kube::Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let mut pending: Vec<PodMeta> = Vec::new();
    loop {
        match stream.try_next().await {
            Ok(Some(event)) => match event {
                watcher::Event::Init => pending.clear(),
                watcher::Event::InitApply(p) => pending.extend(PodMeta::from_pod(&p)),
                watcher::Event::InitDone => {
                    index.replace(std::mem::take(&mut pending));
                    tracing::info!(node = %node, pods = index.len(), "pod metadata synced");
                }
                watcher::Event::Apply(p) => {
                    if let Some(m) = PodMeta::from_pod(&p) {
                        index.insert(m);
                    }
                }
                watcher::Event::Delete(p) => {
                    if let Some(uid) = p.metadata.uid.as_deref() {
                        index.remove(uid);
                    }
                }
            },
            Ok(None) => return,
            Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying with backoff"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1.5"), Some(1.5));
        assert_eq!(parse_quantity("64Mi"), Some(67_108_864.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("129e6"), Some(129e6));
        assert_eq!(parse_quantity("1E"), Some(1e18));
        assert_eq!(parse_quantity("250u"), Some(250.0 * 1e-6));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity(""), None);
        assert_eq!(parse_quantity("1Qi"), None);
    }

    /// Found by fuzzing (`fuzz/`, target `quantity`): the suffix's multiplier overflowed a
    /// finite mantissa to infinity, which the scaler's parser refuses ("is too large").
    #[test]
    fn a_quantity_that_overflows_with_its_suffix_is_none_not_infinite() {
        assert_eq!(parse_quantity("1E300G"), None);
        assert_eq!(parse_quantity("1e308Ki"), None);
        assert_eq!(parse_quantity("1e300k"), Some(1e303));
    }

    #[test]
    fn meta_from_pod_strips_runtime_and_reads_resources() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"},
            "spec": {"containers": [
                {"name": "app", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
                                               "limits": {"cpu": "1", "memory": "128Mi"}}},
                {"name": "side", "resources": {"limits": {"cpu": "500m"}}},
                {"name": "bare"}
            ]},
            "status": {"qosClass": "Burstable", "containerStatuses": [
                {"name": "app", "containerID": "containerd://abc123", "image": "x", "imageID": "",
                 "ready": true, "restartCount": 0},
                {"name": "side", "image": "x", "imageID": "", "ready": true, "restartCount": 0}
            ]}
        }))
        .expect("valid pod");
        let m = PodMeta::from_pod(&pod).expect("has uid");
        assert_eq!(
            (m.namespace.as_str(), m.name.as_str(), m.uid.as_str()),
            ("shop", "web-1", "u-1")
        );
        assert_eq!(m.qos_class, "Burstable");
        let app = m.container_by_id("abc123").expect("app by id");
        assert_eq!(app.name, "app");
        assert_eq!(app.cpu_request_cores, Some(0.25));
        assert_eq!(app.cpu_limit_cores, Some(1.0));
        assert_eq!(app.memory_request_bytes, Some(67_108_864.0));
        assert_eq!(app.memory_limit_bytes, Some(134_217_728.0));
        let side = &m.containers[1];
        assert_eq!(side.id, None);
        assert_eq!(
            side.cpu_request_cores,
            Some(0.5),
            "request defaults to limit"
        );
        assert_eq!(m.containers[2].cpu_request_cores, None);
        assert_eq!(m.cpu_request_cores(), None, "one container has no request");
    }

    #[test]
    fn pod_request_counts_sidecars_not_init_and_prefers_pod_level() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {
                "initContainers": [
                    {"name": "migrate", "resources": {"requests": {"cpu": "2"}}},
                    {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m", "memory": "1Mi"}}}
                ],
                "containers": [{"name": "app", "resources": {"requests": {"cpu": "400m", "memory": "3Mi"}}}]
            },
            "status": {"initContainerStatuses": [
                {"name": "proxy", "containerID": "cri-o://def", "image": "x", "imageID": "", "ready": true, "restartCount": 0}
            ]}
        }))
        .expect("valid pod");
        let mut m = PodMeta::from_pod(&pod).expect("has uid");
        assert_eq!(m.cpu_request_cores(), Some(0.5));
        assert_eq!(m.memory_request_bytes(), Some(4.0 * 1_048_576.0));
        assert_eq!(
            m.container_by_id("def").map(|c| c.name.as_str()),
            Some("proxy")
        );
        m.pod_cpu_request_cores = Some(1.0);
        assert_eq!(m.cpu_request_cores(), Some(1.0));
        assert_eq!(PodMeta::default().cpu_request_cores(), None);
    }

    #[test]
    fn index_replace_insert_remove() {
        let idx = PodMetaByUid::default();
        assert!(!idx.synced());
        idx.insert(PodMeta {
            uid: "a".into(),
            ..Default::default()
        });
        assert!(idx.get("a").is_some());
        idx.replace([PodMeta {
            uid: "b".into(),
            ..Default::default()
        }]);
        assert!(idx.synced());
        assert!(idx.get("a").is_none());
        assert_eq!(idx.len(), 1);
        idx.remove("b");
        assert!(idx.is_empty());
    }
}

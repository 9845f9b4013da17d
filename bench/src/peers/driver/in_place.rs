//! The `inplace` part: Tidal's `spec.vertical.mode: InPlace` against the VPA's
//! `updateMode: InPlaceOrRecreate` (its recommender, updater and admission controller at their
//! defaults), each on its own copy of the same Deployment, in its own namespace, created at
//! the same moment: [`REPLICAS`] pods (the updater's `--min-replicas`) of a container in a
//! duty cycle ([`SCRIPT`]) that requests [`REQUEST`], below both recommenders'
//! floors (25m and 250Mi for a one-container pod), so outside any recommendation's range from
//! the first one on. Read every second until every pod of both copies runs with new requests
//! (or the part's minutes end): when each copy's first and last pod got new requests, whether
//! it was in place (the same pod, its restart count unchanged) or by a new pod, and the
//! requests each reached beside its recommender's target.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tidal_e2e::bench::{Created, app_pods, progress};
use tidal_e2e::peers::vertical_pod_autoscalers;
use tidal_e2e::realnode::RealNode;
use tidal_e2e::{Stack, wait_for};
use tidal_scaler::api::ScalingPolicy;
use tidal_scaler::api::convert::parse_quantity;

use super::{APP, BENCH_LABEL, R, recommendations, vertical_pair};

const CONTAINER: &str = "app";
/// The VPA updater's default `--min-replicas`: it leaves a workload of fewer pods alone.
pub const REPLICAS: i32 = 2;
pub const REQUEST: (&str, &str) = ("10m", "16Mi");
/// 5k steps of shell arithmetic (about 12 ms here), then 100 ms asleep.
const SCRIPT: &str =
    "while :; do i=0; while [ $i -lt 5000 ]; do i=$((i+1)); done; usleep 100000; done";

/// `(cpu cores, memory bytes)`.
type Amounts = (f64, f64);

/// [`Amounts`] of a requests map.
fn amounts(
    r: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Option<Amounts> {
    let q = |k: &str| parse_quantity(&r?.get(k)?.0).ok();
    Some((q("cpu")?, q("memory")?))
}

/// The container's requests in the pod's spec, as the kubelet reports them applied, and its
/// restart count.
fn container_state(pod: &Pod) -> (Option<Amounts>, Option<Amounts>, i32) {
    let spec = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER))
        .and_then(|c| amounts(c.resources.as_ref().and_then(|r| r.requests.as_ref())));
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER));
    let applied =
        status.and_then(|c| amounts(c.resources.as_ref().and_then(|r| r.requests.as_ref())));
    (spec, applied, status.map_or(0, |c| c.restart_count))
}

/// One copy of the workload and what was seen of it.
struct Side {
    name: &'static str,
    pods: Api<Pod>,
    /// The pods that ran before the autoscaler was created.
    first: Vec<String>,
    initial: Amounts,
    first_change: Option<f64>,
    all_changed: Option<f64>,
    /// Pods seen that were not among [`Side::first`] (an eviction's replacement).
    new_pods: Vec<String>,
    last: Value,
}

impl Side {
    async fn observe(&mut self, at: f64) {
        // A failed read skips this second, not the part.
        let Ok(live) = app_pods(&self.pods, APP).await else {
            return;
        };
        let mut rows = Vec::new();
        let mut changed = 0;
        for p in &live {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            if !self.first.contains(&uid) && !self.new_pods.contains(&uid) {
                progress(format!("{}: a new pod {uid} at {at:.0} s", self.name));
                self.new_pods.push(uid.clone());
            }
            let (spec, applied, restarts) = container_state(p);
            // New requests, and the kubelet runs them.
            let done = spec.is_some_and(|s| s != self.initial) && applied == spec;
            changed += usize::from(done);
            rows.push(json!({
                "uid": uid, "original": self.first.contains(&uid),
                "cpu": spec.map(|s| s.0), "memory": spec.map(|s| s.1),
                "applied": applied == spec, "restarts": restarts,
            }));
        }
        if changed > 0 && self.first_change.is_none() {
            self.first_change = Some(at);
            progress(format!(
                "{}: first pod with new requests at {at:.0} s",
                self.name
            ));
        }
        if changed == REPLICAS as usize && live.len() == changed && self.all_changed.is_none() {
            self.all_changed = Some(at);
            progress(format!(
                "{}: every pod with new requests at {at:.0} s",
                self.name
            ));
        }
        self.last = json!(rows);
    }

    fn summary(&self, target: Option<Value>) -> Value {
        let rows = self.last.as_array().cloned().unwrap_or_default();
        let in_place = rows
            .iter()
            .filter(|r| r["original"] == true && r["applied"] == true && r["restarts"] == 0)
            .filter(|r| r["cpu"].as_f64() != Some(self.initial.0))
            .count();
        let restarts: i64 = rows.iter().filter_map(|r| r["restarts"].as_i64()).sum();
        json!({
            "first_change_seconds": self.first_change,
            "all_changed_seconds": self.all_changed,
            "resized_in_place": in_place,
            "new_pods": self.new_pods.len(),
            "restarts": restarts,
            "pods": rows,
            "target": target,
        })
    }
}

/// One side's copy of the Deployment, in its own namespace, once its [`REPLICAS`] pods run.
async fn copy(
    admin: &kube::Client,
    node: &RealNode,
    created: &Created,
    name: &'static str,
) -> R<(Side, String)> {
    let ns = created
        .namespace(admin, &format!("bench-peers-inplace-{name}"), BENCH_LABEL)
        .await?;
    let container = node.busybox(CONTAINER, SCRIPT, Some(REQUEST), None);
    let deploys: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    deploys
        .create(
            &PostParams::default(),
            &node.deployment(APP, REPLICAS, container),
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let first = wait_for(
        &format!("{REPLICAS} running pods of {name}'s copy"),
        Duration::from_secs(120),
        || async {
            let uids: Vec<String> = app_pods(&pods, APP)
                .await
                .ok()?
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .filter_map(|p| p.metadata.uid.clone())
                .collect();
            (uids.len() == REPLICAS as usize).then_some(uids)
        },
    )
    .await?;
    let initial = (
        parse_quantity(REQUEST.0).map_err(|e| anyhow::anyhow!("{e}"))?,
        parse_quantity(REQUEST.1).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let side = Side {
        name,
        pods,
        first,
        initial,
        first_change: None,
        all_changed: None,
        new_pods: Vec::new(),
        last: Value::Null,
    };
    Ok((side, ns))
}

pub async fn in_place(
    stack: &Stack,
    admin: &kube::Client,
    node: &RealNode,
    created: &Created,
    minutes: u64,
) -> R<Value> {
    stack.var("TIDAL_VPA_UPDATER_METRICS_URL").map_err(|_| {
        anyhow::anyhow!("the stack runs without the VPA's updater and admission controller")
    })?;
    let (mut tidal, tidal_ns) = copy(admin, node, created, "tidal").await?;
    let (mut vpa, vpa_ns) = copy(admin, node, created, "vpa").await?;
    let policies: Api<ScalingPolicy> = Api::namespaced(admin.clone(), &tidal_ns);
    let vpas = vertical_pod_autoscalers(admin, &vpa_ns);
    let (p, object) = vertical_pair(CONTAINER, REPLICAS, "InPlace", "InPlaceOrRecreate")?;
    let start = Instant::now();
    policies.create(&PostParams::default(), &p).await?;
    vpas.create(&PostParams::default(), &object).await?;
    let total = Duration::from_secs(minutes * 60);
    while start.elapsed() < total {
        let at = start.elapsed().as_secs_f64();
        tidal.observe(at).await;
        vpa.observe(at).await;
        if tidal.all_changed.is_some() && vpa.all_changed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (tidal_bounds, vpa_bounds) = recommendations(&policies, &vpas, CONTAINER).await;
    let target = |b: Option<Value>| b.map(|b| b["target"].clone());
    let (tidal_target, vpa_target) = (target(tidal_bounds), target(vpa_bounds));
    Ok(json!({
        "kind": "inplace", "minutes": minutes, "replicas": REPLICAS,
        "request": {"cpu": REQUEST.0, "memory": REQUEST.1},
        "observed_seconds": start.elapsed().as_secs_f64(),
        "copies": {"tidal": tidal.summary(tidal_target), "vpa": vpa.summary(vpa_target)},
    }))
}

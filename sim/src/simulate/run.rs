//! The replay: a [`Workload`] per algorithm, driven second by second by a [`Scaler`] that
//! calls the pure engine with the time as input.
//!
//! - **Tidal**: the policy through the controller's own rounds ([`OfflinePolicy`]: the same
//!   compilation, gate, status and compacted history as a cycle), every second (every 15 s if
//!   the policy has a `prometheus` metric, as the controller does), fed what the sources would
//!   gather: per-pod CPU usage over 1 s, the group's lag, the query's samples.
//! - **HPA**: the policy's CPU metric alone (80% utilization when it has none), no `behavior`
//!   (the HPA's legacy defaults: 5-minute downscale stabilization, scale-up limited to
//!   `max(2 * current, 4)`), every 15 s, CPU averaged over the last 15 s (metrics-server).
//! - **KEDA**: the lag alone as an External AverageValue metric with target `lagPerReplica`,
//!   the lag capped as KEDA's Kafka scaler caps it, no `behavior`, every 15 s; the operator's
//!   activation loop (scale from and to zero) polls every 30 s with a 300 s cooldown.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use tidal_scaler::api;
use tidal_scaler::controller::observe::{Gathered, lag_query};
use tidal_scaler::controller::offline::OfflinePolicy;
use tidal_scaler::sources::kafka::LagReading;
use tidal_scaler::sources::prometheus::PromSample;
use tidal_scaler::sources::{ContainerUsage, PodUsage};

use tidal_engine::{
    self as engine, Observation, State,
    types::{
        ControllerSettings, KafkaDetail, MetricSource, MetricSpec, MetricTarget, NextState, Pod,
        TargetType,
    },
};

use super::SimulateError;
use super::model::{ModelParams, Second, SimPod, Workload};
use super::policy::{Policy, TIDAL_FAST_SECONDS};
use super::trace::Trace;

/// Second 0 of every replay, as a Unix time (the engine takes absolute times).
pub const BASE_UNIX_SECONDS: f64 = 1_700_000_000.0;
/// The HPA's sync period (`--horizontal-pod-autoscaler-sync-period`).
pub const HPA_SYNC_SECONDS: u64 = 15;
/// metrics-server's resolution: the window a CPU sample averages over.
pub const METRICS_SERVER_WINDOW_SECONDS: u64 = 15;
/// KEDA's `pollingInterval` default.
pub const KEDA_POLLING_SECONDS: u64 = 30;
/// Tidal's interval for policies with a Prometheus query (`--prometheus-interval-seconds`).
pub const TIDAL_PROMETHEUS_SECONDS: u64 = 15;
/// The name of the container the simulated pods run (unless the CPU metric names one).
pub const CONTAINER: &str = "app";

/// A peer to compare Tidal with (`--compare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Peer {
    /// The Kubernetes HPA on CPU, with its defaults.
    Hpa,
    /// KEDA's Kafka scaler on the lag, with its defaults.
    Keda,
}

/// Who scales a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Tidal,
    Hpa,
    Keda,
}

impl Algorithm {
    /// The lowercase name used in tables, JSON and charts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tidal => "tidal",
            Self::Hpa => "hpa",
            Self::Keda => "keda",
        }
    }
}

impl From<Peer> for Algorithm {
    fn from(p: Peer) -> Self {
        match p {
            Peer::Hpa => Self::Hpa,
            Peer::Keda => Self::Keda,
        }
    }
}

/// The replay settings after defaults and checks (see [`super::Options`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Setup {
    pub model: ModelParams,
    pub initial_replicas: usize,
    pub partitions: u32,
    /// KEDA's `lagThreshold` (from `--lag-per-replica` or the policy's `kafkaLag`).
    pub lag_per_replica: Option<f64>,
    /// The peers' loops run at the seconds `s` where `s + sync_offset_seconds` is a multiple
    /// of their period (their phase relative to the trace is arbitrary in a cluster).
    pub sync_offset_seconds: u64,
}

/// What one metric is fed from the model.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Feed {
    /// Per-pod CPU usage in cores (request 1 core), averaged over the scaler's CPU window.
    Cpu,
    /// The lag (backlog plus commit trail) with partition details.
    KafkaLag,
    /// The load, as one total (`prometheus` `targetValue` / `targetPerReplica`).
    Load,
    /// The load shared over the ready pods (`prometheus` `targetAverageValue`).
    LoadPerPod,
    /// The lag capped as KEDA's Kafka scaler caps it.
    KedaLag { lag_per_replica: f64 },
}

/// KEDA's operator loop: activation (scale from zero) and scale to zero after the cooldown.
#[derive(Debug, Clone)]
struct KedaOperator {
    min_replicas: usize,
    activation_lag: f64,
    cooldown_seconds: f64,
    last_active: Option<f64>,
}

/// One algorithm's scaler: a spec for the engine, how often it runs, what it is fed.
pub struct Scaler {
    algorithm: Algorithm,
    spec: engine::Spec,
    feeds: Vec<Feed>,
    interval_seconds: u64,
    cpu_window_seconds: u64,
    container: String,
    partitions: u32,
    sync_offset_seconds: u64,
    keda: Option<KedaOperator>,
    /// Tidal: the policy's metrics as written (for the sources' keys) and its rounds.
    tidal: Option<(Vec<api::MetricSpec>, OfflinePolicy)>,
    history: Option<NextState>,
    validated: bool,
}

fn feed_of(m: &MetricSpec) -> Feed {
    match m.source {
        MetricSource::Resource | MetricSource::ContainerResource => Feed::Cpu,
        MetricSource::KafkaLag => Feed::KafkaLag,
        MetricSource::Pods => Feed::LoadPerPod,
        // `prometheus` with a total target; Object does not come from the CRD.
        MetricSource::External | MetricSource::Object => Feed::Load,
    }
}

/// CPU at `percent` utilization, as the HPA defaults to.
fn cpu_utilization(percent: i32) -> MetricSpec {
    MetricSpec {
        name: "cpu".to_owned(),
        source: MetricSource::Resource,
        container: None,
        target: MetricTarget {
            kind: TargetType::Utilization,
            average_utilization: Some(percent),
            average_value: None,
            value: None,
        },
        kafka_lag: None,
    }
}

impl Scaler {
    /// Tidal with the policy as written, through the controller's own rounds.
    pub fn tidal(policy: &Policy, setup: &Setup) -> Self {
        let feeds: Vec<Feed> = policy.spec.metrics.iter().map(feed_of).collect();
        let prometheus = feeds
            .iter()
            .any(|f| matches!(f, Feed::Load | Feed::LoadPerPod));
        let rounds = policy.rounds.clone();
        let mut s = Self::new(
            Algorithm::Tidal,
            policy.spec.clone(),
            feeds,
            if prometheus {
                TIDAL_PROMETHEUS_SECONDS
            } else {
                TIDAL_FAST_SECONDS
            },
            TIDAL_FAST_SECONDS,
            setup,
        );
        s.tidal = Some((policy.crd.metrics.clone(), rounds));
        s
    }

    /// The HPA on the policy's CPU metric (80% utilization without one), legacy behavior.
    pub fn hpa(policy: &Policy, setup: &Setup) -> Self {
        let cpu = policy.cpu().cloned().unwrap_or_else(|| cpu_utilization(80));
        let spec = engine::Spec {
            min_replicas: policy.spec.min_replicas.max(1),
            max_replicas: policy.spec.max_replicas,
            metrics: vec![cpu],
            behavior: None,
            controller: ControllerSettings::default(),
            formula: None,
        };
        Self::new(
            Algorithm::Hpa,
            spec,
            vec![Feed::Cpu],
            HPA_SYNC_SECONDS,
            METRICS_SERVER_WINDOW_SECONDS,
            setup,
        )
    }

    /// KEDA's Kafka scaler with `lag_per_replica` as `lagThreshold`; activation threshold and
    /// cooldown from the policy's `kafkaLag` metric when it has one (KEDA's defaults, 0 and
    /// 300 s, are also the CRD's).
    pub fn keda(policy: &Policy, setup: &Setup, lag_per_replica: f64) -> Self {
        let lag = policy.kafka_lag().map(|(_, k)| k).unwrap_or_default();
        let spec = engine::Spec {
            min_replicas: policy.spec.min_replicas.max(1),
            max_replicas: policy.spec.max_replicas,
            metrics: vec![MetricSpec {
                name: "lag".to_owned(),
                source: MetricSource::External,
                container: None,
                target: MetricTarget {
                    kind: TargetType::AverageValue,
                    average_utilization: None,
                    average_value: Some(lag_per_replica),
                    value: None,
                },
                kafka_lag: None,
            }],
            behavior: None,
            controller: ControllerSettings::default(),
            formula: None,
        };
        let mut s = Self::new(
            Algorithm::Keda,
            spec,
            vec![Feed::KedaLag { lag_per_replica }],
            HPA_SYNC_SECONDS,
            METRICS_SERVER_WINDOW_SECONDS,
            setup,
        );
        s.keda = Some(KedaOperator {
            min_replicas: usize::try_from(policy.spec.min_replicas).unwrap_or(0),
            activation_lag: lag.activation_lag_threshold,
            cooldown_seconds: lag.cooldown_seconds,
            last_active: None,
        });
        s
    }

    fn new(
        algorithm: Algorithm,
        spec: engine::Spec,
        feeds: Vec<Feed>,
        interval_seconds: u64,
        cpu_window_seconds: u64,
        setup: &Setup,
    ) -> Self {
        let container = spec
            .metrics
            .iter()
            .find_map(|m| m.container.clone())
            .unwrap_or_else(|| CONTAINER.to_owned());
        Self {
            algorithm,
            spec,
            feeds,
            interval_seconds,
            cpu_window_seconds,
            container,
            partitions: setup.partitions,
            sync_offset_seconds: match algorithm {
                Algorithm::Tidal => 0,
                Algorithm::Hpa | Algorithm::Keda => setup.sync_offset_seconds,
            },
            keda: None,
            tidal: None,
            history: None,
            validated: false,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn interval_seconds(&self) -> u64 {
        self.interval_seconds
    }

    /// The engine spec this scaler runs.
    pub fn spec(&self) -> &engine::Spec {
        &self.spec
    }

    /// The replica count to start from: the HPA cannot scale from zero.
    fn initial_replicas(&self, wanted: usize) -> usize {
        match self.algorithm {
            Algorithm::Hpa => wanted.max(1),
            Algorithm::Tidal | Algorithm::Keda => wanted,
        }
    }

    /// The pods as the engine sees them at `t`.
    fn pods(&self, w: &Workload, t: f64) -> Vec<Pod> {
        w.pods()
            .iter()
            .map(|p| engine_pod(p, t, &self.container))
            .collect()
    }

    /// The observations of every metric after second `sec`; `util` is the utilization of
    /// every second so far (`None` without ready pods).
    fn observations(&self, w: &Workload, sec: &Second, util: &[Option<f64>]) -> Vec<Observation> {
        let now = BASE_UNIX_SECONDS + sec.t;
        let mut out = Vec::new();
        for (m, feed) in self.spec.metrics.iter().zip(&self.feeds) {
            let obs = |pod: Option<String>, value: f64| Observation {
                metric: m.name.clone(),
                pod,
                value,
                timestamp_unix_seconds: Some(now),
                window_seconds: None,
                error: None,
                stale: false,
                kafka: None,
                invalid: false,
            };
            match *feed {
                Feed::Cpu => {
                    for (pod, usage) in self.cpu_usage(w, sec, util) {
                        let mut o = obs(Some(pod), usage);
                        o.window_seconds = Some(self.cpu_window_seconds as f64);
                        out.push(o);
                    }
                }
                Feed::KafkaLag => {
                    let r = self.lag_reading(sec);
                    let mut o = obs(None, r.total);
                    o.kafka = Some(KafkaDetail {
                        partitions: Some(r.partitions),
                        partitions_with_lag: Some(r.partitions_with_lag),
                        persistent_lag: r.persistent_lag,
                        consume_rate_per_second: r.consume_rate_per_second,
                        produce_rate_per_second: r.produce_rate_per_second,
                        commit_interval_lag: Some(r.commit_interval_total),
                    });
                    out.push(o);
                }
                Feed::Load => out.push(obs(None, sec.load)),
                Feed::LoadPerPod => {
                    for (pod, load) in per_pod_load(w, sec) {
                        out.push(obs(Some(pod), load));
                    }
                }
                Feed::KedaLag { lag_per_replica } => {
                    out.push(obs(
                        None,
                        keda_lag(sec.lag, lag_per_replica, self.partitions),
                    ));
                }
            }
        }
        out
    }

    /// Each pod's CPU usage in cores (request 1 core) over the scaler's CPU window: the
    /// utilization of the window's seconds with ready pods, 0 for a pod not ready.
    fn cpu_usage(&self, w: &Workload, sec: &Second, util: &[Option<f64>]) -> Vec<(String, f64)> {
        let window = usize::try_from(self.cpu_window_seconds).unwrap_or(1);
        let recent = &util[util.len().saturating_sub(window)..];
        let (sum, n) = recent
            .iter()
            .flatten()
            .fold((0.0, 0usize), |(s, n), u| (s + u, n + 1));
        let usage = if n > 0 { sum / n as f64 } else { 0.0 };
        w.pods()
            .iter()
            .map(|p| (pod_name(p), if p.ready(sec.t) { usage } else { 0.0 }))
            .collect()
    }

    /// The group's lag as a lag client reads it after second `sec`.
    fn lag_reading(&self, sec: &Second) -> LagReading {
        let partitions = i64::from(self.partitions);
        LagReading {
            total: sec.lag,
            partitions,
            partitions_with_lag: if sec.lag > 0.0 {
                partitions.min(sec.lag.ceil() as i64)
            } else {
                0
            },
            persistent_lag: 0.0,
            // The model's committed lag keeps a steady trail of half a commit interval: it is
            // already the sawtooth's mean.
            commit_interval_total: sec.lag,
            consume_rate_per_second: Some(sec.served),
            produce_rate_per_second: Some(sec.load),
            complete: true,
            timestamp_unix_seconds: BASE_UNIX_SECONDS + sec.t,
        }
    }

    /// What the sources would gather for Tidal's `metrics` after second `sec`: the agents'
    /// per-pod usage, the lag client's reading, each query's samples.
    fn gathered(
        &self,
        metrics: &[api::MetricSpec],
        namespace: &str,
        w: &Workload,
        sec: &Second,
        util: &[Option<f64>],
    ) -> Gathered {
        let now = BASE_UNIX_SECONDS + sec.t;
        let mut g = Gathered::default();
        for (m, feed) in metrics.iter().zip(&self.feeds) {
            match (*feed, m) {
                (Feed::Cpu, _) => {
                    let usage = self
                        .cpu_usage(w, sec, util)
                        .into_iter()
                        .map(|(pod, cores)| {
                            let container = ContainerUsage {
                                cpu_cores: Some(cores),
                                memory_working_set_bytes: None,
                            };
                            let usage = PodUsage {
                                containers: BTreeMap::from([(self.container.clone(), container)]),
                                timestamp_unix_seconds: now,
                            };
                            ((namespace.to_owned(), pod), usage)
                        })
                        .collect::<HashMap<_, _>>();
                    g.usage = Some(Ok(usage));
                }
                (
                    Feed::KafkaLag,
                    api::MetricSpec {
                        kafka_lag: Some(k), ..
                    },
                ) => {
                    g.kafka.insert(lag_query(k), Ok(self.lag_reading(sec)));
                }
                (
                    Feed::Load | Feed::LoadPerPod,
                    api::MetricSpec {
                        prometheus: Some(p),
                        ..
                    },
                ) => {
                    let sample = |labels: BTreeMap<String, String>, value| PromSample {
                        labels,
                        value,
                        timestamp_unix_seconds: now,
                    };
                    let samples = if *feed == Feed::Load {
                        vec![sample(BTreeMap::new(), sec.load)]
                    } else {
                        per_pod_load(w, sec)
                            .into_iter()
                            .map(|(pod, load)| sample(BTreeMap::from([("pod".into(), pod)]), load))
                            .collect()
                    };
                    g.prometheus.insert(p.query.clone(), Ok(samples));
                }
                _ => {}
            }
        }
        g
    }

    /// Runs the scaler after second `s` (`sec`, with `util` as in [`Self::observations`]) and
    /// returns the replica count to scale to, when it runs and is not the current one.
    pub fn step(
        &mut self,
        s: u64,
        w: &Workload,
        sec: &Second,
        util: &[Option<f64>],
    ) -> Result<Option<usize>, SimulateError> {
        let current = w.replicas();
        let phase = s + self.sync_offset_seconds;
        if let Some(k) = &mut self.keda
            && phase.is_multiple_of(KEDA_POLLING_SECONDS)
        {
            let active = sec.lag > k.activation_lag;
            if active {
                k.last_active = Some(sec.t);
            }
            if current == 0 && active {
                return Ok(Some(k.min_replicas.max(1)));
            }
            let cooled = k
                .last_active
                .is_none_or(|a| sec.t - a >= k.cooldown_seconds);
            if current > 0 && k.min_replicas == 0 && !active && cooled {
                return Ok(Some(0));
            }
        }
        // KEDA's HPA does nothing at zero replicas (the operator wakes the workload).
        if (self.keda.is_some() && current == 0) || !phase.is_multiple_of(self.interval_seconds) {
            return Ok(None);
        }
        if let Some((metrics, rounds)) = &self.tidal {
            let gathered = self.gathered(metrics, rounds.namespace(), w, sec, util);
            let pods: Vec<Arc<k8s::Pod>> = w
                .pods()
                .iter()
                .map(|p| Arc::new(k8s_pod(p, sec.t, &self.container, rounds.namespace())))
                .collect();
            let replicas = i32::try_from(current).unwrap_or(i32::MAX);
            let now = BASE_UNIX_SECONDS + sec.t;
            let Some((_, rounds)) = &mut self.tidal else {
                return Ok(None);
            };
            let round = rounds.round(&pods, replicas, &gathered, now);
            return Ok(round
                .scaled_to
                .map(|n| usize::try_from(n).unwrap_or(0))
                .filter(|&n| n != current));
        }
        let history = self.history.take();
        let state = State {
            spec_replicas: i32::try_from(current).unwrap_or(i32::MAX),
            status_replicas: Some(i32::try_from(current).unwrap_or(i32::MAX)),
            pods: self.pods(w, sec.t),
            recommendations: history.as_ref().map(|h| h.recommendations.clone()),
            scale_events: history
                .as_ref()
                .map(|h| h.scale_events.clone())
                .unwrap_or_default(),
            last_active_unix_seconds: history.as_ref().and_then(|h| h.last_active_unix_seconds),
        };
        let observations = self.observations(w, sec, util);
        let now = BASE_UNIX_SECONDS + sec.t;
        if !self.validated {
            let input = engine::Input {
                spec: self.spec.clone(),
                state,
                observations,
                now_unix_seconds: now,
            };
            engine::validate(&input).map_err(|error| SimulateError::Engine {
                algorithm: self.algorithm.name(),
                error,
            })?;
            self.validated = true;
            return Ok(self.decide(&input.state, &input.observations, now, current));
        }
        Ok(self.decide(&state, &observations, now, current))
    }

    fn decide(
        &mut self,
        state: &State,
        observations: &[Observation],
        now: f64,
        current: usize,
    ) -> Option<usize> {
        // The peers' models have no formula; Tidal's rounds hold the policy's own.
        let d = engine::desired_with_formula(&self.spec, None, state, observations, now);
        self.history = Some(d.next);
        let desired = usize::try_from(d.desired_replicas).unwrap_or(0);
        (desired != current).then_some(desired)
    }
}

/// The total lag as KEDA's Kafka scaler reports it (`getTotalLag`, defaults
/// `allowIdleConsumers: false`, `limitToPartitionsWithLag: false`): integer lag, capped at
/// `partitions * lagThreshold` once `lag / lagThreshold` (integer division) exceeds the
/// partition count.
pub fn keda_lag(lag: f64, lag_per_replica: f64, partitions: u32) -> f64 {
    let total = lag.floor().max(0.0);
    let threshold = lag_per_replica.floor().max(1.0);
    let upper = f64::from(partitions);
    if (total / threshold).floor() > upper {
        upper * threshold
    } else {
        total
    }
}

fn pod_name(p: &SimPod) -> String {
    format!("pod-{}", p.id)
}

/// The load shared over the ready pods, per ready pod.
fn per_pod_load(w: &Workload, sec: &Second) -> Vec<(String, f64)> {
    w.pods()
        .iter()
        .filter(|p| p.ready(sec.t))
        .map(|p| (pod_name(p), sec.load / sec.ready.max(1) as f64))
        .collect()
}

/// A simulated pod as the API server would list it: Running, Ready from `ready_at` (its
/// last transition), started at `created_at`, one container requesting one core.
fn k8s_pod(p: &SimPod, t: f64, container: &str, namespace: &str) -> k8s::Pod {
    let time = |secs: f64| {
        let ms = ((BASE_UNIX_SECONDS + secs) * 1000.0).round() as i64;
        Time(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
    };
    let ready = p.ready(t);
    k8s::Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(p)),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        spec: Some(k8s::PodSpec {
            containers: vec![k8s::Container {
                name: container.to_owned(),
                resources: Some(k8s::ResourceRequirements {
                    requests: Some(BTreeMap::from([("cpu".to_owned(), Quantity("1".into()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(k8s::PodStatus {
            phase: Some("Running".to_owned()),
            start_time: Some(time(p.created_at)),
            conditions: Some(vec![k8s::PodCondition {
                type_: "Ready".to_owned(),
                status: if ready { "True" } else { "False" }.to_owned(),
                last_transition_time: Some(time(if ready { p.ready_at } else { p.created_at })),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// A simulated pod as the engine sees it: the controller's own conversion of [`k8s_pod`], so
/// the peers' models and Tidal's rounds see the same pods.
fn engine_pod(p: &SimPod, t: f64, container: &str) -> Pod {
    tidal_scaler::controller::target::engine_pod(&k8s_pod(p, t, container, ""))
}

/// One algorithm's replay.
#[derive(Debug, Clone)]
pub struct Run {
    pub algorithm: Algorithm,
    pub interval_seconds: u64,
    /// Every second, in order.
    pub seconds: Vec<Second>,
    /// Changes of the replica count.
    pub scale_events: u64,
}

/// The figures of one replay.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    pub algorithm: Algorithm,
    pub interval_seconds: u64,
    /// Seconds with utilization above `slo_utilization` or a backlog above `slo_lag`.
    pub slo_violation_seconds: u64,
    /// The sum over seconds of the replica count (ready or not).
    pub replica_seconds: u64,
    pub scale_events: u64,
    pub max_replicas: u64,
    /// The largest backlog.
    pub max_lag: f64,
    /// Mean utilization over the seconds with ready pods.
    pub mean_utilization: f64,
}

impl Run {
    /// The figures.
    pub fn summary(&self) -> Summary {
        let busy: Vec<f64> = self
            .seconds
            .iter()
            .filter(|s| s.ready > 0)
            .map(|s| s.utilization)
            .collect();
        Summary {
            algorithm: self.algorithm,
            interval_seconds: self.interval_seconds,
            slo_violation_seconds: self.seconds.iter().filter(|s| s.violated).count() as u64,
            replica_seconds: self.seconds.iter().map(|s| s.replicas as u64).sum(),
            scale_events: self.scale_events,
            max_replicas: self
                .seconds
                .iter()
                .map(|s| s.replicas as u64)
                .max()
                .unwrap_or(0),
            max_lag: self.seconds.iter().map(|s| s.queue).fold(0.0, f64::max),
            mean_utilization: if busy.is_empty() {
                0.0
            } else {
                busy.iter().sum::<f64>() / busy.len() as f64
            },
        }
    }
}

/// Replays `trace` with `scaler` on a fresh workload of `setup.initial_replicas` pods.
pub fn replay(trace: &Trace, mut scaler: Scaler, setup: &Setup) -> Result<Run, SimulateError> {
    let initial = scaler.initial_replicas(setup.initial_replicas);
    let mut w = Workload::new(setup.model, initial, 0.0);
    let mut util = Vec::with_capacity(trace.seconds());
    let mut seconds = Vec::with_capacity(trace.seconds());
    let mut scale_events = 0;
    for (s, &load) in trace.load.iter().enumerate() {
        let t = s as f64;
        let sec = w.serve(t, load);
        util.push((sec.ready > 0).then_some(sec.utilization));
        if let Some(n) = scaler.step(s as u64, &w, &sec, &util)? {
            w.scale_to(t, n);
            scale_events += 1;
        }
        seconds.push(sec);
    }
    Ok(Run {
        algorithm: scaler.algorithm,
        interval_seconds: scaler.interval_seconds,
        seconds,
        scale_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "\
apiVersion: tidal.dev/v1alpha1
kind: ScalingPolicy
metadata: {name: w}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: w}
  minReplicas: 2
  maxReplicas: 12
  metrics:
    - name: cpu
      resource: {name: cpu, targetUtilization: 70}
    - name: lag
      kafkaLag: {cluster: c, group: g, lagPerReplica: 150}
";

    fn setup() -> Setup {
        Setup {
            model: ModelParams::default(),
            initial_replicas: 3,
            partitions: 12,
            lag_per_replica: Some(150.0),
            sync_offset_seconds: 0,
        }
    }

    fn policy(text: &str) -> Policy {
        super::super::policy::parse(text).expect("policy")
    }

    /// The seconds after which the replica count changed.
    fn changes(run: &Run) -> Vec<u64> {
        run.seconds
            .windows(2)
            .filter(|p| p[0].replicas != p[1].replicas)
            .map(|p| p[0].t as u64)
            .collect()
    }

    #[test]
    fn keda_caps_the_lag_like_its_kafka_scaler() {
        // 10 partitions, threshold 10 (the table in docs/engine.md).
        assert_eq!(keda_lag(105.0, 10.0, 10), 105.0);
        assert_eq!(keda_lag(110.0, 10.0, 10), 100.0);
        assert_eq!(keda_lag(95.7, 10.0, 10), 95.0);
        assert_eq!(keda_lag(0.0, 10.0, 10), 0.0);
    }

    /// A steady load the initial replicas serve: nobody scales, nothing is violated.
    #[test]
    fn a_steady_load_needs_no_scaling() {
        let policy = policy(POLICY);
        let s = setup();
        let trace = Trace::from_loads(vec![180.0; 400]);
        for scaler in [
            Scaler::tidal(&policy, &s),
            Scaler::hpa(&policy, &s),
            Scaler::keda(&policy, &s, 150.0),
        ] {
            let name = scaler.algorithm().name();
            let run = replay(&trace, scaler, &s).expect("replays");
            let sum = run.summary();
            assert_eq!(sum.slo_violation_seconds, 0, "{name}");
            assert_eq!(sum.replica_seconds, 3 * 400, "{name}");
            assert_eq!(sum.scale_events, 0, "{name}");
            assert!((sum.mean_utilization - 0.6).abs() < 1e-12, "{name}");
        }
    }

    /// The predictive lag option on a steady load that runs hot (85% of 3 replicas): the
    /// commit trail (255/s x 2.5 s = 637.5) is above the accepted 3 x 150, but the group keeps
    /// up, so the lag is sized as KEDA sizes it, once (ceil(637.5 / 150) = 5), and then holds.
    /// Before the tolerance, the predictive size was `replicas x (1 + 2.5 / 30)` at every
    /// second: one more replica each time, up to 12.
    #[test]
    fn predictive_lag_does_not_ratchet_on_a_steady_load() {
        let policy = policy(&POLICY.replace(
            "lagPerReplica: 150}",
            "lagPerReplica: 150, predictive: {targetDrainSeconds: 30, lookaheadSeconds: 30}}",
        ));
        let s = setup();
        let trace = Trace::from_loads(vec![255.0; 600]);
        let run = replay(&trace, Scaler::tidal(&policy, &s), &s).expect("replays");
        let sum = run.summary();
        assert_eq!((sum.scale_events, sum.max_replicas), (1, 5), "{sum:?}");
        assert_eq!(run.seconds.last().map(|x| x.replicas), Some(5));
        assert_eq!(sum.slo_violation_seconds, 0);
    }

    /// Tidal runs through the controller's own gate: a `dryRun` policy decides and never
    /// scales; `tidal.dev/paused-replicas` holds the count there whatever the load.
    #[test]
    fn tidal_replays_the_controllers_gate() {
        let s = setup();
        let mut load = vec![180.0; 60];
        load.extend(vec![700.0; 300]);
        let trace = Trace::from_loads(load);
        let run = |text: &str| {
            let scaler = Scaler::tidal(&policy(text), &s);
            replay(&trace, scaler, &s).expect("replays").summary()
        };
        let writing = run(POLICY);
        assert!(writing.max_replicas > 3, "{writing:?}");
        let dry = run(&POLICY.replace("  minReplicas: 2\n", "  minReplicas: 2\n  dryRun: true\n"));
        assert_eq!((dry.scale_events, dry.max_replicas), (0, 3), "{dry:?}");
        assert!(dry.slo_violation_seconds > writing.slo_violation_seconds);
        let paused = run(&POLICY.replace(
            "metadata: {name: w}",
            "metadata: {name: w, annotations: {tidal.dev/paused-replicas: \"5\"}}",
        ));
        assert_eq!(
            (paused.scale_events, paused.max_replicas),
            (1, 5),
            "{paused:?}"
        );
        assert_eq!(paused.replica_seconds, 3 + 5 * 359, "{paused:?}");
    }

    /// A load step: every algorithm scales up, none beyond the policy's maximum, and the
    /// scaler intervals are those documented.
    #[test]
    fn a_step_scales_everyone_up_within_bounds() {
        let policy = policy(POLICY);
        let s = setup();
        let mut load = vec![180.0; 120];
        load.extend(vec![700.0; 600]);
        let trace = Trace::from_loads(load);
        for (scaler, interval) in [
            (Scaler::tidal(&policy, &s), 1),
            (Scaler::hpa(&policy, &s), 15),
            (Scaler::keda(&policy, &s, 150.0), 15),
        ] {
            let name = scaler.algorithm().name();
            assert_eq!(scaler.interval_seconds(), interval, "{name}");
            let run = replay(&trace, scaler, &s).expect("replays");
            let sum = run.summary();
            assert!(
                sum.max_replicas >= 8 && sum.max_replicas <= 12,
                "{name}: {sum:?}"
            );
            assert!(sum.scale_events >= 1, "{name}");
            // Before the step nobody moves (no scale-down within the first 5 minutes).
            assert!(run.seconds[..121].iter().all(|x| x.replicas == 3), "{name}");
            assert!(
                changes(&run).iter().all(|t| t % interval == 0),
                "{name}: {:?}",
                changes(&run)
            );
        }
    }

    /// `sync_offset_seconds` moves the peers' loops, not Tidal's.
    #[test]
    fn the_sync_offset_moves_the_peers_loops() {
        let policy = policy(POLICY);
        let s = Setup {
            sync_offset_seconds: 7,
            ..setup()
        };
        let mut load = vec![180.0; 120];
        load.extend(vec![700.0; 200]);
        let trace = Trace::from_loads(load);
        for scaler in [Scaler::hpa(&policy, &s), Scaler::keda(&policy, &s, 150.0)] {
            let name = scaler.algorithm().name();
            let run = replay(&trace, scaler, &s).expect("replays");
            let changes = changes(&run);
            assert!(!changes.is_empty(), "{name}");
            assert!(
                changes.iter().all(|t| (t + 7) % 15 == 0),
                "{name}: {changes:?}"
            );
        }
        let tidal = replay(&trace, Scaler::tidal(&policy, &s), &s).expect("replays");
        assert_eq!(tidal.seconds[120].replicas, 3);
        assert!(
            tidal.seconds[121].replicas > 3,
            "Tidal reacts within a second"
        );
    }

    /// Without a CPU metric the HPA uses its default, 80% utilization.
    #[test]
    fn the_hpa_defaults_to_cpu_at_80_percent() {
        let policy = policy(&POLICY.replace(
            "    - name: cpu\n      resource: {name: cpu, targetUtilization: 70}\n",
            "",
        ));
        let hpa = Scaler::hpa(&policy, &setup());
        assert_eq!(hpa.spec().metrics[0].target.average_utilization, Some(80));
        assert!(hpa.spec().behavior.is_none());
    }

    /// KEDA with `minReplicas: 0`: scaled to zero after the cooldown, woken at a 30 s poll.
    #[test]
    fn keda_scales_to_zero_and_back() {
        let policy = policy(&POLICY.replace("minReplicas: 2", "minReplicas: 0"));
        let s = Setup {
            initial_replicas: 1,
            ..setup()
        };
        let mut load = vec![0.0; 400];
        load.extend(vec![50.0; 100]);
        let run = replay(
            &Trace::from_loads(load),
            Scaler::keda(&policy, &s, 150.0),
            &s,
        )
        .expect("replays");
        // Never active before 400 s: scaled to zero at the first poll.
        assert_eq!(run.seconds[1].replicas, 0);
        assert!(run.seconds[..400].iter().skip(1).all(|x| x.replicas == 0));
        // Load from 400 s: woken at the 420 s poll.
        assert_eq!(run.seconds[420].replicas, 0);
        assert_eq!(run.seconds[421].replicas, 1);
    }
}

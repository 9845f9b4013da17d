//! The controller: every cycle it evaluates the ScalingPolicies that are due, with the data
//! the sources gathered once for all of them, and hands each decision to the single writer.
//!
//! - Reads come from watch caches (policies, pods, Deployments, StatefulSets), so a cycle
//!   sends no reads for those; writes are only what changed (a scale, a status, an Event).
//! - A policy whose metrics all come from the fast path (agents, Kafka) is evaluated every
//!   `--fast-interval-seconds` (1 s); one with a Prometheus query every
//!   `--prometheus-interval-seconds` (15 s).
//! - Only the leader evaluates and writes. A follower keeps its caches warm and, on taking
//!   over, starts from the history the last leader checkpointed in each policy's status.
//! - Nothing is applied on uncertain data: an invalid spec, an unreadable target or a failed
//!   source leaves the replicas alone, and the status conditions say why, naming the field.
//!
//! [`observe`] maps gathered data to engine observations; [`target`] reads the workload.
//!
//! This file is the glue: the `Controller`, each method one step of a cycle or of a policy's
//! evaluation. What can be decided without I/O lives beside it, a concern a file: `plan` (the
//! horizontal decision, its write and its status), `requests` (the vertical request writes),
//! `history` (the engine history), `status` and `enqueue` (the status a cycle starts from, and
//! when it is queued), `vertical_history` (the vertical history restored, fed, checkpointed),
//! `vertical_status` (the vertical step's part of the status), `report` (what a cycle counts).

mod enqueue;
pub mod gate;
mod history;
pub mod observe;
pub mod offline;
mod plan;
pub mod pods_by_label;
mod report;
mod requests;
pub mod round;
mod status;
pub mod status_queue;
pub mod target;
pub mod trim;
pub mod vertical;
mod vertical_history;
mod vertical_status;

#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod fake;
#[cfg(test)]
mod gate_tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::discovery::ApiResource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::actuators::replicas::ScaleOutcome;
use crate::actuators::{ActuateError, Writer};
use crate::api::ScalingPolicyCheckpoint;
use crate::api::{ResourceName, ScalingPolicy, ScalingPolicyStatus, SpecError, VerticalMode};
use crate::engine::types::{self as engine, NextState};
use crate::engine::vertical::{ContainerRecommendation, VerticalConfig, VerticalState};
use crate::engine::{Formula, desired_with_formula};
use crate::metrics::{ConditionLabels, Outcome, PolicyLabels, StateLabels};
use crate::sources::agents::AgentSource;
use crate::sources::kafka::{KafkaSource, LagQuery};
use crate::sources::prometheus::{PromSample, PrometheusSource};
use crate::sources::{PodKey, PodUsage, SourceError};
use enqueue::enqueue;
use gate::Gate;
pub use history::compact;
use observe::Gathered;
use pods_by_label::PodsByLabel;
pub use report::CycleReport;
use report::record_scale;
use requests::VerticalWriteFailure;
use status::{base_status, superseded};
use status_queue::StatusQueue;
use target::Caches;
use vertical_history::Stored;
use vertical_status::{Recommended, merge_vertical, vertical_mode};

use crate::watchdog::Watchdog;

/// The watch caches' pods and HPAs, indexed once per cycle (or per finished round) for every
/// policy evaluated then.
struct Snapshot {
    pods: PodsByLabel,
    hpas: gate::HpaIndex,
    policies: gate::PolicyIndex,
}

/// What a policy's evaluation rests on besides the gathered data: its compiled spec, the gate
/// (whether and why the target may be written) and the target as read.
struct Resolved {
    compiled: Arc<Compiled>,
    gate: Gate,
    target: target::Target,
}

/// Controller-wide settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub fast_interval: Duration,
    pub prometheus_interval: Duration,
    /// The engine's `--horizontal-pod-autoscaler-*` equivalents.
    pub engine: engine::ControllerSettings,
    /// The window a usage sample averages over (the agents' sampling interval).
    pub sample_window_seconds: f64,
    /// A status whose significant fields did not change is rewritten at most this often
    /// (it carries the checkpoint and the metric values).
    pub status_refresh: Duration,
    /// Refresh-only status writes per second, at most (changes are not limited): with many
    /// policies the refresh period stretches to `policies / this` (see [`status_queue`]).
    pub status_refresh_per_second: f64,
    /// Vertical `InPlace`/`Template`: a container's requests change only once its
    /// recommendation rests on this many samples.
    pub vertical_min_samples: u64,
    /// Vertical `InPlace`/`Template`: at most one round of request changes per policy this
    /// often.
    pub vertical_apply_interval: Duration,
    /// A policy's ScalingPolicyCheckpoint (its vertical histograms) is written at most this
    /// often: a new leader loses at most this much of the vertical history.
    pub vertical_checkpoint_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            fast_interval: Duration::from_secs(1),
            prometheus_interval: Duration::from_secs(15),
            engine: engine::ControllerSettings::default(),
            sample_window_seconds: 1.0,
            status_refresh: Duration::from_secs(15),
            status_refresh_per_second: 50.0,
            vertical_min_samples: 60,
            vertical_apply_interval: Duration::from_secs(60),
            vertical_checkpoint_interval: Duration::from_secs(60),
        }
    }
}

/// The configured sources.
pub struct Sources {
    pub agents: Option<AgentSource>,
    pub prometheus: Option<PrometheusSource>,
    /// Shared with the tasks that gather lag off the cycle.
    pub kafka: Arc<KafkaSource>,
}

/// Due policies, each with what it needs from the slow sources.
type Due = Vec<(Arc<ScalingPolicy>, round::Needs)>;

/// What a cycle's waiting policies need from the slow sources.
struct Plan {
    /// Distinct PromQL (empty without a Prometheus).
    queries: Vec<String>,
    lag: Vec<LagQuery>,
    usage_via_prometheus: bool,
}

/// Per-pod usage from the Prometheus resource queries' results (no agents configured).
fn usage_via_prometheus(
    prometheus: &HashMap<String, Result<Vec<PromSample>, SourceError>>,
) -> Result<HashMap<PodKey, PodUsage>, SourceError> {
    let get = |r| match prometheus.get(observe::resource_query(r)) {
        Some(Ok(v)) => Some(v.as_slice()),
        _ => None,
    };
    let cpu_q = observe::resource_query(ResourceName::Cpu);
    match (get(ResourceName::Cpu), get(ResourceName::Memory)) {
        (None, None) => Err(match prometheus.get(cpu_q) {
            Some(Err(e)) => e.clone(),
            _ => SourceError::NoData {
                backend: "prometheus",
                query: cpu_q.into(),
                detail: "no per-container usage series".into(),
            },
        }),
        (cpu, mem) => Ok(observe::usage_from_prometheus(cpu, mem)),
    }
}

#[derive(Clone)]
struct Compiled {
    spec: engine::Spec,
    formula: Option<Formula>,
    /// With `spec.vertical`: its mode (a deprecated name replaced by its meaning).
    vertical: Option<(VerticalMode, VerticalConfig)>,
}

fn compile(
    p: &ScalingPolicy,
    settings: &engine::ControllerSettings,
) -> Result<Compiled, SpecError> {
    let spec = p.spec.to_engine(settings.clone())?;
    let vertical = match &p.spec.vertical {
        Some(v) => Some((
            v.mode.effective(),
            VerticalConfig::try_from(v).map_err(|e| SpecError::Invalid {
                field: "spec.vertical".into(),
                problem: e.to_string(),
            })?,
        )),
        _ => None,
    };
    let formula = match &spec.formula {
        Some(src) => {
            let names: Vec<&str> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
            Some(Formula::compile(src, &names)?)
        }
        None => None,
    };
    Ok(Compiled {
        spec,
        formula,
        vertical,
    })
}

/// What one policy's decision rests on this cycle, as the controller sees it.
struct Facts<'a> {
    namespace: &'a str,
    /// The target's pods (by its selector).
    pods: &'a [&'a Arc<Pod>],
    /// The scale subresource's `spec.replicas` and `status.replicas`.
    spec_replicas: i32,
    status_replicas: Option<i32>,
    /// The engine history (remembered, or restored from the status checkpoint).
    history: Option<&'a NextState>,
    gathered: &'a Gathered,
}

/// The controller's whole path from one policy's facts to the engine's decision: the engine
/// state, the observations of every metric from what the sources gathered, and the compiled
/// formula. Pure (no I/O, `now` given), so the property test in `decide_tests` runs exactly
/// what a cycle runs.
fn decide(
    spec: &crate::api::ScalingPolicySpec,
    compiled: &Compiled,
    facts: &Facts<'_>,
    sample_window_seconds: f64,
    now: f64,
) -> (engine::State, engine::Decision) {
    let history = facts.history;
    let state = engine::State {
        spec_replicas: facts.spec_replicas,
        status_replicas: facts.status_replicas,
        pods: facts.pods.iter().map(|p| target::engine_pod(p)).collect(),
        recommendations: history.map(|h| h.recommendations.clone()),
        scale_events: history.map(|h| h.scale_events.clone()).unwrap_or_default(),
        last_active_unix_seconds: history.and_then(|h| h.last_active_unix_seconds),
    };
    let obs = observe::observations(
        spec,
        facts.namespace,
        facts.pods,
        facts.gathered,
        sample_window_seconds,
    );
    let d = desired_with_formula(&compiled.spec, compiled.formula.as_ref(), &state, &obs, now);
    (state, d)
}

/// What the controller remembers about one policy.
struct PolicyState {
    uid: String,
    generation: i64,
    compiled: Result<Arc<Compiled>, SpecError>,
    /// The engine history; `None` until loaded from the status checkpoint (or first decision).
    history: Option<NextState>,
    next_due: Instant,
    /// Boxed, like the state itself: most policies' states are small, and a map of 5,000
    /// inline states (with their statuses) held 11 MB of slots, twice while it grew.
    written: Option<Box<ScalingPolicyStatus>>,
    written_at: Option<Instant>,
    /// The last warning Event's message, so a repeated failure emits one Event.
    warned: Option<String>,
    metric_names: Vec<String>,
    /// The vertical recommender's history (with `spec.vertical`); restored on first use from
    /// the policy's ScalingPolicyCheckpoint (or, from older versions, its status).
    vertical: Option<VerticalState>,
    /// When the ScalingPolicyCheckpoint was last written (or tried); `None`: write it now.
    checkpoint_written_at: Option<Instant>,
    /// The last ScalingPolicyCheckpoint write failed (CRD missing, RBAC): the histograms stay
    /// in `status.checkpoint.vertical` meanwhile, so a new leader still finds them.
    checkpoint_in_status: bool,
    /// The object exists (restored from it, or written since): written by server-side apply.
    /// Otherwise the first write is a create, which fails rather than overwrite an object the
    /// read did not see.
    checkpoint_stored: bool,
    /// The last round of request changes that wrote or failed (rounds are at most one per
    /// `vertical_apply_interval`, so a refused write is retried that often, not every cycle).
    vertical_applied_at: Option<Instant>,
    /// The last round's refused or failed write, shown as `AbleToScale=False` until a round
    /// succeeds or has nothing to change.
    vertical_failed: Option<VerticalWriteFailure>,
    /// The latest OOM kill recorded per (pod uid, container), as `finishedAt` (Unix seconds):
    /// a pod status shows its last OOM for as long as the container lives on.
    oom_seen: HashMap<(String, String), f64>,
    /// With a history restored from the status checkpoint, the OOMs that ended before it was
    /// loaded may be in it already (the previous leader's): they are not recorded twice.
    oom_floor: Option<f64>,
}

impl PolicyState {
    /// The state of `p` as first seen (or under a new generation): nothing learned yet, due at
    /// `next_due`.
    fn new(
        p: &ScalingPolicy,
        compiled: Result<Arc<Compiled>, SpecError>,
        next_due: Instant,
    ) -> Self {
        Self {
            uid: p.uid().unwrap_or_default(),
            generation: p.metadata.generation.unwrap_or(0),
            compiled,
            history: None,
            next_due,
            written: None,
            written_at: None,
            warned: None,
            metric_names: p.spec.metrics.iter().map(|m| m.name.clone()).collect(),
            vertical: None,
            checkpoint_written_at: None,
            checkpoint_in_status: false,
            checkpoint_stored: false,
            vertical_applied_at: None,
            vertical_failed: None,
            oom_seen: HashMap::new(),
            oom_floor: None,
        }
    }

    /// A new generation of the same policy keeps what it has learned: the
    /// engine history, and the vertical histograms with their checkpoint's
    /// bookkeeping and the OOMs already recorded (reloading them from a
    /// checkpoint up to an interval old would lose the newest samples).
    fn inherit(&mut self, old: PolicyState) {
        self.history = old.history;
        self.vertical = old.vertical;
        self.checkpoint_written_at = old.checkpoint_written_at;
        self.checkpoint_in_status = old.checkpoint_in_status;
        self.checkpoint_stored = old.checkpoint_stored;
        self.oom_seen = old.oom_seen;
        self.oom_floor = old.oom_floor;
    }
}

/// See the module docs.
pub struct Controller {
    writer: Writer,
    caches: Caches,
    policies: Store<ScalingPolicy>,
    sources: Sources,
    settings: Settings,
    states: HashMap<(String, String), Box<PolicyState>>,
    resources: BTreeMap<(String, String), ApiResource>,
    was_leader: bool,
    /// Statuses to write, written by their own task (see [`status_queue`]).
    statuses: StatusQueue,
    /// Policies waiting for slow sources, by round (see [`round`]).
    rounds: HashMap<u64, round::Round>,
    next_round: u64,
    /// The keys of the policies in `rounds`: not due again while they wait.
    waiting: HashSet<(String, String)>,
    arrivals_tx: tokio::sync::mpsc::UnboundedSender<(u64, round::Arrival)>,
    arrivals: tokio::sync::mpsc::UnboundedReceiver<(u64, round::Arrival)>,
    /// Told of every completed cycle (`/healthz`).
    watchdog: Option<Watchdog>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn time_of(unix: f64) -> Time {
    Time(Timestamp::from_millisecond((unix * 1000.0) as i64).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn uses_prometheus(p: &ScalingPolicy, agents: bool) -> bool {
    p.spec
        .metrics
        .iter()
        .any(|m| m.prometheus.is_some() || (m.resource.is_some() && !agents))
}

impl Controller {
    pub fn new(
        writer: Writer,
        caches: Caches,
        policies: Store<ScalingPolicy>,
        sources: Sources,
        settings: Settings,
    ) -> Self {
        // The status writer runs for the life of the process (the runtime drops it at exit).
        let (statuses, task) = StatusQueue::new(writer.clone(), settings.status_refresh_per_second);
        tokio::spawn(task);
        let (arrivals_tx, arrivals) = tokio::sync::mpsc::unbounded_channel();
        Self {
            writer,
            caches,
            policies,
            sources,
            settings,
            states: HashMap::new(),
            resources: BTreeMap::new(),
            was_leader: false,
            statuses,
            rounds: HashMap::new(),
            next_round: 0,
            waiting: HashSet::new(),
            arrivals_tx,
            arrivals,
            watchdog: None,
        }
    }

    /// Tells `watchdog` of every completed cycle, from the start of [`Self::run`].
    pub fn with_watchdog(mut self, watchdog: Watchdog) -> Self {
        self.watchdog = Some(watchdog);
        self
    }

    /// Runs cycles every `fast_interval` until `shutdown` completes (a cycle in progress
    /// finishes first), and evaluates the policies waiting for slow sources as those arrive
    /// (see [`round`]). Every replica runs this loop (a follower's cycle only forgets), and
    /// each completed cycle is reported to the watchdog.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.settings.fast_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        if let Some(w) = &self.watchdog {
            w.start();
        }
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    // Statuses already decided are written before the process exits.
                    let drained = self.statuses.drain(Duration::from_secs(5)).await;
                    tracing::info!(statuses_written = drained, "controller stopped");
                    return;
                }
                Some((id, arrival)) = self.arrivals.recv() => {
                    let report = self.arrive(id, arrival).await;
                    if report.scaled > 0 || report.failures > 0 {
                        tracing::debug!(?report, "slow sources arrived");
                    }
                }
                _ = tick.tick() => {
                    let started = Instant::now();
                    let report = self.cycle().await;
                    self.writer.metrics().cycle_duration.observe(started.elapsed().as_secs_f64());
                    if let Some(w) = &self.watchdog {
                        w.beat();
                    }
                    if report.scaled > 0 || report.failures > 0 {
                        tracing::debug!(?report, "cycle");
                    }
                }
            }
        }
    }

    /// One cycle over the due policies.
    #[tracing::instrument(skip_all)]
    pub async fn cycle(&mut self) -> CycleReport {
        let mut report = CycleReport::default();
        if !self.lead() {
            return report;
        }
        let now_i = Instant::now();
        let now = unix_now();
        let policies = self.policies.state();
        self.requeue_failed();
        self.forget_deleted(&policies);
        let due = self.due(policies, now_i);
        report.due = due.len();
        if due.is_empty() {
            return report;
        }
        let (fast, waiting) = self.split(due);
        let (gathered, plan) = self.gather(&fast, &waiting, now).await;
        let snapshot = self.snapshot();
        for (p, _) in fast {
            self.evaluate(&p, &gathered, &snapshot, now, &mut report)
                .await;
        }
        if !waiting.is_empty() {
            self.start_round(gathered, plan, waiting, now);
        }
        report
    }

    /// Whether this replica leads, recorded (the gauge, and a log line when it changed). A
    /// follower forgets: on taking over it starts from the checkpoints.
    fn lead(&mut self) -> bool {
        let leader = self.writer.is_leader();
        self.writer.metrics().leader.set(i64::from(leader));
        if leader != self.was_leader {
            tracing::info!(leader, "leadership changed");
            self.was_leader = leader;
        }
        if !leader {
            // A follower forgets: on taking over it starts from the checkpoints.
            self.states.clear();
            self.statuses.clear();
            self.rounds.clear();
            self.waiting.clear();
            self.writer.metrics().status_queue.set(0);
        }
        leader
    }

    /// A status whose write failed is queued again at the policy's next evaluation; the gauge
    /// of queued statuses is set.
    fn requeue_failed(&mut self) {
        for key in self.statuses.take_failed() {
            if let Some(st) = self.states.get_mut(&key) {
                st.written = None;
            }
        }
        self.writer
            .metrics()
            .status_queue
            .set(self.statuses.queued() as i64);
    }

    /// Forgets the policies not in `policies` (deleted), with their metric series.
    fn forget_deleted(&mut self, policies: &[Arc<ScalingPolicy>]) {
        let live: HashSet<(String, String)> = policies
            .iter()
            .map(|p| (p.namespace().unwrap_or_default(), p.name_any()))
            .collect();
        let metrics = self.writer.metrics().clone();
        self.states.retain(|(ns, name), st| {
            let keep = live.contains(&(ns.clone(), name.clone()));
            if !keep {
                metrics.forget_policy(ns, name, &st.metric_names);
            }
            keep
        });
    }

    /// The state of `p`: the one remembered while its uid and generation stay the same, else a
    /// new one (compiled now, due at `now`) that inherits what the same policy's old one
    /// learned.
    fn state_of(&mut self, p: &ScalingPolicy, now: Instant) -> Option<&mut PolicyState> {
        let key = (p.namespace().unwrap_or_default(), p.name_any());
        let uid = p.uid().unwrap_or_default();
        let generation = p.metadata.generation.unwrap_or(0);
        let current = self
            .states
            .get(&key)
            .is_some_and(|st| st.uid == uid && st.generation == generation);
        if !current {
            let compiled = compile(p, &self.settings.engine).map(Arc::new);
            let mut st = Box::new(PolicyState::new(p, compiled, now));
            if let Some(old) = self.states.remove(&key).filter(|old| old.uid == uid) {
                st.inherit(*old);
            }
            self.states.insert(key.clone(), st);
        }
        self.states.get_mut(&key).map(|st| &mut **st)
    }

    /// The policies due now, each due again one interval later (its Prometheus interval when
    /// it queries Prometheus, else the fast one); every policy's state is brought up to date
    /// ([`Self::state_of`]) and counted by state (active, invalid, dry run).
    fn due(&mut self, policies: Vec<Arc<ScalingPolicy>>, now: Instant) -> Vec<Arc<ScalingPolicy>> {
        let agents = self.sources.agents.is_some();
        let fast_interval = self.settings.fast_interval;
        let prometheus_interval = self.settings.prometheus_interval;
        let mut due: Vec<Arc<ScalingPolicy>> = Vec::new();
        let (mut active, mut invalid, mut dry) = (0, 0, 0);
        for p in policies {
            let key = (p.namespace().unwrap_or_default(), p.name_any());
            let interval = if uses_prometheus(&p, agents) {
                prometheus_interval
            } else {
                fast_interval
            };
            let waiting = self.waiting.contains(&key);
            let Some(st) = self.state_of(&p, now) else {
                continue;
            };
            match (&st.compiled, p.spec.dry_run) {
                (Err(_), _) => invalid += 1,
                (Ok(_), true) => dry += 1,
                (Ok(_), false) => active += 1,
            }
            // Half a tick of slack: the tick after the one that evaluated a policy can fire a
            // little before `next_due`, and without slack the policy would wait a whole extra
            // tick (a 1 s policy evaluated every 2 s).
            // A policy still waiting for a slow source of an earlier cycle is not due again.
            if st.next_due <= now + fast_interval / 2 && !waiting {
                st.next_due = now + interval;
                due.push(p);
            }
        }
        for (state, n) in [("active", active), ("invalid", invalid), ("dry_run", dry)] {
            self.writer
                .metrics()
                .policies
                .get_or_create(&StateLabels { state })
                .set(n);
        }
        due
    }

    /// The due policies with what each needs from the slow sources ([`round::Needs`]), split
    /// into those evaluated at once (they need none) and those that wait for a round.
    fn split(&self, due: Vec<Arc<ScalingPolicy>>) -> (Due, Due) {
        let agents_on = self.sources.agents.is_some();
        let prometheus_on = self.sources.prometheus.is_some();
        due.into_iter()
            .map(|p| {
                // An invalid spec is held at once: it waits for nothing.
                let key = (p.namespace().unwrap_or_default(), p.name_any());
                let invalid = self.states.get(&key).is_some_and(|st| st.compiled.is_err());
                let needs = if invalid {
                    round::Needs::default()
                } else {
                    round::Needs::of(&p, agents_on, prometheus_on)
                };
                (p, needs)
            })
            .partition(|(_, n)| n.none())
    }

    /// What the due policies need from the sources: the agents are scraped here (for `fast`
    /// and `waiting` alike); the Prometheus queries and Kafka lag queries of `waiting` are
    /// returned for [`Self::start_round`]. `Gathered` holds what is known now: the usage (or
    /// why there is none), and the errors of unconfigured sources.
    async fn gather(
        &self,
        fast: &[(Arc<ScalingPolicy>, round::Needs)],
        waiting: &[(Arc<ScalingPolicy>, round::Needs)],
        now: f64,
    ) -> (Gathered, Plan) {
        let due = || fast.iter().chain(waiting).map(|(p, _)| p);
        let mut resources: BTreeSet<ResourceName> = due()
            .flat_map(|p| p.spec.metrics.iter())
            .filter_map(|m| m.resource.as_ref().map(|r| r.name))
            .collect();
        if due().any(|p| p.spec.vertical.is_some()) {
            // The vertical recommender learns from the same per-container usage.
            resources.insert(ResourceName::Cpu);
            resources.insert(ResourceName::Memory);
        }
        let mut queries: BTreeSet<String> = due()
            .flat_map(|p| p.spec.metrics.iter())
            .filter_map(|m| m.prometheus.as_ref().map(|q| q.query.clone()))
            .collect();
        let usage_via_prometheus = !resources.is_empty()
            && self.sources.agents.is_none()
            && self.sources.prometheus.is_some();
        if usage_via_prometheus {
            // Both resources, so a pod's usage is complete whichever a policy needs.
            queries.insert(observe::resource_query(ResourceName::Cpu).to_string());
            queries.insert(observe::resource_query(ResourceName::Memory).to_string());
        }
        let lag: Vec<LagQuery> = waiting
            .iter()
            .flat_map(|(p, _)| p.spec.metrics.iter())
            .filter_map(|m| m.kafka_lag.as_ref().map(observe::lag_query))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let metrics = self.writer.metrics();
        let mut gathered = Gathered::default();
        if self.sources.prometheus.is_none() {
            for q in &queries {
                let e =
                    SourceError::NotConfigured("prometheus metrics need --prometheus-url".into());
                metrics.error(e.label());
                gathered.prometheus.insert(q.clone(), Err(e));
            }
        }
        gathered.usage = if resources.is_empty() || usage_via_prometheus {
            None
        } else if let Some(a) = &self.sources.agents {
            Some(self.scrape(a, now).await)
        } else {
            Some(Err(SourceError::NotConfigured(
                "resource metrics need --agent-url, --agent-selector or --prometheus-url".into(),
            )))
        };
        let queries = if self.sources.prometheus.is_some() {
            queries.into_iter().collect()
        } else {
            Vec::new()
        };
        (
            gathered,
            Plan {
                queries,
                lag,
                usage_via_prometheus,
            },
        )
    }

    /// The per-pod usage the agents report: each failed scrape is counted and logged; when no
    /// agent answered, the first error.
    async fn scrape(
        &self,
        agents: &AgentSource,
        now: f64,
    ) -> Result<HashMap<PodKey, PodUsage>, SourceError> {
        let metrics = self.writer.metrics();
        let s = agents.scrape(now).await;
        for e in &s.errors {
            metrics.error(e.label());
            tracing::warn!(error = %e, "agent scrape failed");
        }
        if s.agents_ok == 0 {
            Err(s.errors.first().cloned().unwrap_or_else(|| {
                // No agent pod at all (e.g. the DaemonSet's pod was just deleted): counted
                // like any other source failure.
                let e = SourceError::NotConfigured("no tidal-agent was found to scrape".into());
                metrics.error(e.label());
                e
            }))
        } else {
            Ok(s.pods)
        }
    }

    /// Starts the slow sources `waiting` needs, each in a task of its own bounded by its
    /// budget, and keeps the policies until their sources arrive ([`Self::arrive`]).
    fn start_round(&mut self, gathered: Gathered, plan: Plan, waiting: Due, now: f64) {
        let id = self.next_round;
        self.next_round += 1;
        let prometheus_pending = waiting.iter().any(|(_, n)| n.prometheus);
        let kafka_pending = waiting.iter().any(|(_, n)| n.kafka);
        if prometheus_pending && let Some(prom) = self.sources.prometheus.clone() {
            let (tx, queries) = (self.arrivals_tx.clone(), plan.queries);
            tokio::spawn(async move {
                // Even a panic answers: the policies must not wait forever.
                let results = AssertUnwindSafe(prom.query_all(&queries))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        let e = SourceError::NotConfigured(format!(
                            "prometheus {}: the gathering failed (a bug: see the log)",
                            prom.query_url()
                        ));
                        queries
                            .iter()
                            .map(|q| (q.clone(), Err(e.clone())))
                            .collect()
                    });
                let _ = tx.send((id, round::Arrival::Prometheus(results)));
            });
        }
        if kafka_pending {
            let (tx, kafka, lag) = (
                self.arrivals_tx.clone(),
                self.sources.kafka.clone(),
                plan.lag,
            );
            tokio::spawn(async move {
                let readings = AssertUnwindSafe(kafka.collect(&lag, now))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        lag.iter()
                            .map(|q| {
                                Err(SourceError::Kafka {
                                    cluster: q.cluster.clone(),
                                    group: q.group.clone(),
                                    detail: "the collection failed (a bug: see the log)".into(),
                                })
                            })
                            .collect()
                    });
                let _ = tx.send((id, round::Arrival::Kafka(lag, readings)));
            });
        }
        for (p, _) in &waiting {
            self.waiting
                .insert((p.namespace().unwrap_or_default(), p.name_any()));
        }
        self.rounds.insert(
            id,
            round::Round {
                now,
                gathered,
                prometheus_pending,
                kafka_pending,
                usage_via_prometheus: plan.usage_via_prometheus,
                waiting,
            },
        );
    }

    /// A slow source of round `id` answered: evaluates the round's policies whose sources
    /// have now all answered (a policy changed or deleted meanwhile is skipped: it is due
    /// again at once under its new generation).
    async fn arrive(&mut self, id: u64, arrival: round::Arrival) -> CycleReport {
        let mut report = CycleReport::default();
        let metrics = self.writer.metrics().clone();
        match &arrival {
            round::Arrival::Prometheus(results) => {
                for e in results.values().filter_map(|r| r.as_ref().err()) {
                    metrics.error(e.label());
                }
            }
            round::Arrival::Kafka(_, readings) => {
                for e in readings.iter().filter_map(|r| r.as_ref().err()) {
                    metrics.error(e.label());
                }
            }
        }
        let Some(r) = self.rounds.get_mut(&id) else {
            return report;
        };
        let ready = r.arrive(arrival);
        let done = r.waiting.is_empty();
        // Evaluations need `&mut self`: the round is put back below if policies still wait.
        let Some(r) = self.rounds.remove(&id) else {
            return report;
        };
        let snapshot = self.snapshot();
        for p in ready {
            let key = (p.namespace().unwrap_or_default(), p.name_any());
            self.waiting.remove(&key);
            // The policy as it is now, not as it was when the round started: its annotations
            // (a pause, a take-over withdrawn) change without a new generation. Gone or
            // changed since: nothing to evaluate with this round's data.
            let Some(p) = self
                .policies
                .get(&ObjectRef::new(&key.1).within(&key.0))
                .filter(|f| f.uid() == p.uid() && f.metadata.generation == p.metadata.generation)
            else {
                continue;
            };
            let current = self.states.get(&key).is_some_and(|st| {
                st.uid == p.uid().unwrap_or_default()
                    && st.generation == p.metadata.generation.unwrap_or(0)
            });
            if current && self.writer.is_leader() {
                report.due += 1;
                self.evaluate(&p, &r.gathered, &snapshot, r.now, &mut report)
                    .await;
            }
        }
        if !done {
            self.rounds.insert(id, r);
        }
        report
    }

    /// The pods and HPAs of the watch caches, indexed once for the policies evaluated
    /// together.
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            pods: PodsByLabel::build(self.caches.pods.state()),
            hpas: gate::HpaIndex::build(self.caches.hpas.state()),
            policies: gate::PolicyIndex::build(self.policies.state()),
        }
    }

    /// What `p`'s evaluation rests on ([`Resolved`]), or `None` when it holds the policy,
    /// saying why: an invalid spec (`InvalidSpec`, `InvalidFormula`), an invalid annotation
    /// (`InvalidAnnotation`), a target that cannot be read (`FailedGetScale`). Also `None`,
    /// without a hold, for a policy the controller has no state of.
    async fn resolve(
        &mut self,
        p: &ScalingPolicy,
        snapshot: &Snapshot,
        now: f64,
        report: &mut CycleReport,
    ) -> Option<Resolved> {
        let ns = p.namespace().unwrap_or_default();
        let key = (ns.clone(), p.name_any());
        let metrics = self.writer.metrics().clone();
        let compiled = self
            .states
            .get(&key)
            .map(|st| st.compiled.as_ref().map(Arc::clone).map_err(Clone::clone))?;
        let compiled = match compiled {
            Ok(c) => c,
            Err(e) => {
                metrics.error("invalid_spec");
                let reason = if matches!(e, SpecError::Formula(_)) {
                    "InvalidFormula"
                } else {
                    "InvalidSpec"
                };
                self.hold(p, reason, &e.to_string(), now, report).await;
                return None;
            }
        };
        let gate = gate::gate_among(
            p,
            snapshot.hpas.targeting(&ns, &p.spec.target_ref),
            snapshot.policies.targeting(&ns, &p.spec.target_ref),
        );
        if let Gate::Invalid(message) = &gate {
            metrics.error("invalid_spec");
            self.hold(p, "InvalidAnnotation", message, now, report)
                .await;
            return None;
        }
        let client = self.writer.client().clone();
        let count = |verb| metrics.request(verb);
        let target = match target::resolve(
            &client,
            &self.caches,
            &mut self.resources,
            &ns,
            &p.spec.target_ref,
            count,
        )
        .await
        {
            Ok(t) => t,
            Err(e) => {
                metrics.error(e.label());
                self.hold(p, "FailedGetScale", &e.to_string(), now, report)
                    .await;
                return None;
            }
        };
        Some(Resolved {
            compiled,
            gate,
            target,
        })
    }

    /// Evaluates one policy with the data gathered for it: resolves what it rests on (or
    /// holds it), plans the decision, writes the scale the gate allows, settles the status,
    /// runs the vertical step (with `spec.vertical`), and queues the status.
    async fn evaluate(
        &mut self,
        p: &ScalingPolicy,
        gathered: &Gathered,
        snapshot: &Snapshot,
        now: f64,
        report: &mut CycleReport,
    ) {
        let ns = p.namespace().unwrap_or_default();
        let name = p.name_any();
        let key = (ns.clone(), name.clone());
        let now_t = time_of(now);
        let Some(resolved) = self.resolve(p, snapshot, now, report).await else {
            return;
        };
        let Resolved {
            compiled,
            gate,
            target,
        } = &resolved;
        let pods = snapshot.pods.matching(&ns, &target.selector);
        let old = base_status(
            self.states.get(&key).and_then(|st| st.written.as_deref()),
            p,
        );
        let planned = self.plan_decision(p, &resolved, &pods, gathered, &old, now);
        let applied = match &planned.scale {
            Some(intent) => Some(self.scale(p, intent, target, report).await),
            None => None,
        };
        let mut settled = plan::settle(planned, applied.as_ref(), gate, p, &old, &now_t);
        if settled.decide_again
            && let Some(st) = self.states.get_mut(&key)
        {
            st.next_due = Instant::now();
        }
        let (mut status, next, scaled) = (
            std::mem::take(&mut settled.status),
            std::mem::take(&mut settled.next),
            settled.scaled,
        );
        self.vertical_step(
            p,
            &resolved,
            &pods,
            gathered,
            &old,
            &mut status,
            now,
            report,
        )
        .await;

        let labels = PolicyLabels {
            namespace: ns,
            policy: name,
        };
        plan::publish(self.writer.metrics(), &labels, &settled, &compiled.spec);

        if let Some(st) = self.states.get_mut(&key) {
            st.history = Some(next);
        }
        if let Some((reason, msg)) = settled.warning {
            self.warn_once(p, reason, msg).await;
        } else if let Some(st) = self.states.get_mut(&key) {
            st.warned = None;
        }
        self.write_status(p, status, scaled);
    }

    /// The decision for `p` and what the gate lets this cycle write ([`plan::plan`]), from the
    /// engine history it continues and the status `old` it starts from; timed, and a rescale
    /// the gate holds is logged.
    fn plan_decision(
        &self,
        p: &ScalingPolicy,
        resolved: &Resolved,
        pods: &[&Arc<Pod>],
        gathered: &Gathered,
        old: &ScalingPolicyStatus,
        now: f64,
    ) -> plan::Planned {
        let (ns, name) = (p.namespace().unwrap_or_default(), p.name_any());
        let key = (ns.clone(), name.clone());
        let Resolved {
            compiled,
            gate,
            target,
        } = resolved;
        let history =
            history::restored(self.states.get(&key).and_then(|st| st.history.as_ref()), p);
        let facts = Facts {
            namespace: &ns,
            pods,
            spec_replicas: target.observed.replicas,
            status_replicas: target.status_replicas,
            history: history.as_ref(),
            gathered,
        };
        let started = Instant::now();
        let planned = plan::plan(&plan::PlanInput {
            policy: p,
            compiled,
            gate,
            facts,
            old,
            sample_window_seconds: self.settings.sample_window_seconds,
            now,
        });
        self.writer
            .metrics()
            .decision_duration
            .observe(started.elapsed().as_secs_f64());
        if planned.outcome == Outcome::NotApplied {
            let d = &planned.decision;
            tracing::info!(policy = %format!("{ns}/{name}"), from = d.current_replicas, to = d.desired_replicas, gate = gate.label(), "not scaling");
        }
        planned
    }

    /// Writes the scale `intent` ([`plan::apply`]) and records what the write did
    /// ([`record_scale`]).
    async fn scale(
        &self,
        p: &ScalingPolicy,
        intent: &plan::ScaleIntent,
        target: &target::Target,
        report: &mut CycleReport,
    ) -> Result<ScaleOutcome, ActuateError> {
        let policy = format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
        let applied = plan::apply(intent, &target.scale, &target.observed, p, &self.writer).await;
        record_scale(self.writer.metrics(), &policy, intent, &applied, report);
        applied.scale
    }

    /// `spec.vertical`'s part of an evaluation: the stored checkpoint is read (while the
    /// vertical history is not in memory), [`Self::vertical`] runs in the mode the gate allows,
    /// and its result is merged into `status` (see [`merge_vertical`]).
    #[allow(clippy::too_many_arguments)]
    async fn vertical_step(
        &mut self,
        p: &ScalingPolicy,
        resolved: &Resolved,
        pods: &[&Arc<Pod>],
        gathered: &Gathered,
        old: &ScalingPolicyStatus,
        status: &mut ScalingPolicyStatus,
        now: f64,
        report: &mut CycleReport,
    ) {
        let Resolved {
            compiled,
            gate,
            target,
        } = resolved;
        let Some((mode, config)) = &compiled.vertical else {
            return;
        };
        let (ns, name) = (p.namespace().unwrap_or_default(), p.name_any());
        let metrics = self.writer.metrics().clone();
        let mode = vertical_mode(*mode, gate.writes());
        let vertical = match self.stored_checkpoint(p).await {
            Ok(stored) => self
                .vertical(
                    p,
                    mode,
                    config,
                    &compiled.spec,
                    target,
                    pods,
                    gathered,
                    &stored,
                    now,
                )
                .await
                .map_err(Some),
            Err(e) => {
                // Without the stored history, a fresh one would overwrite it: this
                // cycle keeps what the status had, and the read is tried again next cycle.
                metrics.error(e.label());
                tracing::warn!(policy = %format!("{ns}/{name}"), error = %e, "vertical checkpoint not read: recommending again next cycle");
                Err(None)
            }
        };
        if let Err(Some(e)) = &vertical {
            metrics.error(e.label());
            tracing::warn!(policy = %format!("{ns}/{name}"), error = %e, "vertical recommendation failed");
        }
        if merge_vertical(status, old, vertical, &time_of(now)) {
            report.failures += 1;
        }
    }

    /// The policy's ScalingPolicyCheckpoint, read only when its vertical history is not in
    /// memory yet. An error is a read that may succeed later (the API server unreachable): the
    /// caller waits for it rather than start a fresh history that would replace the stored
    /// one.
    async fn stored_checkpoint(&self, p: &ScalingPolicy) -> Result<Stored, ActuateError> {
        let ns = p.namespace().unwrap_or_default();
        let name = p.name_any();
        if self
            .states
            .get(&(ns.clone(), name.clone()))
            .is_none_or(|st| st.vertical.is_some())
        {
            return Ok(Stored::default());
        }
        let api: Api<ScalingPolicyCheckpoint> = Api::namespaced(self.writer.client().clone(), &ns);
        let object = format!("scalingpolicycheckpoints/{name} in namespace {ns}");
        self.writer.metrics().request("get_checkpoint");
        match api.get_opt(&name).await {
            Ok(c) => Ok(Stored {
                exists: c.is_some(),
                object: c,
            }),
            // One that is not Tidal's format (edited by hand, or a newer version's): the
            // history comes from the status or starts afresh, and replaces it.
            Err(kube::Error::SerdeError(e)) => {
                self.writer.metrics().error("checkpoint");
                tracing::warn!(policy = %format!("{ns}/{name}"), error = %e, "{object}: not a checkpoint this version reads: replacing it");
                Ok(Stored {
                    object: None,
                    exists: true,
                })
            }
            Err(e) => match ActuateError::from_kube("get", &object, e) {
                // No right to it, or no CRD: this scaler cannot have stored one either, so
                // the history is where it then keeps it, the status (its writes say why).
                e @ (ActuateError::Forbidden { .. } | ActuateError::NotFound { .. }) => {
                    self.writer.metrics().error(e.label());
                    tracing::debug!(error = %e, "no ScalingPolicyCheckpoint readable: restoring from the status");
                    Ok(Stored::default())
                }
                e => Err(e),
            },
        }
    }

    /// `spec.vertical`: learn from this cycle's usage, recommend, write the
    /// ScalingPolicyCheckpoint when due, and (InPlace, Template) change the requests that lie
    /// outside the recommendation's bounds. Returns the status recommendations, the histograms
    /// to keep in the status (only while the checkpoint object cannot be written) and the
    /// failed write ([`Recommended`]).
    #[allow(clippy::too_many_arguments)]
    async fn vertical(
        &mut self,
        p: &ScalingPolicy,
        mode: VerticalMode,
        config: &VerticalConfig,
        spec: &engine::Spec,
        target: &target::Target,
        pods: &[&Arc<Pod>],
        gathered: &Gathered,
        stored: &Stored,
        now: f64,
    ) -> Result<Recommended, crate::engine::vertical::VerticalError> {
        let ns = p.namespace().unwrap_or_default();
        let key = (ns.clone(), p.name_any());
        let metrics = self.writer.metrics().clone();
        let Some(st) = self.states.get_mut(&key) else {
            return Err(crate::engine::vertical::VerticalError::Invalid {
                field: "policy".into(),
                problem: "no controller state".into(),
            });
        };
        let interval = self.settings.vertical_checkpoint_interval;
        if st.vertical.is_none() {
            vertical_history::restore(st, p, stored, interval, now)?;
        }
        let Some(state) = st.vertical.as_mut() else {
            return Err(crate::engine::vertical::VerticalError::Invalid {
                field: "policy".into(),
                problem: "no vertical state".into(),
            });
        };
        vertical_history::learn(
            &metrics,
            state,
            &mut st.oom_seen,
            st.oom_floor,
            p,
            pods,
            gathered,
        );
        let recs = vertical::recommend(state, config, spec, now)?;
        let checkpoint = state.checkpoint();
        vertical_history::write_when_due(&self.writer, interval, st, p, &checkpoint, now).await;
        let checkpoint = st.checkpoint_in_status.then_some(checkpoint);
        let status_recs = recs
            .iter()
            .map(crate::api::ContainerRecommendationStatus::from)
            .collect();
        let due = st
            .vertical_applied_at
            .is_none_or(|t| t.elapsed() >= self.settings.vertical_apply_interval);
        let failed =
            if p.spec.dry_run || !matches!(mode, VerticalMode::InPlace | VerticalMode::Template) {
                st.vertical_failed = None;
                None
            } else if !due {
                // Between rounds, the last round's failure still stands.
                st.vertical_failed.clone()
            } else {
                self.request_round(p, mode, target, pods, &recs).await
            };
        Ok(Recommended {
            recommendations: status_recs,
            in_status: checkpoint,
            failed,
        })
    }

    /// A round of request changes (`InPlace`, `Template`): the requests of `target`'s pods (or
    /// its template) that lie outside `recs`' bounds are written, each with its Event; the
    /// round's failure is returned, and remembered for the cycles until the next round.
    async fn request_round(
        &mut self,
        p: &ScalingPolicy,
        mode: VerticalMode,
        target: &target::Target,
        pods: &[&Arc<Pod>],
        recs: &[ContainerRecommendation],
    ) -> Option<VerticalWriteFailure> {
        let ns = p.namespace().unwrap_or_default();
        let key = (ns.clone(), p.name_any());
        let metrics = self.writer.metrics().clone();
        let writes = vertical::request_writes(
            mode,
            target.workload.as_ref(),
            &target.scale.name,
            pods,
            recs,
            self.settings.vertical_min_samples,
        );
        let done = requests::apply_requests(&writes, &ns, p, &self.writer).await;
        for e in &done.write_errors {
            metrics.error(e.label());
        }
        for e in &done.event_errors {
            metrics.error(e.label());
            tracing::warn!(error = %e, "event not recorded");
        }
        let (applied, failed) = (done.applied, done.failed);
        if let Some(st) = self.states.get_mut(&key) {
            if applied || failed.is_some() {
                st.vertical_applied_at = Some(Instant::now());
            }
            st.vertical_failed = failed.clone();
        }
        // Counted once per failed round (between rounds the status repeats it).
        if let Some(f) = &failed {
            metrics.policy_error(&ns, &p.name_any(), f.reason);
        }
        failed
    }

    /// Nothing can be decided: keep the replicas, say why in the conditions and one Event.
    async fn hold(
        &mut self,
        p: &ScalingPolicy,
        reason: &'static str,
        message: &str,
        now: f64,
        report: &mut CycleReport,
    ) {
        report.failures += 1;
        let now_t = time_of(now);
        let key = (p.namespace().unwrap_or_default(), p.name_any());
        let metrics = self.writer.metrics();
        metrics.decision(&key.0, &key.1, Outcome::Held);
        metrics.policy_error(&key.0, &key.1, reason);
        let mut status = base_status(
            self.states.get(&key).and_then(|st| st.written.as_deref()),
            p,
        );
        let (able, active) = if reason == "FailedGetScale" {
            (false, false)
        } else {
            (true, false)
        };
        let conds = [
            engine::Condition {
                kind: engine::ConditionType::AbleToScale,
                status: able,
                reason: if able { "SucceededGetScale" } else { reason }.into(),
                message: if able {
                    "the scaler was able to get the target's current scale".into()
                } else {
                    message.to_string()
                },
            },
            engine::Condition {
                kind: engine::ConditionType::ScalingActive,
                status: active,
                reason: reason.into(),
                message: message.to_string(),
            },
        ];
        status.set_conditions(&conds, &now_t);
        status.observed_generation = p.metadata.generation;
        status.desired_replicas = None;
        tracing::warn!(policy = %format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()), reason, message, "holding: nothing applied");
        self.warn_once(p, reason, message.to_string()).await;
        self.write_status(p, status, false);
    }

    async fn warn_once(&mut self, p: &ScalingPolicy, reason: &str, message: String) {
        let key = (p.namespace().unwrap_or_default(), p.name_any());
        let fresh = self
            .states
            .get(&key)
            .is_none_or(|st| st.warned.as_deref() != Some(message.as_str()));
        if !fresh {
            return;
        }
        match self
            .writer
            .event(&p.object_ref(&()), true, reason, "Scale", message.clone())
            .await
        {
            Ok(()) => {
                if let Some(st) = self.states.get_mut(&key) {
                    st.warned = Some(message);
                }
            }
            Err(e) => {
                self.writer.metrics().error(e.label());
                tracing::warn!(error = %e, "event not recorded");
            }
        }
    }

    /// Queues the status: at once with the checkpoint when this cycle `scaled` the target,
    /// when it changed significantly, or as a refresh when the last one queued is older than
    /// `status_refresh` (see [`enqueue`]).
    fn write_status(&mut self, p: &ScalingPolicy, status: ScalingPolicyStatus, scaled: bool) {
        let ns = p.namespace().unwrap_or_default();
        let name = p.name_any();
        let key = (ns.clone(), name.clone());
        let refresh = self.settings.status_refresh;
        for c in &status.conditions {
            let condition = c.kind.as_str();
            self.writer
                .metrics()
                .conditions
                .get_or_create(&ConditionLabels {
                    namespace: ns.clone(),
                    policy: name.clone(),
                    condition,
                })
                .set(i64::from(c.status == crate::api::ConditionStatus::True));
        }
        let Some(st) = self.states.get_mut(&key) else {
            return;
        };
        enqueue(
            &self.statuses,
            &mut st.written,
            &mut st.written_at,
            key,
            status,
            scaled,
            refresh,
        );
    }
}

#[cfg(test)]
mod isolation_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// `vertical.mode` as compiled: `Off` recommends (the VPA's `Off`), `Recommend` is its
    /// deprecated name, the writing modes stay; no `vertical` compiles to nothing.
    #[test]
    fn vertical_modes_compile_to_their_meaning() {
        let settings = engine::ControllerSettings::default();
        let of = |vertical: Option<&str>| {
            let mut spec = serde_json::json!({
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"},
                "maxReplicas": 3,
                "metrics": [{"name": "cpu", "resource": {"name": "cpu", "targetUtilization": 80}}]
            });
            if let Some(m) = vertical {
                spec["vertical"] = serde_json::json!({"mode": m});
            }
            let p: ScalingPolicy = serde_json::from_value(serde_json::json!({
                "apiVersion": "tidal.dev/v1alpha1", "kind": "ScalingPolicy",
                "metadata": {"name": "p", "namespace": "ns"}, "spec": spec
            }))
            .expect("policy");
            let mode = p.spec.vertical.as_ref().map(|v| v.mode);
            let compiled = compile(&p, &settings).expect("compiles");
            (
                compiled.vertical.map(|(m, _)| m),
                mode.and_then(VerticalMode::deprecation),
            )
        };
        let cases = [
            (None, None, false),
            (Some("Off"), Some(VerticalMode::Off), false),
            (Some("Recommend"), Some(VerticalMode::Off), true),
            (Some("InPlace"), Some(VerticalMode::InPlace), false),
            (Some("Template"), Some(VerticalMode::Template), false),
        ];
        for (mode, want, deprecated) in cases {
            let (got, note) = of(mode);
            assert_eq!(got, want, "{mode:?}");
            assert_eq!(note.is_some(), deprecated, "{mode:?}: {note:?}");
        }
        assert!(
            of(Some("Recommend"))
                .1
                .is_some_and(|n| n.contains("use \"Off\""))
        );
    }
}

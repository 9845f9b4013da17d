//! Consumer-group lag read straight from the brokers with tidal-core's batched client: one
//! collection round per cluster per cycle, for every group any policy asks about on that
//! cluster (O(brokers + coordinators) requests, not O(policies)). Clusters are collected
//! concurrently ([`MAX_CONCURRENT_ROUNDS`]), each round bounded by `--kafka-round-timeout-seconds`
//! and the client's caps; a `kafkaLag.cluster` must be a `--kafka-cluster` name unless
//! `--kafka-allow-raw-addresses` is set.
//!
//! A reading is exact or it says what it does not know:
//! - the round failing (no broker answers) is an error for every group of that cluster;
//! - a group whose offsets could not be read this round is an error;
//! - a partition whose end offset is unknown (its leader down) makes the reading
//!   `complete = false`: the controller passes it to the engine as *stale*, which may still
//!   scale up on the known lag but never down and never to zero.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use tidal_core::kafka::config::KafkaConfig;
use tidal_core::kafka::frame::FrameBudget;
use tidal_core::kafka::{
    Client, ClientConfig, Limits, PartitionHistory, ResetPolicy, Round, Selection, partition_lag,
};

use super::SourceError;

/// What one `kafkaLag` metric asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LagQuery {
    /// A `--kafka-cluster` name, or (with `--kafka-allow-raw-addresses`) a bootstrap list
    /// (`host:port,host:port`).
    pub cluster: String,
    pub group: String,
    /// Empty: every topic the group has committed offsets for or is assigned.
    pub topics: Vec<String>,
    pub reset: ResetPolicyKey,
    /// A partition's lag is persistent once its committed offset has not moved for this many
    /// seconds (`persistentLagWindowSeconds`).
    pub persistent_window_seconds: u32,
}

/// [`ResetPolicy`] with `Ord`/`Hash`, so queries can be map keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ResetPolicyKey {
    #[default]
    Latest,
    Earliest,
    Zero,
}

impl From<ResetPolicyKey> for ResetPolicy {
    fn from(k: ResetPolicyKey) -> Self {
        match k {
            ResetPolicyKey::Latest => ResetPolicy::Latest,
            ResetPolicyKey::Earliest => ResetPolicy::Earliest,
            ResetPolicyKey::Zero => ResetPolicy::Zero,
        }
    }
}

/// One group's lag over the queried topics at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct LagReading {
    /// Sum of the known partition lags (messages).
    pub total: f64,
    /// Partitions of the queried topics (the replica cap).
    pub partitions: i64,
    /// Partitions with lag above 0.
    pub partitions_with_lag: i64,
    /// Lag on partitions whose committed offset has not moved for the query's window.
    pub persistent_lag: f64,
    /// `total`, each partition's lag averaged over its last commit interval
    /// (`PartitionHistory::commit_interval_lag`; the latest where that is unknown), for
    /// `kafkaLag.lagSampling: commitInterval`.
    pub commit_interval_total: f64,
    /// Messages per second the group consumes (None until known on every partition with lag:
    /// `PartitionHistory::consume_rate`).
    pub consume_rate_per_second: Option<f64>,
    /// Messages per second produced to the partitions (None until two rounds).
    pub produce_rate_per_second: Option<f64>,
    /// False when some partition's end offset was unknown this round.
    pub complete: bool,
    /// When the round ran (Unix seconds).
    pub timestamp_unix_seconds: f64,
}

type Key = (String, String, i32);

struct ClusterState {
    client: Client,
    /// Per (group, topic, partition).
    history: HashMap<Key, PartitionHistory>,
    /// The committed offset, and when it was first seen at that value.
    committed: HashMap<Key, (i64, f64)>,
}

/// Rounds of different clusters in flight at once (one slow cluster never delays the others;
/// each round is bounded by its own deadline).
pub const MAX_CONCURRENT_ROUNDS: usize = 8;

/// How the source talks to every cluster (the `--kafka-*` flags).
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// Bound on connect and on every request.
    pub request_timeout: Duration,
    /// Bound on one cluster's whole round.
    pub round_timeout: Duration,
    /// Frame, broker, group and partition caps.
    pub limits: Limits,
    /// Bytes of response frames held at once over every cluster (one budget for the source).
    pub frame_budget_bytes: usize,
    /// Accept a `kafkaLag.cluster` that is not a configured name as a bootstrap list.
    pub allow_raw_addresses: bool,
}

impl KafkaOptions {
    /// Tidal's defaults for a request timeout: the round gets twice it.
    pub fn new(request_timeout: Duration) -> Self {
        Self {
            request_timeout,
            round_timeout: request_timeout.saturating_mul(2),
            limits: Limits::default(),
            frame_budget_bytes: 2 * Limits::default().max_frame_bytes,
            allow_raw_addresses: false,
        }
    }

    /// A plain cluster's client settings (a `--kafka-cluster` entry or a raw address).
    fn client_config(&self, cluster: &str, bootstrap: &[&str]) -> ClientConfig {
        let mut cfg = ClientConfig::new(cluster, bootstrap);
        cfg.client_id = CLIENT_ID.to_string();
        cfg.request_timeout = self.request_timeout;
        cfg.round_timeout = self.round_timeout;
        cfg.limits = self.limits;
        cfg
    }
}

/// Lag for the controller; owns one client per cluster.
pub struct KafkaSource {
    /// The configured clusters by name: `--kafka-cluster` entries (plain, with the
    /// `--kafka-*` timeouts and caps) and the `--kafka-config` file's (SASL, TLS and their own
    /// timeouts and caps).
    named: HashMap<String, ClientConfig>,
    options: KafkaOptions,
    /// Shared by every cluster's client.
    frame_budget: FrameBudget,
    clusters: tokio::sync::Mutex<HashMap<String, ClusterState>>,
}

/// The Kafka client id the scaler sends.
pub const CLIENT_ID: &str = "tidal-scaler";

impl KafkaSource {
    /// `named` are the `--kafka-cluster name=host:port[;host:port]` entries and `file` the
    /// `--kafka-config` file's clusters; a name given twice is refused.
    pub fn new(
        named: &[String],
        file: Option<&KafkaConfig>,
        options: KafkaOptions,
    ) -> Result<Self, SourceError> {
        let mut map = HashMap::new();
        for entry in named {
            let malformed = || {
                SourceError::NotConfigured(format!(
                    "--kafka-cluster {entry:?}: expected name=host:port[;host:port]"
                ))
            };
            let (name, servers) = entry.split_once('=').ok_or_else(malformed)?;
            let servers: Vec<&str> = servers
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let name = name.trim();
            if name.is_empty() || servers.is_empty() {
                return Err(malformed());
            }
            map.insert(name.to_string(), options.client_config(name, &servers));
        }
        for c in file.map(|f| f.clusters.as_slice()).unwrap_or_default() {
            let name = &c.client.cluster;
            if map.contains_key(name) {
                return Err(SourceError::NotConfigured(format!(
                    "Kafka cluster {name:?} is named both by --kafka-cluster and by --kafka-config"
                )));
            }
            let mut client = c.client.clone();
            client.client_id = CLIENT_ID.to_string();
            map.insert(name.clone(), client);
        }
        Ok(Self {
            named: map,
            frame_budget: FrameBudget::new(options.frame_budget_bytes),
            options,
            clusters: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The client settings of a `kafkaLag.cluster`: a configured name, or (only with
    /// `allow_raw_addresses`) the value itself read as a plain `host:port,host:port` list.
    fn config(&self, cluster: &str) -> Result<ClientConfig, SourceError> {
        if let Some(c) = self.named.get(cluster) {
            return Ok(c.clone());
        }
        if !self.options.allow_raw_addresses {
            let mut configured: Vec<String> = self.named.keys().cloned().collect();
            configured.sort();
            return Err(SourceError::KafkaClusterNotConfigured {
                cluster: cluster.to_string(),
                configured,
            });
        }
        let bootstrap: Vec<&str> = cluster
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        Ok(self.options.client_config(cluster, &bootstrap))
    }

    fn client(&self, cluster: &str) -> Result<ClusterState, SourceError> {
        let mut cfg = self.config(cluster)?;
        cfg.frame_budget = Some(self.frame_budget.clone());
        let client = Client::new(cfg).map_err(|e| kafka_error(cluster, "*", &e))?;
        Ok(ClusterState {
            client,
            history: HashMap::new(),
            committed: HashMap::new(),
        })
    }

    /// One reading per query, in order. One round per distinct cluster, at most
    /// [`MAX_CONCURRENT_ROUNDS`] clusters at once.
    pub async fn collect(
        &self,
        queries: &[LagQuery],
        now_unix_seconds: f64,
    ) -> Vec<Result<LagReading, SourceError>> {
        // cluster -> (groups, indexes of its queries)
        let mut by_cluster: BTreeMap<&str, (BTreeSet<String>, Vec<usize>)> = BTreeMap::new();
        for (i, q) in queries.iter().enumerate() {
            let e = by_cluster.entry(q.cluster.as_str()).or_default();
            e.0.insert(q.group.clone());
            e.1.push(i);
        }
        let mut out: Vec<Option<Result<LagReading, SourceError>>> =
            (0..queries.len()).map(|_| None).collect();
        let mut clusters = self.clusters.lock().await;
        for (cluster, (_, idxs)) in &by_cluster {
            if clusters.contains_key(*cluster) {
                continue;
            }
            match self.client(cluster) {
                Ok(state) => {
                    clusters.insert(cluster.to_string(), state);
                }
                Err(e) => {
                    for i in idxs {
                        out[*i] = Some(Err(for_group(&e, &queries[*i].group)));
                    }
                }
            }
        }
        // Disjoint `&mut` states, one future per cluster.
        let jobs: Vec<_> = clusters
            .iter_mut()
            .filter_map(|(name, state)| {
                by_cluster.get(name.as_str()).map(|(groups, idxs)| {
                    cluster_readings(name, state, groups, idxs, queries, now_unix_seconds)
                })
            })
            .collect();
        let done: Vec<Vec<(usize, Result<LagReading, SourceError>)>> = futures::stream::iter(jobs)
            .buffer_unordered(MAX_CONCURRENT_ROUNDS)
            .collect()
            .await;
        for (i, r) in done.into_iter().flatten() {
            out[i] = Some(r);
        }
        out.into_iter()
            .zip(queries)
            .map(|(r, q)| {
                r.unwrap_or_else(|| {
                    Err(SourceError::Kafka {
                        cluster: q.cluster.clone(),
                        group: q.group.clone(),
                        detail: "no round ran".into(),
                    })
                })
            })
            .collect()
    }
}

/// One cluster's round and the readings of its queries (`idxs` into `queries`).
async fn cluster_readings(
    cluster: &str,
    state: &mut ClusterState,
    groups: &BTreeSet<String>,
    idxs: &[usize],
    queries: &[LagQuery],
    now: f64,
) -> Vec<(usize, Result<LagReading, SourceError>)> {
    let selection = Selection::Groups(groups.iter().cloned().collect());
    match state.client.collect(&selection).await {
        Ok(round) => idxs
            .iter()
            .map(|i| (*i, reading(state, &round, &queries[*i], now)))
            .collect(),
        Err(e) => {
            let err = kafka_error(cluster, "*", &e);
            idxs.iter()
                .map(|i| (*i, Err(for_group(&err, &queries[*i].group))))
                .collect()
        }
    }
}

/// A cluster-wide error, for one group.
fn for_group(e: &SourceError, group: &str) -> SourceError {
    match e {
        SourceError::Kafka {
            cluster, detail, ..
        } => SourceError::Kafka {
            cluster: cluster.clone(),
            group: group.to_string(),
            detail: detail.clone(),
        },
        other => other.clone(),
    }
}

/// The message is what the client's error says (the broker as configured or advertised, the
/// step, the cap): never bytes a server sent. The full error goes to the debug log.
fn kafka_error(cluster: &str, group: &str, e: &tidal_core::kafka::KafkaError) -> SourceError {
    tracing::debug!(%cluster, error = ?e, "kafka round failed");
    SourceError::Kafka {
        cluster: cluster.to_string(),
        group: group.to_string(),
        detail: e.to_string(),
    }
}

/// The reading for one query from a finished round; updates the per-partition history.
fn reading(
    state: &mut ClusterState,
    round: &Round,
    q: &LagQuery,
    now: f64,
) -> Result<LagReading, SourceError> {
    let err = |detail: String| SourceError::Kafka {
        cluster: q.cluster.clone(),
        group: q.group.clone(),
        detail,
    };
    let Some(group) = round.groups.get(&q.group) else {
        return Err(err(
            "the group does not exist (no committed offsets, no members)".into(),
        ));
    };
    if let Some(e) = &group.error {
        return Err(err(format!("offsets unreadable this round: {e}")));
    }
    let topics: BTreeSet<&str> = if q.topics.is_empty() {
        group
            .committed
            .keys()
            .map(|(t, _)| t.as_str())
            .chain(
                group
                    .members
                    .iter()
                    .flat_map(|m| m.assignment.iter().map(|(t, _)| t.as_str())),
            )
            .collect()
    } else {
        q.topics.iter().map(String::as_str).collect()
    };
    if topics.is_empty() {
        return Err(err(
            "the group has no committed offsets and no assignment, and no topics are set".into(),
        ));
    }
    let mut out = LagReading {
        total: 0.0,
        partitions: 0,
        partitions_with_lag: 0,
        persistent_lag: 0.0,
        commit_interval_total: 0.0,
        consume_rate_per_second: None,
        produce_rate_per_second: None,
        complete: true,
        timestamp_unix_seconds: now,
    };
    let mut consumed = Consumed::default();
    for topic in &topics {
        let parts: Vec<(&(String, i32), _)> = round
            .partitions
            .range((topic.to_string(), i32::MIN)..=(topic.to_string(), i32::MAX))
            .collect();
        if parts.is_empty() {
            return Err(err(format!(
                "topic {topic:?}: no partitions seen (the topic does not exist, or the group \
                 never committed to it and no member is assigned to it)"
            )));
        }
        for ((t, p), info) in parts {
            out.partitions += 1;
            let committed = group.committed.get(&(t.clone(), *p)).copied();
            let lag = partition_lag(committed, info.offsets, q.reset.into());
            let key = (q.group.clone(), t.clone(), *p);
            let Some(lag) = lag else {
                out.complete = false;
                continue;
            };
            let lag_f = lag as f64;
            out.total += lag_f;
            let mut interval_lag = lag_f;
            let mut persistent = false;
            if lag > 0 {
                out.partitions_with_lag += 1;
                // Persistent only if the commit has stood still for the whole window: a group
                // that commits every 5 s is not stuck between two of its commits.
                if let Some(c) = committed
                    && let Some(&(seen, since)) = state.committed.get(&key)
                    && seen == c
                    && now - since >= f64::from(q.persistent_window_seconds)
                {
                    out.persistent_lag += lag_f;
                    persistent = true;
                }
            }
            if let Some(o) = info.offsets {
                let h = state.history.entry(key.clone()).or_default();
                h.observe(now, o.log_end, committed);
                // A stuck partition has no sawtooth to average, and its latest lag is what
                // `persistent_lag` takes off the total: its average (lower while it grows)
                // would take the difference off the other partitions' backlog.
                if committed.is_some() && !persistent {
                    interval_lag = h.commit_interval_lag(now).unwrap_or(lag_f);
                }
                let produce = h.produce_rate();
                if let Some(r) = produce {
                    *out.produce_rate_per_second.get_or_insert(0.0) += r;
                }
                // A partition with commits and no rate yet (fewer than two commits seen, or
                // one since an idle spell) leaves the group's rate unknown while it has lag;
                // without lag it consumes what is produced. No commit: no consumption.
                if committed.is_some() {
                    match (h.consume_rate(now), lag) {
                        (Some(r), _) => consumed.add(r),
                        (None, 0) => consumed.add(produce.unwrap_or(0.0)),
                        (None, _) => consumed.unknown = true,
                    }
                }
            }
            out.commit_interval_total += interval_lag;
            match committed {
                Some(c) => {
                    let entry = state.committed.entry(key).or_insert((c, now));
                    if entry.0 != c {
                        *entry = (c, now);
                    }
                }
                None => {
                    state.committed.remove(&key);
                }
            }
        }
    }
    out.consume_rate_per_second = consumed.rate();
    Ok(out)
}

/// The group's consume rate, summed over its partitions: None if none had one, or if one with
/// lag had none.
#[derive(Default)]
struct Consumed {
    sum: Option<f64>,
    unknown: bool,
}

impl Consumed {
    fn add(&mut self, rate: f64) {
        *self.sum.get_or_insert(0.0) += rate;
    }

    fn rate(&self) -> Option<f64> {
        self.sum.filter(|_| !self.unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidal_core::kafka::{GroupInfo, PartitionInfo, PartitionOffsets};

    fn state() -> ClusterState {
        ClusterState {
            client: Client::new(ClientConfig::new("t", &["127.0.0.1:1"])).expect("client"),
            history: HashMap::new(),
            committed: HashMap::new(),
        }
    }

    fn round(ends: &[(i32, Option<i64>)], committed: &[(i32, i64)]) -> Round {
        let mut r = Round::default();
        for (p, end) in ends {
            r.partitions.insert(
                ("orders".into(), *p),
                PartitionInfo {
                    leader: 1,
                    offsets: end.map(|e| PartitionOffsets {
                        log_start: 0,
                        log_end: e,
                    }),
                },
            );
        }
        let mut g = GroupInfo::default();
        for (p, c) in committed {
            g.committed.insert(("orders".into(), *p), *c);
        }
        r.groups.insert("g".into(), g);
        r
    }

    fn q(topics: &[&str]) -> LagQuery {
        LagQuery {
            cluster: "c".into(),
            group: "g".into(),
            topics: topics.iter().map(|s| s.to_string()).collect(),
            reset: ResetPolicyKey::Latest,
            persistent_window_seconds: 30,
        }
    }

    #[test]
    fn sums_partitions_counts_the_cap_and_persistent_lag() {
        let mut s = state();
        let r = round(
            &[(0, Some(100)), (1, Some(50)), (2, Some(7))],
            &[(0, 40), (1, 50)],
        );
        let a = reading(&mut s, &r, &q(&["orders"]), 10.0).expect("reading");
        // p0: 60, p1: 0, p2: no commit under `latest` counts 1 (KEDA).
        assert_eq!(a.total, 61.0);
        assert_eq!((a.partitions, a.partitions_with_lag), (3, 2));
        assert!(a.complete);
        assert_eq!(a.persistent_lag, 0.0, "first round: nothing to compare");
        // Same commits a second later: not persistent yet (a commit interval is seconds).
        let b = reading(&mut s, &r, &q(&["orders"]), 11.0).expect("reading");
        assert_eq!(b.persistent_lag, 0.0, "1 s is not the 30 s window");
        // Still the same commits after the whole window: p0's lag is persistent.
        let c = reading(&mut s, &r, &q(&["orders"]), 40.0).expect("reading");
        assert_eq!(c.persistent_lag, 60.0);
    }

    /// A group that commits every 5 s, read every second, was "stuck" 4 rounds out of 5 when
    /// the last round was the reference: the count oscillated. Now it is never persistent,
    /// and one that stops committing is, a window after its last commit.
    #[test]
    fn a_group_committing_every_5_s_is_never_persistent_and_one_that_stops_is() {
        let mut s = state();
        let mut committed = 0;
        for second in 0..120 {
            if second % 5 == 0 {
                committed += 50;
            }
            let r = round(&[(0, Some(committed + 100))], &[(0, committed)]);
            let got = reading(&mut s, &r, &q(&["orders"]), f64::from(second)).expect("reading");
            assert_eq!(got.persistent_lag, 0.0, "at {second} s");
        }
        // It stops committing at 119 s (last commit at 115 s).
        let r = round(&[(0, Some(committed + 100))], &[(0, committed)]);
        let early = reading(&mut s, &r, &q(&["orders"]), 144.0).expect("reading");
        assert_eq!(early.persistent_lag, 0.0, "29 s after the last commit");
        let late = reading(&mut s, &r, &q(&["orders"]), 145.0).expect("reading");
        assert_eq!(late.persistent_lag, 100.0, "30 s after the last commit");
    }

    /// Two partitions at 40 msg/s each, committed every 5 s, read every second. The group's
    /// consume rate is the partitions' sum once both have two commits seen to happen; while
    /// partition 1 with lag has no rate yet (it started committing later), the group's is
    /// unknown, not partition 0's alone (which would read as a group falling behind).
    #[test]
    fn the_group_consume_rate_sums_whole_commit_intervals_and_is_unknown_while_a_lagging_partition_has_none()
     {
        let mut s = state();
        let mut got = Vec::new();
        for second in 0..40i64 {
            let at = |start: i64| {
                let since = (second - start).max(0);
                40 * (start + since - since % 5)
            };
            let r = round(
                &[(0, Some(40 * second + 100)), (1, Some(40 * second + 100))],
                &[(0, at(0)), (1, at(12))],
            );
            let reading = reading(&mut s, &r, &q(&["orders"]), second as f64).expect("reading");
            got.push(reading.consume_rate_per_second);
        }
        assert_eq!(got[4], None, "no commit seen to happen yet");
        // Partition 0 has its rate from 10 s (commits seen at 5 and 10); partition 1, with
        // lag, first moves at 17 s and has its rate from 22 s.
        for (second, rate) in got.iter().enumerate().take(22).skip(10) {
            assert_eq!(*rate, None, "at {second} s");
        }
        for (second, rate) in got.iter().enumerate().skip(22) {
            assert_eq!(*rate, Some(80.0), "at {second} s");
        }
    }

    /// The same two partitions, committed every 5 s at different phases: the latest total
    /// saws, the commit-interval total is each partition's tooth mean (the backlog of 100
    /// plus 2 s of 40 msg/s on the integer rounds) once a cadence is kept; a partition
    /// without a committed offset counts its latest lag in both.
    #[test]
    fn the_commit_interval_total_is_each_partitions_tooth_mean() {
        let mut s = state();
        let mut latest = Vec::new();
        for second in 0..30i64 {
            let at = |phase: i64| 40 * (second - (second - phase).rem_euclid(5));
            let end = 40 * second + 100;
            let r = round(
                &[(0, Some(end)), (1, Some(end)), (2, Some(3))],
                &[(0, at(0)), (1, at(2))],
            );
            let got = reading(&mut s, &r, &q(&["orders"]), second as f64).expect("reading");
            latest.push(got.total);
            if second >= 4 {
                // p0 and p1: 180 each; p2: 1 under `latest` (KEDA).
                assert_eq!(got.commit_interval_total, 361.0, "at {second} s");
            }
        }
        let (lo, hi) = latest[4..]
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
        assert!(lo < 361.0 && hi > 361.0, "the latest saws: {lo}..{hi}");
    }

    /// With `excludePersistentLag`, the engine takes `persistent_lag` (latest lags) off the
    /// averaged total: a stuck partition whose lag grows 50 a second must count its latest
    /// lag there too, or the difference (its average trails by 2 s, 100 messages) would come
    /// off the healthy partition's mean.
    #[test]
    fn a_persistent_partition_counts_its_latest_lag_in_the_commit_interval_total() {
        let mut s = state();
        let mut query = q(&["orders"]);
        query.persistent_window_seconds = 5;
        let mut last = None;
        for second in 0..20i64 {
            let healthy = 40 * (second - second.rem_euclid(5));
            let r = round(
                &[(0, Some(40 * second + 100)), (1, Some(1000 + 50 * second))],
                &[(0, healthy), (1, 1000)],
            );
            last = Some(reading(&mut s, &r, &query, second as f64).expect("reading"));
        }
        let last = last.expect("a reading");
        // p1: 1950 - 1000 = 950, persistent since 5 s; p0: 180 on average.
        assert_eq!(last.persistent_lag, 950.0);
        assert_eq!(last.commit_interval_total - last.persistent_lag, 180.0);
    }

    #[test]
    fn unknown_end_offset_makes_the_reading_incomplete_not_zero() {
        let mut s = state();
        let r = round(&[(0, Some(100)), (1, None)], &[(0, 40), (1, 0)]);
        let a = reading(&mut s, &r, &q(&[]), 1.0).expect("reading");
        assert!(!a.complete);
        assert_eq!(a.total, 60.0);
        assert_eq!(a.partitions, 2);
    }

    #[test]
    fn missing_group_topic_or_unreadable_offsets_are_errors_naming_them() {
        let mut s = state();
        let r = round(&[(0, Some(1))], &[(0, 1)]);
        let e = reading(&mut s, &r, &q(&["payments"]), 1.0).expect_err("no such topic");
        assert!(e.to_string().contains("payments"), "{e}");
        assert!(e.to_string().contains("\"g\""), "{e}");
        let mut missing = q(&[]);
        missing.group = "nobody".into();
        let e = reading(&mut s, &r, &missing, 1.0).expect_err("no such group");
        assert!(e.to_string().contains("nobody"), "{e}");
        let mut bad = round(&[(0, Some(1))], &[(0, 1)]);
        if let Some(g) = bad.groups.get_mut("g") {
            g.error = Some("COORDINATOR_NOT_AVAILABLE".into());
        }
        let e = reading(&mut s, &bad, &q(&[]), 1.0).expect_err("unreadable");
        assert!(e.to_string().contains("COORDINATOR_NOT_AVAILABLE"), "{e}");
    }

    fn opts(allow_raw: bool) -> KafkaOptions {
        let mut o = KafkaOptions::new(Duration::from_secs(1));
        o.allow_raw_addresses = allow_raw;
        o
    }

    #[test]
    fn named_clusters_parse_and_bad_entries_name_the_flag() {
        let s = KafkaSource::new(&["main=a:1;b:2".into()], None, opts(true)).expect("ok");
        let main = s.config("main").expect("named");
        assert_eq!(main.bootstrap, vec!["a:1", "b:2"]);
        assert_eq!(
            (main.client_id.as_str(), main.request_timeout),
            (CLIENT_ID, Duration::from_secs(1))
        );
        assert_eq!(
            s.config("x:1,y:2").expect("raw").bootstrap,
            vec!["x:1", "y:2"]
        );
        let e = KafkaSource::new(&["nonsense".into()], None, opts(false))
            .err()
            .expect("error");
        assert!(e.to_string().contains("--kafka-cluster"), "{e}");
    }

    #[test]
    fn config_file_clusters_keep_their_auth_and_settings() {
        let file = KafkaConfig::parse(
            std::path::Path::new("kafka.json"),
            r#"{"clusters": [{"name": "secure", "bootstrap": ["k:9093"],
                "sasl": {"mechanism": "SCRAM-SHA-512", "username": "u", "password": "p"},
                "request_timeout_seconds": 2, "max_groups": 7,
                "groups": "^ignored-by-the-scaler"}]}"#,
            "tidal-agent",
        )
        .expect("valid");
        let s = KafkaSource::new(&["plain=a:1".into()], Some(&file), opts(false)).expect("ok");
        let secure = s.config("secure").expect("configured");
        assert_eq!(secure.bootstrap, vec!["k:9093"]);
        assert_eq!(secure.client_id, CLIENT_ID);
        assert_eq!(secure.request_timeout, Duration::from_secs(2));
        assert_eq!(secure.limits.max_groups, 7);
        let sasl = secure.sasl.expect("sasl kept");
        assert_eq!((sasl.username.as_str(), sasl.password.as_str()), ("u", "p"));
        assert!(s.config("plain").expect("flag").sasl.is_none());
        let e = s.config("other").expect_err("not configured").to_string();
        assert!(e.contains("plain, secure"), "{e}");
        let twice = KafkaSource::new(&["secure=a:1".into()], Some(&file), opts(false))
            .err()
            .expect("named twice")
            .to_string();
        assert!(twice.contains("\"secure\" is named both"), "{twice}");
    }

    fn lag_query(cluster: &str, group: &str) -> LagQuery {
        LagQuery {
            cluster: cluster.into(),
            group: group.into(),
            topics: vec![],
            reset: ResetPolicyKey::Latest,
            persistent_window_seconds: 30,
        }
    }

    #[tokio::test]
    async fn a_raw_address_is_refused_by_default_without_connecting() {
        // Something listens at the raw address: it must see no connection.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let raw = listener.local_addr().expect("addr").to_string();
        let s = KafkaSource::new(&["main=127.0.0.1:1".into()], None, opts(false)).expect("ok");
        let out = s.collect(&[lag_query(&raw, "g")], 1.0).await;
        let e = out[0].as_ref().expect_err("refused");
        assert!(
            matches!(e, SourceError::KafkaClusterNotConfigured { cluster, configured }
                if *cluster == raw && *configured == vec!["main".to_string()]),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&raw)
                && msg.contains("--kafka-allow-raw-addresses")
                && msg.contains("main"),
            "{msg}"
        );
        assert_eq!(e.label(), "not_configured");
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the scaler connected to {raw}");
        assert!(s.clusters.lock().await.is_empty(), "no client was made");
    }

    #[tokio::test]
    async fn a_raw_address_is_a_bootstrap_list_with_the_flag() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let raw = listener.local_addr().expect("addr").to_string();
        let s = KafkaSource::new(&[], None, opts(true)).expect("ok");
        let queries = [lag_query(&raw, "g")];
        let (out, accepted) = tokio::join!(
            s.collect(&queries, 1.0),
            tokio::time::timeout(Duration::from_secs(3), listener.accept())
        );
        assert!(accepted.is_ok(), "the scaler connected to {raw}");
        let e = out[0].as_ref().expect_err("the listener speaks no Kafka");
        assert!(matches!(e, SourceError::Kafka { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn clusters_are_collected_concurrently_each_bounded_by_its_round_deadline() {
        // Four clusters whose brokers accept and never answer: one after another they would
        // take 4 round deadlines; concurrently, about one.
        let mut named = Vec::new();
        let mut listeners = Vec::new();
        for i in 0..4 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            named.push(format!("c{i}={}", l.local_addr().expect("addr")));
            listeners.push(l);
        }
        // Keep accepted sockets open (and silent) until the test ends.
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for l in listeners {
            let held = held.clone();
            tokio::spawn(async move {
                while let Ok((sock, _)) = l.accept().await {
                    held.lock().unwrap_or_else(|e| e.into_inner()).push(sock);
                }
            });
        }
        let mut o = opts(false);
        o.request_timeout = Duration::from_secs(5);
        o.round_timeout = Duration::from_millis(800);
        let s = KafkaSource::new(&named, None, o).expect("ok");
        let queries: Vec<LagQuery> = (0..4).map(|i| lag_query(&format!("c{i}"), "g")).collect();
        let t0 = std::time::Instant::now();
        let out = s.collect(&queries, 1.0).await;
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(1600), "took {took:?}");
        for (r, q) in out.iter().zip(&queries) {
            let e = r.as_ref().expect_err("silent broker");
            let msg = e.to_string();
            assert!(
                msg.contains(&q.cluster) && msg.contains("did not finish within 0.8s"),
                "{msg}"
            );
        }
    }
}

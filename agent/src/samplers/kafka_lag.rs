//! The `kafka_lag` sampler: consumer lag, time lag, status, rates and time to drain for the
//! clusters in `--kafka-config`.
//!
//! Each cluster has its own tokio task that runs one batched collection round
//! ([`tidal_core::kafka::Client::collect`]) per `interval_seconds` and publishes the series it
//! computed. [`KafkaLagSampler::sample`] only copies the latest publication into the buffer, so
//! a scrape never waits on a broker.
//!
//! **Uncertain data is never exported as a number.** When a round fails (broker down, auth
//! refused), or its publication is older than three intervals, the cluster's lag series are
//! dropped and the sampler reports an error (`tidal_agent_sampler_success{sampler="kafka_lag"}`
//! drops to 0). A group whose offsets could not be read is left out the same way, with status
//! `ERR`. Lag is never reported as 0 because it is unknown.
//!
//! **Attribution** (`--attribute-to-node`): each agent exports only the partitions owned by a
//! consumer whose `client_host` (from DescribeGroups) is the IP of a pod on its own node; the
//! partitions nobody owns, and the group-level series (status, members, produce rates), come
//! from the one agent holding the election Lease ([`tidal_core::lease`]). Summing over agents then
//! gives the cluster's totals with no double count. Without the flag, the agent exports the
//! whole cluster (run it on one agent, or as a sidecar).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidal_core::kafka::{
    Client, KafkaError, LagSum, PartitionHistory, Round, Selection, Status, partition_lag,
    time_to_drain,
};
use tidal_core::lease::Leadership;
use tidal_core::schema;

use crate::buffer::{Buffer, Labels};
use crate::pods::PodMetaByUid;
use crate::sampler::{SampleError, Sampler};
use tidal_core::kafka::config::{ClusterConfig, Granularity, KafkaConfig};

/// Why the sampler could not export a cluster's lag.
#[derive(Debug, thiserror::Error)]
pub enum KafkaLagError {
    #[error("kafka cluster {cluster}: no collection round has finished yet")]
    NoRoundYet { cluster: String },
    #[error("kafka cluster {cluster}: last round is {age_seconds:.1}s old; lag series dropped")]
    Stale { cluster: String, age_seconds: f64 },
    #[error("kafka cluster {cluster}: {source}; lag series dropped")]
    Round { cluster: String, source: KafkaError },
    #[error("kafka cluster {cluster}: {detail}; those groups' lag series dropped")]
    Partial {
        cluster: String,
        reason: &'static str,
        detail: String,
    },
}

impl KafkaLagError {
    /// The fixed `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            KafkaLagError::NoRoundYet { .. } => "no_round_yet",
            KafkaLagError::Stale { .. } => "stale",
            KafkaLagError::Round { source, .. } => source.reason(),
            KafkaLagError::Partial { reason, .. } => reason,
        }
    }
}

type Series = (&'static str, &'static str, Labels, f64);

/// What one cluster's task last published.
struct Publication {
    at: Instant,
    series: Vec<Series>,
    error: Option<KafkaLagError>,
}

struct Slot {
    cluster: String,
    interval: Duration,
    latest: Mutex<Option<Publication>>,
}

/// Which partitions this agent exports under `--attribute-to-node`.
#[derive(Clone, Debug)]
pub struct Attribution {
    /// This node's pods (their IPs identify local consumers).
    pub pods: PodMetaByUid,
    /// Whether this agent is the elected one (exports unowned partitions and group series).
    pub leadership: Leadership,
}

impl Attribution {
    /// Decides per partition; `owner` is the owning member's client host, if any.
    fn exports(&self, local: &std::collections::HashSet<String>, owner: Option<&str>) -> bool {
        match owner {
            Some(host) => local.contains(host),
            None => self.leadership.is_leader(),
        }
    }
}

/// The sampler; the collection tasks run on the tokio runtime it was started on.
pub struct KafkaLagSampler {
    slots: Vec<Arc<Slot>>,
}

impl KafkaLagSampler {
    /// Starts one collection task per cluster (must be called inside a tokio runtime).
    pub fn start(cfg: KafkaConfig, attribution: Option<Attribution>) -> Self {
        let slots = cfg
            .clusters
            .into_iter()
            .map(|c| {
                let slot = Arc::new(Slot {
                    cluster: c.client.cluster.clone(),
                    interval: cfg.interval,
                    latest: Mutex::new(None),
                });
                tokio::spawn(run_cluster(
                    c,
                    cfg.interval,
                    slot.clone(),
                    attribution.clone(),
                ));
                slot
            })
            .collect();
        Self { slots }
    }
}

impl Sampler for KafkaLagSampler {
    fn name(&self) -> &'static str {
        "kafka_lag"
    }

    fn sample(&mut self, buf: &mut Buffer) -> Result<(), SampleError> {
        let mut first_err = None;
        for slot in &self.slots {
            let guard = slot.latest.lock().unwrap_or_else(|p| p.into_inner());
            let err = match guard.as_ref() {
                None => Some(KafkaLagError::NoRoundYet {
                    cluster: slot.cluster.clone(),
                }),
                Some(p) if p.at.elapsed() > slot.interval * 3 + Duration::from_secs(1) => {
                    Some(KafkaLagError::Stale {
                        cluster: slot.cluster.clone(),
                        age_seconds: p.at.elapsed().as_secs_f64(),
                    })
                }
                Some(p) => {
                    for (name, help, labels, v) in &p.series {
                        buf.gauge(name, help, labels.clone(), *v);
                    }
                    p.error.as_ref().map(|e| KafkaLagError::Partial {
                        cluster: slot.cluster.clone(),
                        reason: e.reason(),
                        detail: e.to_string(),
                    })
                }
            };
            if let Some(e) = err {
                buf.error_detail(e.reason(), &e);
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

async fn run_cluster(
    cfg: ClusterConfig,
    interval: Duration,
    slot: Arc<Slot>,
    attribution: Option<Attribution>,
) {
    let cluster = cfg.client.cluster.clone();
    let mut client = match Client::new(cfg.client.clone()) {
        Ok(c) => c,
        Err(source) => {
            tracing::error!(%cluster, error = %source, "kafka cluster config is unusable");
            publish(
                &slot,
                Vec::new(),
                Some(KafkaLagError::Round { cluster, source }),
            );
            return;
        }
    };
    let selection = match cfg.groups.clone() {
        Some(re) => Selection::Matching(Arc::new(move |g: &str| re.is_match(g))),
        None => Selection::All,
    };
    let start = Instant::now();
    let mut state = History::default();
    let mut last_logged: Option<&'static str> = None;
    loop {
        let t0 = Instant::now();
        let (series, error) = match client.collect(&selection).await {
            Ok(round) => {
                let now = start.elapsed().as_secs_f64();
                let took = t0.elapsed().as_secs_f64();
                state.series(&cfg, &round, now, took, attribution.as_ref())
            }
            Err(source) => (
                Vec::new(),
                Some(KafkaLagError::Round {
                    cluster: cluster.clone(),
                    source,
                }),
            ),
        };
        // Log a failure once when it starts, and once when it clears (no log storm).
        match (&error, last_logged) {
            (Some(e), prev) if prev != Some(e.reason()) => {
                tracing::warn!(%cluster, error = %e, "kafka lag collection failed");
                last_logged = Some(e.reason());
            }
            (None, Some(_)) => {
                tracing::info!(%cluster, "kafka lag collection recovered");
                last_logged = None;
            }
            _ => {}
        }
        publish(&slot, series, error);
        tokio::time::sleep_until((t0 + interval).into()).await;
    }
}

fn publish(slot: &Slot, series: Vec<Series>, error: Option<KafkaLagError>) {
    let p = Publication {
        at: Instant::now(),
        series,
        error,
    };
    *slot.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
}

/// Per-partition histories kept across rounds.
#[derive(Default)]
struct History {
    /// (group, topic, partition) -> committed-offset history.
    groups: HashMap<(String, String, i32), PartitionHistory>,
    /// (topic, partition) -> log-end history (produce rate).
    topics: HashMap<(String, i32), PartitionHistory>,
}

#[derive(Default)]
struct TopicAgg {
    sum: LagSum,
    max_time_lag: Option<f64>,
    consume_rate: f64,
}

impl History {
    /// The series of one round, and the round's partial error if any.
    fn series(
        &mut self,
        cfg: &ClusterConfig,
        round: &Round,
        now: f64,
        took: f64,
        attribution: Option<&Attribution>,
    ) -> (Vec<Series>, Option<KafkaLagError>) {
        let local_ips = attribution.map(|a| a.pods.pod_ips()).unwrap_or_default();
        // Group-level series come from one agent only when attributing.
        let group_level = attribution.is_none_or(|a| a.leadership.is_leader());
        let cluster = cfg.client.cluster.as_str();
        let mut out: Vec<Series> = Vec::new();
        let topic_ok = |t: &str| cfg.topics.as_ref().is_none_or(|re| re.is_match(t));
        let l = |pairs: &[(&'static str, &str)]| -> Labels {
            pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
        };

        // Produce rates per topic, from the log end offsets.
        let mut seen_tp = BTreeSet::new();
        let mut produce: BTreeMap<&str, f64> = BTreeMap::new();
        for ((t, p), info) in &round.partitions {
            let Some(o) = info.offsets else { continue };
            let h = self.topics.entry((t.clone(), *p)).or_default();
            h.observe(now, o.log_end, None);
            seen_tp.insert((t.clone(), *p));
            if let Some(r) = h.produce_rate() {
                *produce.entry(t.as_str()).or_default() += r;
            }
        }
        self.topics.retain(|k, _| seen_tp.contains(k));

        let mut seen = BTreeSet::new();
        let mut failed_groups = Vec::new();
        for (group, g) in &round.groups {
            if let Some(e) = &g.error {
                failed_groups.push(format!("{group}: {e}"));
                if group_level {
                    out.extend(status_series(cluster, group, Status::Err));
                }
                continue;
            }
            // Who owns each partition (client host without the leading '/').
            let owners: HashMap<(&str, i32), &str> = g
                .members
                .iter()
                .flat_map(|m| {
                    let host = m.client_host.trim_start_matches('/');
                    m.assignment
                        .iter()
                        .map(move |(t, p)| ((t.as_str(), *p), host))
                })
                .collect();
            // Every partition of every topic the group has committed to or owns.
            let topics: BTreeSet<&str> = g
                .committed
                .keys()
                .map(|(t, _)| t.as_str())
                .chain(
                    g.members
                        .iter()
                        .flat_map(|m| m.assignment.iter().map(|(t, _)| t.as_str())),
                )
                .filter(|t| topic_ok(t))
                .collect();
            let mut by_topic: BTreeMap<&str, TopicAgg> = BTreeMap::new();
            let mut group_status = Status::Ok;
            for ((t, p), info) in round.partitions.iter() {
                if !topics.contains(t.as_str()) {
                    continue;
                }
                if let Some(a) = attribution
                    && !a.exports(&local_ips, owners.get(&(t.as_str(), *p)).copied())
                {
                    continue;
                }
                let committed = g.committed.get(&(t.clone(), *p)).copied();
                let lag = partition_lag(committed, info.offsets, cfg.reset_policy);
                let agg = by_topic.entry(t.as_str()).or_default();
                agg.sum.add(lag);
                let Some(lag) = lag else {
                    group_status = group_status.max(Status::Err);
                    continue;
                };
                let key = (group.clone(), t.clone(), *p);
                seen.insert(key.clone());
                let h = self.groups.entry(key).or_default();
                if let Some(o) = info.offsets {
                    h.observe(now, o.log_end, committed);
                }
                let time_lag = match committed {
                    Some(c) => h.time_lag(c, now),
                    None => (lag == 0).then_some(0.0),
                };
                if committed.is_some() {
                    group_status = group_status.max(h.status(now));
                    agg.consume_rate += h.consume_rate(now).unwrap_or(0.0);
                }
                if let Some(tl) = time_lag {
                    agg.max_time_lag = Some(agg.max_time_lag.map_or(tl, |m: f64| m.max(tl)));
                }
                if cfg.granularity == Granularity::Partition {
                    let ps = p.to_string();
                    let labels = l(&[
                        ("cluster", cluster),
                        ("group", group),
                        ("topic", t),
                        ("partition", &ps),
                    ]);
                    out.push((
                        schema::AGENT_KAFKA_LAG,
                        HELP_LAG,
                        labels.clone(),
                        lag as f64,
                    ));
                    if let Some(tl) = time_lag {
                        out.push((
                            schema::AGENT_KAFKA_LAG_SECONDS,
                            HELP_LAG_SECONDS,
                            labels,
                            tl,
                        ));
                    }
                }
            }
            for (t, agg) in &by_topic {
                let labels = l(&[("cluster", cluster), ("group", group), ("topic", t)]);
                out.push((
                    schema::AGENT_KAFKA_PARTITIONS,
                    HELP_PARTITIONS,
                    labels.clone(),
                    agg.sum.partitions as f64,
                ));
                out.push((
                    schema::AGENT_KAFKA_PARTITIONS_WITH_LAG,
                    HELP_PARTITIONS_WITH_LAG,
                    labels.clone(),
                    agg.sum.partitions_with_lag as f64,
                ));
                if !agg.sum.complete() {
                    // Some partition's end offset is unknown: no sum is better than a wrong one.
                    continue;
                }
                if cfg.granularity == Granularity::Topic {
                    out.push((
                        schema::AGENT_KAFKA_LAG,
                        HELP_LAG,
                        labels.clone(),
                        agg.sum.total as f64,
                    ));
                    if let Some(tl) = agg.max_time_lag {
                        out.push((
                            schema::AGENT_KAFKA_LAG_SECONDS,
                            HELP_LAG_SECONDS,
                            labels.clone(),
                            tl,
                        ));
                    }
                }
                out.push((
                    schema::AGENT_KAFKA_CONSUME_RATE,
                    HELP_CONSUME_RATE,
                    labels.clone(),
                    agg.consume_rate,
                ));
                let produced = produce.get(t).copied().unwrap_or(0.0);
                if let Some(d) = time_to_drain(agg.sum.total, agg.consume_rate, produced) {
                    out.push((schema::AGENT_KAFKA_TIME_TO_DRAIN, HELP_DRAIN, labels, d));
                }
            }
            if group_level {
                out.push((
                    schema::AGENT_KAFKA_MEMBERS,
                    HELP_MEMBERS,
                    l(&[("cluster", cluster), ("group", group)]),
                    g.members.len() as f64,
                ));
                out.extend(status_series(cluster, group, group_status));
            }
        }
        self.groups.retain(|k, _| seen.contains(k));
        for (t, r) in &produce {
            if topic_ok(t) && group_level {
                out.push((
                    schema::AGENT_KAFKA_PRODUCE_RATE,
                    HELP_PRODUCE_RATE,
                    l(&[("cluster", cluster), ("topic", t)]),
                    *r,
                ));
            }
        }
        let c = l(&[("cluster", cluster)]);
        if attribution.is_some() {
            let leader = if group_level { 1.0 } else { 0.0 };
            out.push((
                schema::AGENT_KAFKA_ATTRIBUTION_LEADER,
                HELP_LEADER,
                c.clone(),
                leader,
            ));
        }
        out.push((
            schema::AGENT_KAFKA_ROUND_REQUESTS,
            HELP_REQUESTS,
            c.clone(),
            round.requests.total() as f64,
        ));
        out.push((
            schema::AGENT_KAFKA_ROUND_DURATION,
            HELP_DURATION,
            c.clone(),
            took,
        ));
        let partial = !failed_groups.is_empty() || !round.errors.is_empty();
        out.push((
            schema::AGENT_KAFKA_ROUND_SUCCESS,
            HELP_SUCCESS,
            c,
            if partial { 0.0 } else { 1.0 },
        ));
        let error = partial.then(|| {
            let mut detail: Vec<String> = round.errors.iter().map(|e| e.to_string()).collect();
            detail.extend(failed_groups);
            let reason = round
                .errors
                .first()
                .map_or("group_unreadable", |e| e.reason());
            KafkaLagError::Partial {
                cluster: cluster.to_string(),
                reason,
                detail: detail.join("; "),
            }
        });
        (out, error)
    }
}

/// The status stateset: 1 for the current status, 0 for the others.
fn status_series(cluster: &str, group: &str, current: Status) -> Vec<Series> {
    [
        Status::Ok,
        Status::Warn,
        Status::Rewind,
        Status::Stall,
        Status::Stop,
        Status::Err,
    ]
    .into_iter()
    .map(|s| {
        let labels = vec![
            ("cluster", cluster.to_string()),
            ("group", group.to_string()),
            ("status", s.as_str().to_string()),
        ]
        .into();
        (
            schema::AGENT_KAFKA_STATUS,
            HELP_STATUS,
            labels,
            if s == current { 1.0 } else { 0.0 },
        )
    })
    .collect()
}

const HELP_LAG: &str = "Messages the consumer group is behind the high watermark";
const HELP_LAG_SECONDS: &str =
    "Seconds the consumer group is behind, interpolated from the log end's (offset, time) table";
const HELP_PARTITIONS: &str = "Partitions of the topic counted for the group";
const HELP_PARTITIONS_WITH_LAG: &str = "Partitions of the topic on which the group has lag";
const HELP_STATUS: &str = "Burrow-style status of the group (1 for the current one)";
const HELP_MEMBERS: &str = "Live members of the consumer group";
const HELP_CONSUME_RATE: &str = "Messages per second the group consumes from the topic";
const HELP_PRODUCE_RATE: &str = "Messages per second produced into the topic";
const HELP_DRAIN: &str = "Seconds until the group's lag on the topic is consumed at current rates";
const HELP_REQUESTS: &str = "Kafka requests sent by the last collection round";
const HELP_DURATION: &str = "Duration of the last collection round";
const HELP_LEADER: &str = "1 if this agent holds the Lease and exports unowned partitions";
const HELP_SUCCESS: &str = "1 if the last collection round read every group";

impl From<KafkaLagError> for SampleError {
    fn from(e: KafkaLagError) -> Self {
        SampleError::new(e.reason(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use tidal_core::kafka::{GroupInfo, PartitionInfo, PartitionOffsets};

    fn cfg(granularity: &str) -> ClusterConfig {
        let text = format!(
            r#"{{"clusters": [{{"name": "c", "bootstrap": ["h:1"], "granularity": "{granularity}"}}]}}"#
        );
        KafkaConfig::parse(Path::new("t.json"), &text, "tidal-agent")
            .expect("valid")
            .clusters
            .remove(0)
    }

    fn round(committed: &[((&str, i32), i64)], ends: &[((&str, i32), Option<i64>)]) -> Round {
        let mut r = Round::default();
        for ((t, p), end) in ends {
            r.partitions.insert(
                (t.to_string(), *p),
                PartitionInfo {
                    leader: 1,
                    offsets: end.map(|e| PartitionOffsets {
                        log_start: 0,
                        log_end: e,
                    }),
                },
            );
        }
        let mut g = GroupInfo {
            state: "Stable".into(),
            ..Default::default()
        };
        for ((t, p), c) in committed {
            g.committed.insert((t.to_string(), *p), *c);
        }
        r.groups.insert("g".into(), g);
        r
    }

    fn value(series: &[Series], name: &str, want: &[(&str, &str)]) -> Option<f64> {
        series
            .iter()
            .find(|(n, _, labels, _)| {
                *n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.3)
    }

    #[test]
    fn partition_granularity_exports_exact_lag() {
        let r = round(
            &[(("t", 0), 4), (("t", 1), 20)],
            &[
                (("t", 0), Some(10)),
                (("t", 1), Some(20)),
                (("t", 2), Some(5)),
            ],
        );
        let (s, err) = History::default().series(&cfg("partition"), &r, 0.0, 0.01, None);
        assert!(err.is_none());
        assert_eq!(
            value(&s, schema::AGENT_KAFKA_LAG, &[("partition", "0")]),
            Some(6.0)
        );
        assert_eq!(
            value(&s, schema::AGENT_KAFKA_LAG, &[("partition", "1")]),
            Some(0.0)
        );
        // t/2 was never committed: KEDA's latest policy counts 1.
        assert_eq!(
            value(&s, schema::AGENT_KAFKA_LAG, &[("partition", "2")]),
            Some(1.0)
        );
        assert_eq!(
            value(
                &s,
                schema::AGENT_KAFKA_PARTITIONS_WITH_LAG,
                &[("topic", "t")]
            ),
            Some(2.0)
        );
        assert_eq!(
            value(&s, schema::AGENT_KAFKA_STATUS, &[("status", "OK")]),
            Some(1.0)
        );
    }

    #[test]
    fn topic_granularity_sums_and_unknown_offsets_drop_the_sum() {
        let r = round(
            &[(("t", 0), 4), (("t", 1), 15)],
            &[(("t", 0), Some(10)), (("t", 1), Some(20))],
        );
        let (s, _) = History::default().series(&cfg("topic"), &r, 0.0, 0.01, None);
        assert_eq!(
            value(&s, schema::AGENT_KAFKA_LAG, &[("topic", "t")]),
            Some(11.0)
        );
        assert_eq!(
            value(&s, schema::AGENT_KAFKA_LAG, &[("partition", "0")]),
            None,
            "no per-partition series"
        );

        let unknown = round(&[(("t", 0), 4)], &[(("t", 0), Some(10)), (("t", 1), None)]);
        let (s, _) = History::default().series(&cfg("topic"), &unknown, 0.0, 0.01, None);
        assert_eq!(
            value(&s, schema::AGENT_KAFKA_LAG, &[("topic", "t")]),
            None,
            "never a partial sum"
        );
        assert_eq!(
            value(&s, schema::AGENT_KAFKA_STATUS, &[("status", "ERR")]),
            Some(1.0)
        );
    }

    #[test]
    fn unreadable_group_is_err_and_a_partial_error() {
        let mut r = round(&[], &[(("t", 0), Some(10))]);
        r.groups.insert(
            "bad".into(),
            GroupInfo {
                error: Some("coordinator down".into()),
                ..Default::default()
            },
        );
        let (s, err) = History::default().series(&cfg("topic"), &r, 0.0, 0.01, None);
        let err = err.expect("partial error");
        assert!(err.to_string().contains("bad: coordinator down"), "{err}");
        assert_eq!(
            value(
                &s,
                schema::AGENT_KAFKA_STATUS,
                &[("group", "bad"), ("status", "ERR")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&s, schema::AGENT_KAFKA_LAG, &[("group", "bad")]),
            None
        );
        assert_eq!(value(&s, schema::AGENT_KAFKA_ROUND_SUCCESS, &[]), Some(0.0));
    }

    #[test]
    fn rates_and_drain_across_rounds() {
        let mut h = History::default();
        let c = cfg("topic");
        // The first committed offset seen (0) has no known commit time: the rate runs from
        // the commit seen at 10 s (400) to the one at 20 s (1200).
        for (at, committed, end) in [(0.0, 0, 500), (10.0, 400, 1000)] {
            h.series(
                &c,
                &round(&[(("t", 0), committed)], &[(("t", 0), Some(end))]),
                at,
                0.01,
                None,
            );
        }
        let (s, _) = h.series(
            &c,
            &round(&[(("t", 0), 1200)], &[(("t", 0), Some(1500))]),
            20.0,
            0.01,
            None,
        );
        assert_eq!(
            value(&s, schema::AGENT_KAFKA_CONSUME_RATE, &[("topic", "t")]),
            Some(80.0)
        );
        assert_eq!(
            value(&s, schema::AGENT_KAFKA_PRODUCE_RATE, &[("topic", "t")]),
            Some(50.0)
        );
        let drain =
            value(&s, schema::AGENT_KAFKA_TIME_TO_DRAIN, &[("topic", "t")]).expect("drains");
        // Lag 300 at a net 30 msg/s.
        assert!((drain - 300.0 / 30.0).abs() < 1e-9, "{drain}");
    }
}

//! The batched lag client: one collection round costs O(brokers + coordinators) requests,
//! never O(partitions) or O(groups).
//!
//! A round (see `reference.md`, "Efficient protocol plan"):
//! 1. `Metadata` for all topics (1 request): brokers, partition leaders.
//! 2. `ListGroups` on every broker (B requests): each broker lists the groups it coordinates,
//!    so discovery also yields each group's coordinator.
//! 3. `FindCoordinator` v4+ with all explicitly named groups that discovery did not show
//!    (≤ 1 request).
//! 4. Per coordinator: one `DescribeGroups` with all its groups and one `OffsetFetch` v8+ with
//!    all its groups (2·C requests; brokers older than OffsetFetch v8 cost one per group).
//! 5. Per partition leader: one `ListOffsets` for the high watermarks and one for the log
//!    start offsets, each covering all its partitions (2·L requests).
//!
//! A partition whose leader answered NOT_LEADER / UNKNOWN_TOPIC triggers a metadata refresh
//! and one retry in the same round. Connections are reused across rounds; a failed broker is
//! retried with exponential backoff (0.5s doubling to 30s).
//!
//! Bounds: every request has `request_timeout`; the whole round (bootstrap tries, metadata,
//! every broker) has `round_timeout` ([`KafkaError::RoundTimeout`]); response frames, advertised
//! brokers, groups and partitions are capped by [`Limits`] ([`KafkaError::FrameTooLarge`],
//! [`KafkaError::TooMany`]). An advertised broker whose address is not a plain `host:port` is
//! not contacted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetFetchRequest, TopicName,
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    offset_fetch_request::OffsetFetchRequestGroup,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::auth::Credentials;
use super::conn::Connection;
use super::error::{KafkaError, check, needs_metadata_refresh};
use super::frame::FrameBudget;
use super::lag::PartitionOffsets;
use super::limits::{Cap, Limits};
use super::tls::{Tls, TlsConfig};

/// How to reach one Kafka cluster.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// A name for logs, errors and metric labels.
    pub cluster: String,
    /// `host:port` of one or more brokers.
    pub bootstrap: Vec<String>,
    /// Sent as the Kafka client id.
    pub client_id: String,
    /// Bound on connect and on every request.
    pub request_timeout: Duration,
    /// Bound on one whole collection round.
    pub round_timeout: Duration,
    /// Caps on frames, advertised brokers, groups and partitions.
    pub limits: Limits,
    /// SASL credentials (PLAIN or SCRAM), if the listener needs them.
    pub sasl: Option<Credentials>,
    /// TLS, if the listener needs it.
    pub tls: Option<TlsConfig>,
    /// Bytes of response frames this client may hold at once together with every client
    /// sharing the budget (a clone); `None`: only the per-frame cap.
    pub frame_budget: Option<FrameBudget>,
}

impl ClientConfig {
    /// A config with Tidal's defaults (client id `tidal`, 5s per request, 10s per round, the
    /// default [`Limits`]).
    pub fn new(cluster: &str, bootstrap: &[&str]) -> Self {
        Self {
            cluster: cluster.to_string(),
            bootstrap: bootstrap.iter().map(|s| s.to_string()).collect(),
            client_id: "tidal".to_string(),
            request_timeout: Duration::from_secs(5),
            round_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            sasl: None,
            tls: None,
            frame_budget: None,
        }
    }
}

/// A topic partition.
pub type Tp = (String, i32);

/// Requests sent in one round, by API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts(pub BTreeMap<&'static str, u32>);

impl RequestCounts {
    fn add(&mut self, api: &'static str) {
        *self.0.entry(api).or_default() += 1;
    }
    /// All requests of the round.
    pub fn total(&self) -> u32 {
        self.0.values().sum()
    }
}

/// One member of a consumer group, with the partitions it owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub assignment: Vec<Tp>,
}

/// A consumer group as seen in one round.
#[derive(Clone, Debug, Default)]
pub struct GroupInfo {
    pub state: String,
    pub protocol_type: String,
    pub coordinator: Option<i32>,
    pub members: Vec<Member>,
    /// Committed offsets; a partition without a commit is absent.
    pub committed: BTreeMap<Tp, i64>,
    /// Set when the group's offsets could not be read this round: its lag is unknown.
    pub error: Option<String>,
}

/// A partition's leader and offsets (None: the leader did not answer this round).
#[derive(Clone, Debug, Default)]
pub struct PartitionInfo {
    pub leader: i32,
    pub offsets: Option<PartitionOffsets>,
}

/// Everything one collection round learned.
#[derive(Debug, Default)]
pub struct Round {
    pub partitions: BTreeMap<Tp, PartitionInfo>,
    pub groups: BTreeMap<String, GroupInfo>,
    pub requests: RequestCounts,
    /// Partial failures (a broker down, a group unreadable): the affected values are absent.
    pub errors: Vec<KafkaError>,
}

/// A predicate on group ids (for example a compiled regular expression).
pub type GroupFilter = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Which groups to collect.
#[derive(Clone, Default)]
pub enum Selection {
    /// Every consumer group the brokers list.
    #[default]
    All,
    /// The listed groups that pass the filter (nothing is sent for the others).
    Matching(GroupFilter),
    /// Only these groups (found with FindCoordinator when ListGroups does not show them).
    Groups(Vec<String>),
}

impl Selection {
    /// Whether a listed group is one this selection collects.
    fn keeps(&self, group: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Matching(keep) => keep(group),
            Selection::Groups(gs) => gs.iter().any(|g| g == group),
        }
    }
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selection::All => f.write_str("All"),
            Selection::Matching(_) => f.write_str("Matching(<filter>)"),
            Selection::Groups(g) => f.debug_tuple("Groups").field(g).finish(),
        }
    }
}

/// `GROUP_ID_NOT_FOUND`: the group does not exist (it is Dead, not failing).
const GROUP_ID_NOT_FOUND: i16 = 69;

struct Backoff {
    failures: u32,
    next_try: Instant,
}

/// A client for one Kafka cluster. Not `Sync`: a sampler owns one.
pub struct Client {
    cfg: ClientConfig,
    brokers: BTreeMap<i32, String>,
    conns: HashMap<String, Connection>,
    backoff: HashMap<String, Backoff>,
    tls: Option<Tls>,
    /// The broker a request is on the wire to: if the round's deadline cancels it there, its
    /// connection is mid-frame and is dropped.
    in_flight: Option<String>,
}

impl Client {
    /// A client; nothing is connected until the first round.
    pub fn new(cfg: ClientConfig) -> Result<Self, KafkaError> {
        if cfg.bootstrap.is_empty() {
            return Err(KafkaError::NoBootstrap {
                cluster: cfg.cluster,
            });
        }
        let tls = cfg
            .tls
            .as_ref()
            .map(|t| Tls::new(&cfg.cluster, t))
            .transpose()?;
        Ok(Self {
            cfg,
            brokers: BTreeMap::new(),
            conns: HashMap::new(),
            backoff: HashMap::new(),
            tls,
            in_flight: None,
        })
    }

    /// Whether a connection to `addr` is open (for tests).
    #[cfg(test)]
    pub(crate) fn is_connected(&self, addr: &str) -> bool {
        self.conns.contains_key(addr)
    }

    /// The cluster name from the config.
    pub fn cluster(&self) -> &str {
        &self.cfg.cluster
    }

    async fn conn(&mut self, addr: &str) -> Result<&mut Connection, KafkaError> {
        if !self.conns.contains_key(addr) {
            if let Some(b) = self.backoff.get(addr)
                && Instant::now() < b.next_try
            {
                return Err(KafkaError::Connect {
                    broker: addr.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        format!("backing off after {} failed attempts", b.failures),
                    ),
                });
            }
            match Connection::connect_within(
                addr,
                &self.cfg.client_id,
                self.cfg.request_timeout,
                self.cfg.limits.max_frame_bytes,
                self.cfg.frame_budget.clone(),
                self.cfg.sasl.as_ref(),
                self.tls.as_ref(),
            )
            .await
            {
                Ok(c) => {
                    self.backoff.remove(addr);
                    self.conns.insert(addr.to_string(), c);
                }
                Err(e) => {
                    let b = self.backoff.entry(addr.to_string()).or_insert(Backoff {
                        failures: 0,
                        next_try: Instant::now(),
                    });
                    b.failures += 1;
                    let delay = Duration::from_millis(500)
                        .saturating_mul(1 << b.failures.min(6))
                        .min(Duration::from_secs(30));
                    b.next_try = Instant::now() + delay;
                    return Err(e);
                }
            }
        }
        self.conns
            .get_mut(addr)
            .ok_or_else(|| KafkaError::NoBrokerReachable {
                cluster: self.cfg.cluster.clone(),
                attempts: Vec::new(),
            })
    }

    /// Sends one request to `addr`, dropping the connection if it failed on the wire.
    async fn send<R: kafka_protocol::protocol::Request>(
        &mut self,
        addr: &str,
        req: &R,
        min_version: i16,
        counts: &mut RequestCounts,
    ) -> Result<(R::Response, i16), KafkaError> {
        self.in_flight = Some(addr.to_string());
        let res = match self.conn(addr).await {
            Ok(conn) => {
                counts.add(super::conn::api_name(R::KEY));
                conn.send(req, min_version).await
            }
            Err(e) => Err(e),
        };
        self.in_flight = None;
        if matches!(
            res,
            Err(KafkaError::Io { .. }
                | KafkaError::Timeout { .. }
                | KafkaError::Codec { .. }
                | KafkaError::FrameTooLarge { .. })
        ) {
            self.conns.remove(addr);
        }
        res
    }

    fn addr_of(&self, node: i32) -> Result<String, KafkaError> {
        self.brokers
            .get(&node)
            .cloned()
            .ok_or_else(|| KafkaError::UnknownNode {
                broker: self.cfg.bootstrap.join(","),
                node_id: node,
            })
    }

    /// Metadata for all topics from the first broker that answers; updates the broker list.
    /// Returns the partition leaders and the advertised brokers that were skipped.
    async fn metadata(
        &mut self,
        counts: &mut RequestCounts,
    ) -> Result<(BTreeMap<Tp, i32>, Vec<KafkaError>), KafkaError> {
        let mut candidates: Vec<String> = self.brokers.values().cloned().collect();
        for b in &self.cfg.bootstrap {
            if !candidates.contains(b) {
                candidates.push(b.clone());
            }
        }
        let mut attempts = Vec::new();
        for addr in candidates {
            let req = MetadataRequest::default().with_topics(None);
            match self.send(&addr, &req, 1, counts).await {
                Ok((resp, _)) => return self.read_metadata(&addr, resp),
                // Wrong credentials or TLS trust are not reachability problems: say so directly.
                Err(e @ (KafkaError::Auth { .. } | KafkaError::TlsHandshake { .. })) => {
                    return Err(e);
                }
                Err(e) => attempts.push(e),
            }
        }
        Err(KafkaError::NoBrokerReachable {
            cluster: self.cfg.cluster.clone(),
            attempts,
        })
    }

    /// Checks a Metadata response against the caps and takes its brokers and leaders.
    fn read_metadata(
        &mut self,
        addr: &str,
        resp: kafka_protocol::messages::MetadataResponse,
    ) -> Result<(BTreeMap<Tp, i32>, Vec<KafkaError>), KafkaError> {
        let limits = self.cfg.limits;
        let too_many = |cap: Cap, max: usize| KafkaError::TooMany {
            cluster: self.cfg.cluster.clone(),
            broker: addr.to_string(),
            cap,
            max,
        };
        if resp.brokers.len() > limits.max_brokers {
            return Err(too_many(Cap::Brokers, limits.max_brokers));
        }
        let partitions: usize = resp.topics.iter().map(|t| t.partitions.len()).sum();
        if partitions > limits.max_partitions {
            return Err(too_many(Cap::Partitions, limits.max_partitions));
        }
        let mut skipped = Vec::new();
        self.brokers = BTreeMap::new();
        for b in &resp.brokers {
            match advertised_addr(b.host.as_str(), b.port) {
                Some(a) => {
                    self.brokers.insert(b.node_id.0, a);
                }
                None => {
                    tracing::debug!(broker = addr, node_id = b.node_id.0, host = ?b.host.as_str(),
                        port = b.port, "advertised address skipped");
                    skipped.push(KafkaError::BadAdvertisedAddress {
                        broker: addr.to_string(),
                        node_id: b.node_id.0,
                    });
                }
            }
        }
        let mut leaders = BTreeMap::new();
        for t in &resp.topics {
            let Some(name) = t.name.as_ref() else {
                continue;
            };
            if t.error_code != 0 || t.is_internal {
                continue;
            }
            for p in &t.partitions {
                leaders.insert((name.0.to_string(), p.partition_index), p.leader_id.0);
            }
        }
        Ok((leaders, skipped))
    }

    /// One collection round, bounded by `round_timeout`. Fails when no broker answers
    /// Metadata, when a cap is passed or when the deadline passes; any other failure is
    /// recorded in [`Round::errors`] and leaves the affected values absent (never zero).
    pub async fn collect(&mut self, selection: &Selection) -> Result<Round, KafkaError> {
        let after = self.cfg.round_timeout;
        match tokio::time::timeout(after, self.collect_round(selection)).await {
            Ok(r) => r,
            Err(_) => {
                // The request cut off by the deadline left its connection mid-frame.
                if let Some(addr) = self.in_flight.take() {
                    self.conns.remove(&addr);
                }
                Err(KafkaError::RoundTimeout {
                    cluster: self.cfg.cluster.clone(),
                    after,
                })
            }
        }
    }

    async fn collect_round(&mut self, selection: &Selection) -> Result<Round, KafkaError> {
        let mut round = Round::default();
        let mut counts = RequestCounts::default();
        let (mut leaders, skipped) = self.metadata(&mut counts).await?;
        round.errors.extend(skipped);

        // 2. Discovery: ListGroups on every broker yields groups and their coordinators.
        let mut coordinator: BTreeMap<String, i32> = BTreeMap::new();
        let nodes: Vec<i32> = self.brokers.keys().copied().collect();
        for node in &nodes {
            let addr = self.addr_of(*node)?;
            match self
                .send(&addr, &ListGroupsRequest::default(), 0, &mut counts)
                .await
            {
                Ok((resp, _)) => {
                    if let Err(e) = check(&addr, "ListGroups", resp.error_code) {
                        round.errors.push(e);
                        continue;
                    }
                    for g in resp.groups {
                        // Classic consumer groups and the new (KIP-848) consumer protocol.
                        let pt = g.protocol_type.as_str();
                        let id = g.group_id.0.as_str();
                        if (pt == "consumer" || pt.is_empty()) && selection.keeps(id) {
                            coordinator.insert(id.to_string(), *node);
                        }
                    }
                    if coordinator.len() > self.cfg.limits.max_groups {
                        return Err(KafkaError::TooMany {
                            cluster: self.cfg.cluster.clone(),
                            broker: addr,
                            cap: Cap::Groups,
                            max: self.cfg.limits.max_groups,
                        });
                    }
                }
                Err(e) => round.errors.push(e),
            }
        }
        let wanted: Vec<String> = match selection {
            Selection::All => coordinator.keys().cloned().collect(),
            Selection::Matching(keep) => coordinator.keys().filter(|g| keep(g)).cloned().collect(),
            Selection::Groups(gs) => gs.clone(),
        };

        // 3. FindCoordinator (batched) for named groups that discovery did not show.
        let missing: Vec<String> = wanted
            .iter()
            .filter(|g| !coordinator.contains_key(*g))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let addr = self.addr_of(*nodes.first().unwrap_or(&-1))?;
            let req = FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(
                    missing
                        .iter()
                        .map(|g| StrBytes::from_string(g.clone()))
                        .collect(),
                );
            match self.send(&addr, &req, 4, &mut counts).await {
                Ok((resp, _)) => {
                    for c in resp.coordinators {
                        if c.error_code == 0 {
                            coordinator.insert(c.key.to_string(), c.node_id.0);
                        } else if let Err(e) = check(&addr, "FindCoordinator", c.error_code) {
                            round.errors.push(e);
                        }
                    }
                }
                Err(e) => round.errors.push(e),
            }
        }

        // 4. Per coordinator: DescribeGroups + OffsetFetch, each with all its groups.
        let mut by_coord: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for g in &wanted {
            match coordinator.get(g) {
                Some(c) => by_coord.entry(*c).or_default().push(g.clone()),
                None => {
                    round.groups.insert(
                        g.clone(),
                        GroupInfo {
                            error: Some("no coordinator found".into()),
                            ..Default::default()
                        },
                    );
                }
            }
        }
        for (node, groups) in by_coord {
            let addr = match self.addr_of(node) {
                Ok(a) => a,
                Err(e) => {
                    round.errors.push(e);
                    continue;
                }
            };
            for g in &groups {
                round.groups.insert(
                    g.clone(),
                    GroupInfo {
                        coordinator: Some(node),
                        ..Default::default()
                    },
                );
            }
            self.describe_groups(&addr, &groups, &mut round, &mut counts)
                .await;
            self.offset_fetch(&addr, &groups, &mut round, &mut counts)
                .await;
        }

        // 5. ListOffsets per leader, for every partition of every topic a group touches.
        let topics: BTreeSet<String> = round
            .groups
            .values()
            .flat_map(|g| {
                g.committed.keys().map(|(t, _)| t.clone()).chain(
                    g.members
                        .iter()
                        .flat_map(|m| m.assignment.iter().map(|(t, _)| t.clone())),
                )
            })
            .collect();
        let mut tps: Vec<Tp> = leaders
            .keys()
            .filter(|(t, _)| topics.contains(t))
            .cloned()
            .collect();
        for attempt in 0..2 {
            let stale = self
                .list_offsets(&tps, &leaders, &mut round, &mut counts)
                .await;
            if stale.is_empty() || attempt == 1 {
                break;
            }
            // Leaders moved or a topic changed: refresh once and retry those partitions.
            let (fresh, skipped) = self.metadata(&mut counts).await?;
            leaders = fresh;
            round.errors.extend(skipped);
            tps = stale
                .into_iter()
                .filter(|tp| leaders.contains_key(tp))
                .collect();
        }
        round.requests = counts;
        Ok(round)
    }

    async fn describe_groups(
        &mut self,
        addr: &str,
        groups: &[String],
        round: &mut Round,
        counts: &mut RequestCounts,
    ) {
        let req = DescribeGroupsRequest::default().with_groups(
            groups
                .iter()
                .map(|g| GroupId(StrBytes::from_string(g.clone())))
                .collect(),
        );
        let resp = match self.send(addr, &req, 0, counts).await {
            Ok((r, _)) => r,
            Err(e) => {
                round.errors.push(e);
                return;
            }
        };
        for d in resp.groups {
            let Some(info) = round.groups.get_mut(d.group_id.0.as_str()) else {
                continue;
            };
            if d.error_code == GROUP_ID_NOT_FOUND {
                // Kafka ≥ 4 (DescribeGroups v6) answers this for a group that does not exist.
                info.state = "Dead".to_string();
                continue;
            }
            if let Err(e) = check(addr, "DescribeGroups", d.error_code) {
                info.error = Some(e.to_string());
                round.errors.push(e);
                continue;
            }
            info.state = d.group_state.to_string();
            info.protocol_type = d.protocol_type.to_string();
            info.members = d
                .members
                .into_iter()
                .map(|m| Member {
                    member_id: m.member_id.to_string(),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: decode_assignment(m.member_assignment),
                })
                .collect();
        }
    }

    async fn offset_fetch(
        &mut self,
        addr: &str,
        groups: &[String],
        round: &mut Round,
        counts: &mut RequestCounts,
    ) {
        // v8+ carries many groups per request; older brokers need one request per group.
        let batched = self
            .conn(addr)
            .await
            .map(|c| c.version::<OffsetFetchRequest>(8).is_ok())
            .unwrap_or(false);
        let batches: Vec<Vec<String>> = if batched {
            vec![groups.to_vec()]
        } else {
            groups.iter().map(|g| vec![g.clone()]).collect()
        };
        for batch in batches {
            let req = if batched {
                OffsetFetchRequest::default().with_groups(
                    batch
                        .iter()
                        .map(|g| {
                            OffsetFetchRequestGroup::default()
                                .with_group_id(GroupId(StrBytes::from_string(g.clone())))
                                .with_topics(None)
                        })
                        .collect(),
                )
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(batch[0].clone())))
                    .with_topics(None)
            };
            let (resp, _) = match self
                .send(addr, &req, if batched { 8 } else { 2 }, counts)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    for g in &batch {
                        if let Some(info) = round.groups.get_mut(g) {
                            info.error = Some(e.to_string());
                        }
                    }
                    round.errors.push(e);
                    continue;
                }
            };
            if batched {
                for g in resp.groups {
                    let Some(info) = round.groups.get_mut(g.group_id.0.as_str()) else {
                        continue;
                    };
                    if g.error_code == GROUP_ID_NOT_FOUND {
                        continue; // no such group: nothing committed
                    }
                    if let Err(e) = check(addr, "OffsetFetch", g.error_code) {
                        info.error = Some(e.to_string());
                        round.errors.push(e);
                        continue;
                    }
                    for t in g.topics {
                        for p in t.partitions {
                            if p.error_code == 0 && p.committed_offset >= 0 {
                                info.committed.insert(
                                    (t.name.0.to_string(), p.partition_index),
                                    p.committed_offset,
                                );
                            }
                        }
                    }
                }
            } else if let Some(info) = round.groups.get_mut(&batch[0]) {
                if let Err(e) = check(addr, "OffsetFetch", resp.error_code) {
                    info.error = Some(e.to_string());
                    round.errors.push(e);
                    continue;
                }
                for t in resp.topics {
                    for p in t.partitions {
                        if p.error_code == 0 && p.committed_offset >= 0 {
                            info.committed.insert(
                                (t.name.0.to_string(), p.partition_index),
                                p.committed_offset,
                            );
                        }
                    }
                }
            }
        }
    }

    /// Fills log start and end offsets; returns partitions whose metadata looked stale.
    async fn list_offsets(
        &mut self,
        tps: &[Tp],
        leaders: &BTreeMap<Tp, i32>,
        round: &mut Round,
        counts: &mut RequestCounts,
    ) -> Vec<Tp> {
        let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        for tp in tps {
            let leader = leaders.get(tp).copied().unwrap_or(-1);
            round.partitions.insert(
                tp.clone(),
                PartitionInfo {
                    leader,
                    offsets: None,
                },
            );
            if leader >= 0 {
                by_leader
                    .entry(leader)
                    .or_default()
                    .entry(tp.0.clone())
                    .or_default()
                    .push(tp.1);
            }
        }
        let mut stale = Vec::new();
        for (leader, topics) in by_leader {
            let addr = match self.addr_of(leader) {
                Ok(a) => a,
                Err(e) => {
                    round.errors.push(e);
                    continue;
                }
            };
            let mut found: HashMap<Tp, [Option<i64>; 2]> = HashMap::new();
            // timestamp -1: latest (high watermark); -2: earliest (log start).
            for (slot, ts) in [(0usize, -1i64), (1, -2)] {
                let req = ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_isolation_level(0)
                    .with_topics(
                        topics
                            .iter()
                            .map(|(t, ps)| {
                                ListOffsetsTopic::default()
                                    .with_name(TopicName(StrBytes::from_string(t.clone())))
                                    .with_partitions(
                                        ps.iter()
                                            .map(|p| {
                                                ListOffsetsPartition::default()
                                                    .with_partition_index(*p)
                                                    .with_timestamp(ts)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    );
                match self.send(&addr, &req, 1, counts).await {
                    Ok((resp, _)) => {
                        for t in resp.topics {
                            for p in t.partitions {
                                let tp = (t.name.0.to_string(), p.partition_index);
                                if p.error_code != 0 {
                                    if needs_metadata_refresh(p.error_code) {
                                        stale.push(tp);
                                    } else if let Err(e) = check(&addr, "ListOffsets", p.error_code)
                                    {
                                        round.errors.push(e);
                                    }
                                    continue;
                                }
                                found.entry(tp).or_default()[slot] = Some(p.offset);
                            }
                        }
                    }
                    Err(e) => round.errors.push(e),
                }
            }
            for (tp, [end, start]) in found {
                if let (Some(log_end), Some(log_start)) = (end, start)
                    && let Some(info) = round.partitions.get_mut(&tp)
                {
                    info.offsets = Some(PartitionOffsets { log_start, log_end });
                }
            }
        }
        stale.sort();
        stale.dedup();
        stale
    }
}

/// `host:port` for an advertised broker, or None when the host is not a plain DNS name or IP
/// address (at most 253 characters of letters, digits, `.`, `-`, `_`, `:` for IPv6) or the port
/// is not 1..=65535: such a broker is never contacted, and its text never reaches a message.
pub fn advertised_addr(host: &str, port: i32) -> Option<String> {
    let ok_host = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':'));
    let port = u16::try_from(port).ok().filter(|p| *p > 0)?;
    if !ok_host {
        return None;
    }
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// Decodes a classic consumer group member's assignment (`ConsumerProtocolAssignment`,
/// prefixed by its version). Anything undecodable is an empty assignment.
pub fn decode_assignment(mut raw: Bytes) -> Vec<Tp> {
    if raw.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([raw[0], raw[1]]);
    bytes::Buf::advance(&mut raw, 2);
    // Before the decoder sizes an array by a count the member wrote (see `bounds`).
    if super::bounds::check_assignment(&raw).is_err() {
        return Vec::new();
    }
    match ConsumerProtocolAssignment::decode(&mut raw, version.clamp(0, 3)) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .flat_map(|tp| {
                let topic = tp.topic.0.to_string();
                tp.partitions.into_iter().map(move |p| (topic.clone(), p))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_bootstrap_is_a_config_error_naming_the_field() {
        let err = Client::new(ClientConfig::new("prod", &[]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("prod") && err.contains("bootstrap"), "{err}");
    }

    #[test]
    fn garbage_assignment_is_empty_not_a_panic() {
        assert!(decode_assignment(Bytes::from_static(&[0, 1, 0xff])).is_empty());
        assert!(decode_assignment(Bytes::new()).is_empty());
    }

    /// Found by fuzzing (`fuzz/`, target `kafka_decode`): a topic count of 0x53535353 made
    /// the decoder reserve ~78 GB before reading a topic (`bounds`).
    #[test]
    fn an_assignment_count_over_the_body_is_empty_not_an_abort() {
        let raw = Bytes::from_static(&[0, 3, 0x53, 0x53, 0x53, 0x53, 0x53, 0x53, 0x64]);
        assert!(decode_assignment(raw).is_empty());
    }

    #[test]
    fn assignment_round_trips() {
        use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
        use kafka_protocol::protocol::Encodable;
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&1i16.to_be_bytes());
        a.encode(&mut buf, 1).expect("encodes");
        assert_eq!(
            decode_assignment(buf.freeze()),
            vec![("orders".to_string(), 0), ("orders".to_string(), 2)]
        );
    }
}

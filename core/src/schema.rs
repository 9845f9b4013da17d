//! The metric-name schema: every series Tidal exports, named once.
//!
//! The agent and the scaler register their metrics with these names, and the dashboard and
//! alert-rule tests read them from here, so a rename cannot silently break a query.
//! Conventions (see `docs/design.md`): prefixes `tidal_agent_` / `tidal_scaler_`, counters end
//! in `_total`, base units only (`_seconds`, `_bytes`, ratios 0–1). The agent's container and
//! node series have the kubelet/cAdvisor and node_exporter semantics under Tidal's own names
//! (`tidal_agent_` and the upstream name), so a Prometheus that also scrapes the kubelet and
//! node_exporter counts nothing twice; `tidal-agent --compatible-metric-names` exports the
//! upstream names instead ([`COMPATIBLE_NAMES`]).

/// Prefix of every agent self-metric.
pub const AGENT_PREFIX: &str = "tidal_agent_";
/// Prefix of every scaler self-metric.
pub const SCALER_PREFIX: &str = "tidal_scaler_";

/// `tidal_agent_build_info{version}`: always 1.
pub const AGENT_BUILD_INFO: &str = "tidal_agent_build_info";
/// `tidal_scaler_build_info{version}`: always 1.
pub const SCALER_BUILD_INFO: &str = "tidal_scaler_build_info";

// ---- Agent: node series (node_exporter semantics; `--compatible-metric-names`: its names) ----

/// `node_cpu_seconds_total{cpu, mode}`: seconds each CPU spent in each mode (node_exporter semantics).
pub const NODE_CPU_SECONDS_TOTAL: &str = "tidal_agent_node_cpu_seconds_total";
/// `tidal_agent_node_load1`: 1-minute load average (node_exporter semantics).
pub const NODE_LOAD1: &str = "tidal_agent_node_load1";
/// `tidal_agent_node_load5`: 5-minute load average (node_exporter semantics).
pub const NODE_LOAD5: &str = "tidal_agent_node_load5";
/// `tidal_agent_node_load15`: 15-minute load average (node_exporter semantics).
pub const NODE_LOAD15: &str = "tidal_agent_node_load15";
/// `tidal_agent_node_pressure_cpu_waiting_seconds_total`: PSI cpu "some" stall time (node_exporter semantics).
pub const NODE_PRESSURE_CPU_WAITING: &str = "tidal_agent_node_pressure_cpu_waiting_seconds_total";
/// `tidal_agent_node_pressure_memory_waiting_seconds_total`: PSI memory "some" stall time.
pub const NODE_PRESSURE_MEMORY_WAITING: &str =
    "tidal_agent_node_pressure_memory_waiting_seconds_total";
/// `tidal_agent_node_pressure_memory_stalled_seconds_total`: PSI memory "full" stall time.
pub const NODE_PRESSURE_MEMORY_STALLED: &str =
    "tidal_agent_node_pressure_memory_stalled_seconds_total";
/// `tidal_agent_node_pressure_io_waiting_seconds_total`: PSI io "some" stall time.
pub const NODE_PRESSURE_IO_WAITING: &str = "tidal_agent_node_pressure_io_waiting_seconds_total";
/// `tidal_agent_node_pressure_io_stalled_seconds_total`: PSI io "full" stall time.
pub const NODE_PRESSURE_IO_STALLED: &str = "tidal_agent_node_pressure_io_stalled_seconds_total";
/// `tidal_agent_node_memory_total_bytes`: MemTotal.
pub const AGENT_NODE_MEMORY_TOTAL: &str = "tidal_agent_node_memory_total_bytes";
/// `tidal_agent_node_memory_available_bytes`: MemAvailable.
pub const AGENT_NODE_MEMORY_AVAILABLE: &str = "tidal_agent_node_memory_available_bytes";
/// `tidal_agent_node_memory_used_bytes`: MemTotal - MemAvailable.
pub const AGENT_NODE_MEMORY_USED: &str = "tidal_agent_node_memory_used_bytes";
/// `tidal_agent_node_cpu_utilization_ratio`: busy CPU time / all CPU time between two samples.
pub const AGENT_NODE_CPU_UTILIZATION: &str = "tidal_agent_node_cpu_utilization_ratio";
/// `tidal_agent_node_memory_utilization_ratio`: used / total memory.
pub const AGENT_NODE_MEMORY_UTILIZATION: &str = "tidal_agent_node_memory_utilization_ratio";

// ---- Agent: container series (kubelet/cAdvisor semantics; `--compatible-metric-names`: its names) ----

/// `tidal_agent_container_cpu_usage_seconds_total`: cumulative CPU time (kubelet `/metrics/resource`).
pub const CONTAINER_CPU_USAGE_SECONDS_TOTAL: &str = "tidal_agent_container_cpu_usage_seconds_total";
/// `tidal_agent_container_memory_working_set_bytes`: usage - inactive_file, floored at 0 (kubelet).
pub const CONTAINER_MEMORY_WORKING_SET_BYTES: &str =
    "tidal_agent_container_memory_working_set_bytes";
/// `tidal_agent_container_memory_rss_bytes`: anonymous memory, bytes (cAdvisor semantics).
pub const CONTAINER_MEMORY_RSS: &str = "tidal_agent_container_memory_rss_bytes";
/// `tidal_agent_container_memory_cache_bytes`: page cache, bytes (cAdvisor semantics).
pub const CONTAINER_MEMORY_CACHE: &str = "tidal_agent_container_memory_cache_bytes";
/// `tidal_agent_container_cpu_cfs_periods_total`: elapsed CFS enforcement periods (cAdvisor).
pub const CONTAINER_CPU_CFS_PERIODS_TOTAL: &str = "tidal_agent_container_cpu_cfs_periods_total";
/// `tidal_agent_container_cpu_cfs_throttled_periods_total`: throttled CFS periods (cAdvisor).
pub const CONTAINER_CPU_CFS_THROTTLED_PERIODS_TOTAL: &str =
    "tidal_agent_container_cpu_cfs_throttled_periods_total";
/// `tidal_agent_container_cpu_cfs_throttled_seconds_total`: total throttled time (cAdvisor).
pub const CONTAINER_CPU_CFS_THROTTLED_SECONDS_TOTAL: &str =
    "tidal_agent_container_cpu_cfs_throttled_seconds_total";
/// `tidal_agent_container_pressure_cpu_waiting_seconds_total`: PSI cpu "some" (cAdvisor semantics).
pub const CONTAINER_PRESSURE_CPU_WAITING: &str =
    "tidal_agent_container_pressure_cpu_waiting_seconds_total";
/// `tidal_agent_container_pressure_cpu_stalled_seconds_total`: PSI cpu "full" (cAdvisor semantics).
pub const CONTAINER_PRESSURE_CPU_STALLED: &str =
    "tidal_agent_container_pressure_cpu_stalled_seconds_total";
/// `tidal_agent_container_pressure_memory_waiting_seconds_total`: PSI memory "some" (cAdvisor semantics).
pub const CONTAINER_PRESSURE_MEMORY_WAITING: &str =
    "tidal_agent_container_pressure_memory_waiting_seconds_total";
/// `tidal_agent_container_pressure_memory_stalled_seconds_total`: PSI memory "full" (cAdvisor semantics).
pub const CONTAINER_PRESSURE_MEMORY_STALLED: &str =
    "tidal_agent_container_pressure_memory_stalled_seconds_total";
/// `tidal_agent_container_pressure_io_waiting_seconds_total`: PSI io "some" (cAdvisor semantics).
pub const CONTAINER_PRESSURE_IO_WAITING: &str =
    "tidal_agent_container_pressure_io_waiting_seconds_total";
/// `tidal_agent_container_pressure_io_stalled_seconds_total`: PSI io "full" (cAdvisor semantics).
pub const CONTAINER_PRESSURE_IO_STALLED: &str =
    "tidal_agent_container_pressure_io_stalled_seconds_total";

/// `tidal_agent_container_cpu_usage_cores`: CPU rate between the last two samples.
pub const AGENT_CONTAINER_CPU_USAGE_CORES: &str = "tidal_agent_container_cpu_usage_cores";
/// `tidal_agent_container_cpu_request_cores`: CPU request from the pod spec.
pub const AGENT_CONTAINER_CPU_REQUEST_CORES: &str = "tidal_agent_container_cpu_request_cores";
/// `tidal_agent_container_cpu_limit_cores`: CPU limit (pod spec, else the cgroup's CFS quota).
pub const AGENT_CONTAINER_CPU_LIMIT_CORES: &str = "tidal_agent_container_cpu_limit_cores";
/// `tidal_agent_container_memory_request_bytes`: memory request from the pod spec.
pub const AGENT_CONTAINER_MEMORY_REQUEST_BYTES: &str = "tidal_agent_container_memory_request_bytes";
/// `tidal_agent_container_memory_limit_bytes`: memory limit (pod spec, else the cgroup's).
pub const AGENT_CONTAINER_MEMORY_LIMIT_BYTES: &str = "tidal_agent_container_memory_limit_bytes";
/// `tidal_agent_container_cpu_request_utilization_ratio`: CPU rate / request (may exceed 1).
pub const AGENT_CONTAINER_CPU_REQUEST_UTILIZATION: &str =
    "tidal_agent_container_cpu_request_utilization_ratio";
/// `tidal_agent_container_cpu_limit_utilization_ratio`: CPU rate / limit.
pub const AGENT_CONTAINER_CPU_LIMIT_UTILIZATION: &str =
    "tidal_agent_container_cpu_limit_utilization_ratio";
/// `tidal_agent_container_memory_request_utilization_ratio`: working set / request.
pub const AGENT_CONTAINER_MEMORY_REQUEST_UTILIZATION: &str =
    "tidal_agent_container_memory_request_utilization_ratio";
/// `tidal_agent_container_memory_limit_utilization_ratio`: working set / limit.
pub const AGENT_CONTAINER_MEMORY_LIMIT_UTILIZATION: &str =
    "tidal_agent_container_memory_limit_utilization_ratio";

// ---- Agent: self-metrics ----

/// `tidal_agent_snapshot_age_seconds`: seconds since the sampling round whose data this
/// scrape serves started, computed at the scrape on the agent's monotonic clock (so a reader
/// needs no clock agreement: the data was sampled `age` before the response). The scaler
/// treats an agent whose age is over its bound as missing.
pub const AGENT_SNAPSHOT_AGE_SECONDS: &str = "tidal_agent_snapshot_age_seconds";
/// `tidal_agent_sampler_duration_seconds{sampler}`: how long the last run of a sampler took.
pub const AGENT_SAMPLER_DURATION_SECONDS: &str = "tidal_agent_sampler_duration_seconds";
/// `tidal_agent_sampler_success{sampler}`: 1 if the last run of a sampler succeeded, else 0.
pub const AGENT_SAMPLER_SUCCESS: &str = "tidal_agent_sampler_success";
/// `tidal_agent_sample_errors_total{sampler, reason}`: errors met while sampling.
pub const AGENT_SAMPLE_ERRORS_TOTAL: &str = "tidal_agent_sample_errors_total";
/// `tidal_agent_pod_metadata_synced`: 1 once the pod watch has listed this node's pods.
pub const AGENT_POD_METADATA_SYNCED: &str = "tidal_agent_pod_metadata_synced";

// ---- Agent: Kafka consumer lag (sampler `kafka_lag`) ----

/// `tidal_agent_kafka_consumergroup_lag{cluster, group, topic[, partition]}`: messages behind
/// the high watermark (`max(0, log_end - committed)`; uncommitted partitions per the reset policy).
pub const AGENT_KAFKA_LAG: &str = "tidal_agent_kafka_consumergroup_lag";
/// `tidal_agent_kafka_consumergroup_lag_seconds{cluster, group, topic[, partition]}`: time lag,
/// interpolated from the log end's `(offset, time)` table (the max over partitions per topic).
pub const AGENT_KAFKA_LAG_SECONDS: &str = "tidal_agent_kafka_consumergroup_lag_seconds";
/// `tidal_agent_kafka_consumergroup_partitions{cluster, group, topic}`: partitions counted.
pub const AGENT_KAFKA_PARTITIONS: &str = "tidal_agent_kafka_consumergroup_partitions";
/// `tidal_agent_kafka_consumergroup_partitions_with_lag{cluster, group, topic}`.
pub const AGENT_KAFKA_PARTITIONS_WITH_LAG: &str =
    "tidal_agent_kafka_consumergroup_partitions_with_lag";
/// `tidal_agent_kafka_consumergroup_status{cluster, group, status}`: 1 for the group's current
/// Burrow-style status (OK, WARN, REWIND, STALL, STOP, ERR), 0 for the others.
pub const AGENT_KAFKA_STATUS: &str = "tidal_agent_kafka_consumergroup_status";
/// `tidal_agent_kafka_consumergroup_members{cluster, group}`: live members.
pub const AGENT_KAFKA_MEMBERS: &str = "tidal_agent_kafka_consumergroup_members";
/// `tidal_agent_kafka_consumergroup_consume_rate{cluster, group, topic}`: messages per second.
pub const AGENT_KAFKA_CONSUME_RATE: &str = "tidal_agent_kafka_consumergroup_consume_rate";
/// `tidal_agent_kafka_topic_produce_rate{cluster, topic}`: messages per second into the topic.
pub const AGENT_KAFKA_PRODUCE_RATE: &str = "tidal_agent_kafka_topic_produce_rate";
/// `tidal_agent_kafka_consumergroup_time_to_drain_seconds{cluster, group, topic}`:
/// `lag / (consume_rate - produce_rate)`; absent when the group does not catch up.
pub const AGENT_KAFKA_TIME_TO_DRAIN: &str = "tidal_agent_kafka_consumergroup_time_to_drain_seconds";
/// `tidal_agent_kafka_round_requests{cluster}`: requests the last collection round sent.
pub const AGENT_KAFKA_ROUND_REQUESTS: &str = "tidal_agent_kafka_round_requests";
/// `tidal_agent_kafka_round_duration_seconds{cluster}`: how long the last round took.
pub const AGENT_KAFKA_ROUND_DURATION: &str = "tidal_agent_kafka_round_duration_seconds";
/// `tidal_agent_kafka_round_success{cluster}`: 1 if the last round read every group.
pub const AGENT_KAFKA_ROUND_SUCCESS: &str = "tidal_agent_kafka_round_success";

/// `tidal_agent_kafka_attribution_leader{cluster}`: 1 if this agent holds the election Lease
/// (exports unowned partitions and group-level series) under `--attribute-to-node`.
pub const AGENT_KAFKA_ATTRIBUTION_LEADER: &str = "tidal_agent_kafka_attribution_leader";

// ---- Scaler self-metrics (labels namespace, policy, metric are bounded by the policies) ----

/// `tidal_scaler_desired_replicas{namespace,policy}`: what the last decision asked for.
pub const SCALER_DESIRED_REPLICAS: &str = "tidal_scaler_desired_replicas";
/// `tidal_scaler_current_replicas{namespace,policy}`: the target's `spec.replicas` when read.
pub const SCALER_CURRENT_REPLICAS: &str = "tidal_scaler_current_replicas";
/// `tidal_scaler_metric_value{namespace,policy,metric}`: the metric's current value (base
/// units; utilization metrics as a ratio of the request).
pub const SCALER_METRIC_VALUE: &str = "tidal_scaler_metric_value";
/// `tidal_scaler_metric_target{namespace,policy,metric}`: its target, same units.
pub const SCALER_METRIC_TARGET: &str = "tidal_scaler_metric_target";
/// `tidal_scaler_decision_duration_seconds`: gathering-free engine time per policy.
pub const SCALER_DECISION_DURATION: &str = "tidal_scaler_decision_duration_seconds";
/// `tidal_scaler_actuation_duration_seconds`: time of one scale write (with retries).
pub const SCALER_ACTUATION_DURATION: &str = "tidal_scaler_actuation_duration_seconds";
/// `tidal_scaler_cycle_duration_seconds`: one controller cycle over every due policy.
pub const SCALER_CYCLE_DURATION: &str = "tidal_scaler_cycle_duration_seconds";
/// `tidal_scaler_errors_total{reason}`: errors by fixed reason.
pub const SCALER_ERRORS_TOTAL: &str = "tidal_scaler_errors_total";
/// `tidal_scaler_scale_events_total{namespace,policy,direction}`: applied replica changes.
pub const SCALER_SCALE_EVENTS_TOTAL: &str = "tidal_scaler_scale_events_total";
/// `tidal_scaler_api_requests_total{verb}`: requests this scaler sent to the API server
/// (watches excluded: they are long-lived).
pub const SCALER_API_REQUESTS_TOTAL: &str = "tidal_scaler_api_requests_total";
/// `tidal_scaler_leader`: 1 while this replica holds the Lease (only the leader writes).
pub const SCALER_LEADER: &str = "tidal_scaler_leader";
/// `tidal_scaler_policies{state}`: policies known, by state (`active`, `invalid`, `dry_run`).
pub const SCALER_POLICIES: &str = "tidal_scaler_policies";
/// `tidal_scaler_condition{namespace,policy,condition}`: 1 while the policy's status condition
/// (`AbleToScale`, `ScalingActive`, `ScalingLimited`, `Ready`) is True, else 0.
pub const SCALER_CONDITION: &str = "tidal_scaler_condition";
/// `tidal_scaler_status_queue`: ScalingPolicy statuses waiting to be written (at most one per
/// policy; refreshes are rate-limited, so a steady non-zero value with many policies is
/// expected, a growing one is not).
pub const SCALER_STATUS_QUEUE: &str = "tidal_scaler_status_queue";
/// `tidal_scaler_policy_decisions_total{namespace,policy,outcome}`: evaluations of a policy by
/// outcome (`scaled_up`, `scaled_down`, `unchanged`, `not_applied`, `failed`, `held`); past
/// `--max-policy-series` policies, counted under `policy="_overflow"`.
pub const SCALER_POLICY_DECISIONS_TOTAL: &str = "tidal_scaler_policy_decisions_total";
/// `tidal_scaler_policy_errors_total{namespace,policy,reason}`: failed evaluations of a
/// policy by condition reason (a fixed list, else `Other`); bounded like the decisions.
pub const SCALER_POLICY_ERRORS_TOTAL: &str = "tidal_scaler_policy_errors_total";

/// Each agent series that has a kubelet/cAdvisor or node_exporter equivalent, with that
/// equivalent's name: what `tidal-agent --compatible-metric-names` exports instead of Tidal's.
/// Same semantics and labels either way; only the name changes.
pub const COMPATIBLE_NAMES: &[(&str, &str)] = &[
    (NODE_CPU_SECONDS_TOTAL, "node_cpu_seconds_total"),
    (NODE_LOAD1, "node_load1"),
    (NODE_LOAD5, "node_load5"),
    (NODE_LOAD15, "node_load15"),
    (
        NODE_PRESSURE_CPU_WAITING,
        "node_pressure_cpu_waiting_seconds_total",
    ),
    (
        NODE_PRESSURE_MEMORY_WAITING,
        "node_pressure_memory_waiting_seconds_total",
    ),
    (
        NODE_PRESSURE_MEMORY_STALLED,
        "node_pressure_memory_stalled_seconds_total",
    ),
    (
        NODE_PRESSURE_IO_WAITING,
        "node_pressure_io_waiting_seconds_total",
    ),
    (
        NODE_PRESSURE_IO_STALLED,
        "node_pressure_io_stalled_seconds_total",
    ),
    (
        CONTAINER_CPU_USAGE_SECONDS_TOTAL,
        "container_cpu_usage_seconds_total",
    ),
    (
        CONTAINER_MEMORY_WORKING_SET_BYTES,
        "container_memory_working_set_bytes",
    ),
    (CONTAINER_MEMORY_RSS, "container_memory_rss"),
    (CONTAINER_MEMORY_CACHE, "container_memory_cache"),
    (
        CONTAINER_CPU_CFS_PERIODS_TOTAL,
        "container_cpu_cfs_periods_total",
    ),
    (
        CONTAINER_CPU_CFS_THROTTLED_PERIODS_TOTAL,
        "container_cpu_cfs_throttled_periods_total",
    ),
    (
        CONTAINER_CPU_CFS_THROTTLED_SECONDS_TOTAL,
        "container_cpu_cfs_throttled_seconds_total",
    ),
    (
        CONTAINER_PRESSURE_CPU_WAITING,
        "container_pressure_cpu_waiting_seconds_total",
    ),
    (
        CONTAINER_PRESSURE_CPU_STALLED,
        "container_pressure_cpu_stalled_seconds_total",
    ),
    (
        CONTAINER_PRESSURE_MEMORY_WAITING,
        "container_pressure_memory_waiting_seconds_total",
    ),
    (
        CONTAINER_PRESSURE_MEMORY_STALLED,
        "container_pressure_memory_stalled_seconds_total",
    ),
    (
        CONTAINER_PRESSURE_IO_WAITING,
        "container_pressure_io_waiting_seconds_total",
    ),
    (
        CONTAINER_PRESSURE_IO_STALLED,
        "container_pressure_io_stalled_seconds_total",
    ),
];

/// The kubelet/cAdvisor or node_exporter name of `name` ([`COMPATIBLE_NAMES`]), or `name`
/// itself when it has none.
pub fn compatible_name(name: &'static str) -> &'static str {
    COMPATIBLE_NAMES
        .iter()
        .find(|(tidal, _)| *tidal == name)
        .map_or(name, |(_, upstream)| *upstream)
}

/// Tidal's name of a kubelet/cAdvisor or node_exporter `name` the agent exports under
/// `--compatible-metric-names`, if it is one.
pub fn tidal_name(name: &str) -> Option<&'static str> {
    COMPATIBLE_NAMES
        .iter()
        .find(|(_, upstream)| *upstream == name)
        .map(|(tidal, _)| *tidal)
}

/// Every name in the schema, for tests that check naming rules.
pub const ALL: &[&str] = &[
    AGENT_BUILD_INFO,
    AGENT_SNAPSHOT_AGE_SECONDS,
    SCALER_BUILD_INFO,
    NODE_CPU_SECONDS_TOTAL,
    NODE_LOAD1,
    NODE_LOAD5,
    NODE_LOAD15,
    NODE_PRESSURE_CPU_WAITING,
    NODE_PRESSURE_MEMORY_WAITING,
    NODE_PRESSURE_MEMORY_STALLED,
    NODE_PRESSURE_IO_WAITING,
    NODE_PRESSURE_IO_STALLED,
    AGENT_NODE_MEMORY_TOTAL,
    AGENT_NODE_MEMORY_AVAILABLE,
    AGENT_NODE_MEMORY_USED,
    AGENT_NODE_CPU_UTILIZATION,
    AGENT_NODE_MEMORY_UTILIZATION,
    CONTAINER_CPU_USAGE_SECONDS_TOTAL,
    CONTAINER_MEMORY_WORKING_SET_BYTES,
    CONTAINER_MEMORY_RSS,
    CONTAINER_MEMORY_CACHE,
    CONTAINER_CPU_CFS_PERIODS_TOTAL,
    CONTAINER_CPU_CFS_THROTTLED_PERIODS_TOTAL,
    CONTAINER_CPU_CFS_THROTTLED_SECONDS_TOTAL,
    CONTAINER_PRESSURE_CPU_WAITING,
    CONTAINER_PRESSURE_CPU_STALLED,
    CONTAINER_PRESSURE_MEMORY_WAITING,
    CONTAINER_PRESSURE_MEMORY_STALLED,
    CONTAINER_PRESSURE_IO_WAITING,
    CONTAINER_PRESSURE_IO_STALLED,
    AGENT_CONTAINER_CPU_USAGE_CORES,
    AGENT_CONTAINER_CPU_REQUEST_CORES,
    AGENT_CONTAINER_CPU_LIMIT_CORES,
    AGENT_CONTAINER_MEMORY_REQUEST_BYTES,
    AGENT_CONTAINER_MEMORY_LIMIT_BYTES,
    AGENT_CONTAINER_CPU_REQUEST_UTILIZATION,
    AGENT_CONTAINER_CPU_LIMIT_UTILIZATION,
    AGENT_CONTAINER_MEMORY_REQUEST_UTILIZATION,
    AGENT_CONTAINER_MEMORY_LIMIT_UTILIZATION,
    AGENT_SAMPLER_DURATION_SECONDS,
    AGENT_SAMPLER_SUCCESS,
    AGENT_SAMPLE_ERRORS_TOTAL,
    AGENT_POD_METADATA_SYNCED,
    AGENT_KAFKA_LAG,
    AGENT_KAFKA_LAG_SECONDS,
    AGENT_KAFKA_PARTITIONS,
    AGENT_KAFKA_PARTITIONS_WITH_LAG,
    AGENT_KAFKA_STATUS,
    AGENT_KAFKA_MEMBERS,
    AGENT_KAFKA_CONSUME_RATE,
    AGENT_KAFKA_PRODUCE_RATE,
    AGENT_KAFKA_TIME_TO_DRAIN,
    AGENT_KAFKA_ROUND_REQUESTS,
    AGENT_KAFKA_ROUND_DURATION,
    AGENT_KAFKA_ROUND_SUCCESS,
    AGENT_KAFKA_ATTRIBUTION_LEADER,
    SCALER_DESIRED_REPLICAS,
    SCALER_CURRENT_REPLICAS,
    SCALER_METRIC_VALUE,
    SCALER_METRIC_TARGET,
    SCALER_DECISION_DURATION,
    SCALER_ACTUATION_DURATION,
    SCALER_CYCLE_DURATION,
    SCALER_ERRORS_TOTAL,
    SCALER_SCALE_EVENTS_TOTAL,
    SCALER_API_REQUESTS_TOTAL,
    SCALER_LEADER,
    SCALER_POLICIES,
    SCALER_CONDITION,
    SCALER_STATUS_QUEUE,
    SCALER_POLICY_DECISIONS_TOTAL,
    SCALER_POLICY_ERRORS_TOTAL,
];

/// Checks a metric name against the project's naming rules. Returns the broken rule.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if !(name.starts_with(AGENT_PREFIX) || name.starts_with(SCALER_PREFIX)) {
        return Err("name must start with tidal_agent_ or tidal_scaler_");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("name must be lower snake case");
    }
    if name.ends_with("_percent") || name.ends_with("_milliseconds") || name.ends_with("_kb") {
        return Err("name must use base units (ratios, _seconds, _bytes)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_name_follows_the_rules() {
        for name in ALL {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn schema_names_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for name in ALL {
            assert!(seen.insert(*name), "{name} is listed twice");
        }
    }

    /// No default name is one the kubelet, cAdvisor or node_exporter export, and every
    /// compatible name is one of theirs, mapped both ways.
    #[test]
    fn default_names_collide_with_nothing_and_compatible_names_map_back() {
        for (tidal, upstream) in COMPATIBLE_NAMES {
            assert!(ALL.contains(tidal), "{tidal} is not in ALL");
            assert!(tidal.starts_with(AGENT_PREFIX), "{tidal}");
            assert!(
                upstream.starts_with("container_") || upstream.starts_with("node_"),
                "{upstream}"
            );
            assert_eq!(compatible_name(tidal), *upstream);
            assert_eq!(tidal_name(upstream), Some(*tidal));
        }
        for name in ALL {
            assert!(
                !(name.starts_with("container_") || name.starts_with("node_")),
                "{name} collides with a cAdvisor or node_exporter name"
            );
        }
        assert_eq!(compatible_name(AGENT_BUILD_INFO), AGENT_BUILD_INFO);
        assert_eq!(tidal_name("tidal_agent_build_info"), None);
    }

    #[test]
    fn rules_reject_bad_names() {
        assert!(check_name("agent_cpu").is_err());
        assert!(check_name("tidal_agent_CPU").is_err());
        assert!(check_name("tidal_agent_latency_milliseconds").is_err());
        assert!(check_name("tidal_agent_cpu_percent").is_err());
    }
}

//! Consumer-lag arithmetic: pure functions over offsets, no I/O.
//!
//! Per partition: `lag = max(0, log_end - committed)`, with `log_end` the high watermark
//! (read-uncommitted, as kminion and KEDA read it). A partition with no committed offset follows
//! KEDA's `offsetResetPolicy` (kedacore/keda `pkg/scalers/kafka_scaler.go`, `getLagForPartition`):
//! - `latest`: lag 1 (the group is active but has nothing to catch up on yet);
//! - `earliest`: everything still in the log, counted from the **log start offset**, not from 0,
//!   so messages deleted by retention do not count (KEDA counts `log_end`: keda#7936);
//! - `zero`: 0 (KEDA's `scaleToZeroOnInvalidOffset`).
//!
//! A partition whose end offset is unknown has **no** lag value (never 0): callers drop it.

use std::collections::BTreeMap;

/// What a missing committed offset counts as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResetPolicy {
    /// KEDA's default: lag 1.
    #[default]
    Latest,
    /// Everything between the log start and the log end.
    Earliest,
    /// Lag 0 (KEDA `scaleToZeroOnInvalidOffset=true`).
    Zero,
}

/// Offsets of one partition as the brokers reported them in one round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Earliest offset still in the log (ListOffsets timestamp -2).
    pub log_start: i64,
    /// High watermark (ListOffsets timestamp -1, read-uncommitted).
    pub log_end: i64,
}

/// The lag of one partition, or `None` when the end offset is unknown.
pub fn partition_lag(
    committed: Option<i64>,
    offsets: Option<PartitionOffsets>,
    policy: ResetPolicy,
) -> Option<u64> {
    let o = offsets?;
    let lag = match committed {
        Some(c) if c >= 0 => o.log_end.saturating_sub(c),
        _ => match policy {
            ResetPolicy::Latest => 1,
            ResetPolicy::Earliest => o.log_end.saturating_sub(o.log_start),
            ResetPolicy::Zero => 0,
        },
    };
    Some(u64::try_from(lag).unwrap_or(0))
}

/// Lag summed over a set of partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LagSum {
    /// Sum of the known partition lags.
    pub total: u64,
    /// Partitions with lag > 0.
    pub partitions_with_lag: u32,
    /// Partitions counted (known end offset).
    pub partitions: u32,
    /// Partitions left out because their end offset was unknown.
    pub unknown: u32,
}

impl LagSum {
    /// Adds one partition's lag (`None`: unknown).
    pub fn add(&mut self, lag: Option<u64>) {
        match lag {
            Some(l) => {
                self.total = self.total.saturating_add(l);
                self.partitions += 1;
                if l > 0 {
                    self.partitions_with_lag += 1;
                }
            }
            None => self.unknown += 1,
        }
    }

    /// True when every partition's lag is known: only then may a caller act on `total`
    /// (for example, scale to zero).
    pub fn complete(&self) -> bool {
        self.unknown == 0
    }
}

/// Per-topic sums of one group's lag.
pub fn lag_by_topic<'a>(
    partitions: impl IntoIterator<Item = (&'a str, Option<u64>)>,
) -> BTreeMap<&'a str, LagSum> {
    let mut out: BTreeMap<&str, LagSum> = BTreeMap::new();
    for (topic, lag) in partitions {
        out.entry(topic).or_default().add(lag);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const O: PartitionOffsets = PartitionOffsets {
        log_start: 100,
        log_end: 250,
    };

    #[test]
    fn committed_partitions() {
        assert_eq!(
            partition_lag(Some(200), Some(O), ResetPolicy::Latest),
            Some(50)
        );
        assert_eq!(
            partition_lag(Some(250), Some(O), ResetPolicy::Latest),
            Some(0)
        );
        // A committed offset past the high watermark (e.g. after a topic was truncated) is 0, never negative.
        assert_eq!(
            partition_lag(Some(300), Some(O), ResetPolicy::Latest),
            Some(0)
        );
        // Committed below log start (retention deleted the backlog): still end - committed, as kminion and KEDA.
        assert_eq!(
            partition_lag(Some(10), Some(O), ResetPolicy::Earliest),
            Some(240)
        );
    }

    #[test]
    fn uncommitted_partitions_follow_the_reset_policy() {
        // KEDA: latest -> 1; earliest -> whole log (Tidal: from log start, keda#7936); zero -> 0.
        assert_eq!(partition_lag(None, Some(O), ResetPolicy::Latest), Some(1));
        assert_eq!(
            partition_lag(None, Some(O), ResetPolicy::Earliest),
            Some(150)
        );
        assert_eq!(partition_lag(None, Some(O), ResetPolicy::Zero), Some(0));
        // Kafka reports "no offset" as -1.
        assert_eq!(
            partition_lag(Some(-1), Some(O), ResetPolicy::Earliest),
            Some(150)
        );
    }

    #[test]
    fn unknown_end_offset_is_unknown_lag_never_zero() {
        assert_eq!(partition_lag(Some(5), None, ResetPolicy::Zero), None);
        let mut sum = LagSum::default();
        sum.add(Some(3));
        sum.add(None);
        assert_eq!(sum.total, 3);
        assert!(!sum.complete());
    }

    #[test]
    fn sums_per_topic() {
        let by = lag_by_topic([
            ("a", Some(5)),
            ("a", Some(0)),
            ("b", Some(7)),
            ("a", Some(2)),
        ]);
        assert_eq!(
            by["a"],
            LagSum {
                total: 7,
                partitions_with_lag: 2,
                partitions: 3,
                unknown: 0
            }
        );
        assert_eq!(by["b"].total, 7);
    }
}

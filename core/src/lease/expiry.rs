//! When another holder's lease has expired, judged on this candidate's own monotonic clock.
//!
//! A candidate never compares its clock with the holder's `renewTime` (written with the
//! holder's wall clock, which may be skewed or stepped). As client-go's leaderelection does,
//! it remembers the holder's *record* (holderIdentity, renewTime, resourceVersion) and the
//! instant, on its own monotonic clock, at which it saw that record change last. The lease
//! has expired once the record has not changed for the lease's duration since then. The
//! wall-clock values in the record are only compared for equality, never for order.
//!
//! A candidate that sees a record for the first time (it just started) counts from that
//! moment: it waits a whole duration before taking over, however old `renewTime` looks.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;
use tokio::time::Instant;

/// What identifies one write of the holder: any change means the holder is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    holder: String,
    /// `renewTime` as written (compared for equality only).
    renew_time: Option<String>,
    resource_version: Option<String>,
}

impl Record {
    pub(crate) fn of(spec: &LeaseSpec, resource_version: Option<&str>) -> Self {
        Self {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            renew_time: spec
                .renew_time
                .as_ref()
                .map(|t| t.0.as_microsecond().to_string()),
            resource_version: resource_version.map(str::to_string),
        }
    }
}

/// The record last seen and when (on this candidate's monotonic clock) it was first seen
/// with its current content.
#[derive(Debug, Default, Clone)]
pub(crate) struct Observer {
    last: Option<(Record, Instant)>,
}

/// Whose lease it is, as this candidate judges it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nobody holds it (no holder, or an empty one).
    Free,
    /// This candidate holds it: it may renew.
    Own,
    /// Another holder's lease is valid until this instant (unless its record changes).
    Held { until: Instant },
    /// Another holder's record has not changed for the lease's duration.
    Expired,
}

impl Observer {
    /// Notes `record` as seen at `now`; returns the instant it was first seen unchanged.
    fn observe(&mut self, record: Record, now: Instant) -> Instant {
        match &self.last {
            Some((last, since)) if *last == record => *since,
            _ => {
                self.last = Some((record, now));
                now
            }
        }
    }

    /// Judges the Lease as read at `now` (after the read returned): `spec` and its
    /// `resource_version`. `fallback` is the duration when the Lease has none. Pure except
    /// for remembering the record.
    pub(crate) fn judge(
        &mut self,
        spec: &LeaseSpec,
        resource_version: Option<&str>,
        identity: &str,
        fallback: Duration,
        now: Instant,
    ) -> Verdict {
        let record = Record::of(spec, resource_version);
        let holder = record.holder.clone();
        let since = self.observe(record, now);
        if holder.is_empty() {
            return Verdict::Free;
        }
        if holder == identity {
            return Verdict::Own;
        }
        let duration = match spec.lease_duration_seconds {
            Some(s) if s > 0 => Duration::from_secs(u64::from(s.unsigned_abs())),
            _ => fallback,
        };
        let until = since + duration;
        if now >= until {
            Verdict::Expired
        } else {
            Verdict::Held { until }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    const D: Duration = Duration::from_secs(3);

    fn held(by: &str, renewed_ms: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.to_string()),
            lease_duration_seconds: Some(3),
            renew_time: Some(MicroTime(
                Timestamp::from_millisecond(renewed_ms).unwrap_or(Timestamp::UNIX_EPOCH),
            )),
            ..Default::default()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A record that stops changing expires exactly one duration after it was last seen
    /// changing, not a moment before.
    #[test]
    fn a_record_that_stops_changing_expires_one_duration_after_its_last_change() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        let lease = held("a", 10_000);
        assert_eq!(
            o.judge(&lease, Some("1"), "b", D, t0),
            Verdict::Held { until: t0 + D }
        );
        // Renewals: every change restarts the count.
        let renewed = held("a", 11_000);
        let t1 = t0 + ms(1_000);
        assert_eq!(
            o.judge(&renewed, Some("2"), "b", D, t1),
            Verdict::Held { until: t1 + D }
        );
        // Then silence: the same record keeps being read.
        assert_eq!(
            o.judge(&renewed, Some("2"), "b", D, t1 + ms(2_999)),
            Verdict::Held { until: t1 + D }
        );
        assert_eq!(
            o.judge(&renewed, Some("2"), "b", D, t1 + D),
            Verdict::Expired
        );
        assert_eq!(
            o.judge(&renewed, Some("2"), "b", D, t1 + ms(60_000)),
            Verdict::Expired
        );
    }

    /// The holder's renewTime is never compared with this candidate's clock: far in the past
    /// (the holder's clock is behind, or ours stepped forward) or in the future (ahead), the
    /// verdicts at the same monotonic instants are the same.
    #[test]
    fn skewed_renew_times_do_not_change_the_outcome() {
        let now_ms = Timestamp::now().as_millisecond();
        let t0 = Instant::now();
        let verdicts = |skew_ms: i64| {
            let mut o = Observer::default();
            let at = |i: u64| t0 + ms(i * 500);
            let mut out = Vec::new();
            // Renewed at 0, 1 and 2 s, then silent until 8 s.
            for i in 0..=16u64 {
                let renewed = (i.min(4) / 2) as i64 * 1_000;
                let lease = held("a", now_ms + skew_ms + renewed);
                let rv = format!("{}", renewed);
                out.push(o.judge(&lease, Some(&rv), "b", D, at(i)));
            }
            out
        };
        let reference = verdicts(0);
        assert_eq!(
            reference.last(),
            Some(&Verdict::Expired),
            "expired in the end"
        );
        // Last change seen at 2 s: held until 5 s, expired from then on.
        assert_eq!(
            reference[9],
            Verdict::Held {
                until: t0 + ms(5_000)
            }
        );
        assert_eq!(reference[10], Verdict::Expired);
        for skew in [-3_600_000, -10_000, -3_001, 3_001, 10_000, 3_600_000] {
            assert_eq!(verdicts(skew), reference, "renewTime skewed by {skew} ms");
        }
    }

    /// A candidate that just started waits a whole duration, however old renewTime looks.
    #[test]
    fn a_first_sight_counts_from_now_even_for_an_ancient_renew_time() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        let ancient = held("a", 0);
        assert_eq!(
            o.judge(&ancient, Some("7"), "b", D, t0),
            Verdict::Held { until: t0 + D }
        );
    }

    /// A change of holder, or of the resourceVersion alone, is a change.
    #[test]
    fn any_part_of_the_record_changing_restarts_the_count() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        o.judge(&held("a", 1_000), Some("1"), "c", D, t0);
        let t1 = t0 + ms(2_000);
        assert_eq!(
            o.judge(&held("b", 1_000), Some("1"), "c", D, t1),
            Verdict::Held { until: t1 + D },
            "new holder"
        );
        let t2 = t1 + ms(2_000);
        assert_eq!(
            o.judge(&held("b", 1_000), Some("2"), "c", D, t2),
            Verdict::Held { until: t2 + D },
            "new resourceVersion"
        );
    }

    #[test]
    fn own_and_free_leases_and_the_lease_duration() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        assert_eq!(o.judge(&held("b", 0), Some("1"), "b", D, t0), Verdict::Own);
        assert_eq!(
            o.judge(&LeaseSpec::default(), Some("2"), "b", D, t0),
            Verdict::Free
        );
        assert_eq!(o.judge(&held("", 0), Some("3"), "b", D, t0), Verdict::Free);
        // The Lease's own duration counts, not this candidate's.
        let long = LeaseSpec {
            lease_duration_seconds: Some(15),
            ..held("a", 0)
        };
        assert_eq!(
            o.judge(&long, Some("4"), "b", D, t0),
            Verdict::Held {
                until: t0 + Duration::from_secs(15)
            }
        );
        // Without one, the candidate's.
        let none = LeaseSpec {
            lease_duration_seconds: None,
            ..held("a", 0)
        };
        assert_eq!(
            o.judge(&none, Some("5"), "b", D, t0),
            Verdict::Held { until: t0 + D }
        );
    }
}

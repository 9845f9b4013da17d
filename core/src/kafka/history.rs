//! Per-partition history across collection rounds: Burrow-style status, time lag, consume and
//! produce rates, and time to drain. Pure: the caller passes the time of each round.
//!
//! **Status** (anchor: linkedin/Burrow `core/internal/evaluator`, window of 10 commits). Only a
//! partition that has lag now can be unhealthy (Burrow's `currentLag > 0` gate: an idle
//! consumer that stops committing because there is nothing to read is fine). Then, in order:
//! - `Stop`: the committed offset moved, then stood still for longer than the commit window
//!   had been moving (`now - last_commit > last_commit - first_commit`);
//! - `Rewind`: a committed offset went backwards inside the window;
//! - `Ok`: lag was zero at some point in the window;
//! - `Stall`: the committed offset did not move across a whole window of rounds, while lag exists;
//! - `Warn`: lag never decreased across the window (and grew overall);
//! - otherwise `Ok`.
//!
//! `Err` is Tidal's status for a partition or group whose lag could not be read this round.
//!
//! **Time lag** (anchor: kafka-lag-exporter's interpolation table): up to 60 `(log_end, time)`
//! points per partition; the time lag of committed offset `c` is `now - t(c)`, where `t(c)` is
//! the time the log end was `c`, interpolated linearly between the two points around `c`
//! (extrapolated from the oldest and newest points when `c` is older than the table). A caught-up
//! consumer has time lag 0; a table with no progress gives no estimate (never a made-up 0).
//!
//! **Drain**: `time_to_drain = lag / (consume_rate - produce_rate)` when the consumer is faster
//! than the producers; `None` (never drains at the current rates) otherwise.

use std::collections::VecDeque;

/// Commits kept per partition for the status (Burrow's default window).
pub const STATUS_WINDOW: usize = 10;
/// Commit intervals (the cadence) past which [`PartitionHistory::consume_rate`] no longer holds
/// its rate through a quiet spell, and a gap between commits is a spell with nothing consumed.
pub const QUIET_INTERVALS: f64 = 2.0;
/// The averaging window of [`PartitionHistory::commit_interval_lag`] while a partition's
/// commit cadence is unknown: `auto.commit.interval.ms`'s default in the Java client and
/// librdkafka.
pub const DEFAULT_COMMIT_INTERVAL_SECONDS: f64 = 5.0;
/// Points kept per partition for time lag (kafka-lag-exporter's default).
pub const TIME_TABLE_POINTS: usize = 60;

/// Health of a partition or group, worst first when compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Ok,
    Warn,
    Rewind,
    Stall,
    Stop,
    Err,
}

impl Status {
    /// Burrow's names, used as a bounded metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Rewind => "REWIND",
            Status::Stall => "STALL",
            Status::Stop => "STOP",
            Status::Err => "ERR",
        }
    }
}

/// A change of the committed offset (a commit that moved it), with the round's time.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Commit {
    at: f64,
    offset: i64,
    /// Seen to change at `at`: false for the first offset seen (after construction, or after a
    /// round without one), which was committed at some earlier time that OffsetFetch does not
    /// tell.
    seen_to_change: bool,
}

/// The history of one partition of one group.
#[derive(Clone, Debug, Default)]
pub struct PartitionHistory {
    /// The last [`STATUS_WINDOW`] changes of the committed offset (Burrow's commit window).
    commits: VecDeque<Commit>,
    /// The lag of the last [`STATUS_WINDOW`] rounds that saw a committed offset.
    lags: VecDeque<(f64, i64)>,
    /// `(log_end, time)`, times strictly increasing, offsets non-decreasing.
    table: VecDeque<(i64, f64)>,
    /// `(time, log_end)` of the last [`STATUS_WINDOW`] rounds, for a recent produce rate (the
    /// table only gains a point when the end moves, so it cannot tell that producers stopped).
    ends: VecDeque<(f64, i64)>,
    /// The last round saw a committed offset.
    committed_last_round: bool,
}

impl PartitionHistory {
    /// Records one round at time `at` (seconds): the log end offset and the committed offset
    /// (None when the group has not committed on this partition).
    pub fn observe(&mut self, at: f64, log_end: i64, committed: Option<i64>) {
        // A round at or before the last one adds nothing: two queries of one group in one
        // round (or a clock stepping back) would otherwise halve the windows.
        if !at.is_finite() || self.ends.back().is_some_and(|(t, _)| at <= *t) {
            return;
        }
        // A log end that went backwards means the topic was recreated: start over.
        if self.table.back().is_some_and(|(o, _)| log_end < *o) {
            *self = Self::default();
        }
        self.ends.push_back((at, log_end));
        while self.ends.len() > STATUS_WINDOW {
            self.ends.pop_front();
        }
        match self.table.back_mut() {
            // Same offset as last time: keep the first time it was seen (that is when it was the end).
            Some((o, _)) if *o == log_end => {}
            Some((_, t)) if at <= *t => {}
            _ => self.table.push_back((log_end, at)),
        }
        while self.table.len() > TIME_TABLE_POINTS {
            self.table.pop_front();
        }
        if let Some(c) = committed {
            // OffsetFetch returns the committed offset, not when it was committed, so a commit
            // is a round in which the offset changed (Burrow keeps every commit with its time).
            if self.commits.back().is_none_or(|p| p.offset != c) {
                self.commits.push_back(Commit {
                    at,
                    offset: c,
                    seen_to_change: self.committed_last_round,
                });
                while self.commits.len() > STATUS_WINDOW {
                    self.commits.pop_front();
                }
            }
            self.lags.push_back((at, (log_end - c).max(0)));
            while self.lags.len() > STATUS_WINDOW {
                self.lags.pop_front();
            }
        }
        self.committed_last_round = committed.is_some();
    }

    /// Burrow-style status at time `now`.
    pub fn status(&self, now: f64) -> Status {
        let (Some(&(first_round, first_lag)), Some(&(_, lag))) =
            (self.lags.front(), self.lags.back())
        else {
            return Status::Ok;
        };
        if lag == 0 {
            return Status::Ok;
        }
        let (Some(first), Some(last)) = (self.commits.front(), self.commits.back()) else {
            return Status::Ok;
        };
        // STOP: the offset was moving, and has now been still for longer than it had been moving.
        let span = last.at - first.at;
        if self.commits.len() >= 2 && span > 0.0 && now - last.at > span {
            return Status::Stop;
        }
        if self
            .commits
            .iter()
            .zip(self.commits.iter().skip(1))
            .any(|(a, b)| b.offset < a.offset)
        {
            return Status::Rewind;
        }
        if self.lags.iter().any(|(_, l)| *l == 0) {
            return Status::Ok;
        }
        // STALL: the offset did not move across a full window of rounds while lag existed.
        if self.lags.len() >= STATUS_WINDOW && last.at <= first_round {
            return Status::Stall;
        }
        let never_decreased = self
            .lags
            .iter()
            .zip(self.lags.iter().skip(1))
            .all(|(a, b)| b.1 >= a.1);
        if self.lags.len() >= 2 && never_decreased && lag > first_lag {
            return Status::Warn;
        }
        Status::Ok
    }

    /// Seconds the committed offset `committed` is behind the log end at `now`.
    pub fn time_lag(&self, committed: i64, now: f64) -> Option<f64> {
        let &(end, _) = self.table.back()?;
        if committed >= end {
            return Some(0.0);
        }
        let t = interpolate_time(&self.table, committed)?;
        Some((now - t).max(0.0))
    }

    /// Messages per second the group consumed at time `now`, measured between whole commits;
    /// None while that is unknown.
    ///
    /// A consumer commits every `auto.commit.interval.ms` (librdkafka and the Java client: 5 s;
    /// Kafka Streams: 30 s), so the committed offset moves in steps. A rate from the window's
    /// first round to its last counts the steps inside the window over the window's length,
    /// and reads up to one interval's consumption short (about half the real rate for a
    /// 10-round window and a 5 s interval) whenever the window starts or ends between two
    /// steps. The predictive lag took that for a group falling behind and sized to the cap
    /// (the replay benchmark, `docs/peers.md`). So the rate runs from commit to commit, over
    /// commits seen to happen (the first offset seen was committed at a time OffsetFetch does
    /// not give):
    ///
    /// ```text
    /// cadence = the median gap between the commits kept (the lower one of an even count)
    /// last    = the last commit
    /// first   = the last commit at or before the window's first round (the one before
    ///           `last` at the latest), or the first after the last gap longer than
    ///           QUIET_INTERVALS x cadence (a spell with nothing consumed, not an interval)
    /// rate    = (last.offset - first.offset) / (last.at - first.at)
    /// ```
    ///
    /// None with fewer than two commits from `first` on: no rate is known, and the predictive
    /// lag leaves the sizing to the lag path. A quiet spell (no commit since `last`) of up to
    /// [`QUIET_INTERVALS`] x the cadence is a commit still to come or a rebalance, and holds
    /// the rate. Past that: 0 if the partition has no lag (nothing to read), else None (a
    /// stopped consumer, or a long rebalance: what the consumers can do is not measured, and
    /// a partial sum of the partitions that still hold would read low).
    pub fn consume_rate(&self, now: f64) -> Option<f64> {
        let (t0, _) = *self.lags.front()?;
        let (_, lag) = *self.lags.back()?;
        let seen = self.seen_commits();
        let last = *seen.last()?;
        let cadence = cadence(&seen)?;
        let from = seen
            .iter()
            .rposition(|c| c.at <= t0)
            .unwrap_or(0)
            .min(seen.len() - 2);
        // Past the last spell with nothing consumed, if any.
        let i = (from..seen.len() - 1)
            .rev()
            .find(|&k| seen[k + 1].at - seen[k].at > QUIET_INTERVALS * cadence)
            .map_or(from, |k| k + 1);
        let intervals = seen.len() - 1 - i;
        let first = seen[i];
        let span = last.at - first.at;
        if intervals == 0 || span.is_nan() || span <= 0.0 {
            return None;
        }
        if now - last.at > QUIET_INTERVALS * cadence.max(span / intervals as f64) {
            return (lag == 0).then_some(0.0);
        }
        Some((last.offset - first.offset).max(0) as f64 / span)
    }

    /// The lag of the round at `now`, averaged over the partition's last commit interval:
    /// the mean of the rounds within one cadence of `now` (the median gap between commits
    /// seen to happen, [`DEFAULT_COMMIT_INTERVAL_SECONDS`] while fewer than two are known, and
    /// at most the [`STATUS_WINDOW`] rounds kept). None when the round at `now` saw no
    /// committed offset (its lag comes from the reset policy, and has no trail to average).
    ///
    /// A consumer commits its position every interval, so the committed lag saws: it grows by
    /// the interval's consumption between commits and drops back at each. A reading at one
    /// instant lands anywhere on that tooth, and a scaler that reads every second sees every
    /// peak, which the scale-down window then holds. The mean over one whole interval is the
    /// tooth's mean (the backlog plus half an interval's consumption) at any phase, which is
    /// what a reading at a random moment (KEDA's, every 15 or 30 s) gives on average. A
    /// backlog that really grows shows in it too, half an interval later; a stopped consumer's
    /// lag grows without teeth, and the mean follows it at the same delay.
    pub fn commit_interval_lag(&self, now: f64) -> Option<f64> {
        let &(last, _) = self.lags.back()?;
        if last != now {
            return None;
        }
        let window = cadence(&self.seen_commits()).unwrap_or(DEFAULT_COMMIT_INTERVAL_SECONDS);
        let (sum, n) = self
            .lags
            .iter()
            .filter(|(t, _)| *t > now - window)
            .fold((0.0, 0u32), |(sum, n), (_, l)| (sum + *l as f64, n + 1));
        (n > 0).then(|| sum / f64::from(n))
    }

    /// The commits seen to happen, oldest first.
    fn seen_commits(&self) -> Vec<Commit> {
        self.commits
            .iter()
            .filter(|c| c.seen_to_change)
            .copied()
            .collect()
    }

    /// Messages per second produced over the last rounds (None: fewer than 2 rounds).
    pub fn produce_rate(&self) -> Option<f64> {
        let (a, b) = (self.ends.front()?, self.ends.back()?);
        let dt = b.0 - a.0;
        (dt > 0.0).then(|| (b.1 - a.1).max(0) as f64 / dt)
    }
}

/// The commit cadence: the median gap between commits seen to happen (the lower one of an
/// even count); None with fewer than two.
fn cadence(seen: &[Commit]) -> Option<f64> {
    let mut gaps: Vec<f64> = seen.windows(2).map(|w| w[1].at - w[0].at).collect();
    gaps.sort_by(f64::total_cmp);
    gaps.get(gaps.len().checked_sub(1)? / 2).copied()
}

/// The time at which the log end was `offset`, from a table of `(log_end, time)` points.
fn interpolate_time(table: &VecDeque<(i64, f64)>, offset: i64) -> Option<f64> {
    if table.len() < 2 {
        return None;
    }
    // Find the segment [a, b] with a.offset <= offset <= b.offset.
    let seg = table
        .iter()
        .zip(table.iter().skip(1))
        .find(|((oa, _), (ob, _))| *oa <= offset && offset <= *ob)
        .map(|(a, b)| (*a, *b));
    let ((oa, ta), (ob, tb)) = match seg {
        Some(s) => s,
        // Older than the table: extrapolate along the whole table's slope.
        None => (*table.front()?, *table.back()?),
    };
    if ob == oa {
        return None;
    }
    Some(ta + (offset - oa) as f64 * (tb - ta) / (ob - oa) as f64)
}

/// Seconds until `lag` is consumed at the given rates; None if it never drains.
pub fn time_to_drain(lag: u64, consume_rate: f64, produce_rate: f64) -> Option<f64> {
    if lag == 0 {
        return Some(0.0);
    }
    let net = consume_rate - produce_rate;
    (net.is_finite() && net > 0.0).then(|| lag as f64 / net)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds rounds of (time, log_end, committed).
    fn history(rounds: &[(f64, i64, Option<i64>)]) -> PartitionHistory {
        let mut h = PartitionHistory::default();
        for (t, end, c) in rounds {
            h.observe(*t, *end, *c);
        }
        h
    }

    #[test]
    fn keeping_up_is_ok() {
        let h = history(&[
            (0.0, 100, Some(100)),
            (1.0, 110, Some(110)),
            (2.0, 120, Some(118)),
        ]);
        assert_eq!(h.status(2.0), Status::Ok);
    }

    #[test]
    fn stalled_consumer_with_lag_is_stall() {
        let rounds: Vec<_> = (0..10)
            .map(|i| (i as f64, 100 + 10 * i, Some(50)))
            .collect();
        assert_eq!(history(&rounds).status(9.0), Status::Stall);
    }

    #[test]
    fn no_commit_for_longer_than_the_window_spans_is_stop() {
        // Commits moved from t=0 to t=4 (span 4s), then nothing for 10s while lag exists.
        let mut rounds: Vec<_> = (0..5).map(|i| (i as f64, 1000, Some(100 + i))).collect();
        rounds.push((14.0, 1000, Some(104)));
        assert_eq!(history(&rounds).status(14.0), Status::Stop);
    }

    #[test]
    fn stop_survives_the_window_sliding_past_the_moving_phase() {
        // Found against the real broker: moving for 4 rounds, then still for 12 rounds (more
        // than a window of rounds) must stay STOP, not turn into STALL.
        let rounds: Vec<_> = (0..16)
            .map(|i| (i as f64 * 0.5, 100 + 20 * i, Some(3 * (i.min(3) + 1))))
            .collect();
        assert_eq!(history(&rounds).status(8.0), Status::Stop);
    }

    #[test]
    fn committed_offset_going_back_is_rewind() {
        let h = history(&[
            (0.0, 500, Some(300)),
            (1.0, 500, Some(310)),
            (2.0, 500, Some(120)),
            (3.0, 510, Some(130)),
        ]);
        assert_eq!(h.status(3.0), Status::Rewind);
    }

    #[test]
    fn lag_never_decreasing_is_warn() {
        let h = history(&[
            (0.0, 100, Some(90)),
            (1.0, 130, Some(100)),
            (2.0, 170, Some(110)),
            (3.0, 220, Some(120)),
        ]);
        assert_eq!(h.status(3.0), Status::Warn);
    }

    #[test]
    fn zero_lag_anywhere_in_the_window_is_ok() {
        let h = history(&[
            (0.0, 100, Some(100)),
            (1.0, 150, Some(110)),
            (2.0, 200, Some(120)),
        ]);
        assert_eq!(h.status(2.0), Status::Ok);
    }

    #[test]
    fn status_order_is_worst_last() {
        assert!(
            Status::Err > Status::Stop && Status::Stop > Status::Stall && Status::Warn > Status::Ok
        );
    }

    #[test]
    fn time_lag_interpolates_between_points() {
        // Log end 0 at t=0, 100 at t=10, 300 at t=20.
        let h = history(&[(0.0, 0, None), (10.0, 100, None), (20.0, 300, None)]);
        // Offset 50 was the end at t=5; at now=20 it is 15s behind.
        assert_eq!(h.time_lag(50, 20.0), Some(15.0));
        // Offset 200 was the end at t=15.
        assert_eq!(h.time_lag(200, 20.0), Some(5.0));
        // Caught up: 0.
        assert_eq!(h.time_lag(300, 20.0), Some(0.0));
    }

    #[test]
    fn time_lag_extrapolates_before_the_table_and_refuses_without_progress() {
        let h = history(&[(10.0, 100, None), (20.0, 200, None)]);
        // Slope 10 msg/s: offset 50 was the end at t=5.
        assert_eq!(h.time_lag(50, 20.0), Some(15.0));
        let flat = history(&[(10.0, 100, None), (20.0, 100, None)]);
        assert_eq!(
            flat.time_lag(50, 20.0),
            None,
            "no progress: no estimate, not 0"
        );
    }

    #[test]
    fn rates_and_drain() {
        // The first offset seen (0) is not a commit seen to happen: the rate runs 400 -> 1200.
        let h = history(&[
            (0.0, 500, Some(0)),
            (10.0, 1000, Some(400)),
            (20.0, 1500, Some(1200)),
        ]);
        assert_eq!(h.consume_rate(20.0), Some(80.0));
        assert_eq!(h.produce_rate(), Some(50.0));
        // lag 700 at net 30 msg/s.
        let drain = time_to_drain(700, 80.0, 50.0).expect("drains");
        assert!((drain - 700.0 / 30.0).abs() < 1e-9);
        assert_eq!(
            time_to_drain(700, 50.0, 80.0),
            None,
            "falling behind never drains"
        );
        assert_eq!(time_to_drain(0, 0.0, 0.0), Some(0.0));
    }

    /// Rounds at `times` of a consumer at `rate` msg/s that commits at `phase + k * interval`
    /// (its commits before the first round included); the producer is 100 ahead.
    fn committing(
        rate: f64,
        interval: f64,
        phase: f64,
        times: &[f64],
    ) -> Vec<(f64, i64, Option<i64>)> {
        times
            .iter()
            .map(|&t| {
                let committed_at = phase + ((t - phase) / interval).floor() * interval;
                (
                    t,
                    (rate * t) as i64 + 100,
                    Some((rate * committed_at) as i64),
                )
            })
            .collect()
    }

    fn seconds(from: i64, to: i64) -> Vec<f64> {
        (from..=to).map(|t| t as f64).collect()
    }

    /// Each round's rate, after feeding it.
    fn rates(rounds: &[(f64, i64, Option<i64>)]) -> Vec<(f64, Option<f64>)> {
        let mut h = PartitionHistory::default();
        rounds
            .iter()
            .map(|(t, end, c)| {
                h.observe(*t, *end, *c);
                (*t, h.consume_rate(*t))
            })
            .collect()
    }

    #[test]
    fn consume_rate_runs_from_commit_to_commit() {
        // 40 msg/s committed every 5 s, at each phase of the 5 s cycle against the rounds, the
        // history starting between two commits: no rate until two commits are seen to happen
        // (the first offset seen was committed at an unknown time; counting from the first
        // round read 200 msg/s), then 40 at every round. (The rate from the window's first
        // round to its last read 22.2 or 44.4 here: 1 or 2 steps of 200 over 9 s.)
        for phase in 0..5 {
            let got = rates(&committing(40.0, 5.0, phase as f64 - 4.5, &seconds(0, 60)));
            let second_commit = got.iter().position(|(_, r)| r.is_some()).expect("a rate");
            assert!((5..=10).contains(&second_commit), "phase {phase}: {got:?}");
            for (t, r) in &got[second_commit..] {
                assert_eq!(*r, Some(40.0), "phase {phase}, t={t}");
            }
        }
    }

    #[test]
    fn consume_rate_stays_within_a_round_of_the_truth_when_rounds_jitter() {
        // Rounds every 1 s +- 0.3 s (the scaler's rounds are stamped before their fetch), 40
        // msg/s committed every 5 s at x.5. The span runs from the last commit at or before the
        // window's 9 s start, so it holds 2 or 3 intervals (10 or 15 s) and the commits' times
        // are each late by under 1.6 s: within 16% of the truth.
        let times: Vec<f64> = (0..120)
            .map(|k| k as f64 + 0.3 * (k as f64 * 1.7).sin())
            .collect();
        let got = rates(&committing(40.0, 5.0, 0.5, &times));
        for (t, r) in got.iter().skip(20) {
            let r = r.unwrap_or_else(|| panic!("no rate at t={t}"));
            assert!((r / 40.0 - 1.0).abs() < 0.16, "t={t}: {r}");
        }
    }

    #[test]
    fn consume_rate_holds_through_a_short_quiet_spell_then_is_unknown_with_lag() {
        // Commits every 5 s at 40 msg/s up to t=30 (offset 1200), then none while the log
        // grows: a rebalance, or a consumer that stopped. Up to 2 intervals (10 s) of quiet the
        // rate holds at 40; past that it is unknown (what the consumers can do is not measured).
        let mut rounds = committing(40.0, 5.0, 0.0, &seconds(0, 30));
        rounds.extend((31..=80).map(|t| (t as f64, 40 * t + 100, Some(1200))));
        let got = rates(&rounds);
        for (t, r) in &got[31..=40] {
            assert_eq!(*r, Some(40.0), "quiet {}s: held", t - 30.0);
        }
        for (t, r) in &got[41..] {
            assert_eq!(*r, None, "quiet {}s with lag: stopped", t - 30.0);
        }
    }

    #[test]
    fn consume_rate_follows_a_slow_commit_cadence() {
        // Kafka Streams commits every 30 s: read every second, 20 msg/s is 20 at every round
        // once two commits are seen, and held between commits (a window of 10 rounds never
        // holds two of them).
        let got = rates(&committing(20.0, 30.0, 7.0, &seconds(0, 200)));
        let first = got.iter().position(|(_, r)| r.is_some()).expect("a rate");
        assert_eq!(
            first, 37,
            "commits seen at 7 and 37 (the offset at 0 was the first seen)"
        );
        for (t, r) in &got[first..] {
            assert_eq!(*r, Some(20.0), "t={t}");
        }
    }

    #[test]
    fn consume_rate_is_unknown_across_an_idle_spell_until_two_commits_follow_it() {
        // 40 msg/s, commits every 5 s, until t=30; the producers stop, and at 31 the consumer
        // has read everything (offset 1300); nothing produced until t=100; then 40 msg/s
        // again, commits at 105, 110, ... The 74 s gap between the commits at 31 and 105 is a
        // spell with nothing consumed, not an interval: a rate across it (200 / 74 s) would
        // read the resumed load as a group far behind. So: 0 while idle, unknown at 105, 40
        // from 110.
        let mut rounds = committing(40.0, 5.0, 0.0, &seconds(0, 30));
        rounds.extend((31..=100).map(|t| (t as f64, 1300, Some(1300))));
        rounds.extend(
            committing(40.0, 5.0, 0.0, &seconds(101, 120))
                .into_iter()
                .map(|(t, end, c)| (t, end - 2700, c.map(|c| c - 2700))),
        );
        let got = rates(&rounds);
        assert_eq!(got[100].1, Some(0.0), "idle, nothing to read");
        assert_eq!(got[105].1, None, "one commit after the idle spell");
        for (t, r) in &got[110..] {
            assert_eq!(*r, Some(40.0), "t={t}");
        }
    }

    #[test]
    fn a_second_observation_in_the_same_round_adds_nothing() {
        // Two queries of one group in one round: the windows must not halve.
        let rounds = committing(40.0, 5.0, 0.0, &seconds(0, 30));
        let once = history(&rounds);
        let mut twice = PartitionHistory::default();
        for (t, end, c) in &rounds {
            twice.observe(*t, *end, *c);
            twice.observe(*t, *end, *c);
        }
        assert_eq!(twice.lags, once.lags);
        assert_eq!(twice.consume_rate(30.0), Some(40.0));
    }

    #[test]
    fn consume_rate_needs_two_commits_seen_to_happen() {
        assert_eq!(history(&[(0.0, 100, Some(50))]).consume_rate(0.0), None);
        let still = history(&[
            (0.0, 100, Some(50)),
            (1.0, 120, Some(50)),
            (2.0, 140, Some(50)),
        ]);
        assert_eq!(still.consume_rate(2.0), None, "one offset, never moved");
        let one = history(&[
            (0.0, 100, Some(50)),
            (1.0, 120, Some(60)),
            (2.0, 140, Some(60)),
        ]);
        assert_eq!(
            one.consume_rate(2.0),
            None,
            "the first offset seen is no commit time"
        );
        assert_eq!(
            history(&[(0.0, 100, None), (1.0, 120, None)]).consume_rate(1.0),
            None
        );
        // After a round without a committed offset (deleted, expired), the next one seen is
        // again of unknown time.
        let gap = history(&[
            (0.0, 100, Some(50)),
            (1.0, 120, Some(60)),
            (2.0, 140, None),
            (3.0, 160, Some(100)),
            (4.0, 180, Some(110)),
        ]);
        // From the commit seen at 1 to the one seen at 4; the one first seen at 3 is skipped.
        assert_eq!(gap.consume_rate(4.0), Some(50.0 / 3.0));
    }

    #[test]
    fn a_recreated_topic_starts_the_commits_over() {
        let h = history(&[
            (0.0, 1000, Some(900)),
            (1.0, 1100, Some(1000)),
            (2.0, 1200, Some(1100)),
            (3.0, 10, Some(5)),
            (4.0, 20, Some(15)),
        ]);
        assert_eq!(h.consume_rate(4.0), None, "only one commit seen since");
        assert_eq!(h.status(4.0), Status::Ok);
    }

    #[test]
    fn produce_rate_falls_to_zero_when_producers_stop() {
        // Found by the demo: 200 msg/s for 10 rounds, then nothing for 10 rounds.
        let mut rounds: Vec<_> = (0..10).map(|i| (i as f64, 200 * i, Some(0))).collect();
        rounds.extend((10..20).map(|i| (i as f64, 1800, Some(120 * (i - 9)))));
        let h = history(&rounds);
        assert_eq!(h.produce_rate(), Some(0.0));
        // So the backlog drains: lag 1800 - 1200 = 600 at 120 msg/s -> 5s.
        let consume = h.consume_rate(19.0).expect("consuming");
        assert_eq!(consume, 120.0);
        assert_eq!(time_to_drain(600, consume, 0.0), Some(5.0));
    }

    #[test]
    fn recreated_topic_restarts_the_table() {
        let h = history(&[
            (0.0, 1000, None),
            (10.0, 2000, None),
            (20.0, 5, None),
            (30.0, 105, None),
        ]);
        assert_eq!(h.produce_rate(), Some(10.0));
    }

    #[test]
    fn table_is_bounded() {
        let rounds: Vec<_> = (0..500).map(|i| (i as f64, i * 3, Some(i))).collect();
        let h = history(&rounds);
        assert_eq!(h.table.len(), TIME_TABLE_POINTS);
        assert_eq!(h.commits.len(), STATUS_WINDOW);
        assert_eq!(h.lags.len(), STATUS_WINDOW);
    }

    /// Each round's [`PartitionHistory::commit_interval_lag`] and its latest lag, after
    /// feeding it.
    fn interval_lags(rounds: &[(f64, i64, Option<i64>)]) -> Vec<(f64, Option<f64>, i64)> {
        let mut h = PartitionHistory::default();
        rounds
            .iter()
            .map(|(t, end, c)| {
                h.observe(*t, *end, *c);
                let latest = h.lags.back().map_or(-1, |(_, l)| *l);
                (*t, h.commit_interval_lag(*t), latest)
            })
            .collect()
    }

    #[test]
    fn commit_interval_lag_is_the_tooth_mean_at_every_phase() {
        // A backlog of 100 and 40 msg/s committed every 5 s, between the rounds: the committed
        // lag saws 120, 160, 200, 240, 280 at every phase, and its mean over one cadence is 200
        // (the backlog plus half an interval's consumption) at every round once the 5 rounds
        // of a cadence are kept; the latest reading reaches 280.
        for phase in 0..5 {
            let got = interval_lags(&committing(40.0, 5.0, phase as f64 - 4.5, &seconds(0, 60)));
            for (t, mean, _) in &got[5..] {
                assert_eq!(*mean, Some(200.0), "phase {phase}, t={t}");
            }
            let latest: Vec<i64> = got[5..].iter().map(|(_, _, l)| *l).collect();
            assert_eq!(latest.iter().min(), Some(&120), "phase {phase}");
            assert_eq!(latest.iter().max(), Some(&280), "phase {phase}");
        }
    }

    #[test]
    fn commit_interval_lag_follows_a_stopped_consumer_half_a_window_late() {
        // The committed offset never moves and the lag grows 10 a second: no cadence is known,
        // so the window is the 5 s default, and the mean is the lag 2 s earlier (never a hole
        // that hides the growth).
        let rounds: Vec<_> = (0..=30).map(|t| (t as f64, 10 * t, Some(0))).collect();
        for (t, mean, latest) in interval_lags(&rounds).into_iter().skip(4) {
            assert_eq!(mean, Some(latest as f64 - 20.0), "t={t}");
        }
    }

    #[test]
    fn commit_interval_lag_averages_a_slow_cadence_over_the_rounds_kept() {
        // Commits every 30 s (Kafka Streams): the window holds the 10 rounds kept, so the mean
        // is theirs; a cadence of one round is the latest reading.
        let slow = interval_lags(&committing(20.0, 30.0, 0.5, &seconds(0, 200)));
        for w in slow.windows(10).skip(100) {
            let mean = w.iter().map(|(_, _, l)| *l as f64).sum::<f64>() / 10.0;
            let (t, got, _) = w[9];
            assert!(
                (got.expect("a mean") - mean).abs() < 1e-9,
                "t={t}: {got:?} {mean}"
            );
        }
        let every_round = interval_lags(&committing(20.0, 1.0, 0.5, &seconds(0, 30)));
        for (t, mean, latest) in &every_round[3..] {
            assert_eq!(*mean, Some(*latest as f64), "t={t}");
        }
    }

    #[test]
    fn commit_interval_lag_is_unknown_without_a_committed_offset_this_round() {
        let mut h = history(&[(0.0, 100, Some(50)), (1.0, 110, Some(60))]);
        assert_eq!(h.commit_interval_lag(1.0), Some(50.0));
        h.observe(2.0, 120, None);
        assert_eq!(h.commit_interval_lag(2.0), None);
        assert_eq!(PartitionHistory::default().commit_interval_lag(0.0), None);
    }
}

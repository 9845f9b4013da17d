//! One container of one pod (upstream's `ContainerState`, `pkg/recommender/model/container.go`).
//!
//! CPU samples go straight to the aggregation (weighted by the request there); a sample not
//! later than the previous one is a duplicate and is dropped. Memory is kept as **one peak per
//! aggregation interval** (24h): the first sample opens an interval ending 24h later; inside
//! it a higher sample replaces the peak (the old peak is subtracted from the aggregation, the
//! new one added, both at the interval's end time); a sample at or after the end opens the next
//! interval on the same grid. An OOM is recorded as an artificial memory sample of
//! `max(used + 100Mi, used * 1.2)` with `used = max(request at the OOM, this interval's usage
//! peak)`; OOM peaks do not feed back into `used`, so repeated OOMs do not run away.

use super::amount::{memory_amount_from_bytes, scale_resource};
use super::config::ModelConfig;

/// Where an instance sends its samples: the container's aggregation (a recording fake in the
/// tests, as upstream's mock histograms).
pub trait Aggregator {
    /// A CPU sample: usage and the request at the time, in millicores.
    fn add_cpu_sample(&mut self, usage_millicores: i64, request_millicores: i64, at: f64);
    /// A memory peak of one interval, at the interval's end.
    fn add_memory_peak(&mut self, bytes: i64, at: f64);
    /// Withdraw a peak added earlier with the same arguments.
    fn subtract_memory_peak(&mut self, bytes: i64, at: f64);
    /// Every accepted memory usage sample (not OOMs), for the mean usage (Tidal's).
    fn add_memory_usage(&mut self, bytes: i64, at: f64);
}

/// Why an OOM was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomRejected {
    /// More than an aggregation interval before the last memory sample (`OOM event will be
    /// discarded - it is too old`).
    TooOld,
    /// The artificial sample was invalid (a negative amount).
    Invalid,
}

/// The memory window and dedup state of one container in one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceState {
    last_cpu_sample: Option<f64>,
    memory_peak: i64,
    oom_peak: i64,
    window_end: Option<f64>,
    last_memory_sample: Option<f64>,
}

impl InstanceState {
    /// `addCPUSample`: false for a negative usage or a sample not after the previous one.
    pub fn add_cpu_sample<A: Aggregator>(
        &mut self,
        agg: &mut A,
        usage_millicores: i64,
        request_millicores: i64,
        at: f64,
    ) -> bool {
        if usage_millicores < 0 || self.last_cpu_sample.is_some_and(|last| at <= last) {
            return false;
        }
        agg.add_cpu_sample(usage_millicores, request_millicores, at);
        self.last_cpu_sample = Some(at);
        true
    }

    /// `addMemorySample`: false for a negative usage, or (not for OOMs) a sample before the
    /// previous one.
    pub fn add_memory_sample<A: Aggregator>(
        &mut self,
        agg: &mut A,
        usage_bytes: i64,
        at: f64,
        is_oom: bool,
        interval_seconds: f64,
    ) -> bool {
        if usage_bytes < 0 || (!is_oom && self.last_memory_sample.is_some_and(|last| at < last)) {
            return false;
        }
        self.last_memory_sample = Some(at);
        let mut window_end = *self.window_end.get_or_insert(at);
        let mut add_new_peak = false;
        if at < window_end {
            let old = self.max_memory_peak();
            if old != 0 && usage_bytes > old {
                agg.subtract_memory_peak(old, window_end);
                add_new_peak = true;
            }
        } else {
            // Shift to the interval containing `at`, on the grid of the first interval.
            let since = at - window_end;
            window_end += since - since % interval_seconds + interval_seconds;
            self.window_end = Some(window_end);
            self.memory_peak = 0;
            self.oom_peak = 0;
            add_new_peak = true;
        }
        if !is_oom {
            agg.add_memory_usage(usage_bytes, at);
        }
        if add_new_peak {
            agg.add_memory_peak(usage_bytes, window_end);
            if is_oom {
                self.oom_peak = usage_bytes;
            } else {
                self.memory_peak = usage_bytes;
            }
        }
        true
    }

    /// `RecordOOM`: record the memory the container needed, given its memory request at the
    /// OOM (upstream passes the request; an eviction passes the usage). Returns the amount
    /// recorded.
    pub fn record_oom<A: Aggregator>(
        &mut self,
        agg: &mut A,
        at: f64,
        requested_bytes: i64,
        model: &ModelConfig,
    ) -> Result<i64, OomRejected> {
        let interval = model.memory_aggregation_interval_seconds;
        // Measured from the last memory sample, not from the interval's end, which can lie a
        // whole interval ahead of it: an OOM seconds before a sample that opened a new
        // interval is fresh (kubernetes/autoscaler#8548, fixed in VPA 1.8).
        if self
            .last_memory_sample
            .is_some_and(|last| at < last - interval)
        {
            return Err(OomRejected::TooOld);
        }
        // Omitting the OOM peak keeps repeated OOMs from running away.
        let used = requested_bytes.max(self.memory_peak);
        let needed = (used + memory_amount_from_bytes(model.oom_min_bump_up_bytes))
            .max(scale_resource(used, model.oom_bump_up_ratio));
        if !self.add_memory_sample(agg, needed, at, true, interval) {
            return Err(OomRejected::Invalid);
        }
        Ok(needed)
    }

    /// `GetMaxMemoryPeak`: the higher of this interval's usage and OOM peaks.
    pub fn max_memory_peak(&self) -> i64 {
        self.memory_peak.max(self.oom_peak)
    }

    /// The end of the current memory interval.
    pub fn window_end(&self) -> Option<f64> {
        self.window_end
    }

    /// The latest CPU or memory sample time.
    pub fn last_sample(&self) -> Option<f64> {
        match (self.last_cpu_sample, self.last_memory_sample) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
#[path = "instance_tests.rs"]
mod tests;

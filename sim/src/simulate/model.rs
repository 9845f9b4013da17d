//! The workload model: replicas with a fixed capacity, a start-up delay, and a queue.
//!
//! Each second (`serve`), with `ready` the pods started at least `pod_start_seconds` ago:
//!
//! ```text
//! capacity    = ready * capacity_per_replica
//! served      = min(queue + load, capacity)
//! queue'      = queue + load - served            (the backlog: grows by load - served)
//! utilization = served / capacity                (0 without ready pods; at most 1)
//! lag         = queue' + served * commit_lag_seconds   (what a Kafka lag source reports)
//! violated    = utilization > slo_utilization  or  queue' > slo_lag
//! ```
//!
//! Every ready pod has the same utilization, and it is the pod's CPU usage in cores for a
//! request of one core. Unready pods serve nothing. Scaling up adds pods that become ready
//! `pod_start_seconds` later; scaling down removes the newest pods first (unready ones are the
//! newest), at once. There is no noise: the same trace always gives the same run.

/// Model parameters (the `simulate` flags).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ModelParams {
    /// Load one ready replica serves per second at 100% CPU.
    pub capacity_per_replica: f64,
    /// Seconds from a pod's creation until it is ready and serves.
    pub pod_start_seconds: f64,
    /// Utilization above which a second violates the SLO.
    pub slo_utilization: f64,
    /// Backlog (messages or requests) above which a second violates the SLO.
    pub slo_lag: f64,
    /// Seconds of consumption the committed Kafka offset trails by (half the auto-commit
    /// interval): the lag a consumer group that keeps up still reports.
    pub commit_lag_seconds: f64,
}

impl Default for ModelParams {
    fn default() -> Self {
        Self {
            capacity_per_replica: 100.0,
            pod_start_seconds: 30.0,
            slo_utilization: 0.9,
            slo_lag: 1000.0,
            commit_lag_seconds: 2.5,
        }
    }
}

/// How long before the replay the initial pods were started (long enough to be past the
/// HPA's CPU initialization period).
pub const INITIAL_POD_AGE_SECONDS: f64 = 3600.0;

/// One pod of the simulated workload. Times are seconds of the replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimPod {
    pub id: u64,
    pub created_at: f64,
    pub ready_at: f64,
}

impl SimPod {
    /// Ready (and serving) at `t`.
    pub fn ready(&self, t: f64) -> bool {
        self.ready_at <= t
    }
}

/// What happened in one second.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Second {
    pub t: f64,
    pub load: f64,
    pub served: f64,
    /// The backlog after this second.
    pub queue: f64,
    /// The lag a Kafka source reports (backlog plus the commit trail).
    pub lag: f64,
    /// Pods that served.
    pub ready: usize,
    /// All pods (what is paid for).
    pub replicas: usize,
    pub utilization: f64,
    pub violated: bool,
}

/// The simulated workload.
#[derive(Debug, Clone)]
pub struct Workload {
    params: ModelParams,
    pods: Vec<SimPod>,
    queue: f64,
    next_id: u64,
}

impl Workload {
    /// `initial` pods, ready long before `t0`, and an empty queue.
    pub fn new(params: ModelParams, initial: usize, t0: f64) -> Self {
        let created = t0 - INITIAL_POD_AGE_SECONDS;
        let pods = (0..initial as u64)
            .map(|id| SimPod {
                id,
                created_at: created,
                ready_at: created + params.pod_start_seconds,
            })
            .collect();
        Self {
            params,
            pods,
            queue: 0.0,
            next_id: initial as u64,
        }
    }

    pub fn params(&self) -> &ModelParams {
        &self.params
    }

    /// The pods, oldest first.
    pub fn pods(&self) -> &[SimPod] {
        &self.pods
    }

    /// The replica count (ready or not).
    pub fn replicas(&self) -> usize {
        self.pods.len()
    }

    /// Pods ready at `t`.
    pub fn ready(&self, t: f64) -> usize {
        self.pods.iter().filter(|p| p.ready(t)).count()
    }

    /// The backlog.
    pub fn queue(&self) -> f64 {
        self.queue
    }

    /// Serves `load` (per second) during second `t`; see the module docs.
    pub fn serve(&mut self, t: f64, load: f64) -> Second {
        let p = &self.params;
        let ready = self.ready(t);
        let capacity = ready as f64 * p.capacity_per_replica;
        let work = self.queue + load;
        let served = work.min(capacity);
        let queue = (work - served).max(0.0);
        self.queue = queue;
        let utilization = if capacity > 0.0 {
            (served / capacity).min(1.0)
        } else {
            0.0
        };
        Second {
            t,
            load,
            served,
            queue,
            lag: queue + served * p.commit_lag_seconds,
            ready,
            replicas: self.pods.len(),
            utilization,
            violated: utilization > p.slo_utilization || queue > p.slo_lag,
        }
    }

    /// Scales to `replicas` at `t`: new pods are ready at `t + pod_start_seconds`; removed
    /// pods are the newest.
    pub fn scale_to(&mut self, t: f64, replicas: usize) {
        if replicas < self.pods.len() {
            // Pods are kept oldest first, so the newest are at the end.
            self.pods.truncate(replicas);
        }
        while self.pods.len() < replicas {
            self.pods.push(SimPod {
                id: self.next_id,
                created_at: t,
                ready_at: t + self.params.pod_start_seconds,
            });
            self.next_id += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(capacity: f64, start: f64) -> ModelParams {
        ModelParams {
            capacity_per_replica: capacity,
            pod_start_seconds: start,
            slo_utilization: 0.9,
            slo_lag: 4.0,
            commit_lag_seconds: 0.5,
        }
    }

    /// A hand-computed tiny trace: one replica of capacity 10.
    ///
    /// | t | load | work | served | queue | util | lag | violated |
    /// | 0 |  5   |  5   |   5    |   0   | 0.5  | 2.5 | no       |
    /// | 1 | 15   | 15   |  10    |   5   | 1    | 10  | yes      |
    /// | 2 | 20   | 25   |  10    |  15   | 1    | 20  | yes      |
    /// | 3 |  0   | 15   |  10    |   5   | 1    | 10  | yes      |
    /// | 4 |  0   |  5   |   5    |   0   | 0.5  | 2.5 | no       |
    /// | 5 |  9   |  9   |   9    |   0   | 0.9  | 4.5 | no (0.9 is not above 0.9) |
    /// | 6 | 13   | 13   |  10    |   3   | 1    | 8   | yes (util), queue 3 <= 4 |
    #[test]
    fn queue_arithmetic_is_exact() {
        let mut w = Workload::new(params(10.0, 30.0), 1, 0.0);
        let loads = [5.0, 15.0, 20.0, 0.0, 0.0, 9.0, 13.0];
        let got: Vec<Second> = loads
            .iter()
            .enumerate()
            .map(|(t, &l)| w.serve(t as f64, l))
            .collect();
        let served: Vec<f64> = got.iter().map(|s| s.served).collect();
        let queue: Vec<f64> = got.iter().map(|s| s.queue).collect();
        let util: Vec<f64> = got.iter().map(|s| s.utilization).collect();
        let lag: Vec<f64> = got.iter().map(|s| s.lag).collect();
        let violated: Vec<bool> = got.iter().map(|s| s.violated).collect();
        assert_eq!(served, [5.0, 10.0, 10.0, 10.0, 5.0, 9.0, 10.0]);
        assert_eq!(queue, [0.0, 5.0, 15.0, 5.0, 0.0, 0.0, 3.0]);
        assert_eq!(util, [0.5, 1.0, 1.0, 1.0, 0.5, 0.9, 1.0]);
        assert_eq!(lag, [2.5, 10.0, 20.0, 10.0, 2.5, 4.5, 8.0]);
        assert_eq!(violated, [false, true, true, true, false, false, true]);
        assert!(got.iter().all(|s| s.ready == 1 && s.replicas == 1));
    }

    /// The backlog alone violates the SLO once above `slo_lag`, even at low utilization.
    #[test]
    fn a_backlog_above_the_threshold_violates() {
        let mut w = Workload::new(params(10.0, 3.0), 0, 0.0);
        // No ready pods: everything queues.
        let s0 = w.serve(0.0, 3.0);
        assert_eq!((s0.queue, s0.utilization, s0.violated), (3.0, 0.0, false));
        let s1 = w.serve(1.0, 2.0);
        assert_eq!((s1.queue, s1.violated), (5.0, true));
        w.scale_to(1.0, 1);
        assert_eq!(w.ready(3.0), 0);
        assert_eq!(w.ready(4.0), 1);
    }

    #[test]
    fn pods_are_not_ready_before_the_start_delay() {
        let mut w = Workload::new(params(10.0, 30.0), 2, 100.0);
        assert_eq!(w.ready(100.0), 2, "initial pods are ready");
        w.scale_to(100.0, 5);
        assert_eq!(w.replicas(), 5);
        for t in 100..130 {
            assert_eq!(w.ready(f64::from(t)), 2, "t={t}");
            let s = w.serve(f64::from(t), 50.0);
            // Two ready pods serve 20 of 50 per second.
            assert_eq!(s.served, 20.0);
            assert_eq!(s.ready, 2);
            assert_eq!(s.replicas, 5);
        }
        assert_eq!(w.queue(), 30.0 * 30.0);
        assert_eq!(w.ready(130.0), 5);
        let s = w.serve(130.0, 50.0);
        assert_eq!(s.served, 50.0);
        assert_eq!(s.queue, 900.0);
        // Scaling down removes the newest (unready first) pods.
        w.scale_to(131.0, 7);
        w.scale_to(131.0, 4);
        let ids: Vec<u64> = w.pods().iter().map(|p| p.id).collect();
        assert_eq!(ids, [0, 1, 2, 3]);
        assert_eq!(w.ready(131.0), 4);
    }
}

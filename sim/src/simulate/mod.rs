//! `tidal-sim simulate`: replays a load trace through a workload model and the pure
//! engine, for Tidal and, with `--compare hpa,keda`, for the Kubernetes HPA and KEDA with
//! their defaults. `docs/simulate.md` describes the model, the flags and the results.
//!
//! - [`trace`]: the `t,load` CSV, resampled to one value per second.
//! - [`policy`]: the ScalingPolicy YAML, converted as the controller converts it.
//! - [`model`]: replicas with a capacity and a start-up delay, a backlog, the SLO.
//! - [`run`]: the replay loop and the three scalers (what each is fed and how often it runs).
//! - [`report`]: the table, the JSON, the SVG chart and the CSV.
//!
//! The engine reads no clock, so a replay of hours takes milliseconds and always gives the
//! same figures.

pub mod model;
pub mod policy;
pub mod report;
pub mod run;
pub mod trace;

use std::path::Path;

pub use model::{ModelParams, Second, Workload};
pub use policy::{Policy, PolicyError};
pub use report::{GoalCheck, Report};
pub use run::{Algorithm, Peer, Run, Scaler, Setup, Summary};
pub use trace::{Interpolation, Trace, TraceError};

/// Why a replay cannot run. Each names the file, the flag or the algorithm.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimulateError {
    /// The trace file is not a usable `t,load` CSV.
    #[error("{path}: {error}")]
    Trace { path: String, error: TraceError },
    /// The policy file is not a usable ScalingPolicy.
    #[error("{path}: {error}")]
    Policy { path: String, error: PolicyError },
    /// A flag's value is out of range or missing.
    #[error("{flag}: {reason}")]
    Flag { flag: &'static str, reason: String },
    /// The engine rejected the input built for an algorithm (a bug of the model, reported
    /// rather than hidden).
    #[error("{algorithm}: invalid engine input: {error}")]
    Engine {
        algorithm: &'static str,
        error: tidal_engine::InputError,
    },
}

impl SimulateError {
    /// A fixed label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Trace { .. } => "trace",
            Self::Policy { .. } => "policy",
            Self::Flag { .. } => "flag",
            Self::Engine { .. } => "engine",
        }
    }
}

/// Reads a trace file's text ([`Trace::from_csv`]), naming `path` in errors.
pub fn read_trace(
    path: &Path,
    text: &str,
    interpolation: Interpolation,
) -> Result<Trace, SimulateError> {
    Trace::from_csv(text, interpolation).map_err(|error| SimulateError::Trace {
        path: path.display().to_string(),
        error,
    })
}

/// Reads a policy file's text ([`policy::parse`]), naming `path` in errors.
pub fn read_policy(path: &Path, text: &str) -> Result<Policy, SimulateError> {
    policy::parse(text).map_err(|error| SimulateError::Policy {
        path: path.display().to_string(),
        error,
    })
}

/// The replay settings as given (the flags); [`Options::setup`] applies defaults and checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub model: ModelParams,
    /// Replicas at second 0; default: the fewest that serve the first second's load at or
    /// below `slo_utilization`, within the policy's bounds.
    pub initial_replicas: Option<u32>,
    /// KEDA's `lagThreshold`; default: the policy's `kafkaLag.lagPerReplica`.
    pub lag_per_replica: Option<f64>,
    /// Partitions of the consumed topic (the lag cap of Tidal and KEDA).
    pub partitions: u32,
    /// Phase of the HPA's and KEDA's loops relative to the trace, in seconds.
    pub sync_offset_seconds: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            model: ModelParams::default(),
            initial_replicas: None,
            lag_per_replica: None,
            partitions: 12,
            sync_offset_seconds: 0,
        }
    }
}

fn flag(flag: &'static str, reason: String) -> SimulateError {
    SimulateError::Flag { flag, reason }
}

fn check(name: &'static str, v: f64, ok: bool, what: &str) -> Result<(), SimulateError> {
    if v.is_finite() && ok {
        Ok(())
    } else {
        Err(flag(name, format!("{v} is not {what}")))
    }
}

impl Options {
    /// Checks the flags and fills the defaults that depend on the trace and the policy.
    pub fn setup(
        &self,
        trace: &Trace,
        policy: &Policy,
        peers: &[Peer],
    ) -> Result<Setup, SimulateError> {
        let m = &self.model;
        check(
            "--capacity-per-replica",
            m.capacity_per_replica,
            m.capacity_per_replica > 0.0,
            "a number above 0",
        )?;
        check(
            "--pod-start-seconds",
            m.pod_start_seconds,
            m.pod_start_seconds >= 0.0,
            "a number of seconds, 0 or more",
        )?;
        check(
            "--slo-utilization",
            m.slo_utilization,
            m.slo_utilization > 0.0,
            "a ratio above 0",
        )?;
        check("--slo-lag", m.slo_lag, m.slo_lag >= 0.0, "0 or more")?;
        check(
            "--commit-lag-seconds",
            m.commit_lag_seconds,
            m.commit_lag_seconds >= 0.0,
            "a number of seconds, 0 or more",
        )?;
        if self.partitions == 0 {
            return Err(flag("--partitions", "must be at least 1".to_owned()));
        }
        let lag_per_replica = match self.lag_per_replica {
            Some(v) => {
                check(
                    "--lag-per-replica",
                    v,
                    v >= 1.0,
                    "a number of messages, 1 or more",
                )?;
                Some(v)
            }
            None => policy.kafka_lag().map(|(_, k)| k.lag_per_replica),
        };
        if peers.contains(&Peer::Keda) && lag_per_replica.is_none() {
            return Err(flag(
                "--lag-per-replica",
                "--compare keda needs KEDA's lagThreshold: the policy has no kafkaLag metric"
                    .to_owned(),
            ));
        }
        let min = usize::try_from(policy.spec.min_replicas).unwrap_or(0);
        let max = usize::try_from(policy.spec.max_replicas)
            .unwrap_or(0)
            .max(min);
        let initial_replicas = match self.initial_replicas {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => {
                let first = trace.load.first().copied().unwrap_or(0.0);
                let per_replica = m.capacity_per_replica * m.slo_utilization.min(1.0);
                let needed = (first / per_replica).ceil();
                let needed = if needed.is_finite() && needed > 0.0 {
                    needed as usize
                } else {
                    0
                };
                needed.clamp(min, max)
            }
        };
        Ok(Setup {
            model: self.model,
            initial_replicas,
            partitions: self.partitions,
            lag_per_replica,
            sync_offset_seconds: self.sync_offset_seconds,
        })
    }
}

/// Replays `trace` for Tidal and each of `peers` (duplicates are run once).
pub fn simulate(
    trace: &Trace,
    policy: &Policy,
    options: &Options,
    peers: &[Peer],
) -> Result<Report, SimulateError> {
    let setup = options.setup(trace, policy, peers)?;
    let mut scalers = vec![Scaler::tidal(policy, &setup)];
    let mut seen = Vec::new();
    for &p in peers {
        if seen.contains(&p) {
            continue;
        }
        seen.push(p);
        scalers.push(match p {
            Peer::Hpa => Scaler::hpa(policy, &setup),
            Peer::Keda => {
                let lag = setup.lag_per_replica.ok_or_else(|| {
                    flag(
                        "--lag-per-replica",
                        "--compare keda needs KEDA's lagThreshold".to_owned(),
                    )
                })?;
                Scaler::keda(policy, &setup, lag)
            }
        });
    }
    let runs = scalers
        .into_iter()
        .map(|s| run::replay(trace, s, &setup))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Report {
        trace: String::new(),
        policy: String::new(),
        setup,
        seconds: trace.seconds(),
        peak_load: trace.peak(),
        mean_load: trace.mean(),
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        policy::parse(
            "apiVersion: tidal.dev/v1alpha1\nkind: ScalingPolicy\nmetadata: {name: w}\nspec:\n  \
             targetRef: {apiVersion: apps/v1, kind: Deployment, name: w}\n  minReplicas: 2\n  \
             maxReplicas: 10\n  metrics:\n    - name: cpu\n      resource: {name: cpu, \
             targetUtilization: 70}\n",
        )
        .expect("policy")
    }

    #[test]
    fn initial_replicas_serve_the_first_second_within_bounds() {
        let p = policy();
        let o = Options::default();
        let at = |load: f64| {
            o.setup(&Trace::from_loads(vec![load]), &p, &[])
                .expect("setup")
                .initial_replicas
        };
        // 100/s per replica at most 90%: 450/s needs 5, 0/s the minimum, 5000/s the maximum.
        assert_eq!(at(450.0), 5);
        assert_eq!(at(451.0), 6);
        assert_eq!(at(0.0), 2);
        assert_eq!(at(5000.0), 10);
    }

    #[test]
    fn flags_are_checked_by_name() {
        let p = policy();
        let t = Trace::from_loads(vec![1.0]);
        let mut o = Options::default();
        o.model.capacity_per_replica = 0.0;
        let e = o.setup(&t, &p, &[]).expect_err("capacity 0");
        assert_eq!(
            e.to_string(),
            "--capacity-per-replica: 0 is not a number above 0"
        );
        let o = Options {
            partitions: 0,
            ..Options::default()
        };
        assert!(
            o.setup(&t, &p, &[])
                .expect_err("partitions")
                .to_string()
                .starts_with("--partitions")
        );
        // KEDA needs a lag budget, and this policy has no kafkaLag metric.
        let e = Options::default()
            .setup(&t, &p, &[Peer::Keda])
            .expect_err("keda");
        assert_eq!(e.kind(), "flag");
        assert!(e.to_string().starts_with("--lag-per-replica"), "{e}");
        let o = Options {
            lag_per_replica: Some(100.0),
            ..Options::default()
        };
        let r = simulate(
            &Trace::from_loads(vec![100.0; 60]),
            &p,
            &o,
            &[Peer::Keda, Peer::Hpa, Peer::Keda],
        )
        .expect("runs");
        let names: Vec<&str> = r.runs.iter().map(|r| r.algorithm.name()).collect();
        assert_eq!(names, ["tidal", "keda", "hpa"]);
        assert_eq!(r.goal().len(), 2);
        assert!(r.table().contains("vs keda"));
        assert_eq!(r.csv().lines().count(), 61);
    }
}

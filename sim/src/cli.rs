//! Command-line interface of `tidal-sim`, Tidal's offline tools. Every flag has an
//! environment-variable twin; the twins keep the names they had when these subcommands were
//! part of `tidal-scaler` (`TIDAL_SCALER_SIMULATE_*`, `TIDAL_SCALER_PLOT_*`), so scripts that
//! set them keep working.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// tidal-sim: replays load traces through Tidal's engine (against the HPA and KEDA) and draws
/// CSV tables as SVG charts. Offline: it talks to no cluster.
#[derive(Debug, Parser)]
#[command(name = "tidal-sim", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay a load trace (CSV) through a workload model and the engine, for Tidal and,
    /// with `--compare`, for the HPA and KEDA; report SLO violations and replica-seconds.
    Simulate(Box<SimulateArgs>),
    /// Draw a CSV (`t,<series>,...`) as an SVG line chart (`<name>@right` columns use a second
    /// y axis).
    Plot(PlotArgs),
}

/// `tidal-sim plot`: a CSV table drawn as an SVG line chart (`crate::plot`).
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// CSV input, header `t,<name>,...` ("-" for standard input).
    #[arg(long, env = "TIDAL_SCALER_PLOT_INPUT")]
    pub input: PathBuf,
    /// SVG output file ("-" for standard output).
    #[arg(long, env = "TIDAL_SCALER_PLOT_OUTPUT")]
    pub output: PathBuf,
    /// Chart title (default: the input file name).
    #[arg(long, env = "TIDAL_SCALER_PLOT_TITLE")]
    pub title: Option<String>,
    /// Label of the x axis.
    #[arg(long, env = "TIDAL_SCALER_PLOT_X_LABEL", default_value = "time (s)")]
    pub x_label: String,
    /// Label of the left y axis.
    #[arg(long, env = "TIDAL_SCALER_PLOT_Y_LABEL", default_value = "")]
    pub y_label: String,
    /// Label of the right y axis (default: the names of its series).
    #[arg(long, env = "TIDAL_SCALER_PLOT_Y2_LABEL")]
    pub y2_label: Option<String>,
}

/// `tidal-sim simulate` (`crate::simulate`, `docs/simulate.md`).
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Load trace: CSV `t,load` (seconds, load per second).
    #[arg(long, env = "TIDAL_SCALER_SIMULATE_TRACE")]
    pub trace: PathBuf,
    /// ScalingPolicy YAML (`tidal.dev/v1alpha1`) to replay.
    #[arg(long, env = "TIDAL_SCALER_SIMULATE_POLICY")]
    pub policy: PathBuf,
    /// Also replay these peers with their defaults, comma separated.
    #[arg(
        long,
        env = "TIDAL_SCALER_SIMULATE_COMPARE",
        value_delimiter = ',',
        value_enum
    )]
    pub compare: Vec<crate::simulate::Peer>,
    /// Write a chart (load, lag and replicas over time) as SVG.
    #[arg(long, env = "TIDAL_SCALER_SIMULATE_OUTPUT_SVG")]
    pub output_svg: Option<PathBuf>,
    /// Write the per-second series as CSV (`tidal-sim plot` draws it).
    #[arg(long, env = "TIDAL_SCALER_SIMULATE_OUTPUT_CSV")]
    pub output_csv: Option<PathBuf>,
    /// Print the results as JSON instead of a table.
    #[arg(long, env = "TIDAL_SCALER_SIMULATE_JSON")]
    pub json: bool,
    /// How the load between two trace rows is filled in.
    #[arg(
        long,
        env = "TIDAL_SCALER_SIMULATE_INTERPOLATION",
        value_enum,
        default_value = "linear"
    )]
    pub interpolation: crate::simulate::Interpolation,
    /// Load one ready replica serves per second at 100% CPU.
    #[arg(
        long,
        env = "TIDAL_SCALER_SIMULATE_CAPACITY_PER_REPLICA",
        default_value_t = 100.0
    )]
    pub capacity_per_replica: f64,
    /// Seconds from a pod's creation until it is ready and serves.
    #[arg(
        long,
        env = "TIDAL_SCALER_SIMULATE_POD_START_SECONDS",
        default_value_t = 30.0
    )]
    pub pod_start_seconds: f64,
    /// Replicas at the start (default: the fewest that serve the first second at or below
    /// --slo-utilization, within the policy's bounds).
    #[arg(long, env = "TIDAL_SCALER_SIMULATE_INITIAL_REPLICAS")]
    pub initial_replicas: Option<u32>,
    /// A second violates the SLO when utilization is above this...
    #[arg(
        long,
        env = "TIDAL_SCALER_SIMULATE_SLO_UTILIZATION",
        default_value_t = 0.9
    )]
    pub slo_utilization: f64,
    /// ...or when the backlog (messages or requests) is above this.
    #[arg(long, env = "TIDAL_SCALER_SIMULATE_SLO_LAG", default_value_t = 1000.0)]
    pub slo_lag: f64,
    /// KEDA's lagThreshold (default: the policy's kafkaLag lagPerReplica).
    #[arg(long, env = "TIDAL_SCALER_SIMULATE_LAG_PER_REPLICA")]
    pub lag_per_replica: Option<f64>,
    /// Partitions of the consumed topic (caps lag-based replica counts).
    #[arg(long, env = "TIDAL_SCALER_SIMULATE_PARTITIONS", default_value_t = 12)]
    pub partitions: u32,
    /// Seconds of consumption the committed offset trails by (half the consumer's
    /// auto-commit interval): the lag reported even with no backlog.
    #[arg(
        long,
        env = "TIDAL_SCALER_SIMULATE_COMMIT_LAG_SECONDS",
        default_value_t = 2.5
    )]
    pub commit_lag_seconds: f64,
    /// The HPA's and KEDA's loops run at the trace seconds `s` where `s + offset` is a
    /// multiple of their period (15 s, 30 s); vary it to see the effect of their phase.
    #[arg(
        long,
        env = "TIDAL_SCALER_SIMULATE_SYNC_OFFSET_SECONDS",
        default_value_t = 0
    )]
    pub sync_offset_seconds: u64,
}

impl SimulateArgs {
    /// The replay options these flags give.
    pub fn options(&self) -> crate::simulate::Options {
        crate::simulate::Options {
            model: crate::simulate::ModelParams {
                capacity_per_replica: self.capacity_per_replica,
                pod_start_seconds: self.pod_start_seconds,
                slo_utilization: self.slo_utilization,
                slo_lag: self.slo_lag,
                commit_lag_seconds: self.commit_lag_seconds,
            },
            initial_replicas: self.initial_replicas,
            lag_per_replica: self.lag_per_replica,
            partitions: self.partitions,
            sync_offset_seconds: self.sync_offset_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent_and_every_flag_has_an_env_twin() {
        tidal_core::process::assert_cli_conventions(Cli::command());
    }
}

//! Command-line interface of `tidal-scaler`. Every flag has an environment-variable twin.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// tidal-scaler: reads ScalingPolicies, evaluates formulas and scales workloads.
#[derive(Debug, Parser)]
#[command(name = "tidal-scaler", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller against the cluster in KUBECONFIG or the in-cluster config.
    Run(RunArgs),
    /// Decide once, offline: read a policy, state and observations as JSON, print the decision.
    Decide(OfflineArgs),
    /// Replay a recorded history offline and print the decisions over time.
    Simulate(OfflineArgs),
    /// Print the ScalingPolicy CRD as YAML (manifests/crd is generated from this).
    Crdgen,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address of the metrics and health server.
    #[arg(long, env = "TIDAL_SCALER_LISTEN", default_value = "127.0.0.1:9465")]
    pub listen: SocketAddr,
    /// Take part in Lease-based leader election (only the leader writes).
    #[arg(long, env = "TIDAL_SCALER_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Base URL of the Prometheus HTTP API used by `prometheus` metrics.
    #[arg(long, env = "TIDAL_SCALER_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct OfflineArgs {
    /// JSON input file ("-" for standard input).
    #[arg(long, env = "TIDAL_SCALER_INPUT", default_value = "-")]
    pub input: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent_and_every_flag_has_an_env_twin() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                if arg.get_long().is_some() && !matches!(arg.get_id().as_str(), "help" | "version")
                {
                    assert!(
                        arg.get_env().is_some(),
                        "{} --{} has no env twin",
                        sub.get_name(),
                        arg.get_id()
                    );
                }
            }
        }
    }

    #[test]
    fn run_defaults() {
        let cli = Cli::try_parse_from(["tidal-scaler", "run"]).expect("parses");
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        assert!(args.leader_elect);
        assert!(args.listen.ip().is_loopback());
    }
}

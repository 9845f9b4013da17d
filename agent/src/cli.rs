//! Command-line flags of `tidal-agent`. Every flag has an environment-variable twin.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
pub use tidal_core::process::LogFormat;

/// What the agent covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every pod on the node (deployed as a DaemonSet).
    Daemonset,
    /// Only the agent's own pod (deployed as a sidecar).
    Sidecar,
}

/// tidal-agent: samples node and container CPU/memory and Kafka lag, exports Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "tidal-agent", version, about, long_about = None)]
pub struct Cli {
    /// Address the metrics/health server listens on.
    #[arg(long, env = "TIDAL_AGENT_LISTEN", default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,

    /// Seconds between two samples (fractions allowed, minimum 0.1).
    #[arg(long, env = "TIDAL_AGENT_INTERVAL_SECONDS", default_value_t = 1.0)]
    pub interval_seconds: f64,

    /// Root of the proc file system (the DaemonSet mounts the host's under /host/proc).
    #[arg(long, env = "TIDAL_AGENT_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,

    /// Root of the cgroup file system (the DaemonSet mounts the host's under /host/sys/fs/cgroup).
    #[arg(
        long,
        env = "TIDAL_AGENT_CGROUP_ROOT",
        default_value = "/sys/fs/cgroup"
    )]
    pub cgroup_root: PathBuf,

    /// Most files and directories the cgroup sampler keeps open between rounds (re-read with
    /// pread; past the cap, files are opened and closed each round). Each held cgroupfs file
    /// costs ~5.5 KiB of kernel memory, charged to the agent's cgroup. 0 holds none.
    #[arg(long, env = "TIDAL_AGENT_MAX_OPEN_FILES", default_value_t = crate::samplers::cgroup::DEFAULT_MAX_OPEN_FILES)]
    pub max_open_files: usize,

    /// daemonset: every pod on the node; sidecar: only this pod.
    #[arg(long, env = "TIDAL_AGENT_MODE", value_enum, default_value_t = Mode::Daemonset)]
    pub mode: Mode,

    /// Name of this node (the DaemonSet sets it from the downward API).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// JSON file listing Kafka clusters whose consumer lag to sample (see docs/agent.md);
    /// without it the kafka_lag sampler is off.
    #[arg(long, env = "TIDAL_AGENT_KAFKA_CONFIG")]
    pub kafka_config: Option<PathBuf>,

    /// Export only the Kafka partitions owned by consumers in pods on this node; the agent
    /// holding the election Lease also exports unowned ones. Needs --node-name and API access.
    #[arg(long, env = "TIDAL_AGENT_ATTRIBUTE_TO_NODE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub attribute_to_node: bool,

    /// Namespace of the election Lease used with --attribute-to-node (the DaemonSet sets
    /// POD_NAMESPACE from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// `/healthz` fails once the sampler has not completed a round for this long (a hung
    /// sampler must not serve old data as current; the liveness probe then restarts the
    /// agent). Default: 3 intervals, at least 3 seconds.
    #[arg(long, env = "TIDAL_AGENT_STALE_AFTER_SECONDS")]
    pub stale_after_seconds: Option<f64>,

    /// Shape of the log lines on stdout: text (human-readable) or json (one object per line,
    /// for log shippers). `RUST_LOG` still sets the level.
    #[arg(long, env = "TIDAL_AGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Export the container and node series under the kubelet/cAdvisor and node_exporter
    /// names (`container_cpu_usage_seconds_total`, `node_load1`, ...) instead of Tidal's
    /// (`tidal_agent_container_cpu_usage_seconds_total`, ...). Only where nothing else exports
    /// them: beside the kubelet's cAdvisor or node_exporter, every query without a `job`
    /// filter would count them twice. Tidal's dashboards and rules read Tidal's names.
    #[arg(long, env = "TIDAL_AGENT_COMPATIBLE_METRIC_NAMES", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub compatible_metric_names: bool,
}

/// A flag value that cannot be used, naming the flag.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CliError {
    #[error("--interval-seconds (TIDAL_AGENT_INTERVAL_SECONDS) must be a number >= 0.1, got {0}")]
    Interval(f64),
    #[error(
        "--stale-after-seconds (TIDAL_AGENT_STALE_AFTER_SECONDS) must be at least twice \
         --interval-seconds ({interval}), got {got}"
    )]
    StaleAfter { got: f64, interval: f64 },
}

impl Cli {
    /// Checks values clap cannot check by type.
    pub fn validate(&self) -> Result<(), CliError> {
        if !self.interval_seconds.is_finite() || self.interval_seconds < 0.1 {
            return Err(CliError::Interval(self.interval_seconds));
        }
        if let Some(got) = self.stale_after_seconds
            && !(got.is_finite() && got >= 2.0 * self.interval_seconds)
        {
            return Err(CliError::StaleAfter {
                got,
                interval: self.interval_seconds,
            });
        }
        Ok(())
    }

    /// The staleness bound of `/healthz`: the flag, or 3 intervals (at least 3 s).
    pub fn stale_after(&self) -> std::time::Duration {
        let secs = self
            .stale_after_seconds
            .unwrap_or((3.0 * self.interval_seconds).max(3.0));
        std::time::Duration::from_secs_f64(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let cli = Cli::try_parse_from(["tidal-agent"]).expect("defaults parse");
        assert_eq!(cli.listen.ip().to_string(), "127.0.0.1");
        assert_eq!(cli.mode, Mode::Daemonset);
        assert_eq!(cli.validate(), Ok(()));
    }

    #[test]
    fn staleness_bound_defaults_to_three_intervals_and_is_checked() {
        let cli = Cli::try_parse_from(["tidal-agent", "--interval-seconds", "5"]).expect("parses");
        assert_eq!(cli.stale_after(), std::time::Duration::from_secs(15));
        let cli = Cli::try_parse_from(["tidal-agent"]).expect("parses");
        assert_eq!(cli.stale_after(), std::time::Duration::from_secs(3));
        let cli =
            Cli::try_parse_from(["tidal-agent", "--stale-after-seconds", "1.5"]).expect("parses");
        let err = cli.validate().expect_err("below 2 intervals").to_string();
        assert!(err.contains("--stale-after-seconds"), "{err}");
    }

    #[test]
    fn log_format_defaults_to_text_and_takes_json() {
        let cli = Cli::try_parse_from(["tidal-agent"]).expect("parses");
        assert_eq!(cli.log_format, LogFormat::Text);
        let cli = Cli::try_parse_from(["tidal-agent", "--log-format", "json"]).expect("parses");
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["tidal-agent", "--log-format", "yaml"]).is_err());
    }

    #[test]
    fn bad_interval_names_the_flag() {
        let cli = Cli::try_parse_from(["tidal-agent", "--interval-seconds", "0"]).expect("parses");
        let err = cli.validate().expect_err("0 is rejected").to_string();
        assert!(err.contains("--interval-seconds"), "{err}");
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        tidal_core::process::assert_cli_conventions(Cli::command());
    }
}

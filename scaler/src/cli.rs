//! Command-line interface of `tidal-scaler`. Every flag has an environment-variable twin.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
pub use tidal_core::process::LogFormat;

/// tidal-scaler: reads ScalingPolicies, evaluates formulas and scales workloads.
#[derive(Debug, Parser)]
#[command(name = "tidal-scaler", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Shape of the log lines on stderr: text (human-readable) or json (one object per line,
    /// for log shippers). `RUST_LOG` still sets the level. Before or after the subcommand.
    #[arg(
        long,
        env = "TIDAL_SCALER_LOG_FORMAT",
        value_enum,
        global = true,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller against the cluster in KUBECONFIG or the in-cluster config.
    Run(Box<RunArgs>),
    /// Decide once, offline: read a policy, state and observations as JSON, print the decision.
    Decide(OfflineArgs),
    /// Recommend container requests once, offline: read a policy's `spec.vertical`, usage
    /// samples and OOM kills as JSON, print the vertical recommendation as JSON.
    Recommend(RecommendArgs),
    /// Moved to `tidal-sim simulate` (the `sim/` crate, docs/simulate.md): hidden, accepts
    /// any arguments and exits 2 with a line naming the replacement.
    #[command(hide = true, disable_help_flag = true)]
    Simulate(MovedArgs),
    /// Print the ScalingPolicy CRD as YAML (manifests/crd is generated from this).
    Crdgen,
    /// Turn HorizontalPodAutoscalers (autoscaling/v2) and KEDA ScaledObjects (YAML, as
    /// `kubectl get -o yaml` prints them) into ScalingPolicies, with a comment for every field
    /// that has no exact equivalent (docs/migration.md).
    Import(ImportArgs),
    /// Moved to `tidal-sim plot`, as `simulate`.
    #[command(hide = true, disable_help_flag = true)]
    Plot(MovedArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address of the metrics and health server.
    #[arg(long, env = "TIDAL_SCALER_LISTEN", default_value = "127.0.0.1:9465")]
    pub listen: SocketAddr,
    /// Take part in Lease-based leader election (only the leader writes). With `false` this
    /// process writes unconditionally: run exactly one.
    #[arg(long, env = "TIDAL_SCALER_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "tidal-system")]
    pub lease_namespace: String,
    /// Name of the election Lease.
    #[arg(long, env = "TIDAL_SCALER_LEASE_NAME", default_value = "tidal-scaler")]
    pub lease_name: String,
    /// A leader that has not renewed for this long is replaced (it renews every third of it).
    #[arg(long, env = "TIDAL_SCALER_LEASE_DURATION_SECONDS", default_value_t = 6)]
    pub lease_duration_seconds: u64,
    /// This replica's identity in the Lease (default: the pod name, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Only watch ScalingPolicies in this namespace (default: all namespaces).
    #[arg(long, env = "TIDAL_SCALER_NAMESPACE")]
    pub namespace: Option<String>,
    /// Only act on ScalingPolicies whose labels match this selector (`key=value`, `key`,
    /// `!key`, `key in (a,b)`, comma separated), so that two installs can split the policies
    /// of one cluster, e.g. during a migration or a canary. Default: every policy.
    #[arg(long, env = "TIDAL_SCALER_POLICY_SELECTOR")]
    pub policy_selector: Option<String>,
    /// Base URL of the Prometheus HTTP API used by `prometheus` metrics (and by `resource`
    /// metrics when no agents are configured).
    #[arg(long, env = "TIDAL_SCALER_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Timeout of one Prometheus query.
    #[arg(
        long,
        env = "TIDAL_SCALER_PROMETHEUS_TIMEOUT_SECONDS",
        default_value_t = 5.0
    )]
    pub prometheus_timeout_seconds: f64,
    /// Largest Prometheus answer read, in bytes (16 MiB); reading stops past it and the
    /// queries' metrics are invalid (`too_large`).
    #[arg(long, env = "TIDAL_SCALER_PROMETHEUS_MAX_BODY_BYTES", default_value_t = crate::sources::body::DEFAULT_PROMETHEUS_MAX_BODY_BYTES)]
    pub prometheus_max_body_bytes: usize,
    /// How to authenticate to Prometheus (bearer token, basic auth, TLS).
    #[command(flatten)]
    pub prometheus_auth: PrometheusAuthArgs,
    /// Fast path: base URLs of tidal-agents to scrape directly (`http://host:port`), comma
    /// separated. Alternative to `--agent-selector`.
    #[arg(long, env = "TIDAL_SCALER_AGENT_URLS", value_delimiter = ',')]
    pub agent_url: Vec<String>,
    /// Fast path: find the agents as the pods matching this label selector (in
    /// `--agent-namespace`) and scrape `podIP:--agent-port`.
    #[arg(long, env = "TIDAL_SCALER_AGENT_SELECTOR")]
    pub agent_selector: Option<String>,
    /// Namespace of the agent pods.
    #[arg(
        long,
        env = "TIDAL_SCALER_AGENT_NAMESPACE",
        default_value = "tidal-system"
    )]
    pub agent_namespace: String,
    /// Port of the agents' metrics server.
    #[arg(long, env = "TIDAL_SCALER_AGENT_PORT", default_value_t = 9464)]
    pub agent_port: u16,
    /// Timeout of one agent scrape.
    #[arg(
        long,
        env = "TIDAL_SCALER_AGENT_TIMEOUT_SECONDS",
        default_value_t = 2.0
    )]
    pub agent_timeout_seconds: f64,
    /// Largest agent scrape read, in bytes (64 MiB; a node with 1,000 containers serves about
    /// 3.5 MB); reading stops past it and that agent's pods count as missing (`too_large`).
    #[arg(long, env = "TIDAL_SCALER_AGENT_MAX_BODY_BYTES", default_value_t = crate::sources::body::DEFAULT_AGENT_MAX_BODY_BYTES)]
    pub agent_max_body_bytes: usize,
    /// An agent whose data is older than this (by its own `tidal_agent_snapshot_age_seconds`)
    /// is not used: its pods count as missing (no scale-down on them). Three of the agents'
    /// default 1 s intervals.
    #[arg(
        long,
        env = "TIDAL_SCALER_AGENT_MAX_AGE_SECONDS",
        default_value_t = 3.0
    )]
    pub agent_max_age_seconds: f64,
    /// Evaluation interval of a policy whose metrics all come from the fast path (agents,
    /// Kafka).
    #[arg(
        long,
        env = "TIDAL_SCALER_FAST_INTERVAL_SECONDS",
        default_value_t = 1.0
    )]
    pub fast_interval_seconds: f64,
    /// Evaluation interval of a policy with a `prometheus` metric (or resource metrics read
    /// through Prometheus).
    #[arg(
        long,
        env = "TIDAL_SCALER_PROMETHEUS_INTERVAL_SECONDS",
        default_value_t = 15.0
    )]
    pub prometheus_interval_seconds: f64,
    /// `/healthz` fails (503) once the controller's loop has completed no cycle for this long.
    /// Default: max(30 s, 10 × `--fast-interval-seconds`).
    #[arg(long, env = "TIDAL_SCALER_CYCLE_WATCHDOG_SECONDS")]
    pub cycle_watchdog_seconds: Option<f64>,
    /// Timeout of connecting to the Kubernetes API.
    #[arg(
        long,
        env = "TIDAL_SCALER_KUBE_CONNECT_TIMEOUT_SECONDS",
        default_value_t = 5.0
    )]
    pub kube_connect_timeout_seconds: f64,
    /// Longest wait for the next bytes of a Kubernetes API response (not for watches, which
    /// get 300 s: more than the API server's 290 s watch timeout).
    #[arg(
        long,
        env = "TIDAL_SCALER_KUBE_READ_TIMEOUT_SECONDS",
        default_value_t = 15.0
    )]
    pub kube_read_timeout_seconds: f64,
    /// Named Kafka clusters, `name=host:port[;host:port]`, comma separated. A ScalingPolicy's
    /// `kafkaLag.cluster` must be one of these names (see `--kafka-allow-raw-addresses`).
    #[arg(long, env = "TIDAL_SCALER_KAFKA_CLUSTERS", value_delimiter = ',')]
    pub kafka_cluster: Vec<String>,
    /// Kafka clusters with SASL (PLAIN, SCRAM-SHA-256/512) and TLS (CA, client certificate):
    /// the agent's `--kafka-config` JSON format (docs/secured-sources.md). The scaler reads each
    /// cluster's name, bootstrap, sasl, tls, timeouts and caps and ignores the agent's
    /// sampling fields, so one file (one Secret) serves both. Its names join `--kafka-cluster`'s.
    #[arg(long, env = "TIDAL_SCALER_KAFKA_CONFIG")]
    pub kafka_config: Option<PathBuf>,
    /// Also accept a `kafkaLag.cluster` that is not a `--kafka-cluster` name as a bootstrap list
    /// (`host:port,host:port`). Off: anyone who may create a ScalingPolicy could otherwise make
    /// the scaler connect to any address.
    #[arg(long, env = "TIDAL_SCALER_KAFKA_ALLOW_RAW_ADDRESSES", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub kafka_allow_raw_addresses: bool,
    /// Timeout of one Kafka request.
    #[arg(
        long,
        env = "TIDAL_SCALER_KAFKA_TIMEOUT_SECONDS",
        default_value_t = 3.0
    )]
    pub kafka_timeout_seconds: f64,
    /// Deadline of one whole Kafka collection round of a cluster (bootstrap tries, metadata,
    /// every broker). Default: twice `--kafka-timeout-seconds`.
    #[arg(long, env = "TIDAL_SCALER_KAFKA_ROUND_TIMEOUT_SECONDS")]
    pub kafka_round_timeout_seconds: Option<f64>,
    /// Largest Kafka response frame accepted, in bytes (16 MiB); a larger length prefix fails
    /// the request before anything is allocated.
    #[arg(long, env = "TIDAL_SCALER_KAFKA_MAX_FRAME_BYTES", default_value_t = tidal_core::kafka::limits::DEFAULT_MAX_FRAME_BYTES)]
    pub kafka_max_frame_bytes: usize,
    /// Bytes of Kafka response frames held at once over every cluster: a frame waits, within
    /// its request's timeout, while others hold the budget, so clusters collected concurrently
    /// cannot each cost a whole frame at once. Default: twice `--kafka-max-frame-bytes`.
    #[arg(long, env = "TIDAL_SCALER_KAFKA_FRAME_BUDGET_BYTES")]
    pub kafka_frame_budget_bytes: Option<usize>,
    /// Most brokers one Kafka Metadata response may advertise; more fails the round.
    #[arg(long, env = "TIDAL_SCALER_KAFKA_MAX_BROKERS", default_value_t = tidal_core::kafka::limits::DEFAULT_MAX_BROKERS)]
    pub kafka_max_brokers: usize,
    /// Most consumer groups one Kafka round collects; more fails the round.
    #[arg(long, env = "TIDAL_SCALER_KAFKA_MAX_GROUPS", default_value_t = tidal_core::kafka::limits::DEFAULT_MAX_GROUPS)]
    pub kafka_max_groups: usize,
    /// Most partitions one Kafka Metadata response may list; more fails the round.
    #[arg(long, env = "TIDAL_SCALER_KAFKA_MAX_PARTITIONS", default_value_t = tidal_core::kafka::limits::DEFAULT_MAX_PARTITIONS)]
    pub kafka_max_partitions: usize,
    /// Vertical `InPlace`/`Template`: change a container's requests only once its
    /// recommendation rests on this many usage samples (one per evaluation).
    #[arg(long, env = "TIDAL_SCALER_VERTICAL_MIN_SAMPLES", default_value_t = 60)]
    pub vertical_min_samples: u64,
    /// Vertical `InPlace`/`Template`: at most one round of request changes per policy this
    /// often.
    #[arg(
        long,
        env = "TIDAL_SCALER_VERTICAL_APPLY_INTERVAL_SECONDS",
        default_value_t = 60.0
    )]
    pub vertical_apply_interval_seconds: f64,
    /// Vertical: write each policy's ScalingPolicyCheckpoint (its histograms) at most this
    /// often; a new leader loses at most this much of the vertical history.
    #[arg(
        long,
        env = "TIDAL_SCALER_VERTICAL_CHECKPOINT_INTERVAL_SECONDS",
        default_value_t = 60.0
    )]
    pub vertical_checkpoint_interval_seconds: f64,
    /// Status writes that only refresh metric values and the checkpoint, per second at most
    /// (changes of a status are written at once). With N policies each status is refreshed
    /// every max(15 s, N / this); the cycle never waits for status writes.
    #[arg(
        long,
        env = "TIDAL_SCALER_STATUS_REFRESH_PER_SECOND",
        default_value_t = 50.0
    )]
    pub status_refresh_per_second: f64,
    /// Policies with per-policy decision and error counters of their own
    /// (`tidal_scaler_policy_decisions_total`, `tidal_scaler_policy_errors_total`); the
    /// policies past it share `policy="_overflow"`, so those two families never have more
    /// than (N + 1) x 20 series. A deleted policy frees its place.
    #[arg(long, env = "TIDAL_SCALER_MAX_POLICY_SERIES", default_value_t = crate::metrics::DEFAULT_MAX_POLICY_SERIES)]
    pub max_policy_series: usize,
}

#[derive(Debug, Args)]
pub struct OfflineArgs {
    /// JSON input file ("-" for standard input).
    #[arg(long, env = "TIDAL_SCALER_INPUT", default_value = "-")]
    pub input: PathBuf,
}

/// `tidal-scaler recommend` (`crate::recommend`, `docs/decide.md`).
#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// JSON input file ("-" for standard input).
    #[arg(long, env = "TIDAL_SCALER_INPUT", default_value = "-")]
    pub input: PathBuf,
    /// Also write the history (a vertical checkpoint) to this file, to pass back as the
    /// `checkpoint` of a later input.
    #[arg(long, env = "TIDAL_SCALER_CHECKPOINT_OUTPUT")]
    pub checkpoint_output: Option<PathBuf>,
}

/// `tidal-scaler import` (`crate::import`).
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// YAML file of HPAs and ScaledObjects, several documents or a `List` ("-" for standard
    /// input).
    #[arg(
        long,
        short = 'f',
        env = "TIDAL_SCALER_IMPORT_FILE",
        default_value = "-"
    )]
    pub file: PathBuf,
    /// The `kafkaLag.cluster` to write for KEDA kafka triggers: a `--kafka-cluster` or
    /// `--kafka-config` name of the scaler (default `kafka`, with a note).
    #[arg(long, env = "TIDAL_SCALER_IMPORT_KAFKA_CLUSTER")]
    pub kafka_cluster: Option<String>,
    /// Fail (exit 1, nothing printed) when any field has no exact equivalent.
    #[arg(long, env = "TIDAL_SCALER_IMPORT_STRICT")]
    pub strict: bool,
}

/// What the subcommands that moved to `tidal-sim` accept: anything, ignored (`main` says where
/// they went and exits 2).
#[derive(Debug, Args)]
pub struct MovedArgs {
    /// The arguments of the old subcommand; ignored.
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub ignored: Vec<std::ffi::OsString>,
}

/// Credentials and TLS of the Prometheus source. Secrets are read from files (mounted from a
/// Secret), again before every query, so a rotated token is used without a restart; they are
/// never logged nor written into a status.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PrometheusAuthArgs {
    /// File holding a bearer token (`Authorization: Bearer <token>`), e.g. a service account
    /// token in front of kube-rbac-proxy or a managed Prometheus.
    #[arg(long, env = "TIDAL_SCALER_PROMETHEUS_BEARER_TOKEN_FILE")]
    pub prometheus_bearer_token_file: Option<PathBuf>,
    /// Basic-auth user name (with `--prometheus-basic-auth-password-file`).
    #[arg(long, env = "TIDAL_SCALER_PROMETHEUS_BASIC_AUTH_USERNAME")]
    pub prometheus_basic_auth_username: Option<String>,
    /// File holding the basic-auth password.
    #[arg(long, env = "TIDAL_SCALER_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE")]
    pub prometheus_basic_auth_password_file: Option<PathBuf>,
    /// PEM file of the CA that signed Prometheus's certificate (an `https://` URL); default:
    /// the system trust store.
    #[arg(long, env = "TIDAL_SCALER_PROMETHEUS_CA_FILE")]
    pub prometheus_ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `--prometheus-key-file`).
    #[arg(long, env = "TIDAL_SCALER_PROMETHEUS_CERT_FILE")]
    pub prometheus_cert_file: Option<PathBuf>,
    /// PEM private key of `--prometheus-cert-file`.
    #[arg(long, env = "TIDAL_SCALER_PROMETHEUS_KEY_FILE")]
    pub prometheus_key_file: Option<PathBuf>,
}

/// The text of an input file, or of standard input for "-", and how to name it in errors (the
/// offline subcommands' `--input`, and `tidal-sim plot`'s).
pub fn read_input(path: &std::path::Path) -> anyhow::Result<(String, String)> {
    use anyhow::Context;
    use std::io::Read;
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        Ok((s, "standard input".to_owned()))
    } else {
        let s =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok((s, path.display().to_string()))
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

    #[test]
    fn log_format_is_global_and_defaults_to_text() {
        let cli = Cli::try_parse_from(["tidal-scaler", "crdgen"]).expect("parses");
        assert_eq!(cli.log_format, LogFormat::Text);
        for args in [
            &["tidal-scaler", "--log-format", "json", "run"][..],
            &["tidal-scaler", "run", "--log-format", "json"],
            &["tidal-scaler", "decide", "--log-format=json"],
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            assert_eq!(cli.log_format, LogFormat::Json, "{args:?}");
        }
        assert!(Cli::try_parse_from(["tidal-scaler", "--log-format", "yaml", "crdgen"]).is_err());
        let log_format = Cli::command()
            .get_arguments()
            .find(|a| a.get_id() == "log_format")
            .and_then(|a| a.get_env().map(|e| e.to_owned()));
        assert_eq!(
            log_format.as_deref(),
            Some(std::ffi::OsStr::new("TIDAL_SCALER_LOG_FORMAT"))
        );
    }

    #[test]
    fn run_defaults() {
        let cli = Cli::try_parse_from(["tidal-scaler", "run"]).expect("parses");
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        assert!(args.leader_elect);
        assert!(args.listen.ip().is_loopback());
        assert!(
            !args.kafka_allow_raw_addresses,
            "raw Kafka addresses are refused by default"
        );
        assert_eq!(args.kafka_round_timeout_seconds, None);
        assert_eq!(args.kafka_max_frame_bytes, 16 << 20);
        assert_eq!(args.kafka_frame_budget_bytes, None);
        assert_eq!(args.agent_max_body_bytes, 64 << 20);
        assert_eq!(args.prometheus_max_body_bytes, 16 << 20);
        assert_eq!(args.cycle_watchdog_seconds, None);
        assert_eq!(
            (
                args.kube_connect_timeout_seconds,
                args.kube_read_timeout_seconds
            ),
            (5.0, 15.0)
        );
        assert_eq!(
            (
                args.kafka_max_brokers,
                args.kafka_max_groups,
                args.kafka_max_partitions
            ),
            (1_000, 10_000, 100_000)
        );
    }

    #[test]
    fn kafka_hardening_flags_parse() {
        let cli = Cli::try_parse_from([
            "tidal-scaler",
            "run",
            "--kafka-allow-raw-addresses",
            "--kafka-round-timeout-seconds",
            "4.5",
            "--kafka-max-frame-bytes",
            "1048576",
        ])
        .expect("parses");
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        assert!(args.kafka_allow_raw_addresses);
        assert_eq!(args.kafka_round_timeout_seconds, Some(4.5));
        assert_eq!(args.kafka_max_frame_bytes, 1 << 20);
        let cli = Cli::try_parse_from(["tidal-scaler", "run", "--kafka-allow-raw-addresses=false"])
            .expect("parses");
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        assert!(!args.kafka_allow_raw_addresses);
    }
}

//! The Kafka configuration file (`--kafka-config FILE`, JSON), one format for both binaries:
//! the agent's `kafka_lag` sampler reads every field; the scaler reads the connection fields
//! (`name`, `bootstrap`, `sasl`, `tls`, the timeouts and caps) and ignores the sampler's
//! (`interval_seconds`, `groups`, `topics`, `granularity`, `offset_reset_policy`), since a
//! ScalingPolicy names its own group and topics. So one file, mounted from one Secret, serves
//! both.
//!
//! ```json
//! {
//!   "interval_seconds": 5,
//!   "clusters": [{
//!     "name": "main",
//!     "bootstrap": ["kafka-0.kafka:9092"],
//!     "sasl": {"mechanism": "SCRAM-SHA-512", "username": "tidal", "password_file": "/etc/tidal/kafka/password"},
//!     "tls": {"ca_file": "/etc/tidal/kafka/ca.pem", "cert_file": "/etc/tidal/kafka/tls.crt", "key_file": "/etc/tidal/kafka/tls.key"},
//!     "groups": "^orders-",
//!     "topics": "^orders\\.",
//!     "granularity": "partition",
//!     "offset_reset_policy": "latest",
//!     "request_timeout_seconds": 5,
//!     "round_timeout_seconds": 10,
//!     "max_frame_bytes": 16777216,
//!     "max_brokers": 1000,
//!     "max_groups": 10000,
//!     "max_partitions": 100000
//!   }]
//! }
//! ```
//!
//! Every field but `clusters[].name` and `clusters[].bootstrap` has a default: discover every
//! group (`groups` and `topics` are optional regular expressions), per-topic granularity,
//! KEDA's `latest` reset policy, a round deadline of twice the request timeout and the client's
//! caps (`tidal_core::kafka::Limits`). Unknown fields are rejected, and every error names its field,
//! for example `clusters[1].groups: regex parse error: ...`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ClientConfig, Credentials, Limits, Mechanism, ResetPolicy, TlsConfig};
use crate::tls::TlsFieldNames;
use regex::Regex;
use serde::Deserialize;

/// A config that cannot be used, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {field}: {problem}")]
    Invalid {
        path: PathBuf,
        field: String,
        problem: String,
    },
}

/// Series granularity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// One series per group and partition.
    Partition,
    /// One series per group and topic (sums), the default.
    #[default]
    Topic,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default = "default_interval")]
    interval_seconds: f64,
    clusters: Vec<RawCluster>,
}

fn default_interval() -> f64 {
    5.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    bootstrap: Vec<String>,
    #[serde(default)]
    sasl: Option<RawSasl>,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default)]
    groups: Option<String>,
    #[serde(default)]
    topics: Option<String>,
    #[serde(default)]
    granularity: Granularity,
    #[serde(default)]
    offset_reset_policy: Option<String>,
    #[serde(default = "default_timeout")]
    request_timeout_seconds: f64,
    #[serde(default)]
    round_timeout_seconds: Option<f64>,
    #[serde(default)]
    max_frame_bytes: Option<usize>,
    #[serde(default)]
    max_brokers: Option<usize>,
    #[serde(default)]
    max_groups: Option<usize>,
    #[serde(default)]
    max_partitions: Option<usize>,
}

fn default_timeout() -> f64 {
    5.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    server_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSasl {
    mechanism: String,
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
}

impl std::fmt::Debug for RawSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// One validated cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub client: ClientConfig,
    pub groups: Option<Regex>,
    pub topics: Option<Regex>,
    pub granularity: Granularity,
    pub reset_policy: ResetPolicy,
}

/// The validated sampler configuration.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    pub interval: Duration,
    pub clusters: Vec<ClusterConfig>,
}

impl KafkaConfig {
    /// Reads and validates `path`; every cluster's client sends `client_id`.
    pub fn load(path: &Path, client_id: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text, client_id)
    }

    /// Validates the JSON text of a config (`path` only names it in errors).
    pub fn parse(path: &Path, text: &str, client_id: &str) -> Result<Self, ConfigError> {
        // serde_path_to_error names the field of any type error (`clusters[0].granularity`).
        let mut de = serde_json::Deserializer::from_str(text);
        let raw: RawFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            let source = e.into_inner();
            if field == "." {
                ConfigError::Parse {
                    path: path.to_path_buf(),
                    source,
                }
            } else {
                // serde quotes the value it refused: never for a credential.
                let problem = if field.contains(".sasl.") {
                    "invalid value (expected a string; the value is not shown)".to_string()
                } else {
                    source.to_string()
                };
                ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field,
                    problem,
                }
            }
        })?;
        let bad = |field: String, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            problem,
        };
        if !raw.interval_seconds.is_finite() || raw.interval_seconds < 0.5 {
            return Err(bad(
                "interval_seconds".into(),
                format!("must be >= 0.5, got {}", raw.interval_seconds),
            ));
        }
        if raw.clusters.is_empty() {
            return Err(bad("clusters".into(), "lists no cluster".into()));
        }
        let mut clusters = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, c) in raw.clusters.into_iter().enumerate() {
            let f = |name: &str| format!("clusters[{i}].{name}");
            if c.name.is_empty() || !names.insert(c.name.clone()) {
                return Err(bad(
                    f("name"),
                    format!("must be non-empty and unique, got {:?}", c.name),
                ));
            }
            if c.bootstrap.is_empty() {
                return Err(bad(f("bootstrap"), "lists no broker".into()));
            }
            for (j, b) in c.bootstrap.iter().enumerate() {
                let port_ok = b
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !port_ok {
                    return Err(bad(
                        format!("clusters[{i}].bootstrap[{j}]"),
                        format!("{b:?} is not host:port"),
                    ));
                }
            }
            let regex = |field: &str, v: Option<String>| -> Result<Option<Regex>, ConfigError> {
                v.map(|r| Regex::new(&r).map_err(|e| bad(f(field), e.to_string())))
                    .transpose()
            };
            let groups = regex("groups", c.groups)?;
            let topics = regex("topics", c.topics)?;
            let reset_policy = match c.offset_reset_policy.as_deref() {
                None | Some("latest") => ResetPolicy::Latest,
                Some("earliest") => ResetPolicy::Earliest,
                Some("zero") => ResetPolicy::Zero,
                Some(other) => {
                    return Err(bad(
                        f("offset_reset_policy"),
                        format!("{other:?} is not latest, earliest or zero"),
                    ));
                }
            };
            if !c.request_timeout_seconds.is_finite()
                || !(0.1..=120.0).contains(&c.request_timeout_seconds)
            {
                return Err(bad(
                    f("request_timeout_seconds"),
                    "must be between 0.1 and 120".into(),
                ));
            }
            let sasl = match c.sasl {
                None => None,
                Some(s) => {
                    let mechanism = Mechanism::parse(&s.mechanism).ok_or_else(|| {
                        bad(
                            f("sasl.mechanism"),
                            format!(
                                "{:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                                s.mechanism
                            ),
                        )
                    })?;
                    let password = match (s.password, s.password_file) {
                        (Some(p), None) => p,
                        (None, Some(file)) => {
                            let p = std::fs::read_to_string(&file)
                                .map(|p| p.trim_end_matches(['\n', '\r']).to_string())
                                .map_err(|e| {
                                    bad(
                                        f("sasl.password_file"),
                                        format!("{}: {}", file.display(), e.kind()),
                                    )
                                })?;
                            if p.is_empty() {
                                return Err(bad(
                                    f("sasl.password_file"),
                                    format!("{}: the file is empty", file.display()),
                                ));
                            }
                            p
                        }
                        _ => {
                            return Err(bad(
                                f("sasl"),
                                "set exactly one of password and password_file".into(),
                            ));
                        }
                    };
                    Some(Credentials {
                        mechanism,
                        username: s.username,
                        password,
                    })
                }
            };
            let mut client = ClientConfig::new(&c.name, &[]);
            client.bootstrap = c.bootstrap;
            client.sasl = sasl;
            if let Some(t) = c.tls {
                let tls = TlsConfig {
                    ca_file: t.ca_file,
                    cert_file: t.cert_file,
                    key_file: t.key_file,
                    server_name: t.server_name,
                };
                // Built now (files read, key matched to certificate), so a bad PEM fails at
                // start, naming the field, not at the first connection.
                tls.client_config(TlsFieldNames::FILE).map_err(|problem| {
                    // "tls.ca_file: ..." -> field clusters[i].tls.ca_file
                    let (field, problem) = problem
                        .split_once(": ")
                        .map_or((String::from("tls"), problem.clone()), |(f, p)| {
                            (f.to_string(), p.to_string())
                        });
                    bad(f(&field), problem)
                })?;
                client.tls = Some(tls);
            }
            client.request_timeout = Duration::from_secs_f64(c.request_timeout_seconds);
            let round = c
                .round_timeout_seconds
                .unwrap_or(2.0 * c.request_timeout_seconds);
            if !round.is_finite() || !(0.1..=600.0).contains(&round) {
                return Err(bad(
                    f("round_timeout_seconds"),
                    "must be between 0.1 and 600".into(),
                ));
            }
            client.round_timeout = Duration::from_secs_f64(round);
            let limit = |field: &str, v: Option<usize>, default: usize, min: usize| {
                let v = v.unwrap_or(default);
                if v < min {
                    return Err(bad(f(field), format!("must be at least {min}, got {v}")));
                }
                Ok(v)
            };
            let d = Limits::default();
            client.limits = Limits {
                max_frame_bytes: limit(
                    "max_frame_bytes",
                    c.max_frame_bytes,
                    d.max_frame_bytes,
                    64 << 10,
                )?,
                max_brokers: limit("max_brokers", c.max_brokers, d.max_brokers, 1)?,
                max_groups: limit("max_groups", c.max_groups, d.max_groups, 1)?,
                max_partitions: limit("max_partitions", c.max_partitions, d.max_partitions, 1)?,
            };
            client.client_id = client_id.to_string();
            clusters.push(ClusterConfig {
                client,
                groups,
                topics,
                granularity: c.granularity,
                reset_policy,
            });
        }
        Ok(Self {
            interval: Duration::from_secs_f64(raw.interval_seconds),
            clusters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KafkaConfig, String> {
        KafkaConfig::parse(Path::new("kafka.json"), text, "tidal-test").map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let c = parse(r#"{"clusters": [{"name": "m", "bootstrap": ["127.0.0.1:9092"]}]}"#)
            .expect("valid");
        assert_eq!(c.interval, Duration::from_secs(5));
        let m = &c.clusters[0];
        assert_eq!(m.granularity, Granularity::Topic);
        assert_eq!(m.reset_policy, ResetPolicy::Latest);
        assert!(m.groups.is_none() && m.client.sasl.is_none());
        assert_eq!(m.client.round_timeout, Duration::from_secs(10));
        assert_eq!(m.client.limits, Limits::default());
    }

    #[test]
    fn round_deadline_and_caps_are_configurable() {
        let c = parse(
            r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "request_timeout_seconds": 2,
                "max_frame_bytes": 1048576, "max_brokers": 5, "max_groups": 6, "max_partitions": 7}]}"#,
        )
        .expect("valid");
        let cl = &c.clusters[0].client;
        assert_eq!(
            cl.round_timeout,
            Duration::from_secs(4),
            "twice the request timeout"
        );
        assert_eq!(
            cl.limits,
            Limits {
                max_frame_bytes: 1 << 20,
                max_brokers: 5,
                max_groups: 6,
                max_partitions: 7
            }
        );
        let c = parse(
            r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "round_timeout_seconds": 3}]}"#,
        )
        .expect("valid");
        assert_eq!(c.clusters[0].client.round_timeout, Duration::from_secs(3));
    }

    #[test]
    fn every_error_names_its_field() {
        let cases = [
            (r#"{"clusters": []}"#, "clusters: lists no cluster"),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": []}]}"#,
                "clusters[0].bootstrap",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["nohost"]}]}"#,
                "clusters[0].bootstrap[0]",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "groups": "("}]}"#,
                "clusters[0].groups",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "offset_reset_policy": "oldest"}]}"#,
                "clusters[0].offset_reset_policy",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "sasl": {"mechanism": "GSSAPI", "username": "u", "password": "p"}}]}"#,
                "clusters[0].sasl.mechanism",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "sasl": {"mechanism": "PLAIN", "username": "u"}}]}"#,
                "clusters[0].sasl",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"]}, {"name": "m", "bootstrap": ["h:2"]}]}"#,
                "clusters[1].name",
            ),
            (
                r#"{"interval_seconds": 0, "clusters": [{"name": "m", "bootstrap": ["h:1"]}]}"#,
                "interval_seconds",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "granularity": "broker"}]}"#,
                "clusters[0].granularity: unknown variant `broker`",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": "h:1"}]}"#,
                "clusters[0].bootstrap: invalid type",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "bootstrap_servers": "x"}]}"#,
                "unknown field `bootstrap_servers`",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "tls": {"ca_file": "/nonexistent/ca.pem"}}]}"#,
                "clusters[0].tls.ca_file: /nonexistent/ca.pem is not a readable file",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "max_frame_bytes": 10}]}"#,
                "clusters[0].max_frame_bytes: must be at least 65536",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "max_brokers": 0}]}"#,
                "clusters[0].max_brokers",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "round_timeout_seconds": 0}]}"#,
                "clusters[0].round_timeout_seconds",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "tls": {"ca": "x"}}]}"#,
                "clusters[0].tls.ca: unknown field `ca`, expected one of `ca_file`, `cert_file`, `key_file`, `server_name`",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "tls": {"cert_file": "/etc/hostname"}}]}"#,
                "clusters[0].tls.cert_file: a client certificate needs tls.key_file",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "tls": {"ca_file": "/etc/hostname"}}]}"#,
                "clusters[0].tls.ca_file: /etc/hostname: no certificate in the file",
            ),
            (
                r#"{"clusters": [{"name": "m", "bootstrap": ["h:1"], "sasl": {"mechanism": "PLAIN", "username": "u", "password": 12345678}}]}"#,
                "clusters[0].sasl.password: invalid value (expected a string; the value is not shown)",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert!(!err.contains("12345678"), "a password in an error: {err}");
            assert!(err.contains(want), "{text}\n  -> {err}\n  wanted {want}");
            assert!(err.starts_with("kafka.json"), "names the file: {err}");
        }
    }

    #[test]
    fn password_file_is_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("tidal-kcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret\n").expect("write");
        let text = format!(
            r#"{{"clusters": [{{"name": "m", "bootstrap": ["h:1"], "sasl": {{"mechanism": "scram-sha-256", "username": "u", "password_file": {:?}}}}}]}}"#,
            pw.display().to_string()
        );
        let c = parse(&text).expect("valid");
        let sasl = c.clusters[0].client.sasl.clone().expect("sasl");
        assert_eq!(
            (sasl.mechanism, sasl.password.as_str()),
            (Mechanism::ScramSha256, "s3cret")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

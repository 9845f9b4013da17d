//! Errors of the Kafka client. Every variant names the broker (and the API, group or topic
//! where there is one) and maps to a fixed metric label with [`KafkaError::reason`].
//!
//! The messages (`Display`) go into policy statuses, so they never carry bytes a server sent:
//! no payload, no decoded garbage, no server error message, no announced frame length. They say
//! which broker (as configured or as advertised in a valid Metadata response), which step and
//! which cap. What the server sent is kept in fields (`Debug`) and in debug logs.

use std::time::Duration;

use kafka_protocol::ResponseError;

use super::limits::Cap;

/// Why a Kafka request or collection round failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("no bootstrap broker given (kafka cluster {cluster}: field bootstrap)")]
    NoBootstrap { cluster: String },
    #[error("connecting to broker {broker}: {source}")]
    Connect {
        broker: String,
        source: std::io::Error,
    },
    #[error("broker {broker}: {api} timed out")]
    Timeout { broker: String, api: &'static str },
    #[error("broker {broker}: {api}: connection failed: {source}")]
    Io {
        broker: String,
        api: &'static str,
        source: std::io::Error,
    },
    /// `detail` is the decoder's account of what the server sent: for logs, not for messages.
    #[error("broker {broker}: {api}: malformed response")]
    Codec {
        broker: String,
        api: &'static str,
        detail: String,
    },
    #[error("broker {broker}: {api} is not usable: {detail}")]
    Unsupported {
        broker: String,
        api: &'static str,
        detail: String,
    },
    /// `error` is the name of a known Kafka error code (with the code), or "an unknown error code".
    #[error("broker {broker}: {api} failed: {error}")]
    Broker {
        broker: String,
        api: &'static str,
        code: i16,
        error: String,
    },
    #[error("kafka cluster {cluster}: TLS setup: {detail}")]
    Tls { cluster: String, detail: String },
    #[error("broker {broker}: TLS handshake failed: {detail}")]
    TlsHandshake { broker: String, detail: String },
    #[error("broker {broker}: authentication failed: {detail}")]
    Auth { broker: String, detail: String },
    #[error("no broker is known for node id {node_id} (metadata from {broker})")]
    UnknownNode { broker: String, node_id: i32 },
    #[error(
        "broker {broker}: Metadata: node {node_id} advertises an address that is not a plain \
         host:port (not contacted)"
    )]
    BadAdvertisedAddress { broker: String, node_id: i32 },
    #[error("no broker of cluster {cluster} is reachable (tried: {})", join(.attempts))]
    NoBrokerReachable {
        cluster: String,
        attempts: Vec<KafkaError>,
    },
    /// `len` is the length the server announced: for logs, not for messages.
    #[error(
        "broker {broker}: {api}: the response frame is larger than the cap of {max} bytes \
         (max_frame_bytes)"
    )]
    FrameTooLarge {
        broker: String,
        api: &'static str,
        len: u64,
        max: usize,
    },
    #[error(
        "kafka cluster {cluster}: the collection round did not finish within {:.1}s \
         (round_timeout)", .after.as_secs_f64()
    )]
    RoundTimeout { cluster: String, after: Duration },
    #[error(
        "kafka cluster {cluster}: broker {broker} reports more than {max} {cap} (cap {}: the \
         round is refused)", .cap.field()
    )]
    TooMany {
        cluster: String,
        broker: String,
        cap: Cap,
        max: usize,
    },
}

fn join(errors: &[KafkaError]) -> String {
    if errors.is_empty() {
        return "nothing".into();
    }
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl KafkaError {
    /// A fixed, bounded label for metrics (never derived from `Debug`).
    pub fn reason(&self) -> &'static str {
        match self {
            KafkaError::NoBootstrap { .. } => "config",
            KafkaError::Connect { .. } | KafkaError::NoBrokerReachable { .. } => "unreachable",
            KafkaError::Timeout { .. } => "timeout",
            KafkaError::Io { .. } => "io",
            KafkaError::Codec { .. } => "codec",
            KafkaError::Unsupported { .. } => "unsupported",
            KafkaError::Broker { .. } => "broker_error",
            KafkaError::Auth { .. } => "auth",
            KafkaError::Tls { .. } => "config",
            KafkaError::TlsHandshake { .. } => "tls",
            KafkaError::UnknownNode { .. } | KafkaError::BadAdvertisedAddress { .. } => "metadata",
            KafkaError::FrameTooLarge { .. } => "frame_too_large",
            KafkaError::RoundTimeout { .. } => "timeout",
            KafkaError::TooMany { .. } => "cap",
        }
    }
}

/// Turns a Kafka error code into an error naming the broker and API (0 is success).
pub fn check(broker: &str, api: &'static str, code: i16) -> Result<(), KafkaError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        // An unknown code is the server's number: not echoed.
        Some(ResponseError::Unknown(_)) => Err(KafkaError::Broker {
            broker: broker.to_string(),
            api,
            code,
            error: "an unknown error code".into(),
        }),
        Some(e) => Err(KafkaError::Broker {
            broker: broker.to_string(),
            api,
            code,
            error: format!("{e} (code {code})"),
        }),
    }
}

/// Error codes after which the metadata is stale (leader moved, topic recreated).
pub fn needs_metadata_refresh(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(ResponseError::NotLeaderOrFollower)
            | Some(ResponseError::UnknownTopicOrPartition)
            | Some(ResponseError::LeaderNotAvailable)
            | Some(ResponseError::FencedLeaderEpoch)
            | Some(ResponseError::UnknownLeaderEpoch)
            | Some(ResponseError::NotCoordinator)
            | Some(ResponseError::CoordinatorNotAvailable)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_named_errors() {
        assert!(check("b:1", "Metadata", 0).is_ok());
        let e = check("b:1", "ListOffsets", 6)
            .expect_err("6 is an error")
            .to_string();
        assert!(
            e.contains("b:1") && e.contains("ListOffsets") && e.contains("NotLeaderOrFollower"),
            "{e}"
        );
        assert!(needs_metadata_refresh(6));
        assert!(needs_metadata_refresh(3));
        assert!(!needs_metadata_refresh(0));
        assert!(!needs_metadata_refresh(29)); // TopicAuthorizationFailed: refreshing will not help
        let e = check("b:1", "Metadata", 12345)
            .expect_err("unknown")
            .to_string();
        assert!(
            !e.contains("12345") && e.contains("unknown error code"),
            "{e}"
        );
    }
}

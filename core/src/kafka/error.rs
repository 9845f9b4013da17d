//! Errors of the Kafka client. Every variant names the broker (and the API, group or topic
//! where there is one) and maps to a fixed metric label with [`KafkaError::reason`].

use kafka_protocol::ResponseError;

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
    #[error("broker {broker}: {api}: malformed message: {detail}")]
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
    #[error("broker {broker}: {api} failed: {error} (code {code})")]
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
    #[error("no broker of cluster {cluster} is reachable (tried: {tried})")]
    NoBrokerReachable { cluster: String, tried: String },
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
            KafkaError::UnknownNode { .. } => "metadata",
        }
    }
}

/// Turns a Kafka error code into an error naming the broker and API (0 is success).
pub fn check(broker: &str, api: &'static str, code: i16) -> Result<(), KafkaError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(e) => Err(KafkaError::Broker {
            broker: broker.to_string(),
            api,
            code,
            error: e.to_string(),
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
    }
}

//! Bounds on what one collection round may cost, whatever the brokers answer.
//!
//! A `kafkaLag.cluster` can point the scaler at a server nobody vetted, so every number a
//! broker sends that sizes an allocation or a loop is capped: the response frame length, the
//! advertised brokers, the consumer groups and the partitions. A round that would pass a cap
//! fails with [`KafkaError::TooMany`](super::KafkaError::TooMany) (or
//! [`KafkaError::FrameTooLarge`](super::KafkaError::FrameTooLarge)) naming it.

/// Default cap on one response frame: 16 MiB (Kafka's own `socket.request.max.bytes` is
/// 100 MiB for requests; lag responses of 100,000 partitions stay under a few MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;
/// Default cap on the brokers one Metadata response may advertise.
pub const DEFAULT_MAX_BROKERS: usize = 1_000;
/// Default cap on the consumer groups one round keeps.
pub const DEFAULT_MAX_GROUPS: usize = 10_000;
/// Default cap on the partitions one Metadata response may list.
pub const DEFAULT_MAX_PARTITIONS: usize = 100_000;

/// Caps of one client (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest response frame accepted; the buffer grows only as bytes arrive.
    pub max_frame_bytes: usize,
    /// Most brokers a Metadata response may advertise.
    pub max_brokers: usize,
    /// Most consumer groups a round collects (listed groups that are not selected do not count).
    pub max_groups: usize,
    /// Most partitions a Metadata response may list.
    pub max_partitions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_brokers: DEFAULT_MAX_BROKERS,
            max_groups: DEFAULT_MAX_GROUPS,
            max_partitions: DEFAULT_MAX_PARTITIONS,
        }
    }
}

/// Which per-round cap was hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    Brokers,
    Groups,
    Partitions,
}

impl Cap {
    /// What is counted, for messages.
    pub fn what(self) -> &'static str {
        match self {
            Cap::Brokers => "advertised brokers",
            Cap::Groups => "consumer groups",
            Cap::Partitions => "partitions",
        }
    }

    /// The [`Limits`] field that sets it.
    pub fn field(self) -> &'static str {
        match self {
            Cap::Brokers => "max_brokers",
            Cap::Groups => "max_groups",
            Cap::Partitions => "max_partitions",
        }
    }
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what())
    }
}

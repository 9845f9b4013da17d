//! The Kafka admin/lag client, built on the `kafka-protocol` codec and tokio.
//!
//! - [`auth`]: SASL PLAIN and SCRAM-SHA-256/512.
//! - [`conn`]: one broker connection with ApiVersions negotiation, framing and timeouts.
//! - [`frame`]: reading a size-prefixed frame against a cap, growing only as bytes arrive.
//! - [`limits`]: per-round caps (frame bytes, advertised brokers, groups, partitions).
//! - [`config`]: the `--kafka-config` file shared by the agent and the scaler.
//! - [`client`]: the batched collection round (O(brokers + coordinators) requests).
//! - [`lag`]: pure lag arithmetic (reset policies, sums).
//! - [`history`]: per-partition history: Burrow-style status, time lag, rates, time to drain.
//! - [`tls`]: TLS with rustls (CA file or system trust store).
//! - [`error`]: typed errors naming the broker, API and group.

pub mod auth;
pub mod bounds;
pub mod client;
pub mod config;
pub mod conn;
pub mod error;
pub mod frame;
pub mod history;
pub mod lag;
pub mod limits;
pub mod tls;

/// A scripted fake broker for tests (the `fake-broker` feature; never in a binary).
#[cfg(any(test, feature = "fake-broker"))]
pub mod fake;
#[cfg(test)]
mod hardening_tests;

pub use auth::{Credentials, Mechanism};
pub use client::{
    Client, ClientConfig, GroupFilter, GroupInfo, Member, PartitionInfo, Round, Selection,
};
pub use error::KafkaError;
pub use history::{PartitionHistory, Status, time_to_drain};
pub use lag::{LagSum, PartitionOffsets, ResetPolicy, partition_lag};
pub use limits::{Cap, Limits};
pub use tls::TlsConfig;

//! tidal-core: the pieces shared by `tidal-agent`, `tidal-scaler` and the tests.
//!
//! - [`schema`]: every metric name Tidal exports, defined once.
//! - [`exposition`]: `/metrics` content negotiation and the text 0.0.4 rewrite.
//! - [`usage`]: the compact usage document the agent serves the scaler (`/v1/usage`).
//! - [`build`]: version and build information, exported as `*_build_info`.
//! - [`kafka`]: the batched Kafka lag client (ApiVersions, Metadata, ListGroups,
//!   FindCoordinator, DescribeGroups, OffsetFetch, ListOffsets) and the lag arithmetic.
//! - [`tls`]: client TLS (CA, client certificate) for Kafka and Prometheus.
//! - [`lease`]: the Lease-based election (coordination.k8s.io/v1): the agents' Kafka
//!   attribution leader and the scaler's active replica.

pub mod build;
pub mod exposition;
pub mod http;
pub mod kafka;
pub mod lease;
pub mod process;
pub mod schema;
pub mod tls;
pub mod usage;

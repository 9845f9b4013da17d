//! tidal-core: the pieces shared by `tidal-agent`, `tidal-scaler` and the tests.
//!
//! - [`schema`]: every metric name Tidal exports, defined once.
//! - [`build`]: version and build information, exported as `*_build_info`.
//! - [`kafka`]: the batched Kafka lag client (ApiVersions, Metadata, ListGroups,
//!   FindCoordinator, DescribeGroups, OffsetFetch, ListOffsets) and the lag arithmetic.

pub mod build;
pub mod kafka;
pub mod schema;

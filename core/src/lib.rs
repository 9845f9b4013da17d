//! tidal-core: the pieces shared by `tidal-agent`, `tidal-scaler` and the tests.
//!
//! - [`schema`]: every metric name Tidal exports, defined once.
//! - [`build`]: version and build information, exported as `*_build_info`.

pub mod build;
pub mod schema;

//! `tidal-scaler` as a library: the ScalingPolicy CRD types in [`api`], the pure [`engine`]
//! (used by `decide`, `tidal-sim simulate`, the controller and the tests), the [`sources`] of metric
//! data, the [`actuators`] (the only writers to the API server), the [`controller`] loop, its
//! self-[`metrics`] and HTTP [`server`], the offline vertical recommender of [`recommend`], and
//! the command-line definition in [`cli`]. The offline replay of load traces and the SVG
//! charts are the `tidal-sim` crate (`sim/`), which uses [`api`] and [`engine`].

pub mod actuators;
pub mod api;
pub mod cli;
pub mod controller;
/// The pure engine, its own crate (`tidal-engine`, no Kubernetes dependency).
pub use tidal_engine as engine;
pub mod import;
pub mod kube_client;
pub mod metrics;
pub mod readiness;
pub mod recommend;
pub mod run;
pub mod server;
pub mod sources;
pub mod watchdog;

//! `tidal-scaler` as a library: the ScalingPolicy CRD types in [`api`], the pure [`engine`]
//! (used by `decide`, `simulate`, the controller and the tests), the [`sources`] of metric
//! data, the [`actuators`] (the only writers to the API server), the [`controller`] loop, its
//! self-[`metrics`] and HTTP [`server`], the offline replay of load traces in [`simulate`], the
//! SVG charts of [`plot`], the offline vertical recommender of [`recommend`], and the
//! command-line definition in [`cli`].

pub mod actuators;
pub mod api;
pub mod cli;
pub mod controller;
/// The pure engine, its own crate (`tidal-engine`, no Kubernetes dependency).
pub use tidal_engine as engine;
pub mod import;
pub mod kube_client;
pub mod metrics;
pub mod plot;
pub mod readiness;
pub mod recommend;
pub mod run;
pub mod server;
pub mod simulate;
pub mod sources;
pub mod watchdog;

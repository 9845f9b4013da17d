//! `tidal-scaler` as a library: the ScalingPolicy CRD types in [`api`], the pure [`engine`]
//! (used by `decide`, `simulate`, the controller and the tests) and the command-line definition
//! in [`cli`].

pub mod api;
pub mod cli;
pub mod engine;

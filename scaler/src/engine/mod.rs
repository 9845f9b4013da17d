//! The pure engine: no I/O, no clock reads; time is an input.
//!
//! - [`types`]: the serde types going in and out.
//! - [`replica_calc`]: the HPA replica calculator (`replica_calculator.go`).
//! - [`behavior`]: stabilization windows and rate policies (`horizontal.go`).
//! - [`horizontal`]: one decision over all metrics (`horizontal::desired`).
//!
//! `docs/engine.md` gives the formulas and the upstream anchors.

pub mod behavior;
pub mod horizontal;
pub mod replica_calc;
pub mod types;

pub use horizontal::{InputError, decide, desired, validate};
pub use types::{Decision, Input, Observation, Spec, State};

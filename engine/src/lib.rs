//! `tidal-engine`, the pure engine: no I/O, no clock reads; time is an input. It is its own
//! crate with no Kubernetes, HTTP or async dependency, so the build enforces that purity
//! (the scaler re-exports it as `tidal_scaler::engine`).
//!
//! - [`types`]: the serde types going in and out.
//! - [`replica_calc`]: the HPA replica calculator (`replica_calculator.go`).
//! - [`behavior`]: stabilization windows and rate policies (`horizontal.go`).
//! - [`horizontal`]: one decision over all metrics (`horizontal::desired`).
//! - [`lag`]: Kafka consumer-lag proposals (KEDA's Kafka scaler semantics, capped exactly).
//! - [`limits`]: the bounds of settings checked in more than one place (the HPA's
//!   autoscaling/v2 limits, Tidal's `kafkaLag` ones), each with its one message.
//! - [`formula`]: `spec.formula`, a CEL expression over the metrics.
//! - [`vertical`]: container requests from usage history (the VPA recommender), with the
//!   horizontal/vertical coordination rule.
//!
//! `docs/engine.md` and `docs/vertical.md` give the formulas and the upstream anchors.

pub mod behavior;
pub mod formula;
pub mod horizontal;
pub mod lag;
pub mod limits;
pub mod replica_calc;
pub mod types;
pub mod vertical;

/// A small deterministic generator for property tests (here and in the scaler's controller
/// tests); not part of the engine's API.
#[doc(hidden)]
pub mod test_rng;

pub use formula::{CompiledFormula, Formula, FormulaError};
pub use horizontal::{InputError, decide, desired, desired_with_formula, validate};
pub use types::{Decision, Input, Observation, Spec, State};
pub use vertical::{VerticalConfig, VerticalError, VerticalState};

//! A decaying weighted mean and variance of samples (Tidal's; the project's base formula
//! `u = mean(u_i)`, `s^2 = mean((u_i - u)^2)`).
//!
//! Each sample weighs `weight * 2^((t - reference) / half_life)`, exactly as in the decaying
//! histogram (same [`DecayClock`], same half-life and sample weights), so
//!
//! ```text
//! u   = sum(w_i * x_i) / sum(w_i)
//! s^2 = sum(w_i * (x_i - u)^2) / sum(w_i)        (population variance over decayed weights)
//! ```
//!
//! kept as `(W, u, M2)` with West's weighted incremental update (stable: no sum of squares is
//! ever subtracted from another). Moving the reference multiplies `W` and `M2` by the same
//! power of two and leaves `u` alone. Samples can be removed again (a replaced memory peak).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::decaying::DecayClock;
use super::{VerticalError, finite};

/// Decaying `(W, u, M2)`.
#[derive(Debug, Clone, PartialEq)]
pub struct DecayingMoments {
    clock: DecayClock,
    epsilon: f64,
    weight: f64,
    mean: f64,
    m2: f64,
}

/// [`DecayingMoments`] in a checkpoint; exact (no normalization).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MomentsCheckpoint {
    /// The reference time of the weights (as the histograms').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_unix_seconds: Option<f64>,
    /// `W`: the sum of the decayed weights.
    pub weight: f64,
    /// `u`: the weighted mean.
    pub mean: f64,
    /// `M2`: the weighted sum of squared deviations from the mean.
    pub m2: f64,
}

impl DecayingMoments {
    /// Empty. `epsilon` is the weight below which the accumulator counts as empty (the
    /// histograms' epsilon).
    pub fn new(half_life_seconds: f64, epsilon: f64) -> Result<Self, VerticalError> {
        Ok(Self {
            clock: DecayClock::new(half_life_seconds)?,
            epsilon,
            weight: 0.0,
            mean: 0.0,
            m2: 0.0,
        })
    }

    /// Add `x` with `weight` at `t` (callers pass finite values and a non-negative weight).
    pub fn add(&mut self, x: f64, weight: f64, t: f64) {
        let w = weight * self.factor(t);
        if !(w > 0.0 && w.is_finite() && x.is_finite()) {
            return;
        }
        let total = self.weight + w;
        let delta = x - self.mean;
        let mean = self.mean + delta * (w / total);
        self.m2 += w * delta * (x - mean);
        self.mean = mean;
        self.weight = total;
    }

    /// Remove what [`Self::add`] with the same arguments added. When less than epsilon would
    /// be left the accumulator becomes empty (as the histogram's `safeSubtract`).
    pub fn subtract(&mut self, x: f64, weight: f64, t: f64) {
        let w = weight * self.factor(t);
        if !(w > 0.0 && w.is_finite() && x.is_finite()) {
            return;
        }
        let total = self.weight - w;
        if total < self.epsilon {
            self.clear();
            return;
        }
        let mean = (self.weight * self.mean - w * x) / total;
        self.m2 = (self.m2 - w * (x - mean) * (x - self.mean)).max(0.0);
        self.mean = mean;
        self.weight = total;
    }

    /// Add every sample of `other` (same half-life), bringing both to the later reference
    /// (Chan et al.'s pairwise combination).
    pub fn merge(&mut self, other: &DecayingMoments) -> Result<(), VerticalError> {
        if self.clock.half_life_seconds() != other.clock.half_life_seconds() {
            return Err(VerticalError::Mismatch {
                what: "moments",
                problem: "different half-lives".into(),
            });
        }
        let mut o = other.clone();
        let (mine, theirs) = (self.clock.raw_reference(), o.clock.raw_reference());
        if mine < theirs {
            let f = self.clock.shift_to(theirs);
            self.scale(f);
        } else if theirs < mine {
            let f = o.clock.shift_to(mine);
            o.scale(f);
        }
        if o.weight <= 0.0 {
            return Ok(());
        }
        let total = self.weight + o.weight;
        let delta = o.mean - self.mean;
        self.mean += delta * (o.weight / total);
        self.m2 += o.m2 + delta * delta * self.weight * o.weight / total;
        self.weight = total;
        Ok(())
    }

    /// `W`, relative to the reference.
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// True when no weight above epsilon is left.
    pub fn is_empty(&self) -> bool {
        self.weight < self.epsilon
    }

    /// `u`, or `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (!self.is_empty()).then_some(self.mean)
    }

    /// `s^2 = M2 / W`, or `None` when empty.
    pub fn variance(&self) -> Option<f64> {
        (!self.is_empty()).then(|| (self.m2 / self.weight).max(0.0))
    }

    /// `s`, or `None` when empty.
    pub fn std_dev(&self) -> Option<f64> {
        self.variance().map(f64::sqrt)
    }

    /// The exact state.
    pub fn checkpoint(&self) -> MomentsCheckpoint {
        MomentsCheckpoint {
            reference_unix_seconds: self.clock.reference(),
            weight: self.weight,
            mean: self.mean,
            m2: self.m2,
        }
    }

    /// Restore [`Self::checkpoint`]'s state, checking that every number is usable.
    pub fn load_checkpoint(&mut self, cp: &MomentsCheckpoint) -> Result<(), VerticalError> {
        let check = |name: &str, v: f64| {
            finite(|| format!("checkpoint moments {name}"), v).and_then(|v| {
                if name != "mean" && v < 0.0 {
                    Err(VerticalError::Checkpoint {
                        field: format!("moments {name}"),
                        problem: format!("{v} must not be negative"),
                    })
                } else {
                    Ok(v)
                }
            })
        };
        let weight = check("weight", cp.weight)?;
        let mean = check("mean", cp.mean)?;
        let m2 = check("m2", cp.m2)?;
        if let Some(r) = cp.reference_unix_seconds {
            finite(|| "checkpoint moments reference_unix_seconds".into(), r)?;
        }
        self.clock.set_reference(cp.reference_unix_seconds);
        self.weight = weight;
        self.mean = mean;
        self.m2 = m2;
        Ok(())
    }

    fn factor(&mut self, t: f64) -> f64 {
        let (rescale, f) = self.clock.factor(t);
        if rescale != 1.0 {
            self.scale(rescale);
        }
        f
    }

    fn scale(&mut self, factor: f64) {
        self.weight *= factor;
        self.m2 *= factor;
        if self.weight.is_nan() || self.weight <= 0.0 {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.weight = 0.0;
        self.mean = 0.0;
        self.m2 = 0.0;
    }
}

#[cfg(test)]
#[path = "moments_tests.rs"]
mod tests;

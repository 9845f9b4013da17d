//! A histogram that forgets (`pkg/recommender/util/decaying_histogram.go`).
//!
//! A sample at time `t` weighs `weight * 2^((t - reference) / half_life)`: a sample one
//! half-life older counts half as much. Only relative weights matter, so the reference can move
//! at any time by multiplying every weight by a power of two. It starts at Go's zero time
//! (year 1) and moves, rounded to a multiple of the half-life, to a sample's time whenever that
//! sample is more than 100 half-lives past it (`maxDecayExponent`), before the exponent
//! overflows. [`DecayClock`] holds that logic for the histogram and for
//! [`super::moments::DecayingMoments`].

use super::histogram::{Histogram, HistogramCheckpoint};
use super::histogram_options::HistogramOptions;
use super::{VerticalError, finite, invalid, non_negative};

/// `maxDecayExponent`.
const MAX_DECAY_EXPONENT: f64 = 100.0;
/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds: the initial reference.
pub const GO_ZERO_TIME_UNIX_SECONDS: f64 = -62_135_596_800.0;

/// The reference time of a decaying accumulator and the weight of a sample against it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecayClock {
    half_life_seconds: f64,
    reference: f64,
}

impl DecayClock {
    /// A clock at Go's zero time. The half-life must be finite and positive.
    pub fn new(half_life_seconds: f64) -> Result<Self, VerticalError> {
        if !(half_life_seconds > 0.0 && half_life_seconds.is_finite()) {
            return Err(invalid(
                "half_life_seconds",
                format!("{half_life_seconds} must be finite and positive"),
            ));
        }
        Ok(Self {
            half_life_seconds,
            reference: GO_ZERO_TIME_UNIX_SECONDS,
        })
    }

    /// The half-life.
    pub fn half_life_seconds(&self) -> f64 {
        self.half_life_seconds
    }

    /// The reference time (Unix seconds), `None` at Go's zero time.
    pub fn reference(&self) -> Option<f64> {
        (self.reference != GO_ZERO_TIME_UNIX_SECONDS).then_some(self.reference)
    }

    /// The reference time, Go's zero time included.
    pub(crate) fn raw_reference(&self) -> f64 {
        self.reference
    }

    /// Set the reference (from a checkpoint; `None` is Go's zero time).
    pub fn set_reference(&mut self, reference: Option<f64>) {
        self.reference = reference.unwrap_or(GO_ZERO_TIME_UNIX_SECONDS);
    }

    /// `decayFactor`: the multiplier for a sample at `t`, and the factor by which the stored
    /// weights must be scaled first when the reference moved (1 when it did not).
    pub fn factor(&mut self, t: f64) -> (f64, f64) {
        let mut rescale = 1.0;
        if t > self.reference + self.half_life_seconds * MAX_DECAY_EXPONENT {
            rescale = self.shift_to(t);
        }
        let f = ((t - self.reference) / self.half_life_seconds).exp2();
        (rescale, f)
    }

    /// `shiftReferenceTimestamp`: move the reference to `new` rounded to a multiple of the
    /// half-life (since Go's zero time, halves up, like `time.Time.Round`), returning the
    /// power of two by which stored weights must be multiplied.
    pub fn shift_to(&mut self, new: f64) -> f64 {
        let hl = self.half_life_seconds;
        let rounded =
            ((new - GO_ZERO_TIME_UNIX_SECONDS) / hl + 0.5).floor() * hl + GO_ZERO_TIME_UNIX_SECONDS;
        // Go: round(x) = floor(x + 0.5) as an int, then math.Ldexp(1, exponent).
        let exponent = ((self.reference - rounded) / hl + 0.5).floor();
        self.reference = rounded;
        ldexp1(exponent)
    }
}

/// `2^e` for an integral `e`, exactly (0 below the subnormals, infinity above the range).
fn ldexp1(e: f64) -> f64 {
    if e < -1074.0 {
        0.0
    } else if e > 1023.0 {
        f64::INFINITY
    } else if e < -1022.0 {
        f64::from_bits(1u64 << ((e + 1074.0) as u64))
    } else {
        f64::from_bits(((e + 1023.0) as u64) << 52)
    }
}

/// A histogram whose samples lose half their weight every half-life (upstream's
/// `decayingHistogram`).
#[derive(Debug, Clone, PartialEq)]
pub struct DecayingHistogram {
    histogram: Histogram,
    clock: DecayClock,
}

impl DecayingHistogram {
    /// `NewDecayingHistogram`: empty, reference at Go's zero time.
    pub fn new(options: HistogramOptions, half_life_seconds: f64) -> Result<Self, VerticalError> {
        Ok(Self {
            histogram: Histogram::new(options),
            clock: DecayClock::new(half_life_seconds)?,
        })
    }

    /// The underlying histogram (weights relative to the reference time).
    pub fn histogram(&self) -> &Histogram {
        &self.histogram
    }

    /// The half-life.
    pub fn half_life_seconds(&self) -> f64 {
        self.clock.half_life_seconds()
    }

    /// The reference time, `None` before the first sample.
    pub fn reference_unix_seconds(&self) -> Option<f64> {
        self.clock.reference()
    }

    /// `AddSample`: `value` with `weight * 2^((t - reference) / half_life)`. Value, weight and
    /// time must be finite, the weight not negative.
    pub fn add_sample(&mut self, value: f64, weight: f64, t: f64) -> Result<(), VerticalError> {
        let f = self.decay_factor(value, weight, t)?;
        self.histogram.add_sample(value, weight * f);
        Ok(())
    }

    /// `SubtractSample`: remove what [`Self::add_sample`] with the same arguments added.
    pub fn subtract_sample(
        &mut self,
        value: f64,
        weight: f64,
        t: f64,
    ) -> Result<(), VerticalError> {
        let f = self.decay_factor(value, weight, t)?;
        self.histogram.subtract_sample(value, weight * f);
        Ok(())
    }

    /// `Percentile` (decay does not change how percentiles are read).
    pub fn percentile(&self, p: f64) -> f64 {
        self.histogram.percentile(p)
    }

    /// `IsEmpty`.
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// `Merge`: bring both to the later reference, then add `other`'s weights. Unlike
    /// upstream, `other` is left as it was.
    pub fn merge(&mut self, other: &DecayingHistogram) -> Result<(), VerticalError> {
        if self.clock.half_life_seconds() != other.clock.half_life_seconds() {
            return Err(VerticalError::Mismatch {
                what: "decaying histograms",
                problem: "different half-lives".into(),
            });
        }
        if self.histogram.options() != other.histogram.options() {
            return Err(VerticalError::Mismatch {
                what: "decaying histograms",
                problem: "different bucketing options".into(),
            });
        }
        let (mine, theirs) = (self.clock.reference, other.clock.reference);
        if mine < theirs {
            let factor = self.clock.shift_to(theirs);
            self.histogram.scale(factor);
            self.histogram.merge(&other.histogram)
        } else if theirs < mine {
            let mut o = other.clone();
            let factor = o.clock.shift_to(mine);
            o.histogram.scale(factor);
            self.histogram.merge(&o.histogram)
        } else {
            self.histogram.merge(&other.histogram)
        }
    }

    /// `Equals`: same half-life, same reference, equal histograms.
    pub fn equals(&self, other: &DecayingHistogram) -> bool {
        self.clock == other.clock && self.histogram.equals(&other.histogram)
    }

    /// `SaveToChekpoint`: the histogram's checkpoint with the reference time.
    pub fn checkpoint(&self) -> HistogramCheckpoint {
        let mut cp = self.histogram.save_to_checkpoint();
        cp.reference_unix_seconds = self.clock.reference();
        cp
    }

    /// `LoadFromCheckpoint`: add the checkpoint's samples and take its reference time.
    pub fn load_checkpoint(&mut self, cp: &HistogramCheckpoint) -> Result<(), VerticalError> {
        if let Some(r) = cp.reference_unix_seconds {
            finite(|| "checkpoint reference_unix_seconds".into(), r)?;
        }
        self.histogram.load_from_checkpoint(cp)?;
        self.clock.set_reference(cp.reference_unix_seconds);
        Ok(())
    }

    fn decay_factor(&mut self, value: f64, weight: f64, t: f64) -> Result<f64, VerticalError> {
        finite(|| "sample value".into(), value)?;
        non_negative(|| "sample weight".into(), weight)?;
        finite(|| "sample time".into(), t)?;
        let (rescale, f) = self.clock.factor(t);
        if rescale != 1.0 {
            self.histogram.scale(rescale);
        }
        Ok(f)
    }
}

#[cfg(test)]
#[path = "decaying_tests.rs"]
mod tests;

//! The bounds of the settings that more than one place checks, each defined once, with the
//! one message that says a value is outside it.
//!
//! A bound is checked where a value can first go wrong: the CRD schema (the API server
//! refuses the object), the conversion from a ScalingPolicy to the engine's [`Spec`]
//! (`tidal_scaler::api::convert`, the reason in `status`) and the engine's own validation
//! ([`validate()`](crate::horizontal::validate()), for inputs that do not come through the
//! CRD: `decide`, the simulator). All three take the bound from here, so they cannot drift apart, and a value
//! outside it reads the same wherever it is caught.
//!
//! [`Spec`]: crate::types::Spec

/// An inclusive range of whole numbers (seconds or counts) and the message for a value
/// outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: i32,
    pub max: i32,
    /// `must be between <min> and <max>`.
    pub message: &'static str,
}

/// A lower bound and the message for a value below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtLeast {
    pub min: i32,
    /// `must be at least <min>`.
    pub message: &'static str,
}

/// [`Bounds`] from two literals, its message spelled from the same two.
macro_rules! bounds {
    ($min:literal, $max:literal) => {
        Bounds {
            min: $min,
            max: $max,
            message: concat!("must be between ", $min, " and ", $max),
        }
    };
}

/// [`AtLeast`] from a literal, its message spelled from the same one.
macro_rules! at_least {
    ($min:literal) => {
        AtLeast {
            min: $min,
            message: concat!("must be at least ", $min),
        }
    };
}

impl Bounds {
    /// `min <= v <= max`.
    pub fn contains(self, v: i32) -> bool {
        (self.min..=self.max).contains(&v)
    }

    /// `min <= v <= max`, for a setting the engine takes in (possibly fractional) seconds.
    pub fn contains_f64(self, v: f64) -> bool {
        (f64::from(self.min)..=f64::from(self.max)).contains(&v)
    }
}

impl AtLeast {
    /// `min <= v`.
    pub fn contains(self, v: i32) -> bool {
        v >= self.min
    }
}

// The HPA's (autoscaling/v2) validation limits: kubernetes/kubernetes
// `pkg/apis/autoscaling/validation/validation.go` (`MaxStabilizationWindowSeconds`,
// `MaxPeriodSeconds`, and a policy value greater than zero), as documented on
// `HPAScalingRules.stabilizationWindowSeconds` and `HPAScalingPolicy.periodSeconds`.

/// `behavior.scale{Up,Down}.stabilizationWindowSeconds`: 0 to 3600 (one hour).
pub const STABILIZATION_WINDOW_SECONDS: Bounds = bounds!(0, 3600);

/// `behavior.scale{Up,Down}.policies[].periodSeconds`: 1 to 1800 (half an hour).
pub const POLICY_PERIOD_SECONDS: Bounds = bounds!(1, 1800);

/// `behavior.scale{Up,Down}.policies[].value`: more than 0.
pub const POLICY_VALUE: AtLeast = at_least!(1);

// Tidal's own `kafkaLag` limits (the CRD and its conversion; the engine takes these settings
// in seconds as `f64` and checks only `lookaheadSeconds` against its range).

/// `kafkaLag.persistentLagWindowSeconds`: 1 s to an hour.
pub const PERSISTENT_LAG_WINDOW_SECONDS: Bounds = bounds!(1, 3600);

/// `kafkaLag.cooldownSeconds`: up to a day.
pub const COOLDOWN_SECONDS: Bounds = bounds!(0, 86400);

/// `kafkaLag.predictive.targetDrainSeconds`: 1 s to a day.
pub const TARGET_DRAIN_SECONDS: Bounds = bounds!(1, 86400);

/// `kafkaLag.predictive.lookaheadSeconds`: up to an hour.
pub const LOOKAHEAD_SECONDS: Bounds = bounds!(0, 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_names_its_bounds() {
        for b in [
            STABILIZATION_WINDOW_SECONDS,
            POLICY_PERIOD_SECONDS,
            PERSISTENT_LAG_WINDOW_SECONDS,
            COOLDOWN_SECONDS,
            TARGET_DRAIN_SECONDS,
            LOOKAHEAD_SECONDS,
        ] {
            assert_eq!(
                b.message,
                format!("must be between {} and {}", b.min, b.max)
            );
            assert!(b.contains(b.min) && b.contains(b.max));
            assert!(!b.contains(b.min - 1) && !b.contains(b.max + 1));
            assert!(b.contains_f64(f64::from(b.max)) && !b.contains_f64(f64::from(b.max) + 0.5));
            assert!(!b.contains_f64(f64::NAN));
        }
        assert_eq!(POLICY_VALUE.message, "must be at least 1");
        assert!(POLICY_VALUE.contains(1) && !POLICY_VALUE.contains(0));
    }
}

//! Kubernetes quantities: the scaler's `api::convert::parse_quantity` (policy fields) and the
//! agent's `pods::parse_quantity` (pod requests), differentially.
//!
//! Checks, on arbitrary text: neither panics; each gives only finite numbers; and where both
//! accept a string they agree (to a relative 1e-9, since one multiplies the mantissa by a
//! power of ten and the other parses the whole string, which can differ in the last bits).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let scaler = tidal_scaler::api::parse_quantity(s);
    let agent = tidal_agent::pods::parse_quantity(s);
    if let Ok(v) = scaler {
        assert!(v.is_finite(), "scaler: {s:?} -> {v}");
    }
    if let Some(v) = agent {
        assert!(v.is_finite(), "agent: {s:?} -> {v}");
    }
    if let (Ok(a), Some(b)) = (scaler, agent) {
        let tolerance = 1e-9 * a.abs().max(b.abs()) + 1e-300;
        assert!((a - b).abs() <= tolerance, "{s:?}: scaler {a}, agent {b}");
    }
});

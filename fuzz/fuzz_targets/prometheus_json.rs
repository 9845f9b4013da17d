//! The Prometheus `/api/v1/query` answer (`tidal_scaler::sources::prometheus::parse_response`).
//!
//! The input is an HTTP status (two bytes) and a response body. Checks: arbitrary bodies give
//! samples or an error, never a panic; a success is never empty and never carries a NaN or
//! infinite value (those would reach the replica calculation).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidal_scaler::sources::prometheus::parse_response;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]) % 600;
    let Ok(body) = std::str::from_utf8(&data[2..]) else {
        return;
    };
    if let Ok(samples) = parse_response("http://prometheus:9090/api/v1/query", "q", status, body) {
        assert!((200..300).contains(&status), "success with HTTP {status}");
        assert!(!samples.is_empty());
        for s in &samples {
            assert!(s.value.is_finite(), "value {}", s.value);
        }
    }
});

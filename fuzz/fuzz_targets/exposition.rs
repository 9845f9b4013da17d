//! The Prometheus text exposition parser (`tidal_scaler::sources::exposition`), what the
//! scaler does with an agent's scrape (`sources::agents::ingest`, `snapshot_age`), and the
//! OpenMetrics → text 0.0.4 rewrite the agent and scaler serve (`tidal_core::exposition`).
//!
//! Checks, on arbitrary text: nothing panics; every sample has a valid metric name and the
//! values it was written with; the `keep` filter only skips work (a body that parses fully
//! parses the same under any filter, minus the filtered names); `ingest` never stores a
//! negative or non-finite usage; and `to_text_004` only changes `#` lines, so its output
//! parses to exactly the same samples.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use tidal_core::exposition::to_text_004;
use tidal_scaler::sources::agents::{ingest, snapshot_age};
use tidal_scaler::sources::exposition::{Sample, for_each, parse};

/// A sample as comparable data (NaN values compare equal to each other).
type Key = (String, Vec<(String, String)>, u64, Option<i64>);

fn keys(samples: &[Sample<'_>]) -> Vec<Key> {
    samples
        .iter()
        .map(|s| {
            let value = if s.value.is_nan() {
                f64::NAN.to_bits()
            } else {
                s.value.to_bits()
            };
            let labels = s
                .labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            (s.name.to_string(), labels, value, s.timestamp_ms)
        })
        .collect()
}

fn valid_name(n: &str) -> bool {
    let mut b = n.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// A line the parser treats as the end of the body.
fn is_eof(line: &str) -> bool {
    let l = line.strip_suffix('\r').unwrap_or(line);
    l.trim_matches([' ', '\t']) == "# EOF"
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let all = parse(body, |_| true);
    if let Ok(samples) = &all {
        for s in samples {
            assert!(valid_name(s.name), "invalid name {:?}", s.name);
        }
        // Any filter gives the same samples, minus the filtered names.
        let odd = |n: &str| n.len() % 2 == 1;
        let some = parse(body, odd).expect("a body that parses fully parses under a filter");
        let want: Vec<_> = samples.iter().filter(|s| odd(s.name)).cloned().collect();
        assert_eq!(keys(&some), keys(&want));
        // The streaming form hands over the same samples.
        let mut streamed = Vec::new();
        for_each(body, |_| true, |s| streamed.push(s)).expect("same body");
        assert_eq!(keys(&streamed), keys(samples));
    }

    // The scaler's use of an agent's scrape.
    let mut pods = HashMap::new();
    if ingest(body, 1.0, &mut pods).is_ok() {
        for usage in pods.values() {
            for c in usage.containers.values() {
                for v in [c.cpu_cores, c.memory_working_set_bytes]
                    .into_iter()
                    .flatten()
                {
                    assert!(v.is_finite() && v >= 0.0, "stored usage {v}");
                }
            }
        }
    } else {
        assert!(pods.is_empty(), "a malformed body changed the pods");
    }
    if let Some(age) = snapshot_age(body) {
        assert!(age.is_finite() && age >= 0.0);
    }

    // The 0.0.4 rewrite changes only `#` lines (and drops `# EOF`, so compare only bodies
    // without an end marker).
    let text = to_text_004(body);
    if !body.split('\n').any(is_eof) {
        let before = parse(body, |_| true);
        let after = parse(&text, |_| true);
        match (before, after) {
            (Ok(a), Ok(b)) => assert_eq!(keys(&a), keys(&b)),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("to_text_004 changed the parse: {a:?} -> {b:?}\n{text:?}"),
        }
    }
});

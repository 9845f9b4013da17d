//! `spec.formula`: CEL compile (`tidal_scaler::engine::Formula::compile`) and evaluation.
//!
//! The input is a structured value (via `arbitrary`): the source text and the metric values it
//! is evaluated against (metrics `a`, `b` and `lag`). Checks: compiling arbitrary text gives a
//! formula or an error, never a panic; an evaluation is a finite, non-negative number or an
//! error; it is deterministic; metrics the formula does not reference, and `partitions` when it
//! does not read them, do not change it. Like the controller, it runs on a thread with tokio's
//! default 2 MiB worker stack.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tidal_scaler::engine::Formula;
use tidal_scaler::engine::formula::{Inputs, MetricValues};

const NAMES: [&str; 3] = ["a", "b", "lag"];

#[derive(Arbitrary, Debug)]
struct Case {
    src: String,
    metrics: [Option<(f64, f64, f64)>; 3],
    replicas: f64,
    ready: f64,
    partitions: Option<f64>,
}

fn bits(r: &Result<f64, impl std::fmt::Debug>) -> String {
    match r {
        Ok(v) => format!("{:x}", v.to_bits()),
        Err(e) => format!("{e:?}"),
    }
}

fn check(c: Case) {
    let Ok(f) = Formula::compile(&c.src, &NAMES) else {
        return;
    };
    let metrics: Vec<Option<MetricValues>> = c
        .metrics
        .iter()
        .map(|m| {
            m.map(|(value, target, ratio)| MetricValues {
                value,
                target,
                ratio,
            })
        })
        .collect();
    let inputs = Inputs {
        metrics: &metrics,
        replicas: c.replicas,
        ready_replicas: c.ready,
        partitions: c.partitions,
    };
    let got = f.eval(&inputs);
    if let Ok(v) = got {
        assert!(v.is_finite() && v >= 0.0, "{:?} -> {v}", c.src);
    }
    assert_eq!(bits(&got), bits(&f.eval(&inputs)), "not deterministic");
    for &i in f.referenced_metrics() {
        assert!(i < NAMES.len());
    }
    // Unreferenced metrics and unread partitions do not matter.
    let only: Vec<Option<MetricValues>> = metrics
        .iter()
        .enumerate()
        .map(|(i, m)| f.referenced_metrics().contains(&i).then_some(*m).flatten())
        .collect();
    let reduced = Inputs {
        metrics: &only,
        partitions: if f.uses_partitions() {
            c.partitions
        } else {
            None
        },
        ..inputs
    };
    assert_eq!(bits(&got), bits(&f.eval(&reduced)), "{:?}", c.src);
}

fuzz_target!(|c: Case| {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || check(c))
        .expect("spawn")
        .join()
        .expect("the check panicked");
});

//! `spec.formula` made of long operator chains and deep nesting, to catch stack overflows in
//! the CEL parser, in Tidal's lowering and evaluation (both recursive), and in dropping the
//! tree.
//!
//! The input (via `arbitrary`) picks a shape, a length (up to 100,000 repetitions, a formula of
//! a few hundred KiB, which a ScalingPolicy can hold) and the operators; the formula is built
//! from them. Checks: compile and evaluation give a value or an error, never a crash, on a
//! thread with tokio's default 2 MiB worker stack, as in the controller.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tidal_scaler::engine::Formula;
use tidal_scaler::engine::formula::{Inputs, MetricValues};

#[derive(Arbitrary, Debug)]
enum Shape {
    /// `a.value + a.value - a.value * ...` (left-associative binary operators).
    Binary,
    /// `((((a.value))))`.
    Parens,
    /// `- - - - a.value` or `!!!!(a.value > 1) ? 1 : 0`.
    Unary,
    /// `c ? 1 : c ? 2 : ...` (right-associative).
    Ternary,
    /// `max(1, max(1, max(...)))`.
    Calls,
    /// `a.value > 1 && a.value > 1 || ...`.
    Logic,
}

#[derive(Arbitrary, Debug)]
struct Chain {
    shape: Shape,
    len: u32,
    ops: Vec<u8>,
}

fn build(c: &Chain) -> String {
    let n = (c.len % 100_001) as usize;
    let op = |i: usize| c.ops.get(i % c.ops.len().max(1)).copied().unwrap_or(0);
    let mut s = String::new();
    match c.shape {
        Shape::Binary => {
            s.push_str("a.value");
            for i in 0..n {
                s.push_str([" + ", " - ", " * ", " / ", " % "][usize::from(op(i)) % 5]);
                s.push_str(["a.value", "2", "replicas", "(1)"][usize::from(op(i) >> 4) % 4]);
            }
        }
        Shape::Parens => {
            s.push_str(&"(".repeat(n));
            s.push_str("a.value");
            s.push_str(&")".repeat(n));
        }
        Shape::Unary => {
            if op(0) % 2 == 0 {
                s.push_str(&"-".repeat(n));
                s.push_str("a.value");
            } else {
                s.push_str(&"!".repeat(n));
                s.push_str("(a.value > 1) ? 1 : 0");
            }
        }
        Shape::Ternary => {
            for _ in 0..n {
                s.push_str("a.value > 1 ? 1 : ");
            }
            s.push('2');
        }
        Shape::Calls => {
            for i in 0..n {
                s.push_str(["max(1, ", "min(9, ", "abs(", "ceil("][usize::from(op(i)) % 4]);
            }
            s.push_str("a.value");
            s.push_str(&")".repeat(n));
        }
        Shape::Logic => {
            s.push_str("(a.value > 1");
            for i in 0..n {
                s.push_str([" && a.value > 1", " || a.value < 1"][usize::from(op(i)) % 2]);
            }
            s.push_str(") ? 1 : 0");
        }
    }
    s
}

fn check(src: &str) {
    let Ok(f) = Formula::compile(src, &["a"]) else {
        return;
    };
    let metrics = [Some(MetricValues {
        value: 3.0,
        target: 1.0,
        ratio: 3.0,
    })];
    let inputs = Inputs {
        metrics: &metrics,
        replicas: 2.0,
        ready_replicas: 2.0,
        partitions: None,
    };
    if let Ok(v) = f.eval(&inputs) {
        assert!(v.is_finite() && v >= 0.0);
    }
}

fuzz_target!(|c: Chain| {
    let src = build(&c);
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || check(&src))
        .expect("spawn")
        .join()
        .expect("the check panicked");
});

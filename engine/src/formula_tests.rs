//! `spec.formula`: compile-time checks, evaluation errors, typical formulas, and the wiring
//! into `horizontal::desired`. Expected numbers are worked out in the comments.

use super::*;
use crate::horizontal::{decide, desired, desired_with_formula};
use crate::types::{Input, LimitStage};

const NOW: f64 = 1_700_000_000.0;

fn vals(value: f64, target: f64) -> Option<MetricValues> {
    Some(MetricValues {
        value,
        target,
        ratio: value / target,
    })
}

fn inputs(metrics: &[Option<MetricValues>]) -> Inputs<'_> {
    Inputs {
        metrics,
        replicas: 4.0,
        ready_replicas: 3.0,
        partitions: Some(12.0),
    }
}

fn eval(src: &str, names: &[&str], metrics: &[Option<MetricValues>]) -> Result<f64, FormulaError> {
    Formula::compile(src, names)?.eval(&inputs(metrics))
}

#[test]
fn typical_formulas() {
    let names = ["cpu", "lag"];
    // cpu 90% of 60% -> ratio 1.5; lag 3000 against 1000 -> ratio 3 (per the caller).
    let m = [vals(90.0, 60.0), vals(3000.0, 1000.0)];
    // max(1.5, 3) * 4 = 12.
    assert_eq!(
        eval("max(cpu.ratio, lag.ratio) * replicas", &names, &m),
        Ok(12.0)
    );
    // clamp(ceil(3000 / 1000), 1, 12) = 3 (integers are doubles: no int/double mismatch).
    assert_eq!(
        eval("clamp(ceil(lag.value / 1000), 1, partitions)", &names, &m),
        Ok(3.0)
    );
    // clamp(ceil(30000 / 1000), 1, 12) = 12.
    let big = [vals(90.0, 60.0), vals(30_000.0, 1000.0)];
    assert_eq!(
        eval("clamp(ceil(lag.value / 1000), 1, partitions)", &names, &big),
        Ok(12.0)
    );
    // The base formula: ceil(90 / 60 * 4) = ceil(6) = 6.
    assert_eq!(
        eval("ceil(cpu.value / cpu.target * replicas)", &names, &m),
        Ok(6.0)
    );
    // Conditionals, comparisons, booleans: ready 3 < replicas 4 -> 4 + 1 = 5.
    assert_eq!(
        eval(
            "readyReplicas < replicas && !(lag.value == 0) ? replicas + 1 : replicas",
            &names,
            &m
        ),
        Ok(5.0)
    );
    // min/max with several arguments, floor, round, abs, %, unary minus, math. namespace.
    assert_eq!(eval("min(7, 3.5, 9)", &names, &m), Ok(3.5));
    assert_eq!(
        eval("max(1, 2, 3) + floor(2.7) + round(2.5)", &names, &m),
        Ok(8.0)
    );
    assert_eq!(eval("abs(-3) + 7 % 4", &names, &m), Ok(6.0));
    assert_eq!(
        eval("math.ceil(1.2) + math.floor(1.8)", &names, &m),
        Ok(3.0)
    );
    // 7 / 2 is 3.5 (doubles), not CEL's integer 3.
    assert_eq!(eval("7 / 2", &names, &m), Ok(3.5));
    // clamp with lo above hi gives lo.
    assert_eq!(eval("clamp(10, 5, 2)", &names, &m), Ok(5.0));
    // uint literal.
    assert_eq!(eval("2u * 3u", &names, &m), Ok(6.0));
}

#[test]
fn parse_errors_name_the_field_and_position() {
    let e = Formula::compile("max(cpu.ratio, ", &["cpu"]).expect_err("syntax");
    // The end of input, after 15 characters: column 16.
    assert!(
        matches!(
            e,
            FormulaError::Parse {
                line: 1,
                column: 16,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("spec.formula: syntax error at 1:16: "),
        "{msg}"
    );
    let e = Formula::compile("1 +* 2", &[]).expect_err("syntax");
    println!("{e}");
    assert!(
        e.to_string().starts_with("spec.formula: syntax error"),
        "{e}"
    );
}

#[test]
fn unknown_names_are_compile_errors() {
    let e = Formula::compile("max(cpu.ratio, lga.ratio) * replicas", &["cpu", "lag"])
        .expect_err("unknown");
    assert_eq!(
        e,
        FormulaError::UnknownVariable {
            name: "lga".into(),
            line: 1,
            column: 16,
            known: "cpu, lag".into(),
        }
    );
    assert!(
        e.to_string()
            .contains("spec.formula: unknown variable \"lga\" at 1:16")
    );
    let e =
        Formula::compile("max(\n  cpu.ratio,\n  lgs.value)", &["cpu", "lag"]).expect_err("line 3");
    assert!(
        matches!(
            e,
            FormulaError::UnknownVariable {
                line: 3,
                column: 3,
                ..
            }
        ),
        "{e:?}"
    );
    let e = Formula::compile("cpu.ratoi", &["cpu"]).expect_err("field");
    assert!(e.to_string().contains("unknown field \"ratoi\""), "{e}");
    let e = Formula::compile("cpu * 2", &["cpu"]).expect_err("bare metric");
    assert!(e.to_string().contains("needs a field"), "{e}");
    let e = Formula::compile("replica + 1", &["cpu"]).expect_err("typo");
    assert!(matches!(e, FormulaError::UnknownVariable { ref name, .. } if name == "replica"));
    let e = Formula::compile("sqrt(4)", &[]).expect_err("function");
    assert!(e.to_string().contains("unknown function \"sqrt\""), "{e}");
    let e = Formula::compile("clamp(1, 2)", &[]).expect_err("arity");
    assert!(e.to_string().contains("wrong number of arguments"), "{e}");
}

#[test]
fn type_errors_are_compile_errors() {
    for (src, want) in [
        ("replicas > 1", "must give a number"),
        ("'a' + 1", "only numbers and booleans"),
        ("true + 1", "needs a number"),
        ("replicas ? 1 : 2", "needs a bool"),
        ("true ? 1 : false", "same type"),
        ("[1, 2]", "unsupported expression"),
        ("replicas.size()", "method calls"),
    ] {
        let e = Formula::compile(src, &["cpu"]).expect_err(src).to_string();
        assert!(e.starts_with("spec.formula: "), "{src}: {e}");
        assert!(e.contains(want), "{src}: {e}");
    }
}

#[test]
fn division_by_zero_nan_and_negative_are_errors() {
    let names = ["cpu", "lag"];
    let m = [vals(0.0, 60.0), vals(0.0, 1000.0)];
    // lag.value is 0: division by zero at the `/`, 1:12 (byte offset 11).
    let e = eval("replicas / lag.value", &names, &m).expect_err("div0");
    assert!(
        matches!(e, FormulaError::DivisionByZero { line: 1, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("spec.formula: division by zero at 1:"),
        "{e}"
    );
    assert!(matches!(
        eval("replicas % 0", &names, &m),
        Err(FormulaError::DivisionByZero { .. })
    ));
    // A NaN ratio (0 / 0 computed by the caller) propagates to the result.
    let nan = [
        Some(MetricValues {
            value: 0.0,
            target: 0.0,
            ratio: f64::NAN,
        }),
        vals(1.0, 1.0),
    ];
    let e = eval("max(cpu.ratio, lag.ratio) * replicas", &names, &nan).expect_err("nan");
    assert!(matches!(e, FormulaError::NotFinite { .. }), "{e:?}");
    assert!(e.to_string().contains("not a finite number"));
    let e = eval("1e308 * 10.0", &names, &m).expect_err("inf");
    assert!(matches!(e, FormulaError::NotFinite { .. }), "{e:?}");
    let e = eval("replicas - 10", &names, &m).expect_err("negative");
    assert_eq!(e, FormulaError::Negative { value: -6.0 });
    assert_eq!(e.to_string(), "spec.formula: result -6 is negative");
    // -0 is 0, not negative.
    assert_eq!(eval("-0.0", &names, &m), Ok(0.0));
}

#[test]
fn missing_metric_and_partitions_are_errors() {
    let f = Formula::compile("lag.value + partitions", &["cpu", "lag"]).expect("compiles");
    assert_eq!(f.referenced_metrics(), &[1]);
    assert!(f.uses_partitions());
    let m = [vals(1.0, 1.0), None];
    assert_eq!(
        f.eval(&inputs(&m)),
        Err(FormulaError::MissingMetric {
            metric: "lag".into()
        })
    );
    let m = [None, vals(5.0, 1.0)];
    let no_partitions = Inputs {
        partitions: None,
        ..inputs(&m)
    };
    assert_eq!(f.eval(&no_partitions), Err(FormulaError::MissingPartitions));
    assert_eq!(f.eval(&inputs(&m)), Ok(17.0));
}

// ---- Wiring into `horizontal::desired` ----

fn input(formula: &str, lag: Option<f64>, spec_replicas: i32) -> Input {
    let mut obs = vec![serde_json::json!({ "metric": "rps", "value": 300 })];
    if let Some(l) = lag {
        obs.push(serde_json::json!({ "metric": "lag", "value": l, "kafka": { "partitions": 12 } }));
    }
    serde_json::from_value(serde_json::json!({
        "spec": {
            "min_replicas": 1,
            "max_replicas": 40,
            "metrics": [
                { "name": "rps", "type": "external", "target": { "type": "average_value", "average_value": 100 } },
                { "name": "lag", "type": "kafka_lag", "kafka_lag": { "lag_per_replica": 1000 } }
            ],
            "behavior": { "scale_down": { "stabilization_window_seconds": 0 } },
            "formula": formula
        },
        "state": { "spec_replicas": spec_replicas, "recommendations": [] },
        "observations": obs,
        "now_unix_seconds": NOW
    }))
    .expect("valid input")
}

#[test]
fn formula_replaces_the_highest_proposal() {
    // rps: 300 / (100 * 4) = 0.75 -> ceil(300/100) = 3. lag 5000: ceil(5000/1000) = 5.
    // Highest proposal 5; formula clamp(ceil(5000 / 2000), 1, 12) = 3 replaces it: 4 -> 3.
    let i = input(
        "clamp(ceil(lag.value / 2000), 1, partitions)",
        Some(5000.0),
        4,
    );
    let d = decide(&i).expect("valid");
    assert_eq!(d.desired_replicas, 3, "{d:#?}");
    assert_eq!(d.chosen_metric.as_deref(), Some("spec.formula"));
    assert!(
        d.limits
            .iter()
            .any(|l| l.stage == LimitStage::Formula && l.from == 5 && l.to == 3)
    );
    // ratio of an AverageValue metric is value / (target * status): rps 300 / 400 = 0.75,
    // lag 5000 / 4000 = 1.25 -> max * 4 = 5.
    let i = input("max(rps.ratio, lag.ratio) * replicas", Some(5000.0), 4);
    assert_eq!(decide(&i).expect("valid").desired_replicas, 5);
    // A fractional result is ceiled: 0.75 * 4 + 0.1 = 3.1 -> 4 (no change).
    let i = input("rps.ratio * replicas + 0.1", Some(5000.0), 4);
    assert_eq!(decide(&i).expect("valid").desired_replicas, 4);
    // Float noise is not a replica: 1.1 * 10 = 11.000000000000002 -> 11, not 12.
    let i = input("1.1 * 10", Some(5000.0), 4);
    assert_eq!(decide(&i).expect("valid").metric_replicas, Some(11));
    // A real fraction still rounds up: 11.001 -> 12.
    let i = input("11.001", Some(5000.0), 4);
    assert_eq!(decide(&i).expect("valid").metric_replicas, Some(12));
    // Behavior and bounds still apply: 100 -> max 40; scale-up from 4 allows
    // max(4 + 4, 4 * 2) = 8.
    let i = input("100", Some(5000.0), 4);
    let d = decide(&i).expect("valid");
    assert_eq!((d.metric_replicas, d.desired_replicas), (Some(100), 8));
}

#[test]
fn a_missing_referenced_metric_blocks_scale_down() {
    // lag missing: the formula (which reads lag) cannot run; the highest valid proposal is
    // rps 3 < 4 with an invalid metric -> no scale-down.
    let i = input("lag.value / 1000", None, 4);
    let d = decide(&i).expect("valid");
    assert_eq!(d.desired_replicas, 4);
    assert_eq!(d.limits[0].stage, LimitStage::InvalidMetrics);
    // Scale-up still works on the valid metrics: rps 300 from 2: 300 / 200 = 1.5 -> 3.
    let i = input("lag.value / 1000", None, 2);
    assert_eq!(decide(&i).expect("valid").desired_replicas, 3);
    // A formula not reading the missing metric still runs, but cannot scale down:
    // rps.value / 100 = 3 < 4 with lag invalid -> 4.
    let i = input("rps.value / 100", None, 4);
    assert_eq!(decide(&i).expect("valid").desired_replicas, 4);
}

#[test]
fn evaluation_errors_apply_nothing() {
    // Negative: 300 / 100 - 10 = -7.
    let i = input("rps.value / 100 - 10", Some(5000.0), 4);
    let d = decide(&i).expect("valid");
    assert_eq!(d.desired_replicas, 4);
    assert!(!d.rescale);
    let active = &d.conditions[0];
    assert_eq!(active.reason, "InvalidFormula");
    assert_eq!(active.message, "spec.formula: result -7 is negative");
    // No recommendation recorded.
    assert!(d.next.recommendations.is_empty());
    // Division by zero: lag 0.
    let i = input("replicas / lag.value", Some(0.0), 4);
    let d = decide(&i).expect("valid");
    assert_eq!(d.desired_replicas, 4);
    assert!(d.conditions[0].message.contains("division by zero at 1:"));
}

#[test]
fn compile_errors_are_input_errors_and_hold_in_desired() {
    let i = input("max(rps.ratio, lga.ratio)", Some(5000.0), 4);
    let e = decide(&i).expect_err("unknown metric");
    assert_eq!(e.label(), "formula");
    assert!(
        e.to_string()
            .starts_with("spec.formula: unknown variable \"lga\""),
        "{e}"
    );
    let d = desired(&i.spec, &i.state, &i.observations, NOW);
    assert_eq!(d.desired_replicas, 4);
    assert_eq!(d.conditions[0].reason, "InvalidFormula");
    // `partitions` needs a kafka_lag metric.
    let mut i = input("partitions", Some(5000.0), 4);
    i.spec.metrics.pop();
    i.observations.pop();
    let e = decide(&i).expect_err("no kafka_lag metric").to_string();
    assert_eq!(e, "spec.formula: partitions needs a kafka_lag metric");
}

#[test]
fn a_cached_formula_gives_the_same_decision() {
    let i = input("max(rps.ratio, lag.ratio) * replicas", Some(9000.0), 4);
    let f = Formula::compile(i.spec.formula.as_deref().expect("formula"), &["rps", "lag"])
        .expect("compiles");
    let a = desired(&i.spec, &i.state, &i.observations, NOW);
    let b = desired_with_formula(&i.spec, Some(&f), &i.state, &i.observations, NOW);
    assert_eq!(a, b);
    // lag 9000 / 4000 = 2.25 * 4 = 9.
    assert_eq!(a.metric_replicas, Some(9));
}

#[test]
fn a_formula_compiled_for_other_names_does_not_panic() {
    // Compiled against three names; the spec has two metrics: "extra" is never valid, so the
    // formula does not run and the highest proposal stands (rps 3, lag 5 -> 5).
    let i = input("extra.value", Some(5000.0), 4);
    let f = Formula::compile("extra.value", &["rps", "lag", "extra"]).expect("compiles");
    let d = desired_with_formula(&i.spec, Some(&f), &i.state, &i.observations, NOW);
    assert_eq!(d.metric_replicas, Some(5));
}

/// Compiles and evaluates `src` on a thread with `stack` bytes of stack.
fn on_stack(stack: usize, src: String) -> Result<Result<f64, FormulaError>, FormulaError> {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            Formula::compile(&src, &[]).map(|f| {
                f.eval(&Inputs {
                    metrics: &[],
                    replicas: 2.0,
                    ready_replicas: 2.0,
                    partitions: None,
                })
            })
        })
        .expect("spawn")
        .join()
        .expect("no panic")
}

/// Found by fuzzing (`fuzz/`, target `formula_chain`): a formula repeating `+` ~57,000 times
/// overflowed the stack in the `cel` parser (which recurses once per operator of a chain), on
/// tokio's 2 MiB worker stack, and took the scaler down. Now it is refused before parsing.
#[test]
fn long_operator_chains_are_refused_not_a_stack_overflow() {
    let chain = |terms: usize| {
        std::iter::repeat_n("replicas", terms)
            .collect::<Vec<_>>()
            .join(" + ")
    };
    for src in [
        chain(57_000),
        chain(MAX_FORMULA_OPERATORS + 2),
        format!("{}replicas", "-".repeat(100_000)),
        format!("{}replicas{}", "(".repeat(50_000), ")".repeat(50_000)),
    ] {
        let err = on_stack(2 << 20, src).expect_err("refused");
        assert!(
            matches!(&err, FormulaError::Invalid { message, .. }
                if message.contains("too many operators") || message.contains("nested too deeply")),
            "{err}"
        );
    }
    let err = Formula::compile(&format!("{}1{}", "max(1, ".repeat(25), ")".repeat(25)), &[])
        .expect_err("too deep");
    assert!(
        err.to_string().contains("nested too deeply (at most 64 operator characters and 24 levels of brackets and ?:) at 1:172"),
        "{err}"
    );
}

/// The largest formulas of each shape that the caps accept compile and evaluate. A debug
/// build's frames are an order of magnitude larger than a release build's, so this runs on a
/// 16 MiB stack; the `formula_chain` fuzz target runs them on 2 MiB in an optimized build.
#[test]
fn the_largest_accepted_formulas_compile_and_evaluate() {
    let n = MAX_FORMULA_NESTING;
    let chain = |terms: usize| {
        std::iter::repeat_n("replicas", terms)
            .collect::<Vec<_>>()
            .join(" + ")
    };
    for (src, want) in [
        (chain(MAX_FORMULA_OPERATORS + 1), 2.0 * 65.0),
        (
            format!("{}replicas{}", "max(1, ".repeat(n), ")".repeat(n)),
            2.0,
        ),
        (format!("{}replicas{}", "(".repeat(n), ")".repeat(n)), 2.0),
        (format!("{}replicas", "-".repeat(64)), 2.0),
        (format!("{}1", "replicas > 1 ? 1 : ".repeat(n)), 1.0),
        (
            format!(
                "{}{}{}",
                "max(1, ".repeat(n - 1),
                chain(41),
                ")".repeat(n - 1)
            ),
            82.0,
        ),
    ] {
        assert_eq!(on_stack(16 << 20, src.clone()), Ok(Ok(want)), "{src}");
    }
}

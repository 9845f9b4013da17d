//! The VPA's own recommender test cases (vertical-pod-autoscaler v1.8.1,
//! `pkg/recommender/{logic,model}/*_test.go`, `pkg/utils/vpa/capping_test.go`), run end to end
//! through `recommend`'s input document: parse, [`replay_and_recommend`], then the output
//! document. The engine tests (`engine/src/vertical/*_tests.rs`) check the same numbers on the
//! engine's parts; here they must survive the CRD spec, the quantities, the event order and the
//! output encoding.
//! Only the cases the input can express are here: the command has the CRD's settings, so
//! percentiles, margin and confidence multipliers are the VPA's defaults (0.9/0.5/0.95, 15%,
//! `(1 + 1/days)` and `(1 + 0.001/days)^-2`).

// Upstream's usage numbers (3.14 cores, 6.28 cores), not pi.
#![allow(clippy::approx_constant)]

use serde_json::{Value, json};

use super::*;

/// `testTimestamp` of `container_test.go`: 2017-04-18 17:35:05 UTC.
const T: f64 = 1_492_536_905.0;
const MIB: f64 = 1024.0 * 1024.0;
const DAY: f64 = 86_400.0;

/// What one output field must be.
enum Expect {
    Is(Value),
    /// Within a relative error (histogram buckets are 5% wide, as upstream's tests allow).
    Near(f64, f64),
    Absent,
}

struct Case {
    /// The upstream file and test.
    source: &'static str,
    input: Value,
    /// JSON pointers into the output document.
    expect: Vec<(&'static str, Expect)>,
}

fn sample(pod: &str, container: &str, at: f64, cpu: Option<f64>, memory: Option<f64>) -> Value {
    let mut s = json!({ "pod": pod, "container": container, "at": at });
    if let Some(c) = cpu {
        s["cpuCores"] = json!(c);
    }
    if let Some(m) = memory {
        s["memoryBytes"] = json!(m);
    }
    s
}

fn oom(at: f64, request_mib: f64) -> Value {
    json!({ "pod": "pod-1", "container": "app", "at": at, "memoryBytes": request_mib * MIB })
}

fn doc(vertical: Value, now: f64, samples: Vec<Value>, ooms: Vec<Value>) -> Value {
    json!({ "vertical": vertical, "now": now, "samples": samples, "ooms": ooms })
}

/// The output document of an input document, through the command's own parse and run.
fn recommend(input: &Value) -> Result<Value, InputError> {
    let parsed = parse(&input.to_string())?;
    let outcome = replay_and_recommend(&parsed)?;
    Ok(serde_json::to_value(outcome.output).expect("the output encodes"))
}

/// The lower bound's factor on a percentile: the 15% margin and `(1 + 0.001/days)^-2`.
fn lower_bound_factor(confidence: f64) -> f64 {
    1.15 * (1.0 + 0.001 / confidence).powi(-2)
}

fn cases() -> Vec<Case> {
    let tiny = |c: &str| sample("pod-1", c, T, Some(0.001), Some(1e6));
    vec![
        Case {
            source: "logic/recommender_test.go TestMinResourcesApplied",
            input: doc(json!({}), T, vec![tiny("container-1")], vec![]),
            expect: vec![
                ("/containers/0/target/cpuCores", Expect::Is(json!(0.025))),
                (
                    "/containers/0/target/memoryBytes",
                    Expect::Is(json!(250.0 * MIB)),
                ),
                ("/recommendations/0/target/cpu", Expect::Is(json!("25m"))),
                (
                    "/recommendations/0/target/memory",
                    Expect::Is(json!("262144000")),
                ),
            ],
        },
        Case {
            source: "logic/recommender_test.go TestMinResourcesSplitAcrossContainers",
            input: doc(
                json!({}),
                T,
                vec![tiny("container-1"), tiny("container-2")],
                vec![],
            ),
            // CPUAmountFromCores(0.0125) truncates to 12 millicores.
            expect: vec![
                ("/containers/0/target/cpuCores", Expect::Is(json!(0.012))),
                ("/containers/1/target/cpuCores", Expect::Is(json!(0.012))),
                (
                    "/containers/0/target/memoryBytes",
                    Expect::Is(json!(125.0 * MIB)),
                ),
                (
                    "/containers/1/target/memoryBytes",
                    Expect::Is(json!(125.0 * MIB)),
                ),
            ],
        },
        Case {
            source: "logic/recommender_test.go TestControlledResourcesFiltered",
            input: doc(
                json!({ "containerPolicies": [
                    { "containerName": "container-1", "controlledResources": ["memory"] } ] }),
                T,
                vec![tiny("container-1")],
                vec![],
            ),
            expect: vec![
                (
                    "/recommendations/0/target/memory",
                    Expect::Is(json!("262144000")),
                ),
                (
                    "/containers/0/lowerBound/memoryBytes",
                    Expect::Is(json!(250.0 * MIB)),
                ),
                (
                    "/containers/0/upperBound/memoryBytes",
                    Expect::Is(json!(1e14)),
                ),
                ("/containers/0/target/cpuCores", Expect::Absent),
                ("/containers/0/lowerBound/cpuCores", Expect::Absent),
                ("/containers/0/upperBound/cpuCores", Expect::Absent),
                ("/recommendations/0/target/cpu", Expect::Absent),
            ],
        },
        Case {
            source: "logic/recommender_test.go TestControlledResourcesFilteredDefault",
            input: doc(
                json!({ "containerPolicies": [
                    { "containerName": "container-1", "controlledResources": ["memory", "cpu"] } ] }),
                T,
                vec![tiny("container-1")],
                vec![],
            ),
            expect: vec![
                (
                    "/containers/0/target/memoryBytes",
                    Expect::Is(json!(250.0 * MIB)),
                ),
                ("/containers/0/target/cpuCores", Expect::Is(json!(0.025))),
                (
                    "/containers/0/lowerBound/cpuCores",
                    Expect::Is(json!(0.025)),
                ),
                (
                    "/recommendations/0/upperBound/cpu",
                    Expect::Is(json!("100000000000")),
                ),
            ],
        },
        Case {
            // CPU {1, 2, 3} cores and memory peaks {1e9, 2e9, 3e9} bytes, one per pod, a
            // minute apart. Upstream reads p20 CPU (1 core) and p50 memory (2e9); the CRD
            // fixes the percentiles, so here p50 (the lower bound) gives 2 cores and 2e9
            // bytes, p90 (the target) 3 cores and 3e9 bytes, before the margin.
            source: "logic/estimator_test.go TestPercentileEstimator",
            input: doc(
                json!({}),
                T + 120.0,
                vec![
                    sample("pod-1", "app", T, Some(1.0), Some(1e9)),
                    sample("pod-2", "app", T + 60.0, Some(2.0), Some(2e9)),
                    sample("pod-3", "app", T + 120.0, Some(3.0), Some(3e9)),
                ],
                vec![],
            ),
            expect: {
                let low = lower_bound_factor(120.0 / DAY);
                vec![
                    ("/containers/0/confidence", Expect::Is(json!(120.0 / DAY))),
                    (
                        "/containers/0/lowerBound/memoryBytes",
                        Expect::Near(2e9 * low, 0.05),
                    ),
                    (
                        "/containers/0/lowerBound/cpuCores",
                        Expect::Near(2.0 * low, 0.05),
                    ),
                    (
                        "/containers/0/target/memoryBytes",
                        Expect::Near(3e9 * 1.15, 0.05),
                    ),
                    (
                        "/containers/0/target/cpuCores",
                        Expect::Near(3.0 * 1.15, 0.05),
                    ),
                ]
            },
        },
        Case {
            // 9 CPU samples 2 minutes apart: confidence 9 / (60 * 24) = 0.00625 (the lifespan,
            // 16 minutes, is longer).
            source: "logic/estimator_test.go TestConfidenceMultiplier",
            input: doc(
                json!({}),
                T + 16.0 * 60.0,
                (0..9)
                    .map(|i| sample("pod-1", "app", T + f64::from(i) * 120.0, Some(1.0), None))
                    .collect(),
                vec![],
            ),
            expect: vec![
                ("/containers/0/confidence", Expect::Is(json!(0.00625))),
                ("/containers/0/totalSamples", Expect::Is(json!(9))),
            ],
        },
        Case {
            // No CPU sample, so no history: on the memory estimate (1e9) a `+` exponent gives
            // the maximum amount (`MaxResourceAmount`, 1e14), a `-` one zero (then the pod
            // minimum).
            source: "logic/estimator_test.go TestConfidenceMultiplierNoHistory",
            input: doc(
                json!({}),
                T,
                vec![sample("pod-1", "app", T, None, Some(1e9))],
                vec![],
            ),
            expect: vec![
                ("/containers/0/confidence", Expect::Is(json!(0.0))),
                (
                    "/containers/0/upperBound/memoryBytes",
                    Expect::Is(json!(1e14)),
                ),
                (
                    "/containers/0/lowerBound/memoryBytes",
                    Expect::Is(json!(250.0 * MIB)),
                ),
            ],
        },
        Case {
            source: "model/aggregate_container_state_test.go TestAggregateStateByContainerName",
            input: doc(
                json!({}),
                T,
                vec![
                    sample("pod-1", "app-A", T, Some(1.0), Some(2e9)),
                    sample("pod-1", "app-B", T, Some(5.0), Some(10e9)),
                    sample("pod-2", "app-A", T, Some(3.0), Some(4e9)),
                    sample("pod-2", "app-C", T, Some(5.0), Some(10e9)),
                ],
                vec![],
            ),
            expect: vec![
                ("/containers/0/containerName", Expect::Is(json!("app-A"))),
                ("/containers/0/totalSamples", Expect::Is(json!(2))),
                ("/containers/1/totalSamples", Expect::Is(json!(1))),
                ("/containers/2/containerName", Expect::Is(json!("app-C"))),
                ("/containers/2/totalSamples", Expect::Is(json!(1))),
            ],
        },
        Case {
            // Three CPU and memory samples half an interval apart are kept; a CPU sample at
            // the time of the previous one is dropped. (Upstream also drops negative usage;
            // the command rejects it, naming the field: `input_errors_name_the_field`.)
            source: "model/container_test.go TestAggregateContainerUsageSamples",
            input: doc(
                json!({}),
                T + DAY,
                vec![
                    sample("pod-1", "app", T, Some(3.14), Some(5.0)),
                    sample("pod-1", "app", T + DAY / 2.0, Some(6.28), Some(10.0)),
                    sample("pod-1", "app", T + DAY, Some(1.57), Some(2.0)),
                    sample("pod-1", "app", T + DAY, Some(1.0), None),
                ],
                vec![],
            ),
            expect: vec![
                ("/samplesKept", Expect::Is(json!({ "cpu": 3, "memory": 3 }))),
                ("/containers/0/totalSamples", Expect::Is(json!(3))),
            ],
        },
        Case {
            source: "model/container_test.go TestRecordOOMIncreasedByBumpUp",
            input: doc(json!({}), T, vec![], vec![oom(T, 1000.0)]),
            expect: vec![(
                "/ooms/0/recordedMemoryBytes",
                Expect::Is(json!(1200.0 * MIB)),
            )],
        },
        Case {
            source: "model/container_test.go TestRecordOOMIncreasedByMin",
            input: doc(json!({}), T, vec![], vec![oom(T, 1.0)]),
            expect: vec![(
                "/ooms/0/recordedMemoryBytes",
                Expect::Is(json!(101.0 * MIB)),
            )],
        },
        Case {
            // The interval's usage peak (3000Mi) is above the request (1000Mi): 3000Mi * 1.2.
            source: "model/container_test.go TestRecordOOMMaxedWithKnownSample",
            input: doc(
                json!({}),
                T,
                vec![sample("pod-1", "app", T, None, Some(3000.0 * MIB))],
                vec![oom(T, 1000.0)],
            ),
            expect: vec![(
                "/ooms/0/recordedMemoryBytes",
                Expect::Is(json!(3600.0 * MIB)),
            )],
        },
        Case {
            source: "model/container_test.go TestRecordOOMDiscardsOldSample",
            input: doc(
                json!({}),
                T,
                vec![sample("pod-1", "app", T, None, Some(1000.0 * MIB))],
                vec![oom(T - 30.0 * 3600.0, 1000.0)],
            ),
            expect: vec![
                ("/ooms/0/dropped", Expect::Is(json!("tooOld"))),
                ("/ooms/0/recordedMemoryBytes", Expect::Absent),
            ],
        },
        Case {
            // Two intervals later the last usage peak (2000Mi) still counts: 2000Mi * 1.2.
            source: "model/container_test.go TestRecordOOMInNewWindow",
            input: doc(
                json!({}),
                T + 2.0 * DAY,
                vec![sample("pod-1", "app", T, None, Some(2000.0 * MIB))],
                vec![oom(T + 2.0 * DAY, 1000.0)],
            ),
            expect: vec![(
                "/ooms/0/recordedMemoryBytes",
                Expect::Is(json!(2400.0 * MIB)),
            )],
        },
        Case {
            // kubernetes/autoscaler#8548: an OOM one second before a sample that opened the
            // next interval is fresh; the controller learns of it after that sample.
            source: "model/container_test.go TestRecordOOMFreshOOMNearWindowBoundaryIsNotDiscarded",
            input: doc(
                json!({}),
                T + DAY,
                vec![
                    sample("pod-1", "app", T, None, Some(100.0 * MIB)),
                    sample("pod-1", "app", T + DAY, None, Some(2000.0 * MIB)),
                ],
                vec![oom(T + DAY - 1.0, 1000.0)],
            ),
            expect: vec![(
                "/ooms/0/recordedMemoryBytes",
                Expect::Is(json!(2400.0 * MIB)),
            )],
        },
        Case {
            // Estimates of a few cores and bytes against minAllowed 400 cores / 40000 bytes
            // and maxAllowed 450 / 45000 (upstream's `NewScaledQuantity(40, 1)` ...): CPU is
            // raised to the minimum, memory lowered to the maximum, the annotations say so.
            // (Upstream's lower memory bound, 43000, lies inside the bounds by construction;
            // a history's does not, so it is not compared.)
            source: "utils/vpa/capping_test.go TestRecommendationCappedToMinMaxPolicy",
            input: doc(
                json!({ "containerPolicies": [ {
                    "containerName": "ctr-name",
                    "minAllowed": { "cpu": "400", "memory": "40000" },
                    "maxAllowed": { "cpu": "450", "memory": "45000" } } ] }),
                T,
                vec![sample("pod1", "ctr-name", T, Some(3.0), Some(5e9))],
                vec![],
            ),
            expect: vec![
                (
                    "/recommendations/0/target",
                    Expect::Is(json!({ "cpu": "400", "memory": "45000" })),
                ),
                (
                    "/recommendations/0/lowerBound/cpu",
                    Expect::Is(json!("400")),
                ),
                (
                    "/recommendations/0/upperBound",
                    Expect::Is(json!({ "cpu": "450", "memory": "45000" })),
                ),
                (
                    "/containers/0/capped",
                    Expect::Is(json!([
                        "cpu capped to minAllowed",
                        "memory capped to maxAllowed"
                    ])),
                ),
                (
                    "/containers/0/uncappedTarget/cpuCores",
                    Expect::Near(3.0 * 1.15, 0.05),
                ),
            ],
        },
    ]
}

#[test]
fn vpa_recommender_cases_through_the_command() {
    let mut failures = Vec::new();
    for case in cases() {
        let out = recommend(&case.input)
            .unwrap_or_else(|e| panic!("{}: the input is refused: {e}", case.source));
        for (pointer, expect) in &case.expect {
            let got = out.pointer(pointer);
            let ok = match (expect, got) {
                (Expect::Is(want), Some(got)) => want == got,
                (Expect::Near(want, rel), Some(got)) => got
                    .as_f64()
                    .is_some_and(|g| (g - want).abs() <= rel * want.abs()),
                (Expect::Absent, None) => true,
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{}: {pointer} is {got:?}, expected {}",
                    case.source,
                    match expect {
                        Expect::Is(v) => v.to_string(),
                        Expect::Near(v, rel) => format!("{v} within {rel}"),
                        Expect::Absent => "absent".into(),
                    }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// model/container_test.go `TestRecordOOMDontRunAway`: after an OOM at a 1000Mi request
/// (1200Mi recorded), smaller OOMs (999Mi) leave the recommendation where it was; a larger
/// one (2000Mi) raises it to 2400Mi's.
#[test]
fn vpa_oom_dont_run_away_through_the_command() {
    let run_with = |requests: &[f64]| {
        let ooms = requests.iter().map(|r| oom(T, *r)).collect();
        recommend(&doc(json!({}), T, vec![], ooms)).expect("valid")
    };
    let target = |out: &Value| out["containers"][0]["target"]["memoryBytes"].clone();
    let first = run_with(&[1000.0]);
    let smaller = run_with(&[1000.0, 999.0, 999.0]);
    assert_eq!(target(&smaller), target(&first));
    let larger = run_with(&[1000.0, 999.0, 999.0, 2000.0]);
    assert_eq!(
        larger["ooms"][3]["recordedMemoryBytes"],
        json!(2400.0 * MIB)
    );
    let alone = run_with(&[2000.0]);
    assert_eq!(target(&larger), target(&alone));
    assert!(target(&larger).as_f64() > target(&first).as_f64());
}

/// A checkpoint written by one run and passed back gives what one run over all the samples
/// gives (the controller's restart, minus the per-pod trackers).
#[test]
fn a_checkpoint_resumes_the_history() {
    let samples: Vec<Value> = (0..20)
        .map(|i| {
            let x = f64::from(i);
            sample(
                "pod-1",
                "app",
                T + x * 60.0,
                Some(0.1 + x / 100.0),
                Some(1e8 + x * 1e6),
            )
        })
        .collect();
    let now = T + 20.0 * 60.0;
    let whole = recommend(&doc(json!({}), now, samples.clone(), vec![])).expect("valid");
    let first =
        parse(&doc(json!({}), now, samples[..10].to_vec(), vec![]).to_string()).expect("valid");
    let checkpoint = replay_and_recommend(&first).expect("runs").checkpoint;
    let mut second = doc(json!({}), now, samples[10..].to_vec(), vec![]);
    second["checkpoint"] = serde_json::to_value(checkpoint).expect("encodes");
    let resumed = recommend(&second).expect("valid");
    assert_eq!(resumed["containers"][0]["totalSamples"], json!(20));
    assert_eq!(resumed["recommendations"], whole["recommendations"]);
}

#[test]
fn input_errors_name_the_field() {
    let good = doc(
        json!({ "containerPolicies": [ { "containerName": "app" } ] }),
        T,
        vec![sample("pod-1", "app", T, Some(0.1), Some(1e8))],
        vec![oom(T, 100.0)],
    );
    assert!(recommend(&good).is_ok());
    let refused = |edit: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        edit(&mut v);
        recommend(&v).expect_err("refused").to_string()
    };
    for (edit, message) in [
        (
            &(|v: &mut Value| v["samples"][0]["cpuCores"] = json!(-1.0)) as &dyn Fn(&mut Value),
            "samples[0].cpuCores: -1 must not be negative",
        ),
        (
            &|v: &mut Value| v["samples"][0]["cpuCores"] = json!("1"),
            "samples[0].cpuCores: invalid type: string \"1\", expected f64",
        ),
        (
            &|v: &mut Value| v["samples"][0]["cpu"] = json!(1),
            "samples[0].cpu: unknown field `cpu`",
        ),
        (
            &|v: &mut Value| v["ooms"][0]["at"] = json!(T * 1000.0),
            "ooms[0].at: 1492536905000 is after now (1492536905); times are Unix seconds",
        ),
        (
            &|v: &mut Value| v["samples"][0]["container"] = json!(""),
            "samples[0].container: must not be empty",
        ),
        (
            &|v: &mut Value| v["vertical"]["containerPolicies"][0]["minAlowed"] = json!({}),
            "vertical.containerPolicies[0].minAlowed: unknown field",
        ),
        (
            &|v: &mut Value| {
                v["vertical"]["containerPolicies"][0]["maxAllowed"] = json!({ "cpu": "lots" })
            },
            "vertical.containerPolicies[0].maxAllowed.cpu: \"lots\" is not a quantity",
        ),
        (
            &|v: &mut Value| v["vertical"]["mode"] = json!("Sometimes"),
            "vertical.mode: unknown variant `Sometimes`",
        ),
        (
            &|v: &mut Value| {
                v.as_object_mut().map(|o| o.remove("now"));
            },
            "input: missing field `now`",
        ),
        (
            &|v: &mut Value| v["checkpoint"] = json!({ "version": 99 }),
            "checkpoint: checkpoint version: unsupported version 99",
        ),
    ] {
        let got = refused(edit);
        assert!(got.starts_with(message), "{got}\nexpected: {message}");
    }
}

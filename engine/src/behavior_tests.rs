//! Cases ported from kubernetes/kubernetes `pkg/controller/podautoscaler/horizontal_test.go`.
//! Upstream builds event and recommendation timestamps from `time.Now()`; here they are offsets
//! from a fixed `NOW`.

use super::*;

const NOW: f64 = 1_700_000_000.0;

/// `generateScalingRules`.
fn rules(
    pods: i32,
    pods_period: i32,
    percent: i32,
    percent_period: i32,
    window: i32,
) -> ScalingRules {
    let mut policies = Vec::new();
    if pods != 0 {
        policies.push(RatePolicy {
            kind: PolicyType::Pods,
            value: pods,
            period_seconds: pods_period,
        });
    }
    if percent != 0 {
        policies.push(RatePolicy {
            kind: PolicyType::Percent,
            value: percent,
            period_seconds: percent_period,
        });
    }
    ScalingRules {
        stabilization_window_seconds: Some(window),
        select_policy: Some(SelectPolicy::Max),
        policies: Some(policies),
        tolerance: None,
    }
}

/// `generateEventsUniformDistribution`: event `i` of `n` sits in the middle of its segment of
/// the last `period` seconds (whole seconds, as upstream's Duration conversion truncates).
fn events(raw: &[i32], period: i32, up: bool) -> Vec<ScaleEvent> {
    let segment = f64::from(period) / raw.len() as f64;
    raw.iter()
        .enumerate()
        .map(|(i, change)| {
            let ago = (f64::from(period) - segment * (i as f64 + 1.0) + segment / 2.0) as i64;
            ScaleEvent {
                replica_change: if up { *change } else { -*change },
                at_unix_seconds: NOW - ago as f64,
            }
        })
        .collect()
}

struct RuleCase {
    name: &'static str,
    up_events: Vec<ScaleEvent>,
    down_events: Vec<ScaleEvent>,
    min: i32,
    max: i32,
    up: Option<ScalingRules>,
    down: Option<ScalingRules>,
    current: i32,
    desired: i32,
    want: i32,
    condition: &'static str,
}

fn rc(
    name: &'static str,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    want: i32,
    condition: &'static str,
) -> RuleCase {
    RuleCase {
        name,
        up_events: vec![],
        down_events: vec![],
        min,
        max,
        up: None,
        down: None,
        current,
        desired,
        want,
        condition,
    }
}

/// horizontal_test.go TestScalingWithRules (every table entry, including the one upstream
/// skips with `testThis: true`).
#[test]
fn scaling_with_rules_table() {
    let e = |raw: &[i32], up: bool| events(raw, 120, up);
    let cases = vec![
        rc(
            "prenormalized desired replicas within range",
            5,
            7,
            3,
            8,
            7,
            "DesiredWithinRange",
        ),
        rc(
            "prenormalized desired replicas < minReplicas",
            3,
            1,
            2,
            8,
            2,
            "TooFewReplicas",
        ),
        rc(
            "prenormalized desired replicas within range when minReplicas is 0",
            1,
            0,
            0,
            10,
            0,
            "DesiredWithinRange",
        ),
        rc(
            "maxReplicas is the limit because maxReplicas < scaleUpLimit",
            20,
            1000,
            1,
            10,
            10,
            "TooManyReplicas",
        ),
        rc(
            "desired replica count is more than the maximum replica count",
            100,
            1000,
            100,
            150,
            150,
            "TooManyReplicas",
        ),
        RuleCase {
            up: Some(rules(0, 0, 1, 60, 0)),
            ..rc(
                "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies",
                3,
                1000,
                1,
                2000,
                4,
                "ScaleUpLimit",
            )
        },
        RuleCase {
            down: Some(rules(20, 60, 0, 0, 0)),
            ..rc(
                "scaleDownLimit is the limit because scaleDownLimit > minReplicas with user defined policies",
                1000,
                3,
                3,
                2000,
                980,
                "ScaleDownLimit",
            )
        },
        rc(
            "scaleUp with default behavior",
            10,
            50,
            1,
            1000,
            20,
            "ScaleUpLimit",
        ),
        RuleCase {
            up: Some(rules(100, 60, 100, 60, 0)),
            ..rc(
                "scaleUp with pods policy larger than percent policy",
                10,
                500,
                1,
                1000,
                110,
                "ScaleUpLimit",
            )
        },
        RuleCase {
            up: Some(rules(2, 60, 100, 60, 0)),
            ..rc(
                "scaleUp with percent policy larger than pods policy",
                10,
                500,
                1,
                1000,
                20,
                "ScaleUpLimit",
            )
        },
        RuleCase {
            up: Some(rules(100, 60, 0, 0, 0)),
            ..rc(
                "scaleUp with spec MaxReplicas limitation with large pod policy",
                10,
                50,
                1,
                1000,
                50,
                "DesiredWithinRange",
            )
        },
        RuleCase {
            up: Some(rules(10000, 60, 0, 0, 0)),
            ..rc(
                "scaleUp with spec MaxReplicas limitation with large percent policy",
                10,
                50,
                1,
                1000,
                50,
                "DesiredWithinRange",
            )
        },
        RuleCase {
            up: Some(rules(30, 60, 0, 0, 0)),
            ..rc(
                "scaleUp with pod policy limitation",
                10,
                50,
                1,
                1000,
                40,
                "ScaleUpLimit",
            )
        },
        RuleCase {
            up: Some(rules(0, 0, 200, 60, 0)),
            ..rc(
                "scaleUp with percent policy limitation",
                10,
                50,
                1,
                1000,
                30,
                "ScaleUpLimit",
            )
        },
        RuleCase {
            down: Some(rules(20, 60, 1, 60, 300)),
            ..rc(
                "scaleDown with percent policy larger than pod policy",
                100,
                2,
                1,
                1000,
                80,
                "ScaleDownLimit",
            )
        },
        RuleCase {
            down: Some(rules(2, 60, 1, 60, 300)),
            ..rc(
                "scaleDown with pod policy larger than percent policy",
                100,
                2,
                1,
                1000,
                98,
                "ScaleDownLimit",
            )
        },
        RuleCase {
            down: Some(rules(100, 60, 0, 0, 300)),
            ..rc(
                "scaleDown with spec MinReplicas=nil limitation with large pod policy",
                10,
                0,
                1,
                1000,
                1,
                "TooFewReplicas",
            )
        },
        RuleCase {
            down: Some(rules(100, 60, 0, 0, 300)),
            ..rc(
                "scaleDown with spec MinReplicas limitation with large pod policy",
                10,
                0,
                1,
                1000,
                1,
                "TooFewReplicas",
            )
        },
        RuleCase {
            down: Some(rules(0, 0, 100, 60, 300)),
            ..rc(
                "scaleDown with spec MinReplicas limitation with large percent policy",
                10,
                2,
                5,
                1000,
                5,
                "TooFewReplicas",
            )
        },
        RuleCase {
            down: Some(rules(5, 60, 0, 0, 300)),
            ..rc(
                "scaleDown with pod policy limitation",
                10,
                2,
                1,
                1000,
                5,
                "ScaleDownLimit",
            )
        },
        RuleCase {
            down: Some(rules(0, 0, 50, 60, 300)),
            ..rc(
                "scaleDown with percent policy limitation",
                10,
                5,
                1,
                1000,
                5,
                "DesiredWithinRange",
            )
        },
        RuleCase {
            up_events: e(&[1, 5, 9], true),
            up: Some(rules(300, 60, 0, 0, 0)),
            ..rc(
                "scaleUp with spec MaxReplicas limitation with large pod policy and events",
                100,
                500,
                1,
                200,
                200,
                "TooManyReplicas",
            )
        },
        RuleCase {
            up_events: e(&[1, 5, 9], true),
            up: Some(rules(0, 0, 10000, 60, 0)),
            ..rc(
                "scaleUp with spec MaxReplicas limitation with large percent policy and events",
                100,
                500,
                1,
                200,
                200,
                "TooManyReplicas",
            )
        },
        RuleCase {
            up_events: e(&[1, 5, 9], true),
            up: Some(rules(5, 120, 0, 0, 0)),
            ..rc(
                "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
                100,
                500,
                1,
                1000,
                100,
                "ScaleUpLimit",
            )
        },
        RuleCase {
            up_events: e(&[1, 5, 9], true),
            up: Some(rules(150, 120, 0, 0, 0)),
            ..rc(
                "scaleUp with pod policy and previous scale up events",
                100,
                500,
                1,
                1000,
                235,
                "ScaleUpLimit",
            )
        },
        RuleCase {
            up_events: e(&[1, 5, 9], true),
            up: Some(rules(0, 0, 200, 120, 0)),
            ..rc(
                "scaleUp with percent policy and previous scale up events",
                100,
                500,
                1,
                1000,
                255,
                "ScaleUpLimit",
            )
        },
        RuleCase {
            up_events: e(&[4], true),
            down_events: e(&[2], false),
            up: Some(rules(0, 0, 300, 300, 0)),
            ..rc(
                "scaleUp with percent policy and previous scale up and down events",
                6,
                24,
                1,
                1000,
                16,
                "ScaleUpLimit",
            )
        },
        RuleCase {
            down_events: e(&[1, 5, 9], false),
            ..rc(
                "scaleDown with default policy and previous events",
                10,
                5,
                1,
                1000,
                5,
                "DesiredWithinRange",
            )
        },
        RuleCase {
            down_events: e(&[1, 5, 9], false),
            down: Some(rules(115, 120, 0, 0, 300)),
            ..rc(
                "scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events",
                100,
                0,
                1,
                1000,
                1,
                "TooFewReplicas",
            )
        },
        RuleCase {
            down_events: e(&[1, 5, 9], false),
            down: Some(rules(130, 120, 0, 0, 300)),
            ..rc(
                "scaleDown with spec MinReplicas limitation with large pod policy and previous events",
                100,
                0,
                5,
                1000,
                5,
                "TooFewReplicas",
            )
        },
        RuleCase {
            down_events: e(&[1, 5, 9], false),
            down: Some(rules(0, 0, 100, 120, 300)),
            ..rc(
                "scaleDown with spec MinReplicas limitation with large percent policy and previous events",
                100,
                2,
                5,
                1000,
                5,
                "TooFewReplicas",
            )
        },
        RuleCase {
            down_events: e(&[1, 5, 9], false),
            down: Some(rules(5, 120, 0, 0, 300)),
            ..rc(
                "scaleDown with pod policy limitation and previous events",
                100,
                2,
                1,
                1000,
                100,
                "ScaleDownLimit",
            )
        },
        RuleCase {
            down_events: e(&[2, 4, 6], false),
            down: Some(rules(0, 0, 50, 120, 300)),
            ..rc(
                "scaleDown with percent policy limitation and previous events",
                100,
                0,
                1,
                1000,
                56,
                "ScaleDownLimit",
            )
        },
        RuleCase {
            up_events: e(&[2], true),
            down_events: e(&[4], false),
            down: Some(rules(0, 0, 50, 180, 0)),
            ..rc(
                "scaleDown with percent policy and previous scale up and down events",
                10,
                1,
                1,
                1000,
                6,
                "ScaleDownLimit",
            )
        },
        RuleCase {
            down_events: e(&[10, 10, 10], false),
            down: Some(rules(0, 0, 10, 120, 300)),
            ..rc(
                "scaleDown with previous events preventing further scale down",
                100,
                0,
                1,
                1000,
                100,
                "ScaleDownLimit",
            )
        },
        RuleCase {
            down_events: e(&[10, 10, 10], false),
            down: Some(rules(0, 0, 1000, 120, 300)),
            ..rc(
                "scaleDown with with previous events still allowing more scale down",
                10,
                5,
                1,
                1000,
                5,
                "DesiredWithinRange",
            )
        },
        RuleCase {
            up_events: e(&[8, 12, 9, 11], true),
            up: Some(rules(1000, 60, 0, 0, 0)),
            ..rc(
                "check 'outdated' flag for events for one behavior for up",
                100,
                200,
                1,
                1000,
                200,
                "DesiredWithinRange",
            )
        },
        RuleCase {
            up_events: e(&[8, 12, 9, 11], true),
            up: Some(rules(1000, 120, 100, 60, 0)),
            ..rc(
                "check that events were not marked 'outdated' for two different policies in the behavior for up",
                100,
                200,
                1,
                1000,
                200,
                "DesiredWithinRange",
            )
        },
        RuleCase {
            up_events: e(&[8, 12, 9, 11], true),
            up: Some(rules(1000, 30, 100, 60, 0)),
            ..rc(
                "check that events were marked 'outdated' for two different policies in the behavior for up",
                100,
                200,
                1,
                1000,
                200,
                "DesiredWithinRange",
            )
        },
        RuleCase {
            down_events: e(&[8, 12, 9, 11], false),
            down: Some(rules(1000, 60, 0, 0, 300)),
            ..rc(
                "check 'outdated' flag for events for one behavior for down",
                100,
                5,
                1,
                1000,
                5,
                "DesiredWithinRange",
            )
        },
        RuleCase {
            down_events: e(&[8, 12, 9, 11], false),
            down: Some(rules(1000, 120, 100, 60, 300)),
            ..rc(
                "check that events were not marked 'outdated' for two different policies in the behavior for down",
                100,
                5,
                1,
                1000,
                5,
                "DesiredWithinRange",
            )
        },
        RuleCase {
            down_events: e(&[8, 12, 9, 11], false),
            down: Some(rules(1000, 30, 100, 60, 300)),
            ..rc(
                "check that events were marked 'outdated' for two different policies in the behavior for down",
                100,
                5,
                1,
                1000,
                5,
                "DesiredWithinRange",
            )
        },
    ];
    assert_eq!(
        cases.len(),
        42,
        "every TestScalingWithRules entry is ported"
    );
    for c in &cases {
        let up = scale_up_rules(c.up.as_ref());
        let down = scale_down_rules(c.down.as_ref(), 300);
        let all: Vec<ScaleEvent> = c.up_events.iter().chain(&c.down_events).copied().collect();
        let (got, condition) =
            convert_with_behavior_rate(c.current, c.desired, c.min, c.max, &up, &down, &all, NOW);
        assert_eq!(got, c.want, "TestScalingWithRules {}: replicas", c.name);
        assert_eq!(
            condition, c.condition,
            "TestScalingWithRules {}: condition",
            c.name
        );
    }
}

fn rec(replicas: i32, ago_seconds: f64) -> Recommendation {
    Recommendation {
        replicas,
        at_unix_seconds: NOW - ago_seconds,
    }
}

/// horizontal_test.go TestNormalizeDesiredReplicasWithBehavior (every table entry; upstream
/// also checks how its in-memory log reuses slots, which Tidal replaces by returning the pruned
/// history in `Decision.next`).
#[test]
fn normalize_desired_replicas_with_behavior_table() {
    let m = 60.0;
    /// (name, recommendations, current, prenormalized, expected, up window, down window)
    type Case = (&'static str, Vec<Recommendation>, i32, i32, i32, i32, i32);
    let cases: Vec<Case> = vec![
        // (name, recommendations, current, prenormalized, expected, up window, down window)
        (
            "empty recommendations for scaling down",
            vec![],
            100,
            5,
            5,
            0,
            0,
        ),
        (
            "simple scale down stabilization",
            vec![rec(4, 2.0 * m), rec(5, m)],
            100,
            3,
            5,
            0,
            180,
        ),
        (
            "simple scale up stabilization",
            vec![rec(4, 2.0 * m), rec(5, m)],
            1,
            7,
            4,
            300,
            0,
        ),
        (
            "no scale down stabilization",
            vec![rec(1, 2.0 * m), rec(2, m)],
            100,
            3,
            3,
            300,
            0,
        ),
        (
            "no scale up stabilization",
            vec![rec(4, 2.0 * m), rec(5, m)],
            1,
            3,
            3,
            0,
            300,
        ),
        (
            "no scale down stabilization, reuse recommendation element",
            vec![rec(10, 10.0 * m), rec(9, 9.0 * m)],
            100,
            3,
            3,
            0,
            0,
        ),
        (
            "no scale up stabilization, reuse recommendation element",
            vec![rec(10, 10.0 * m), rec(9, 9.0 * m)],
            1,
            100,
            100,
            0,
            0,
        ),
        (
            "scale down stabilization, reuse one of obsolete recommendation element",
            vec![
                rec(10, 10.0 * m),
                rec(4, m),
                rec(5, 2.0 * m),
                rec(9, 9.0 * m),
            ],
            100,
            3,
            5,
            0,
            180,
        ),
        (
            "scale up stabilization, reuse one of obsolete recommendation element",
            vec![
                rec(10, 100.0 * m),
                rec(6, m),
                rec(5, 2.0 * m),
                rec(9, 3.0 * m),
            ],
            1,
            100,
            5,
            300,
            0,
        ),
        (
            "scale up and down stabilization, do not scale up when prenormalized rec goes down",
            vec![rec(2, 100.0 * m), rec(3, 3.0 * m)],
            2,
            1,
            2,
            300,
            300,
        ),
        (
            "scale up and down stabilization, do not scale down when prenormalized rec goes up",
            vec![rec(2, 100.0 * m), rec(1, 3.0 * m)],
            2,
            3,
            2,
            300,
            300,
        ),
    ];
    for (name, recs, current, desired, want, up, down) in cases {
        let (got, _) = stabilize_with_behaviors(current, desired, up, down, &recs, NOW);
        assert_eq!(got, want, "TestNormalizeDesiredReplicasWithBehavior {name}");
    }
}

/// horizontal_test.go TestNormalizeDesiredReplicas (legacy 5-minute window; every entry).
#[test]
fn normalize_desired_replicas_legacy_table() {
    let m = 60.0;
    let cases: Vec<(&str, Vec<Recommendation>, i32, i32)> = vec![
        ("empty log", vec![], 5, 5),
        ("stabilize", vec![rec(4, 2.0 * m), rec(5, m)], 3, 5),
        ("no stabilize", vec![rec(1, 2.0 * m), rec(2, m)], 3, 3),
        (
            "no stabilize - old recommendations",
            vec![rec(10, 10.0 * m), rec(9, 9.0 * m)],
            3,
            3,
        ),
        (
            "stabilize - old recommendations",
            vec![
                rec(10, 10.0 * m),
                rec(4, m),
                rec(5, 2.0 * m),
                rec(9, 9.0 * m),
            ],
            3,
            5,
        ),
    ];
    for (name, recs, desired, want) in cases {
        assert_eq!(
            stabilize_legacy(desired, &recs, 300, NOW),
            want,
            "TestNormalizeDesiredReplicas {name}"
        );
    }
}

/// horizontal_test.go TestConvertDesiredReplicasWithRules (every entry).
#[test]
fn convert_desired_replicas_with_rules_table() {
    let cases = [
        (
            "prenormalized desired replicas within range",
            5,
            7,
            3,
            8,
            7,
            "DesiredWithinRange",
        ),
        (
            "prenormalized desired replicas < minReplicas",
            3,
            1,
            2,
            8,
            2,
            "TooFewReplicas",
        ),
        (
            "prenormalized desired zeroed replicas within range",
            1,
            0,
            0,
            10,
            0,
            "DesiredWithinRange",
        ),
        (
            "maxReplicas is the limit because maxReplicas < scaleUpLimit",
            20,
            1000,
            1,
            10,
            10,
            "TooManyReplicas",
        ),
        (
            "scaleUpLimit is the limit because scaleUpLimit < maxReplicas",
            3,
            1000,
            1,
            2000,
            legacy_scale_up_limit(3),
            "ScaleUpLimit",
        ),
    ];
    for (name, current, desired, min, max, want, condition) in cases {
        assert_eq!(
            convert_with_rules(current, desired, min, max),
            (want, condition),
            "TestConvertDesiredReplicasWithRules {name}"
        );
    }
    // calculateScaleUpLimit is max(2*current, 4).
    assert_eq!(legacy_scale_up_limit(3), 6);
    assert_eq!(legacy_scale_up_limit(1), 4);
}

fn min_rules() -> ResolvedRules {
    ResolvedRules {
        stabilization_window_seconds: 300,
        select_policy: SelectPolicy::Min,
        policies: vec![
            RatePolicy {
                kind: PolicyType::Pods,
                value: 2,
                period_seconds: 60,
            },
            RatePolicy {
                kind: PolicyType::Percent,
                value: 50,
                period_seconds: 60,
            },
        ],
        tolerance: None,
    }
}

/// horizontal_test.go TestCalculateScaleUpLimitWithScalingRules and
/// TestCalculateScaleDownLimitWithBehaviors.
#[test]
fn scale_limits_with_min_select_policy() {
    assert_eq!(
        scale_up_limit(1, &[], &min_rules(), NOW),
        2,
        "TestCalculateScaleUpLimitWithScalingRules"
    );
    assert_eq!(
        scale_down_limit(5, &[], &min_rules(), NOW),
        3,
        "TestCalculateScaleDownLimitWithBehaviors"
    );
}

/// horizontal_test.go TestStoreScaleEvents: the `getReplicasChangePerPeriod(60, ...)` part of
/// every entry (storage itself is the caller's job in Tidal).
#[test]
fn replicas_change_per_period_table() {
    let ev = |change: i32, ago: f64| ScaleEvent {
        replica_change: change,
        at_unix_seconds: NOW - ago,
    };
    let cases: Vec<(&str, Vec<ScaleEvent>, i32)> = vec![
        ("empty entries with default behavior", vec![], 0),
        ("empty entries with two-policy-behavior", vec![], 0),
        (
            "one outdated entry to be kept untouched without behavior",
            vec![ev(7, 61.0)],
            0,
        ),
        (
            "one outdated entry to be replaced with behavior",
            vec![ev(7, 61.0)],
            0,
        ),
        (
            "one actual entry to be not touched with behavior",
            vec![ev(7, 58.0)],
            7,
        ),
        (
            "two entries, one of them to be replaced",
            vec![ev(7, 61.0), ev(6, 59.0)],
            6,
        ),
        (
            "replace one entry, use policies with different periods",
            vec![ev(8, 29.0), ev(6, 59.0), ev(7, 61.0), ev(9, 61.0)],
            14,
        ),
        (
            "two entries, both actual",
            vec![ev(7, 58.0), ev(6, 59.0)],
            13,
        ),
    ];
    for (name, up_events, want) in cases {
        assert_eq!(
            replicas_change_per_period(60, &up_events, true, NOW),
            want,
            "TestStoreScaleEvents {name}: up"
        );
        let down: Vec<ScaleEvent> = up_events
            .iter()
            .map(|e| ScaleEvent {
                replica_change: -e.replica_change,
                ..*e
            })
            .collect();
        assert_eq!(
            replicas_change_per_period(60, &down, false, NOW),
            want,
            "TestStoreScaleEvents {name}: down"
        );
        assert_eq!(
            replicas_change_per_period(60, &down, true, NOW),
            0,
            "TestStoreScaleEvents {name}: direction"
        );
    }
}

#[test]
fn disabled_select_policy_freezes_the_direction() {
    let mut r = scale_up_rules(None);
    r.select_policy = SelectPolicy::Disabled;
    assert_eq!(scale_up_limit(7, &[], &r, NOW), 7);
    let down = scale_down_rules(
        Some(&ScalingRules {
            select_policy: Some(SelectPolicy::Disabled),
            ..Default::default()
        }),
        300,
    );
    assert_eq!(
        convert_with_behavior_rate(7, 2, 1, 10, &r, &down, &[], NOW),
        (7, reason::SCALE_DOWN_LIMIT)
    );
}

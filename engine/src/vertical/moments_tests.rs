//! The decaying mean and variance on hand-computed data.

use super::*;

const HL: f64 = 3600.0;
const T0: f64 = 1_700_000_000.0;

fn moments() -> DecayingMoments {
    DecayingMoments::new(HL, 1e-9).expect("valid half-life")
}

#[track_caller]
fn close(want: f64, got: Option<f64>) {
    let got = got.expect("not empty");
    assert!(
        (want - got).abs() <= 1e-12 * want.abs().max(1.0),
        "want {want}, got {got}"
    );
}

/// Samples 1, 2, 3, 4 at one time: u = 2.5, s^2 = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25.
#[test]
fn equal_weights() {
    let mut m = moments();
    for x in [1.0, 2.0, 3.0, 4.0] {
        m.add(x, 1.0, T0);
    }
    close(2.5, m.mean());
    close(1.25, m.variance());
    close(1.25_f64.sqrt(), m.std_dev());
}

/// x = 1 with weight 1, x = 3 with weight 3: u = 10 / 4 = 2.5,
/// s^2 = (1 * 1.5^2 + 3 * 0.5^2) / 4 = 0.75.
#[test]
fn sample_weights() {
    let mut m = moments();
    m.add(1.0, 1.0, T0);
    m.add(3.0, 3.0, T0);
    close(2.5, m.mean());
    close(0.75, m.variance());
}

/// x = 2 at t0 and x = 4 one half-life later, both weight 1: decayed weights 1 and 2, so
/// u = (2 + 8) / 3 = 10/3 and s^2 = (1 * (4/3)^2 + 2 * (2/3)^2) / 3 = 8/9.
#[test]
fn decayed_weights() {
    let mut m = moments();
    m.add(2.0, 1.0, T0);
    m.add(4.0, 1.0, T0 + HL);
    close(10.0 / 3.0, m.mean());
    close(8.0 / 9.0, m.variance());
    // Order does not matter.
    let mut r = moments();
    r.add(4.0, 1.0, T0 + HL);
    r.add(2.0, 1.0, T0);
    close(10.0 / 3.0, r.mean());
    close(8.0 / 9.0, r.variance());
}

/// The reference moves after 100 half-lives; relative weights, hence u and s, do not change.
#[test]
fn reference_moves_without_changing_the_result() {
    let mut m = moments();
    m.add(2.0, 1.0, T0);
    m.add(4.0, 1.0, T0 + HL);
    let mut far = moments();
    far.add(2.0, 1.0, T0 + 200.0 * HL);
    far.add(4.0, 1.0, T0 + 201.0 * HL);
    close(m.mean().expect("set"), far.mean());
    close(m.variance().expect("set"), far.variance());
}

/// Removing a sample gives back the moments without it: {1, 2, 3, 10} minus 10 is {1, 2, 3}
/// (u = 2, s^2 = 2/3); removing everything empties it.
#[test]
fn subtract() {
    let mut m = moments();
    for x in [1.0, 2.0, 3.0, 10.0] {
        m.add(x, 1.0, T0);
    }
    m.subtract(10.0, 1.0, T0);
    close(2.0, m.mean());
    close(2.0 / 3.0, m.variance());
    for x in [1.0, 2.0, 3.0] {
        m.subtract(x, 1.0, T0);
    }
    assert!(m.is_empty());
    assert_eq!(m.mean(), None);
}

/// Merging equals adding everything to one accumulator.
#[test]
fn merge() {
    let mut a = moments();
    a.add(1.0, 1.0, T0);
    a.add(5.0, 2.0, T0 + HL);
    let mut b = moments();
    b.add(3.0, 1.0, T0 + 3.0 * HL);
    b.add(7.0, 0.5, T0 + 2.0 * HL);
    let mut all = moments();
    all.add(1.0, 1.0, T0);
    all.add(5.0, 2.0, T0 + HL);
    all.add(3.0, 1.0, T0 + 3.0 * HL);
    all.add(7.0, 0.5, T0 + 2.0 * HL);
    a.merge(&b).expect("same half-life");
    close(all.mean().expect("set"), a.mean());
    close(all.variance().expect("set"), a.variance());
    let other = DecayingMoments::new(2.0 * HL, 1e-9).expect("valid");
    assert!(a.merge(&other).is_err());
}

/// The checkpoint is exact, and bad numbers in it are rejected.
#[test]
fn checkpoint_round_trip() {
    let mut m = moments();
    m.add(2.0, 1.0, T0);
    m.add(4.0, 1.0, T0 + HL);
    let cp = m.checkpoint();
    let json = serde_json::to_string(&cp).expect("serializes");
    let back: MomentsCheckpoint = serde_json::from_str(&json).expect("parses");
    let mut r = moments();
    r.load_checkpoint(&back).expect("loads");
    assert_eq!(r, m);
    let bad = MomentsCheckpoint {
        weight: -1.0,
        ..cp.clone()
    };
    assert!(moments().load_checkpoint(&bad).is_err());
    let bad = MomentsCheckpoint {
        mean: f64::NAN,
        ..cp
    };
    assert_eq!(
        moments().load_checkpoint(&bad).expect_err("NaN").label(),
        "not_finite"
    );
}

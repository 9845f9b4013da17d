//! `tidal-scaler decide` on the example in `docs/decide.md` prints the documented output, and
//! rejects invalid input naming the field.

use std::io::Write;
use std::process::{Command, Stdio};

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/decide.md");
    std::fs::read_to_string(path).expect("docs/decide.md is readable")
}

/// The first ```json block after `heading`.
fn json_after(doc: &str, heading: &str) -> serde_json::Value {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} is in docs/decide.md"));
    let rest = &doc[start..];
    let open = rest.find("```json\n").expect("a json block follows") + "```json\n".len();
    let close = rest[open..]
        .find("\n```")
        .expect("the json block is closed");
    serde_json::from_str(&rest[open..open + close]).expect("the json block parses")
}

fn run(stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidal-scaler"))
        .args(["decide", "--input", "-"])
        .env_remove("TIDAL_SCALER_INPUT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("input is written");
    child.wait_with_output().expect("the binary finishes")
}

#[test]
fn documented_example_produces_documented_output() {
    let doc = doc();
    let input = json_after(&doc, "### Example input");
    let expected = json_after(&doc, "### Example output");
    let out = run(&input.to_string());
    assert!(
        out.status.success(),
        "decide failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(got, expected);
    assert_eq!(got["desired_replicas"], 7);
}

#[test]
fn invalid_input_names_the_field() {
    let doc = doc();
    let mut input = json_after(&doc, "### Example input");
    input["spec"]["metrics"][1]["target"]["average_value"] = serde_json::json!(0);
    let out = run(&input.to_string());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.metrics[1].target.average_value: must be at least 0.001"),
        "stderr: {stderr}"
    );
}

/// `simulate` is implemented now (tests in `simulate_cli.rs`); without its required flags it
/// fails with a usage error naming them.
#[test]
fn simulate_without_flags_names_the_required_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_tidal-scaler"))
        .arg("simulate")
        .env_remove("TIDAL_SCALER_SIMULATE_TRACE")
        .env_remove("TIDAL_SCALER_SIMULATE_POLICY")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--trace"), "{stderr}");
}

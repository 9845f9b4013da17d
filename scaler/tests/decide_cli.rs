//! `tidal-scaler decide` and `tidal-scaler recommend` on the examples in `docs/decide.md` print
//! the documented output, and reject invalid input naming the field.

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
    run_command(&["decide", "--input", "-"], stdin)
}

/// The binary with `args`, `stdin` written to it.
fn run_command(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidal-scaler"))
        .args(args)
        .env_remove("TIDAL_SCALER_INPUT")
        .env_remove("TIDAL_SCALER_CHECKPOINT_OUTPUT")
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

/// `simulate` and `plot` moved to `tidal-sim`: hidden here, they accept any arguments (a
/// command copied from an old document) and exit 2 with one line naming the replacement.
#[test]
fn moved_subcommands_name_tidal_sim_and_exit_2() {
    for (name, args) in [
        (
            "simulate",
            &["--trace", "traces/step.csv", "--compare", "hpa,keda"][..],
        ),
        ("simulate", &[]),
        ("plot", &["--input", "x.csv", "--output", "-", "--help"]),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tidal-scaler"))
            .arg(name)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the binary runs");
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}");
        assert!(out.stdout.is_empty(), "{name} {args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr,
            format!(
                "tidal-scaler {name} moved to tidal-sim: run tidal-sim {name} with the same \
                 flags (docs/simulate.md)\n"
            ),
            "{name} {args:?}"
        );
    }
    // Hidden: the help lists neither.
    let out = Command::new(env!("CARGO_BIN_EXE_tidal-scaler"))
        .arg("--help")
        .output()
        .expect("the binary runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("decide"), "{help}");
    assert!(
        !help.contains("simulate") && !help.contains("plot"),
        "{help}"
    );
}

/// `recommend` on its example input file (`scaler/tests/fixtures/recommend.json`, the input shown
/// in `docs/decide.md`) prints the documented output and writes the history it was asked for.
#[test]
fn recommend_example_file_produces_documented_output() {
    let doc = doc();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/recommend.json");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).expect("the fixture is readable"))
            .expect("the fixture is JSON");
    assert_eq!(
        file,
        json_after(&doc, "### Recommend example input"),
        "docs/decide.md shows the fixture"
    );
    let history = std::env::temp_dir().join(format!("tidal-recommend-{}.json", std::process::id()));
    let history_arg = history.to_str().expect("a UTF-8 temporary path");
    let out = run_command(
        &[
            "recommend",
            "--input",
            fixture,
            "--checkpoint-output",
            history_arg,
        ],
        "",
    );
    assert!(
        out.status.success(),
        "recommend failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(got, json_after(&doc, "### Recommend example output"));
    assert_eq!(got["recommendations"][0]["target"]["memory"], "671088640");
    assert_eq!(got["ooms"][0]["recordedMemoryBytes"], 644245094.0);
    let written = std::fs::read_to_string(&history).expect("the checkpoint is written");
    std::fs::remove_file(&history).expect("the checkpoint is removed");
    let checkpoint: serde_json::Value = serde_json::from_str(&written).expect("it is JSON");
    assert_eq!(checkpoint["containers"]["app"]["total_samples"], 6);
}

#[test]
fn recommend_invalid_input_names_the_field() {
    let mut input = json_after(&doc(), "### Recommend example input");
    input["samples"][3]["memoryBytes"] = serde_json::json!(-1);
    let out = run_command(&["recommend", "--input", "-"], &input.to_string());
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("samples[3].memoryBytes: -1 must not be negative"),
        "stderr: {stderr}"
    );

    let mut input = json_after(&doc(), "### Recommend example input");
    input["vertical"]["containerPolicies"][1]["controlledResources"] = serde_json::json!(["gpu"]);
    let out = run_command(&["recommend"], &input.to_string());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "vertical.containerPolicies[1].controlledResources[0]: unknown variant `gpu`"
        ),
        "stderr: {stderr}"
    );
}

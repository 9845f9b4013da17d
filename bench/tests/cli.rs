//! The `tidal-bench` command: every part answers `--help`, and a section recorded from a
//! driver's JSON reaches the results file unless `TIDAL_BENCH_WRITE=0`, which prints it only.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tidal-bench");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn run(args: &[&str], write: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env("TIDAL_BENCH_WRITE", write)
        .env_remove("TIDAL_BENCH_NODE_PARTS")
        .output()
        .expect("tidal-bench runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tidal-bench-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

#[test]
fn every_part_answers_help() {
    for part in ["scaler", "node", "peers", "kafka", "agent", "cgroups"] {
        let out = run(&[part, "--help"], "1");
        assert!(out.status.success(), "{part} --help: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("--results"));
    }
}

#[test]
fn a_recorded_section_is_written_or_only_printed() {
    let dir = scratch("record");
    let results = dir.join("RESULTS.md");
    let before = std::fs::read_to_string(fixtures().join("node/before.md")).expect("before.md");
    std::fs::write(&results, &before).expect("a results file");
    let json = fixtures().join("node/both.jsonl");
    let args = [
        "node",
        "--results",
        results.to_str().expect("a UTF-8 path"),
        "--from-json",
        json.to_str().expect("a UTF-8 path"),
    ];

    let out = run(&args, "0");
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.starts_with("## The real node (issue #17)\n"),
        "{printed}"
    );
    assert!(printed.contains("`tidal-bench node` on "), "{printed}");
    assert!(
        !printed.contains("<!-- node:"),
        "comment lines are not printed"
    );
    assert_eq!(
        std::fs::read_to_string(&results).expect("results"),
        before,
        "TIDAL_BENCH_WRITE=0 leaves the file as it was"
    );

    let out = run(&args, "1");
    assert!(out.status.success(), "{out:?}");
    let after = std::fs::read_to_string(&results).expect("results");
    assert_ne!(after, before);
    assert!(after.contains("<!-- node:data {\"conditions\""));
    let kept = |doc: &str| doc[..doc.find("<!-- node:begin").expect("the section")].to_string();
    assert_eq!(
        kept(&after),
        kept(&before),
        "the sections before it are kept"
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .expect("the directory")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");

    let out = run(&args, "maybe");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TIDAL_BENCH_WRITE must be 0 or 1"));
    std::fs::remove_dir_all(&dir).expect("removed");
}

#[test]
fn nothing_measured_leaves_the_file_and_fails() {
    let dir = scratch("nothing");
    let results = dir.join("RESULTS.md");
    std::fs::write(&results, "# Benchmark results\n").expect("a results file");
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").expect("an empty driver output");
    let out = run(
        &[
            "peers",
            "--results",
            results.to_str().expect("a UTF-8 path"),
            "--from-json",
            empty.to_str().expect("a UTF-8 path"),
            "--reason",
            "the stack runs without its peers",
        ],
        "1",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing measured"));
    assert_eq!(
        std::fs::read_to_string(&results).expect("results"),
        "# Benchmark results\n"
    );
    std::fs::remove_dir_all(&dir).expect("removed");
}

//! The `plot` and `simulate` subcommands, run as the `tidal-sim` binary: `plot` turns a CSV
//! into an SVG file, `simulate` replays each shipped trace (`traces/`) against Tidal, HPA and
//! KEDA.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidal-sim"));
    // The environment twins of the flags must not leak in from the caller.
    for (key, _) in std::env::vars() {
        if key.starts_with("TIDAL_SCALER_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("simulate_cli");
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir.join(name)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether the SVG has a `<text>` element that reads exactly `text` (plotters writes the text
/// on a line of its own).
fn has_text(svg: &str, text: &str) -> bool {
    svg.contains(&format!(">\n{text}\n</text>"))
}

#[test]
fn plot_writes_an_svg_chart() {
    let csv = scratch("plot.csv");
    let svg = scratch("plot.svg");
    std::fs::write(
        &csv,
        "t,load,lag,replicas@right\n0,100,0,2\n1,150,,2\n2,400,50,3\n3,380,10,4\n4,200,0,4\n",
    )
    .expect("CSV written");
    let _ = std::fs::remove_file(&svg);
    let out = bin()
        .args([
            "plot",
            "--title",
            "a <small> chart",
            "--y-label",
            "requests/s",
        ])
        .arg("--input")
        .arg(&csv)
        .arg("--output")
        .arg(&svg)
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "plot failed: {}", stderr(&out));
    let text = std::fs::read_to_string(&svg).expect("the SVG was written");
    assert!(text.starts_with("<?xml"), "{text}");
    assert!(text.trim_end().ends_with("</svg>"));
    for name in [
        "a &lt;small&gt; chart",
        "requests/s",
        "time (s)",
        "load",
        "lag",
        "replicas (right axis)",
    ] {
        assert!(has_text(&text, name), "no text {name}: {text}");
    }
    // Both y axes have ticks: load 0 to 400 on the left, replicas 0 to 4 on the right.
    assert!(has_text(&text, "400") && has_text(&text, "4"), "{text}");
    // One line per series (width 2; axes and ticks are 1, the legend's samples 3).
    assert_eq!(text.matches("stroke-width=\"2\"").count(), 3);
    assert!(!text.contains("NaN") && !text.contains("inf"));
}

#[test]
fn plot_names_line_and_column_of_garbage() {
    let csv = scratch("garbage.csv");
    std::fs::write(&csv, "t,load\n0,1\n1,x1\n").expect("CSV written");
    let out = bin()
        .arg("plot")
        .arg("--input")
        .arg(&csv)
        .arg("--output")
        .arg(scratch("garbage.svg"))
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("garbage.csv"), "{err}");
    assert!(err.contains("line 3, column 2 (load)"), "{err}");
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn simulate(trace: &str, extra: &[&str]) -> Output {
    bin()
        .arg("simulate")
        .arg("--trace")
        .arg(repo(trace))
        .arg("--policy")
        .arg(repo("traces/policy.yaml"))
        .args(extra)
        .output()
        .expect("the binary runs")
}

/// A finite, non-negative JSON number.
fn number(v: &serde_json::Value, what: &str) -> f64 {
    let n = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(n.is_finite() && n >= 0.0, "{what} = {n}");
    n
}

/// Every shipped trace replays against HPA and KEDA; the JSON has one result per algorithm,
/// with finite, non-negative figures (the figures themselves are in docs/simulate.md, not
/// here), and a goal check per peer.
#[test]
fn every_shipped_trace_replays_with_hpa_and_keda() {
    for trace in [
        "traces/step.csv",
        "traces/diurnal.csv",
        "traces/flash-sale.csv",
    ] {
        let svg = scratch(&format!("{}.svg", trace.replace(['/', '.'], "_")));
        let _ = std::fs::remove_file(&svg);
        let svg_arg = svg.display().to_string();
        let out = simulate(
            trace,
            &["--compare", "hpa,keda", "--json", "--output-svg", &svg_arg],
        );
        assert!(out.status.success(), "{trace}: {}", stderr(&out));
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("stdout is JSON");
        let seconds = number(&report["seconds"], "seconds");
        assert!(seconds >= 600.0, "{trace}: {seconds} s");
        number(&report["peak_load"], "peak_load");
        number(&report["mean_load"], "mean_load");
        number(&report["setup"]["initial_replicas"], "initial_replicas");
        let results = report["results"].as_array().expect("results is a list");
        let names: Vec<&str> = results
            .iter()
            .map(|r| r["algorithm"].as_str().expect("algorithm is a string"))
            .collect();
        assert_eq!(names, ["tidal", "hpa", "keda"], "{trace}");
        for r in results {
            let what = |f: &str| format!("{trace} {} {f}", r["algorithm"]);
            for field in [
                "interval_seconds",
                "slo_violation_seconds",
                "replica_seconds",
                "scale_events",
                "max_replicas",
                "max_lag",
                "mean_utilization",
            ] {
                number(&r[field], &what(field));
            }
            let violated = number(&r["slo_violation_seconds"], "violations");
            assert!(violated <= seconds, "{}", what("slo_violation_seconds"));
            let max = number(&r["max_replicas"], "max");
            assert!(
                (2.0..=12.0).contains(&max),
                "{}: {max}",
                what("max_replicas")
            );
            let rs = number(&r["replica_seconds"], "replica_seconds");
            assert!(
                rs <= max * seconds && rs >= 2.0 * seconds,
                "{}",
                what("replica_seconds")
            );
            assert!(number(&r["mean_utilization"], "util") <= 1.0);
        }
        let goal = report["goal"].as_array().expect("goal is a list");
        assert_eq!(goal.len(), 2, "{trace}");
        for g in goal {
            assert!(g["met"].is_boolean(), "{g}");
            assert!(matches!(g["peer"].as_str(), Some("hpa" | "keda")), "{g}");
        }
        let text = std::fs::read_to_string(&svg).expect("the SVG was written");
        assert!(text.trim_end().ends_with("</svg>"));
        for name in [
            "load",
            "tidal lag",
            "hpa replicas (right axis)",
            "keda replicas (right axis)",
        ] {
            assert!(has_text(&text, name), "{trace}: legend lacks {name}");
        }
        assert!(!text.contains("NaN") && !text.contains("inf"));
    }
}

/// Without `--json` the results are a table; the flags' environment twins work.
#[test]
fn table_output_and_environment_twins() {
    let out = bin()
        .arg("simulate")
        .env("TIDAL_SCALER_SIMULATE_TRACE", repo("traces/step.csv"))
        .env("TIDAL_SCALER_SIMULATE_POLICY", repo("traces/policy.yaml"))
        .env("TIDAL_SCALER_SIMULATE_COMPARE", "keda")
        .env("TIDAL_SCALER_SIMULATE_POD_START_SECONDS", "10")
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("ready 10 s after start"), "{table}");
    assert!(table.contains("SLO-violation s"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("tidal ")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("keda ")), "{table}");
    assert!(!table.lines().any(|l| l.starts_with("hpa ")), "{table}");
    assert!(table.contains("vs keda"), "{table}");

    let out = bin()
        .args(["simulate", "--compare", "hpa"])
        .arg("--trace")
        .arg(repo("traces/step.csv"))
        .arg("--policy")
        .arg(repo("traces/policy.yaml"))
        .env("TIDAL_SCALER_SIMULATE_JSON", "true")
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["results"].as_array().map(Vec::len), Some(2));
}

/// Errors name the file and the line, or the field, or the flag.
#[test]
fn errors_name_the_file_and_the_line_or_field() {
    let trace = scratch("bad-trace.csv");
    std::fs::write(&trace, "t,load\n0,100\n1,-5\n").expect("written");
    let out = bin()
        .arg("simulate")
        .arg("--trace")
        .arg(&trace)
        .arg("--policy")
        .arg(repo("traces/policy.yaml"))
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("bad-trace.csv: line 3, column 2 (load): -5 is negative"),
        "{err}"
    );

    let policy = scratch("bad-policy.yaml");
    let text = std::fs::read_to_string(repo("traces/policy.yaml")).expect("policy");
    std::fs::write(&policy, text.replace("lagPerReplica", "lagPerReplca")).expect("written");
    let out = bin()
        .arg("simulate")
        .arg("--trace")
        .arg(repo("traces/step.csv"))
        .arg("--policy")
        .arg(&policy)
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("bad-policy.yaml: spec.metrics[1].kafkaLag.lagPerReplca: unknown field"),
        "{err}"
    );

    let out = simulate("traces/step.csv", &["--capacity-per-replica=-1"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--capacity-per-replica: -1 is not a number above 0"),
        "{err}"
    );
}

/// Without its required flags `simulate` fails with a usage error naming them.
#[test]
fn simulate_without_flags_names_the_required_ones() {
    let out = bin()
        .arg("simulate")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--trace"), "{err}");
}

//! The `plot` and `simulate` subcommands, run as the binary: `plot` turns a CSV into an SVG
//! file, `simulate` replays each shipped trace (`traces/`) against Tidal, HPA and KEDA.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidal-scaler"));
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
    assert!(text.contains("a &lt;small&gt; chart"));
    assert!(text.contains(">requests/s</text>"));
    for name in [
        ">load</text>",
        ">lag</text>",
        ">replicas (right axis)</text>",
    ] {
        assert!(text.contains(name), "legend lacks {name}");
    }
    assert_eq!(text.matches("<path ").count(), 3);
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

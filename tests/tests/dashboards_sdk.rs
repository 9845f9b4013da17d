//! The dashboards' shape against the Grafana Foundation SDK's dashboard types (issue #16,
//! "Operations": Grafana itself cannot be used here, its licence), with tools/dashcheck
//! (built by `scripts/stack.sh build`): every dashboard decodes strictly (no unknown or
//! mistyped field, in panels, their options and their Prometheus queries) and validates; and
//! the check is not vacuous: a dashboard broken in each of those places fails, naming where.
//! tests/tests/dashboards.rs runs every query against the real Prometheus.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tidal_e2e::{Stack, repo_root};

type R = anyhow::Result<()>;

fn dashboards() -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo_root().join("dashboards"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    out.sort();
    Ok(out)
}

fn dashcheck(stack: &Stack, files: &[&Path]) -> anyhow::Result<(bool, String)> {
    let out = Command::new(stack.var("TIDAL_DASHCHECK")?)
        .args(files)
        .output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn every_dashboard_has_the_shape_of_the_sdks_types() -> R {
    let stack = Stack::load()?;
    let files = dashboards()?;
    anyhow::ensure!(files.len() >= 4, "dashboards: {files:?}");
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (ok, out) = dashcheck(&stack, &refs)?;
    anyhow::ensure!(ok, "dashcheck failed:\n{out}");
    for f in &files {
        let d: Value = serde_json::from_slice(&std::fs::read(f)?)?;
        let panels = d["panels"].as_array().map_or(0, Vec::len);
        let want = format!("{}: ok ({panels} panels)", f.display());
        anyhow::ensure!(out.contains(&want), "expected {want:?} in:\n{out}");
    }
    eprintln!("{out}");
    Ok(())
}

#[test]
fn a_dashboard_broken_anywhere_fails_naming_where() -> R {
    let stack = Stack::load()?;
    let original = repo_root().join("dashboards/workload-scaling.json");
    let d: Value = serde_json::from_slice(&std::fs::read(&original)?)?;
    let first_query = d["panels"]
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .position(|p| p["targets"].as_array().is_some_and(|t| !t.is_empty()))
        })
        .ok_or_else(|| anyhow::anyhow!("no panel with a query"))?;
    type Breakage = fn(&mut Value, usize);
    let cases: [(&str, Breakage, &str); 4] = [
        (
            "a misspelt top-level field",
            |d, _| d["titel"] = json!("x"),
            "titel",
        ),
        (
            "a mistyped grid position",
            |d, _| d["panels"][0]["gridPos"]["w"] = json!("wide"),
            "gridPos",
        ),
        (
            "a misspelt field of a Prometheus query",
            |d, i| d["panels"][i]["targets"][0]["expre"] = json!("up"),
            "expre",
        ),
        (
            "a mistyped field config default",
            |d, i| d["panels"][i]["fieldConfig"]["defaults"]["decimals"] = json!("two"),
            "decimals",
        ),
    ];
    let dir = std::env::temp_dir().join(format!("dashcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for (what, break_it, says) in cases {
        let mut broken = d.clone();
        break_it(&mut broken, first_query);
        let path = dir.join("broken.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&broken)?)?;
        let (ok, out) = dashcheck(&stack, &[&path])?;
        anyhow::ensure!(
            !ok && out.contains(says),
            "{what}: expected a failure naming {says:?}, got ok={ok}:\n{out}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

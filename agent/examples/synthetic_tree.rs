//! Writes a synthetic kubelet cgroup tree (see `tidal_agent::synthetic`) for `scripts/bench.sh`:
//! `cargo run --release -p tidal-agent --example synthetic_tree -- <dir> [--layout v2|v1]
//! [--pods 100] [--containers-per-pod 10]`. Point `tidal-agent --cgroup-root` at `<dir>`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tidal_agent::synthetic::{Layout, TreeSpec, write_tree};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LayoutArg {
    V2,
    V1,
}

/// Writes a synthetic node's pod and container cgroups under DIR (which must not exist).
#[derive(Debug, Parser)]
struct Args {
    dir: PathBuf,
    #[arg(long, value_enum, default_value_t = LayoutArg::V2)]
    layout: LayoutArg,
    #[arg(long, default_value_t = 100)]
    pods: usize,
    #[arg(long, default_value_t = 10)]
    containers_per_pod: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        !args.dir.exists(),
        "{} exists; give a new directory",
        args.dir.display()
    );
    let spec = TreeSpec {
        pods: args.pods,
        containers_per_pod: args.containers_per_pod,
        layout: match args.layout {
            LayoutArg::V2 => Layout::V2,
            LayoutArg::V1 => Layout::V1,
        },
    };
    let pods = write_tree(&args.dir, &spec)
        .with_context(|| format!("writing the tree under {}", args.dir.display()))?;
    println!(
        "{} pods, {} container cgroups ({:?}) under {}",
        pods.len(),
        spec.pods * spec.containers_per_pod,
        spec.layout,
        args.dir.display()
    );
    Ok(())
}

//! `tidal-scaler`: the central controller (see `docs/design.md`).
//!
//! Subcommands: `run` (the controller), `decide` and `simulate` (the pure engine, offline, on
//! JSON) and `crdgen` (prints the CRD). Each part lands with its issue; until then the
//! subcommand says so and exits non-zero rather than pretending to work.

mod cli;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = cli::Cli::parse();
    let what = match cli.command {
        cli::Command::Run(_) => "the controller (`run`)",
        cli::Command::Decide(_) => "the offline engine (`decide`)",
        cli::Command::Simulate(_) => "the offline engine (`simulate`)",
        cli::Command::Crdgen => "the ScalingPolicy CRD (`crdgen`)",
    };
    anyhow::bail!(
        "not yet: {what} is not implemented in this build ({})",
        tidal_core::build::describe("tidal-scaler")
    )
}

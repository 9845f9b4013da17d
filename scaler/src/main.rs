//! `tidal-scaler`: the central controller (see `docs/design.md`).
//!
//! Subcommands: `run` (the controller), `decide` (the pure engine, offline, on JSON),
//! `recommend` (the vertical recommender, offline, on JSON), `import` (HPAs and ScaledObjects
//! to policies) and `crdgen` (prints the CRD). `simulate` and `plot` moved to `tidal-sim`
//! (`sim/`); here they are hidden and only say so, with exit code 2.

use anyhow::Context;
use clap::Parser;
use tidal_scaler::cli::{self, read_input};
use tidal_scaler::engine;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    tidal_core::process::init_tracing(tidal_core::process::LogTo::Stderr, cli.log_format);
    match cli.command {
        cli::Command::Decide(args) => decide(&args),
        cli::Command::Recommend(args) => recommend(&args),
        cli::Command::Run(args) => run(*args),
        cli::Command::Crdgen => crdgen(),
        cli::Command::Import(args) => import(&args),
        cli::Command::Simulate(_) => moved("simulate"),
        cli::Command::Plot(_) => moved("plot"),
    }
}

/// `simulate` and `plot` moved to `tidal-sim` (the `sim/` crate): a user following an old
/// document is told where, on one line, and the exit code is 2 (a usage error, as clap's).
fn moved(name: &str) -> ! {
    eprintln!(
        "tidal-scaler {name} moved to tidal-sim: run tidal-sim {name} with the same flags \
         (docs/simulate.md)"
    );
    std::process::exit(2)
}

/// `import`: HPAs and ScaledObjects in, ScalingPolicies out (YAML, one document each, after
/// comments naming every field without an exact equivalent; the same notes on stderr).
fn import(args: &cli::ImportArgs) -> anyhow::Result<()> {
    use tidal_scaler::import;
    let (text, source) = read_input(&args.file)?;
    let options = import::ImportOptions {
        kafka_cluster: args.kafka_cluster.clone(),
    };
    let run = import::import_all(&text, &options).with_context(|| format!("importing {source}"))?;
    for skipped in &run.skipped {
        eprintln!("skipped: {skipped}");
    }
    let imported = run.imported;
    anyhow::ensure!(
        !imported.is_empty(),
        "{source}: no HorizontalPodAutoscaler or ScaledObject to import"
    );
    let mut out = String::new();
    for (i, one) in imported.iter().enumerate() {
        for n in &one.notes {
            eprintln!("{}: {n}", one.source);
        }
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&import::render(one).context("encoding the policy")?);
    }
    let inexact: usize = imported.iter().map(|i| i.notes.len()).sum();
    anyhow::ensure!(
        !(args.strict && inexact > 0),
        "--strict: {inexact} field(s) without an exact equivalent (listed above)"
    );
    std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes())
        .context("writing the policies to standard output")
}

/// `run`: the controller, on a multi-threaded runtime.
fn run(args: cli::RunArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(tidal_scaler::run::run_controller(args))
}

/// `crdgen`: print the ScalingPolicy CRD as YAML (`manifests/crd/scalingpolicy.yaml`).
fn crdgen() -> anyhow::Result<()> {
    let yaml = tidal_scaler::api::crd_yaml().context("encoding the CRD as YAML")?;
    std::io::Write::write_all(&mut std::io::stdout().lock(), yaml.as_bytes())
        .context("writing the CRD to standard output")
}

/// `decide`: read one [`engine::Input`] as JSON, print the [`engine::Decision`] as JSON.
fn decide(args: &cli::OfflineArgs) -> anyhow::Result<()> {
    let (text, source) = read_input(&args.input)?;
    let input: engine::Input =
        serde_json::from_str(&text).with_context(|| format!("parsing {source} as decide input"))?;
    let decision = engine::decide(&input).context("invalid input")?;
    let out = serde_json::to_string_pretty(&decision).context("encoding the decision")?;
    println!("{out}");
    Ok(())
}

/// `recommend`: read one [`tidal_scaler::recommend::Input`] as JSON, print the
/// recommendation as JSON (and write the history with `--checkpoint-output`).
fn recommend(args: &cli::RecommendArgs) -> anyhow::Result<()> {
    use tidal_scaler::recommend;
    let (text, source) = read_input(&args.input)?;
    let input =
        recommend::parse(&text).with_context(|| format!("parsing {source} as recommend input"))?;
    let outcome = recommend::replay_and_recommend(&input).context("invalid input")?;
    if let Some(path) = &args.checkpoint_output {
        let cp =
            serde_json::to_string_pretty(&outcome.checkpoint).context("encoding the checkpoint")?;
        std::fs::write(path, cp + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    let out =
        serde_json::to_string_pretty(&outcome.output).context("encoding the recommendation")?;
    println!("{out}");
    Ok(())
}

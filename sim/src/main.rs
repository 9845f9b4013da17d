//! `tidal-sim`: Tidal's offline tools (see `docs/simulate.md`), out of the controller binary.
//!
//! Subcommands: `simulate` (a load trace replayed through a workload model and the engine,
//! against the HPA and KEDA) and `plot` (a CSV as an SVG chart).

use anyhow::Context;
use clap::Parser;
use tidal_scaler::cli::read_input;
use tidal_sim::{cli, plot, simulate};

fn main() -> anyhow::Result<()> {
    match cli::Cli::parse().command {
        cli::Command::Simulate(args) => run_simulate(&args),
        cli::Command::Plot(args) => run_plot(&args),
    }
}

/// `plot`: read a CSV table, write it as an SVG line chart.
fn run_plot(args: &cli::PlotArgs) -> anyhow::Result<()> {
    let (text, source) = read_input(&args.input)?;
    let series =
        plot::read_csv(&text).with_context(|| format!("reading {source} as a CSV table"))?;
    let title = args.title.clone().unwrap_or_else(|| {
        args.input
            .file_stem()
            .map_or_else(|| source.clone(), |s| s.to_string_lossy().into_owned())
    });
    let chart = plot::Chart {
        title,
        x_label: args.x_label.clone(),
        y_label: args.y_label.clone(),
        y2_label: args.y2_label.clone(),
        series,
    };
    let svg = plot::render_svg(&chart)?;
    if args.output.as_os_str() == "-" {
        std::io::Write::write_all(&mut std::io::stdout().lock(), svg.as_bytes())
            .context("writing the SVG to standard output")
    } else {
        std::fs::write(&args.output, svg)
            .with_context(|| format!("writing {}", args.output.display()))
    }
}

/// `simulate`: replay a trace for Tidal (and `--compare` peers); print a table or JSON, and
/// write the chart and the series when asked.
fn run_simulate(args: &cli::SimulateArgs) -> anyhow::Result<()> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let trace = simulate::read_trace(&args.trace, &read(&args.trace)?, args.interpolation)?;
    let policy = simulate::read_policy(&args.policy, &read(&args.policy)?)?;
    let mut report = simulate::simulate(&trace, &policy, &args.options(), &args.compare)?;
    report.trace = args.trace.display().to_string();
    report.policy = args.policy.display().to_string();
    if let Some(path) = &args.output_svg {
        let name = args.trace.file_stem().map_or_else(
            || report.trace.clone(),
            |s| s.to_string_lossy().into_owned(),
        );
        let svg = plot::render_svg(&report.chart(&format!("simulate: {name}")))?;
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.output_csv {
        std::fs::write(path, report.csv())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        let out = serde_json::to_string_pretty(&report.to_json()).context("encoding the report")?;
        println!("{out}");
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

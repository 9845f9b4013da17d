//! `tidal-bench`: runs one benchmark and writes its section of bench/RESULTS.md (see the
//! crate's documentation and `scripts/bench*.sh`, which build it and call it).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tidal-bench",
    about = "Runs one of Tidal's benchmarks and writes its section of bench/RESULTS.md \
             (TIDAL_BENCH_WRITE=0: prints it only)",
    version
)]
struct Cli {
    #[command(subcommand)]
    part: Part,
}

#[derive(Subcommand)]
enum Part {
    /// The scaler (issue #6): reaction time on the fast path, and cycle time, memory and API
    /// requests with 1,000 (or more) ScalingPolicies; on the local stack, as root.
    Scaler(tidal_bench::scaler::Args),
    /// The real node (issue #17): Tidal installed in-cluster, its reaction to real load and
    /// the agent pod's cost; on the local stack with its real node.
    Node(tidal_bench::node::Args),
    /// Tidal and its peers side by side on the real node (issue #15): the HPA with
    /// metrics-server, KEDA and the VPA recommender; CPU and Kafka steps, recommendations and
    /// metric agreement.
    Peers(tidal_bench::peers::Args),
    /// Kafka lag collection (issue #4): Tidal's client, the Java Admin client and the agent's
    /// RSS on 2,000 partitions and 500 groups of the stack's broker.
    Kafka(tidal_bench::kafka::Args),
    /// The agent (issue #3): the release tidal-agent on a synthetic node of 1,000 containers
    /// beside a node-only agent and prometheus-node-exporter, with the criterion medians.
    Agent(tidal_bench::agent::Args),
    /// The agent on real cgroups (issue #13): its CPU per round on 1,000 real, empty container
    /// cgroups made under a private parent; as root.
    Cgroups(tidal_bench::cgroups::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().part {
        Part::Cgroups(args) => tidal_bench::cgroups::main(args),
        part => match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Err(e) => Err(e.into()),
            Ok(runtime) => runtime.block_on(async {
                match part {
                    Part::Scaler(args) => tidal_bench::scaler::main(args).await,
                    Part::Node(args) => tidal_bench::node::main(args).await,
                    Part::Peers(args) => tidal_bench::peers::main(args).await,
                    Part::Kafka(args) => tidal_bench::kafka::main(args).await,
                    Part::Agent(args) => tidal_bench::agent::main(args).await,
                    Part::Cgroups(args) => tidal_bench::cgroups::main(args),
                }
            }),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ERROR: {e:#}");
            ExitCode::FAILURE
        }
    }
}

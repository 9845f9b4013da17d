//! `tidal-bench`: runs one benchmark and writes its section of bench/RESULTS.md (see the
//! crate's documentation and `scripts/bench*.sh`, which build it and call it).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tidal-bench",
    about = "Runs one of Tidal's benchmarks and writes its section of bench/RESULTS.md \
             (TIDAL_BENCH_WRITE=0: prints it only)",
    version
)]
struct Cli {
    /// Print the longest time the run may take, in seconds (its own time limit: the parts'
    /// limits, the waits and the cleanup), and exit without running. `scripts/lib.sh`'s
    /// `bench_drive` runs the driver under `timeout` with this plus a margin.
    #[arg(long, global = true)]
    print_limit: bool,
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

/// How long the runtime waits, when the run is over, for blocking work still running (a
/// synchronous call stuck on the network): then the process ends anyway.
const SHUTDOWN: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_limit {
        let seconds = match &cli.part {
            Part::Scaler(args) => tidal_bench::scaler::limit(args),
            Part::Node(args) => tidal_bench::node::limit(args),
            Part::Peers(args) => tidal_bench::peers::limit(args),
            Part::Kafka(args) => tidal_bench::kafka::limit(args),
            Part::Agent(args) => tidal_bench::agent::limit(args),
            Part::Cgroups(args) => tidal_bench::cgroups::limit(args),
        };
        println!("{seconds}");
        return ExitCode::SUCCESS;
    }
    let result = match cli.part {
        Part::Cgroups(args) => tidal_bench::cgroups::main(args),
        part => match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Err(e) => Err(e.into()),
            Ok(runtime) => {
                let result = runtime.block_on(async {
                    match part {
                        Part::Scaler(args) => tidal_bench::scaler::main(args).await,
                        Part::Node(args) => tidal_bench::node::main(args).await,
                        Part::Peers(args) => tidal_bench::peers::main(args).await,
                        Part::Kafka(args) => tidal_bench::kafka::main(args).await,
                        Part::Agent(args) => tidal_bench::agent::main(args).await,
                        Part::Cgroups(args) => tidal_bench::cgroups::main(args),
                    }
                });
                // Dropping the runtime would wait for every blocking task without end.
                runtime.shutdown_timeout(SHUTDOWN);
                result
            }
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

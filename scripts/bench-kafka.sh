#!/usr/bin/env bash
# scripts/bench-kafka.sh — the Kafka lag-collection benchmark of issue #4 (called by bench.sh).
#
# Scenario on the stack's real broker: 200 topics x 10 partitions (2,000 partitions), 500
# consumer groups with committed offsets (5,000 group-partitions). The driver, `tidal-bench
# kafka` (bench/src/kafka/), measures in one run:
#   - Tidal: tidal_core::kafka::Client::collect, one batched round (release build);
#   - peer: Apache Kafka's Java Admin client doing the same round (the calls kminion makes),
#     in a warm JVM (bench/peers/KafkaAdminLag.java, compiled here). kminion itself cannot be
#     fetched on this machine (its Go module is not served by the module proxy here), so the
#     official Java client stands in for it.
#   - the release tidal-agent with a kafka_lag sampler on the same scenario (per-partition series,
#     1 s interval): its peak RSS (target < 50 MiB) and the total lag it exports.
# Writes the "Kafka lag collection" section of bench/RESULTS.md. Starts the stack if it is not
# up, and stops it again at the end in that case.
#
# Environment (read by tidal-bench; `target/release/tidal-bench kafka --help`):
#   TIDAL_BENCH_KAFKA_ROUNDS         measured rounds for Tidal and the peer (default 30)
#   TIDAL_BENCH_KAFKA_AGENT_SECONDS  how long the agent samples before its RSS is read (default 30)
#   TIDAL_BENCH_KAFKA_LIMIT_SECONDS  the whole run's time limit (default 600 + the agent's
#                                    seconds + 2 per round, 60..7200); at the limit, or on
#                                    Ctrl-C, the agent and the Java peer are stopped and
#                                    bench/RESULTS.md is left as it was
#   TIDAL_BENCH_WRITE                0 prints the results without touching bench/RESULTS.md
#   TIDAL_STACK_DIR                  the stack's directory (default .stack), as scripts/stack.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
ensure_toolchain

STACK_DIR=${TIDAL_STACK_DIR:-$REPO/.stack}
started=0
driver_pid='' driver_pgid=''
# Stops the driver (on SIGTERM it stops the agent and the Java peer) and kills what is left of
# its process group; then stops the stack if this script started it.
cleanup() {
  set +e
  bench_stop
  if ((started)); then "$REPO/scripts/stack.sh" down; fi
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if ! stack_running; then
  step "bringing the stack up"
  "$REPO/scripts/stack.sh" up
  started=1
fi
[[ -f $STACK_DIR/env ]] || fail "the stack runs but $STACK_DIR/env is missing (TIDAL_STACK_DIR?)"
# shellcheck disable=SC1091
source "$STACK_DIR/env"

step "building the driver (tidal-bench) and the agent (release)"
cargo build --release --locked -p tidal-bench --bin tidal-bench -p tidal-agent --bin tidal-agent

step "compiling the Java Admin peer"
peer_dir=$TIDAL_CACHE/bench-peers
mkdir -p "$peer_dir"
javac -nowarn -cp "$TIDAL_KAFKA_HOME/lib/*" -d "$peer_dir" "$REPO/bench/peers/KafkaAdminLag.java" ||
  fail "javac could not compile bench/peers/KafkaAdminLag.java (see above)"

# Bounded by its own time limit (and, should it get stuck, by timeout: lib.sh's bench_drive).
# TIDAL_KAFKA_BOOTSTRAP comes from the stack's env file.
TIDAL_BENCH_AGENT_BIN=$REPO/target/release/tidal-agent \
  bench_drive "$REPO/target/release/tidal-bench" kafka --peer-classpath "$peer_dir:$TIDAL_KAFKA_HOME/lib/*"

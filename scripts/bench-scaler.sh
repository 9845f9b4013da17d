#!/usr/bin/env bash
# scripts/bench-scaler.sh — the scaler benchmark of issue #6 (called by bench.sh).
#
# Runs on the local stack, which must already be up (scripts/stack.sh up); it never starts or
# stops the stack. Needs root (pod cgroups on this host). Release builds of tidal-scaler,
# tidal-agent and the driver, `tidal-bench scaler` (bench/src/scaler/), which does the work:
#   1. Reaction time on the fast path: a KWOK Deployment under a CPU ScalingPolicy, a real
#      busy loop started in its pod's cgroup, the release agent sampling every 0.5 s and the
#      release scaler (--agent-url) evaluating every 1 s. The time from the load step to the
#      scale write seen by a watch on the API server, over 20 steps (each: load on -> 2
#      replicas, load off -> back to 1 after a 5 s scale-down window).
#   2. Scale: 1,000 (then 5,000) ScalingPolicies, each on its own Deployment (1 pod, left
#      Pending on no node by default: bound to the two KWOK nodes, 1,000 pods overfill them and
#      the scheduler preempts them for, or blocks, other sessions' pods), all on one Kafka
#      consumer group's lag. A fresh release scaler per size, 60 s measured after its first
#      cycles: cycle time (per cycle, from its own histogram's sum and count scraped every
#      200 ms), peak RSS (VmHWM), API requests per cycle by verb, CPU; then the latency of one
#      status apply like the scaler's.
# Both run the scaler with the manifests' RBAC (a ServiceAccount token) and leader election.
# After each part (each size), the driver writes the "Scaler (issue #6)" section of
# bench/RESULTS.md (keeps every other section, and the other parts' figures), and prints it
# at the end. The namespaces it made are deleted at the end; it waits for them.
#
# Environment (read by tidal-bench; `target/release/tidal-bench scaler --help`):
#   TIDAL_BENCH_SCALER_STEPS           reaction steps (default 20, 1..200)
#   TIDAL_BENCH_SCALER_AGENT_INTERVAL  agent sampling interval, seconds (default 0.5)
#   TIDAL_BENCH_SCALER_WINDOW          scale-down stabilization window of the reaction policy,
#                                      seconds (default 5, 0..300)
#   TIDAL_BENCH_SCALER_SIZES           policy counts, comma separated, each run in a fresh
#                                      namespace (default 1000; 1000,5000 adds the 5,000 run:
#                                      the controller-manager needs ~4 min per 1,000
#                                      Deployments at its 20 requests/s)
#   TIDAL_BENCH_SCALER_PODS            pending (default) or kwok: where the scale run's pods go
#   TIDAL_BENCH_SCALER_SECONDS         measured window per size (default 60, 10..600; extended
#                                      to hold at least 5 cycles, up to 600 s)
#   TIDAL_BENCH_SCALER_PARTS           which parts run: reaction,scale (default both)
#   TIDAL_BENCH_WRITE                  0 prints the results without touching bench/RESULTS.md
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

STACK_DIR=${TIDAL_STACK_DIR:-$REPO/.stack}
if ! stack_running || [[ ! -f $STACK_DIR/env ]]; then
  fail "the local stack is not up (scripts/stack.sh status): run scripts/stack.sh up first; this benchmark never starts or stops it"
fi
[[ $(id -u) == 0 ]] || fail "root is needed: the benchmark creates pod cgroups under /sys/fs/cgroup"
# shellcheck disable=SC1091
source "$STACK_DIR/env"
ensure_toolchain

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tidal-bench-scaler.XXXXXX")
driver_pid='' driver_pgid=''
# Stops the driver (it removes what it made on SIGTERM) and kills what is left of its process
# group (the scaler, agent and busy loop it started), then removes anything it listed in
# $WORK/created and could not remove (it was killed): namespaces, cluster RBAC, cgroups.
cleanup() { bench_cleanup "$WORK" tidal.dev/bench=scaler; }
trap cleanup EXIT
trap 'exit 130' INT TERM

step "building (release): tidal-scaler, tidal-agent and the driver (tidal-bench)"
cargo build --release --locked -p tidal-scaler --bin tidal-scaler -p tidal-agent --bin tidal-agent \
  -p tidal-bench --bin tidal-bench

# Each part is bounded by its own time limit (and the whole run, should it get stuck, by
# timeout: lib.sh's bench_drive). The binaries go through the environment, so no command line
# here names tidal-scaler.
export TIDAL_BENCH_SCALER_BIN=$REPO/target/release/tidal-scaler
export TIDAL_BENCH_AGENT_BIN=$REPO/target/release/tidal-agent
bench_drive "$REPO/target/release/tidal-bench" scaler --work "$WORK"

#!/usr/bin/env bash
# scripts/bench.sh — criterion benchmarks and side-by-side comparisons with peers.
# Results (ratios from one run) go to bench/RESULTS.md: this script regenerates the
# "Agent (issue #3)" section and keeps every other section; then scripts/bench-kafka.sh,
# scripts/bench-scaler.sh, scripts/bench-node.sh and scripts/bench-peers.sh regenerate theirs.
#
# Agent (issue #3): a synthetic node of 1,000 containers on 100 pods (cgroup v2, systemd
# driver; written to /dev/shm), sampled every 1 s by the release tidal-agent while it, the same
# binary with no cgroup tree (node series only) and Debian's prometheus-node-exporter (installed
# with apt-get if missing) run side by side and are all scraped every 1 s. CPU comes from
# /proc/<pid>/stat (and the agent's `sampler` thread), memory from /proc/<pid>/status. The
# driver, `tidal-bench agent` (bench/src/agent.rs), runs the three, measures and writes the
# section with the criterion medians.
#
# Environment:
#   TIDAL_BENCH_SECONDS     length of the side-by-side run (default 60, at most 600)
#   TIDAL_BENCH_CRITERION   0 skips the criterion benchmarks (default 1)
#   TIDAL_BENCH_WRITE       0 prints the results without touching bench/RESULTS.md (default 1)
#   TIDAL_BENCH_PACKAGES    packages whose criterion benches run (default: every one that has some)
#   TIDAL_BENCH_KAFKA       0 skips scripts/bench-kafka.sh (the Kafka lag section)
#   TIDAL_BENCH_NODE        0 skips scripts/bench-node.sh (the real node section: Tidal
#                           in-cluster, reaction and the agent pod's cost; ~5 min)
#   TIDAL_BENCH_PEERS       0 skips scripts/bench-peers.sh (Tidal beside the HPA, KEDA and
#                           the VPA on the real node; ~40 min; its TIDAL_BENCH_PEERS_* apply)
#   TIDAL_BENCH_SCALER      0 skips scripts/bench-scaler.sh (the scaler section; ~15 min;
#                           its own TIDAL_BENCH_SCALER_* variables apply)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
ensure_toolchain

RUN_CRITERION=${TIDAL_BENCH_CRITERION:-1}

shm=/dev/shm
[[ -d $shm && -w $shm ]] || shm=${TMPDIR:-/tmp}
WORK=$(mktemp -d "$shm/tidal-bench.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. Release build ------------------------------------------------------------------------
step "cargo build --release (tidal-agent, the synthetic tree writer and the driver, tidal-bench)"
cargo build --release --locked -p tidal-agent --bin tidal-agent --example synthetic_tree \
  -p tidal-bench --bin tidal-bench
AGENT_BIN="$REPO/target/release/tidal-agent"
TREE_BIN="$REPO/target/release/examples/synthetic_tree"
BENCH_BIN="$REPO/target/release/tidal-bench"

# --- 2. Criterion benchmarks -----------------------------------------------------------------
# Every package with a bench target (criterion's need `harness = false`, so each is a
# [[bench]] of its Cargo.toml), tidal-agent first (its medians go into the agent section).
# A failing package does not stop the agent's run; the script exits non-zero at the end.
failed=()
if [[ $RUN_CRITERION != 0 ]]; then
  benches=$(for toml in "$REPO"/*/Cargo.toml; do
    if grep -q '^\[\[bench\]\]' "$toml"; then sed -n 's/^name = "\(.*\)"$/\1/p' "$toml" | head -n 1; fi
  done)
  packages=${TIDAL_BENCH_PACKAGES:-$(echo "$benches" | sort -u | awk '$0=="tidal-agent"{print "0 " $0; next} {print "1 " $0}' | sort | cut -d' ' -f2)}
  for p in $packages; do
    step "cargo bench -p $p"
    # Fixture trees go to $WORK (in memory) and are removed with it.
    TIDAL_BENCH_DIR="$WORK" timeout 1800 cargo bench -p "$p" --locked || {
      note "cargo bench -p $p FAILED"
      failed+=("$p")
    }
  done
else
  note "TIDAL_BENCH_CRITERION=0: using the criterion results already under target/criterion"
fi

# --- 3. Side by side: tidal-agent and prometheus-node-exporter --------------------------------
NE_BIN=$(command -v prometheus-node-exporter || true)
if [[ -z $NE_BIN ]]; then
  step "installing Debian's prometheus-node-exporter"
  [[ $(id -u) == 0 ]] || fail "prometheus-node-exporter is missing; install it (apt-get install prometheus-node-exporter) or run as root"
  timeout 300 apt-get install -y --no-install-recommends prometheus-node-exporter >/dev/null ||
    { timeout 300 apt-get update >/dev/null && timeout 300 apt-get install -y --no-install-recommends prometheus-node-exporter >/dev/null; } ||
    fail "could not install prometheus-node-exporter"
  NE_BIN=$(command -v prometheus-node-exporter) || fail "prometheus-node-exporter is not on PATH after install"
fi

step "writing the synthetic tree: 100 pods x 10 containers, cgroup v2 (under $shm)"
"$TREE_BIN" "$WORK/cgroup" --layout v2 --pods 100 --containers-per-pod 10

step "the side by side run (tidal-bench agent)"
"$BENCH_BIN" agent --agent "$AGENT_BIN" --tree "$WORK/cgroup" --node-exporter "$NE_BIN" \
  --work "$WORK" --criterion-dir "$REPO/target/criterion"

if ((${#failed[@]})); then
  fail "criterion benchmarks failed for: ${failed[*]} (the agent section was still written)"
fi
if [[ ${TIDAL_BENCH_KAFKA:-1} != 0 ]]; then
  step "the Kafka lag benchmark (scripts/bench-kafka.sh; TIDAL_BENCH_KAFKA=0 skips it)"
  "$REPO/scripts/bench-kafka.sh"
fi
if [[ ${TIDAL_BENCH_SCALER:-1} != 0 ]]; then
  step "the scaler benchmark (scripts/bench-scaler.sh; TIDAL_BENCH_SCALER=0 skips it)"
  # It needs the stack up and never starts or stops it: start it here if needed, and stop
  # it again afterwards only if this script started it (as bench-kafka.sh does).
  scaler_started_stack=0
  if ! stack_running; then
    "$REPO/scripts/stack.sh" up
    scaler_started_stack=1
  fi
  scaler_rc=0
  "$REPO/scripts/bench-scaler.sh" || scaler_rc=$?
  if ((scaler_started_stack)); then "$REPO/scripts/stack.sh" down; fi
  ((scaler_rc == 0)) || fail "scripts/bench-scaler.sh failed (exit $scaler_rc)"
fi
# on_real_node SCRIPT: runs a real-node benchmark script on the stack (started here, and
# stopped after, when it was not up), with the Tidal image imported first (Tidal in-cluster).
on_real_node() {
  local started=0 rc=0
  if ! stack_running; then
    "$REPO/scripts/stack.sh" up
    started=1
  fi
  { "$REPO/scripts/image.sh" && "$REPO/scripts/$1"; } || rc=$?
  if ((started)); then "$REPO/scripts/stack.sh" down; fi
  ((rc == 0)) || fail "scripts/$1 failed (exit $rc)"
}
if [[ ${TIDAL_BENCH_NODE:-1} != 0 ]]; then
  step "the real node benchmark (scripts/bench-node.sh; TIDAL_BENCH_NODE=0 skips it)"
  on_real_node bench-node.sh
fi
if [[ ${TIDAL_BENCH_PEERS:-1} != 0 ]]; then
  step "the peers side by side (scripts/bench-peers.sh; TIDAL_BENCH_PEERS=0 skips it)"
  on_real_node bench-peers.sh
fi

step "done"

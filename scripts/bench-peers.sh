#!/usr/bin/env bash
# scripts/bench-peers.sh — Tidal and its peers side by side on the real node (issue #15).
#
# Runs on the local stack, which must already be up with its real node and its peers
# (scripts/stack.sh up; it never starts or stops the stack). Tidal runs in-cluster from
# manifests/overlays/local (applied if missing; the image must have been imported by
# scripts/image.sh). A release build of the driver, `tidal-bench peers` (bench/src/peers/),
# holding the real node exclusively (no node test runs its pods meanwhile):
#   cpu        TIDAL_BENCH_PEERS_STEPS CPU load steps, Tidal and the HPA (metrics-server) on
#              their own copies of the same workload, loaded at the same moments: load on
#              (kubectl exec) → scale write seen by a watch, p50/p95 and the ratios;
#   kafka      as many consumer-group backlog steps, Tidal and KEDA's Kafka scaler (at its
#              default pollingInterval and at 1 s) on the same group: backlog → scale write,
#              the replicas each reaches, and the KEDA operator's CPU; then what each
#              pollingInterval costs KEDA (one ScaledObject at a time, 2 min each: its Kafka
#              requests, counted in the broker's request log, and its CPU);
#   vertical   TIDAL_BENCH_PEERS_MINUTES of one busy pod under Tidal's Off mode (recommend) and the
#              VPA recommender, created at the same moment, with a real OOM kill half-way:
#              time to each one's first recommendation, and both every minute;
#   inplace    Tidal's InPlace and the VPA's InPlaceOrRecreate (recommender, updater, admission
#              controller), each on its own copy of 2 pods requesting 10m/16Mi, created at the
#              same moment: when each copy's pods ran with new requests, in place or by new
#              pods, and what each reached (at most TIDAL_BENCH_PEERS_MINUTES);
#   replay     traces/step.csv and traces/flash-sale.csv, each compressed to
#              TIDAL_BENCH_PEERS_REPLAY_SECONDS, driving real Kafka consumers
#              (tidal-bench-consumer, image from scripts/image.sh --consumer) under Tidal, the HPA
#              and KEDA at once: SLO-violation seconds and replica-seconds, beside what
#              tidal-sim simulate predicts for the same compressed trace;
#   agreement  TIDAL_BENCH_PEERS_READINGS readings, 15 s apart, of the same containers by their
#              cgroup, Tidal's agent, the kubelet's cAdvisor and metrics-server, and each
#              source's sample age.
# The driver writes (or replaces) the section "Peers side by side (issue #15)" of
# bench/RESULTS.md, keeping every other section (and the figures of a part not run), and
# prints it. Bounded: at most about 240 s + lock wait + 2 × 180 s per step + 26 min (the
# polling cost) + the vertical minutes + 2 × (replay seconds + 900) + the inplace minutes + 15 s
# per reading; the defaults take about 80 minutes. Its namespaces are deleted
# at the end, also on Ctrl-C. Not part of scripts/test.sh (tests/tests/peers.rs is).
#
# Environment (read by tidal-bench; `target/release/tidal-bench peers --help`):
#   TIDAL_BENCH_PEERS_STEPS         CPU steps (default 10, 1..100)
#   TIDAL_BENCH_PEERS_WINDOW        scale-down stabilization for both, seconds (default 0, 0..300)
#   TIDAL_BENCH_PEERS_READINGS      agreement readings (default 6, 2..40)
#   TIDAL_BENCH_PEERS_MINUTES       the vertical part's length, and the inplace part's longest
#                                   wait, minutes (default 6, 2..60)
#   TIDAL_BENCH_PEERS_PARTS         a comma list of cpu, kafka, replay, vertical, inplace, agreement
#                                   (default: all)
#   TIDAL_BENCH_PEERS_REPLAY_SECONDS  each replayed trace compressed to this (default 600, 60..600)
#   TIDAL_BENCH_PEERS_LOCK_SECONDS  longest wait for the node tests to release the node (300)
#   TIDAL_BENCH_WRITE               0 prints the results without touching bench/RESULTS.md
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

STACK_DIR=${TIDAL_STACK_DIR:-$REPO/.stack}
if ! stack_running || [[ ! -f $STACK_DIR/env ]]; then
  fail "the local stack is not up (scripts/stack.sh status): run scripts/stack.sh up first; this benchmark never starts or stops it"
fi
# shellcheck disable=SC1091
source "$STACK_DIR/env"
[[ -n ${TIDAL_METRICS_SERVER_URL:-} ]] ||
  fail "the stack runs without its peers (TIDAL_PEERS=0 or TIDAL_REAL_NODE=0): no metrics-server in $STACK_DIR/env"
ensure_toolchain

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tidal-bench-peers.XXXXXX")
driver_pid='' driver_pgid=''
cleanup() { bench_cleanup "$WORK" tidal.dev/bench=peers; }
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ ${TIDAL_BENCH_PEERS_PARTS:-replay} == *replay* ]]; then
  # The replay part's real consumers run from their own image on the node.
  step "the consumer image of the replay part (scripts/image.sh --consumer)"
  scripts/image.sh --consumer
fi

step "building (release): the driver (tidal-bench)"
cargo build --release --locked -p tidal-bench --bin tidal-bench

# Bounded by its own time limit (and, should it get stuck, by timeout: lib.sh's bench_drive);
# the section names this script as the command.
TIDAL_BENCH_INVOKED_AS=scripts/bench-peers.sh bench_drive "$REPO/target/release/tidal-bench" peers --work "$WORK"

#!/usr/bin/env bash
# scripts/bench-peers.sh — Tidal and its peers side by side on the real node (issue #15).
#
# Runs on the local stack, which must already be up with its real node and its peers
# (scripts/stack.sh up; it never starts or stops the stack). Tidal runs in-cluster from
# manifests/overlays/local (applied if missing; the image must have been imported by
# scripts/image.sh). A release build of the driver (tests/examples/peers_bench.rs), holding the
# real node exclusively (no node test runs its pods meanwhile):
#   cpu        TIDAL_BENCH_PEERS_STEPS CPU load steps, Tidal and the HPA (metrics-server) on
#              their own copies of the same workload, loaded at the same moments: load on
#              (kubectl exec) → scale write seen by a watch, p50/p95 and the ratios;
#   kafka      as many consumer-group backlog steps, Tidal and KEDA's Kafka scaler (at its
#              default pollingInterval and at 1 s) on the same group: backlog → scale write,
#              the replicas each reaches, and the KEDA operator's CPU;
#   vertical   TIDAL_BENCH_PEERS_MINUTES of one busy pod under Tidal's Off mode (recommend) and the
#              VPA recommender, created at the same moment, with a real OOM kill half-way:
#              time to each one's first recommendation, and both every minute;
#   agreement  TIDAL_BENCH_PEERS_READINGS readings, 15 s apart, of the same containers by their
#              cgroup, Tidal's agent, the kubelet's cAdvisor and metrics-server, and each
#              source's sample age.
# Writes (or replaces) the section "Peers side by side (issue #15)" of bench/RESULTS.md,
# keeping every other section, and prints it. Bounded: at most about 240 s + lock wait +
# 2 × 180 s per step + the vertical minutes + 15 s per reading; the defaults take about 40
# minutes. Its namespaces are
# deleted at the end, also on Ctrl-C. Not part of scripts/test.sh (tests/tests/peers.rs is).
#
# Environment:
#   TIDAL_BENCH_PEERS_STEPS         CPU steps (default 10, 1..100)
#   TIDAL_BENCH_PEERS_WINDOW        scale-down stabilization for both, seconds (default 0, 0..300)
#   TIDAL_BENCH_PEERS_READINGS      agreement readings (default 6, 2..40)
#   TIDAL_BENCH_PEERS_MINUTES       the vertical part's length, minutes (default 6, 2..60)
#   TIDAL_BENCH_PEERS_PARTS         a comma list of cpu, kafka, vertical, agreement (default: all)
#   TIDAL_BENCH_PEERS_LOCK_SECONDS  longest wait for the node tests to release the node (300)
#   TIDAL_BENCH_WRITE               0 prints the results without touching bench/RESULTS.md
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

STEPS=${TIDAL_BENCH_PEERS_STEPS:-10}
WINDOW=${TIDAL_BENCH_PEERS_WINDOW:-0}
READINGS=${TIDAL_BENCH_PEERS_READINGS:-6}
MINUTES=${TIDAL_BENCH_PEERS_MINUTES:-6}
PARTS=${TIDAL_BENCH_PEERS_PARTS:-cpu,kafka,vertical,agreement}
LOCK_SECONDS=${TIDAL_BENCH_PEERS_LOCK_SECONDS:-300}
WRITE_RESULTS=${TIDAL_BENCH_WRITE:-1}
in_range() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); }
in_range "$STEPS" 1 100 || fail "TIDAL_BENCH_PEERS_STEPS must be a whole number in [1, 100], got $STEPS"
in_range "$WINDOW" 0 300 || fail "TIDAL_BENCH_PEERS_WINDOW must be a whole number of seconds in [0, 300], got $WINDOW"
in_range "$READINGS" 2 40 || fail "TIDAL_BENCH_PEERS_READINGS must be a whole number in [2, 40], got $READINGS"
in_range "$MINUTES" 2 60 || fail "TIDAL_BENCH_PEERS_MINUTES must be a whole number of minutes in [2, 60], got $MINUTES"
in_range "$LOCK_SECONDS" 1 3600 ||
  fail "TIDAL_BENCH_PEERS_LOCK_SECONDS must be a whole number of seconds in [1, 3600], got $LOCK_SECONDS"
[[ $PARTS =~ ^(cpu|kafka|vertical|agreement)(,(cpu|kafka|vertical|agreement)){0,3}$ ]] ||
  fail "TIDAL_BENCH_PEERS_PARTS must be a comma list of cpu, kafka, vertical and agreement, got $PARTS"
[[ $WRITE_RESULTS == 0 || $WRITE_RESULTS == 1 ]] || fail "TIDAL_BENCH_WRITE must be 0 or 1, got $WRITE_RESULTS"

COMMAND=''
for var in TIDAL_BENCH_PEERS_STEPS TIDAL_BENCH_PEERS_WINDOW TIDAL_BENCH_PEERS_READINGS TIDAL_BENCH_PEERS_MINUTES \
  TIDAL_BENCH_PEERS_PARTS TIDAL_BENCH_PEERS_LOCK_SECONDS; do
  if [[ -n ${!var:-} ]]; then COMMAND+="$var=${!var} "; fi
done
COMMAND+='scripts/bench-peers.sh'

STACK_DIR=${TIDAL_STACK_DIR:-$REPO/.stack}
if ! stack_running || [[ ! -f $STACK_DIR/env ]]; then
  fail "the local stack is not up (scripts/stack.sh status): run scripts/stack.sh up first; this benchmark never starts or stops it"
fi
# shellcheck disable=SC1091
source "$STACK_DIR/env"
[[ -n ${TIDAL_METRICS_SERVER_URL:-} ]] ||
  fail "the stack runs without its peers (TIDAL_PEERS=0 or TIDAL_REAL_NODE=0): no metrics-server in $STACK_DIR/env"
command -v python3 >/dev/null || fail "python3 is needed to write the results"
ensure_toolchain

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tidal-bench-peers.XXXXXX")
driver_pid=''
cleanup() { bench_cleanup "$WORK" "$driver_pid" tidal.dev/bench=peers; }
trap cleanup EXIT
trap 'exit 130' INT TERM

RESULTS_TARGET=$REPO/bench/RESULTS.md
[[ $WRITE_RESULTS != 0 ]] || RESULTS_TARGET=$WORK/RESULTS.md
[[ $WRITE_RESULTS != 0 || ! -f $REPO/bench/RESULTS.md ]] || cp "$REPO/bench/RESULTS.md" "$RESULTS_TARGET"
RESULTS_PY=$REPO/scripts/bench-peers-results.py

step "building (release): the driver (tests/examples/peers_bench.rs)"
cargo build --release --locked -p tidal-e2e --example peers_bench
DRIVER=$REPO/target/release/examples/peers_bench
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)

limit=$((240 + LOCK_SECONDS + 2 * STEPS * 180 + MINUTES * 60 + 300 + READINGS * 15 + 120))
step "the peers: $PARTS ($STEPS steps, scale-down window ${WINDOW}s, ${MINUTES} min vertical, $READINGS readings; at most ${limit}s)"
setsid timeout -k 30 "$limit" "$DRIVER" --work "$WORK" --steps "$STEPS" --window "$WINDOW" \
  --readings "$READINGS" --minutes "$MINUTES" --lock-seconds "$LOCK_SECONDS" --parts "$PARTS" >"$WORK/out.json" &
driver_pid=$!
rc=0
wait "$driver_pid" || rc=$?
driver_pid=''
reason=''
if ((rc == 124)); then
  reason="the ${limit} s time limit"
elif ((rc != 0)); then
  reason="the driver exited with status $rc"
fi
[[ -z $reason ]] || note "the driver failed ($reason)"

if COMMAND="$COMMAND" LOAD_START="$LOAD_START" LOAD_END="$(cut -d' ' -f1 /proc/loadavg)" \
  VERSION="$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)" \
  python3 "$RESULTS_PY" record "$RESULTS_TARGET" "$WORK/out.json" "$reason" "$PARTS"; then
  [[ $WRITE_RESULTS == 0 ]] || note "results written to bench/RESULTS.md"
else
  fail "nothing was measured ($reason); bench/RESULTS.md is unchanged"
fi

step "results"
python3 "$RESULTS_PY" print "$RESULTS_TARGET"
[[ -z $reason ]] || fail "incomplete: $reason (what was measured is in the section above)"
step "done"

#!/usr/bin/env bash
# scripts/bench-node.sh — the real-node benchmark of issue #17 (part 6, "Measure").
#
# Runs on the local stack, which must already be up with its real node (scripts/stack.sh up);
# it never starts or stops the stack. Tidal runs in-cluster from manifests/overlays/local (the
# driver applies it if it is missing, as the node tests do; the image must have been imported
# by scripts/image.sh). A release build of the driver, `tidal-bench node` (bench/src/node/),
# which, holding the real node exclusively (no node test runs its pods meanwhile):
#   1. measures the agent pod's cost for TIDAL_BENCH_NODE_COST_SECONDS with the workload idle:
#      CPU per sampling round (its pod cgroup's cpuacct.usage delta / rounds), its RSS (cgroup
#      memory.stat, and the process's VmRSS/VmHWM), and how many containers it was sampling;
#   2. times the reaction of the in-cluster agent + scaler to real load, over
#      TIDAL_BENCH_NODE_STEPS steps: a Deployment of busybox pods on the node (100m requested,
#      400m limit) under a CPU ScalingPolicy (target 50 %, 1..2 replicas, scale-up window 0 s,
#      scale-down window TIDAL_BENCH_NODE_WINDOW s); each step turns a busy loop on in the pod
#      with `kubectl exec ... touch /tmp/load` (t0 taken before the exec is sent) and stops at
#      the scale write (spec.replicas 2) seen by a watch on the API server; then load off and
#      back to 1.
# The driver writes (or replaces) the section "The real node (issue #17)" of bench/RESULTS.md,
# keeping every other section (and the figures of a part not run), and prints it. Its
# namespace is deleted at the end, also on Ctrl-C.
#
# Environment (read by tidal-bench; `target/release/tidal-bench node --help`):
#   TIDAL_BENCH_NODE_STEPS         reaction steps (default 20, 1..200)
#   TIDAL_BENCH_NODE_WINDOW        scale-down stabilization window, seconds (default 5, 0..60)
#   TIDAL_BENCH_NODE_COST_SECONDS  the agent's measured window, seconds (default 60, 60..600)
#   TIDAL_BENCH_NODE_LOCK_SECONDS  longest wait for the node tests to release the real node
#                                  (default 300, 1..3600)
#   TIDAL_BENCH_NODE_PARTS         cost, reaction or cost,reaction (default)
#   TIDAL_BENCH_WRITE              0 prints the results without touching bench/RESULTS.md
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
[[ -n ${TIDAL_NODE_NAME:-} ]] ||
  fail "the stack runs without its real node (TIDAL_REAL_NODE=0?): no TIDAL_NODE_NAME in $STACK_DIR/env"
kc() { "$TIDAL_KUBECTL" --kubeconfig "$TIDAL_KUBECONFIG" "$@"; }
ready=$(kc get node "$TIDAL_NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) ||
  fail "node $TIDAL_NODE_NAME does not exist (kubectl get nodes); the stack's real node is needed"
[[ $ready == True ]] || fail "node $TIDAL_NODE_NAME is not Ready (Ready=$ready)"
ensure_toolchain

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tidal-bench-node.XXXXXX")
driver_pid='' driver_pgid=''
# Stops the driver (it deletes its namespace on SIGTERM) and kills what is left of its process
# group, then deletes anything listed in $WORK/created that is left (the driver was killed),
# and waits for it to go (bounded).
cleanup() { bench_cleanup "$WORK" tidal.dev/bench=node; }
trap cleanup EXIT
trap 'exit 130' INT TERM

step "building (release): the driver (tidal-bench)"
cargo build --release --locked -p tidal-bench --bin tidal-bench

# Bounded by its own time limit (and, should it get stuck, by timeout: lib.sh's bench_drive);
# the section names this script as the command.
TIDAL_BENCH_INVOKED_AS=scripts/bench-node.sh bench_drive "$REPO/target/release/tidal-bench" node --work "$WORK"

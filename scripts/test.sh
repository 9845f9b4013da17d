#!/usr/bin/env bash
# scripts/test.sh — the one test command (CI runs it through .ci/run).
#
#   1. cargo fmt --check
#   2. cargo clippy --all-targets -D warnings
#   3. the stack's components built or fetched into the cache (scripts/stack.sh build)
#   4. unit, property, fixture and golden-scrape tests (everything but the tidal-e2e crate)
#   5. the real local stack (scripts/stack.sh up), then the tests against it (tidal-e2e)
#
# It brings the stack up itself and tears it down at the end, even when a test fails. If a
# stack is already running (for example from scripts/demo.sh) it reuses it and leaves it up.
# Set TIDAL_KEEP_STACK=1 to keep a stack this script started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

ensure_toolchain

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The stack's components first: the cold path (minutes, cached after) also installs
# promtool, which the golden-scrape tests in the unit tier run.
step "building the stack's components (scripts/stack.sh build; cached under $TIDAL_CACHE)"
"$REPO/scripts/stack.sh" build

step "unit and fixture tests"
timeout "${TIDAL_UNIT_TIMEOUT:-1200}" cargo test --workspace --exclude tidal-e2e --locked

step "fuzzing: every target for ${TIDAL_FUZZ_SECONDS:-15}s (scripts/fuzz.sh; docs/fuzzing.md)"
TIDAL_FUZZ_SECONDS=${TIDAL_FUZZ_SECONDS:-15} "$REPO/scripts/fuzz.sh"

step "building binaries for the stack tests"
cargo build --workspace --bins --locked

started_stack=0
teardown() {
  local rc=$?
  if ((started_stack)) && [[ ${TIDAL_KEEP_STACK:-0} != 1 ]]; then
    step "tearing the stack down"
    "$REPO/scripts/stack.sh" down --purge || true
  fi
  if ((rc != 0)); then printf '\nscripts/test.sh FAILED (exit %s) after %ss\n' "$rc" "$(($(date +%s) - _t0))" >&2; fi
  exit "$rc"
}
trap teardown EXIT

if stack_running; then
  step "reusing the stack that is already running"
else
  step "bringing the real stack up (scripts/stack.sh up)"
  started_stack=1
  "$REPO/scripts/stack.sh" up
  # `up` is idempotent: a second call must start nothing and keep every pid.
  before=$(cat "$REPO"/.stack/pids/*.pid | sort)
  components=$(ls "$REPO"/.stack/pids/*.pid | wc -l)
  "$REPO/scripts/stack.sh" up 2>&1 | grep -c 'already running' | grep -qx "$components" ||
    fail "a second 'stack.sh up' did not find all $components components already running"
  after=$(cat "$REPO"/.stack/pids/*.pid | sort)
  [[ $before == "$after" ]] || fail "a second 'stack.sh up' changed the component pids"
  note "second 'up' was a no-op (all $components components already running, same pids)"
fi

step "the Tidal image for the real node's tests (scripts/image.sh; they install manifests/overlays/local)"
"$REPO/scripts/image.sh"

step "tests against the real stack (tidal-e2e)"
# Bounded: a hung test must fail the run, not hold CI until its 90-minute limit.
timeout "${TIDAL_E2E_TIMEOUT:-1800}" cargo test -p tidal-e2e --locked -- --test-threads=2

step "all tests passed in $(($(date +%s) - _t0))s"

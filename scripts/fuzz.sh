#!/usr/bin/env bash
# scripts/fuzz.sh — build the cargo-fuzz targets in fuzz/ and run each for a bounded time.
#
#   scripts/fuzz.sh                 every target (fuzz/fuzz_targets/*.rs)
#   scripts/fuzz.sh quantity cgroup only these
#
# Environment:
#   TIDAL_FUZZ_SECONDS  seconds per target (default 20; libFuzzer's -max_total_time)
#
# cargo-fuzz is installed once at a pinned version under $TIDAL_CACHE. libFuzzer and
# AddressSanitizer need unstable rustc flags (-Zsanitizer, -Cllvm-args for the coverage
# instrumentation); there is no nightly toolchain here, so the pinned stable one runs with
# RUSTC_BOOTSTRAP=1, for this script's cargo commands only (docs/fuzzing.md).
#
# Each target grows its corpus in fuzz/corpus/<target>/ (the committed seed-* files plus what
# libFuzzer finds, which git ignores). A crash, a timeout or an out-of-memory fails the script
# and names the input in fuzz/artifacts/<target>/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a <target> <artifact>   (in the repo root)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

CARGO_FUZZ_VERSION=0.13.2
seconds=${TIDAL_FUZZ_SECONDS:-20}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || fail "TIDAL_FUZZ_SECONDS must be a positive number of seconds, not '$seconds'"

ensure_toolchain

fuzz_root="$TIDAL_CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION"
if [[ $("$fuzz_root/bin/cargo-fuzz" --version 2>/dev/null) != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  step "installing cargo-fuzz $CARGO_FUZZ_VERSION into $fuzz_root (once; a few minutes)"
  mkdir -p "$TIDAL_CACHE"
  (cd "$TIDAL_CACHE" && cargo install --locked --quiet --root "$fuzz_root" --version "$CARGO_FUZZ_VERSION" cargo-fuzz) ||
    fail "cargo install cargo-fuzz $CARGO_FUZZ_VERSION failed"
fi
export PATH="$fuzz_root/bin:$PATH"
export RUSTC_BOOTSTRAP=1

if (($#)); then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz/fuzz_targets && ls -- *.rs | sed 's/\.rs$//')
fi
for t in "${targets[@]}"; do
  [[ -f fuzz/fuzz_targets/$t.rs ]] || fail "no fuzz target '$t' (fuzz/fuzz_targets/$t.rs)"
done

# -O -a: optimized, with debug assertions and overflow checks; AddressSanitizer (the default).
step "building ${#targets[@]} fuzz targets (cargo fuzz build -O -a; into fuzz/target)"
if (($#)); then
  for t in "${targets[@]}"; do
    cargo fuzz build -O -a "$t" || fail "building fuzz target $t failed"
  done
else
  cargo fuzz build -O -a || fail "building the fuzz targets failed"
fi

# Per-target libFuzzer options. The Kafka decoders must not allocate by an announced count: a
# body of at most 4 KiB that makes them ask for more than 32 MiB at once is a crash.
options_for() {
  case $1 in
    kafka_frame | kafka_decode) echo "-malloc_limit_mb=32" ;;
    *) echo "-malloc_limit_mb=512" ;;
  esac
}

# final_stat LOG NAME: a number from libFuzzer's -print_final_stats lines.
final_stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -n 1; }

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
summary=()
for t in "${targets[@]}"; do
  step "fuzzing $t for ${seconds}s"
  mkdir -p "fuzz/corpus/$t"
  log="$logs/$t.log"
  # -timeout: one input running 30 s is a hang. The outer timeout is a backstop only.
  # TMPDIR: the targets that need files (proc, cgroup) make a directory per process there,
  # which libFuzzer's exit never removes; the logs directory goes at the end.
  # shellcheck disable=SC2046
  if ! TMPDIR=$logs timeout -k 10 $((seconds + 120)) \
    cargo fuzz run -O -a "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 $(options_for "$t") \
    -print_final_stats=1 >"$log" 2>&1; then
    # The start of the report (sanitizer error or panic), then libFuzzer's summary.
    first=$(grep -n -m 1 -E '==[0-9]+==ERROR|panicked at|ERROR: libFuzzer' "$log" | cut -d: -f1)
    [[ -n $first ]] && sed -n "${first},$((first + 30))p" "$log" >&2 && printf '    ...\n' >&2
    tail -n 30 "$log" >&2
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    [[ -n $artifact ]] || artifact="(none written: see the log above)"
    fail "fuzz target $t failed; the input: $artifact (reproduce: RUSTC_BOOTSTRAP=1 $fuzz_root/bin/cargo-fuzz run -O -a $t $artifact)"
  fi
  runs=$(final_stat "$log" number_of_executed_units)
  rate=$(final_stat "$log" average_exec_per_sec)
  rss=$(final_stat "$log" peak_rss_mb)
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  line=$(printf '%-16s %10s execs  %7s exec/s  corpus %5s  peak RSS %4s MB' "$t" "${runs:-?}" "${rate:-?}" "$corpus" "${rss:-?}")
  note "$line"
  summary+=("$line")
done

step "fuzzing done: ${#targets[@]} targets, ${seconds}s each, no crash"
for line in "${summary[@]}"; do note "$line"; done

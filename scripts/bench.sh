#!/usr/bin/env bash
# scripts/bench.sh — criterion benchmarks and side-by-side comparisons with peers.
# Results (ratios from one run) go to bench/RESULTS.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
ensure_toolchain
benches=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json,sys; m=json.load(sys.stdin); print(" ".join(p["name"] for p in m["packages"] for t in p["targets"] if "bench" in t["kind"]))')
if [[ -z $benches ]]; then
  step "no criterion benchmarks are defined yet (the first land with issues #3 and #4)"
  exit 0
fi
for p in $(echo "$benches" | tr ' ' '\n' | sort -u); do
  step "cargo bench -p $p"
  cargo bench -p "$p" --locked
done

# shellcheck shell=bash
# Shared helpers for scripts/*.sh. Source it; do not run it.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export TIDAL_CACHE=${TIDAL_CACHE:-$HOME/.cache/tidal}
_t0=$(date +%s)

# Each step says how much disk is left where target/ lives: a full disk fails a build with
# "No space left on device" deep in a linker error, and this line shows it coming.
free_disk() { df -Ph "$REPO" 2>/dev/null | awk 'NR == 2 { print $4 }'; }
step() { printf '\n==> [%4ss] %s (disk: %s free)\n' "$(($(date +%s) - _t0))" "$*" "$(free_disk)" >&2; }
note() { printf '    %s\n' "$*" >&2; }
fail() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# The toolchain pinned in rust-toolchain.toml must be present. rustup cannot download on an
# offline machine, so when the pinned version is missing but the installed stable is exactly
# that version, link it under the pinned name.
ensure_toolchain() {
  command -v cargo >/dev/null || fail "cargo is not installed (install Rust with rustup)"
  local want
  want=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$REPO/rust-toolchain.toml")
  if rustup run "$want" rustc --version >/dev/null 2>&1; then return 0; fi
  local stable_ver stable_dir
  stable_ver=$(rustup run stable rustc --version 2>/dev/null | awk '{print $2}')
  stable_dir=$(rustup run stable rustc --print sysroot 2>/dev/null)
  if [[ $stable_ver == "$want" && -n $stable_dir ]]; then
    note "linking installed stable ($stable_ver) as toolchain $want"
    rustup toolchain link "$want" "$stable_dir"
  else
    rustup toolchain install "$want" --profile minimal -c rustfmt -c clippy ||
      fail "toolchain $want is pinned in rust-toolchain.toml but is not installed"
  fi
}

# True when every stack component is running.
stack_running() { "$REPO/scripts/stack.sh" status >/dev/null 2>&1; }

# bench_cleanup WORK PID LABEL: the end of a benchmark driver run with setsid. Stops the driver
# (PID, or "" when it has exited; it deletes its namespaces itself on SIGTERM), then deletes
# every namespace listed in WORK/created that is left (the driver was killed), waits for them
# to go (bounded), and removes WORK. Needs $TIDAL_KUBECTL and $TIDAL_KUBECONFIG (the stack's env).
bench_cleanup() {
  local work=$1 pid=$2 label=$3 kind name
  set +e
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    note "stopping the driver (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    # Its own process group (setsid): kubectl execs it may have left.
    kill -KILL -- "-$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  local -a namespaces=()
  if [[ -f $work/created ]]; then
    while read -r kind name; do
      [[ $kind == namespace && -n $name ]] && namespaces+=("namespace/$name")
    done <"$work/created"
  fi
  if ((${#namespaces[@]})); then
    local kc=("$TIDAL_KUBECTL" --kubeconfig "$TIDAL_KUBECONFIG")
    "${kc[@]}" delete "${namespaces[@]}" --ignore-not-found --wait=false >/dev/null 2>&1
    note "waiting (at most 120 s) for ${namespaces[*]} to be deleted"
    "${kc[@]}" wait --for=delete "${namespaces[@]}" --timeout=120s >/dev/null 2>&1 ||
      note "still terminating after 120 s: ${namespaces[*]} (kubectl get namespaces -l $label)"
  fi
  rm -rf "$work"
  return 0
}

# bench_drive DRIVER ARGS...: runs a benchmark driver (tidal-bench) in its own process group
# (setsid: the cleanup stops it and what it started there), with its pid in $driver_pid while
# it runs; fails if it did. The driver bounds itself, writes its section and prints it.
bench_drive() {
  setsid "$@" &
  driver_pid=$!
  local rc=0
  wait "$driver_pid" || rc=$?
  driver_pid=''
  ((rc == 0)) || fail "$(basename "$1") ${2:-} stopped with status $rc (see above)"
}

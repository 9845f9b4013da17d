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

# bench_stop: stops the driver bench_drive started. If it still runs, SIGTERM (it removes what
# it made; at most 60 s). Then, always, SIGKILL to what is left of its process group: what it
# started (the scaler, agents, the busy loop, kubectl execs) outlives it when it died without
# its own cleanup (killed, out of memory, or its watchdog's exit 124).
bench_stop() {
  if [[ -n ${driver_pid:-} ]] && kill -0 "$driver_pid" 2>/dev/null; then
    note "stopping the driver (pid $driver_pid)"
    kill -TERM "$driver_pid" 2>/dev/null || true
    for _ in $(seq 1 600); do
      kill -0 "$driver_pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  if [[ -n ${driver_pgid:-} ]]; then kill -KILL -- "-$driver_pgid" 2>/dev/null || true; fi
  if [[ -n ${driver_pid:-} ]]; then wait "$driver_pid" 2>/dev/null || true; fi
  driver_pid=''
  return 0
}

# bench_cleanup WORK LABEL: the end of a benchmark run with bench_drive. Stops the driver
# (bench_stop), then removes what WORK/created lists and is left (the driver was killed): it
# deletes the namespaces and waits for them to go (bounded; LABEL names them for the user),
# deletes the cluster RBAC, and removes the cgroups the benchmark made, deepest first, each
# retried for up to 5 s (a cgroup whose last process was just killed is busy for a moment);
# no other cgroup is touched; a broker's request log it turned up and did not put back goes
# back to WARN. Then removes WORK. Needs $TIDAL_KUBECTL and $TIDAL_KUBECONFIG (the stack's
# env), and for the broker $TIDAL_KAFKA_HOME, $TIDAL_KAFKA_BOOTSTRAP and $TIDAL_STACK_DIR.
bench_cleanup() {
  local work=$1 label=$2 kind name i
  set +e
  bench_stop
  local -a namespaces=() cluster=() dirs=()
  local -A loggers=()
  if [[ -f $work/created ]]; then
    while read -r kind name; do
      [[ -n $name ]] || continue
      case $kind in
        namespace) namespaces+=("namespace/$name") ;;
        clusterrole | clusterrolebinding) cluster+=("$kind/$name") ;;
        cgroup) dirs+=("$name") ;;
        kafka-request-logger) loggers[$name]=1 ;;
        kafka-request-logger-restored) unset 'loggers[$name]' ;;
      esac
    done <"$work/created"
  fi
  # A broker's request log turned up by the peers' kafka part (polling_cost.rs): back to WARN,
  # the level of the stack's `kafka` loggers (scripts/stack/kafka.sh), in case the driver died
  # before it did (it records `kafka-request-logger-restored` once it has).
  for name in "${!loggers[@]}"; do
    if [[ -z ${TIDAL_KAFKA_HOME:-} || -z ${TIDAL_KAFKA_BOOTSTRAP:-} || -z ${TIDAL_STACK_DIR:-} ]]; then
      note "kafka.request.logger on broker $name may still be at DEBUG (no stack env to reset it)"
      continue
    fi
    timeout 60 java -cp "$TIDAL_KAFKA_HOME/lib/*" -Dlog4j2.configurationFile="$TIDAL_STACK_DIR/kafka/log4j2.properties" \
      kafka.admin.ConfigCommand --bootstrap-server "$TIDAL_KAFKA_BOOTSTRAP" --entity-type broker-loggers \
      --entity-name "$name" --alter --add-config kafka.request.logger=WARN >/dev/null 2>&1 ||
      note "could not put kafka.request.logger back to WARN on broker $name"
  done
  local kc=("${TIDAL_KUBECTL:-kubectl}" --kubeconfig "${TIDAL_KUBECONFIG:-}")
  if ((${#cluster[@]})); then
    "${kc[@]}" delete "${cluster[@]}" --ignore-not-found --wait=false >/dev/null 2>&1
  fi
  for ((i = ${#dirs[@]} - 1; i >= 0; i--)); do
    for _ in $(seq 1 50); do
      [[ -d ${dirs[i]} ]] || break
      rmdir "${dirs[i]}" 2>/dev/null && break
      sleep 0.1
    done
    [[ -d ${dirs[i]} ]] && note "could not remove the cgroup ${dirs[i]}"
  done
  if ((${#namespaces[@]})); then
    "${kc[@]}" delete "${namespaces[@]}" --ignore-not-found --wait=false >/dev/null 2>&1
    note "waiting (at most 120 s) for ${namespaces[*]} to be deleted"
    "${kc[@]}" wait --for=delete "${namespaces[@]}" --timeout=120s >/dev/null 2>&1 ||
      note "still terminating after 120 s: ${namespaces[*]} (kubectl get namespaces -l $label)"
  fi
  rm -rf "$work"
  return 0
}

# bench_drive DRIVER ARGS...: runs a benchmark driver (tidal-bench) in its own session and
# process group (setsid), under `timeout -k 30`: its own time limit (DRIVER ARGS
# --print-limit) plus a margin of BENCH_MARGIN seconds (300: its watchdog's 120 s, its
# setup and cleanup), in case it gets stuck where its own limit cannot reach it. Its pid is in
# $driver_pid while it runs, its process group in $driver_pgid (kept: bench_stop kills what is
# left of the group). Fails if the driver did. It writes its section and prints it.
BENCH_MARGIN=300
bench_drive() {
  local limit rc=0
  limit=$("$@" --print-limit) || fail "$(basename "$1") ${2:-}: could not read its time limit (see above)"
  limit=$((limit + BENCH_MARGIN))
  # setsid runs in this background child (not a group leader, so it does not fork): the
  # driver's pid is its process group's id.
  setsid timeout -k 30 "$limit" "$@" &
  driver_pid=$!
  driver_pgid=$driver_pid
  wait "$driver_pid" || rc=$?
  driver_pid=''
  ((rc != 124)) || fail "$(basename "$1") ${2:-} ran past its time limit (status 124: its own watchdog, or timeout after ${limit} s)"
  ((rc == 0)) || fail "$(basename "$1") ${2:-} stopped with status $rc (see above)"
}

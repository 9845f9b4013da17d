# shellcheck shell=bash
# scripts/stack/process.sh — process control: start, stop, wait for, and find the pid and log of a component.
# Sourced by scripts/stack.sh, which defines the versions, ports, paths and say/die/run_logged.

pidfile() { echo "$STATE/pids/$1.pid"; }

logfile() { echo "$STATE/logs/$1.log"; }

# proc_start PID: when process PID started, in clock ticks since boot (the 22nd field of
# /proc/PID/stat, after the command name in parentheses). A pid the kernel gives to another
# process later comes with another start; the wall clock plays no part.
proc_start() {
  local stat
  local -a f
  [[ -r /proc/$1/stat ]] || return 1
  stat=$(<"/proc/$1/stat") || return 1
  read -ra f <<<"${stat##*) }"
  [[ -n ${f[19]:-} ]] || return 1
  echo "${f[19]}"
}

# live_pid FILE: the pid in pid file FILE while its process runs. `start` keeps the process's
# start beside it (NAME.start), and only that process counts: a stack killed without `down`
# leaves its pid files, and the kernel may since have given a pid to another program.
live_pid() {
  local f=$1 pid start
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  start=$(proc_start "$pid") || return 1
  if [[ -f ${f%.pid}.start ]]; then
    [[ $start == "$(<"${f%.pid}.start")" ]] || return 1
  fi
  echo "$pid"
}

running() { live_pid "$(pidfile "$1")" >/dev/null; }

# ports_free NAME PORT...: fail clearly when a port that NAME needs is taken by a process
# this stack did not start (a stale stack from another checkout, another service).
ports_free() {
  local name=$1 port
  shift
  running "$name" && return 0
  for port in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      local owner
      owner=$(ss -ltnpH "sport = :$port" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n1)
      die "port $port (needed by $name) is already in use${owner:+ by $owner}; stop that process or move the whole block with TIDAL_PORT_BASE (now $PORT_BASE)"
    fi
  done
}

# start NAME CMD...: start a component in its own session unless it already runs.
start() {
  local name=$1
  shift
  if running "$name"; then
    say "$name already running (pid $(cat "$(pidfile "$name")"))"
    return 0
  fi
  mkdir -p "$STATE/pids" "$STATE/logs"
  setsid "$@" >>"$(logfile "$name")" 2>&1 </dev/null &
  local f
  f=$(pidfile "$name")
  echo $! >"$f"
  # A process gone before its start is read gets a start no process has: its pid, which the
  # kernel may give to another program, never counts as it.
  proc_start $! >"${f%.pid}.start" || echo exited >"${f%.pid}.start"
  say "started $name (pid $!)"
}

fail_with_log() {
  say "ERROR: $1 did not become ready; last lines of $(logfile "$1"):"
  tail -n 40 "$(logfile "$1")" >&2 || true
  exit 1
}

# wait_for NAME TIMEOUT CMD...: poll CMD until it succeeds, or fail with NAME's log.
wait_for() {
  local name=$1 timeout=$2
  shift 2
  local deadline=$(($(date +%s) + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! running "$name"; then fail_with_log "$name"; fi
    (($(date +%s) < deadline)) || fail_with_log "$name"
    sleep 0.5
  done
}

stop() {
  local name=$1 f pid
  f=$(pidfile "$name")
  [[ -f $f ]] || return 0
  if pid=$(live_pid "$f"); then
    # Each component runs in its own session (setsid), so its pid is its process group:
    # signal the group to take any children down with it.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    say "stopped $name (pid $pid)"
  fi
  rm -f "$f" "${f%.pid}.start"
}

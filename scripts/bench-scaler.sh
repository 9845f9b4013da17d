#!/usr/bin/env bash
# scripts/bench-scaler.sh — the scaler benchmark of issue #6 (called by bench.sh).
#
# Runs on the local stack, which must already be up (scripts/stack.sh up); it never starts or
# stops the stack. Needs root (pod cgroups on this host). Release builds of tidal-scaler,
# tidal-agent and the driver (tests/examples/scaler_bench.rs), which does the work:
#   1. Reaction time on the fast path: a KWOK Deployment under a CPU ScalingPolicy, a real
#      busy loop started in its pod's cgroup, the release agent sampling every 0.5 s and the
#      release scaler (--agent-url) evaluating every 1 s. The time from the load step to the
#      scale write seen by a watch on the API server, over 20 steps (each: load on -> 2
#      replicas, load off -> back to 1 after a 5 s scale-down window).
#   2. Scale: 1,000 (then 5,000) ScalingPolicies, each on its own Deployment (1 pod, left
#      Pending on no node by default: bound to the two KWOK nodes, 1,000 pods overfill them and
#      the scheduler preempts them for, or blocks, other sessions' pods), all on one Kafka
#      consumer group's lag. A fresh release scaler per size, 60 s measured after its first
#      cycles: cycle time (per cycle, from its own histogram's sum and count scraped every
#      200 ms), peak RSS (VmHWM), API requests per cycle by verb, CPU; then the latency of one
#      status apply like the scaler's.
# Both run the scaler with the manifests' RBAC (a ServiceAccount token) and leader election.
# Writes the "Scaler (issue #6)" section of bench/RESULTS.md (keeps every other section) and
# prints it. The namespaces it made are deleted at the end; the script waits for them.
#
# Environment:
#   TIDAL_BENCH_SCALER_STEPS           reaction steps (default 20, 1..200)
#   TIDAL_BENCH_SCALER_AGENT_INTERVAL  agent sampling interval, seconds (default 0.5)
#   TIDAL_BENCH_SCALER_WINDOW          scale-down stabilization window of the reaction policy,
#                                      seconds (default 5)
#   TIDAL_BENCH_SCALER_SIZES           policy counts, comma separated, each run in a fresh
#                                      namespace (default 1000; 1000,5000 adds the 5,000 run:
#                                      the controller-manager needs ~4 min per 1,000
#                                      Deployments at its 20 requests/s)
#   TIDAL_BENCH_SCALER_PODS            pending (default) or kwok: where the scale run's pods go
#   TIDAL_BENCH_SCALER_SECONDS         measured window per size (default 60, 10..600; extended
#                                      to hold at least 5 cycles, up to 600 s)
#   TIDAL_BENCH_SCALER_PARTS           which parts run: reaction,scale (default both)
#   TIDAL_BENCH_WRITE                  0 prints the results without touching bench/RESULTS.md
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

STEPS=${TIDAL_BENCH_SCALER_STEPS:-20}
AGENT_INTERVAL=${TIDAL_BENCH_SCALER_AGENT_INTERVAL:-0.5}
WINDOW=${TIDAL_BENCH_SCALER_WINDOW:-5}
SIZES=${TIDAL_BENCH_SCALER_SIZES:-1000}
SECONDS_RUN=${TIDAL_BENCH_SCALER_SECONDS:-60}
PARTS=${TIDAL_BENCH_SCALER_PARTS:-reaction,scale}
PODS=${TIDAL_BENCH_SCALER_PODS:-pending}
WRITE_RESULTS=${TIDAL_BENCH_WRITE:-1}
in_range() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); }
in_range "$STEPS" 1 200 ||
  fail "TIDAL_BENCH_SCALER_STEPS must be a whole number in [1, 200], got $STEPS"
[[ $AGENT_INTERVAL =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
  fail "TIDAL_BENCH_SCALER_AGENT_INTERVAL must be a number of seconds, got $AGENT_INTERVAL"
in_range "$WINDOW" 0 300 ||
  fail "TIDAL_BENCH_SCALER_WINDOW must be a whole number of seconds in [0, 300], got $WINDOW"
[[ $SIZES =~ ^[0-9]+(,[0-9]+)*$ ]] || fail "TIDAL_BENCH_SCALER_SIZES must look like 1000,5000, got $SIZES"
in_range "$SECONDS_RUN" 10 600 ||
  fail "TIDAL_BENCH_SCALER_SECONDS must be a whole number in [10, 600], got $SECONDS_RUN"
[[ $PODS == pending || $PODS == kwok ]] || fail "TIDAL_BENCH_SCALER_PODS must be pending or kwok, got $PODS"
[[ $PARTS =~ ^(reaction|scale)(,(reaction|scale))?$ ]] ||
  fail "TIDAL_BENCH_SCALER_PARTS must be reaction, scale or reaction,scale, got $PARTS"

STACK_DIR=${TIDAL_STACK_DIR:-$REPO/.stack}
if ! stack_running || [[ ! -f $STACK_DIR/env ]]; then
  fail "the local stack is not up (scripts/stack.sh status): run scripts/stack.sh up first; this benchmark never starts or stops it"
fi
[[ $(id -u) == 0 ]] || fail "root is needed: the benchmark creates pod cgroups under /sys/fs/cgroup"
command -v python3 >/dev/null || fail "python3 is needed to write the results"
# shellcheck disable=SC1091
source "$STACK_DIR/env"
ensure_toolchain

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tidal-bench-scaler.XXXXXX")
driver_pid=''
# Stops the driver (it removes what it made on SIGTERM), then removes anything it listed in
# $WORK/created and could not remove (it was killed): namespaces, cluster RBAC, cgroups.
cleanup() {
  set +e
  if [[ -n $driver_pid ]] && kill -0 "$driver_pid" 2>/dev/null; then
    note "stopping the driver (pid $driver_pid)"
    kill -TERM "$driver_pid" 2>/dev/null
    for _ in $(seq 1 600); do
      kill -0 "$driver_pid" 2>/dev/null || break
      sleep 0.1
    done
    # Its own process group (setsid): the scaler, agent and busy loop it started.
    kill -KILL -- "-$driver_pid" 2>/dev/null
    wait "$driver_pid" 2>/dev/null
  fi
  if [[ -f $WORK/created ]]; then
    local kind name
    local -a dirs=()
    while read -r kind name; do
      case $kind in
        namespace) "$TIDAL_KUBECTL" --kubeconfig "$TIDAL_KUBECONFIG" delete namespace "$name" \
          --ignore-not-found --wait=false >/dev/null 2>&1 ;;
        clusterrole | clusterrolebinding) "$TIDAL_KUBECTL" --kubeconfig "$TIDAL_KUBECONFIG" \
          delete "$kind" "$name" --ignore-not-found >/dev/null 2>&1 ;;
        cgroup) dirs+=("$name") ;;
      esac
    done <"$WORK/created"
    local i
    for ((i = ${#dirs[@]} - 1; i >= 0; i--)); do
      [[ -d ${dirs[i]} ]] && rmdir "${dirs[i]}" 2>/dev/null
    done
  fi
  rm -rf "$WORK"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs the driver in its own process group, bounded by `timeout`, its JSON lines to $1; sets
# `reason` to why it failed ("" when it did not). The binaries go through the environment, so
# no command line here names tidal-scaler.
failed=()
drive() {
  local out=$1 limit=$2
  shift 2
  : >"$out"
  TIDAL_BENCH_SCALER_BIN=$SCALER_BIN TIDAL_BENCH_AGENT_BIN=$AGENT_BIN \
    setsid timeout -k 60 "$limit" "$DRIVER" "$@" --work "$WORK" >"$out" &
  driver_pid=$!
  local rc=0
  wait "$driver_pid" || rc=$?
  driver_pid=''
  reason=''
  if ((rc == 124)); then
    reason="the ${limit} s time limit"
  elif ((rc != 0)); then
    reason="the driver exited with status $rc"
  fi
  if [[ -n $reason ]]; then
    note "the driver failed ($reason): $*"
    failed+=("$*")
  fi
  return 0
}

# Folds one part's JSON lines (or its failure) into the "Scaler (issue #6)" section of
# $RESULTS_TARGET, keeping the other parts' figures from their own runs (each part's raw figures
# are kept in the section, one JSON per comment line). Called after each part, so a run stopped
# later keeps what it measured. `print_results` prints the section.
RESULTS_TARGET=$REPO/bench/RESULTS.md
[[ $WRITE_RESULTS != 0 ]] || RESULTS_TARGET=$WORK/RESULTS.md
[[ $WRITE_RESULTS != 0 || ! -f $REPO/bench/RESULTS.md ]] || cp "$REPO/bench/RESULTS.md" "$RESULTS_TARGET"
cat >"$WORK/results.py" <<'PY'
import json, os, re, sys, time

E = os.environ
MiB = 1024 * 1024
mode, path = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        old = f.read()
except FileNotFoundError:
    old = "# Benchmark results\n"
entries = [json.loads(d) for d in re.findall(r"^<!-- scaler:data (\{.*\}) -->$", old, re.M)]
if mode == "print":
    m = re.search(r"^<!-- scaler:begin.*?^<!-- scaler:end -->", old, re.M | re.S)
    if m:
        print("\n".join(l for l in m.group(0).splitlines() if not l.startswith("<!-- scaler:")))
    sys.exit(0)
# mode "reaction" or "scale": argv[3] the driver's JSON lines, argv[4] the failure reason or
# "", argv[5] the size of a scale run.
run = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
       "load": [E["LOAD_START"], E["LOAD_END"]], "version": E["VERSION"]}
with open(sys.argv[3]) as f:
    fresh = [dict(json.loads(l), run=run) for l in f if l.strip()]
reason = sys.argv[4]
size = int(sys.argv[5]) if mode == "scale" else None
if reason and not fresh:
    fresh = [{"kind": mode, "policies": size, "failed": True, "reason": reason, "run": run}]
same = lambda r: r["kind"] == mode and (mode == "reaction" or r.get("policies") == size)
entries = [r for r in entries if not same(r)] + fresh
entries.sort(key=lambda r: (r["kind"] != "reaction", r.get("policies") or 0))
reaction = next((r for r in entries if r["kind"] == "reaction" and not r.get("failed")), None)
reaction_failed = any(r["kind"] == "reaction" and r.get("failed") for r in entries)
scales = [r for r in entries if r["kind"] == "scale" and not r.get("failed")]
failed_sizes = [r["policies"] for r in entries if r["kind"] == "scale" and r.get("failed")]

def ok(value, limit):
    if value is None or value != value:
        return "not measured"
    return "met" if value < limit else "**missed**"

def s(v, digits=2):
    return "–" if v is None or v != v else f"{v:.{digits}f} s"

out = []
w = out.append
w("<!-- scaler:begin (written by scripts/bench-scaler.sh) -->")
w("## Scaler (issue #6)")
w("")
runs = {json.dumps(r["run"], sort_keys=True): r["run"] for r in entries}
def describe(r):
    return (f"{r['date']} (load average {r['load'][0]} at the start, {r['load'][1]} at the end; "
            f"tree `{r['version']}`)")
w(f"Generated by `scripts/bench-scaler.sh`: {os.cpu_count()} CPUs, kernel {os.uname().release}; "
  + ("run " if len(runs) == 1 else "runs ") + "; ".join(describe(r) for r in runs.values())
  + ". The machine is shared with other builds. The stack's real kube-apiserver, "
  "controller-manager, KWOK nodes and Kafka broker; release `tidal-scaler` and `tidal-agent` "
  "built from this tree, the scaler run with exactly the manifests' RBAC (a ServiceAccount "
  "token) and leader election on.")
for r in entries:
    if r.get("failed"):
        what = "reaction" if r["kind"] == "reaction" else f"{r['policies']:,}-policy"
        w("")
        w(f"**Incomplete:** the {what} run of {r['run']['date']} stopped early "
          f"({r['reason']}); see the script's output.")
w("")
w("| Measure | Target | Measured | |")
w("| --- | --- | --- | --- |")
if reaction:
    u = reaction["up_seconds"]
    w(f"| Reaction time, load step in a pod's cgroup → scale write on the API server, fast path, "
      f"p95 over {u['n']} steps | < 3 s | **{s(u['p95'])}** (p50 {s(u['p50'])}, min {s(u['min'])}, "
      f"max {s(u['max'])}) | {ok(u['p95'], 3)} |")
for r in scales:
    n = r["policies"]
    c = r["cycle_seconds"]
    w(f"| {n:,} ScalingPolicies: cycle time, p95 of the measured cycles | < 1 s | **{s(c['p95'], 3)}** "
      f"(mean {s(r['cycle_mean_seconds'], 3)}, p50 {s(c['p50'], 3)}, max {s(c['max'], 3)}) | "
      f"{ok(c['p95'], 1)} |")
    w(f"| {n:,} ScalingPolicies: scaler RSS, peak (`VmHWM`) | < 150 MiB | "
      f"**{r['peak_rss_bytes'] / MiB:.1f} MiB** | {ok(r['peak_rss_bytes'] / MiB, 150)} |")
    reqs = r["requests_per_cycle"]
    total = sum(reqs.values())
    by = ", ".join(f"`{k}` {v:.1f}" for k, v in sorted(reqs.items(), key=lambda kv: -kv[1]) if v > 0)
    w(f"| {n:,} ScalingPolicies: API requests per cycle | report | **{total:.1f}** "
      f"({by or 'none'}; {r['requests_per_second']:.1f}/s) | reported |")
if reaction_failed:
    w("| Reaction time, fast path, p95 over 20 steps | < 3 s | not measured (the run stopped "
      "early) | not measured |")
for n in failed_sizes:
    w(f"| {n:,} ScalingPolicies: cycle time, RSS, requests per cycle | < 1 s, < 150 MiB | "
      "not measured (the run stopped early) | not measured |")
w("")
if reaction:
    u, d = reaction["up_seconds"], reaction["down_seconds"]
    w(f"**Reaction.** One KWOK Deployment (1 pod, 100m CPU request) under a ScalingPolicy on CPU "
      f"(target 50%, min 1, max 2, scale-down stabilization {reaction['scale_down_window_seconds']} s). "
      f"The release agent samples this host's real cgroups every {reaction['agent_interval_seconds']} s; "
      f"the scaler scrapes it directly (`--agent-url`) and evaluates every "
      f"{reaction['fast_interval_seconds']:g} s. Each step waits 0.2–1.2 s (a random phase against "
      "both intervals), starts a real busy loop (`spawn_burner`) in the pod's cgroup and takes the "
      "time until a watch on the Deployment sees `spec.replicas` become 2 (the scale write, as the "
      "API server serves it); then it gives the new pod its cgroup, stops the loop and takes the "
      "time until the replicas are back to 1 (the window runs from the last evaluation that saw "
      "the load, which can precede the load's end by up to an evaluation interval, so this can be "
      "a little under the window). Percentiles are nearest-rank over the "
      f"{u['n']} steps ({reaction['run_seconds']:.0f} s in all).")
    w("")
    w("| | p50 | p95 | max | min | mean |")
    w("| --- | ---: | ---: | ---: | ---: | ---: |")
    w(f"| load on → 2 replicas | {s(u['p50'])} | {s(u['p95'])} | {s(u['max'])} | {s(u['min'])} | {s(u['mean'])} |")
    w(f"| load off → back to 1 (includes the {reaction['scale_down_window_seconds']} s window) | "
      f"{s(d['p50'])} | {s(d['p95'])} | {s(d['max'])} | {s(d['min'])} | {s(d['mean'])} |")
    w("")
    w("Every step in order (load on → 2 replicas): "
      + ", ".join(f"{v:.2f}" for v in reaction.get("up_order", u["values"])) + " s.")
    w("")
    w("Anchors, documented and not measured here: the HPA reacts in about 15–55 s (its 15 s "
      "sync period on top of metrics-server's 15 s scrape and the kubelet's 10–15 s cAdvisor "
      "housekeeping); KEDA polls its scalers every 30 s by default (`pollingInterval`).")
    w("")
if scales:
    if scales[0].get("pods") == "kwok":
        placement = ("bound with `nodeName` to the 2 KWOK nodes in turn, past their 110-pod "
                     "capacity, which KWOK does not enforce")
    else:
        placement = ("left Pending on no node, their `schedulerName` names no scheduler. Bound "
                     "to the stack's 2 KWOK nodes (110 pods each), 1,000 pods overfill them: the "
                     "scheduler then preempted them for a concurrent test's system-node-critical "
                     "DaemonSet, and would leave any ordinary pod Pending. The scaler's caches still "
                     "hold every pod and its selectors still run over them; a Pending pod's status is "
                     "smaller than a running one's (`TIDAL_BENCH_SCALER_PODS=kwok` binds them anyway)")
    w("**Scale.** N ScalingPolicies, each targeting its own Deployment (1 replica, 10m CPU), "
      "all on the lag of one Kafka consumer group (one 3-partition topic, "
"lag 5, 10 per replica: every policy wants the 1 replica it has, so the steady state writes no "
      "scale). One Kafka round per cycle serves every policy. Pods: " + placement + ". Each size "
      "runs in a fresh namespace; before the scaler starts, the controller-manager makes every "
      "ReplicaSet and pod (its client is limited to 20 requests/s, events included) and, up to "
      "1,000 policies, writes every Deployment's status, so it does not compete with the run; "
      "above 1,000 the run starts once every pod exists, while it may still write statuses "
      "(waiting would double the setup). A fresh scaler per size "
      "(`--namespace`, so its watch caches hold exactly these policies, Deployments and pods); its "
      "first statuses (one per policy, written off the cycle by the status queue) are reported apart, and the window starts once every one is written; then "
      f"{scales[0]['window_seconds']:.0f} s measured (longer for a size whose cycles are long: at least 5 cycles, up to 600 s). Each cycle's duration is the delta of "
      "`tidal_scaler_cycle_duration_seconds_sum` between two scrapes 200 ms apart that saw one new "
      "cycle (when a cycle overruns the 1 s tick the next starts at once, and a pair of scrapes can "
      "see two: those are split with the histogram's buckets and counted as *estimated*); requests "
      "per cycle are deltas of `tidal_scaler_api_requests_total` (watches and the Lease are not "
      "counted) over deltas of the cycle count. After the window, with the scaler stopped, 50 status "
      "applies like the scaler's (its field manager, forced, each with a new decision time) are timed.")
    w("")
    head = "| | " + " | ".join(f"{r['policies']:,} policies" for r in scales) + " |"
    w(head)
    w("| --- |" + " ---: |" * len(scales))
    def row(label, f):
        w(f"| {label} | " + " | ".join(f(r) for r in scales) + " |")
    row("the run started once", lambda r: "every Deployment was done" if r.get("waited_for", "settled") == "settled" else "every pod was made")
    row("Deployments the controller-manager was done with, at the start / end", lambda r: f"{r['deployments_settled']:,} / {r.get('deployments_settled_after', r['deployments_settled']):,}")
    row("setup (create + controller-manager)", lambda r: f"{r['setup_seconds']:.0f} s")
    row("scaler start → caches synced", lambda r: s(r["scaler_ready_seconds"], 1))
    row("first two cycles (time in the cycles)", lambda r: s(r["first_cycles_seconds"], 2))
    row("every policy's first status written, after the caches synced", lambda r: s(r["first_statuses_seconds"], 1) if "first_statuses_seconds" in r else "in the first cycles")
    row("statuses queued at the end of the window", lambda r: f"{r['status_queue_end']:.0f}" if "status_queue_end" in r else "—")
    row("cycles measured", lambda r: f"{r['cycles']:.0f} in {r['window_seconds']:.0f} s")
    row("cycle mean (sum / count)", lambda r: s(r["cycle_mean_seconds"], 3))
    row("cycle p50 / p95 / max", lambda r: f"{s(r['cycle_seconds']['p50'], 3)} / {s(r['cycle_seconds']['p95'], 3)} / {s(r['cycle_seconds']['max'], 3)}")
    row("cycles over 1 s", lambda r: f"{r['cycles_over_1s']}")
    row("cycles split with the buckets (*estimated*)", lambda r: f"{r['cycles_estimated']}")
    row("p95 from the histogram alone (histogram_quantile)", lambda r: s(r["histogram_p95_seconds"], 3))
    row("decisions per cycle", lambda r: f"{r['decisions_per_cycle']:.0f}")
    verbs = sorted({v for r in scales for v in r["requests_per_cycle"]})
    for v in verbs:
        row(f"requests per cycle: `{v}`", lambda r, v=v: f"{r['requests_per_cycle'].get(v, 0):.2f}")
    row("API requests per second", lambda r: f"{r['requests_per_second']:.1f}")
    row("scale writes in the window", lambda r: f"{r['scale_events']:.0f}")
    row("errors in the window", lambda r: ", ".join(f"{k} {v:.0f}" for k, v in r["errors"].items()) or "0")
    row("scaler CPU (cores, average)", lambda r: f"{r['cpu_cores']:.3f}")
    row("one status apply on this API server, p50 / p95 (50 in a row, scaler stopped)",
        lambda r: f"{r['status_apply_seconds']['p50'] * 1e3:.1f} / {r['status_apply_seconds']['p95'] * 1e3:.1f} ms")
    row("status writes per cycle × that p50 (their cost one after another)",
        lambda r: s(r["requests_per_cycle"].get("patch_status", 0) * r["status_apply_seconds"]["p50"], 3))
    row("scaler RSS peak (`VmHWM`) / at the end", lambda r: f"{r['peak_rss_bytes'] / MiB:.1f} / {r['rss_bytes'] / MiB:.1f} MiB")
    w("")
    notes = []
    for r in scales:
        st = r["requests_per_cycle"].get("patch_status", 0)
        per_s = st * r["cycles"] / r["window_seconds"]
        if per_s > 0:
            notes.append(f"{r['policies']:,} policies: {st:.1f} status writes per cycle, {per_s:.1f}/s, "
                         f"one per policy every {r['policies'] / per_s:.0f} s")
    slow = [r for r in scales if r["decisions_per_cycle"] < 0.95 * r["policies"]]
    if slow:
        w("Each policy is due every 1 s, yet a cycle evaluated only "
          + ", ".join(f"{r['decisions_per_cycle']:.0f} of {r['policies']:,}" for r in slow)
          + " policies on average: a policy's next due time is the start of the cycle that "
          "evaluated it plus 1 s, and the next tick can fire a little before that, so when cycles "
          "are short a policy is often skipped for one tick (evaluated every 2 s).")
        w("")
    if notes:
        w("Where the requests come from: the controller rewrites a policy's status when it changes, "
          "and otherwise at most every 15 s (`Settings::status_refresh`, carrying the checkpoint and "
          "metric values) within a budget of `--status-refresh-per-second` (50), one server-side "
          "apply each, written off the cycle by the status queue, `STATUS_WRITES_IN_FLIGHT` at a time ("
          + "; ".join(notes) + "). Reads come from the watch caches.")
        w("")
for r in entries:
    w(f"<!-- scaler:data {json.dumps(r, sort_keys=True)} -->")
w("<!-- scaler:end -->")
text = "\n".join(out)
heading = re.compile(r"^## Scaler \(issue #6\)\n.*?(?=^## |\Z)", re.M | re.S)
if "<!-- scaler:begin" in old and "<!-- scaler:end -->" in old:
    a = old.index("<!-- scaler:begin")
    b = old.index("<!-- scaler:end -->") + len("<!-- scaler:end -->")
    new = old[:a] + text + old[b:]
elif heading.search(old):
    # A section written by hand: replaced whole (up to the next "## " heading).
    new = heading.sub(lambda _: text + "\n\n", old, count=1)
else:
    new = old.rstrip("\n") + "\n\n" + text + "\n"
with open(path, "w") as f:
    f.write(new.rstrip("\n") + "\n")
PY
record_results() { # PART JSON_FILE FAILURE_REASON [SIZE]
  if LOAD_START="$LOAD_START" LOAD_END="$(cut -d' ' -f1 /proc/loadavg)" \
    VERSION="$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)" \
    python3 "$WORK/results.py" "$1" "$RESULTS_TARGET" "$2" "$3" "${4:-0}"; then
    note "results of the $1 part${4:+ ($4 policies)} written to $RESULTS_TARGET"
  else
    note "could not write the results of the $1 part"
  fi
}
print_results() { python3 "$WORK/results.py" print "$RESULTS_TARGET"; }

# The driver deletes its namespace in the background; this waits until every benchmark
# namespace is gone (at most 10 minutes).
wait_namespaces() {
  local -a namespaces
  mapfile -t namespaces < <("$TIDAL_KUBECTL" --kubeconfig "$TIDAL_KUBECONFIG" get namespaces \
    -l tidal.dev/bench=scaler -o name 2>/dev/null)
  ((${#namespaces[@]})) || return 0
  note "waiting for ${namespaces[*]} to be deleted"
  "$TIDAL_KUBECTL" --kubeconfig "$TIDAL_KUBECONFIG" wait --for=delete "${namespaces[@]}" \
    --timeout=600s >/dev/null 2>&1 ||
    note "some benchmark namespaces were still terminating after 600 s: ${namespaces[*]}"
}

step "building (release): tidal-scaler, tidal-agent and the driver"
cargo build --release --locked -p tidal-scaler --bin tidal-scaler -p tidal-agent --bin tidal-agent
cargo build --release --locked -p tidal-e2e --example scaler_bench
SCALER_BIN=$REPO/target/release/tidal-scaler
AGENT_BIN=$REPO/target/release/tidal-agent
DRIVER=$REPO/target/release/examples/scaler_bench
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
reason=''

if [[ $PARTS == *reaction* ]]; then
  step "reaction time: $STEPS load steps (agent every ${AGENT_INTERVAL}s, scaler every 1s, window ${WINDOW}s)"
  drive "$WORK/reaction.json" $((300 + STEPS * (WINDOW + 90))) reaction --steps "$STEPS" \
    --agent-interval "$AGENT_INTERVAL" --window "$WINDOW"
  record_results reaction "$WORK/reaction.json" "$reason"
fi
if [[ $PARTS == *scale* ]]; then
  for n in ${SIZES//,/ }; do
    limit=$(((n / 2 > 600 ? n / 2 : 600) + 900 + 600))
    step "scale: $n ScalingPolicies on Deployments ($PODS pods), ${SECONDS_RUN}s measured (at most ${limit}s)"
    wait_namespaces
    # Above 1,000 the run starts once every Deployment has its pod, while the controller-manager
    # may still be writing Deployment statuses (at most 20/s): waiting for it would double a
    # 5,000 setup (~20 minutes).
    wait_for=settled
    ((n <= 1000)) || wait_for=pods
    drive "$WORK/scale.json" "$limit" scale --sizes "$n" --seconds "$SECONDS_RUN" --pods "$PODS" \
      --wait-for "$wait_for"
    record_results scale "$WORK/scale.json" "$reason" "$n"
  done
fi

step "results"
print_results

step "waiting for the benchmark namespaces to be deleted"
wait_namespaces
((${#failed[@]} == 0)) || fail "incomplete: $(printf '[%s] ' "${failed[@]}")failed (the other parts' figures were written)"
step "done"

#!/usr/bin/env bash
# scripts/bench-node.sh — the real-node benchmark of issue #17 (part 6, "Measure").
#
# Runs on the local stack, which must already be up with its real node (scripts/stack.sh up);
# it never starts or stops the stack. Tidal runs in-cluster from manifests/overlays/local (the
# driver applies it if it is missing, as the node tests do; the image must have been imported
# by scripts/image.sh). A release build of the driver (tests/examples/node_bench.rs), which,
# holding the real node exclusively (no node test runs its pods meanwhile):
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
# Writes (or replaces) the section "The real node (issue #17)" of bench/RESULTS.md, keeping
# every other section, and prints it. Its namespace is deleted at the end, also on Ctrl-C.
#
# Environment:
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

STEPS=${TIDAL_BENCH_NODE_STEPS:-20}
WINDOW=${TIDAL_BENCH_NODE_WINDOW:-5}
COST_SECONDS=${TIDAL_BENCH_NODE_COST_SECONDS:-60}
LOCK_SECONDS=${TIDAL_BENCH_NODE_LOCK_SECONDS:-300}
PARTS=${TIDAL_BENCH_NODE_PARTS:-cost,reaction}
WRITE_RESULTS=${TIDAL_BENCH_WRITE:-1}
in_range() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); }
in_range "$STEPS" 1 200 || fail "TIDAL_BENCH_NODE_STEPS must be a whole number in [1, 200], got $STEPS"
in_range "$WINDOW" 0 60 || fail "TIDAL_BENCH_NODE_WINDOW must be a whole number of seconds in [0, 60], got $WINDOW"
in_range "$COST_SECONDS" 60 600 ||
  fail "TIDAL_BENCH_NODE_COST_SECONDS must be a whole number of seconds in [60, 600], got $COST_SECONDS"
in_range "$LOCK_SECONDS" 1 3600 ||
  fail "TIDAL_BENCH_NODE_LOCK_SECONDS must be a whole number of seconds in [1, 3600], got $LOCK_SECONDS"
[[ $PARTS =~ ^(cost|reaction)(,(cost|reaction))?$ ]] ||
  fail "TIDAL_BENCH_NODE_PARTS must be cost, reaction or cost,reaction, got $PARTS"
[[ $WRITE_RESULTS == 0 || $WRITE_RESULTS == 1 ]] || fail "TIDAL_BENCH_WRITE must be 0 or 1, got $WRITE_RESULTS"

# The command as run, for the results: the knobs that were set.
COMMAND=''
for var in TIDAL_BENCH_NODE_STEPS TIDAL_BENCH_NODE_WINDOW TIDAL_BENCH_NODE_COST_SECONDS \
  TIDAL_BENCH_NODE_LOCK_SECONDS TIDAL_BENCH_NODE_PARTS; do
  if [[ -n ${!var:-} ]]; then COMMAND+="$var=${!var} "; fi
done
COMMAND+='scripts/bench-node.sh'

STACK_DIR=${TIDAL_STACK_DIR:-$REPO/.stack}
if ! stack_running || [[ ! -f $STACK_DIR/env ]]; then
  fail "the local stack is not up (scripts/stack.sh status): run scripts/stack.sh up first; this benchmark never starts or stops it"
fi
command -v python3 >/dev/null || fail "python3 is needed to write the results"
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
driver_pid=''
# Stops the driver (it deletes its namespace on SIGTERM), then deletes anything listed in
# $WORK/created that is left (the driver was killed), and waits for it to go (bounded).
cleanup() { bench_cleanup "$WORK" "$driver_pid" tidal.dev/bench=node; }
trap cleanup EXIT
trap 'exit 130' INT TERM

RESULTS_TARGET=$REPO/bench/RESULTS.md
[[ $WRITE_RESULTS != 0 ]] || RESULTS_TARGET=$WORK/RESULTS.md
[[ $WRITE_RESULTS != 0 || ! -f $REPO/bench/RESULTS.md ]] || cp "$REPO/bench/RESULTS.md" "$RESULTS_TARGET"
# Folds the driver's JSON lines into the section (a part not run this time keeps its earlier
# figures, one JSON per comment line), or prints the section ("print").
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
BEGIN, END = "<!-- node:begin", "<!-- node:end -->"
if mode == "print":
    m = re.search(r"^<!-- node:begin.*?^<!-- node:end -->", old, re.M | re.S)
    if m:
        print("\n".join(l for l in m.group(0).splitlines() if not l.startswith("<!-- node:")))
    sys.exit(0)
entries = [json.loads(d) for d in re.findall(r"^<!-- node:data (\{.*\}) -->$", old, re.M)]
run = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": E.get("COMMAND"),
       "load": [E.get("LOAD_START"), E.get("LOAD_END")], "version": E.get("VERSION"),
       "cpus": os.cpu_count(), "kernel": os.uname().release}
if mode == "record":
    # argv[3] the driver's JSON lines, argv[4] why it failed or "", argv[5] the parts run.
    with open(sys.argv[3]) as f:
        fresh = [dict(json.loads(l), run=run) for l in f if l.strip().startswith("{")]
    reason = sys.argv[4]
    for kind in sys.argv[5].split(","):
        if reason and not any(r["kind"] == kind for r in fresh):
            fresh.append({"kind": kind, "failed": True, "reason": reason, "run": run})
    if not any(not r.get("failed") for r in fresh):
        sys.exit("nothing measured: " + "; ".join(r.get("reason", "") for r in fresh))
    kinds = {r["kind"] for r in fresh}
    entries = [r for r in entries if r["kind"] not in kinds] + fresh
elif mode != "render":  # "render": the section again from its own data, no new figures
    sys.exit(f"unknown mode {mode}")
if not entries:
    sys.exit("no figures to write")
entries.sort(key=lambda r: r["kind"] != "reaction")
reaction = next((r for r in entries if r["kind"] == "reaction" and not r.get("failed")), None)
cost = next((r for r in entries if r["kind"] == "cost" and not r.get("failed")), None)

def ok(value, limit):
    if value is None or value != value:
        return "not measured"
    return "met" if value < limit else "**missed**"

def s(v, digits=2):
    return "–" if v is None or v != v else f"{v:.{digits}f} s"

def mib(v):
    return "–" if v is None else f"{v / MiB:.1f} MiB"

out = []
w = out.append
w("<!-- node:begin (written by scripts/bench-node.sh) -->")
w("## The real node (issue #17)")
w("")
runs = {json.dumps(r["run"], sort_keys=True): r["run"] for r in entries}
def describe(r):
    return (f"`{r['command']}` on {r['date']} ({r['cpus']} CPUs, kernel {r['kernel']}; load average "
            f"{r['load'][0]} at the start, {r['load'][1]} at the end; tree `{r['version']}`)")
c = next((r.get("conditions") for r in entries if r.get("conditions")), None) or {}
info = c.get("node_info") or {}
w("Generated by " + "; ".join(describe(r) for r in runs.values())
  + ". The machine is shared with other builds and sessions, so absolute times are noisy. "
  f"Tidal installed in-cluster as a user installs it (`kubectl apply -k manifests/overlays/local`) "
  f"on the stack's real node `{c.get('node', '?')}` (kubelet {info.get('kubelet', '?')}, "
  f"{info.get('runtime', '?')}, runc, cgroup v1 with the cgroupfs driver, kernel "
  f"{info.get('kernel', '?')}): the agent DaemonSet sampling every "
  f"{c.get('agent_interval_seconds', '?')} s, and the scaler Deployment "
  f"({c.get('scaler_replicas', '?')} replicas, leader election; `{c.get('scaler_leader', '?')}` led) "
  f"evaluating fast-path policies every {c.get('scaler_fast_interval_seconds', '?')} s from the "
  "agents' usage documents (`/v1/usage`, the same snapshot as their `/metrics`). The benchmark held the real node exclusively (`NodeLock`), so no node "
  "test ran pods on it meanwhile (the cgroups KWOK tests make under this host's `/kubepods`, "
  "if any, were sampled too: counted below).")
for r in entries:
    if r.get("failed"):
        w("")
        w(f"**Incomplete:** the {r['kind']} part of {r['run']['date']} failed ({r['reason']}); "
          "see the script's output.")
w("")
w("| Measure | Target | Measured | |")
w("| --- | --- | --- | --- |")
if reaction:
    u, x = reaction["up_seconds"], reaction["exec_on_seconds"]
    w(f"| Reaction time, load on in a real container (`kubectl exec`) → scale write seen by a watch "
      f"on the API server, in-cluster agent and scaler, p95 over {u['n']} steps | < 3 s | "
      f"**{s(u['p95'])}** (p50 {s(u['p50'])}, max {s(u['max'])}) | {ok(u['p95'], 3)} |")
    w(f"| of which the `kubectl exec` that turns the load on | report | p50 {s(x['p50'])}, "
      f"p95 {s(x['p95'])}, max {s(x['max'])} | reported |")
if cost:
    b = cost["sampled_before"]
    w(f"| Agent pod CPU per sampling round (its pod cgroup's `cpuacct.usage` over "
      f"{cost['window_seconds']:.0f} s / {cost['rounds']:.0f} rounds), {b['containers']} containers "
      f"sampled | < 20 ms (issue #3) | **{cost['pod_cpu_ms_per_round']:.2f} ms** | "
      f"{ok(cost['pod_cpu_ms_per_round'], 20)} |")
    m, p = cost["memory_end"], cost["memory_peak"]
    w(f"| Agent RSS: process `VmHWM` (peak) / `VmRSS`; container cgroup `total_rss` | < 30 MiB "
      f"(issue #3) | **{mib(m['vm_hwm_bytes'])}** / {mib(m['vm_rss_bytes'])}; cgroup "
      f"{mib(m['container_total_rss_bytes'])} | {ok(m['vm_hwm_bytes'] / MiB, 30)} |")
w("")
if reaction:
    u, x, d, g = (reaction["up_seconds"], reaction["exec_on_seconds"], reaction["down_seconds"],
                  reaction["up_minus_exec_seconds"])
    req, lim = c.get("request", {}), c.get("limit", {})
    win = reaction["scale_down_window_seconds"]
    w(f"**Reaction.** A Deployment of real busybox pods on the node ({req.get('cpu')} CPU "
      f"requested, {lim.get('cpu')} limit), each a shell loop that burns CPU up to the limit while "
      "`/tmp/load` exists, under a ScalingPolicy labelled for the in-cluster scaler: CPU at "
      f"{c.get('target_utilization', 50)} % of the request, 1..2 replicas, scale-up stabilization 0 s "
      f"(and the default rate limits), scale-down stabilization {win} s (100 % per 5 s). Each step "
      "starts at 1 replica with the load off and the pod exported by the agent, waits 1–2 s (a "
      "random phase against the agent's and the scaler's cycles), takes t0 and runs "
      "`kubectl exec <pod> -c burn -- /bin/sh -c 'touch /tmp/load'` (API server → kubelet → "
      "containerd → runc; t0 is taken before the exec is sent, so the figure includes its latency "
      "and is conservative), and takes t1 when a watch on the Deployment sees `spec.replicas` "
      "become 2: the in-cluster agent must sample the busy cgroup twice (a rate), the leader scrape "
      "it, evaluate and write the scale. Then `rm -f /tmp/load` and the time until the watch sees 1 "
      "again: the new pod must start and be exported by the agent (the scaler does not scale down "
      "over a pod it has no data for), then the window runs. Percentiles are nearest-rank over "
      f"the {u['n']} steps ({reaction['run_seconds']:.0f} s in all).")
    w("")
    w("| | p50 | p95 | max | min | mean |")
    w("| --- | ---: | ---: | ---: | ---: | ---: |")
    def row(label, v):
        w(f"| {label} | {s(v['p50'])} | {s(v['p95'])} | {s(v['max'])} | {s(v['min'])} | {s(v['mean'])} |")
    row("load on (t0 before `kubectl exec`) → 2 replicas", u)
    row("the `kubectl exec` itself (touch /tmp/load), start to exit", x)
    row("load on → 2 replicas, minus that step's exec", g)
    row(f"load off (exec included) → back to 1 (new pod started and measured, then the {win} s window)", d)
    w("")
    w("Every step in order (load on → 2 replicas): "
      + ", ".join(f"{r['up_seconds']:.2f}" for r in reaction["rows"]) + " s; the exec: "
      + ", ".join(f"{r['exec_on_seconds']:.2f}" for r in reaction["rows"]) + " s. "
      f"In {reaction['writes_before_exec_returned']} of {u['n']} steps the scale write was seen "
      "before `kubectl exec` had returned.")
    ev = reaction.get("scale_events") or {}
    errs = reaction.get("scaler_errors") or {}
    w("")
    w(f"The scalers counted {ev.get('up', 0):.0f} scale-ups and {ev.get('down', 0):.0f} scale-downs "
      f"for the benchmark's namespace (`tidal_scaler_scale_events_total`); their errors during the "
      "steps: " + (", ".join(f"`{k}` {v:.0f}" for k, v in errs.items()) or "none")
      + f". The leader was `{reaction.get('leader_at_start')}` at the start and "
      f"`{reaction.get('leader_at_end')}` at the end.")
    w("")
if cost:
    b, a = cost["sampled_before"], cost["sampled_after"]
    m, p = cost["memory_end"], cost["memory_peak"]
    sd = b.get("sampler_duration_seconds", {})
    sd2 = a.get("sampler_duration_seconds", {})
    w(f"**The agent's cost.** The in-cluster agent pod `{cost['agent_pod']}` over "
      f"{cost['window_seconds']:.1f} s before the steps, the workload idle at 1 replica; its loop "
      f"starts a round every {cost['interval_seconds']:g} s, so the window holds "
      f"{cost['rounds']:.0f} rounds. Its CPU includes everything the pod did meanwhile: sampling, "
      "and serving the leading scaler's scrape every second and Prometheus's. CPU from the cgroups "
      "the kubelet made for it (`cpuacct.usage`, ns) and from the `sampler` thread's "
      "`/proc/<pid>/task/<tid>/schedstat`; memory read every 5 s. What it sampled comes from its "
      "own `/metrics` (the `tidal_agent_container_cpu_usage_seconds_total` series), scraped just before and "
      "just after the window: the kubelet's pods on the node (with pod metadata from the API "
      "server) and the cgroups other test sessions make under this host's `/kubepods` (no pod "
      "metadata). A node this small is cheap to sample: the cost grows with the containers "
      "(issue #3's agent benchmark: 11.5 ms of sampling per round on 1,000 synthetic containers).")
    w("")
    w("| | |")
    w("| --- | --- |")
    listed = ""
    if b.get("names") is not None and len(b["names"]) <= 12:
        gone = sorted(set(b["names"]) - set(a.get("names", [])))
        came = sorted(set(a.get("names", [])) - set(b["names"]))
        listed = (": " + ", ".join(f"`{n}`" for n in b["names"])
                  + ("; gone by the end: " + ", ".join(f"`{n}`" for n in gone) if gone else "")
                  + ("; new by the end: " + ", ".join(f"`{n}`" for n in came) if came else ""))
    w(f"| containers sampled, before / after | {b['containers']} / {a['containers']} "
      f"({b['containers_with_pod_metadata']} / {a['containers_with_pod_metadata']} in kubelet pods "
      f"with pod metadata) in {b['pods']} / {a['pods']} pods{listed} |")
    w(f"| CPU per round, agent pod cgroup | **{cost['pod_cpu_ms_per_round']:.3f} ms** "
      f"({cost['pod_cpu_seconds']:.3f} s in the window, {cost['pod_cpu_cores'] * 1000:.2f} millicores "
      "on average) |")
    w(f"| of which the agent container | {cost['container_cpu_ms_per_round']:.3f} ms |")
    w(f"| of which the `sampler` thread (the sampling itself) | "
      f"{cost['sampler_thread_cpu_ms_per_round']:.3f} ms |")
    w(f"| last pass of the samplers, wall (`tidal_agent_sampler_duration_seconds`), before / after | "
      + ", ".join(f"{k} {sd.get(k, float('nan')) * 1e3:.2f} / {sd2.get(k, float('nan')) * 1e3:.2f} ms"
                  for k in sorted(set(sd) | set(sd2))) + " |")
    w(f"| process `VmRSS` at the end (anonymous + file-backed) / peak `VmHWM` | "
      f"{mib(m['vm_rss_bytes'])} ({mib(m['rss_anon_bytes'])} + {mib(m['rss_file_bytes'])}) / "
      f"{mib(m['vm_hwm_bytes'])} |")
    w(f"| container cgroup `memory.stat` `total_rss` at the end / highest read | "
      f"{mib(m['container_total_rss_bytes'])} / {mib(p['container_total_rss_bytes'])} |")
    w(f"| pod cgroup `memory.stat` `total_rss` (sandbox included) at the end | "
      f"{mib(m['pod_total_rss_bytes'])} |")
    kmem = m.get("container_kmem_usage_bytes")
    w(f"| container cgroup `memory.usage_in_bytes` (page cache and kernel memory included) at the "
      f"end / highest read | {mib(m['container_usage_bytes'])} / {mib(p['container_usage_bytes'])}"
      + (f" (kernel memory {mib(kmem)})" if kmem is not None else "") + " |")
    w(f"| series / bytes per scrape of its `/metrics` | {b['series']} / {b['bytes']} |")
    w("")
for r in entries:
    w(f"<!-- node:data {json.dumps(r, sort_keys=True)} -->")
w(END)
text = "\n".join(out)
heading = re.compile(r"^## The real node \(issue #17\)\n.*?(?=^## |^<!-- \w+:begin|\Z)", re.M | re.S)
if BEGIN in old and END in old:
    a = old.index(BEGIN)
    b = old.index(END) + len(END)
    new = old[:a] + text + old[b:]
elif heading.search(old):
    # A section written by hand: replaced whole (up to the next section).
    new = heading.sub(lambda _: text + "\n\n", old, count=1)
else:
    new = old.rstrip("\n") + "\n\n" + text + "\n"
with open(path, "w") as f:
    f.write(new.rstrip("\n") + "\n")
PY

step "building (release): the driver (tests/examples/node_bench.rs)"
cargo build --release --locked -p tidal-e2e --example node_bench
DRIVER=$REPO/target/release/examples/node_bench
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)

# Bounded: install and lock wait, the cost window, and a generous minute per step.
limit=$((240 + LOCK_SECONDS + COST_SECONDS + STEPS * (WINDOW + 55)))
step "the real node: $PARTS (steps $STEPS, scale-down window ${WINDOW}s, agent window ${COST_SECONDS}s; at most ${limit}s)"
setsid timeout -k 30 "$limit" "$DRIVER" --work "$WORK" --steps "$STEPS" --window "$WINDOW" \
  --cost-seconds "$COST_SECONDS" --lock-seconds "$LOCK_SECONDS" --parts "$PARTS" >"$WORK/out.json" &
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
  python3 "$WORK/results.py" record "$RESULTS_TARGET" "$WORK/out.json" "$reason" "$PARTS"; then
  [[ $WRITE_RESULTS == 0 ]] || note "results written to bench/RESULTS.md"
else
  fail "nothing was measured ($reason); bench/RESULTS.md is unchanged"
fi

step "results"
python3 "$WORK/results.py" print "$RESULTS_TARGET"
[[ -z $reason ]] || fail "incomplete: $reason (what was measured is in the section above)"
step "done"

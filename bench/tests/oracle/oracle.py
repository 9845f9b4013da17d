"""The oracle for bench/tests/equivalence.rs: runs the Python formatters that wrote
bench/RESULTS.md before tidal-bench (scripts/bench*.sh at commit ORACLE_REV, where they still
were) on every case under bench/tests/fixtures/, and writes what they produced next to the case:
`after.md` (the results file after the run; absent when it did not change), `stdout.txt` (what
the script printed of the section) and `exit.txt` (the formatter's exit status, when not 0).

    python3 bench/tests/oracle/oracle.py [PART ...]

Each formatter runs as its script ran it (the heredoc extracted to a file, the same argv and
environment), with the clock, os.cpu_count() and os.uname() fixed to the case's `run` and
`host`. The agent's formatter (scripts/bench.sh) measured live processes first: that part is
replaced by the case's measured figures (`measured.json`), the rest runs unchanged.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

ORACLE_REV = os.environ.get("ORACLE_REV", "c8dd9c2")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
FIXTURES = os.path.join(HERE, "..", "fixtures")

# Fixes what the formatters read from the machine and the clock, then runs argv[1] as
# __main__ with the rest of argv.
WRAPPER = r'''
import datetime, os, runpy, sys, time
E = os.environ
_strftime = time.strftime
def strftime(fmt, t=None):
    if fmt == "%Y-%m-%d %H:%M UTC":
        return E["FIX_DATE"]
    return _strftime(fmt) if t is None else _strftime(fmt, t)
time.strftime = strftime
os.cpu_count = lambda: int(E["FIX_CPUS"])
class _Uname:
    release = E["FIX_KERNEL"]
os.uname = lambda: _Uname
_date = datetime.date
class _Date(_date):
    @classmethod
    def today(cls):
        return _date.fromisoformat(E["FIX_TODAY"])
datetime.date = _Date
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def git_show(path):
    return subprocess.run(["git", "-C", ROOT, "show", f"{ORACLE_REV}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def heredoc(script, opener):
    """The text of the heredoc that starts on the line containing `opener`."""
    text = git_show(script)
    start = text.index(opener)
    body = text.index("\n", start) + 1
    end = text.index("\nPY\n", body)
    return text[body:end + 1]


def run_python(work, code, argv, env):
    script = os.path.join(work, "formatter.py")
    with open(script, "w") as f:
        f.write(code)
    wrapper = os.path.join(work, "wrapper.py")
    with open(wrapper, "w") as f:
        f.write(WRAPPER)
    full = dict(os.environ)
    full.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run([sys.executable, wrapper, script] + argv, capture_output=True, text=True,
                          env=full, cwd=work)


def fixed_env(case):
    run, host = case["run"], case["host"]
    env = {"FIX_DATE": run["date"], "FIX_TODAY": run.get("today", run["date"][:10]),
           "FIX_CPUS": str(host["cpus"]), "FIX_KERNEL": host["kernel"],
           "LOAD_START": run["load"][0], "LOAD_END": run["load"][1], "VERSION": run["version"]}
    if run.get("command") is not None:
        env["COMMAND"] = run["command"]
    return env


def case_scaler(case, part_dir, work, results):
    code = heredoc("scripts/bench-scaler.sh", "cat >\"$WORK/results.py\" <<'PY'")
    fresh = os.path.join(work, "driver.json")
    src = case.get("fresh")
    shutil.copy(os.path.join(part_dir, src), fresh) if src else open(fresh, "w").close()
    env = fixed_env(case)
    r = run_python(work, code, [case["mode"], results, fresh, case["reason"], str(case.get("size") or 0)], env)
    p = run_python(work, code, ["print", results], env)
    return r, p


def case_node(case, part_dir, work, results, script="scripts/bench-node.sh"):
    code = heredoc(script, "cat >\"$WORK/results.py\" <<'PY'")
    return record_or_render(case, part_dir, work, results, code)


def record_or_render(case, part_dir, work, results, code):
    env = fixed_env(case)
    if case["mode"] == "render":
        argv = ["render", results]
    else:
        fresh = os.path.join(work, "out.json")
        src = case.get("fresh")
        shutil.copy(os.path.join(part_dir, src), fresh) if src else open(fresh, "w").close()
        argv = ["record", results, fresh, case["reason"], case["parts"]]
    r = run_python(work, code, argv, env)
    p = run_python(work, code, ["print", results], env)
    return r, p


def case_peers(case, part_dir, work, results):
    code = git_show("scripts/bench-peers-results.py")
    return record_or_render(case, part_dir, work, results, code)


def case_kafka(case, part_dir, work, results):
    code = heredoc("scripts/bench-kafka.sh", "python3 - \"$REPO/bench/RESULTS.md\" <<'PY'")
    env = fixed_env(case)
    env.update({"TIDAL_JSON": json.dumps(case["tidal"]), "PEER_JSON": json.dumps(case["peer"]),
                "AGENT_JSON": json.dumps(case["agent"]), "AGENT_SECONDS": case["agent_seconds"]})
    # It printed the section with its markers; tidal-bench prints it without (not compared).
    return run_python(work, code, [results], env), None


# The agent formatter's measurement, replaced by the case's figures (`measured.json`, as
# tidal-bench's `agent::Measured`): the variables the rest of the script reads.
AGENT_FIGURES = r'''
M = json.load(open(E["MEASURED"]))
def _body(p):
    # A scrape with the measured count of series and bytes.
    lines = b"x 1\n" * p["series"]
    pad = p["bytes"] - len(lines)
    assert pad == 0 or pad >= 3, p
    return lines + (b"# " + b"p" * (pad - 3) + b"\n" if pad else b"")
hz = M["hz"]
load_start, load_end = M["load_start"], M["load_end"]
a0, a1 = 0, M["agent"]["ticks"]
n0, n1 = 0, M["exporter"]["ticks"]
o0, o1 = 0, M["node_only"]["ticks"]
s0, s1 = 0, M["sampler_ticks"]
w0, w1 = 0.0, M["wall"]
scrapes = M["scrapes"]
a_lat, n_lat, o_lat = M["agent"]["latencies"], M["exporter"]["latencies"], M["node_only"]["latencies"]
cgroup_pass = M["cgroup_pass"]
a_body, n_body, o_body = _body(M["agent"]), _body(M["exporter"]), _body(M["node_only"])
a_type, n_type = M["agent"]["content_type"], M["exporter"]["content_type"]
a_rss, a_hwm = M["agent"]["rss"], M["agent"]["hwm"]
n_rss, n_hwm = M["exporter"]["rss"], M["exporter"]["hwm"]
o_rss, o_hwm = M["node_only"]["rss"], M["node_only"]["hwm"]
'''

CRITERION = {"cgroup_v2": ("cgroup_round", "v2"), "cgroup_v1": ("cgroup_round", "v1"),
             "node": ("node_round", "proc"), "encode_openmetrics": ("encode", "openmetrics"),
             "encode_text": ("encode", "text_0.0.4")}


def case_agent(case, part_dir, work, results):
    code = heredoc("scripts/bench.sh", "python3 - <<'PY'")
    start = code.index('sampler = thread(agent_pid, "sampler")')
    end_line = 'o_rss, o_hwm = status(node_pid, "VmRSS"), status(node_pid, "VmHWM")\n'
    end = code.index(end_line) + len(end_line)
    code = code[:start] + AGENT_FIGURES + code[end:]
    measured = os.path.join(part_dir, case["measured"])
    with open(measured) as f:
        m = json.load(f)
    crit = os.path.join(work, "criterion")
    for key, (group, name) in CRITERION.items():
        e = m["criterion"].get(key)
        if e is None:
            continue
        d = os.path.join(crit, group, name, "new")
        os.makedirs(d)
        with open(os.path.join(d, "estimates.json"), "w") as f:
            json.dump({"median": {"point_estimate": e["point"], "confidence_interval": {
                "lower_bound": e["lower"], "upper_bound": e["upper"]}}}, f)
    env = fixed_env(case)
    env.update({"MEASURED": measured, "RESULTS_FILE": results, "WRITE_RESULTS": "1",
                "AGENT_PID": "0", "NE_PID": "0", "NODE_PID": "0", "AGENT_PORT": "0", "NE_PORT": "0",
                "NODE_PORT": "0", "SECONDS_RUN": str(m["scrapes"]), "NE_VERSION": m["exporter_version"],
                "CRITERION_DIR": crit, "TREE_DIR": work})
    # It printed the section before writing it; tidal-bench prints it as written (not compared).
    return run_python(work, code, [], env), None


PARTS = {"scaler": case_scaler, "node": case_node, "peers": case_peers, "kafka": case_kafka,
         "agent": case_agent}


def main():
    parts = sys.argv[1:] or sorted(PARTS)
    for part in parts:
        part_dir = os.path.join(FIXTURES, part)
        for name in sorted(os.listdir(part_dir)):
            case_dir = os.path.join(part_dir, name)
            if not os.path.isfile(os.path.join(case_dir, "case.json")):
                continue
            with open(os.path.join(case_dir, "case.json")) as f:
                case = json.load(f)
            if case.get("differs"):
                # tidal-bench departs from the Python there on purpose: its files stay.
                print(f"{part}/{name}: kept ({case['differs'].split(':')[0]})")
                continue
            with tempfile.TemporaryDirectory() as work:
                results = os.path.join(work, "RESULTS.md")
                before = None
                if case.get("before"):
                    with open(os.path.join(part_dir, case["before"])) as f:
                        before = f.read()
                    with open(results, "w") as f:
                        f.write(before)
                r, p = PARTS[part](case, part_dir, work, results)
                for out in ("after.md", "stdout.txt", "exit.txt"):
                    if os.path.exists(os.path.join(case_dir, out)):
                        os.remove(os.path.join(case_dir, out))
                after = open(results).read() if os.path.exists(results) else None
                if after is not None and after != before:
                    with open(os.path.join(case_dir, "after.md"), "w") as f:
                        f.write(after)
                if p is not None:
                    with open(os.path.join(case_dir, "stdout.txt"), "w") as f:
                        f.write(p.stdout)
                if r.returncode != 0:
                    with open(os.path.join(case_dir, "exit.txt"), "w") as f:
                        last = (r.stderr.strip().splitlines() or [""])[-1]
                        f.write(f"{r.returncode}\n{last}\n")
                print(f"{part}/{name}: exit {r.returncode}, "
                      f"{'changed' if after is not None and after != before else 'unchanged'}"
                      + (f"; {(r.stderr.strip().splitlines() or [''])[-1]}" if r.returncode else ""))


if __name__ == "__main__":
    main()

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


PARTS = {"scaler": case_scaler, "node": case_node, "peers": case_peers, "kafka": case_kafka}


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

"""Traced, sandboxed executions per second on CRUXEval, against two baselines, measured in one run.

    pip install pysnooper   # for baseline (b) only
    python bench/sandbox_throughput.py [--data ../shared/data/cruxeval/cruxeval.jsonl] [--snoop 100]

(a) plain exec of the same calls, no tracer, no per-call isolation — run inside one sandboxed child,
    since this code is untrusted too;
(b) one subprocess per call under PySnooper, as the reference pipeline does: the function decorated with
    `pysnooper.snoop(output=<trace file>, depth=1)`, written to a script, run by `python script.py`
    (measured on the first --snoop problems).
The sandbox is measured as the pipeline's executor uses it: batches of 16 calls (`run_many`), every layer
on, a child per problem (CRUXEval has one call per problem, so a child per call), with the default two
runs under two hash seeds (a fresh child in a second fork server reproduces each call) and with one run.
Every stream is sequential. Rates are given per wall second of that stream and per CPU second it used (the
sandbox's whole process tree: client, bubblewrap, fork servers and their children, read from /proc) — the
second is the per-core figure. Also prints the tracer's own cost per line event, and where one run's time goes,
phase by phase as the fork server runs a child: fork, isolation layers, the job in a fresh child against the same
job run warm (the difference is the cold child's page faults and first touches), the tracer's share, the result's
trip back and the cleanup.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from snoop_baseline import snoop_all

from operators.sandbox.client import Limits, Sandbox

_ROOT = Path(__file__).resolve().parent.parent
DATA = _ROOT.parent / "shared" / "data" / "cruxeval" / "cruxeval.jsonl"

# Runs inside one sandboxed child: every problem's call, with or without the tracer, timed in-process.
_LOOP = '''
import time
from operators.trace.tracer import Tracer

def loop(problems, traced):
    events = 0
    started = time.perf_counter()
    for code, args in problems:
        namespace = {"__name__": "__problem__"}
        exec(compile(code, "<problem>", "exec"), namespace)
        call_args, call_kwargs = eval(f"(lambda *a, **k: (a, k))({args})", namespace)
        if traced:
            tracer = Tracer(code)
            tracer.run(namespace["f"], call_args, call_kwargs)
            events += len(tracer.events)
        else:
            namespace["f"](*call_args, **call_kwargs)
    return (time.perf_counter() - started, events)
'''

_BATCH = 16


def in_one_child(problems: list[tuple[str, str]], traced: bool) -> tuple[float, int]:
    job = {"code": _LOOP, "entry_point": "loop", "input": f"{problems!r}, {traced}", "traced": False}
    with Sandbox(Limits(timeout_s=300, runs=1), require=()) as box:
        result = box.run(job)
    assert result["outcome"] == "ok", result
    seconds, events = eval(result["output"])  # a tuple of two numbers, checked by the sandbox as a literal
    return seconds, events


def sandboxed(problems: list[tuple[str, str]], runs: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds for every call through one sandbox, in batches as the executor sends them."""
    jobs = [{"code": code, "entry_point": "f", "input": args} for code, args in problems]
    with Sandbox(Limits(runs=runs)) as box:
        servers = [server._proc.pid for server in box.servers if server._proc is not None]
        cpu_before, started = _tree_cpu(servers), time.perf_counter()
        for start in range(0, len(jobs), _BATCH):
            results = box.run_many(jobs[start:start + _BATCH])
            assert all(r["outcome"] == "ok" for r in results), [r for r in results if r["outcome"] != "ok"][:1]
        return time.perf_counter() - started, _tree_cpu(servers) - cpu_before


# Runs in a fresh interpreter with the fork server's imports and minimal environment: the life of one child
# (as `forkserver._run_child` lives it: scratch, ruleset, fork, `_isolate`, the job, its frame, cleanup), timed
# phase by phase, over CRUXEval calls. The same job run warm in the measuring process gives the cost of a cold
# child's first touches (copy-on-write page faults, caches), and untraced the tracer's share.
_PHASES = """
import gc, json, os, statistics, sys, tempfile, time
from operators.sandbox import calls, forkserver, isolation, landlock
from operators.sandbox.wire import recv_frame, send_frame

def measure(jobs, limits):
    forkserver._layers.update(unprivileged_uid=isolation.can_drop_privileges(),
                              filesystem=landlock.works(forkserver._READ_ROOTS, forkserver._LANDLOCK_ABI))
    calls.warm_up()
    gc.freeze()
    phases = {}
    for job in jobs:
        t0 = time.perf_counter()
        scratch = tempfile.mkdtemp(prefix="tracecot-bench-")
        ruleset = forkserver._LANDLOCK_RULES.ruleset(scratch)
        t1 = time.perf_counter()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            started = time.perf_counter()
            forkserver._isolate(scratch, write_end, limits, ruleset)
            isolated = time.perf_counter()
            result = calls.run_job(job)
            ran = time.perf_counter()
            data = calls.encode_result(result)
            send_frame(write_end, json.dumps([started, isolated, ran, time.perf_counter()]).encode())
            send_frame(write_end, data)
            os._exit(0)
        t2 = time.perf_counter()
        os.close(write_end)
        os.close(ruleset)
        child = json.loads(recv_frame(read_end, time.monotonic() + 30))
        recv_frame(read_end, time.monotonic() + 30)
        t3 = time.perf_counter()
        os.close(read_end)
        forkserver._kill_group(pid)
        os.waitpid(pid, 0)
        forkserver._remove(scratch)
        t4 = time.perf_counter()
        for name, seconds in (("scratch directory + Landlock ruleset (server)", t1 - t0),
                              ("fork (server side)", t2 - t1), ("fork until the child runs", child[0] - t1),
                              ("isolation layers in the child", child[1] - child[0]),
                              ("the job, in a fresh child", child[2] - child[1]),
                              ("result to JSON", child[3] - child[2]), ("frame to the server", t3 - child[3]),
                              ("kill, reap, remove scratch", t4 - t3)):
            phases.setdefault(name, []).append(seconds)
    for traced in (True, False):
        warm = []
        for job in jobs:
            started = time.perf_counter()
            calls.run_job({**job, "traced": traced})
            warm.append(time.perf_counter() - started)
        phases["the job, warm, " + ("traced" if traced else "untraced")] = warm
    sys.stdout = sys.__stdout__
    print(json.dumps({name: statistics.median(values) for name, values in phases.items()}))
"""


def child_phases(problems: list[tuple[str, str]]) -> dict[str, float]:
    """Median seconds of each phase of a sandbox child's life, measured as the fork server lives it."""
    jobs = [{"code": code, "entry_point": "f", "input": args} for code, args in problems]
    script = f"{_PHASES}\nmeasure({jobs!r}, {Limits().wire()!r})"
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}  # as the fork server gets it
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=_ROOT,
                          env=env)
    return json.loads(done.stdout.splitlines()[-1])


def snooped(problems: list[tuple[str, str]]) -> tuple[float, float]:
    started, cpu_before = time.perf_counter(), _children_cpu()
    outcomes = snoop_all([(code, "f", args) for code, args in problems], workers=1, timeout_s=30)
    assert set(outcomes) == {"ok"}, outcomes
    return time.perf_counter() - started, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree_cpu(pids: list[int]) -> float:
    """CPU seconds of this process plus `pids` and their descendants, including the children they reaped (a
    child that ends while the tree is read is counted by its parent once reaped, or not at all: ~1 ms)."""
    own = os.times()
    return own.user + own.system + sum(_proc_cpu(p) for pid in pids for p in _descendants(pid))


def _descendants(pid: int) -> list[int]:
    found = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            for child in children.read().split():
                found += _descendants(int(child))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def _proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return sum(int(ticks) for ticks in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--snoop", type=int, default=100, help="problems for the PySnooper baseline")
    args = parser.parse_args()
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    problems = [(row["code"], row["input"]) for row in rows]
    n = len(problems)

    plain_s, _ = in_one_child(problems, traced=False)
    traced_s, events = in_one_child(problems, traced=True)
    streams = {label: sandboxed(problems, runs) for label, runs in (
        ("default: 2 seeds, 8 for set calls", 2), ("1 run, no determinism check", 1))}
    snoop_s, snoop_cpu = (x * n / args.snoop for x in snooped(problems[: args.snoop]))

    print(f"{n} CRUXEval calls, one sequential stream each; rates per wall second | per CPU second")
    print(f"(a) plain exec, no tracer, no isolation per call:  {n / plain_s:8.0f} calls/s")
    print(f"    traced in-process (tracer only):               {n / traced_s:8.0f} calls/s "
          f"({events} events; tracer cost {(traced_s - plain_s) / events * 1e6:.2f} µs per event)")
    for label, (wall, cpu) in streams.items():
        print(f"tracecot sandbox, {label:33s} {n / wall:8.1f} | {n / cpu:6.1f} calls/s")
    print(f"(b) subprocess + PySnooper per call:                {n / snoop_s:8.1f} | {n / snoop_cpu:6.1f} calls/s "
          f"(measured on {args.snoop})")
    for label, (wall, cpu) in streams.items():
        print(f"sandbox ({label}) vs (b): {snoop_s / wall:.1f}x faster by wall, {snoop_cpu / cpu:.1f}x by CPU; "
              f"vs (a): {wall / plain_s:.0f}x slower")
    _, cpu = streams["default: 2 seeds, 8 for set calls"]
    print(f"where one run of a call goes (medians over {min(n, 300)} calls, wall ms in a quiet child; the "
          f"default stream spends {cpu / n / 2 * 1e3:.2f} CPU ms per run, client and servers included):")
    for name, seconds in child_phases(problems[:300]).items():
        print(f"  {name:48s} {seconds * 1e3:7.3f} ms")

if __name__ == "__main__":
    main()

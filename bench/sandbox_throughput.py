"""Traced, sandboxed executions per second on CRUXEval, against two baselines, measured in one run.

    pip install pysnooper   # for baseline (b) only
    python bench/sandbox_throughput.py [--data ../shared/data/cruxeval/cruxeval.jsonl] [--snoop 100]

(a) plain exec of the same calls, no tracer, no per-call isolation — run inside one sandboxed child,
    since this code is untrusted too;
(b) one subprocess per call under PySnooper, as the reference pipeline does (each in its own network
    namespace; measured on the first --snoop problems).
Every stream is sequential, so each rate is per core. Also prints the tracer's own cost per line event.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from operators.sandbox import Limits, Sandbox

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cruxeval" / "cruxeval.jsonl"

# Runs inside one sandboxed child: every problem's call, with or without the tracer, timed in-process.
_LOOP = '''
import time
from operators.tracer import Tracer

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

_SNOOP = '''
import pysnooper, sys, io
{code}
f = pysnooper.snoop(output=io.StringIO(), depth=1)(f)
f({args})
'''


def in_one_child(problems: list[tuple[str, str]], traced: bool) -> tuple[float, int]:
    job = {"code": _LOOP, "entry_point": "loop", "input": f"{problems!r}, {traced}", "max_events": 10}
    with Sandbox(Limits(timeout_s=300, runs=1), require=()) as box:
        result = box.run(job)
    assert result["outcome"] == "ok", result
    seconds, events = eval(result["output"])  # a tuple of two numbers, checked by the sandbox as a literal
    return seconds, events


def sandboxed(problems: list[tuple[str, str]], runs: int) -> float:
    with Sandbox(Limits(runs=runs)) as box:
        started = time.perf_counter()
        for code, args in problems:
            box.run({"code": code, "entry_point": "f", "input": args})
        return time.perf_counter() - started


def snooped(problems: list[tuple[str, str]]) -> float:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for code, args in problems:
            subprocess.run(["unshare", "-n", sys.executable, "-c", _SNOOP.format(code=code, args=args)],
                           cwd=scratch, capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    return time.perf_counter() - started


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
    once_s = sandboxed(problems, runs=1)
    twice_s = sandboxed(problems, runs=2)
    snoop_s = snooped(problems[: args.snoop]) * n / args.snoop

    print(f"{n} CRUXEval calls, one core each stream")
    print(f"(a) plain exec, no tracer, no isolation per call: {n / plain_s:10.0f} calls/s")
    print(f"    traced in-process (tracer only):             {n / traced_s:10.0f} calls/s "
          f"({events} events; tracer cost {(traced_s - plain_s) / events * 1e6:.2f} µs per event)")
    print(f"tracecot sandbox, traced, 1 run per call:        {n / once_s:10.1f} calls/s")
    print(f"tracecot sandbox, traced, 2 runs (default):      {n / twice_s:10.1f} calls/s")
    print(f"(b) subprocess + PySnooper per call:             {n / snoop_s:10.1f} calls/s "
          f"(measured on {args.snoop})")
    print(f"ratio sandbox (1 run) vs (b): {snoop_s / once_s:.1f}x faster; vs (a): {once_s / plain_s:.0f}x slower")
    print(f"ratio sandbox (2 runs) vs (b): {snoop_s / twice_s:.1f}x faster")


if __name__ == "__main__":
    main()

"""Real-world functions through the whole job, against the reference pipeline's tracing step on the same calls.

    pip install pysnooper
    python bench/realworld.py [--per-task 5] [--sets mbppplus,humaneval,cruxeval]

Sets: MBPP+ (`../shared/data/mbppplus/`, 399 functions; `--per-task` inputs each, spread evenly over base and
plus inputs, 0 for all ~43k), HumanEval (164 functions, the inputs in their tests) and, for comparison, CRUXEval
(800 tiny functions, one call each). For each set, in one run:
(1) the whole job: the `tracecot run` command (ingest, execute, narrate both directions, verify, Parquet, the run
report), timed from the command's start to its exit, so imports and Ray or sandbox start-up are included:
records/s, busy seconds per record by stage, rejects by reason;
(2) every call once more through one sandbox, as the executor runs it: per-call latency p50/p99, and the
seconds each outcome costs (what rejects cost);
(3) the reference's tracing step alone on the same calls: a fresh interpreter + PySnooper per call, 5 s
timeout, 2×CPU workers.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from snoop_baseline import snoop_all

from operators.ingest.formats import BadProblem, detect_format, to_problem
from operators.sandbox.client import Sandbox
from pipeline import config as cfg
from pipeline.sources import iter_lines
from pipeline.stages import limits
from pipeline.storage import locate

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SETS = {"mbppplus": DATA / "mbppplus" / "MbppPlus.jsonl", "humaneval": DATA / "humaneval" / "HumanEval.jsonl.gz",
        "cruxeval": DATA / "cruxeval" / "cruxeval.jsonl"}
_BATCH = 16


def sampled_mbppplus(path: Path, per_task: int, into: Path) -> Path:
    """MBPP+ with `per_task` inputs per task, evenly spaced over base then plus inputs (0: all)."""
    rows = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        inputs = row["base_input"] + (row.get("plus_input") or [])
        if per_task:
            inputs = inputs[::max(1, len(inputs) // per_task)][:per_task]
        rows.append({**row, "base_input": inputs, "plus_input": []})
    into.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return into


def calls_in(path: Path) -> list[tuple[str, str, str]]:
    """Every distinct (code, entry point, argument text) the job will run."""
    seen: dict[tuple[str, str, str], None] = {}
    for line in iter_lines(locate(str(path), cfg.StorageConfig())):
        row = json.loads(line)
        try:
            problem = to_problem(row, detect_format(row) or "")
        except BadProblem:  # the job rejects the row at ingest; nothing to run
            continue
        seen.update(dict.fromkeys((problem.code, problem.entry_point, args) for args in problem.inputs))
    return list(seen)


def whole_job(path: Path) -> tuple[float, dict]:
    """Seconds from `tracecot run`'s start to its exit, as a user waits for it, and the run's report."""
    command = [str(Path(sys.executable).parent / "tracecot"), "run", "--input", str(path)]
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run([*command, "--output", out], check=True, capture_output=True)
        seconds = time.perf_counter() - started
        (report,) = Path(out, "runs").glob("*.json")
        return seconds, json.loads(report.read_text())


def per_call(calls: list[tuple[str, str, str]], config: cfg.RunConfig) -> list[tuple[str, float]]:
    """(outcome, seconds) of each call's first run, through one sandbox in the executor's batches."""
    jobs = [{"code": code, "entry_point": entry, "input": args, "max_events": config.tracer.max_events,
             "max_value_len": config.tracer.max_value_len} for code, entry, args in calls]
    out: list[tuple[str, float]] = []
    with Sandbox(limits(config), tuple(config.sandbox.require)) as box:
        for start in range(0, len(jobs), _BATCH):
            out += [(r["outcome"], r.get("wall_s") or 0.0) for r in box.run_many(jobs[start:start + _BATCH])]
    return out


def report(name: str, path: Path) -> None:
    calls = calls_in(path)
    seconds, job = whole_job(path)
    config = cfg.load(None, {"input": str(path), "output": "unused"})
    latencies = per_call(calls, config)
    workers = 2 * (os.cpu_count() or 1)
    started = time.perf_counter()
    snooped = snoop_all(calls, workers)
    snoop_s = time.perf_counter() - started

    funnel, records = job["funnel"], job["funnel"]["written_records"]
    print(f"\n== {name}: {len(calls)} calls, {funnel['items']} items (call × direction)")
    print(f"whole job: {seconds:.1f} s from the command's start to its exit ({job['engine']} engine; the run itself "
          f"{job['wall_s']:.1f} s), {records} records, {records / seconds:.1f} records/s, "
          f"{funnel['items'] / seconds:.1f} items/s")
    print("  busy ms per record by stage: " + ", ".join(
        f"{stage} {busy / max(records, 1) * 1e3:.1f}" for stage, busy in job["stage_busy_s"].items()))
    print("  rejects: " + (", ".join(f"{k} {n}" for k, n in funnel["rejects_by_reason"].items()) or "none"))
    each = sorted(s for _, s in latencies)
    print(f"per call (first run, one sandbox): p50 {statistics.median(each) * 1e3:.1f} ms, "
          f"p99 {each[int(0.99 * (len(each) - 1))] * 1e3:.1f} ms, max {each[-1] * 1e3:.0f} ms")
    cost: dict[str, list[float]] = collections.defaultdict(list)
    for outcome, s in latencies:
        cost[outcome].append(s)
    print("  seconds by outcome: " + ", ".join(f"{o} {len(v)} calls {sum(v):.1f} s" for o, v in sorted(cost.items())))
    print(f"reference tracing step (fresh python + PySnooper per call, 5 s timeout, {workers} workers): "
          f"{snoop_s:.1f} s, {len(calls) / snoop_s:.1f} calls/s; outcomes {dict(collections.Counter(snooped))}")
    print(f"whole job vs the reference's tracing step alone: {snoop_s / seconds:.2f}x "
          f"({'faster' if snoop_s > seconds else 'slower'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-task", type=int, default=5, help="MBPP+ inputs per task (0: all ~43k)")
    parser.add_argument("--sets", default="mbppplus,humaneval,cruxeval")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.sets.split(","):
            path = SETS[name]
            if name == "mbppplus":
                path = sampled_mbppplus(path, args.per_task, Path(scratch) / "mbppplus.jsonl")
            report(name, path)


if __name__ == "__main__":
    main()

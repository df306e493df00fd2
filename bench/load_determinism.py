"""Same input, three runs, one of them beside a CPU load: the records and rejections must be identical.

    python bench/load_determinism.py [--input ../shared/data/mbpp/mbpp.jsonl] [--limit 300] [--burners N]

Each run writes to its own empty output. The third runs while `--burners` processes (default: one per CPU)
spin at normal priority. Compared: every record's id, output and CoT, every rejection's id and reason. CPU
time decides a call's timeout (`sandbox.timeout_s`), so a busy machine changes how long a run takes, not
what it writes; the wall-clock net (`sandbox.wall_timeout_s`) is far above any call here.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from pipeline import config as cfg
from pipeline.progress import Progress
from pipeline.run import run

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"


def spin() -> None:
    while True:
        pass


def one_run(source: str, limit: int, load: int) -> tuple[float, set, set]:
    burners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(load)]
    for burner in burners:
        burner.start()
    try:
        with tempfile.TemporaryDirectory() as out:
            report = run(cfg.load(None, {"input": source, "output": out, "limit": limit}), Progress(io.StringIO()))
            records = pq.read_table(Path(out) / "records", columns=["record_id", "output", "cot"]).to_pylist()
            rejected = pq.read_table(Path(out) / "rejected", columns=["record_id", "reason"]).to_pylist()
    finally:
        for burner in burners:
            burner.kill()
    return (report["wall_s"], {tuple(row.values()) for row in records}, {tuple(row.values()) for row in rejected})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(DATA))
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    runs = [one_run(args.input, args.limit, load) for load in (0, 0, args.burners)]
    for number, (wall, records, rejected) in enumerate(runs, 1):
        load = f"beside {args.burners} spinning processes" if number == 3 else "quiet"
        print(f"run {number} ({load}): {wall:.1f} s, {len(records)} records, {len(rejected)} rejected")
    same = all(r[1:] == runs[0][1:] for r in runs[1:])
    print("identical records and rejections in all three runs" if same else "RUNS DIFFER")
    for number, (_, records, rejected) in enumerate(runs[1:], 2):
        if (records, rejected) != runs[0][1:]:
            print(f"  run {number} vs 1: records only in 1: {len(runs[0][1] - records)}, only in {number}: "
                  f"{len(records - runs[0][1])}; rejections differing: {len(rejected ^ runs[0][2])}")


if __name__ == "__main__":
    main()

"""CRUXEval end to end: records/s, busy time per stage, rerun cost, and a no-Ray sequential baseline.

    python bench/run_cruxeval.py [--input ../shared/data/cruxeval/cruxeval.jsonl] [--limit N]

All figures come from one invocation on this machine, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import io
import itertools
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from operators.ingest.index import LocalIndex
from pipeline import config as cfg
from pipeline.progress import Progress
from pipeline.run import run
from pipeline.sources import iter_lines
from pipeline.stages import run_local, steps
from pipeline.storage import locate

DEFAULT_INPUT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cruxeval" / "cruxeval.jsonl"


def sequential(config: cfg.RunConfig) -> tuple[float, int]:
    """The same stages in one process (`run_local`), on batches of `ray.batch_size` lines: no Ray, no Parquet."""
    started = time.perf_counter()
    lines = itertools.islice(iter_lines(locate(config.input, config.storage)), config.limit)
    accepted = sum(not row.get("reason") for batch in run_local(steps(config, "bench", LocalIndex()), lines,
                                                                config.ray.batch_size) for row in batch.to_pylist())
    return time.perf_counter() - started, accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(DEFAULT_INPUT))
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        config = cfg.load(None, {"input": args.input, "output": out, "limit": args.limit})
        first = run(config, Progress(io.StringIO()))
        second = run(config, Progress(io.StringIO()))
        records = pq.read_table(Path(out) / "records")
        started = time.perf_counter()
        pq.write_table(records, Path(out) / "rewrite.parquet")
        write_s = time.perf_counter() - started
        written_mb = (Path(out) / "rewrite.parquet").stat().st_size / 1e6
    seq_s, seq_accepted = sequential(config)
    funnel = first["funnel"]
    print(f"input: {args.input} ({funnel['rows_read']} rows, {funnel['items']} items)")
    print(f"first run:  {first['wall_s']:.1f} s wall, {funnel['written_records']} records, "
          f"{first['records_per_s']:.1f} records/s (includes starting Ray)")
    print("busy seconds per stage (summed over actors; stages overlap in time):")
    for stage, seconds in first["stage_busy_s"].items():
        print(f"  {stage:8s} {seconds:8.2f} s")
    print(f"rerun:      {second['wall_s']:.2f} s wall, {second['funnel']['written_records']} new records "
          f"= {second['wall_s'] / first['wall_s']:.1%} of the first run")
    print(f"sequential baseline (same operators, one process, no Ray/Parquet): {seq_s:.1f} s, "
          f"{seq_accepted} records, {seq_accepted / seq_s:.1f} records/s")
    print(f"ratio Ray pipeline / sequential wall time: {first['wall_s'] / seq_s:.2f}")
    print(f"Parquet write of the {records.num_rows} records (local disk, one core): {records.num_rows / write_s:.0f} "
          f"records/s, {written_mb / write_s:.1f} MB/s ({written_mb / records.num_rows * 1000:.1f} kB per record)")


if __name__ == "__main__":
    main()

"""What a block of finished rows costs to pass one stage on Ray, by batch size: the stage's own call, and Ray's
serialization of the block it hands on.

    python bench/block_chunks.py [--rows 2000] [--stages 6]

Ray Data joins the outputs of a task's batches into one block without merging their Arrow chunks, and Ray
serializes a block chunk by chunk in Python (`ray._private.arrow_serialization`), so a block costs by its
chunks, not its rows. The rows here are repeats rejected at ingest (as most of a large input with repeats is),
passed through `--stages` stages in batches the way Ray Data cuts them; nothing runs in a sandbox and no Ray
cluster starts. Figures are per block per stage, medians of the stages after the first.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyarrow as pa
from ray._private.arrow_serialization import _arrow_table_reduce

from operators.records import WORK_SCHEMA, table
from operators.stages.base import RowStage


class PassThrough(RowStage):
    """A stage with work of its own to do on none of these rows: what every stage after ingest is to a repeat."""

    name = "execute"

    def process(self, row: dict) -> list[dict]:
        return [row]


def repeats(rows: int) -> pa.Table:
    return table([{"record_id": f"r{i}", "code": "def f(x):\n    return x + 1\n", "entry_point": "f",
                   "input": str(i), "stage": "ingest", "reason": "duplicate_call", "rows_read": 1}
                  for i in range(rows)], WORK_SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows per block (~1 MiB of repeats)")
    parser.add_argument("--stages", type=int, default=6)
    args = parser.parse_args()
    first = repeats(args.rows)
    _arrow_table_reduce(first)  # warm-up
    stage = PassThrough()
    print(f"{args.rows} rows per block, {len(WORK_SCHEMA)} columns")
    for batch_size in (16, 64, 256):
        block, calls, serialize = first, [], []
        for _ in range(args.stages):
            started = time.perf_counter()
            block = pa.concat_tables([stage(block.slice(i, batch_size)) for i in range(0, block.num_rows, batch_size)])
            done = time.perf_counter()
            _arrow_table_reduce(block)
            calls.append(done - started)
            serialize.append(time.perf_counter() - done)
        print(f"batch {batch_size:4}: {block.column(0).num_chunks:4} chunks a block; per block per stage: "
              f"stage calls {statistics.median(calls[1:]) * 1000:6.0f} ms, "
              f"serialization {statistics.median(serialize[1:]) * 1000:6.0f} ms")


if __name__ == "__main__":
    main()

"""The shape shared by the per-row stages: a callable over a batch (a pyarrow Table of work rows).

Rows that were rejected or skipped earlier pass through untouched, so every input row reaches the sink and
is counted there. The stage's busy time is spread over the rows it produced (column `timing_column`).
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa

from operators.records import table


class RowStage:
    timing_column = ""

    def process(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        out: list[dict[str, Any]] = []
        produced: list[dict[str, Any]] = []
        for row in batch.to_pylist():
            if row.get("reason") or row.get("skipped"):
                out.append(row)
                continue
            new = self.process(row)
            out.extend(new)
            produced.extend(new)
        elapsed = time.perf_counter() - started
        for row in produced:
            row[self.timing_column] = elapsed / len(produced)
        return table(out)

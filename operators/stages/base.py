"""The shape shared by the per-row stages: a callable over a batch (a pyarrow Table of work rows).

Rows that were rejected or skipped earlier pass through untouched, so every input row reaches the sink and
is counted there. A row that makes the stage itself fail becomes a rejected row (`internal_error`) instead of
failing the batch. The stage's busy time is spread over the rows it produced (column `timing_column`).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from operators.records import reject, table


def node_name() -> str:
    """The Ray node this process runs on, or the host name outside Ray: where a stage did its work."""
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return socket.gethostname()


def stamp(rows: list[dict[str, Any]], stage: str, node: str) -> None:
    """Note on each row which node ran `stage` for it (summed into the run report's placement)."""
    for row in rows:
        row["placement"] = f"{row.get('placement') or ''}{stage}@{node};"


def guarded(stage: str, row: dict[str, Any], work: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """`work()`, or one rejected row saying what went wrong: a bad row never takes its batch down."""
    try:
        return work()
    except Exception as err:
        return [reject(row, stage, "internal_error", f"{type(err).__name__}: {err}")]


class RowStage:
    timing_column = ""
    _node = ""

    def process(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def process_rows(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """The rows each live row becomes; a stage that works better on many rows at once overrides this."""
        stage = self.timing_column.removeprefix("t_")
        return [guarded(stage, row, lambda row=row: self.process(row)) for row in rows]

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        rows = batch.to_pylist()
        live = [i for i, row in enumerate(rows) if not (row.get("reason") or row.get("skipped"))]
        out: list[list[dict[str, Any]]] = [[row] for row in rows]
        for i, new in zip(live, self.process_rows([rows[i] for i in live]), strict=True):
            out[i] = new
        produced = [row for i in live for row in out[i]]
        elapsed = time.perf_counter() - started
        for row in produced:
            row[self.timing_column] = elapsed / len(produced)
        self._node = self._node or node_name()
        stamp(produced, self.timing_column.removeprefix("t_"), self._node)
        return table([row for rows_of_one in out for row in rows_of_one])

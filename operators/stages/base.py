"""The shape shared by the pipeline's stages: a callable over a batch (a pyarrow Table of work rows).

Rows that were rejected or skipped earlier pass through untouched, so every input row reaches the sink and
is counted there. A row that makes the stage itself fail becomes a rejected row (`internal_error`) instead of
failing the batch. The stage's busy time is spread over the rows it produced (column `t_<name>`), and each
produced row notes the step, node and actor that made it (`placement`).

A stage declares how it may be placed (`Placement`); the graph (`pipeline/graph.py`) sizes its pool from the
config and never runs a single-actor stage on more than one actor.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from operators.records import WORK_SCHEMA, reject, table

# Stages far lighter than execution (parsing, decontamination, tokenizing, writing: under 1% of a run's busy
# time) reserve no CPU, so that their fixed pools leave a small machine's CPUs to the executor and verifier pools.
LIGHT = 0.0


@dataclass(frozen=True)
class Placement:
    """How a stage's actors may be placed: declared by the stage, sized by the config."""

    single_actor: bool = False  # state every row needs (e.g. problems kept so far) lives in one actor
    cpus: float = 0.1  # per actor; fractional on purpose: on a small machine whole CPUs deadlock (NOTES.md)
    on_executor_nodes: bool = False  # runs untrusted code: goes to the nodes advertising `ray.executor_resource`
    # Keeps nothing between batches worth an actor: each batch is a Ray task, run by whichever worker is free
    # anywhere in the cluster (the pool size caps the tasks at once), so no one process carries the stage.
    tasks: bool = False


def running_ray() -> ModuleType | None:
    """The `ray` module when Ray is up in this process, else None; never imports Ray (a second's work that a run
    in one process does without)."""
    ray = sys.modules.get("ray")
    return ray if ray is not None and ray.is_initialized() else None


def worker() -> tuple[str, str]:
    """The Ray node and actor (or, running a task, worker) this process is, or the host name and process id
    outside Ray: where a stage did its work."""
    ray = running_ray()
    if ray is not None:
        context = ray.get_runtime_context()
        return context.get_node_id(), context.get_actor_id() or context.get_worker_id()
    return socket.gethostname(), f"pid-{os.getpid()}"


def step_name(stage: object) -> str:
    """The stage class an object is, under the subclasses Ray Data wraps a stage class in (its own module)."""
    return next(cls.__name__ for cls in type(stage).__mro__ if not cls.__module__.startswith("ray."))


def guarded(stage: str, row: dict[str, Any], work: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """`work()`, or one rejected row saying what went wrong: a bad row never takes its batch down."""
    try:
        return work()
    except Exception as err:
        return [reject(row, stage, "internal_error", f"{type(err).__name__}: {err}")]


class RowStage:
    """A stage over work rows: subclasses define `process` (one row) or `process_rows` (a batch at once)."""

    name: ClassVar[str] = ""
    placement: ClassVar[Placement] = Placement()
    schema: ClassVar[pa.Schema] = WORK_SCHEMA
    _worker: tuple[str, str] | None = None

    def wants(self, row: dict[str, Any]) -> bool:
        """Whether this stage works on the row; the others pass through untouched."""
        return True

    def process(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def process_rows(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """The rows each live row becomes; a stage that works better on many rows at once overrides this."""
        return [guarded(self.name, row, lambda row=row: self.process(row)) for row in rows]

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        passed, batch = _split_finished(batch, self.schema)
        if passed is not None and batch.num_rows == 0:  # nothing to do (at scale, batches of repeats)
            return passed.combine_chunks()
        rows = batch.to_pylist()
        live = [i for i, row in enumerate(rows) if not (row.get("reason") or row.get("skipped")) and self.wants(row)]
        out: list[list[dict[str, Any]]] = [[row] for row in rows]
        for i, new in zip(live, self.process_rows([rows[i] for i in live]), strict=True):
            out[i] = [new[0], *(_counted_once_zeroed(row) for row in new[1:])] if new else new
        produced = [row for i in live for row in out[i]]
        elapsed = time.perf_counter() - started
        self._worker = self._worker or worker()
        node, actor = self._worker
        place = {"stage": self.name, "node": node, "step": step_name(self), "actor": actor}
        for row in produced:
            row[f"t_{self.name}"] = elapsed / len(produced)
            row["placement"] = [*(row.get("placement") or []), place]
        processed = table([row for rows_of_one in out for row in rows_of_one], self.schema)
        # One chunk per column: Ray Data joins a task's batch outputs into a block without merging their chunks,
        # and Ray serializes a block chunk by chunk (~5 ms a chunk in this schema, whatever its rows).
        return (pa.concat_tables([passed, processed]) if passed is not None else processed).combine_chunks()


def _split_finished(batch: pa.Table, schema: pa.Schema) -> tuple[pa.Table | None, pa.Table]:
    """The rows of `batch` rejected or skipped earlier, and the rest. The finished rows stay an Arrow table and
    pass through as they are: at scale most rows can be repeats rejected at ingest, and turning each into Python
    objects and back at every stage cost far more than the work on the live rows. None when there are none (or
    the batch is not yet in the stage's schema, as raw input lines are)."""
    if not batch.schema.equals(schema) or batch.num_rows == 0:
        return None, batch
    rejected = pc.fill_null(pc.not_equal(batch["reason"], ""), False)
    finished = pc.or_(rejected, pc.fill_null(batch["skipped"], False))
    if not pc.any(finished).as_py():
        return None, batch
    return batch.filter(finished), batch.filter(pc.invert(finished))


def _counted_once_zeroed(row: dict[str, Any]) -> dict[str, Any]:
    """A further row made of one input row: the input row, the stages' busy times and the model answers it was
    made from stay counted on the first."""
    return {**row, **{key: 0 for key in row if key == "rows_read" or key.startswith("t_")}, "generations": None}

"""Which finished rows go into one output file, and, on Ray, the sink tasks that write them.

A file holds `sink.rows_per_file` rows, or, when rows come slowly, whatever has waited `sink.flush_s` seconds
(a slow model narrator still streams a file every few minutes). Both engines use `Filing` for that decision; the
in-process engine writes the file itself (`pipeline.run.drain_in_process`).

On Ray the driver files finished blocks by reference (`Dataset.iter_internal_ref_bundles`): it never holds
rows, only ids of blocks in the object store, and hands each file's blocks to one sink task, at most
`sink.actors` at once, spread over the cluster. The task keeps no state: if its worker dies, Ray runs it again
with the same blocks, and the sink's claims in the run index and content-addressed file names keep the rows
written once (`pipeline.sinks`). The time flush lives here, not in a sink actor, because an actor holding rows
past the call that brought them would lose them when it died.
"""

from __future__ import annotations

import contextlib
import ctypes
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pyarrow as pa

from pipeline.stages import Step

Item = TypeVar("Item")
STOP_WAIT_S = 60.0  # for the reader thread to stop, and with it the Ray Data executor it reads from


@dataclass(frozen=True)
class Block:
    """A finished block as the driver files it: its reference, the rows it holds, and where the rows it was
    given start (Ray Data may hand over part of a block)."""

    ref: Any
    rows: int
    offset: int = 0
Piece = tuple[Item, int, int]  # rows start..end (end excluded) of an item


class Filing(Generic[Item]):
    """Rows waiting for their file, as pieces of the items (tables, or references to blocks) they came in.

    Files are cut at `rows_per_file` rows exactly, an item split between two files where it must, so file sizes
    do not depend on how the engine happened to group rows (a flush on time cuts wherever the rows have got to;
    a sink task run again is given the same pieces, so it writes the same file)."""

    def __init__(self, rows_per_file: int, flush_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rows_per_file = rows_per_file
        self.flush_s = flush_s  # 0: no flush on time, files by rows only
        self.clock = clock
        self.pieces: list[Piece[Item]] = []
        self.rows = 0
        self.since = 0.0  # when the oldest waiting row came

    def add(self, item: Item, rows: int) -> Iterator[list[Piece[Item]]]:
        """File an item of `rows` rows; each file this fills, as its pieces."""
        start = 0
        while start < rows:
            if not self.pieces:
                self.since = self.clock()
            end = min(rows, start + self.rows_per_file - self.rows)
            self.pieces.append((item, start, end))
            self.rows += end - start
            start = end
            if self.rows >= self.rows_per_file:
                yield self.take()

    def wait_s(self) -> float | None:
        """Seconds until the waiting rows are due on time; None when none wait or there is no time flush."""
        if not self.pieces or not self.flush_s:
            return None
        return max(0.0, self.since + self.flush_s - self.clock())

    def overdue(self) -> bool:
        return self.wait_s() == 0.0

    def take(self) -> list[Piece[Item]]:
        pieces, self.pieces, self.rows = self.pieces, [], 0
        return pieces


class ReaderStopped(BaseException):
    """Raised inside the reader thread when its caller stops (see `arrivals`)."""


def arrivals(open_items: Callable[[], Iterator[Item]], wait_s: Callable[[], float | None]) -> Iterator[Item | None]:
    """The items of `open_items()` as they come (read in a thread), and None each time `wait_s()` seconds pass
    without one: the caller's moment to flush. The reader waits while the caller is busy, so what it reads stays
    bounded.

    When the caller stops (the end, an error, Ctrl-C; close this generator to stop it at once), the reader is
    stopped before this returns: if it still holds the iterator, even waiting inside it, `ReaderStopped` is
    raised in its thread.
    A Ray Data iterator catches that in its wait and shuts its executor down, as it does for a Ctrl-C in the
    thread that reads it. Without this the executor would go on scheduling tasks after the driver shut Ray down,
    and Ray ends a process that touches it after its shutdown (exit 1, no report). The iterator is opened and held
    in the reader thread only, so once the thread ends nothing else keeps it alive."""
    arrived: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stopped = threading.Event()

    def hand_over(message: tuple[str, Any]) -> bool:
        """`message` to the caller; False once the caller has stopped listening."""
        while not stopped.is_set():
            with contextlib.suppress(queue.Full):
                arrived.put(message, timeout=0.2)
                return True
        return False

    let_go = threading.Event()  # the reader holds the iterator no more: nothing to stop

    def read() -> None:
        last: tuple[str, Any] = ("end", None)
        try:
            for item in open_items():
                if not hand_over(("item", item)):
                    return
        except ReaderStopped:
            return
        except BaseException as err:  # the dataset's failure is the run's: raised in the caller's thread
            last = ("error", err)
        finally:
            let_go.set()
        with contextlib.suppress(ReaderStopped):  # the stop may have been on its way as the reader let go
            hand_over(last)

    reader = threading.Thread(target=read, name="tracecot-filing", daemon=True)
    reader.start()
    try:
        while True:
            try:
                kind, value = arrived.get(timeout=wait_s())
            except queue.Empty:
                yield None
                continue
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stopped.set()
        if not let_go.is_set():
            _interrupt(reader)
        reader.join(timeout=STOP_WAIT_S)


def _interrupt(reader: threading.Thread) -> None:
    """`ReaderStopped` raised in the reader thread at its next Python instruction: Ray Data's iterator waits in a
    Python loop that polls every 10 ms, so that is soon; a thread blocked in C gets it when the call returns.
    Raised once: a second could break into the executor's own shutdown."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(reader.ident), ctypes.py_object(ReaderStopped))


class SinkTasks:
    """The sink on Ray: one task per file, fed the file's blocks by reference, at most `step.actors[1]` running."""

    def __init__(self, step: Step) -> None:
        import ray

        self.ray = ray
        self.args = ray.put(step.args)  # the sink's arguments (the run index's handles) travel once
        self.stage = step.stage
        # A task whose worker died runs again with the same blocks, as Ray Data's own tasks do (no limit).
        options: dict[str, Any] = {"name": step.stage.__name__, "num_cpus": step.stage.placement.cpus,
                                   "max_retries": -1, "scheduling_strategy": "SPREAD"}
        if step.resources:
            options["resources"] = step.resources
        # Spread: Ray would run a task with large arguments where its blocks are, and one node would write all.
        self.task = ray.remote(write_file).options(**options)
        self.limit = step.actors[1]
        self.running: list[Any] = []

    def write(self, pieces: list[Piece[Block]]) -> Iterator[pa.Table]:
        """Start a task writing one file of `pieces` of blocks, after waiting for a free slot; the output of the
        tasks that finished meanwhile."""
        while len(self.running) >= self.limit:
            yield from self.finished(wait=True)
        spans = [(block.rows, block.offset + start, block.offset + end) for block, start, end in pieces]
        self.running.append(self.task.remote(self.stage, self.args, spans, *(block.ref for block, _, _ in pieces)))
        yield from self.finished()

    def finished(self, wait: bool = False) -> Iterator[pa.Table]:
        """The output of tasks that have finished (with `wait`, of at least one)."""
        if not self.running:
            return
        done, self.running = self.ray.wait(self.running, num_returns=1 if wait else len(self.running),
                                           timeout=None if wait else 0)
        yield from self.ray.get(done)

    def drain(self) -> Iterator[pa.Table]:
        while self.running:
            yield from self.finished(wait=True)


def write_file(stage: type, args: dict[str, Any], spans: list[tuple[int, int, int]], *blocks: Any) -> pa.Table:
    """The sink task: the rows of each block in its span (the block's rows, start, end) as one file, by `stage`.
    Ray fetches the blocks to this worker before the task starts."""
    from ray.data.block import BlockAccessor

    tables = [BlockAccessor.for_block(block).to_arrow() for block in blocks]
    for table, (rows, _, _) in zip(tables, spans, strict=True):
        # Spans count rows of the block the driver saw: one rebuilt after a lost node may hold other rows.
        if table.num_rows != rows:
            raise RuntimeError(f"a block changed size ({rows} rows filed, {table.num_rows} now): not written")
    return stage(**args)(table_of([(table, start, end) for table, (_, start, end) in zip(tables, spans,
                                                                                          strict=True)]))


def table_of(pieces: list[Piece[pa.Table]]) -> pa.Table:
    """The rows of a file whose pieces are tables, in order."""
    return pa.concat_tables([table.slice(start, end - start) for table, start, end in pieces],
                            promote_options="default")

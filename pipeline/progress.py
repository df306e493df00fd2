"""Live progress of a run: counts the stages send while they work, printed by the driver every few seconds.

Each stage actor adds up the input rows it has finished and sends the sum to the run's `StageCounts` actor (no CPU
of its own) without waiting for an answer, at most once per `REPORT_EVERY` seconds (`Reporter`). A thread of the
driver asks that actor for the counts and prints one line every `Progress.every` seconds, from the moment the
graph starts: a "starting" line until the first rows are finished, then the rows each stage has finished, what
the sink wrote, the rate, and the time left when the input's size is known. Input rows are the unit throughout
(an input row becomes several work rows downstream; each counts once, through its `rows_read`).

The sink's counts do not come from here: the driver reads them from the sink's own output (`pipeline.graph.drain`).
They move in steps of a file (`sink.rows_per_file` rows): the stages' own counts are what shows a run moving.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.compute as pc

from operators.stages.base import RowStage
from pipeline.report import Funnel
from pipeline.stages import Step
from pipeline.tally import Tally

REPORT_EVERY = 1.0  # seconds between two sends of one stage actor
CLOSE_TIMEOUT_S = 5.0  # the longest a stage actor that shuts down waits for its last counts to arrive
RATE_WINDOW_S = 60.0  # the rate (and so the time left) is measured over this much of the recent past
DONE = {"ingest": "read", "generate": "generated", "execute": "executed", "narrate": "narrated",
        "verify": "verified", "export": "exported", "agree": "agreed", "dedup": "deduplicated"}


class StageCounts:
    """Input rows finished per stage, and the stage actors started, as the stage actors report them: an actor of
    no CPU (`Progress.live`)."""

    def __init__(self) -> None:
        self.rows: Counter[str] = Counter()
        self.actors: Counter[str] = Counter()

    def started(self, stage: str) -> None:
        self.actors[stage] += 1

    def finished(self, stage: str, rows: int) -> None:
        self.rows[stage] += rows

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        return dict(self.rows), dict(self.actors)


def count_written(output: pa.Table, funnel: Funnel, progress: Progress) -> None:
    """A sink's output (one tally per file) into the funnel, and the progress line told."""
    for tally in output.column("tally").to_pylist():
        funnel.add(Tally.from_json(tally))
    progress.record(funnel)


def input_rows(batch: pa.Table) -> int:
    """The input rows a batch stands for: their `rows_read`, or one per row before ingest (raw input lines)."""
    if "rows_read" not in batch.column_names:
        return batch.num_rows
    return pc.sum(batch.column("rows_read")).as_py() or 0


class Reporter:
    """Adds up one stage actor's finished rows and sends them on: at once when the last send is `every` seconds
    old, otherwise from a timer when it is (so the rows of a stage's last batches arrive too)."""

    def __init__(self, counts: Any, stage: str, every: float = REPORT_EVERY) -> None:
        self.counts = counts
        self.stage = stage
        self.every = every
        self.pending = 0
        self.sent_at = -every
        self.timer: threading.Timer | None = None
        self.lock = threading.Lock()

    def add(self, rows: int) -> None:
        with self.lock:
            self.pending += rows
            if self.timer is not None:
                return
            wait = self.sent_at + self.every - time.monotonic()
            if wait <= 0:
                self._send()
                return
            self.timer = threading.Timer(wait, self.flush)
            self.timer.daemon = True
            self.timer.start()

    def flush(self) -> None:
        with self.lock:
            self.timer = None
            self._send()

    def close(self) -> None:
        """Send what is left now, and wait (briefly) until it has arrived: the process is about to end."""
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            sent = self._send()
        if sent is not None:
            import ray  # in a stage actor, where Ray is loaded; this module serves in-process runs too

            with contextlib.suppress(ray.exceptions.RayError):
                ray.get(sent, timeout=CLOSE_TIMEOUT_S)

    def _send(self) -> Any:
        """Send the pending rows, without waiting; returns the call's reference (None when nothing was pending)."""
        self.sent_at = time.monotonic()
        if not self.pending:
            return None
        sent = self.counts.finished.remote(self.stage, self.pending)
        self.pending = 0
        return sent


class Reporting:
    """Mixed into a stage class for a run on Ray (`reporting`): after each batch, the input rows it finished go to
    the run's `StageCounts`, through a `Reporter`."""

    name: str

    def __init__(self, *args: Any, counts: Any, **kwargs: Any) -> None:
        self._reporter = Reporter(counts, self.name)
        super().__init__(*args, **kwargs)
        counts.started.remote(self.name)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = super().__call__(batch)
        self._reporter.add(input_rows(batch))
        return out

    def __del__(self) -> None:
        """Ray Data deletes a stage when its pool shuts down, which for an early stage (ingest) comes long before
        the run ends: the rows it finished since its last send must not die with it."""
        self._reporter.close()


def reporting(stage: type) -> type:
    """`stage` that reports its progress: it takes one more constructor argument, `counts` (a `StageCounts`).
    It keeps the stage's name, which Ray shows for its operator (`MapBatches(Executor)`)."""
    return type(stage.__name__, (Reporting, stage), {"__doc__": stage.__doc__})


def reported(stage_steps: Sequence[Step]) -> dict[int, str]:
    """The steps that report, by position, and the stage each reports for: the last step of each stage (ingest
    may take two: parsing, then decontamination). The sink is not one: the driver counts what it writes."""
    last = {step.stage.name: i for i, step in enumerate(stage_steps) if issubclass(step.stage, RowStage)}
    return dict(sorted((i, stage) for stage, i in last.items()))


@dataclass
class Written:
    """What the sink has written so far, as the driver last counted it."""

    rows: int = 0
    records: int = 0
    rejected: int = 0
    skipped: int = 0


@dataclass
class LiveLine:
    """Makes the progress lines of one run from the counts: the rate of rows through every stage before the sink
    (over the last `RATE_WINDOW_S` seconds, since the first came through), and the time left at that rate when
    `total` (input rows) is known."""

    stages: list[str]
    total: int | None
    history: deque[tuple[float, int]] = field(default_factory=deque)

    def line(self, elapsed: float, rows: dict[str, int], actors: dict[str, int], written: Written) -> str:
        if not any(rows.values()) and not written.rows:
            size = f"{self.total} input rows, " if self.total is not None else ""
            up = sum(1 for stage in self.stages if actors.get(stage))
            return f"starting: {size}pools up {up}/{len(self.stages)}"
        counts = ", ".join(f"{DONE.get(stage, stage)} {rows.get(stage, 0)}" for stage in self.stages)
        outcome = f"records {written.records}, rejected {written.rejected}" + \
            (f", skipped {written.skipped}" if written.skipped else "")
        of = f" of {self.total}" if self.total is not None else ""
        return f"rows{of}: {counts}, written {written.rows} · {outcome}{self._pace(elapsed, rows)}"

    def _pace(self, elapsed: float, rows: dict[str, int]) -> str:
        """` · 8.1 rows/s, 15s left`: the rate of rows through the last stage, and the time left at that rate."""
        done = rows.get(self.stages[-1], 0)
        if not done:
            self.history.clear()  # the rate counts from the last moment before the first rows came through
        self.history.append((elapsed, done))
        while self.history[0][0] < elapsed - RATE_WINDOW_S:
            self.history.popleft()
        since, before = self.history[0]
        if elapsed <= since or done <= before:
            return ""
        rate = (done - before) / (elapsed - since)
        if self.total is None:
            return f" · {rate:.1f} rows/s"
        left = "writing" if done >= self.total else f"ETA {duration((self.total - done) / rate)}"
        return f" · {rate:.1f} rows/s, {left}"


def duration(seconds: float) -> str:
    """`42s`, `12m05s`, `3h07m`."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class Progress:
    """A run's progress: the live lines on stderr (or `stream`), one every `every` seconds while the graph runs
    (`live`), and the run's timeline for the report, [seconds, items, records] at most every `every` seconds."""

    def __init__(self, stream: TextIO | None = None, every: float = 2.0) -> None:
        self.stream = stream
        self.every = every
        self.started = time.monotonic()
        self.last = 0.0
        self.timeline: list[list[float]] = [[0.0, 0, 0]]
        self.written = Written()  # replaced whole by the driver's thread, read by the printing one

    def record(self, funnel: Funnel, force: bool = False) -> None:
        """Note what the sink wrote so far, for the next line and (at most every `every` seconds) the timeline."""
        tally = funnel.tally
        self.written = Written(tally.rows_read, tally.accepted, sum(tally.rejected.values()), tally.skipped)
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            self.timeline.append([round(now - self.started, 2), funnel.items, tally.accepted])

    @contextlib.contextmanager
    def live(self, stages: list[str], total: int | None) -> Iterator[Any]:
        """A `StageCounts` actor for `stages` to report to, and a line printed every `every` seconds, the first at
        once, until the block ends. `total`: the input rows the run reads, when known."""
        import ray  # a run on Ray; this module serves in-process runs too

        counts = ray.remote(num_cpus=0)(StageCounts).remote()
        try:
            with self._printing(_asking(counts), LiveLine(stages, total)):
                yield counts
        finally:
            ray.kill(counts)

    @contextlib.contextmanager
    def live_here(self, shown: dict[int, str], total: int | None) -> Iterator[LocalCounts]:
        """`live` for a run in this process: the driver's loop adds what the steps `shown` finish (`LocalCounts`)."""
        counts = LocalCounts(shown)
        with self._printing(lambda _timeout: counts.snapshot(), LiveLine(list(shown.values()), total)):
            yield counts

    @contextlib.contextmanager
    def _printing(self, snapshot: Snapshot, live: LiveLine) -> Iterator[None]:
        stop = threading.Event()
        printer = threading.Thread(target=self._print_lines, args=(snapshot, live, stop), name="tracecot-progress",
                                   daemon=True)
        printer.start()
        try:
            yield
        finally:
            stop.set()
            printer.join()

    def _print_lines(self, snapshot: Snapshot, live: LiveLine, stop: threading.Event) -> None:
        """Print a line now and every `every` seconds until `stop`, with the latest counts `snapshot` has given
        within a quarter of `every` (a `StageCounts` actor may still be starting)."""
        latest: Counts = ({}, {})
        while True:
            latest = snapshot(self.every / 4) or latest
            elapsed = time.monotonic() - self.started
            print(f"[tracecot] {elapsed:6.1f}s  {live.line(elapsed, *latest, self.written)}",
                  file=self.stream or sys.stderr, flush=True)
            if stop.wait(self.every):
                return


Counts = tuple[dict[str, int], dict[str, int]]  # input rows finished and actors started, per stage
Snapshot = Callable[[float], Counts | None]  # the latest counts, waiting at most so many seconds; None: not yet


def _asking(counts: Any) -> Snapshot:
    """A `Snapshot` of a `StageCounts` actor: one question at a time, its answer taken when it has come."""
    import ray  # a run on Ray; this module serves in-process runs too

    asked = None

    def snapshot(timeout: float) -> Counts | None:
        nonlocal asked
        asked = asked or counts.snapshot.remote()
        if not ray.wait([asked], timeout=timeout)[0]:
            return None
        answer, asked = ray.get(asked), None
        return answer

    return snapshot


class LocalCounts:
    """What `StageCounts` holds, for a run in this process: the driver adds each batch a shown step finishes."""

    def __init__(self, shown: dict[int, str]) -> None:
        self.shown = shown
        # Every key exists from the start, so the printing thread's copy never meets a dict changing size.
        self.rows: dict[str, int] = dict.fromkeys(shown.values(), 0)
        self._lock = threading.Lock()  # the lanes of an in-process run add at once

    def add(self, step: int, batch: pa.Table) -> None:
        if step in self.shown:
            with self._lock:
                self.rows[self.shown[step]] += input_rows(batch)

    def snapshot(self) -> Counts:
        return dict(self.rows), dict.fromkeys(self.rows, 1)

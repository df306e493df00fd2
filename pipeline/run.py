"""A run from start to finish: checks, the up-to-date shortcut, the stages (in this process or on Ray), and the
run report; and `plan`, what a run would do.

Small embedded runs work in this process (`drain_in_process`, `ray.engine`): Ray's start-up and per-batch costs
would double their CPU. Larger ones, and any on a cluster, run the stages on Ray Data (`pipeline.graph`).
"""

from __future__ import annotations

import collections
import itertools
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from operators.dataset import tokens
from operators.ingest.index import LocalIndex, RunIndex
from operators.sandbox.client import Sandbox
from operators.stages.base import running_ray
from pipeline.card import CARD, write_card
from pipeline.config import RunConfig
from pipeline.console import interrupts_ignored, stderr_to_log
from pipeline.filing import Filing, Piece, table_of
from pipeline.html_report import write_html
from pipeline.progress import Progress, count_written, reported
from pipeline.report import Funnel, actors, narration_summary, placement, stage_timings, versions, write_report
from pipeline.sources import InputError, count_rows, input_bytes, input_files, input_size, iter_lines
from pipeline.stages import (
    LINES_PER_INGEST_BATCH,
    Step,
    ingest_step,
    limits,
    line_batches,
    run_local,
    sink_step,
    steps,
    through_local,
)
from pipeline.state import DoneIndex, count_done
from pipeline.storage import Location, ensure_writable, locate
from pipeline.tally import Tally, count

UNCHANGED = "(nothing ran: the output is up to date)"
DRIVER_CHECK_LIMIT = 1_000_000  # outputs up to this size are checked for "nothing to do" here, without Ray


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)



def drain_in_process(config: RunConfig, source: Location, stage_steps: list[Step], sink: Step, funnel: Funnel,
                     progress: Progress) -> None:
    """`drain` without Ray: the same steps in this process, a few input lines at a time, and the sink fed files of
    `sink.rows_per_file` rows as on Ray. Stage counts come from here, as they come from the actors on Ray.

    Ingest runs in this thread, in input order (it decides which of two equal calls is the repeat). The steps
    after it run in `ray.executors` lanes, threads with their own stages and sandbox each: a lane mostly waits on
    its sandbox's children, so the lanes keep as many CPUs busy as the executor actors would. Batches reach the
    sink in input order, so the records do not depend on which lane was faster."""
    writer = sink.stage(**sink.args)
    filing: Filing[pa.Table] = Filing(sink.batch_size, config.sink.flush_s)

    def write(pieces: list[Piece[pa.Table]]) -> None:
        count_written(writer(table_of(pieces)), funnel, progress)

    head = [step.stage(**step.args) for step in itertools.takewhile(lambda step: step.stage.name == "ingest",
                                                                     stage_steps)]
    lane = threading.local()

    def rest(batch: pa.Table) -> pa.Table:
        if not hasattr(lane, "stages"):
            lane.stages = [step.stage(**step.args) for step in stage_steps[len(head):]]
        return through_local(lane.stages, batch, counts.add, first=len(head))

    lines = itertools.islice(iter_lines(source), config.limit)
    # A stage whose state every row needs (`single_actor`) cannot be split between lanes.
    shared = any(step.stage.placement.single_actor for step in stage_steps[len(head):])
    lanes = ThreadPoolExecutor(1 if shared else config.ray.executors, thread_name_prefix="tracecot-lane")
    try:
        with progress.live_here(reported(stage_steps), input_size(config, source)) as counts:
            ingested = (through_local(head, batch, counts.add) for batch in line_batches(lines, LINES_PER_INGEST_BATCH))
            for batch in in_order(lanes, rest, ingested, ahead=2 * config.ray.executors):
                for pieces in filing.add(batch, batch.num_rows):
                    write(pieces)
                if filing.overdue():
                    write(filing.take())
            if filing.pieces:
                write(filing.take())
    finally:
        lanes.shutdown(cancel_futures=True)  # on Ctrl-C: the lanes finish the batch in hand, start no other


def in_order(pool: ThreadPoolExecutor, work: Callable[[pa.Table], pa.Table], items: Iterator[pa.Table],
             ahead: int) -> Iterator[pa.Table]:
    """`work(item)` of each item on `pool`, at most `ahead` at a time, the results in the items' order."""
    pending: collections.deque[Future[pa.Table]] = collections.deque()
    for item in items:
        pending.append(pool.submit(work, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def in_process(config: RunConfig, source: Location, already: int) -> bool:
    """Whether the run works in this process (`ray.engine`). "auto" does for an embedded run (no `ray.address`, no
    Ray already started in this process: that one is used) of the template narrator, whose input (the part
    `limit` reads, estimated by rows) is at most `ray.in_process_max_kb`, into an output of `already` rows, at
    most `DRIVER_CHECK_LIMIT` (this process loads their ids; on Ray the index shards do)."""
    if config.ray.engine != "auto":
        return config.ray.engine == "in-process"
    # A Ray job's driver (RAY_ADDRESS set) belongs on its cluster, and `executor_resource` asks that untrusted code
    # run only on the nodes that advertise it: neither runs here.
    if config.ray.address or os.environ.get("RAY_ADDRESS") or config.ray.executor_resource:
        return False
    if config.narrator.is_model or running_ray() or already > DRIVER_CHECK_LIMIT:
        return False
    size = input_bytes(source)
    rows = count_rows(source) if config.limit else None
    if rows:
        size = size * min(1.0, config.limit / rows)
    return size <= config.ray.in_process_max_kb * 1024


def up_to_date_tally(config: RunConfig, source: Location, index: RunIndex, mode: str) -> Tally | None:
    """The funnel of a run with nothing left to do, worked out in this process; None if there is work.

    This is the ingest stage run on the driver, so a rerun over an unchanged input needs no cluster at all
    (for outputs up to `DRIVER_CHECK_LIMIT` rows: their ids are loaded here).
    """
    ingest = [ingest_step(config, Path(source.path).name, index, mode)]
    tally = Tally()
    for batch in run_local(ingest, itertools.islice(iter_lines(source), config.limit)):
        rows = batch.to_pylist()
        if not all(row.get("skipped") for row in rows):
            return None
        tally.add(count(rows)[0])
    return tally



def run(config: RunConfig, progress: Progress | None = None, mode: str = "narrate") -> dict[str, Any]:
    """Run the job described by `config`; returns the run report (also written to `runs/<run_id>.json`, with
    `runs/<run_id>.html` beside it and the dataset card `README.md` at the output's root).

    `mode` "narrate" builds CoT from problems; "verify" checks CoT made elsewhere against real traces.
    A Ctrl-C stops the run: what the sink wrote stays (files are complete or absent), the report says
    "interrupted", and a rerun does the rest.
    """
    run_id = new_run_id()
    started = time.time()
    source, output = check_before_running(config)
    already = count_done(output)
    funnel = Funnel()
    status = "finished"
    up_to_date = up_to_date_tally(config, source, LocalIndex(DoneIndex(config.output, config.storage)), mode) \
        if 0 < already <= DRIVER_CHECK_LIMIT else None
    engine = "none"  # the output was up to date: no stage ran
    if up_to_date is not None:
        funnel.add(up_to_date)
        progress = progress or Progress()
    else:
        with stderr_to_log(output, run_id) as terminal:
            progress = progress or Progress(terminal)
            engine = "in-process" if in_process(config, source, already) else "ray"
            try:
                if engine == "in-process":
                    index = LocalIndex(DoneIndex(config.output, config.storage))
                    drain_in_process(config, source, steps(config, Path(source.path).name, index, mode),
                                     sink_step(config, run_id, index), funnel, progress)
                else:
                    from pipeline.graph import drain_on_ray  # imports Ray, which an in-process run does without

                    drain_on_ray(config, source, output, run_id, mode, funnel, progress)
            except KeyboardInterrupt:
                status = "interrupted"
    progress.record(funnel, force=True)
    with interrupts_ignored():
        return finish(config, output, run_id, mode, status, started, already, funnel, progress.timeline,
                      engine=engine)


def check_before_running(config: RunConfig) -> tuple[Location, Location]:
    """Input, output, tokenizer and sandbox are usable, or the run stops here with one clear error."""
    source = locate(config.input, config.storage)
    output = locate(config.output, config.storage)
    input_files(source)
    ensure_writable(output)
    tokens.load(config.tokenizer)  # a tokenizer that cannot load would reject every row as an internal error
    if not config.ray.address:
        Sandbox(limits(config), tuple(config.sandbox.require)).close()  # fail early where isolation is missing
    return source, output


def finish(config: RunConfig, output: Location, run_id: str, mode: str, status: str, started: float,
           already: int, funnel: Funnel, timeline: list[list[float]], engine: str) -> dict[str, Any]:
    """The run report (JSON and HTML) and the dataset card, written to the output. `engine`: where the stages ran
    ("ray" or "in-process"); a rerun with nothing to do ran none, changed nothing, writes its JSON report only and
    stays quick."""
    wall = time.time() - started
    ran = engine in ("ray", "in-process")
    report = {
        "run_id": run_id,
        "mode": mode,
        "status": status,
        "engine": engine,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": round(wall, 3),
        "fingerprint": config.fingerprint(),
        "config": config.as_dict(),
        "tokenizer": config.tokenizer,
        "versions": versions(),
        "funnel": funnel.as_dict(),
        "stage_busy_s": stage_timings(funnel),
        "narration": narration_summary(funnel.tally, config.narrator),
        "placement": placement(funnel.tally),
        "actors": actors(funnel.tally),
        "lengths": funnel.lengths(),
        "timeline": timeline,
        "records_per_s": round(funnel.tally.accepted / wall, 2),
        "already_done_at_start": already,
        "output": {"records": output.uri_of("records"), "rejected": output.uri_of("rejected"),
                   "card": output.uri_of(CARD), "report": output.uri_of("runs", f"{run_id}.json"),
                   "html": output.uri_of("runs", f"{run_id}.html"), "log": output.uri_of("runs", f"{run_id}.log")},
    }
    if ran:
        problem = write_card(output, report)
        if problem:
            report["output"]["card"] = f"(not written: {problem})"
    else:
        report["output"].update(html=UNCHANGED, log=UNCHANGED)
    write_report(output, run_id, report)
    if ran:
        write_html(output, run_id, report)
    report["summary"] = funnel.summary_lines()
    return report


def plan(config: RunConfig, mode: str = "narrate") -> list[str]:
    """What `run` would do, without doing it: the input read and sorted here (ingest on the driver, no Ray,
    no sandbox), the stages in order with their pools, and where the output goes."""
    source = locate(config.input, config.storage)
    output = locate(config.output, config.storage)
    files = input_files(source)
    tokens.load(config.tokenizer)
    already = count_done(output)
    # Up to DRIVER_CHECK_LIMIT rows the done ids are loaded here, as a run's up-to-date check does; beyond, only
    # a run's index shards hold them.
    checked = already <= DRIVER_CHECK_LIMIT
    index = LocalIndex(DoneIndex(config.output, config.storage)) if checked else LocalIndex()
    tally = Tally()
    ingest = ingest_step(config, Path(source.path).name, index, mode)
    try:
        for batch in run_local([ingest], itertools.islice(iter_lines(source), config.limit)):
            tally.add(count(batch.to_pylist())[0])
    except (OSError, pa.ArrowException) as err:  # a file that cannot be read at all (a run would fail on it too)
        raise InputError(f"cannot read input {source.uri}: {err}") from err
    rejected = sum(tally.rejected.values())
    where = f"the Ray cluster at {config.ray.address}" if config.ray.address else \
        "this process, without Ray (ray.engine)" if in_process(config, source, already) else \
        f"an embedded local Ray ({os.cpu_count()} CPUs)"
    lines = [f"input:    {source.uri} ({len(files)} file{'s' * (len(files) != 1)})",
             f"rows:     {tally.rows_read} → {tally.items} items ({', '.join(config.directions)})",
             f"done:     {tally.skipped} items already in the output (of {already} rows there), skipped" if checked
             else f"done:     not checked here: the output holds {already} rows, more ids than this machine loads "
                  f"({DRIVER_CHECK_LIMIT:,}); a run's index shards check them",
             f"rejected: {rejected} at ingest" + (f" ({', '.join(f'{r} {n}' for (_, r), n in tally.rejected.items())})"
                                                  if rejected else ""),
             f"to run:   {tally.items - tally.skipped - rejected} items on {where}",
             "stages:"]
    for step in [*steps(config, Path(source.path).name, index, mode), sink_step(config, "dry-run", index)]:
        low, high = (1, 1) if step.stage.placement.single_actor else step.actors
        pool = f"tasks ≤{high}" if step.stage.placement.tasks else f"actors {low}-{high}"
        extra = f", GPUs {step.gpus}" if step.gpus else ""
        extra += f", resources {step.resources}" if step.resources else ""
        lines.append(f"  {step.stage.__name__:18} {pool}, batch {step.batch_size}{extra}")
    lines += [f"output:   {output.uri} (fingerprint {config.fingerprint()}, tokenizer {config.tokenizer})",
              f"sandbox:  requires {', '.join(config.sandbox.require) or 'no layers'}; "
              "checked when the run starts"]
    return lines

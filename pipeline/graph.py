"""The Ray Data graph of a run, and the run itself: the stage list of `pipeline/stages.py` on Ray Data.

Each step becomes one `map_batches` over an actor pool: the stage's declared placement, sized by the config. The
sink is not one of them: the driver files finished blocks and runs a sink task per file (`pipeline.filing`).
CPU shares are fractional on purpose: on a small machine a read task plus full-CPU actor pools can wait on
each other forever.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import ray
import ray.data
from ray.data import ActorPoolStrategy

from operators.dataset import tokens
from operators.ingest.index import LocalIndex, RunIndex
from operators.sandbox.client import Sandbox
from operators.stages.base import Placement
from pipeline.card import CARD, write_card
from pipeline.config import ConfigError, RunConfig
from pipeline.filing import Block, Filing, Piece, SinkTasks, arrivals, table_of
from pipeline.html_report import write_html
from pipeline.progress import Progress, reported, reporting
from pipeline.report import Funnel, actors, narration_summary, placement, stage_timings, versions, write_report
from pipeline.sources import InputError, count_rows, input_bytes, input_files, iter_lines, read_problems
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
from pipeline.state import DoneIndex, count_done, sharded_index
from pipeline.storage import Location, ensure_writable, locate
from pipeline.tally import Tally, count

UNCHANGED = "(nothing ran: the output is up to date)"
DRIVER_CHECK_LIMIT = 1_000_000  # outputs up to this size are checked for "nothing to do" here, without Ray


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def read_input(config: RunConfig, source: Location) -> ray.data.Dataset:
    """The input rows (`pipeline.sources.read_problems`), the first `limit` of them when the config sets one.
    The dataset and every stage after it hand on blocks of at most `ray.max_block_kb`."""
    ray.data.DataContext.get_current().target_max_block_size = config.ray.max_block_kb * 1024
    ds = read_problems(source)
    return ds.limit(config.limit) if config.limit else ds


def input_size(config: RunConfig, source: Location) -> int | None:
    """How many input rows the run reads, when that is cheap to know: the input's size, or `limit` if smaller."""
    rows = count_rows(source)
    if config.limit and (rows is None or config.limit < rows):
        return config.limit
    return rows


def through(ds: ray.data.Dataset, stage_steps: list[Step], counts: Any) -> ray.data.Dataset:
    """`ds` through each step in order, each a `map_batches` over the actor pool its stage declares; the steps
    `pipeline.progress.reported` names report their progress to `counts`."""
    shown = reported(stage_steps)
    for i, step in enumerate(stage_steps):
        stage, args = step.stage, step.args
        if i in shown:
            stage, args = reporting(stage), {**args, "counts": counts}
        ds = ds.map_batches(stage, fn_constructor_kwargs=args, batch_format="pyarrow", batch_size=step.batch_size,
                            **ray_options(step))
    return ds


def drain(config: RunConfig, source: Location, stage_steps: list[Step], sink: Step, funnel: Funnel,
          progress: Progress) -> None:
    """Run the input through the steps to the end and file what comes out: sink tasks write each file
    (`pipeline.filing`), and each file's tally joins the funnel as it arrives, with the stages' live progress
    printed meanwhile (`pipeline/progress.py`)."""
    filing: Filing[Block] = Filing(sink.batch_size, config.sink.flush_s)
    writers = SinkTasks(sink)

    def tallied(outputs: Iterator[pa.Table]) -> None:
        for output in outputs:
            count_written(output, funnel, progress)

    with progress.live(list(reported(stage_steps).values()), input_size(config, source)) as counts:
        dataset = through(read_input(config, source), stage_steps, counts)
        # Closed on the way out, whatever the way: the reader thread and the executor it reads from stop here,
        # before the driver shuts Ray down (pipeline.filing.arrivals).
        with contextlib.closing(arrivals(dataset.iter_internal_ref_bundles, filing.wait_s)) as bundles:
            for bundle in bundles:
                for entry, span in zip(bundle.blocks, bundle.slices, strict=True) if bundle else ():
                    block = Block(entry.ref, entry.metadata.num_rows, span.start_offset if span else 0)
                    for pieces in filing.add(block, span.num_rows if span else block.rows):
                        tallied(writers.write(pieces))
                tallied(writers.finished())
                if filing.overdue():
                    tallied(writers.write(filing.take()))
        if filing.pieces:
            tallied(writers.write(filing.take()))
        tallied(writers.drain())


def count_written(output: pa.Table, funnel: Funnel, progress: Progress) -> None:
    """A sink's output (one tally per file) into the funnel, and the progress line told."""
    for tally in output.column("tally").to_pylist():
        funnel.add(Tally.from_json(tally))
    progress.record(funnel)


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
    if config.narrator.is_model or ray.is_initialized() or already > DRIVER_CHECK_LIMIT:
        return False
    size = input_bytes(source)
    rows = count_rows(source) if config.limit else None
    if rows:
        size = size * min(1.0, config.limit / rows)
    return size <= config.ray.in_process_max_kb * 1024


def ray_options(step: Step) -> dict[str, Any]:
    """The actor pool and resources of a step: what the stage declares, sized by what the config says."""
    placement: Placement = step.stage.placement
    low, high = (1, 1) if placement.single_actor else step.actors
    in_flight = {"max_tasks_in_flight_per_actor": step.tasks_in_flight} if step.tasks_in_flight else {}
    options: dict[str, Any] = {"num_cpus": placement.cpus if step.cpus is None else step.cpus}
    options["compute"] = ActorPoolStrategy(min_size=low, max_size=high, **in_flight)
    if step.gpus:
        options["num_gpus"] = step.gpus
    if step.resources:
        options["resources"] = step.resources
    return options


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


def start_ray(address: str | None) -> bool:
    """Join the cluster at `address`, reuse a Ray already started in this process, or start a local one.

    Returns True when this call started Ray (so the run that asked should stop it)."""
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            # Ray starts local workers niced (15); beside any other CPU load they then starve (MBPP, 300 rows:
            # 27 s quiet, 475 s beside two spinning processes). Ray's own job manager runs jobs' workers at 0.
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING,
                     configure_logging=True)
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # tracecot prints its own progress and funnel
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    return started


def stop_ray() -> None:
    """Shut Ray down with Ctrl-C ignored: an interrupt inside Ray's shutdown crashes the interpreter."""
    with interrupts_ignored():
        ray.shutdown()


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def stderr_to_log(output: Location, run_id: str) -> Iterator[TextIO]:
    """What this process writes to its stderr while the block runs goes to `runs/<run_id>.log` in the output:
    Ray's start-up warnings, its C++ core-worker lines and the log lines its workers forward. Yields a stream
    to the real stderr for tracecot's own progress lines."""
    sys.stderr.flush()
    terminal_fd = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        terminal = os.fdopen(os.dup(terminal_fd), "w", buffering=1)
        try:
            yield terminal
        finally:
            sys.stderr.flush()
            os.dup2(terminal_fd, 2)
            os.close(terminal_fd)
            terminal.close()
            log.seek(0)
            output.write_bytes(log.read(), "runs", f"{run_id}.log")


def refuse_unshared_output(config: RunConfig, output: Location) -> None:
    """A local output path on a multi-node cluster would scatter records over the nodes' own disks."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) > 1 and output.is_local and not config.storage.shared_filesystem:
        raise ConfigError(f"output {config.output} is a local path but the Ray cluster has {len(nodes)} nodes: "
                          "write to object storage (s3://…) or set storage.shared_filesystem: true for a path "
                          "every node mounts")


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
            ray_started = False
            engine = "in-process" if in_process(config, source, already) else "ray"
            try:
                if engine == "in-process":
                    index = LocalIndex(DoneIndex(config.output, config.storage))
                    drain_in_process(config, source, steps(config, Path(source.path).name, index, mode),
                                     sink_step(config, run_id, index), funnel, progress)
                else:
                    ray_started = start_ray(config.ray.address)
                    refuse_unshared_output(config, output)
                    # The index shards load the output's done ids, each its slice; not the driver (pipeline/state.py).
                    with sharded_index(config.output, config.storage, config.ingest.shards) as index:
                        drain(config, source, steps(config, Path(source.path).name, index, mode),
                              sink_step(config, run_id, index), funnel, progress)
            except KeyboardInterrupt:
                status = "interrupted"
            finally:
                if ray_started:
                    stop_ray()
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

"""The Ray Data graph of a run, and the run itself: the stage list of `pipeline/stages.py` on Ray Data.

Each step becomes one `map_batches` over an actor pool: the stage's declared placement, sized by the config.
CPU shares are fractional on purpose: on a small machine a read task plus full-CPU actor pools can wait on
each other forever.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import time
from collections.abc import Container
from pathlib import Path
from typing import Any

import ray
import ray.data
from ray.data import ActorPoolStrategy

from operators.sandbox.client import Sandbox
from operators.stages.base import Placement
from pipeline.config import ConfigError, RunConfig
from pipeline.report import Funnel, Progress, narration_summary, placement, stage_timings, versions, write_report
from pipeline.sources import input_files, iter_lines, read_problems
from pipeline.stages import Step, ingest_step, limits, run_local, sink_step, steps
from pipeline.state import DoneIndex, count_done
from pipeline.storage import Location, ensure_writable, locate
from pipeline.tally import Tally, count

DRIVER_CHECK_LIMIT = 1_000_000  # outputs up to this size are checked for "nothing to do" here, without Ray


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def build(config: RunConfig, source: Location, run_id: str, done: Container[str],
          mode: str = "narrate") -> ray.data.Dataset:
    """read → the run's stages (`pipeline/stages.py`) → Parquet sink, as one Ray Data dataset."""
    ds = read_problems(source)
    if config.limit:
        ds = ds.limit(config.limit)
    for step in [*steps(config, Path(source.path).name, done, mode), sink_step(config, run_id)]:
        ds = ds.map_batches(step.stage, batch_format="pyarrow", batch_size=step.batch_size,
                            fn_constructor_kwargs=step.args, **ray_options(step))
    return ds


def ray_options(step: Step) -> dict[str, Any]:
    """The actor pool and resources of a step: what the stage declares, sized by what the config says."""
    placement: Placement = step.stage.placement
    low, high = (1, 1) if placement.single_actor else step.actors
    in_flight = {"max_tasks_in_flight_per_actor": step.tasks_in_flight} if step.tasks_in_flight else {}
    options: dict[str, Any] = {"num_cpus": placement.cpus if step.cpus is None else step.cpus,
                               "compute": ActorPoolStrategy(min_size=low, max_size=high, **in_flight)}
    if step.gpus:
        options["num_gpus"] = step.gpus
    if step.resources:
        options["resources"] = step.resources
    return options


def up_to_date_tally(config: RunConfig, source: Location, done: Container[str], mode: str) -> Tally | None:
    """The funnel of a run with nothing left to do, worked out in this process; None if there is work.

    This is the ingest stage run on the driver, so a rerun over an unchanged input needs no cluster at all.
    """
    ingest = [ingest_step(config, Path(source.path).name, done, mode)]
    tally = Tally()
    for batch in run_local(ingest, itertools.islice(iter_lines(source), config.limit)):
        rows = batch.to_pylist()
        if not all(row.get("skipped") for row in rows):
            return None
        tally.add(count(rows)[0])
    return tally


def start_ray(address: str | None) -> None:
    """Join the cluster at `address`, reuse a Ray already started in this process, or start a local one."""
    if not ray.is_initialized():
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


def refuse_unshared_output(config: RunConfig, output: Location) -> None:
    """A local output path on a multi-node cluster would scatter records over the nodes' own disks."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) > 1 and output.is_local and not config.storage.shared_filesystem:
        raise ConfigError(f"output {config.output} is a local path but the Ray cluster has {len(nodes)} nodes: "
                          "write to object storage (s3://…) or set storage.shared_filesystem: true for a path "
                          "every node mounts")


def run(config: RunConfig, progress: Progress | None = None, mode: str = "narrate") -> dict[str, Any]:
    """Run the job described by `config`; returns the run report (also written to `runs/<run_id>.json`).

    `mode` "narrate" builds CoT from problems; "verify" checks CoT made elsewhere against real traces.
    """
    run_id = new_run_id()
    started = time.time()
    source = locate(config.input, config.storage)
    output = locate(config.output, config.storage)
    input_files(source)
    ensure_writable(output)
    if not config.ray.address:
        Sandbox(limits(config), tuple(config.sandbox.require)).close()  # fail early where isolation is missing
    already = count_done(output)
    done = DoneIndex(config.output, config.storage)  # loaded by the ingest actor, not here (see pipeline/state.py)
    funnel = Funnel()
    up_to_date = up_to_date_tally(config, source, done, mode) if 0 < already <= DRIVER_CHECK_LIMIT else None
    if up_to_date is not None:
        funnel.add(up_to_date)
    else:
        start_ray(config.ray.address)
        refuse_unshared_output(config, output)
        progress = progress or Progress()
        batches = build(config, source, run_id, done, mode).iter_batches(batch_size=None, batch_format="pyarrow")
        for batch in batches:
            for tally in batch.column("tally").to_pylist():
                funnel.add(Tally.from_json(tally))
            progress.update(funnel)
    wall = time.time() - started
    report = {
        "run_id": run_id,
        "mode": mode,
        "status": "finished",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": round(wall, 3),
        "fingerprint": config.fingerprint(),
        "config": config.as_dict(),
        "versions": versions(),
        "funnel": funnel.as_dict(),
        "stage_busy_s": stage_timings(funnel),
        "narration": narration_summary(funnel.tally, config.narrator),
        "placement": placement(funnel.tally),
        "records_per_s": round(funnel.tally.accepted / wall, 2),
        "already_done_at_start": already,
        "output": {"records": output.uri_of("records"), "rejected": output.uri_of("rejected"),
                   "report": output.uri_of("runs", f"{run_id}.json")},
    }
    write_report(output, run_id, report)
    report["summary"] = funnel.summary_lines()
    return report

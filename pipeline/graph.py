"""The run on Ray Data: the stage list of `pipeline/stages.py` as a graph of actor pools.

Each step becomes one `map_batches` over an actor pool: the stage's declared placement, sized by the config. The
sink is not one of them: the driver files finished blocks and runs a sink task per file (`pipeline.filing`).
CPU shares are fractional on purpose: on a small machine a read task plus full-CPU actor pools can wait on
each other forever. Only runs on Ray import this module (and so Ray): an in-process run (`pipeline.run`) does
without the second it costs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
import ray.data
from ray.data import ActorPoolStrategy

from operators.stages.base import Placement
from pipeline.config import ConfigError, RunConfig
from pipeline.console import interrupts_ignored
from pipeline.datasources import read_problems
from pipeline.filing import Block, Filing, SinkTasks, arrivals
from pipeline.progress import Progress, count_written, reported, reporting
from pipeline.report import Funnel
from pipeline.sources import input_size
from pipeline.stages import Step, sink_step, steps
from pipeline.state import sharded_index
from pipeline.storage import Location


def drain_on_ray(config: RunConfig, source: Location, output: Location, run_id: str, mode: str, funnel: Funnel,
                 progress: Progress) -> None:
    """The run's stages on Ray: the cluster at `ray.address`, a Ray already up in this process, or a local one
    started here and stopped after."""
    ray_started = start_ray(config.ray.address)
    try:
        refuse_unshared_output(config, output)
        # The index shards load the output's done ids, each its slice; not the driver (pipeline/state.py).
        with sharded_index(config.output, config.storage, config.ingest.shards) as index:
            drain(config, source, steps(config, Path(source.path).name, index, mode),
                  sink_step(config, run_id, index), funnel, progress)
    finally:
        if ray_started:
            stop_ray()


def read_input(config: RunConfig, source: Location) -> ray.data.Dataset:
    """The input rows (`pipeline.sources.read_problems`), the first `limit` of them when the config sets one.
    The dataset and every stage after it hand on blocks of at most `ray.max_block_kb`."""
    ray.data.DataContext.get_current().target_max_block_size = config.ray.max_block_kb * 1024
    ds = read_problems(source)
    return ds.limit(config.limit) if config.limit else ds



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



def refuse_unshared_output(config: RunConfig, output: Location) -> None:
    """A local output path on a multi-node cluster would scatter records over the nodes' own disks."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) > 1 and output.is_local and not config.storage.shared_filesystem:
        raise ConfigError(f"output {config.output} is a local path but the Ray cluster has {len(nodes)} nodes: "
                          "write to object storage (s3://…) or set storage.shared_filesystem: true for a path "
                          "every node mounts")



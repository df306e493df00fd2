"""The Ray Data graph of a run: read → ingest → execute → narrate → verify → Parquet sink.

Resource requests live here, where each stage is built. CPU shares are fractional on purpose: on a small
machine a read task plus full-CPU actor pools can wait on each other forever.
"""

from __future__ import annotations

import json
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

from operators.ingest.decontam import parse_against
from operators.llm.backends import Sampling, Secret
from operators.sandbox.client import Limits, Sandbox
from operators.stages.decontam import DecontamStage
from operators.stages.execute import Executor
from operators.stages.ingest import LineParser, ParseNarrations, ParseProblems
from operators.stages.model_narrate import ModelNarrateStage
from operators.stages.narrate import NarrateStage
from operators.stages.verify import VerifyStage
from pipeline.config import ConfigError, RunConfig
from pipeline.report import Funnel, Progress, narration_summary, placement, stage_timings, versions, write_report
from pipeline.sinks import ParquetSink, count
from pipeline.sources import input_files, iter_lines, read_problems
from pipeline.state import DoneIndex, count_done
from pipeline.storage import Location, ensure_writable, locate

SINK_BATCH = 256
DRIVER_CHECK_LIMIT = 1_000_000  # outputs up to this size are checked for "nothing to do" here, without Ray


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def limits(config: RunConfig) -> Limits:
    sandbox = config.sandbox
    return Limits(timeout_s=sandbox.timeout_s, memory_mb=sandbox.memory_mb, runs=sandbox.runs,
                  seed_order_runs=sandbox.seed_order_runs, jobs_per_child=sandbox.jobs_per_child,
                  max_tasks=sandbox.max_tasks)


def ingest_stage(config: RunConfig, source: Location, done: Container[str],
                 mode: str) -> tuple[type[LineParser], dict[str, Any]]:
    """The first stage and its settings: problems to narrate (`run`) or narrations to check (`verify`)."""
    name = Path(source.path).name
    if mode == "verify":
        return ParseNarrations, {"source": name, "fingerprint": config.fingerprint(), "done": done}
    return ParseProblems, {"fmt": None if config.format == "auto" else config.format, "source": name,
                           "fingerprint": config.fingerprint(), "directions": tuple(config.directions),
                           "done": done, "samples": config.narrator.samples}


def build(config: RunConfig, source: Location, run_id: str, done: Container[str],
          mode: str = "narrate") -> ray.data.Dataset:
    require = tuple(config.sandbox.require)
    pool = config.ray.executors
    ds = read_problems(source)
    if config.limit:
        ds = ds.limit(config.limit)
    ingest, settings = ingest_stage(config, source, done, mode)
    ds = ds.map_batches(ingest, batch_format="pyarrow", batch_size=64, num_cpus=0.1,
                        compute=ActorPoolStrategy(min_size=1, max_size=1), fn_constructor_kwargs=settings)
    if config.decontam.against:
        ds = ds.map_batches(DecontamStage, batch_format="pyarrow", batch_size=64, num_cpus=0.1,
                            compute=ActorPoolStrategy(min_size=1, max_size=1),
                            fn_constructor_kwargs={"against": parse_against(config.decontam.against),
                                                   "n": config.decontam.ngram,
                                                   "threshold": config.decontam.threshold})
    # Executors (and the verifier, which runs backward answers) go where CPUs are, or on the nodes that
    # advertise `ray.executor_resource`.
    on_executors = {"resources": {config.ray.executor_resource: 1}} if config.ray.executor_resource else {}
    ds = ds.map_batches(Executor, batch_format="pyarrow", batch_size=config.ray.batch_size, num_cpus=0.5,
                        compute=ActorPoolStrategy(min_size=1, max_size=pool), **on_executors,
                        fn_constructor_kwargs={"limits": limits(config), "require": require,
                                               "max_events": config.tracer.max_events,
                                               "max_value_len": config.tracer.max_value_len})
    if mode == "narrate":
        ds = narrate_step(ds, config)
    ds = ds.map_batches(VerifyStage, batch_format="pyarrow", batch_size=config.ray.batch_size, num_cpus=0.25,
                        compute=ActorPoolStrategy(min_size=1, max_size=pool), **on_executors,
                        fn_constructor_kwargs={"min_coverage": config.verifier.min_coverage,
                                               "min_claims": config.verifier.min_claims,
                                               "full_iterations": config.narrator.full_iterations,
                                               "limits": limits(config), "require": require})
    return ds.map_batches(ParquetSink, batch_format="pyarrow", batch_size=SINK_BATCH, num_cpus=0.1,
                          compute=ActorPoolStrategy(min_size=1, max_size=1),
                          fn_constructor_kwargs={"output": config.output, "storage": config.storage,
                                                 "run_id": run_id})


def narrate_step(ds: ray.data.Dataset, config: RunConfig) -> ray.data.Dataset:
    """The narrator: template actors on CPU, or a pool of model actors placed where the config says."""
    narrator = config.narrator
    actors = narrator.actors
    on_narrators = {"resources": {actors.resource: 1}} if actors.resource else {}
    if not narrator.is_model:
        return ds.map_batches(NarrateStage, batch_format="pyarrow", batch_size=config.ray.batch_size,
                              num_cpus=0.1, compute=ActorPoolStrategy(min_size=1, max_size=config.ray.executors),
                              fn_constructor_kwargs={"full_iterations": narrator.full_iterations}, **on_narrators)
    placement: dict[str, Any] = {"num_cpus": actors.cpus, "num_gpus": actors.gpus, **on_narrators}
    options = narrator.backend_options()
    key = os.environ.get(narrator.openai.api_key_env)
    if narrator.name == "openai" and key:
        # Workers may have started before the key was set, and may run on other nodes: the key travels
        # through the object store, never in a runtime environment (Ray logs those).
        options["api_key"] = Secret(key)
    sampling = Sampling(narrator.max_tokens, narrator.temperature, narrator.top_p, narrator.seed)
    return ds.map_batches(
        ModelNarrateStage, batch_format="pyarrow", batch_size=narrator.batch_size,
        compute=ActorPoolStrategy(min_size=actors.min, max_size=actors.max,
                                  max_tasks_in_flight_per_actor=actors.batches_in_flight), **placement,
        fn_constructor_kwargs={
            "backend": narrator.name, "model": narrator.content()["model"], "sampling": sampling,
            "options": options, "retries": narrator.retries, "timeout_s": narrator.timeout_s,
            "prompt_budget_chars": narrator.prompt_budget_chars, "min_coverage": config.verifier.min_coverage,
            "min_claims": config.verifier.min_claims, "full_iterations": narrator.full_iterations})


def up_to_date_tally(config: RunConfig, source: Location, done: Container[str], mode: str) -> dict[str, float] | None:
    """The funnel of a run with nothing left to do, worked out in this process; None if there is work.

    This is the ingest stage run on the driver, so a rerun over an unchanged input needs no cluster at all.
    """
    ingest_class, settings = ingest_stage(config, source, done, mode)
    ingest = ingest_class(**settings)
    rows = []
    for number, line in enumerate(iter_lines(source)):
        if config.limit and number >= config.limit:
            break
        for row in ingest.parse_guarded(line):
            if not row.get("skipped"):
                return None
            rows.append(row)
    return count(rows)[0]


def start_ray(address: str | None) -> None:
    """Join the cluster at `address`, reuse a Ray already started in this process, or start a local one."""
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
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
                funnel.add(json.loads(tally))
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
        "records_per_s": round(funnel.tally["accepted"] / wall, 2),
        "already_done_at_start": already,
        "output": {"records": output.uri_of("records"), "rejected": output.uri_of("rejected"),
                   "report": output.uri_of("runs", f"{run_id}.json")},
    }
    write_report(output, run_id, report)
    report["summary"] = funnel.summary_lines()
    return report

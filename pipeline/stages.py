"""The stages of a run, in dataflow order, as records: which stage, its arguments, its batch and its pool.

    ingest → [decontam] → execute → narrate (template or model; not in `verify` mode) → verify
    → training columns → Parquet sink

`pipeline/graph.py` builds the Ray Data graph from this list; `run_local` and `pipeline.run.drain_in_process` run
the same list in this process, without Ray (small runs, the up-to-date check of a rerun, the benches, tests). A
stage declares its own placement policy (`operators.stages.base.Placement`: single actor, CPUs, executor nodes);
a step adds what the config decides.
Ingest and the sink share the run index (`operators.ingest.index`): sharded actors on Ray, in this process here.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from operators.ingest.index import RunIndex
from operators.llm.backends import Sampling, Secret
from operators.sandbox.client import Limits
from operators.stages.decontam import DecontamStage
from operators.stages.execute import Executor
from operators.stages.export import TrainingColumns
from operators.stages.ingest import ParseNarrations, ParseProblems
from operators.stages.model_narrate import ModelNarrateStage
from operators.stages.narrate import NarrateStage
from operators.stages.verify import VerifyStage
from pipeline.config import RunConfig
from pipeline.decontaminate import read_benchmarks
from pipeline.sinks import ParquetSink

LINES_PER_BATCH = 64
# Ingest reads few lines at a time. Ray Data hands a whole block to one actor, and a batch of input lines becomes
# one block of every call the lines hold (an MBPP+ line holds ~100): small ingest batches spread the calls of a
# large input over the executor pool, and a slow call holds up fewer others.
LINES_PER_INGEST_BATCH = 8


@dataclass(frozen=True)
class Step:
    """One stage of the graph as the config sets it up; the stage class declares the rest (`placement`)."""

    stage: type
    args: dict[str, Any]
    batch_size: int
    actors: tuple[int, int] = (1, 1)  # pool size, min and max (equal: a fixed pool); a single-actor stage gets (1, 1)
    cpus: float | None = None  # per actor, when the config decides it rather than the stage
    gpus: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources each actor needs
    tasks_in_flight: int | None = None  # batches queued per actor (model narrators keep their engine busy)


def limits(config: RunConfig) -> Limits:
    sandbox = config.sandbox
    return Limits(timeout_s=sandbox.timeout_s, wall_timeout_s=sandbox.wall_timeout_s, memory_mb=sandbox.memory_mb,
                  runs=sandbox.runs, seed_order_runs=sandbox.seed_order_runs, jobs_per_child=sandbox.jobs_per_child,
                  max_tasks=sandbox.max_tasks)


def steps(config: RunConfig, source: str, index: RunIndex, mode: str = "narrate") -> list[Step]:
    """The run's processing stages in order (the sink comes after them: `sink_step`).

    `mode` "narrate" builds CoT from problems; "verify" checks CoT made elsewhere (`source` names the input).
    `index` is what ingest asks which items are done and which calls are repeats.
    """
    pool = (config.ray.min_executors, config.ray.executors)
    # Executors (and the verifier, which runs backward answers) go where CPUs are, or on the nodes that
    # advertise `ray.executor_resource`.
    on_executors = {config.ray.executor_resource: 1.0} if config.ray.executor_resource else {}
    sandbox = {"limits": limits(config), "require": tuple(config.sandbox.require)}
    out = [ingest_step(config, source, index, mode)]
    if config.decontam.against:  # each actor holds the benchmarks' index: they are small
        out.append(Step(DecontamStage, {"benchmarks": read_benchmarks(config.decontam.against),
                                        "n": config.decontam.ngram, "threshold": config.decontam.threshold},
                        config.ray.batch_size, (config.ingest.actors, config.ingest.actors)))
    out.append(Step(Executor, {**sandbox, "max_events": config.tracer.max_events,
                               "max_value_len": config.tracer.max_value_len},
                    config.ray.batch_size, pool, resources=on_executors))
    if mode == "narrate":
        out.append(narrate_step(config))
    out.append(Step(VerifyStage, {**sandbox, **verifier_args(config)},
                    config.ray.batch_size, pool, resources=on_executors))
    out.append(Step(TrainingColumns, {"tokenizer": config.tokenizer, "max_tokens": config.export.max_tokens},
                    LINES_PER_BATCH, (config.sink.actors, config.sink.actors)))
    return out


def ingest_step(config: RunConfig, source: str, index: RunIndex, mode: str) -> Step:
    """Problems to narrate (`narrate`) or narrations to check (`verify`), from raw input lines: a fixed pool."""
    pool = (config.ingest.actors, config.ingest.actors)
    if mode == "verify":
        return Step(ParseNarrations, {"source": source, "fingerprint": config.fingerprint(), "index": index},
                    LINES_PER_INGEST_BATCH, pool)
    return Step(ParseProblems, {"fmt": None if config.format == "auto" else config.format, "source": source,
                                "fingerprint": config.fingerprint(), "directions": tuple(config.directions),
                                "index": index, "samples": config.narrator.samples}, LINES_PER_INGEST_BATCH, pool)


def narrate_step(config: RunConfig) -> Step:
    """The narrator: template actors on CPU, or a pool of model actors placed where the config says."""
    narrator = config.narrator
    actors = narrator.actors
    on_narrators = {actors.resource: 1.0} if actors.resource else {}
    if not narrator.is_model:
        return Step(NarrateStage, {"full_iterations": narrator.full_iterations}, config.ray.batch_size,
                    (config.ray.min_executors, config.ray.executors), resources=on_narrators)
    options = narrator.backend_options()
    key = os.environ.get(narrator.openai.api_key_env)
    if narrator.name == "openai" and key:
        # Workers may have started before the key was set, and may run on other nodes: the key travels
        # through the object store, never in a runtime environment (Ray logs those).
        options["api_key"] = Secret(key)
    sampling = Sampling(narrator.max_tokens, narrator.temperature, narrator.top_p, narrator.seed)
    return Step(ModelNarrateStage, {
        "backend": narrator.name, "model": narrator.content()["model"], "sampling": sampling, "options": options,
        "retries": narrator.retries, "timeout_s": narrator.timeout_s,
        "prompt_budget_chars": narrator.prompt_budget_chars, **verifier_args(config)},
        narrator.batch_size, (actors.min, actors.max), cpus=actors.cpus, gpus=actors.gpus, resources=on_narrators,
        tasks_in_flight=actors.batches_in_flight)


def verifier_args(config: RunConfig) -> dict[str, Any]:
    """How the verify stage and the model narrators (which verify to retry) check a CoT."""
    return {"min_coverage": config.verifier.min_coverage, "min_claims": config.verifier.min_claims,
            "strict": config.verifier.strict, "full_iterations": config.narrator.full_iterations}


def sink_step(config: RunConfig, run_id: str, index: RunIndex, **args: Any) -> Step:
    """The Parquet writer: on Ray a task per file, at most `sink.actors` at once (`pipeline.filing.SinkTasks`),
    each given `sink.rows_per_file` rows to write (per folder); `args` are further `ParquetSink` arguments
    (synthesis: its folder and schemas)."""
    return Step(ParquetSink, {"output": config.output, "storage": config.storage, "run_id": run_id, "index": index,
                              **args}, config.sink.rows_per_file, (config.sink.actors, config.sink.actors))


Finished = Callable[[int, pa.Table], None]  # told of each batch step i has just finished (the batch as it came in)


def run_local(stage_steps: Sequence[Step], lines: Iterable[str], lines_per_batch: int = LINES_PER_BATCH,
              finished: Finished | None = None) -> Iterator[pa.Table]:
    """The same stages in this process, no Ray: each batch of input lines through every stage in order."""
    stages = [step.stage(**step.args) for step in stage_steps]
    for batch in line_batches(lines, lines_per_batch):
        yield through_local(stages, batch, finished)


def line_batches(lines: Iterable[str], lines_per_batch: int) -> Iterator[pa.Table]:
    """Input lines as the first stage takes them: tables of one `text` column."""
    lines = iter(lines)
    while chunk := list(itertools.islice(lines, lines_per_batch)):
        yield pa.table({"text": pa.array(chunk, pa.string())})


def through_local(stages: Sequence[Any], batch: pa.Table, finished: Finished | None = None, first: int = 0) -> pa.Table:
    """`batch` through made stages in order; `first` is the position of the first of them in the stage list."""
    for i, stage in enumerate(stages, first):
        batch, before = stage(batch), batch
        if finished:
            finished(i, before)
    return batch

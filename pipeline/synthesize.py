"""New problems, kept only when execution agrees on them: `tracecot agree` and `tracecot synthesize`.

    agree:       candidates → execute all pairs → dual agreement → dedup → Parquet sink
    synthesize:  seeds → concepts → instructions → solutions and tests → (the same four stages)

The output is `<output>/problems/` (the generic input format plus provenance, which `tracecot run` reads as it
is), `<output>/rejected/` (every candidate set or generation not kept, with the reason) and
`<output>/runs/<id>.json`. Like a run, it is incremental: a rerun skips what the output already holds under
the same fingerprint. Built on the same parts as a run (`pipeline/graph.py`): stage records, actor pools,
the sink, the funnel.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads

from operators.ingest.index import RunIndex
from operators.llm.backends import Sampling, Secret
from operators.records import PROBLEM_SCHEMA, SYNTH_REJECT_SCHEMA
from operators.stages.agree import Agree, Dedup, ExecutePairs, ParseCandidates
from operators.stages.synthesize import Generate, ParseSeeds
from pipeline.config import NarratorConfig, RunConfig
from pipeline.console import stderr_to_log
from pipeline.decontaminate import read_benchmarks
from pipeline.graph import drain, start_ray, stop_ray
from pipeline.html_report import write_html
from pipeline.progress import Progress
from pipeline.report import Funnel, stage_timings, versions, write_report
from pipeline.sources import input_files
from pipeline.stages import LINES_PER_BATCH, Step, limits
from pipeline.stages import sink_step as run_sink_step
from pipeline.state import count_done, sharded_index
from pipeline.storage import Location, ensure_writable, locate

PROBLEMS = "problems"
SINK_ROWS = 256  # model-made problems come slowly: written every few hundred, not held for a run's worth of files
FOLDERS = (PROBLEMS, "rejected")
STAGES = {"agree": ("ingest", "execute", "agree", "dedup"),
          "synthesize": ("ingest", "generate", "execute", "agree", "dedup")}
NAMES = {"agree": ("read", "executed", "agreed", "kept"),
         "synthesize": ("read", "generated", "executed", "agreed", "kept")}


class KeptProblems:
    """The (id, code) of every problem an output already holds, read where it is first iterated (the dedup
    actor), so the driver ships an address rather than the problems."""

    def __init__(self, output: str, config: RunConfig) -> None:
        self.output = output
        self.storage = config.storage

    def __iter__(self) -> Iterator[tuple[str, str]]:
        location = locate(self.output, self.storage)
        if count_done(location, (PROBLEMS,)) == 0:
            return
        dataset = pads.dataset(location.join(PROBLEMS), filesystem=location.fs, format="parquet",
                               schema=PROBLEM_SCHEMA)
        for batch in dataset.to_batches(columns=["id", "code"]):
            yield from zip(batch.column("id").to_pylist(), batch.column("code").to_pylist(), strict=True)


def steps(config: RunConfig, mode: str, source: str, index: RunIndex) -> list[Step]:
    """The stages of `agree` or `synthesize`, in order (the sink comes after them)."""
    fingerprint = config.synth_fingerprint(model=mode == "synthesize")
    synth = config.synth
    on_executors = {config.ray.executor_resource: 1.0} if config.ray.executor_resource else {}
    pool = (1, config.ray.executors)
    sandbox = {"limits": limits(config), "require": tuple(config.sandbox.require)}
    if mode == "agree":
        first = [Step(ParseCandidates, {"source": source, "fingerprint": fingerprint, "index": index,
                                        "max_pairs": synth.max_pairs}, LINES_PER_BATCH, pool)]
    else:
        first = [Step(ParseSeeds, {"source": source, "fingerprint": fingerprint, "index": index}, LINES_PER_BATCH,
                      pool),
                 generate_step(config)]
    return [*first,
            # a candidate set is n x m programs: smaller batches keep the pool's actors evenly busy
            Step(ExecutePairs, {**sandbox, "row_seconds": synth.max_row_seconds}, max(1, config.ray.batch_size // 4),
                 pool, resources=on_executors),
            Step(Agree, {"min_tests": synth.min_tests, "min_solutions": synth.min_solutions, "ties": synth.ties,
                         "near_duplicate": synth.dedup_threshold}, LINES_PER_BATCH),
            Step(Dedup, {"threshold": synth.dedup_threshold,
                         "benchmarks": read_benchmarks(config.decontam.against) if config.decontam.against else {},
                         "kept": KeptProblems(config.output, config)}, LINES_PER_BATCH)]


def generate_step(config: RunConfig) -> Step:
    """The model stage of `synthesize`: a pool of model actors placed as the narrator's are (same settings)."""
    narrator = config.narrator
    options = narrator.backend_options()
    key = os.environ.get(narrator.openai.api_key_env)
    if narrator.name == "openai" and key:
        options["api_key"] = Secret(key)  # through the object store, never a runtime environment (see stages.py)
    synth = config.synth
    actors = narrator.actors
    return Step(Generate, {
        "backend": narrator.name, "model": narrator.content()["model"], "options": options,
        "sampling": Sampling(narrator.max_tokens, narrator.temperature, narrator.top_p, narrator.seed),
        "concepts": synth.concepts, "instructions": synth.instructions, "solutions": synth.solutions,
        "test_generations": synth.test_generations, "max_pairs": synth.max_pairs,
        "difficulties": tuple(synth.difficulties)},
        narrator.batch_size, (actors.min, actors.max), cpus=actors.cpus, gpus=actors.gpus,
        resources={actors.resource: 1.0} if actors.resource else {}, tasks_in_flight=actors.batches_in_flight)


def run(config: RunConfig, mode: str, progress: Progress | None = None, keep_ray: bool = False) -> dict[str, Any]:
    """Run `agree` or `synthesize` as described by `config`; returns the report (also in `runs/<id>.json`).
    `keep_ray` leaves a Ray this run started running, for a next step in the same session (`--trace`)."""
    from pipeline.run import new_run_id

    run_id = new_run_id()
    started = time.time()
    source, output = check_before_running(config)
    already = count_done(output, FOLDERS)
    funnel = Funnel(STAGES[mode], NAMES[mode])
    status = "finished"
    with stderr_to_log(output, run_id) as terminal:
        progress = progress or Progress(terminal)
        ray_started = False
        try:
            ray_started = start_ray(config.ray.address)
            with sharded_index(config.output, config.storage, config.ingest.shards, FOLDERS) as index:
                drain(config, source, steps(config, mode, Path(source.path).name, index),
                      sink_step(config, run_id, index), funnel, progress)
        except KeyboardInterrupt:
            status = "interrupted"
        finally:
            if ray_started and not keep_ray:
                stop_ray()
    progress.record(funnel, force=True)
    report = {
        "run_id": run_id, "mode": mode, "status": status,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": round(time.time() - started, 3), "fingerprint": config.synth_fingerprint(mode == "synthesize"),
        "config": config.as_dict(), "versions": versions(), "funnel": funnel.as_dict(),
        "stage_busy_s": stage_timings(funnel, STAGES[mode]), "already_done_at_start": already,
        "timeline": progress.timeline,
        "output": {"problems": output.uri_of(PROBLEMS), "rejected": output.uri_of("rejected"),
                   "report": output.uri_of("runs", f"{run_id}.json"), "html": output.uri_of("runs", f"{run_id}.html"),
                   "log": output.uri_of("runs", f"{run_id}.log")},
    }
    write_report(output, run_id, report)
    write_html(output, run_id, report)
    report["summary"] = funnel.summary_lines()
    return report


def sink_step(config: RunConfig, run_id: str, index: RunIndex) -> Step:
    """The run's sink, writing kept problems to problems/ in files of `SINK_ROWS` rows."""
    step = run_sink_step(config, run_id, index, kept=PROBLEMS, schemas=(PROBLEM_SCHEMA, SYNTH_REJECT_SCHEMA))
    return dataclasses.replace(step, batch_size=SINK_ROWS)


def check_before_running(config: RunConfig) -> tuple[Location, Location]:
    """Input and output usable, and the sandbox able to give the layers required, or one clear error."""
    from operators.sandbox.client import Sandbox

    source = locate(config.input, config.storage)
    output = locate(config.output, config.storage)
    input_files(source)
    ensure_writable(output, (*FOLDERS, "runs"))
    if not config.ray.address:
        Sandbox(limits(config), tuple(config.sandbox.require)).close()
    return source, output


def holds_problems(config: RunConfig) -> bool:
    return count_done(locate(config.output, config.storage), (PROBLEMS,)) > 0


def tracing_config(config: RunConfig) -> RunConfig:
    """The `tracecot run` config that traces a synthesis output's problems into `<output>/traced`, with the
    template narrator (the model settings were synthesis's), the rest as given."""
    output = locate(config.output, config.storage)
    return dataclasses.replace(config, input=output.uri_of(PROBLEMS), output=output.uri_of("traced"),
                               format="generic", narrator=NarratorConfig(), limit=None)

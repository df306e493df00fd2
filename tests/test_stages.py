"""The stage list, its local runner and the run accounting, without Ray."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pytest
import ray
from conftest import SAMPLES, shared

from operators.ingest.index import LocalIndex
from operators.stages.agree import Dedup
from operators.stages.decontam import DecontamStage
from operators.stages.execute import Executor
from operators.stages.export import TrainingColumns
from operators.stages.ingest import ParseNarrations, ParseProblems
from operators.stages.narrate import NarrateStage
from operators.stages.verify import VerifyStage
from pipeline import config as cfg
from pipeline.run import DRIVER_CHECK_LIMIT, in_process
from pipeline.stages import run_local, sink_step, steps
from pipeline.storage import locate
from pipeline.tally import Tally, count


def test_the_stage_list_is_the_dataflow_in_order():
    config = cfg.load(None, {"decontam.against": f"cruxeval={shared('cruxeval/cruxeval.jsonl')}"})
    assert [step.stage for step in steps(config, "x", LocalIndex())] == [
        ParseProblems, DecontamStage, Executor, NarrateStage, VerifyStage, TrainingColumns]
    assert [step.stage for step in steps(cfg.load(None, {}), "x", LocalIndex(), "verify")] == [
        ParseNarrations, Executor, VerifyStage, TrainingColumns]
    run = [*steps(config, "x", LocalIndex()), sink_step(config, "r", LocalIndex())]
    assert not any(step.stage.placement.single_actor for step in run)
    assert Dedup.placement.single_actor  # synthesis: the problems kept so far
    assert [step.stage.__name__ for step in run if step.stage.placement.tasks] == ["ParquetSink"]  # no state kept
    pools = {step.stage.__name__: step.actors for step in run}
    light = ("ParseProblems", "DecontamStage", "TrainingColumns", "ParquetSink")
    assert {pools[name] for name in light} == {(2, 2)}
    assert pools["Executor"] == pools["NarrateStage"] == pools["VerifyStage"] == (1, 2)
    assert run[-1].batch_size == config.sink.rows_per_file
    assert Executor.placement.on_executor_nodes and VerifyStage.placement.on_executor_nodes


def test_run_local_counts_every_input_row_once_however_many_rows_it_becomes():
    config = cfg.load(None, {})
    lines = SAMPLES.read_text().splitlines()
    tally = Tally()
    for batch in run_local(steps(config, "samples", LocalIndex()), lines, lines_per_batch=5):
        tally.add(count(batch.to_pylist())[0])
    assert tally.rows_read == len(lines)
    assert tally.accepted == tally.items > len(lines) and not tally.rejected
    assert {stage for stage, _ in tally.placement} == {"ingest", "execute", "narrate", "verify", "export"}
    assert all(tally.busy_s[stage] > 0 for stage in ("ingest", "execute", "narrate", "verify"))


def test_a_tally_survives_its_trip_from_the_sink():
    config = cfg.load(None, {})
    rows = [row for batch in run_local(steps(config, "samples", LocalIndex())[:1],
                                       itertools.islice(SAMPLES.read_text().splitlines(), 3))
            for row in batch.to_pylist()]
    rows.append({"rows_read": 1, "record_id": "r", "stage": "ingest", "reason": "malformed_json"})
    tally, _, rejected = count(rows)
    assert Tally.from_json(tally.to_json()) == tally
    assert tally.rejected == {("ingest", "malformed_json"): 1} and len(rejected) == 1
    doubled = Tally.from_json(tally.to_json())
    doubled.add(tally)
    assert doubled.rows_read == 2 * tally.rows_read and doubled.rejected[("ingest", "malformed_json")] == 2


@pytest.mark.parametrize(("overrides", "here"), [
    ({}, True),  # the 32 sample problems: a few KB
    ({"input": "mbpp/mbpp.jsonl"}, True),  # 564 KB
    ({"input": "mbppplus/MbppPlus.jsonl"}, False),  # 2.7 MB
    ({"input": "mbppplus/MbppPlus.jsonl", "limit": 100}, True),  # the part the run reads: 100 rows of 399
    ({"ray.engine": "ray"}, False),
    ({"input": "mbppplus/MbppPlus.jsonl", "ray.engine": "in-process"}, True),
    ({"ray.address": "auto"}, False),  # a cluster run
    ({"ray.executor_resource": "executor"}, False),  # untrusted code only on the executor nodes
    ({"narrator.name": "openai", "narrator.openai.base_url": "http://127.0.0.1:9/v1"}, False),  # models: on Ray
])
def test_auto_runs_small_template_jobs_in_process(overrides, here, monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh `tracecot run`, whatever ran before
    if "input" in overrides:
        overrides = {**overrides, "input": str(shared(overrides["input"]))}
    config = cfg.load(None, overrides)
    assert in_process(config, locate(config.input, config.storage), 0) is here
    # An output of more ids than the driver loads is checked on Ray's index shards, unless the config says here.
    huge = in_process(config, locate(config.input, config.storage), DRIVER_CHECK_LIMIT + 1)
    assert huge is (here and config.ray.engine == "in-process")


def test_a_stage_hands_on_one_chunk_per_column():
    """Ray serializes a block chunk by chunk, and Ray Data joins batch outputs without merging them."""
    from operators.records import WORK_SCHEMA, table

    finished = {"record_id": "r", "stage": "ingest", "reason": "duplicate_call", "rows_read": 1}
    live = {"record_id": "l", "rows_read": 1}  # no trace: the stage rejects it, a row it made all the same
    stage = NarrateStage()
    for rows in ([finished, finished], [finished, live]):
        batch = pa.concat_tables([table([row], WORK_SCHEMA) for row in rows])
        assert batch.column(0).num_chunks == 2
        out = stage(batch)
        assert out.num_rows == 2 and {out.column(i).num_chunks for i in range(out.num_columns)} == {1}

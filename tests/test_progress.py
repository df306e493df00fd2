"""Live progress without Ray: the lines, the rate and time left, what the stages count, the input's size.

A whole run's live lines (real Ray, real stage actors) are checked in test_pipeline.py."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLES

from operators.stages.decontam import DecontamStage
from operators.stages.execute import Executor
from operators.stages.ingest import ParseProblems
from pipeline import config as cfg
from pipeline import sources
from pipeline.config import StorageConfig
from pipeline.progress import LiveLine, Written, duration, input_rows, reported
from pipeline.sinks import ParquetSink
from pipeline.sources import input_size
from pipeline.stages import Step
from pipeline.storage import locate

STAGES = ["ingest", "execute", "narrate", "verify", "export"]


def test_before_any_row_is_finished_the_line_says_what_is_starting():
    line = LiveLine(STAGES, 200).line(3.0, {}, {"ingest": 1, "execute": 2}, Written())
    assert line == "starting: 200 input rows, pools up 2/5"
    assert LiveLine(STAGES, None).line(3.0, {}, {}, Written()) == "starting: pools up 0/5"


def test_each_stage_count_the_total_and_the_time_left():
    live = LiveLine(STAGES, 200)
    rows = {"ingest": 200, "execute": 120, "narrate": 80, "verify": 64, "export": 40}
    first = live.line(10.0, rows, {}, Written(rows=0))
    assert first == ("rows of 200: read 200, executed 120, narrated 80, verified 64, exported 40, written 0 · "
                     "records 0, rejected 0")  # one point: no rate yet
    later = live.line(14.0, {**rows, "export": 80}, {}, Written(rows=64, records=120, rejected=3, skipped=2))
    assert later.endswith("written 64 · records 120, rejected 3, skipped 2 · 10.0 rows/s, ETA 12s")
    assert live.line(16.0, {**rows, "export": 200}, {}, Written(rows=64)).endswith("rows/s, writing")


def test_without_a_total_there_is_a_rate_but_no_time_left():
    live = LiveLine(["ingest", "execute"], None)
    live.line(1.0, {"ingest": 10, "execute": 0}, {}, Written())
    assert live.line(3.0, {"ingest": 30, "execute": 10}, {}, Written()) == \
        "rows: read 30, executed 10, written 0 · records 0, rejected 0 · 5.0 rows/s"


def test_the_rate_counts_from_the_last_moment_nothing_was_through():
    live = LiveLine(["ingest", "execute"], 100)
    for elapsed in (0.0, 30.0, 40.0):  # actors starting: no time to learn the rate from
        live.line(elapsed, {"ingest": 50, "execute": 0}, {}, Written())
    assert live.line(42.0, {"ingest": 100, "execute": 20}, {}, Written()).endswith("10.0 rows/s, ETA 8s")


def test_the_rate_is_that_of_the_last_minute():
    live = LiveLine(["ingest"], 10_000)
    live.line(0.0, {"ingest": 0}, {}, Written())
    live.line(100.0, {"ingest": 100}, {}, Written())  # a slow start, forgotten a minute later
    assert live.line(130.0, {"ingest": 1_000}, {}, Written()).endswith("30.0 rows/s, ETA 5m00s")


def test_durations():
    assert [duration(s) for s in (0.4, 42, 725, 11_220)] == ["0s", "42s", "12m05s", "3h07m"]


def test_a_batch_stands_for_its_input_rows():
    assert input_rows(pa.table({"text": ["{}", "{}", "{}"]})) == 3  # raw lines, before ingest
    assert input_rows(pa.table({"rows_read": [1, 0, 0, 1]})) == 2  # one input row made three work rows
    assert input_rows(pa.table({"rows_read": pa.array([], pa.int32())})) == 0


def test_each_stage_reports_from_its_last_step_and_the_sink_not_at_all():
    steps = [Step(ParseProblems, {}, 64), Step(DecontamStage, {}, 64), Step(Executor, {}, 16),
             Step(ParquetSink, {}, 256)]
    assert reported(steps) == {1: "ingest", 2: "execute"}  # decontamination is part of ingest
    assert reported(steps[2:]) == {0: "execute"}


@pytest.fixture
def inputs(tmp_path):
    lines = SAMPLES.read_text().splitlines()
    (tmp_path / "a.jsonl").write_text("\n".join(lines[:5]) + "\n\n  \n")  # blank lines are not rows
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as gz:
        gz.write("\n".join(lines[5:8]) + "\n")
    pq.write_table(pa.table({"id": [json.loads(line)["id"] for line in lines[8:12]]}), tmp_path / "c.parquet")
    return tmp_path


def test_the_input_size_is_counted_when_cheap(inputs, monkeypatch):
    storage = StorageConfig()
    assert sources.count_rows(locate(str(inputs), storage)) == 5 + 3 + 4
    assert sources.count_rows(locate(str(inputs / "c.parquet"), storage)) == 4
    assert sources.count_rows(locate(str(inputs / "missing.jsonl"), storage)) is None
    monkeypatch.setattr(sources, "COUNT_JSONL_BYTES", 100)
    assert sources.count_rows(locate(str(inputs), storage)) is None  # too much to read on the driver
    assert sources.count_rows(locate(str(inputs / "c.parquet"), storage)) == 4  # footers only


def test_the_size_of_a_run_is_its_limit_when_that_is_smaller(inputs):
    for limit, size in ((None, 12), (3, 3), (50, 12)):
        config = cfg.load(None, {"input": str(inputs), "limit": limit})
        assert input_size(config, locate(config.input, config.storage)) == size

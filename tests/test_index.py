"""The run index (done ids, calls met, rows claimed) in this process and sharded over Ray actors, and the sink
pool's exactly-once writes through it."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLES
from helpers import funnel_adds_up, read, run_job

from operators.ids import content_hash
from operators.ingest.index import KeySet, LocalIndex, id_keys, token_of
from operators.stages.ingest import ParseProblems
from pipeline.config import StorageConfig
from pipeline.sinks import ParquetSink

CODE = "def f(x):\n    y = x * 2\n    return y\n"
SQUARES = "def f(n):\n    total = 0\n    for i in range(n):\n        total += i * i\n    return total\n"


def problem(pid: str, *inputs: str) -> str:
    return json.dumps({"id": pid, "code": CODE, "entry_point": "f", "inputs": list(inputs)})


def lines_table(lines: list[str], at: list[str] | None = None) -> pa.Table:
    columns = {"text": pa.array(lines, pa.string())}
    if at is not None:
        columns["at"] = pa.array(at, pa.string())
    return pa.table(columns)


def test_repeats_across_batches_are_each_rejected_once():
    stage = ParseProblems(None, "test", "fp", directions=("forward",))
    first = stage(lines_table([problem("a", "1", "2")])).to_pylist()
    second = stage(lines_table([problem("b", "1"), problem("c", "1", "2")])).to_pylist()
    assert [row["reason"] for row in first] == [None, None]
    assert [(row["problem_id"], row["reason"]) for row in second] == [
        ("b", "duplicate_call"), ("c", "duplicate_call"), ("c", "duplicate_call")]
    call = first[0]["record_ids"][0]
    assert {row["record_id"] for row in second} == {content_hash("duplicate call", call, 2),
                                                    content_hash("duplicate call", call, 3),
                                                    content_hash("duplicate call", first[1]["record_ids"][0], 2)}


def test_a_retried_batch_gets_the_same_answers():
    stage = ParseProblems(None, "test", "fp", directions=("forward",))
    batch = lines_table([problem("a", "1"), problem("b", "1")], at=["in:0", "in:1"])
    first = stage(batch).to_pylist()
    again = stage(batch).to_pylist()
    assert [row["reason"] for row in first] == [None, "duplicate_call"]
    assert [(row["record_id"], row["record_ids"], row["reason"]) for row in again] == \
        [(row["record_id"], row["record_ids"], row["reason"]) for row in first]


def test_done_repeats_are_skipped_on_a_rerun():
    lines = [problem("a", "1"), problem("b", "1")]
    rows = ParseProblems(None, "test", "fp")(lines_table(lines)).to_pylist()
    written = [rid for row in rows for rid in ([row["record_id"]] if row["record_id"] else row["record_ids"])]
    rerun = ParseProblems(None, "test", "fp", index=LocalIndex(KeySet(written)))(lines_table(lines)).to_pylist()
    assert all(row["skipped"] for row in rerun) and len(rerun) == len(rows)


def test_a_slice_of_the_index_keeps_its_keys_only():
    ids = [content_hash(n) for n in range(200)]
    keys = id_keys(ids)
    assert {int(key) % 3 for key in keys} == {0, 1, 2}
    index = LocalIndex(KeySet(ids[:100]))
    done, _ = index.ask(ids)
    assert done == [True] * 100 + [False] * 100


def test_a_row_claimed_by_another_batch_is_not_written_twice(tmp_path):
    index = LocalIndex()
    row = {"record_id": content_hash("r1"), "rows_read": 1, "stage": "execute", "reason": "exception"}
    other = {**row, "record_id": content_hash("r2")}
    sinks = [ParquetSink(str(tmp_path), StorageConfig(), "run", index=index) for _ in range(2)]
    rejected = tmp_path / "rejected"
    sinks[0](pa.Table.from_pylist([row]))
    assert len(list(rejected.glob("*.parquet"))) == 1
    sinks[1](pa.Table.from_pylist([row, other]))  # an upstream retry resent `row` beside a new one
    sinks[1](pa.Table.from_pylist([row, other]))  # and this batch itself was retried: the same file again
    assert sorted(read(tmp_path, "rejected").column("record_id").to_pylist()) == sorted([row["record_id"],
                                                                                         other["record_id"]])
    assert len(list(rejected.glob("*.parquet"))) == 2


def test_tokens_name_places():
    assert token_of("a:1", 0) == token_of("a:1", 0) != token_of("a:1", 1)


@pytest.mark.integration
def test_sharded_index_answers_as_the_local_one(local_ray, tmp_path):
    from pipeline.state import sharded_index

    output = tmp_path / "out"
    done = [content_hash("done", n) for n in range(50)]
    (output / "records").mkdir(parents=True)
    pq.write_table(pa.table({"record_id": done}), output / "records" / "part-x.parquet")
    asked = [*done[::2], *(content_hash("new", n) for n in range(25))]
    calls = [(content_hash("call", n % 7), n) for n in range(30)]
    local = LocalIndex(KeySet(done))
    with sharded_index(str(output), StorageConfig(), 3) as index:
        assert index.ask(asked, calls) == local.ask(asked, calls)
        assert index.ask([], calls) == local.ask([], calls)  # the same tokens: the same numbers
        assert index.claim(asked, 1) == [True] * len(asked)
        assert index.claim(asked[:3], 2) == [False] * 3


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_pool_of_ingest_actors_rejects_each_repeat_once(local_ray, tmp_path):
    """Repeats spread over many ingest batches and two ingest actors; then a rerun that skips everything."""
    samples = SAMPLES.read_text().splitlines()[:6]
    lines = []
    for n in range(200):  # 200 lines: 25 ingest batches
        row = json.loads(samples[n % len(samples)])
        lines.append(json.dumps({**row, "id": f"{row['id']}-{n}"}))
    problems = tmp_path / "repeats.jsonl"
    problems.write_text("\n".join(lines) + "\n")
    output = tmp_path / "out"
    settings = {"input": str(problems), "output": str(output), "directions": "forward", "sink.rows_per_file": 64,
                "ingest.shards": 3}
    report = run_job(**settings)
    funnel_adds_up(report)
    # a pool of two (the config's default); how many of them Ray Data hands batches to is its scheduling's choice
    assert 1 <= report["actors"]["ParseProblems"] <= 2 and report["actors"]["ParquetSink"] >= 1
    records = read(output, "records").to_pylist()
    rejected = read(output, "rejected").to_pylist()
    repeats = [row for row in rejected if row["reason"] == "duplicate_call"]
    calls = len(records) + len(rejected) - len(repeats)
    assert len(repeats) == report["funnel"]["items"] - calls == calls * (200 // len(samples) - 1) + sum(
        len(json.loads(samples[n])["inputs"]) for n in range(200 % len(samples)))
    ids = [row["record_id"] for row in records + rejected]
    assert len(ids) == len(set(ids))

    again = run_job(**settings)
    assert again["funnel"]["skipped_existing"] == report["funnel"]["items"]
    assert again["funnel"]["written_records"] == again["funnel"]["written_rejected"] == 0


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_calls_of_a_few_lines_spread_over_the_executors(local_ray, tmp_path):
    """32 lines of 25 calls each. In batches of 64 lines they were one ingest batch, hence one block of 800 calls,
    which Ray Data hands to one executor; now they reach both executors of the pool."""
    problems = tmp_path / "many.jsonl"
    problems.write_text("".join(json.dumps({"id": f"p{line}", "code": SQUARES, "entry_point": "f",
                                            "inputs": [str(300 + 25 * line + n) for n in range(25)]}) + "\n"
                                for line in range(32)))
    report = run_job(input=str(problems), output=str(tmp_path / "out"), directions="forward",
                     **{"ray.min_executors": 2})
    funnel_adds_up(report)
    assert report["funnel"]["written_records"] == 800
    assert report["actors"]["Executor"] == 2


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_calls_of_one_line_spread_over_the_executors_in_small_blocks(local_ray, tmp_path):
    """One line of 200 calls is one ingest batch; Ray Data would hand its output on as one block, to one executor.
    Blocks of at most `ray.max_block_kb` cut it, and both executors of the pool get some."""
    problems = tmp_path / "one.jsonl"
    problems.write_text(json.dumps({"id": "p", "code": SQUARES, "entry_point": "f",
                                    "inputs": [str(300 + n) for n in range(200)]}) + "\n")
    report = run_job(input=str(problems), output=str(tmp_path / "out"), directions="forward",
                     **{"ray.min_executors": 2, "ray.max_block_kb": 16})
    funnel_adds_up(report)
    assert report["funnel"]["written_records"] == 200
    assert report["actors"]["Executor"] == 2

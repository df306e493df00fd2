import gzip
import json

import pyarrow as pa
import pytest
from conftest import SAMPLES, shared

from operators.ingest.formats import detect_format
from operators.ingest.index import KeySet, LocalIndex
from operators.stages.ingest import ParseProblems


def parse(line, **kw):
    """The ingest stage on one input line, as the pipeline calls it."""
    return ParseProblems(None, "test", "fp", **kw)(pa.table({"text": [line]})).to_pylist()


def first_line(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as stream:
        return stream.readline()


@pytest.mark.parametrize(("relative", "fmt", "entry", "n_calls"), [
    ("cruxeval/cruxeval.jsonl", "cruxeval", "f", 1),
    ("mbpp/mbpp.jsonl", "mbpp", "min_cost", 3),
    ("humaneval/HumanEval.jsonl.gz", "humaneval", "has_close_elements", 7),
])
def test_formats_are_detected_and_calls_extracted(relative, fmt, entry, n_calls):
    line = first_line(shared(relative))
    assert detect_format(json.loads(line)) == fmt
    rows = parse(line)
    assert len(rows) == n_calls
    assert {row["entry_point"] for row in rows} == {entry}
    assert all(row.get("reason") is None for row in rows)
    assert sum(row["rows_read"] for row in rows) == 1


def test_generic_rows_keep_their_id_and_keyword_inputs():
    rows = parse(json.dumps({"id": "p1", "code": "def g(n, m):\n    return n * m\n", "entry_point": "g",
                             "inputs": ["2, 3", {"n": 5, "m": 2}], "outputs": ["6", "10"]}))
    assert [row["input"] for row in rows] == ["2, 3", "n=5, m=2"]
    assert {row["problem_id"] for row in rows} == {"p1"}
    assert rows[1]["expected_output"] == "10"


def test_assert_style_tests_give_the_calls_inside_them():
    rows = parse(json.dumps({"id": "a1", "code": "def add(a, b=0):\n    return a + b\n",
                             "tests": ["assert add(1, 2) == 3", "assert add(a=4) == 4\nassert add(1, 2) == 3"]}))
    assert detect_format({"id": "a1", "code": "", "tests": []}) == "asserts"
    assert [row["input"] for row in rows] == ["1, 2", "a=4"]
    assert [row["expected_output"] for row in rows] == ["3", "4"]
    assert {row["entry_point"] for row in rows} == {"add"}


def test_every_shipped_sample_parses():
    for line in SAMPLES.read_text().splitlines():
        assert all(row.get("reason") is None for row in parse(line))


@pytest.mark.parametrize(("line", "reason"), [
    ("{not json", "malformed_json"),
    ('{"id": "x", "code": "def f(:", "entry_point": "f", "inputs": ["1"]}', "syntax_error"),
    ('{"id": "x", "code": "def g(): pass", "entry_point": "f", "inputs": ["1"]}', "entry_point_missing"),
    ('{"id": "x", "code": "def f(a): pass", "entry_point": "f"}', "unknown_format"),
    ('{"id": "x", "code": "def f(a): pass", "input": "1"}', "unknown_format"),
    ('{"id": "x", "entry_point": "f", "inputs": ["1"]}', "missing_field"),
    ('{"id": "x", "code": "def f(a): pass", "entry_point": "f", "inputs": ["1, )"]}', "bad_input"),
    ('{"id": "x", "code": "def f(a): pass", "entry_point": "f", "inputs": [[1]]}', "input_not_literal"),
])
def test_bad_rows_are_rejected_with_a_reason(line, reason):
    rows = parse(line)
    assert len(rows) == 1
    assert rows[0]["reason"] == reason
    assert rows[0]["stage"] == "ingest" and rows[0]["message"]


def test_done_items_are_marked_skipped():
    line = first_line(SAMPLES)
    ids = {rid for row in parse(line) for rid in row["record_ids"]}
    again = parse(line, index=LocalIndex(KeySet(ids)))
    assert all(row["skipped"] for row in again)


def test_a_line_that_is_not_utf8_is_rejected_alone(tmp_path):
    from pipeline.sources import iter_lines, lines_of
    from pipeline.storage import locate

    good = json.dumps({"id": "a", "code": "def f(x):\n    return x\n", "entry_point": "f", "inputs": ["1"]})
    other = good.replace('"a"', '"c"').replace('["1"]', '["2"]').encode()
    data = good.encode() + b"\n" + b'{"id": "b", "code": "\xff\xfe"}\n\n' + other + b"\r\n"
    (tmp_path / "in.jsonl").write_bytes(data)
    lines = list(iter_lines(locate(str(tmp_path / "in.jsonl"))))
    assert lines == lines_of(data) and len(lines) == 3  # the driver's reader and the Ray reader agree
    stage = ParseProblems(None, "in.jsonl", "fp")
    rows = stage(pa.table({"text": pa.array(lines, pa.string())})).to_pylist()
    assert [row["reason"] for row in rows if row["reason"]] == ["not_utf8"]
    (bad,) = [row for row in rows if row["reason"]]
    assert "\\xff\\xfe" in bad["raw"] and bad["rows_read"] == 1
    assert sum(row["rows_read"] or 0 for row in rows) == 3

"""Decontamination: copies of benchmark code are found however they are formatted; other code is left alone."""

import functools
import json

import pyarrow.parquet as pq
from conftest import SAMPLES, shared

from operators.ingest.decontam import BenchmarkIndex, benchmark_codes
from pipeline.cli import main

CRUX = [json.loads(line) for line in shared("cruxeval/cruxeval.jsonl").read_text().splitlines()]


@functools.cache
def index() -> BenchmarkIndex:
    return BenchmarkIndex({"cruxeval": benchmark_codes("cruxeval", str(shared("cruxeval/cruxeval.jsonl"))),
                           "humaneval": benchmark_codes("humaneval", str(shared("humaneval/HumanEval.jsonl.gz")))})


def test_exact_copies_match_through_layout_comments_and_docstrings():
    code = CRUX[5]["code"]
    first, rest = code.split("\n", 1)
    disguised = f'# copied\n{first}  # here\n  """Doc."""\n' + rest.replace("    ", "  ")
    match = index().match(disguised)
    assert match is not None and (match.benchmark, match.item, match.kind) == ("cruxeval", "sample_5", "exact")


def test_near_copies_match_by_ngrams_and_unrelated_code_does_not():
    code = CRUX[7]["code"].rstrip() + "\n\ndef helper(x):\n    return x\n"
    match = index().match(code)
    assert match is not None and match.kind == "ngram" and match.item == "sample_7"
    samples = [json.loads(line)["code"] for line in SAMPLES.read_text().splitlines()]
    assert all(index().match(sample) is None for sample in samples)


def test_decontam_command_flags_and_drops(tmp_path):
    rows = [{"problem_id": "a", "code": CRUX[0]["code"]}, {"problem_id": "b", "code": "def g(x):\n    return -x\n"}]
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(row) + "\n" for row in rows))
    against = f"cruxeval={shared('cruxeval/cruxeval.jsonl')}"
    assert main(["decontam", "--input", str(records), "--against", against, "--output", str(tmp_path / "flag")]) == 0
    flagged = pq.read_table(tmp_path / "flag" / "records.parquet").to_pylist()
    assert [r["contamination"] is not None for r in flagged] == [True, False]
    assert main(["decontam", "--input", str(records), "--against", against, "--output", str(tmp_path / "drop"),
                 "--drop"]) == 0
    assert [r["problem_id"] for r in pq.read_table(tmp_path / "drop" / "records.parquet").to_pylist()] == ["b"]
    report = json.loads((tmp_path / "drop" / "decontam_report.json").read_text())
    assert report["flagged"] == 1 and report["by_benchmark"] == {"cruxeval/exact": 1}
    assert main(["decontam", "--input", str(records), "--against", "nosuch", "--output", str(tmp_path)]) == 2

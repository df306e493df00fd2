"""Decontamination: copies of benchmark code are found however they are formatted; other code is left alone."""

import functools
import json

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from conftest import SAMPLES, shared

from operators.ingest.decontam import BenchmarkIndex
from pipeline.cli import main
from pipeline.decontaminate import read_benchmarks

CRUX = [json.loads(line) for line in shared("cruxeval/cruxeval.jsonl").read_text().splitlines()]


@functools.cache
def index() -> BenchmarkIndex:
    return BenchmarkIndex(read_benchmarks(f"cruxeval={shared('cruxeval/cruxeval.jsonl')},"
                                          f"humaneval={shared('humaneval/HumanEval.jsonl.gz')}"))


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


def test_decontam_reads_and_writes_object_storage(s3_server, monkeypatch):
    """Benchmarks, records and output all on S3: every file goes through the storage layer."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    fs = pafs.S3FileSystem(endpoint_override=s3_server.removeprefix("http://"), scheme="http",
                           access_key="testing", secret_key="testing", region="us-east-1")
    with fs.open_output_stream("tracecot-test/bench/cruxeval.jsonl") as stream:
        stream.write(shared("cruxeval/cruxeval.jsonl").read_bytes())
    rows = [{"problem_id": "a", "code": CRUX[3]["code"]}, {"problem_id": "b", "code": "def g(x):\n    return x\n"}]
    with fs.open_output_stream("tracecot-test/in/records.jsonl") as stream:
        stream.write("".join(json.dumps(row) + "\n" for row in rows).encode())
    assert main(["decontam", "--input", "s3://tracecot-test/in/records.jsonl",
                 "--against", "cruxeval=s3://tracecot-test/bench/cruxeval.jsonl",
                 "--output", "s3://tracecot-test/decontam", "--drop"]) == 0
    kept = pq.read_table("tracecot-test/decontam/records.parquet", filesystem=fs).to_pylist()
    assert [row["problem_id"] for row in kept] == ["b"]
    with fs.open_input_stream("tracecot-test/decontam/decontam_report.json") as stream:
        assert json.loads(stream.read())["by_benchmark"] == {"cruxeval/exact": 1}

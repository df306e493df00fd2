"""Whole benchmark files through the pipeline: coverage of problems, and every answer checked for real."""

import gzip
import json

import pytest
from conftest import shared
from helpers import funnel_adds_up, read, run_job

from operators.cot.verify import parse_answer
from operators.trace.values import parse_literal

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


def accepted_share(records, direction: str, n_problems: int) -> float:
    problems = {r["problem_id"] for r in records if r["direction"] == direction}
    return len(problems) / n_problems


def check_answers(records, sandbox) -> None:
    """Forward answers state the real output; backward answer inputs, executed, give the output."""
    for record in records:
        parsed = parse_answer(record["cot"])
        assert parsed is not None and parsed.entry_point == record["entry_point"]
        if record["direction"] == "forward":
            assert parse_literal(parsed.output_text) == parse_literal(record["output"])
        else:
            result = sandbox.run({"code": record["code"], "entry_point": record["entry_point"],
                                  "input": parsed.input_text, "traced": False})
            assert result["outcome"] == "ok" and result["output"] == record["output"], record["problem_id"]


def test_cruxeval(local_ray, sandbox, tmp_path):
    path = shared("cruxeval/cruxeval.jsonl")
    expected = {row["id"]: row["output"] for row in map(json.loads, path.read_text().splitlines())}
    report = run_job(input=str(path), output=str(tmp_path))
    funnel_adds_up(report)
    records = read(tmp_path, "records").to_pylist()
    assert accepted_share(records, "forward", 800) >= 0.99
    assert accepted_share(records, "backward", 800) >= 0.95
    for record in records:
        assert parse_literal(record["output"]) == parse_literal(expected[record["problem_id"]])
    check_answers(records, sandbox)


@pytest.mark.parametrize(("relative", "n_problems", "share"), [
    ("mbpp/mbpp.jsonl", 974, 0.96),
    ("humaneval/HumanEval.jsonl.gz", 164, 0.97),
])
def test_mbpp_and_humaneval(local_ray, sandbox, tmp_path, relative, n_problems, share):
    path = shared(relative)
    opener = gzip.open if relative.endswith(".gz") else open
    with opener(path, "rt") as stream:
        assert sum(1 for _ in stream) == n_problems
    report = run_job(input=str(path), output=str(tmp_path))
    funnel_adds_up(report)
    assert report["funnel"]["rows_read"] == n_problems
    records = read(tmp_path, "records").to_pylist()
    assert accepted_share(records, "forward", n_problems) >= share
    assert accepted_share(records, "backward", n_problems) >= share
    check_answers(records[:: max(1, len(records) // 500)], sandbox)

"""`tracecot agree` and `tracecot synthesize` end to end: Ray, the real sandbox, a real small model (SmolLM2)
and a real OpenAI-compatible endpoint; every candidate and every model answer accounted for."""

import io
import json
from pathlib import Path

import pyarrow.dataset as pads
import pytest
from conftest import shared
from helpers import read, run_job
from openai_server import OpenAIServer

from operators.llm.backends import Sampling, TransformersBackend
from operators.records import PROBLEM_SCHEMA, SYNTH_REJECT_SCHEMA
from pipeline import config as cfg
from pipeline import synthesize
from pipeline.cli import main
from pipeline.progress import Progress

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SQUARE = "def f(x):\n    return x * x\n"
SQUARE_TOO = "def f(x):\n    return x ** 2\n"
TRIPLE = "def f(x):\n    return 3 * x\n"
TESTS = ["assert f(2) == 4", "assert f(4) == 16", "assert f(0) == 0"]
CANDIDATES = [
    # kept: the honest cluster (2 solutions, 3 tests), not the wrong solution passing the wrong test
    {"id": "square", "instruction": "square x", "difficulty": "easy", "entry_point": "f",
     "solutions": [TRIPLE, SQUARE, SQUARE_TOO],
     "tests": [*TESTS, "assert f(1) == 3"]},
    # kept: a wrong solution copied four times and its test three times still count once each (counted with
    # their copies, 3 x sqrt(4) would beat the honest 2 x sqrt(2))
    {"id": "stuffed", "instruction": "cube x", "entry_point": "g",
     "solutions": ["def g(x):\n    return x ** 3\n", *["def g(x):\n    return x + 1\n"] * 3,
                   "def g(x):\n    return x+1  # again\n", "def g(x):\n    return x * x * x\n"],
     "tests": ["assert g(2) == 8", "assert g(1) == 2", "assert g(1) == 2", "assert g(1)==2", "assert g(3) == 27"]},
    # rejected: two clusters share the top score
    {"id": "tie", "entry_point": "f", "solutions": [SQUARE, TRIPLE],
     "tests": ["assert f(2) == 4", "assert f(4) == 16", "assert f(1) == 3", "assert f(2) == 6"]},
    {"id": "nothing", "entry_point": "f", "solutions": [SQUARE], "tests": ["assert f(2) == 5"]},
    {"id": "empty", "entry_point": "f", "solutions": [], "tests": []},
    {"id": "garbage", "entry_point": "f", "solutions": ["def f(x) return"], "tests": ["assert f("]},
    {"id": "no-tests-key", "entry_point": "f", "solutions": [SQUARE]},
    # rejected at dedup: the same program as "square" under other names
    {"id": "renamed", "entry_point": "h", "solutions": ["def h(y):\n    return y * y\n"],
     "tests": ["assert h(7) == 49"]},
]


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def run_synth(mode: str, **overrides) -> dict:
    return synthesize.run(cfg.load(None, overrides), mode, Progress(io.StringIO()))


def problems(output: Path) -> list[dict]:
    return pads.dataset(output / "problems", format="parquet", schema=PROBLEM_SCHEMA).to_table().to_pylist()


def rejected(output: Path) -> list[dict]:
    return pads.dataset(output / "rejected", format="parquet", schema=SYNTH_REJECT_SCHEMA).to_table().to_pylist()


def accounted(report: dict, rows_in: int) -> None:
    funnel = report["funnel"]
    assert funnel["rows_read"] == rows_in
    assert funnel["items"] == funnel["written_records"] + funnel["written_rejected"] + funnel["skipped_existing"]
    for stage in funnel["stages"].values():
        assert stage["in"] == stage["out"] + stage["rejected"]


def test_agree_keeps_exactly_the_top_clusters_and_their_tests(local_ray, tmp_path, capsys):
    source = write_lines(tmp_path / "candidates.jsonl", [*CANDIDATES, "{not json"])
    output = tmp_path / "out"
    report = run_synth("agree", input=str(source), output=str(output))
    accounted(report, len(CANDIDATES) + 1)
    kept = {row["id"]: row for row in problems(output)}
    assert set(kept) == {"square", "stuffed"}
    assert kept["square"]["code"] == SQUARE and kept["square"]["inputs"] == ["2", "4", "0"]
    assert kept["square"]["outputs"] == ["4", "16", "0"] and kept["square"]["difficulty"] == "easy"
    assert kept["square"]["agreement"]["cluster_size"] == 2 and kept["square"]["agreement"]["tests_kept"] == 3
    assert kept["square"]["solutions"] == [SQUARE, SQUARE_TOO] and kept["square"]["tests"] == TESTS
    assert kept["stuffed"]["inputs"] == ["2", "3"] and kept["stuffed"]["code"].endswith("x ** 3\n")
    seen = kept["stuffed"]["agreement"]
    assert (seen["solutions_seen"], seen["solutions_distinct"], seen["tests_seen"], seen["tests_distinct"]) == \
        (6, 3, 5, 3)
    reasons = {row["id"]: (row["stage"], row["reason"]) for row in rejected(output)}
    assert reasons == {"tie": ("agree", "tie"), "nothing": ("agree", "nothing_passes"),
                       "empty": ("ingest", "unparseable"), "garbage": ("ingest", "unparseable"),
                       "no-tests-key": ("ingest", "missing_field"), None: ("ingest", "malformed_json"),
                       "renamed": ("dedup", "duplicate")}

    page = (output / "runs" / f"{report['run_id']}.html").read_text()
    assert page.count('<figure class="chart"') == 5 and "2 problems kept, 7 rejected" in page

    again = run_synth("agree", input=str(source), output=str(output))
    assert again["funnel"]["skipped_existing"] == len(CANDIDATES) + 1 and again["funnel"]["written_records"] == 0

    # --trace: the kept problems traced into OUTPUT/traced by the same command, in one Ray session
    assert main(["agree", "--input", str(source), "--output", str(output), "--trace",
                 "--set", "directions=forward"]) == 0
    assert "tracing the kept problems" in capsys.readouterr().err
    assert {r["problem_id"] for r in read(output / "traced", "records").to_pylist()} == {"square", "stuffed"}
    assert len(read(output / "traced", "records")) == 5


def test_agree_flags_a_benchmark_copy(local_ray, tmp_path):
    mbpp = json.loads(shared("mbpp/mbpp.jsonl").read_text().splitlines()[0])
    entry = mbpp["test_list"][0].split("assert ")[1].split("(")[0].strip()
    row = {"id": "copied", "entry_point": entry, "solutions": [mbpp["code"]], "tests": mbpp["test_list"]}
    output = tmp_path / "out"
    run_synth("agree", input=str(write_lines(tmp_path / "c.jsonl", [row])), output=str(output),
              **{"decontam.against": f"mbpp={shared('mbpp/mbpp.jsonl')}"})
    assert [(r["id"], r["reason"]) for r in rejected(output)] == [("copied", "contaminated")]


SEEDS = [{"id": "lists", "text": "Python lists hold items in order. You can sum them, reverse them, and count "
                                 "how often an item occurs."},
         {"id": "square", "concept": "squaring numbers"},
         {"id": "bare", "code": "def add(a: int, b: int = 2) -> int:\n    return a + b\n"}]


def check_synthesis(report: dict, output: Path, solutions: int, test_generations: int) -> None:
    """Every model answer is counted once, and every item ends kept or rejected with a reason."""
    accounted(report, len(SEEDS))
    answers = {kind: sum(outcomes.values()) for kind, outcomes in report["funnel"]["generations"].items()}
    assert answers["concepts"] == 1 and answers["inputs"] == 1  # one seed text, one bare function
    tasks = report["funnel"]["generations"]["instructions"].get("used", 0)  # one task per instruction answer
    assert answers.get("solutions", 0) == solutions * tasks and answers.get("tests", 0) == test_generations * tasks
    kept, dropped = problems(output), rejected(output)
    assert len(kept) + len(dropped) == report["funnel"]["items"]
    assert all(row["reason"] and row["stage"] for row in dropped)
    assert "bare" in {row["id"] for row in kept}  # a typed bare function always gets an input


def test_synthesize_with_smollm2_accounts_for_every_answer(local_ray, smollm2, tmp_path):
    output = tmp_path / "out"
    seeds = write_lines(tmp_path / "seeds.jsonl", SEEDS)
    settings = {"narrator.name": "transformers", "narrator.max_tokens": 96, "narrator.temperature": 0.0,
                "synth.concepts": 2, "synth.solutions": 2, "synth.test_generations": 1}
    report = run_synth("synthesize", input=str(seeds), output=str(output), **settings)
    check_synthesis(report, output, 2, 1)
    assert "model answers: 1 concepts" in (output / "runs" / f"{report['run_id']}.html").read_text()
    again = run_synth("synthesize", input=str(seeds), output=str(output), **settings)
    assert again["funnel"]["skipped_existing"] == len(SEEDS) and "generations" not in again["funnel"]
    traced = run_job(input=str(output / "problems"), output=str(tmp_path / "traced"), directions="forward")
    assert traced["funnel"]["written_records"] >= 1


def test_synthesize_through_an_openai_compatible_endpoint(local_ray, smollm2, tmp_path):
    server = OpenAIServer(TransformersBackend(None, Sampling(max_tokens=64, temperature=0.0)), fail=[429, 500])
    try:
        output = tmp_path / "out"
        report = run_synth("synthesize", input=str(write_lines(tmp_path / "seeds.jsonl", SEEDS)), output=str(output),
                           **{"narrator.name": "openai", "narrator.openai.base_url": server.url,
                              "synth.concepts": 1, "synth.solutions": 2, "synth.test_generations": 1})
    finally:
        server.close()
    check_synthesis(report, output, 2, 1)
    assert server.requests >= 2 + 3

"""The CRUXEval scorer against the official scored generations: same pass@k, same verdict on every generation."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared

from operators.scoring import pass_at_k
from pipeline.evaluate import score

TRACECOT = str(Path(sys.executable).parent / "tracecot")
REFERENCE = "cruxeval/reference_scoring_codellama7b"


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("bench", "mode"), [("cruxeval-o", "output"), ("cruxeval-i", "input")])
def test_golden_cruxeval_scoring(bench, mode):
    generations = shared(f"{REFERENCE}/model_generations__sample_codellama-7b_temp0.2_{mode}__generations.json")
    official = json.loads(shared(f"{REFERENCE}/evaluation_results__sample_scored_codellama-7b_temp0.2_"
                                 f"{mode}.json").read_text())
    report, _ = score(bench, str(shared("cruxeval/cruxeval.jsonl")), str(generations))
    assert round(report["pass@1"], 2) == round(official["pass_at_1"], 2)
    assert round(report["pass@5"], 2) == round(official["pass_at_5"], 2)
    assert report["per_sample"] == official["raw_scored_generations"]


def test_pass_at_k():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert abs(pass_at_k(10, 3, 1) - 0.3) < 1e-12


@pytest.mark.parametrize(("content", "needle"), [
    ("not json", "are not JSON"),
    ('{"sample_0": "f(1)"}', "must map each sample id to a list of strings"),
    ('{"no_such_sample": ["1"]}', "does not have"),
])
def test_bad_generation_files_exit_2(tmp_path, content, needle):
    generations = tmp_path / "gens.json"
    generations.write_text(content)
    result = subprocess.run([TRACECOT, "eval", "--bench", "cruxeval-o", "--data",
                             str(shared("cruxeval/cruxeval.jsonl")), "--generations", str(generations)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_bad_data_path_exits_2(tmp_path):
    generations = tmp_path / "gens.json"
    generations.write_text("{}")
    result = subprocess.run([TRACECOT, "eval", "--bench", "cruxeval-i", "--data", "/no/such.jsonl",
                             "--generations", str(generations)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "cannot read benchmark data" in result.stderr

"""The CRUXEval scorer against the official scored generations: same pass@k, same verdict on every generation."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import shared

from operators.eval.prompts import fill_template
from operators.eval.scoring import pass_at_k
from pipeline.cli import main
from pipeline.evaluate import score

TRACECOT = str(Path(sys.executable).parent / "tracecot")
REFERENCE = "cruxeval/reference_scoring_codellama7b"


@pytest.mark.integration  # scores the whole benchmark
@pytest.mark.slow
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


@pytest.mark.integration  # runs the `tracecot` command
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


@pytest.mark.integration  # runs the `tracecot` command
def test_bad_data_path_exits_2(tmp_path):
    generations = tmp_path / "gens.json"
    generations.write_text("{}")
    result = subprocess.run([TRACECOT, "eval", "--bench", "cruxeval-i", "--data", "/no/such.jsonl",
                             "--generations", str(generations)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "cannot read benchmark data" in result.stderr


def test_humaneval_canonical_solutions_pass_and_broken_ones_fail(tmp_path):
    data = shared("humaneval/HumanEval.jsonl.gz")
    with gzip.open(data, "rt") as stream:
        rows = [json.loads(line) for line in stream][:20]
    generations = {row["task_id"]: [row["canonical_solution"], "    return None\n"] for row in rows}
    path = tmp_path / "gens.json"
    path.write_text(json.dumps(generations))
    report, items = score("humaneval", str(data), str(path))
    assert report["samples"] == 20
    assert [item["passed"] for item in items] == [True, False] * 20


def test_lcb_exec_scores_call_inputs_and_refuses_echoes(tmp_path):
    rows = [json.loads(line) for line in shared("cruxeval/cruxeval.jsonl").read_text().splitlines()[:3]]
    lcb = [{"question_id": row["id"], "function_name": "f", "code": row["code"], "input": f"f({row['input']})",
            "output": row["output"]} for row in rows]
    data = tmp_path / "lcb.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in lcb))
    generations = {row["question_id"]: [row["output"], row["input"], "None"] for row in lcb}
    path = tmp_path / "gens.json"
    path.write_text(json.dumps(generations))
    report, items = score("lcb-exec", str(data), str(path))
    assert [item["passed"] for item in items] == [True, False, False] * 3
    assert report["pass@1"] == pytest.approx(100 / 3, abs=0.01)


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("bench", "style", "fmt"), [("cruxeval-o", "--cot", "cruxeval"),
                                                     ("cruxeval-i", "--direct", "chat")])
def test_eval_generates_with_smollm2_then_scores(smollm2, tmp_path, bench, style, fmt):
    report_path, items_path = tmp_path / "report.json", tmp_path / "items.parquet"
    code = main(["eval", "--bench", bench, "--data", str(shared("cruxeval/cruxeval.jsonl")), "--model", "smollm2-135m",
                 "--n", "2", style, "--prompt-format", fmt, "--limit", "3", "--max-tokens", "48",
                 "--report", str(report_path), "--items", str(items_path)])
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["samples"] == 3 and report["generations_scored"] + report["generations_skipped"] == 6
    assert report["settings"]["prompt_format"] == fmt and report["settings"]["n"] == 2
    assert 0 <= report["pass@1"] <= 100
    if style == "--cot":
        assert 0 <= report["faithful@1"] <= report["pass@1"]
    items = pq.read_table(items_path).to_pylist()
    assert len(items) == 6 and all(isinstance(item["answer"], str) for item in items)


def test_fewer_than_five_generations_give_no_pass_at_5(tmp_path):
    generations = tmp_path / "gens.json"
    generations.write_text(json.dumps({"sample_0": ["[(4, 1), (4, 1), (4, 1), (4, 1), (2, 3), (2, 3)]"]}))
    report, _ = score("cruxeval-o", str(shared("cruxeval/cruxeval.jsonl")), str(generations))
    assert report["pass@1"] == 100.0 and report["pass@5"] is None


def test_a_prompt_template_is_filled_in_one_pass():
    template = "Code:\n{code}\nassert f({input}) == {output}  # {other} {{}}"
    filled = fill_template(template, "def f(x):\n    return '{output}'\n", "1", "'{output}'")
    assert filled == "Code:\ndef f(x):\n    return '{output}'\nassert f(1) == '{output}'  # {other} {{}}"


@pytest.mark.integration  # runs the `tracecot` command
@pytest.mark.parametrize(("content", "extra", "needle"), [
    ("no placeholder here", [], "needs a {code} placeholder"),
    (None, [], "cannot read the prompt template"),
    ("{code}", ["--generations", "gens.json"], "is for generating"),
])
def test_bad_prompt_templates_exit_2(tmp_path, content, extra, needle):
    template = tmp_path / "prompt.txt"
    if content is not None:
        template.write_text(content)
    (tmp_path / "gens.json").write_text("{}")
    source = extra or ["--model", "smollm2-135m"]
    data = str(shared("cruxeval/cruxeval.jsonl"))
    result = subprocess.run([TRACECOT, "eval", "--bench", "cruxeval-o", "--data", data, *source, "--prompt-template",
                             str(template)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


@pytest.mark.timeout(600)
def test_eval_with_a_prompt_template(smollm2, tmp_path):
    template = tmp_path / "prompt.txt"
    template.write_text("Complete the assertion.\n[PYTHON]\n{code}\nassert f({input}) == ??\n[/PYTHON]\n[ANSWER]\n")
    report_path = tmp_path / "report.json"
    code = main(["eval", "--bench", "cruxeval-o", "--data", str(shared("cruxeval/cruxeval.jsonl")), "--model",
                 "smollm2-135m", "--n", "1", "--limit", "2", "--max-tokens", "24", "--prompt-template", str(template),
                 "--report", str(report_path)])
    assert code == 0
    settings = json.loads(report_path.read_text())["settings"]
    assert settings["prompt_format"] == "template" and settings["prompt_template"] == str(template)
    assert len(settings["prompt_template_sha256"]) == 64

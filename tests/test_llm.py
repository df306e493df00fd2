"""Model narrators with a real model (SmolLM2-135M-Instruct): whatever it writes is verified and accounted for."""

import json
from pathlib import Path

import pyarrow.dataset as pads
import pytest
from conftest import tiny_problems
from helpers import check_model_run, funnel_adds_up, model_outcomes, run_job
from openai_server import OpenAIServer

from operators.llm.backends import Sampling, TransformersBackend

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
SECRET = "sk-tracecot-test-not-a-real-key"


def test_transformers_narrator_through_ray(local_ray, smollm2, tmp_path):
    report = run_job(input=str(tiny_problems(tmp_path)), output=str(tmp_path / "out"), **{
        "narrator.name": "transformers", "narrator.max_tokens": 48, "narrator.retries": 1,
        "narrator.temperature": 0.0})
    check_model_run(report, tmp_path / "out", "transformers:smollm2-135m", items=4)
    assert report["config"]["narrator"]["name"] == "transformers"


@pytest.fixture(scope="module")
def model_server(smollm2):
    server = OpenAIServer(TransformersBackend(None, Sampling(max_tokens=32, temperature=0.0)),
                          fail=[429, 500, 429, 503])
    yield server
    server.close()


def test_openai_narrator_rides_out_429_and_500(local_ray, model_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACECOT_TEST_API_KEY", SECRET)
    output = tmp_path / "out"
    report = run_job(input=str(tiny_problems(tmp_path)), output=str(output), directions="forward", **{
        "narrator.name": "openai", "narrator.model": "smollm2", "narrator.retries": 0,
        "narrator.openai.base_url": model_server.url, "narrator.openai.api_key_env": "TRACECOT_TEST_API_KEY",
        "narrator.openai.concurrency": 2})
    funnel_adds_up(report)
    records, final, _ = model_outcomes(output)
    assert len(records) + len(final) == report["funnel"]["items"] == 2
    assert not [r for r in final if r["reason"] == "narrator_error"]  # every injected failure was retried
    assert model_server.requests >= 2 + 4
    assert model_server.authorizations == {f"Bearer {SECRET}"}
    written = json.dumps(report) + (output / "runs" / f"{report['run_id']}.json").read_text()
    for folder in ("records", "rejected"):
        written += json.dumps(pads.dataset(output / folder).to_table().to_pylist(), default=str)
    assert SECRET not in written
    session = Path(local_ray._private.worker._global_node.get_session_dir_path())
    assert not [path for path in session.rglob("*") if path.is_file() and SECRET.encode() in path.read_bytes()]


def test_an_endpoint_that_keeps_failing_does_not_hang_the_run(local_ray, tmp_path):
    server = OpenAIServer(backend=None, fail=[500] * 1000)
    try:
        report = run_job(input=str(tiny_problems(tmp_path)), output=str(tmp_path / "out"), directions="forward",
                         **{"narrator.name": "openai", "narrator.openai.base_url": server.url,
                            "narrator.openai.max_retries": 2, "narrator.retries": 0})
    finally:
        server.close()
    funnel_adds_up(report)
    assert report["funnel"]["rejects_by_reason"] == {"narrate/narrator_error": 2}
    assert server.requests == 2 * 3


def test_a_model_that_cannot_load_rejects_its_items(local_ray, smollm2, tmp_path):
    report = run_job(input=str(tiny_problems(tmp_path)), output=str(tmp_path / "out"), directions="forward",
                     **{"narrator.name": "transformers", "narrator.model": str(tmp_path / "no-such-model")})
    funnel_adds_up(report)
    assert report["funnel"]["rejects_by_reason"] == {"narrate/narrator_error": 2}
    _, final, _ = model_outcomes(tmp_path / "out")
    assert all("engine did not start" in r["message"] for r in final)

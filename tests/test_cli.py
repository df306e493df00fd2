"""The `tracecot` command as a user runs it: usage errors, the default run, interruption and resume."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import ROOT, SAMPLES, shared
from helpers import read, run_job

from pipeline.cli import main

TRACECOT = str(Path(sys.executable).parent / "tracecot")
pytestmark = pytest.mark.timeout(300)
integration = pytest.mark.integration  # these run the `tracecot` command (Ray starts in it)


def tracecot(*args, cwd=None, timeout=240):
    return subprocess.run([TRACECOT, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


@integration
@pytest.mark.parametrize(("args", "needle"), [
    (["run", "--bogus"], "unrecognized arguments"),
    (["run", "--input", "/no/such/file.jsonl"], "input not found"),
    (["run", "--format", "xml"], "invalid choice"),
    (["run", "--narrator", "openai"], "needs narrator.openai.base_url"),
    (["run", "--directions", "sideways"], "unknown direction"),
    (["run", "--limit", "0"], "limit must be"),
    (["run", "--output", "ftp://host/x"], "unsupported storage scheme"),
    (["run", "--config", "/no/such.yaml"], "cannot read config"),
    ([], "required"),
    (["verify", "--input", "x.jsonl"], "required: --output"),
])
def test_usage_errors_exit_2_with_one_line(args, needle, tmp_path):
    result = tracecot(*args, cwd=tmp_path)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


@integration
@pytest.mark.parametrize(("text", "needle"), [
    ("narrator: [1, 2\n", "not valid YAML"),
    ("colour: blue\n", "unknown config key colour"),
    ("sandbox:\n  timeout_s: soon\n", "sandbox.timeout_s must be float"),
    ("limit: abc\n", "limit must be int"),
    ("ray:\n  executors: null\n", "ray.executors must be int, got null"),
    ("- a list\n", "must be a mapping"),
])
def test_bad_config_files_exit_2(text, needle, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    result = tracecot("run", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


@integration
def test_default_run_writes_to_tracecot_out(tmp_path):
    result = tracecot("run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "funnel: read 32 rows" in result.stdout
    assert "[tracecot]" in result.stderr  # progress lines
    assert all(line.startswith("[tracecot]") for line in result.stderr.splitlines()), result.stderr  # no Ray noise
    records = read(tmp_path / "tracecot-out", "records")
    assert records.num_rows > 0
    runs = tmp_path / "tracecot-out" / "runs"
    assert len(list(runs.glob("*.json"))) == len(list(runs.glob("*.html"))) == len(list(runs.glob("*.log"))) == 1
    assert (tmp_path / "tracecot-out" / "README.md").exists()


@integration
def test_trace_command(tmp_path):
    source = tmp_path / "f.py"
    source.write_text("def f(n):\n    total = 0\n    for i in range(n):\n        total += i\n    return total\n")
    result = tracecot("trace", str(source), "--entry-point", "f", "--input", "3")
    assert result.returncode == 0
    assert '"value": "3"' in result.stdout.splitlines()[-1]


def _wait_for_records(output: Path, deadline: float) -> None:
    while not list((output / "records").glob("part-*.parquet")):
        assert time.monotonic() < deadline, "no records appeared"
        time.sleep(0.2)


@integration
@pytest.mark.parametrize(("how", "engine"), [("kill", "ray"), ("interrupt", "ray"), ("interrupt", "in-process")])
def test_interrupted_run_resumes_without_duplicates(local_ray, tmp_path, how, engine):
    source = shared("cruxeval/cruxeval.jsonl")
    output = tmp_path / "out"
    # Small files and small blocks, so records reach disk all through the run (the defaults, 10,000 rows a file
    # and 1 MiB blocks, would write this input's files at its very end, and the stop could come after it).
    limit = 300 if engine == "ray" else 800  # in this process the run is quick: all of CRUXEval, to stop it midway
    args = ["run", "--input", str(source), "--output", str(output), "--limit", str(limit),
            "--set", "sink.rows_per_file=64", "--set", "ray.max_block_kb=16", "--set", f"ray.engine={engine}"]
    proc = subprocess.Popen([TRACECOT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _wait_for_records(output, time.monotonic() + 180)
        if how == "kill":
            proc.kill()
        else:
            proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        if how == "interrupt":
            assert proc.returncode == 130, stderr[-2000:]
            assert "Traceback" not in stderr and "written before the stop are kept" in stderr.splitlines()[-1]
            (report,) = [json.loads(path.read_text()) for path in (output / "runs").glob("*.json")]
            assert report["status"] == "interrupted"
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the killed driver's own local Ray processes
    report = run_job(input=str(source), output=str(output), limit=limit, **{"sink.rows_per_file": 64})
    records = read(output, "records")
    rejected = read(output, "rejected")
    ids = records.column("record_id").to_pylist() + rejected.column("record_id").to_pylist()
    assert len(ids) == len(set(ids)), "a record was written twice"
    assert len(ids) == report["funnel"]["items"] == 2 * limit
    assert pl.read_parquet(output / "records" / "*.parquet").height == records.num_rows


def test_samples_are_valid_json():
    assert len(SAMPLES.read_text().splitlines()) >= 30


@pytest.mark.parametrize(("runtime_env", "needle"), [
    ("working_dir: https://example.com/tracecot.zip\n", "working_dir must be a local folder"),
    ("working_dir: no/such/folder\n", "is not a folder"),
    ("pip: ['${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}']\n", "it names no working_dir"),
    (str(ROOT / "cluster" / "runtime_env.yaml"), "holds no pyproject.toml (submit from the checkout's root)"),
])
def test_submit_checks_the_runtime_env_before_reaching_the_cluster(runtime_env, needle, tmp_path, monkeypatch,
                                                                   capsys):
    """A runtime env that cannot work exits 2 here, not as a job stuck on the cluster (the address answers nothing)."""
    monkeypatch.chdir(tmp_path)
    if not runtime_env.endswith(".yaml"):
        (tmp_path / "env.yaml").write_text(runtime_env)
        runtime_env = "env.yaml"
    code = main(["submit", "--address", "http://127.0.0.1:9", "--runtime-env", runtime_env,
                 "--output", "s3://bucket/out", "--no-wait"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], lines


def test_isolation_prints_the_layers_and_exits_2_without_a_required_one(monkeypatch, capsys):
    assert main(["isolation"]) == 0
    assert "network_namespace  yes  required" in capsys.readouterr().out.splitlines()
    monkeypatch.setenv("PATH", "/nonexistent")  # a node without bubblewrap: no read-only root
    assert main(["isolation", "--set", "sandbox.require=[readonly_fs]"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "required isolation: readonly_fs (readonly_fs needs bubblewrap" in lines[0], lines

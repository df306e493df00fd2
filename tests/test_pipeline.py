"""End to end on a local Ray: records, rejects, reports, incremental reruns and S3 output."""

import io
import json
import pickle
import re
import shutil

import polars as pl
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLES, shared
from helpers import funnel_adds_up, read, run_job

from operators.ids import content_hash
from operators.records import RECORD_SCHEMA
from pipeline import config as cfg
from pipeline.config import StorageConfig
from pipeline.export import export_hf
from pipeline.progress import Progress
from pipeline.run import in_process, run
from pipeline.state import DoneIndex
from pipeline.storage import locate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
SAMPLE_IDS = {json.loads(line)["id"] for line in SAMPLES.read_text().splitlines()}


def test_sample_run_writes_verified_records(local_ray, tmp_path):
    report = run_job(output=str(tmp_path))
    records = read(tmp_path, "records")
    assert records.schema.names == RECORD_SCHEMA.names
    assert records.num_rows == report["funnel"]["written_records"] > 0
    assert set(records.column("direction").to_pylist()) == {"forward", "backward"}
    assert set(records.column("problem_id").to_pylist()) == SAMPLE_IDS
    assert all(v["passed"] for v in records.column("verification").to_pylist())
    assert len(set(records.column("record_id").to_pylist())) == records.num_rows
    row = records.slice(0, 1).to_pylist()[0]
    assert row["messages"][0]["role"] == "user" and row["messages"][1]["content"] == row["cot"]
    assert row["cot"].endswith(row["answer"]) and "network_namespace" in row["isolation"]
    funnel_adds_up(report)
    saved = json.loads((tmp_path / "runs" / f"{report['run_id']}.json").read_text())
    for key in ("config", "fingerprint", "versions", "funnel", "stage_busy_s", "wall_s"):
        assert key in saved
    assert saved["versions"]["ray"].startswith("2.60")
    assert pl.read_parquet(tmp_path / "records" / "*.parquet").height == records.num_rows


def test_in_process_and_on_ray_the_same_input_gives_the_same_records(local_ray, tmp_path):
    """The in-process engine runs the same stages as the Ray graph: same records, same rejections, same ids."""
    written = {}
    for engine in ("in-process", "ray"):
        report = run_job(output=str(tmp_path / engine), **{"ray.engine": engine, "sink.rows_per_file": 50})
        assert report["engine"] == engine
        funnel_adds_up(report)
        records, rejected = read(tmp_path / engine, "records"), read(tmp_path / engine, "rejected")
        written[engine] = (sorted(map(str, records.select(["record_id", "completion", "isolation"]).to_pylist())),
                           sorted(map(str, rejected.select(["record_id", "stage", "reason"]).to_pylist())))
        assert len(list((tmp_path / engine / "records").glob("*.parquet"))) >= 2  # files of 50 rows in both
    assert written["in-process"] == written["ray"]
    assert written["ray"][0]  # records to compare (the samples' rejects, where there are any, are compared too)


def test_a_ray_started_in_this_process_is_used(local_ray):
    config = cfg.load(None, {})
    assert not in_process(config, locate(config.input, config.storage), 0)  # a small input, but Ray is up


def test_progress_lines_come_from_the_stages_while_the_run_goes_on(local_ray, tmp_path):
    stream = io.StringIO()
    report = run(cfg.load(None, {"output": str(tmp_path), "limit": 20}), Progress(stream, every=0.2))
    lines = stream.getvalue().splitlines()
    assert re.search(r"\] +[\d.]+s  starting: 20 input rows, pools up \d/5$", lines[0])
    counted = [line for line in lines if re.search(r"rows of 20: read [1-9]", line)]
    assert counted, lines  # a stage's own count, before the sink has written all
    for line in counted:
        assert all(int(n) <= 20 for n in re.findall(r"(?:read|ed|written) (\d+)", line)), line
    assert report["funnel"]["rows_read"] == 20
    funnel_adds_up(report)


def test_reruns_are_incremental(local_ray, tmp_path):
    lines = SAMPLES.read_text().splitlines()
    problems = tmp_path / "problems.jsonl"
    problems.write_text("\n".join(lines[:10]) + "\n")
    output = tmp_path / "out"
    first = run_job(input=str(problems), output=str(output))
    assert first["funnel"]["written_records"] > 0

    index = DoneIndex(str(output), StorageConfig())
    written = read(output, "records").column("record_id").to_pylist()
    assert all(rid in index for rid in written) and content_hash("never written") not in index
    assert len(index) == first["funnel"]["items"] and index.loaded().nbytes == 8 * len(index)
    assert len(pickle.dumps(index)) < 1000  # the ingest actor is sent the output's address, not its ids

    again = run_job(input=str(problems), output=str(output))
    assert again["funnel"]["written_records"] == 0
    assert again["funnel"]["skipped_existing"] == first["funnel"]["items"]

    problems.write_text("\n".join(lines[:14]) + "\n")
    more = run_job(input=str(problems), output=str(output))
    assert more["funnel"]["skipped_existing"] == first["funnel"]["items"]
    new_ids = {json.loads(line)["id"] for line in lines[10:14]}
    latest = {r["problem_id"] for r in read(output, "records").to_pylist() if r["run_id"] == more["run_id"]}
    assert latest == new_ids

    changed = run_job(input=str(problems), output=str(output), **{"verifier.min_coverage": 0.4})
    assert changed["fingerprint"] != first["fingerprint"]
    assert changed["funnel"]["skipped_existing"] == 0
    records = read(output, "records")
    assert len(set(records.column("record_id").to_pylist())) == records.num_rows


BAD_ROWS = [
    "{this is not json",
    json.dumps({"id": "no-code", "entry_point": "f", "inputs": ["1"]}),
    json.dumps({"id": "syntax", "code": "def f(x:\n  return x", "entry_point": "f", "inputs": ["1"]}),
    json.dumps({"id": "no-entry", "code": "def g(x):\n    return x\n", "entry_point": "f", "inputs": ["1"]}),
    json.dumps({"id": "not-literal", "code": "def f(x):\n    return x\n", "entry_point": "f",
                "inputs": ["object()", "open('/etc/passwd')"]}),
    json.dumps({"id": "raises", "code": "def f(x):\n    return 1 // x\n", "entry_point": "f", "inputs": ["0"]}),
    json.dumps({"id": "wrong-expected", "code": "def f(x):\n    return x + 1\n", "entry_point": "f",
                "inputs": ["1"], "outputs": ["3"]}),
    json.dumps({"id": "good", "code": "def f(x):\n    y = x * 2\n    return y\n", "entry_point": "f",
                "inputs": ["4"]}),
    json.dumps({"id": "again", "code": "def f(x):\n    y = x * 2\n    return y\n", "entry_point": "f",
                "inputs": ["4"]}),
    json.dumps({"id": "inputs-not-a-list", "code": "def f(x):\n    return x\n", "entry_point": "f", "inputs": 5}),
    json.dumps({"id": "code-not-text", "code": 5, "input": "1", "output": "1"}),
    json.dumps({"id": "builtin", "code": "f = sorted\n", "entry_point": "f", "inputs": ["[2, 1]"]}),
]


def test_bad_rows_are_rejected_and_counted(local_ray, tmp_path):
    problems = tmp_path / "bad.jsonl"
    problems.write_text("\n".join(BAD_ROWS) + "\n")
    report = run_job(input=str(problems), output=str(tmp_path / "out"))
    funnel_adds_up(report)
    assert report["funnel"]["rows_read"] == len(BAD_ROWS)
    rejected = read(tmp_path / "out", "rejected").to_pylist()
    reasons = {(r["problem_id"], r["reason"]) for r in rejected}
    assert {(None, "malformed_json"), ("no-code", "missing_field"), ("syntax", "syntax_error"),
            ("no-entry", "entry_point_missing"), ("not-literal", "input_not_literal"),
            ("raises", "exception"), ("wrong-expected", "output_mismatch"), ("again", "duplicate_call"),
            ("inputs-not-a-list", "bad_field"), ("code-not-text", "bad_field"), ("builtin", "empty_trace")} <= reasons
    assert all(r["message"] for r in rejected)
    accepted = read(tmp_path / "out", "records").to_pylist()
    assert {r["problem_id"] for r in accepted} == {"good"}


HOSTILE = {
    "connect": ("import socket\ndef f(x):\n    socket.create_connection(('127.0.0.1', 1), timeout=1)\n    return x\n",
                "sandbox_violation"),
    "fork-bomb": ("import os\ndef f(x):\n    while True:\n        os.fork()\n", "sandbox_violation"),
    "spin": ("def f(x):\n    while True:\n        x += 1\n", "trace_truncated"),  # stopped at the event cap
    "spin-in-c": ("def f(x):\n    return any(iter(int, 1))\n", "timeout"),  # no events: the CPU limit
    "memory-bomb": ("def f(x):\n    return 'a' * (4 * 2**30)\n", "memory"),
    "exit": ("import os\ndef f(x):\n    os._exit(0)\n", "killed"),
    "random": ("import random\ndef f(x):\n    return random.random()\n", "nondeterministic"),
    "kill-parent": ("import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n", "sandbox_violation"),
}


def test_hostile_rows_in_a_whole_run(local_ray, tmp_path):
    rows = [{"id": name, "code": code, "entry_point": "f", "inputs": ["1"]} for name, (code, _) in HOSTILE.items()]
    rows.append({"id": "good", "code": "def f(x):\n    y = x * 2\n    return y\n", "entry_point": "f",
                 "inputs": ["4"]})
    problems = tmp_path / "hostile.jsonl"
    problems.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    report = run_job(input=str(problems), output=str(tmp_path / "out"), **{"sandbox.timeout_s": 1.0})
    funnel_adds_up(report)
    rejected = {(r["problem_id"], r["reason"]) for r in read(tmp_path / "out", "rejected").to_pylist()}
    assert rejected == {(name, reason) for name, (_, reason) in HOSTILE.items()}
    assert {r["problem_id"] for r in read(tmp_path / "out", "records").to_pylist()} == {"good"}


def test_a_new_direction_reuses_what_is_done(local_ray, tmp_path):
    forward = run_job(output=str(tmp_path), limit=5, directions="forward")
    both = run_job(output=str(tmp_path), limit=5)
    funnel_adds_up(both)
    assert both["funnel"]["skipped_existing"] == forward["funnel"]["items"]
    assert both["funnel"]["written_records"] == forward["funnel"]["written_records"]
    assert set(read(tmp_path, "records").column("direction").to_pylist()) == {"forward", "backward"}


def test_s3_output(local_ray, s3_server, tmp_path, monkeypatch):
    output = "s3://tracecot-test/runs/a"
    storage = {"storage.endpoint_url": s3_server}
    report = run_job(output=output, limit=6, **storage)
    funnel_adds_up(report)
    fs = pafs.S3FileSystem(endpoint_override=s3_server.removeprefix("http://"), scheme="http",
                           access_key="testing", secret_key="testing", region="us-east-1")
    records = pq.read_table("tracecot-test/runs/a/records", filesystem=fs)
    assert records.num_rows == report["funnel"]["written_records"] > 0
    frame = pl.read_parquet("s3://tracecot-test/runs/a/records/*.parquet", storage_options={
        "aws_endpoint_url": s3_server, "aws_allow_http": "true", "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing", "aws_region": "us-east-1"})
    assert frame.height == records.num_rows
    assert fs.get_file_info(f"tracecot-test/runs/a/runs/{report['run_id']}.json").type == pafs.FileType.File
    for name in ("README.md", f"runs/{report['run_id']}.html", f"runs/{report['run_id']}.log"):
        assert fs.get_file_info(f"tracecot-test/runs/a/{name}").type == pafs.FileType.File
    again = run_job(output=output, limit=6, **storage)
    assert again["funnel"]["written_records"] == 0
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)  # `tracecot export` reads S3 itself: no s3fs for `datasets`
    export_hf(output, str(tmp_path / "hf"), validation_share=0.0)
    datasets = pytest.importorskip("datasets")
    assert datasets.load_dataset(str(tmp_path / "hf"))["train"].num_rows == records.num_rows


def test_missing_bucket_is_a_clear_error(s3_server, tmp_path):
    from pipeline import config as cfg
    from pipeline.run import run
    from pipeline.storage import StorageError

    config = cfg.load(None, {"output": "s3://no-such-bucket/x", "storage.endpoint_url": s3_server})
    with pytest.raises(StorageError, match="no-such-bucket"):
        run(config)


def test_output_can_be_copied_and_read_back(local_ray, tmp_path):
    run_job(output=str(tmp_path / "a"), limit=3)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert read(tmp_path / "b", "records").num_rows == read(tmp_path / "a", "records").num_rows


def test_verify_checks_narrations_made_elsewhere(local_ray, tmp_path):
    from helpers import run_verify

    run_job(output=str(tmp_path / "made"), limit=4)
    records = read(tmp_path / "made", "records").to_pylist()
    wrong = dict(records[0], cot=records[0]["cot"].replace("` = `", "` = `1000 + ", 1), problem_id="tampered")
    assert wrong["cot"] != records[0]["cot"]
    plain = {"id": "plain", "code": "def f(x):\n    y = x + 1\n    return y\n", "entry_point": "f", "input": "1",
             "output": "2", "direction": "forward",
             "cot": "Line 2 sets `y` to `2`. `f` returns `2`.\n[ANSWER]assert f(1) == 2[/ANSWER]"}
    lying = dict(plain, id="lying", cot=plain["cot"].replace("`y` to `2`", "`y` to `3`"))
    backward = dict(plain, id="backward", direction="backward",
                    cot="`f` returns `2`. Before that, line 2 ran: `y` was set to `2`. So, at line 1, `f` was "
                        "called with `x` = `1`.\n[ANSWER]assert f(5) == 2[/ANSWER]")
    lines = [json.dumps(r, default=str) for r in [*records, wrong, plain, lying, backward]]
    source = tmp_path / "cot.jsonl"
    source.write_text("\n".join([*lines, "{broken"]) + "\n")
    report = run_verify(input=str(source), output=str(tmp_path / "checked"))
    funnel_adds_up(report)
    accepted = {r["problem_id"] for r in read(tmp_path / "checked", "records").to_pylist()}
    rejected = {r["problem_id"]: r["reason"] for r in read(tmp_path / "checked", "rejected").to_pylist()}
    assert accepted == {r["problem_id"] for r in records} | {"plain"}
    assert rejected == {"tampered": "claim_contradicted", "lying": "claim_contradicted",
                        "backward": "claim_contradicted", None: "malformed_json"}


def test_contaminated_problems_are_rejected_before_they_run(local_ray, tmp_path):
    crux = shared("cruxeval/cruxeval.jsonl")
    problems = tmp_path / "mixed.jsonl"
    samples = SAMPLES.read_text().splitlines()[:2]
    problems.write_text("\n".join(crux.read_text().splitlines()[:2] + samples) + "\n")
    report = run_job(input=str(problems), output=str(tmp_path / "out"), **{"decontam.against": f"cruxeval={crux}"})
    funnel_adds_up(report)
    assert report["funnel"]["rejects_by_reason"] == {"ingest/contaminated": 4}
    assert {r["problem_id"] for r in read(tmp_path / "out", "records").to_pylist()} == \
        {json.loads(line)["id"] for line in samples}

"""A real multi-node Ray cluster on this machine: a head, a CPU executor node and a narrator node, each its own
`ray start` raylet; runs are submitted through the Jobs API and write to the local S3-compatible server."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import pytest
from conftest import ROOT, SAMPLES, cluster_nodes, free_port, stop_cluster

from pipeline.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
RAY = str(Path(sys.executable).parent / "ray")
BUCKET = "tracecot-test"


@pytest.fixture(scope="module")
def cluster(s3_server):
    """Dashboard URL and node ids of a three-node cluster; stopped (only it) and removed at the end."""
    temp_dir = tempfile.mkdtemp(prefix="tcray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "AWS_ENDPOINT_URL": s3_server}
    port, dashboard = free_port(), free_port()

    def start(node: str, *args: str) -> None:
        # Each node its own temp dir, as on separate machines: nodes sharing one would share (and race on) their
        # runtime env installs. Each node's agent its own port: the default may belong to this test process's Ray.
        subprocess.run([RAY, "start", *args, f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats",
                        f"--temp-dir={temp_dir}/{node}"], env=env, check=True, capture_output=True)

    start("head", "--head", f"--port={port}", "--num-cpus=1", "--dashboard-host=127.0.0.1",
          f"--dashboard-port={dashboard}", "--include-dashboard=true")
    for node, cpus, resources in (("executor", 2, {"executor": 100}), ("narrator", 1, {"narrator": 100})):
        start(node, f"--address=127.0.0.1:{port}", f"--num-cpus={cpus}", f"--resources={json.dumps(resources)}")
    try:
        yield f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{port}"
    finally:
        stop_cluster(temp_dir, port)
        shutil.rmtree(temp_dir, ignore_errors=True)  # runtime env installs there are large (a copy of the venv)


def node_roles(gcs: str) -> dict[str, str]:
    """node id → executor / narrator / head."""
    return {node["id"]: "narrator" if "narrator" in node["resources"] else
            "executor" if "executor" in node["resources"] else "head" for node in cluster_nodes(gcs)}


def test_submitted_run_places_stages_on_their_nodes(cluster, s3_server, tmp_path, capsys):
    dashboard, gcs = cluster
    config = tmp_path / "cluster.yaml"
    config.write_text(f"storage: {{endpoint_url: '{s3_server}'}}\n"
                      "ray: {executor_resource: executor}\n"
                      "narrator: {actors: {resource: narrator}}\n")
    code = main(["submit", "--address", dashboard, "--config", str(config), "--input", str(SAMPLES),
                 "--output", f"s3://{BUCKET}/cluster", "--limit", "6"])
    log = capsys.readouterr()
    assert code == 0, log.err[-3000:]
    assert "funnel: read 6 rows" in log.out
    assert re.search(r"\[tracecot\] +[\d.]+s  starting: 6 input rows", log.out)  # the job's live lines, streamed

    s3 = boto3.client("s3", endpoint_url=s3_server)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="cluster/")["Contents"]]
    assert any(k.startswith("cluster/records/") for k in keys)
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=next(k for k in keys if k.endswith(".json")))["Body"].read())
    assert report["funnel"]["written_records"] > 0
    roles = node_roles(gcs)
    ran = {stage: {roles[node] for node in nodes} for stage, nodes in report["placement"].items()}
    assert ran["narrate"] == {"narrator"}
    assert ran["execute"] == {"executor"} and ran["verify"] == {"executor"}


def report_of(s3_server: str, prefix: str) -> dict:
    s3 = boto3.client("s3", endpoint_url=s3_server)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/runs/")["Contents"]]
    return json.loads(s3.get_object(Bucket=BUCKET, Key=next(k for k in keys if k.endswith(".json")))["Body"].read())


def test_submit_with_the_runtime_env_ships_the_checkout(cluster, s3_server, tmp_path, capsys, monkeypatch):
    """cluster/README.md's command, from the checkout's root: Ray uploads the checkout with the job config in it and
    pip-installs it on the nodes; the job reads the sample problems from that upload, not from this machine."""
    dashboard, _ = cluster
    monkeypatch.chdir(ROOT)
    config = tmp_path / "s3.yaml"
    config.write_text(f"storage: {{endpoint_url: '{s3_server}'}}\n")
    code = main(["submit", "--address", dashboard, "--runtime-env", "cluster/runtime_env.yaml", "--config",
                 str(config), "--output", f"s3://{BUCKET}/checkout", "--limit", "2"])
    log = capsys.readouterr()
    assert code == 0, log.err[-3000:]
    assert "funnel: read 2 rows" in log.out
    report = report_of(s3_server, "checkout")
    assert report["funnel"]["written_records"] > 0
    assert "/runtime_resources/working_dir_files/" in report["config"]["input"]
    assert report["config"]["input"].endswith("/pipeline/samples/problems.jsonl")


def test_submit_refuses_a_local_output_path(cluster, tmp_path, capsys):
    dashboard, _ = cluster
    code = main(["submit", "--address", dashboard, "--output", str(tmp_path / "out"), "--no-wait"])
    assert code == 2
    assert "must be object storage" in capsys.readouterr().err


def test_a_run_joining_the_cluster_refuses_a_local_output_path(cluster, tmp_path, capsys):
    _, gcs = cluster
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    result = subprocess.run([str(Path(sys.executable).parent / "tracecot"), "run", "--address", gcs,
                             "--output", str(tmp_path / "out"), "--limit", "1"], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "local path but the Ray cluster has 3 nodes" in result.stderr


def test_job_status_and_logs(cluster, s3_server, tmp_path, capsys):
    dashboard, _ = cluster
    config = tmp_path / "s3.yaml"
    config.write_text(f"storage: {{endpoint_url: '{s3_server}'}}\n")
    args = ["--config", str(config), "--output", f"s3://{BUCKET}/nowait", "--limit", "2"]
    assert main(["submit", "--address", dashboard, "--no-wait", *args]) == 0
    job_id = capsys.readouterr().out.strip()
    assert job_id.startswith("tracecot-")
    assert main(["status", job_id, "--address", dashboard]) == 0
    assert capsys.readouterr().out.strip() in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED")
    assert main(["logs", job_id, "--address", dashboard]) == 0

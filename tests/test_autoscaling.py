"""Autoscaling with Ray's fake multi-node provider: a head with no CPUs, worker nodes from zero when a run
needs them, and back to zero once they are idle. Each fake node is a real raylet on this machine."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import SAMPLES, cluster_nodes, free_port, stop_cluster
from helpers import funnel_adds_up

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
ADDRESS = "127.0.0.1:6379"  # the fake provider starts its worker nodes against the default GCS port


def _workers() -> int:
    return sum(1 for node in cluster_nodes(ADDRESS) if node["resources"].get("CPU", 0) > 0)


def _fake_cluster_config(path: Path) -> None:
    """Ray's fake multi-node provider: a head with no CPUs, and 0..2 two-CPU workers, removed after 6 s idle."""
    config = {
        "cluster_name": "tracecot-test", "max_workers": 2, "head_node_type": "ray.head.default",
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "cpu_node": {"resources": {"CPU": 2}, "node_config": {}, "min_workers": 0, "max_workers": 2},
        },
        "upscaling_speed": 1.0, "idle_timeout_minutes": 0.1, "auth": {}, "docker": {}, "file_mounts": {},
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
        "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
    }
    path.write_text(json.dumps(config))


@pytest.fixture
def autoscaling_cluster(tmp_path):
    temp_dir = tempfile.mkdtemp(prefix="tcauto-", dir="/tmp")
    config = tmp_path / "autoscaling.json"
    _fake_cluster_config(config)
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_AUTH_MODE": "disabled",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    port = 6379
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.skip("port 6379 is taken; Ray's fake autoscaling provider needs it for the head")
    subprocess.run([str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}", "--num-cpus=0",
                    f"--autoscaling-config={config}", f"--temp-dir={temp_dir}", "--disable-usage-stats",
                    f"--dashboard-agent-listen-port={free_port()}"],
                   env=env, check=True, capture_output=True)
    try:
        yield ADDRESS
    finally:
        stop_cluster(temp_dir, port)


def test_workers_scale_up_from_zero_and_back(autoscaling_cluster, tmp_path):
    assert _workers() == 0
    before = {node["id"] for node in cluster_nodes(autoscaling_cluster)}
    config = tmp_path / "shared.yaml"
    config.write_text("storage: {shared_filesystem: true}\n")  # every fake node is this machine
    output = tmp_path / "out"
    run = subprocess.run([str(Path(sys.executable).parent / "tracecot"), "run", "--address", autoscaling_cluster,
                          "--config", str(config), "--input", str(SAMPLES), "--limit", "8", "--output", str(output)],
                         capture_output=True, text=True, timeout=240, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(next((output / "runs").glob("*.json")).read_text())
    funnel_adds_up(report)
    assert report["funnel"]["written_records"] > 0
    worked_on = {node for stage in ("execute", "verify") for node in report["placement"][stage]}
    assert worked_on and not worked_on & before  # the work ran on nodes that did not exist before the run
    deadline = time.monotonic() + 180
    while _workers() and time.monotonic() < deadline:
        time.sleep(2)
    assert _workers() == 0, "idle worker nodes were not removed"

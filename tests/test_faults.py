"""Crashes mid-run: an executor actor's process is killed while it works; every item still ends exactly once."""

import os
import signal
import threading
import time

import pytest
from conftest import shared
from helpers import funnel_adds_up, read, run_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _executor_pids() -> list[int]:
    """Processes of executor actors (Ray titles them `ray::MapWorker(MapBatches(Executor))…`)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if cmdline.read().startswith(b"ray::MapWorker(MapBatches(Executor))"):
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


def test_killing_an_executor_mid_run_loses_and_duplicates_nothing(local_ray, tmp_path):
    output = tmp_path / "out"
    result: dict = {}
    # All 800 problems, a fresh child per call: long enough a run that the kill lands while it works.
    job = threading.Thread(target=lambda: result.update(report=run_job(
        input=str(shared("cruxeval/cruxeval.jsonl")), output=str(output), **{"sandbox.jobs_per_child": 1})))
    job.start()
    deadline = time.monotonic() + 120
    while not (pids := _executor_pids()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pids, "no executor actor came up"
    time.sleep(1.0)  # let it take work
    assert job.is_alive(), "the run ended before the crash could be injected"
    os.kill(pids[0], signal.SIGKILL)
    job.join(timeout=500)
    assert not job.is_alive()

    report = result["report"]
    funnel_adds_up(report)
    assert report["funnel"]["items"] == 1600
    ids = read(output, "records").column("record_id").to_pylist() + \
        read(output, "rejected").column("record_id").to_pylist()
    assert len(ids) == len(set(ids)) == 1600

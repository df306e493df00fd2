"""`tracecot submit / logs / status`: a run as a Ray job on a cluster, through the Ray Jobs SDK.

The run's configuration is resolved and validated here, on the submitting machine (a bad config fails
before anything reaches the cluster), then shipped with the job as `tracecot-job.yaml` in its working
directory; the job runs `tracecot run --config tracecot-job.yaml --address auto` on the head node, where
tracecot must be installed (the cluster's runtime_env, see cluster/).
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from tenacity import Retrying, retry_if_exception_message, stop_after_delay, wait_fixed

from pipeline.config import ConfigError, RunConfig
from pipeline.storage import locate

JOB_CONFIG = "tracecot-job.yaml"
_FINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class ClusterUnreachable(ConnectionError):
    """The address names no Ray cluster (or dashboard) that answers."""


def client(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ClusterUnreachable(f"cannot reach the Ray Jobs API at {address}: {str(err).splitlines()[0]}") from err


def submit(address: str, config: RunConfig, runtime_env: dict[str, Any] | None = None) -> str:
    """Submit the run; returns the job id."""
    if locate(config.output, config.storage).is_local and not config.storage.shared_filesystem:
        raise ConfigError(f"a submitted run writes from many nodes: --output {config.output} must be object "
                          "storage (s3://…), or a path every node mounts (storage.shared_filesystem: true)")
    jobs = client(address)
    data = config.as_dict()
    data["ray"]["address"] = "auto"
    with tempfile.TemporaryDirectory(prefix="tracecot-job-") as folder:
        (Path(folder) / JOB_CONFIG).write_text(yaml.safe_dump(data, sort_keys=False))
        env = {**(runtime_env or {}), "working_dir": folder}
        job_id = f"tracecot-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        # A cluster that has just started answers "No available agent" until its job agent is up.
        retrying = Retrying(retry=retry_if_exception_message(match=".*No available agent.*"), reraise=True,
                            wait=wait_fixed(2), stop=stop_after_delay(120))
        return retrying(jobs.submit_job, entrypoint=f"tracecot run --config {JOB_CONFIG}", runtime_env=env,
                        submission_id=job_id)


def status(address: str, job_id: str) -> str:
    return str(client(address).get_job_status(job_id).value)


def follow(address: str, job_id: str) -> str:
    """Print the job's log as it is written; returns the job's final status."""
    jobs = client(address)

    async def tail() -> None:
        async for lines in jobs.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(tail())
    while (state := status(address, job_id)) not in _FINAL:  # the log can close a moment before the status
        time.sleep(0.5)
    return state


def logs(address: str, job_id: str) -> str:
    return str(client(address).get_job_logs(job_id))


def exit_code(state: str) -> int:
    return 0 if state == "SUCCEEDED" else 1

"""`tracecot submit / logs / status`: a run as a Ray job on a cluster, through the Ray Jobs SDK.

The run's configuration is resolved and validated here, on the submitting machine (a bad config fails
before anything reaches the cluster), then shipped with the job as `tracecot-job.yaml` in its working
directory; the job runs `tracecot run --config tracecot-job.yaml` there, joining the cluster. Without a
runtime env, that working directory holds the config alone and tracecot must be installed on the cluster.
With one that names a working_dir (a checkout, cluster/runtime_env.yaml), the config travels inside it:
Ray uploads the checkout plus the config as one package, so `${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}` is the
checkout, and the job's relative paths (configs/…, inputs inside the checkout) resolve in it.
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

from pipeline.config import SAMPLE_INPUT, ConfigError, RunConfig
from pipeline.storage import locate

JOB_CONFIG = "tracecot-job.yaml"
# Ray's name, in a runtime env's pip packages, for the unpacked working_dir on each node.
WORKING_DIR_VAR = "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"
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
    runtime_env = runtime_env or {}
    source = checkout(runtime_env)
    jobs = client(address)
    with tempfile.TemporaryDirectory(prefix="tracecot-job-") as folder:
        env = with_job_config(runtime_env, source, job_config(config), Path(folder))
        job_id = f"tracecot-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        # A cluster that has just started answers "No available agent" until its job agent is up.
        retrying = Retrying(retry=retry_if_exception_message(match=".*No available agent.*"), reraise=True,
                            wait=wait_fixed(2), stop=stop_after_delay(120))
        return retrying(jobs.submit_job, entrypoint=f"tracecot run --config {JOB_CONFIG}", runtime_env=env,
                        submission_id=job_id)


def job_config(config: RunConfig) -> str:
    """The config as the job reads it: joining the cluster it runs on, and, where no input was given, reading
    the sample problems shipped with the tracecot it runs (this machine's path to them means nothing there)."""
    data = config.as_dict()
    data["ray"]["address"] = "auto"
    if config.input == SAMPLE_INPUT:
        data["input"] = None
    return yaml.safe_dump(data, sort_keys=False)


def checkout(runtime_env: dict[str, Any]) -> Path | None:
    """The runtime env's working_dir (a relative one starts at the current directory, as for `ray job submit`),
    checked before anything reaches the cluster; None where it names none."""
    named = runtime_env.get("working_dir")
    folder = None if named is None else _local_folder(named)
    if _installs_working_dir(runtime_env) and not (folder and (folder / "pyproject.toml").is_file()):
        problem = f"{folder} holds no pyproject.toml" if folder else "it names no working_dir"
        raise ConfigError(f"--runtime-env: pip installs the working_dir ({WORKING_DIR_VAR}), but {problem} "
                          "(submit from the checkout's root)")
    return folder


def _local_folder(named: Any) -> Path:
    if not isinstance(named, str) or "://" in named:
        raise ConfigError(f"--runtime-env: working_dir must be a local folder, which the job config is added to; "
                          f"got {named!r}")
    folder = Path(named).absolute()
    if not folder.is_dir():
        raise ConfigError(f"--runtime-env: working_dir {folder} is not a folder")
    return folder


def _installs_working_dir(runtime_env: dict[str, Any]) -> bool:
    pip = runtime_env.get("pip")
    packages = pip.get("packages", []) if isinstance(pip, dict) else pip if isinstance(pip, list) else []
    return any(WORKING_DIR_VAR in str(package) for package in packages)


def with_job_config(runtime_env: dict[str, Any], source: Path | None, text: str, folder: Path) -> dict[str, Any]:
    """`runtime_env` with `folder` as its working_dir, holding the job config, and, with a checkout (`source`),
    links to each of its entries: Ray follows them when it packs the folder, and applies the runtime env's
    excludes and the checkout's .gitignore to them as it would to the checkout itself. (Removing the folder
    removes the links, never what they point to.)"""
    if source is not None:
        for entry in source.iterdir():
            if entry.name != JOB_CONFIG:
                (folder / entry.name).symlink_to(entry)
    (folder / JOB_CONFIG).write_text(text)
    return {**runtime_env, "working_dir": str(folder)}


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

"""The files in cluster/ as a user takes them: valid, consistent with each other, and with every example runnable
as written (nothing read from outside what reaches the cluster); the KubeRay executor start script run for real."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from pipeline.config import read_yaml
from pipeline.storage import locate

CLUSTER = ROOT / "cluster"
FILES = sorted(CLUSTER.rglob("*.yaml"))
DOCS = [CLUSTER / "README.md", ROOT / "README.md", *FILES]
START = "$KUBERAY_GEN_RAY_START_CMD"


def kuberay(name: str) -> dict:
    return yaml.safe_load((CLUSTER / "kuberay" / name).read_text())


def pods(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in spec["workerGroupSpecs"])]


def executor_script() -> str:
    (group,) = [g for g in kuberay("raycluster.yaml")["spec"]["workerGroupSpecs"] if g["groupName"] == "cpu-executors"]
    (container,) = group["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/bash", "-lc", "--"]
    return container["args"][0]


def commands(text: str) -> list[str]:
    """The `tracecot run` / `tracecot submit` command lines in a file, comment markers and line breaks removed."""
    lines = [re.sub(r"^\s*#?\s*", "", line) for line in text.splitlines()]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return re.findall(r"tracecot (?:run|submit)\b.*", joined)


@pytest.mark.parametrize("path", FILES, ids=lambda path: str(path.relative_to(CLUSTER)))
def test_every_file_is_one_yaml_document(path):
    assert isinstance(yaml.safe_load(path.read_text()), dict)


def test_the_runtime_env_is_one_ray_accepts():
    from ray.runtime_env import RuntimeEnv

    RuntimeEnv(**read_yaml(str(CLUSTER / "runtime_env.yaml")))


def test_the_rayjob_creates_the_raycluster():
    cluster, job = kuberay("raycluster.yaml"), kuberay("rayjob.yaml")
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]
    assert job["metadata"]["annotations"] == cluster["metadata"]["annotations"]


def test_every_pod_runs_as_the_service_account_and_starts_ray_last():
    account = kuberay("serviceaccount.yaml")
    assert account["kind"] == "ServiceAccount"
    cluster = kuberay("raycluster.yaml")
    assert cluster["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    for pod in pods(cluster["spec"]):
        assert pod["serviceAccountName"] == account["metadata"]["name"]
        (container,) = pod["containers"]
        assert container["args"][0].strip().endswith(f'eval "{START}"')


def test_nothing_is_allowed_to_fail_quietly():
    for path in FILES:
        assert "|| true" not in path.read_text(), path


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_examples_read_only_what_reaches_the_cluster(path):
    """A config whose input lies outside the checkout (configs/cruxeval.yaml's ../shared/…) is only ever used with
    an --input on object storage; no example suggests storage tracecot cannot read."""
    text = path.read_text()
    if path == ROOT / "README.md":
        text = text[text.index("## Running on a cluster"):]
        text = text[:text.index("\n## ")]
    found = commands(text) + ([kuberay("rayjob.yaml")["spec"]["entrypoint"]] if path.name == "rayjob.yaml" else [])
    for command in found:
        config = re.search(r"--config (configs/\S+)", command)  # a repository config, not a placeholder
        given = read_yaml(str(ROOT / config.group(1))).get("input") if config else None
        outside = given is not None and locate(given).is_local and not (ROOT / given).resolve().is_relative_to(ROOT)
        assert not outside or "--input s3://" in command, command
    assert "gs://" not in path.read_text()


@pytest.mark.parametrize(("bwrap", "code"), [(None, 0), ("exit 1", 2)], ids=["bubblewrap works", "bubblewrap refused"])
def test_the_executor_pod_starts_ray_only_after_its_sandbox_check(bwrap, code, tmp_path):
    """The start script of raycluster.yaml's executor pods, run here: with a working bubblewrap it runs KubeRay's
    `ray start` line (quoting kept); where bubblewrap cannot make namespaces it stops before, with the check's error."""
    if bwrap is not None:
        (tmp_path / "bwrap").write_text(f"#!/bin/sh\n{bwrap}\n")
        (tmp_path / "bwrap").chmod(0o755)
    start = f"{sys.executable} -c 'import sys; print(sys.argv[1:])' --resources=\"{{\\\"executor\\\": 1000}}\""
    env = {"PATH": f"{tmp_path}:{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "HOME": os.environ.get("HOME", "/root"), START[1:]: start}
    result = subprocess.run(["/bin/bash", "-c", "--", executor_script()], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == code, result.stderr[-2000:]
    started = "['--resources={\"executor\": 1000}']" in result.stdout
    assert started is (code == 0), result.stdout
    assert code == 0 or "required isolation: readonly_fs" in result.stderr

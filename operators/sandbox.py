"""Client side of the sandbox: owns a fork server process and runs jobs through it.

One `Sandbox` per executor actor. Each job runs in a forked child (see `operators.forkserver`) with the limits
below: a fresh child, or one shared only with other self-contained jobs (`operators.sharing`). The fork server
is restarted if it dies, and only the job in flight is reported failed. User code can never crash the caller:
every failure comes back as an outcome.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from operators.wire import recv_frame, recv_msg, send_msg

OUTCOMES = ("ok", "exception", "timeout", "memory", "output_limit", "killed", "sandbox_violation",
            "nondeterministic", "bad_input", "entry_point_missing", "sandbox_error")
LAYERS = ("network_namespace", "seccomp", "rlimits", "timeout", "scrubbed_env", "scratch_dir", "unprivileged_uid",
          "readonly_fs", "no_capabilities")
DEFAULT_REQUIRED = ("network_namespace", "seccomp", "rlimits", "timeout")
_START_TIMEOUT_S = 60.0
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
_BWRAP_ENV = {**_ENV, "TMPDIR": "/dev/shm"}
_PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bwrap_command() -> list[str]:
    """bubblewrap: everything read-only, a private tmpfs for scratch directories, fresh namespaces, and the
    home directory (credentials) replaced by an empty one, with only the interpreter and its packages kept.

    No user namespace as root: it would map uid 0 alone, and children could not drop to `nobody`.
    """
    command = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
               "--perms", "1777", "--size", str(256 << 20), "--tmpfs", "/dev/shm"]
    home = os.path.realpath(os.path.expanduser("~"))
    if home != "/" and os.path.isdir(home):
        command += ["--perms", "0755", "--tmpfs", home]
        command += _home_binds(home)
    if os.geteuid() != 0:
        command.append("--unshare-user")
    return [*command, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--chdir", "/", "--"]


def _home_binds(home: str) -> list[str]:
    """bwrap arguments that re-expose, inside the emptied home, the directories the interpreter needs."""
    needed = (sys.prefix, sys.base_prefix, _PROJECT, *sys.path)
    inside = {os.path.realpath(p) for p in needed if p and os.path.isdir(p)}
    inside = {p for p in inside if p.startswith(home + os.sep)}
    args: list[str] = []
    for path in sorted(p for p in inside if not any(p.startswith(q + os.sep) for q in inside)):
        parents = [str(d) for d in reversed(Path(path).parents) if str(d).startswith(home + os.sep)]
        args += [arg for parent in parents for arg in ("--perms", "0755", "--dir", parent)]
        args += ["--ro-bind", path, path]
    return args


_OK_FIELDS = {"output": str, "trace": list, "output_is_literal": bool, "output_truncated": bool,
              "truncated_events": bool}


def malformed(result: Any, kind: str) -> str | None:
    """What is wrong with a result, or None. The child writes it after running user code, which could have
    written its own; a well-formed fake cannot be told apart, but a malformed one never reaches a stage."""
    if not isinstance(result, dict) or result.get("outcome") not in OUTCOMES:
        return "the sandbox returned a result without a known outcome"
    if result["outcome"] == "ok" and kind == "call":
        wrong = [k for k, kind_of in _OK_FIELDS.items() if not isinstance(result.get(k), kind_of)]
        if wrong or not all(isinstance(e, dict) for e in result["trace"]):
            return f"the sandbox returned a malformed result (fields: {', '.join(wrong) or 'trace'})"
    return None


def _decoded(data: bytes) -> Any:
    """A result as the fork server passed it on; user code could have made it unreadable (then None)."""
    try:
        return json.loads(data)
    except ValueError:
        return None


class SandboxUnavailable(RuntimeError):
    """This machine cannot provide an isolation layer the configuration requires."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 5.0
    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64
    max_result_bytes: int = 8 << 20
    max_stdout: int = 10_000
    runs: int = 2  # each call runs this many times; differing results are reported `nondeterministic`
    jobs_per_child: int = 16  # self-contained jobs one child may run in turn (operators.sharing); 1: a child each

    def wire(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_s": math.ceil(self.runs * self.timeout_s) + 1}


class Sandbox:
    """A warm fork server plus the limits every job runs under."""

    def __init__(self, limits: Limits | None = None, require: tuple[str, ...] = DEFAULT_REQUIRED) -> None:
        self.limits = limits or Limits()
        self.require = require
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self.isolation: dict[str, bool] = {}
        self._start()

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run one job; always returns a result dict with an `outcome` from `OUTCOMES`."""
        return self.run_many([job])[0]

    def run_many(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run jobs in order, self-contained ones several to a child; one result per job."""
        results: list[dict[str, Any]] = []
        while len(results) < len(jobs):
            try:
                results += self._answers(jobs[len(results):])
            except (SandboxUnavailable, OSError) as err:  # the fork server cannot be started again
                failed = {"outcome": "sandbox_error", "message": f"the sandbox cannot restart: {err}"}
                results += [dict(failed) for _ in jobs[len(results):]]
        return results

    def _answers(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Results for the jobs, or for those before the one in flight when the fork server failed."""
        if self._proc is None or self._proc.stdin is None or self._proc.stdout is None:
            self._restart()
        answers: list[dict[str, Any]] = []
        try:
            send_msg(self._proc.stdin.fileno(), {"jobs": jobs, "limits": self.limits.wire()})
            for job in jobs:
                deadline = time.monotonic() + self.limits.runs * self.limits.timeout_s + 30.0
                result = _decoded(recv_frame(self._proc.stdout.fileno(), deadline))
                problem = malformed(result, job.get("kind", "call"))
                answers.append({"outcome": "sandbox_error", "message": problem} if problem else result)
        except (OSError, EOFError, TimeoutError, ValueError) as err:
            self.close()  # started again for the jobs still to run, or by the next call
            answers.append({"outcome": "sandbox_error", "message": f"fork server failed during the job: {err!r}"})
        return answers

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        # Under bubblewrap where it works (read-only root, private /tmp, own namespaces), else as it is.
        # The fork server gets a minimal environment: secrets of the caller never reach it or its children.
        server = [sys.executable, "-m", "operators.forkserver"]
        attempts = [(bwrap_command() + server, _BWRAP_ENV)] if shutil.which("bwrap") else []
        attempts.append((server, _ENV))
        for number, (command, env) in enumerate(attempts, 1):
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=None if number == len(attempts) else subprocess.DEVNULL,
                                          env=env, cwd="/")
            assert self._proc.stdout is not None
            try:
                hello = recv_msg(self._proc.stdout.fileno(), time.monotonic() + _START_TIMEOUT_S)
                break
            except (EOFError, TimeoutError):
                self.close()
                if number == len(attempts):
                    raise SandboxUnavailable("the sandbox's fork server did not start") from None
        self.isolation = hello["layers"]
        missing = [layer for layer in self.require if not self.isolation.get(layer)]
        if missing:
            self.close()
            raise SandboxUnavailable(
                f"sandbox cannot provide required isolation: {', '.join(missing)} "
                "(lower sandbox.require in the config to run without it)")

    def _restart(self) -> None:
        self.close()
        self.restarts += 1
        self._start()

"""Client side of the sandbox: owns the fork server processes and runs jobs through them.

One `Sandbox` per executor actor. Each job runs in a forked child (see `operators.sandbox.forkserver`) with the limits
below; a child serves the jobs of one problem, never two problems. A job runs `runs` times, each time in its
own fork server started with its own `PYTHONHASHSEED`, the repeats in a fresh child each: a result stands
only when a fresh process under another hash seed reproduces it (outcome, output, exception and the whole
trace), else it is `nondeterministic`. Detection is by trial: an order that two seeds happen to agree on
passes (for a set of two strings, about one time in two); raise `runs` to narrow that.

A fork server that dies is restarted, and only the job in flight is reported failed. User code can never
crash the caller: every failure comes back as an outcome, and every text in a result is valid Unicode.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from operators.sandbox.calls import builds_sets
from operators.sandbox.isolation import TaskCap
from operators.sandbox.wire import recv_frame, recv_msg, send_msg
from operators.trace.values import equal_literals, valid_text

OUTCOMES = ("ok", "exception", "timeout", "trace_truncated", "trace_failed", "memory", "output_limit", "killed",
            "sandbox_violation", "nondeterministic", "bad_input", "entry_point_missing", "sandbox_error")
LAYERS = ("network_namespace", "seccomp", "rlimits", "timeout", "scrubbed_env", "scratch_dir", "unprivileged_uid",
          "readonly_fs", "no_capabilities", "filesystem", "task_cap")
DEFAULT_REQUIRED = ("network_namespace", "seccomp", "rlimits", "timeout", "filesystem")
# How to get each layer, for the one line a run that lacks a required layer exits with.
FIXES = {"filesystem": "needs Landlock (Linux >= 5.13 with landlock in the lsm= boot list)",
         "network_namespace": "needs network namespaces (unshare(CLONE_NEWNET))",
         "readonly_fs": "needs bubblewrap (apt-get install bubblewrap) able to make namespaces (privileged container)",
         "seccomp": "needs libseccomp2 (apt-get install libseccomp2)",
         "task_cap": "needs the cgroup v1 pids controller at /sys/fs/cgroup/pids, writable"}
_START_TIMEOUT_S = 60.0
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_BWRAP_ENV = {**_ENV, "TMPDIR": "/dev/shm"}
_COMPARED = ("outcome", "output", "exc_type", "message", "digest")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bwrap_command() -> list[str]:
    """bubblewrap: everything read-only, a private tmpfs for scratch directories, fresh namespaces, and the
    home directory (credentials) replaced by an empty one, with only the interpreter and its packages kept.

    No user namespace as root: it would map uid 0 alone, and children could not drop to `nobody`.
    """
    command = [shutil.which("bwrap") or "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
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


_TEXT_FIELDS = ("message", "exc_type", "stdout", "detail", "where", "output")
_OK_FIELDS = {"output": str, "output_is_literal": bool, "output_truncated": bool, "digest": str}


def malformed(result: Any, job: dict[str, Any]) -> str | None:
    """What is wrong with a result, or None. The child writes it after running user code, which could have
    written its own; a well-formed fake cannot be told apart, but a malformed one never reaches a stage."""
    if not isinstance(result, dict) or result.get("outcome") not in OUTCOMES:
        return "the sandbox returned a result without a known outcome"
    wrong_text = [key for key in _TEXT_FIELDS if not isinstance(result.get(key, ""), str)]
    if wrong_text or not isinstance(result.get("line"), int | None):
        return f"the sandbox returned a malformed result (fields: {', '.join(wrong_text) or 'line'})"
    if result["outcome"] == "ok" and job.get("kind", "call") == "call":
        fields = _OK_FIELDS if job.get("compare_only") else {**_OK_FIELDS, "trace": list}
        wrong = [k for k, kind_of in fields.items() if not isinstance(result.get(k), kind_of)]
        if wrong or not all(isinstance(e, dict) for e in result.get("trace", [])):
            return f"the sandbox returned a malformed result (fields: {', '.join(wrong) or 'trace'})"
    return None


def _decoded(data: bytes) -> Any:
    """A result as the fork server passed it on, with every text made valid Unicode; None when user code made it
    unreadable (not strict UTF-8, not JSON, or nested too deep to parse or to clean)."""
    try:
        result = json.loads(data.decode("utf-8"))
        return valid_text(result) if _SURROGATE_ESCAPE.search(data) else result
    except (ValueError, RecursionError):
        return None


def _difference(first: dict[str, Any], again: dict[str, Any], by_value: bool = False) -> str | None:
    """How a repeat run differs from the first (outcome, output, exception or trace), or None. `by_value`: two
    literal outputs that are equal values do not differ (a dict's order may follow the hash seed)."""
    for key in _COMPARED:
        if by_value and key == "output" and first.get("output_is_literal") and again.get("output_is_literal") \
                and equal_literals(first["output"], again["output"]):
            continue
        if first.get(key) != again.get(key):
            what = "trace" if key == "digest" else key
            return (f"two runs under different hash seeds differ in {what}: {str(first.get(key))[:60]!r} vs "
                    f"{str(again.get(key))[:60]!r}")
    return None


class SandboxUnavailable(RuntimeError):
    """This machine cannot provide an isolation layer the configuration requires."""


@dataclass(frozen=True)
class Limits:
    """What one run of a job may use. `timeout_s` is CPU time: it decides, so a call's fate does not depend on how
    busy the machine is; `wall_timeout_s` only stops calls that wait without computing (sleep, a blocked read)."""

    timeout_s: float = 5.0
    wall_timeout_s: float = 20.0
    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64
    max_result_bytes: int = 8 << 20
    max_stdout: int = 10_000
    runs: int = 2  # each call runs this many times, each under its own hash seed; differing → nondeterministic
    seed_order_runs: int = 8  # runs for a call that builds or shows a set ordered by the hash seed (if runs > 1)
    jobs_per_child: int = 16  # jobs of one problem (same code) one child may run in turn; 1: a child each
    max_tasks: int = 64  # processes and threads one child may have at once (where the layer task_cap works)

    def wire(self, repeat: bool = False) -> dict[str, Any]:
        """The limits a fork server applies; a repeat run gets a fresh child per job."""
        return {**asdict(self), "cpu_s": math.ceil(self.timeout_s) + 1,
                "wall_timeout_s": max(self.wall_timeout_s, self.timeout_s),
                "jobs_per_child": 1 if repeat else self.jobs_per_child}


class _ForkServer:
    """One fork server process, started with its own hash seed (under bubblewrap where that works)."""

    def __init__(self, seed: int, max_tasks: int) -> None:
        self.seed = seed
        self.max_tasks = max_tasks
        self._cap: TaskCap | None = None
        self.layers: dict[str, bool] = {}
        self.started = False  # once: a later start is a restart
        self._proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None

    def start(self) -> None:
        # The fork server gets a minimal environment: secrets of the caller never reach it or its children.
        server = [sys.executable, "-m", "operators.sandbox.forkserver"]
        attempts = [(bwrap_command() + server, _BWRAP_ENV)] if shutil.which("bwrap") else []
        attempts.append((server, _ENV))
        self._cap = TaskCap(f"{self.seed}-{id(self)}", self.max_tasks)
        cap = {"TRACECOT_TASK_CAP_FD": str(self._cap.fd)} if self._cap.fd >= 0 else {}
        for number, (command, env) in enumerate(attempts, 1):
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=None if number == len(attempts) else subprocess.DEVNULL,
                                          env={**env, **cap, "PYTHONHASHSEED": str(self.seed)}, cwd="/",
                                          pass_fds=[self._cap.fd] if cap else [])
            assert self._proc.stdout is not None
            try:
                self.layers = recv_msg(self._proc.stdout.fileno(), time.monotonic() + _START_TIMEOUT_S)["layers"]
                self.started = True
                return
            except (EOFError, TimeoutError):  # e.g. bubblewrap present but refused namespaces: try the next way
                self._stop()
        self.close()
        raise SandboxUnavailable("the sandbox's fork server did not start")

    def answers(self, jobs: list[dict[str, Any]], limits: dict[str, Any]) -> list[dict[str, Any]]:
        """Results for the jobs, or for those before the one in flight when the fork server failed."""
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        answers: list[dict[str, Any]] = []
        try:
            send_msg(self._proc.stdin.fileno(), {"jobs": jobs, "limits": limits})
            for job in jobs:
                deadline = time.monotonic() + limits["wall_timeout_s"] + 30
                result = _decoded(recv_frame(self._proc.stdout.fileno(), deadline))
                problem = malformed(result, job)
                answers.append({"outcome": "sandbox_error", "message": problem} if problem else result)
        except Exception as err:  # whatever went wrong, the frames left in the pipe can no longer be trusted
            self.close()  # started again for the jobs still to run, or by the next call
            answers.append({"outcome": "sandbox_error", "message": f"fork server failed during the job: {err!r}"})
        return answers

    def close(self, graceful: bool = False) -> None:
        """Stop the server; `graceful` lets it finish removing its last child's scratch directory first."""
        if self._cap is not None:
            self._cap.remove()  # the directory goes once its last task has ended (here, or at a later start)
            self._cap = None
        self._stop(graceful)

    def _stop(self, graceful: bool = False) -> None:
        if self._proc is None:
            return
        if graceful and self._proc.stdin is not None:
            self._proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=2)
        self._proc.kill()
        self._proc.wait()
        self._proc = None


class Sandbox:
    """Warm fork servers, one per run of a job, plus the limits every job runs under."""

    def __init__(self, limits: Limits | None = None, require: tuple[str, ...] = DEFAULT_REQUIRED) -> None:
        self.limits = limits or Limits()
        self.require = require
        self.restarts = 0
        checked = self.limits.runs > 1  # one run: no determinism check at all
        seeds = max(self.limits.runs, self.limits.seed_order_runs) if checked else 1
        self.servers = [_ForkServer(seed, self.limits.max_tasks) for seed in range(seeds)]
        for server in self.servers[:self.limits.runs]:  # the others start when a call first needs them
            self._start(server)
        self.isolation = {layer: all(s.layers.get(layer, False) for s in self.servers[:self.limits.runs])
                          for layer in self.servers[0].layers}

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run one job; always returns a result dict with an `outcome` from `OUTCOMES`."""
        return self.run_many([job])[0]

    def run_many(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run jobs in order, each `runs` times (`seed_order_runs` times where a set ordered by the hash seed may
        decide the result); one result per job, `nondeterministic` where runs differ. A job that failed its first
        run (timeout, memory, …) is not run again."""
        results = self._run_on(self.servers[0], jobs, self.limits.wire())
        suspect = [bool(r.get("seed_ordered")) or (r["outcome"] in ("ok", "exception") and job.get("kind") != "program"
                                                   and builds_sets(job["code"], job.get("input", "")))
                   for job, r in zip(jobs, results, strict=True)]
        for number, server in enumerate(self.servers[1:], 1):
            again = [i for i, result in enumerate(results) if result["outcome"] in ("ok", "exception")
                     and (number < self.limits.runs or suspect[i])]
            if not again:
                break
            repeats = self._run_on(server, [{**jobs[i], "compare_only": True} for i in again],
                                   self.limits.wire(repeat=True))
            for i, repeat in zip(again, repeats, strict=True):
                if repeat["outcome"] == "sandbox_error":
                    results[i] = repeat
                elif difference := _difference(results[i], repeat, by_value=jobs[i].get("compare") == "value"):
                    results[i] = {"outcome": "nondeterministic", "message": difference,
                                  "wall_s": results[i].get("wall_s"), "child": results[i].get("child")}
        return results

    def _run_on(self, server: _ForkServer, jobs: list[dict[str, Any]], limits: dict[str, Any]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        while len(results) < len(jobs):
            try:
                if not server.running:
                    self.restarts += server.started
                    self._start(server)
                results += server.answers(jobs[len(results):], limits)
            except (SandboxUnavailable, OSError) as err:  # the fork server cannot be started again
                failed = {"outcome": "sandbox_error", "message": f"the sandbox cannot restart: {err}"}
                results += [dict(failed) for _ in jobs[len(results):]]
        return results

    def close(self) -> None:
        for server in self.servers:
            server.close(graceful=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self, server: _ForkServer) -> None:
        server.start()
        missing = [layer for layer in self.require if not server.layers.get(layer)]
        if missing:
            self.close()
            fixes = "; ".join(f"{layer} {FIXES[layer]}" for layer in missing if layer in FIXES)
            raise SandboxUnavailable(
                f"sandbox cannot provide required isolation: {', '.join(missing)}{f' ({fixes})' if fixes else ''}; "
                "to run without it anyway, remove it from sandbox.require in the config")

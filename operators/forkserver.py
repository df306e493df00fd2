"""The fork server: a warm, single-threaded process that forks one isolated child per job.

Run as `python -m operators.forkserver`; `operators.sandbox.Sandbox` starts it and speaks `operators.wire`
messages over its stdin/stdout. The server enters a fresh network namespace once, reports which isolation
layers it could set up, then for each job forks a child that applies the per-job layers, runs the call under
the tracer and writes its JSON result to a pipe. The server enforces the wall-clock timeout and the result
size cap, and kills the child's whole process group when the job ends.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from typing import Any

from operators import calls, isolation
from operators.wire import recv_msg, send_msg, wait_readable, write_all

_layers: dict[str, bool] = {}
_syscall_filter = isolation.syscall_filter()
_SIGNAL_OUTCOMES = {signal.SIGXCPU: "timeout", signal.SIGKILL: "killed", signal.SIGSEGV: "killed"}


def main() -> None:
    protocol_out = os.dup(1)
    os.dup2(2, 1)  # a stray print in this process must not corrupt the protocol
    _layers.update({
        "network_namespace": isolation.enter_network_namespace(),
        "seccomp": _syscall_filter is not None,
        "rlimits": True,
        "timeout": True,
        "scrubbed_env": True,
        "scratch_dir": True,
        "unprivileged_uid": isolation.can_drop_privileges(),
        "readonly_fs": not os.access("/", os.W_OK),
        "no_capabilities": isolation.undumpable(),
    })
    send_msg(protocol_out, {"layers": _layers})
    # Objects that exist now are never collected: a child's collector then leaves them alone instead of
    # touching (and so copying) every page shared with this process.
    gc.freeze()
    while True:
        try:
            request = recv_msg(0)
        except EOFError:
            return
        send_msg(protocol_out, serve(request["job"], request["limits"]))


def serve(job: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
    """Run one job in a fresh child, in a fresh, empty scratch directory removed afterwards."""
    started = time.monotonic()
    scratch = tempfile.mkdtemp(prefix="tracecot-job-")
    if _layers["unprivileged_uid"]:
        os.chown(scratch, isolation.NOBODY, isolation.NOBODY)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(job, limits, scratch, write_end)
    os.close(write_end)
    try:
        deadline = started + limits["runs"] * limits["timeout_s"]
        data, outcome = _collect(read_end, deadline, limits["max_result_bytes"])
        _kill_group(pid)  # the result is in (or never will be): whatever still runs goes, so waitpid returns
        status = os.waitpid(pid, 0)[1]
    finally:
        os.close(read_end)
        _kill_group(pid)
        shutil.rmtree(scratch, ignore_errors=True)
    result = _interpret(data, outcome, status)
    result["wall_s"] = round(time.monotonic() - started, 6)
    return result


def _child(job: dict[str, Any], limits: dict[str, Any], scratch: str, write_end: int) -> None:
    """Runs in the forked child: isolate, execute, write the result, and never return."""
    try:
        os.setsid()
        _close_inherited_fds(keep=write_end)
        os.chdir(scratch)
        isolation.scrub_environment(scratch)
        isolation.limit_resources(limits)
        if _layers["unprivileged_uid"] and os.geteuid() == 0:
            isolation.drop_privileges()
        isolation.drop_capabilities()
        if _syscall_filter is not None:
            _syscall_filter.load()
        isolation.watch_violations()
        result = calls.run_repeated(job, limits["runs"], limits["timeout_s"])
        data = calls.encode_result(result)
    except MemoryError:
        data = b'{"outcome":"memory","message":"memory limit reached"}'
    except BaseException as exc:  # user code may raise SystemExit or worse; the child reports it
        data = json.dumps({"outcome": "sandbox_error", "message": f"{type(exc).__name__}: {exc}"[:300],
                           "detail": traceback.format_exc(limit=-3)[-1000:]}).encode()
    try:
        write_all(write_end, data)
    finally:
        os._exit(0)


def _close_inherited_fds(keep: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, keep)
    os.closerange(keep + 1, 65536)


def _collect(fd: int, deadline: float, cap: int) -> tuple[bytes, str | None]:
    """Read the child's result until EOF; stop early with an outcome on timeout or oversize."""
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            wait_readable(fd, deadline)
        except TimeoutError:
            return b"", "timeout"
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks), None
        size += len(chunk)
        if size > cap:
            return b"", "output_limit"
        chunks.append(chunk)


def _interpret(data: bytes, outcome: str | None, status: int) -> dict[str, Any]:
    if outcome == "timeout":
        return {"outcome": "timeout", "message": "wall-clock limit reached"}
    if outcome == "output_limit":
        return {"outcome": "output_limit", "message": "result larger than the cap"}
    if data:
        try:
            return json.loads(data)
        except json.JSONDecodeError:
            return {"outcome": "sandbox_error", "message": "child wrote an unreadable result"}
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return {"outcome": _SIGNAL_OUTCOMES.get(sig, "killed"), "message": f"killed by {signal.Signals(sig).name}"}
    return {"outcome": "killed", "message": f"exited with status {os.waitstatus_to_exitcode(status)} "
            "before writing a result"}


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())

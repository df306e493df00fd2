"""The fork server: a warm, single-threaded process that forks isolated children to run jobs.

Run as `python -m operators.sandbox.forkserver`; `operators.sandbox.client.Sandbox` starts it and speaks
`operators.sandbox.wire` messages over its stdin/stdout: a request holds a list of jobs, and one result message
comes back per job, in order. The server enters a fresh network namespace once, reports which isolation layers it
could set up, then forks a child that applies the per-child layers, runs the call under the tracer and writes its
JSON result to a pipe. A child runs the jobs of one problem (consecutive jobs with the same code, up to
`jobs_per_child`), never jobs of two problems: nothing one problem's code does can reach another's result. The
server holds each job to its CPU time (read from /proc, RLIMIT_CPU as the backstop), the wall-clock safety net and
the result size cap, and kills the child's whole process group when it is done with it. Each run of a job happens
in one server, once; the client asks a second server, started with another hash seed, to run it again
(`operators.sandbox.client`)."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from typing import Any

from operators.sandbox import calls, isolation, landlock
from operators.sandbox.wire import recv_frame, recv_msg, send_frame, send_msg

_layers: dict[str, bool] = {}
_syscall_filter = isolation.syscall_filter()
_LANDLOCK_ABI = landlock.abi_version()
_READ_ROOTS = landlock.read_roots()
_LANDLOCK_RULES = landlock.Rules(_READ_ROOTS, _LANDLOCK_ABI) if _LANDLOCK_ABI else None
_TASK_CAP_FD = int(os.environ.get("TRACECOT_TASK_CAP_FD", "-1"))  # see isolation.TaskCap
_CPU_POLL_S = 0.1  # how often a running child's CPU time is read
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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
        "filesystem": landlock.works(_READ_ROOTS, _LANDLOCK_ABI),
        "no_capabilities": isolation.undumpable(),
        "task_cap": _TASK_CAP_FD >= 0,
    })
    send_msg(protocol_out, {"layers": _layers})
    calls.warm_up()
    # Objects that exist now are never collected: a child's collector then leaves them alone instead of
    # touching (and so copying) every page shared with this process.
    gc.freeze()
    while True:
        try:
            request = recv_msg(0)
        except EOFError:
            return
        for result in serve(request["jobs"], request["limits"]):
            send_frame(protocol_out, result)


def serve(jobs: list[dict[str, Any]], limits: dict[str, Any]) -> Iterator[bytes]:
    """Each job's result as JSON, in order: the jobs of one problem share a child (up to `jobs_per_child`); when a
    job ends its child (timeout, crash, oversized result) the jobs after it start a new one."""
    done = 0
    while done < len(jobs):
        for result in _run_child(_next_group(jobs[done:], limits["jobs_per_child"]), limits):
            done += 1
            yield result


def _next_group(jobs: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """The jobs the next child runs: the first job, and those right after it with the same code and kind."""
    group = [jobs[0]]
    for job in jobs[1:size]:
        if job["code"] != group[0]["code"] or job.get("kind") != group[0].get("kind"):
            break
        group.append(job)
    return group


def _run_child(jobs: list[dict[str, Any]], limits: dict[str, Any]) -> Iterator[bytes]:
    """Run jobs in one fresh child, in a fresh, empty scratch directory removed afterwards; stops after the
    first job that ends the child."""
    scratch = tempfile.mkdtemp(prefix="tracecot-job-")
    if _layers["unprivileged_uid"]:
        os.chown(scratch, isolation.NOBODY, isolation.NOBODY)
    ruleset = _LANDLOCK_RULES.ruleset(scratch) if _LANDLOCK_RULES and _layers["filesystem"] else -1
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(jobs, limits, scratch, write_end, ruleset)
    os.close(write_end)
    if ruleset >= 0:
        os.close(ruleset)
    try:
        for _ in jobs:
            started = time.monotonic()
            result, ended = _collect(read_end, started + limits["wall_timeout_s"], limits, pid)
            yield _stamped(result, round(time.monotonic() - started, 6), pid)
            if ended:
                return
    finally:
        os.close(read_end)
        _kill_group(pid)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        _remove(scratch)


def _remove(scratch: str) -> None:
    """Remove a scratch directory however deep user code nested it: `shutil.rmtree` recurses, and raises
    RecursionError on a tree a thousand levels deep."""
    try:
        shutil.rmtree(scratch, ignore_errors=True)
    except RecursionError:
        import subprocess  # only here: the fork server's children should not inherit its pages for nothing

        subprocess.run(["rm", "-rf", "--one-file-system", scratch], check=False)


def _child(jobs: list[dict[str, Any]], limits: dict[str, Any], scratch: str, write_end: int, ruleset: int) -> None:
    """Runs in the forked child: isolate, execute each job, write each result, and never return."""
    try:
        _isolate(scratch, write_end, {**limits, "cpu_s": limits["cpu_s"] * len(jobs)}, ruleset)
        for number, job in enumerate(jobs, 1):
            send_frame(write_end, _run_job(job, limits, last=number == len(jobs)))
    except BaseException as exc:
        send_frame(write_end, _error(exc))
    finally:
        os._exit(0)


def _isolate(scratch: str, write_end: int, limits: dict[str, Any], ruleset: int) -> None:
    """Apply the per-child layers, strongest last: the seccomp filter would refuse some of the others.
    The task cap and Landlock come first, before inherited descriptors are closed: the cap's `cgroup.procs`
    and the ruleset are among them."""
    os.setsid()
    if _TASK_CAP_FD >= 0:
        isolation.join_task_cap(_TASK_CAP_FD)
    if ruleset >= 0:
        landlock.restrict(ruleset)
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


def _run_job(job: dict[str, Any], limits: dict[str, Any], last: bool) -> bytes:
    isolation.violations.clear()
    try:
        isolation.limit_cpu_from_now(limits["cpu_s"])
        data = calls.encode_result(calls.run_job(job), job.get("compare_only", False))
    except MemoryError:
        data = b'{"outcome":"memory","message":"memory limit reached"}'
    except BaseException as exc:  # user code may raise SystemExit or worse; the child reports it
        data = _error(exc)
    if not last:  # cycles the job left behind go now, so no finaliser of theirs runs during the next job's trace
        gc.collect()
    return data


def _error(exc: BaseException) -> bytes:
    return json.dumps({"outcome": "sandbox_error", "message": f"{type(exc).__name__}: {exc}"[:300],
                       "detail": traceback.format_exc(limit=-3)[-1000:]}).encode()


def _close_inherited_fds(keep: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, keep)
    os.closerange(keep + 1, 65536)


def _collect(fd: int, deadline: float, limits: dict[str, Any], pid: int) -> tuple[bytes | dict[str, Any], bool]:
    """The next job's result (the child's JSON, passed on unparsed, or the server's own verdict), and whether
    the child is over: it died, ran past its CPU time or the wall-clock net, or wrote too much.

    CPU time decides, and it is watched from here (the child's CPU since its last result, from /proc), not by
    the child, whose clock and signal handlers the code it runs can change. RLIMIT_CPU is the backstop."""
    cpu_limit, started_cpu = limits["timeout_s"], _cpu_seconds(pid)
    over_cpu = {"outcome": "timeout", "message": f"CPU-time limit reached ({cpu_limit} s)"}
    over_wall = {"outcome": "timeout", "message": f"wall-clock limit reached ({limits['wall_timeout_s']} s)"}
    try:
        while not select.select([fd], [], [], max(0.0, min(deadline - time.monotonic(), _CPU_POLL_S)))[0]:
            if time.monotonic() >= deadline:
                return over_wall, True
            if _cpu_seconds(pid) - started_cpu > cpu_limit:
                return over_cpu, True
        result = recv_frame(fd, deadline, limits["max_result_bytes"])
    except OverflowError:
        return {"outcome": "output_limit", "message": "result larger than the cap"}, True
    except TimeoutError:
        return over_wall, True
    except EOFError:
        _kill_group(pid)
        _, status, usage = os.wait4(pid, 0)
        return _died(status, usage.ru_utime + usage.ru_stime - started_cpu >= cpu_limit), True
    if _cpu_seconds(pid) - started_cpu > cpu_limit:  # it finished, but past its time
        return over_cpu, True
    return result, False


def _cpu_seconds(pid: int) -> float:
    """CPU seconds a child has used so far (all its threads), or 0.0 where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def _stamped(result: bytes | dict[str, Any], wall_s: float, pid: int) -> bytes:
    """The result with the job's wall time and child added: spliced into the child's JSON object as text, so
    a large trace is not decoded and encoded again here (the client parses and checks it)."""
    stamp = f'"wall_s":{wall_s},"child":{pid}'.encode()
    if isinstance(result, dict):
        return json.dumps(result, separators=(",", ":")).encode()[:-1] + b"," + stamp + b"}"
    if not (result.startswith(b"{") and result.endswith(b"}")):
        return _stamped({"outcome": "sandbox_error", "message": "child wrote an unreadable result"}, wall_s, pid)
    return result[:-1] + b"," + stamp + b"}"


def _died(status: int, out_of_cpu: bool) -> dict[str, Any]:
    """The outcome of a child that ended without a result: over its job's CPU time it is a timeout, whichever
    signal ended it (a child that ignores SIGXCPU meets the hard limit's SIGKILL)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        outcome = "timeout" if out_of_cpu else _SIGNAL_OUTCOMES.get(sig, "killed")
        return {"outcome": outcome, "message": f"killed by {signal.strsignal(sig) or sig}"}
    return {"outcome": "killed", "message": f"exited with status {os.waitstatus_to_exitcode(status)} "
            "before writing a result"}


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())

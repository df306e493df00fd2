"""The isolation layers a sandbox child applies to itself, each one detected rather than assumed.

Process-wide layers (`enter_network_namespace`, `undumpable`) are applied once by the fork server; per-job
layers (`limit_resources`, `scrub_environment`, `drop_capabilities`, the seccomp filter) by each forked child
before user code runs.
The read-only root comes from running the fork server under bubblewrap (`operators.sandbox`) where that
works. Not done yet: dropping to an unprivileged uid.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
from typing import Any

CLONE_NEWNET = 0x40000000
CLONE_THREAD = 0x00010000
_DENIED = ("socket", "socketpair", "fork", "vfork", "execve", "execveat", "kill", "tkill", "tgkill", "ptrace",
           "process_vm_readv", "process_vm_writev", "unshare", "setns", "mount", "umount2", "bpf",
           "perf_event_open", "io_uring_setup", "keyctl", "add_key", "request_key")
PR_SET_DUMPABLE = 4
_LIBC = ctypes.CDLL(None, use_errno=True)
_CAPABILITY_VERSION_3 = 0x20080522
# Audit events that mean user code tried to leave the sandbox. seccomp is the boundary; the audit hook only
# names the attempt, so the outcome says "sandbox_violation" instead of a bare PermissionError.
_WATCHED = ("socket.", "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
            "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill")
violations: list[str] = []


def enter_network_namespace() -> bool:
    """Move this process into a new, empty network namespace; False where the kernel refuses."""
    return _LIBC.unshare(CLONE_NEWNET) == 0


def undumpable() -> bool:
    """Make this process's /proc entries (open pipes, memory) unreachable for processes without privileges."""
    return _LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Give up every capability: root without them cannot reach the fork server's /proc entries."""
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    if _LIBC.capset(ctypes.byref(header), (_CapData * 2)()) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def limit_resources(limits: dict[str, Any]) -> None:
    mib = 1 << 20
    cpu = int(limits["cpu_s"])
    _set(resource.RLIMIT_AS, limits["memory_mb"] * mib)
    # The hard CPU limit sits above the soft one so the child gets SIGXCPU (reported as a timeout) first.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    _set(resource.RLIMIT_FSIZE, limits["file_size_mb"] * mib)
    _set(resource.RLIMIT_NOFILE, limits["open_files"])
    _set(resource.RLIMIT_CORE, 0)


def _set(which: int, value: int) -> None:
    resource.setrlimit(which, (value, value))


def scrub_environment(home: str) -> None:
    """Replace the environment, so no credential or API key reaches user code."""
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8"})


def syscall_filter() -> Any | None:
    """A seccomp filter denying sockets and new processes (threads still work); None if unavailable.

    Built once by the fork server: building costs milliseconds, loading a built one in a child does not.
    """
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError):
        return None
    deny = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in _DENIED:
        rules.add_rule(deny, name)
    # clone without CLONE_THREAD makes a process; clone3 answers ENOSYS so libc falls back to clone.
    rules.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_THREAD, 0))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    return rules


def watch_violations() -> None:
    """Record and refuse escape attempts that Python's audit hooks can see."""
    import sys

    def hook(event: str, args: tuple) -> None:
        if event.startswith(_WATCHED):
            violations.append(event)
            raise PermissionError(f"sandbox: {event} is not allowed")

    sys.addaudithook(hook)

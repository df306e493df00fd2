"""The isolation layers a sandbox child applies to itself, each one detected rather than assumed.

Process-wide layers (`enter_network_namespace`, `undumpable`) are applied once by the fork server; per-job
layers (`limit_resources`, `scrub_environment`, `drop_capabilities`, the seccomp filter) by each forked child
before user code runs.
The read-only root comes from running the fork server under bubblewrap (`operators.sandbox.client`) where that
works. A child started as root drops to `nobody` only where `nobody` can still read the standard library:
an interpreter under root's home (pyenv) cannot be read by anyone else, unless bubblewrap re-exposes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import math
import os
import resource
from typing import Any

CLONE_NEWNET = 0x40000000
CLONE_THREAD = 0x00010000
_DENIED = ("socket", "socketpair", "fork", "vfork", "execve", "execveat", "kill", "tkill", "tgkill", "ptrace",
           "process_vm_readv", "process_vm_writev", "unshare", "setns", "mount", "umount2", "bpf",
           "perf_event_open", "io_uring_setup", "keyctl", "add_key", "request_key",
           # File metadata, which Landlock does not cover: a child running as root still owns root's files.
           "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes",
           "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
           "fremovexattr",
           # Other processes of the same uid: priorities, CPUs, I/O class, signals by pidfd, their open files.
           "setpriority", "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr", "ioprio_set",
           "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
           # System V IPC lives outside the process (and its memory limit) and outlives it.
           "shmget", "shmat", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop",
           "semctl",
           # POSIX message queues are created even where Landlock refuses the open, and outlive the child.
           "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
           # Kernel AIO contexts are counted machine-wide (aio-max-nr).
           "io_setup", "io_submit", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents",
           # Names of files in directories the child may not list; files by handle; page-fault handlers.
           "inotify_init", "inotify_init1", "inotify_add_watch", "fanotify_init", "name_to_handle_at",
           "open_by_handle_at", "userfaultfd")
# ioctl requests that pass data to the kernel carry the direction bit _IOC_WRITE: setters such as
# FS_IOC_SETFLAGS or FS_IOC_SETVERSION, allowed on a read-only descriptor, so Landlock does not stop them.
# Python's own ioctls (FIOCLEX, TCGETS, FIONBIO) have no direction bits.
_IOC_WRITE = 0x40000000
# fcntl commands that act on other processes' use of a file: leases (block writers) and directory notices.
_F_SETLEASE, _F_NOTIFY = 1024, 1026
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_CMP_NE = 1
_SCMP_CMP_EQ = 4
_SCMP_CMP_MASKED_EQ = 7
_NR_SCMP_ERROR = -1
NOBODY = 65534
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


def drop_privileges() -> None:
    """Become `nobody` (no supplementary groups): no file or process of another user is reachable."""
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def can_drop_privileges() -> bool:
    """Whether children can run unprivileged: already not root, or `nobody` can import the standard library."""
    if os.geteuid() != 0:
        return True
    pid = os.fork()
    if pid == 0:
        try:
            drop_privileges()
            with open(os.path.join(os.path.dirname(os.__file__), "decimal.py"), "rb"):
                os._exit(0)
        finally:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Give up every capability: root without them cannot reach the fork server's /proc entries."""
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    if _LIBC.capset(ctypes.byref(header), (_CapData * 2)()) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


class TaskCap:
    """A cgroup (v1 `pids` controller) that caps the tasks — processes and threads — of a fork server's
    children at `limit`: raw `clone` threads escape the address-space limit, and uid 0 has no RLIMIT_NPROC.

    Made by the client, before bubblewrap makes /sys read-only; the fork server inherits `fd`, the cgroup's
    `cgroup.procs` open for writing, and each child writes "0" to it to join. `fd` is -1 where the controller
    cannot be used (cgroup v2 only, no permission): the layer `task_cap` is then reported inactive.
    """

    ROOT = "/sys/fs/cgroup/pids"

    def __init__(self, name: str, limit: int) -> None:
        self.path = os.path.join(self.ROOT, f"tracecot-{os.getpid()}-{name}")
        self.fd = -1
        try:
            _remove_stale(self.ROOT)
            os.makedirs(self.path, exist_ok=True)
            with open(os.path.join(self.path, "pids.max"), "w") as cap:
                cap.write(str(limit))
            self.fd = os.open(os.path.join(self.path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            self.remove()

    def remove(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


def _remove_stale(root: str) -> None:
    """Remove the caps of clients that are gone (a client killed before it could remove its own)."""
    for name in os.listdir(root):
        owner = name.split("-")[1] if name.startswith("tracecot-") else ""
        if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(root, name))


def join_task_cap(fd: int) -> None:
    """Move this process into the cap's cgroup (its threads and children follow it)."""
    os.write(fd, b"0")


def limit_resources(limits: dict[str, Any]) -> None:
    mib = 1 << 20
    cpu = int(limits["cpu_s"])
    _set(resource.RLIMIT_AS, limits["memory_mb"] * mib)
    # The hard CPU limit sits above the soft one so the child gets SIGXCPU (reported as a timeout) first.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    _set(resource.RLIMIT_FSIZE, limits["file_size_mb"] * mib)
    _set(resource.RLIMIT_NOFILE, limits["open_files"])
    _set(resource.RLIMIT_CORE, 0)


def limit_cpu_from_now(seconds: int) -> None:
    """RLIMIT_CPU counts a process's whole life: move the soft limit so the next `seconds` of CPU end in
    SIGXCPU, for a child that runs several jobs in turn; the hard limit, set once, bounds them all. A backstop:
    the fork server watches each job's CPU time itself, and code that ignores SIGXCPU does not escape that."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(usage.ru_utime + usage.ru_stime) + seconds
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard - 1), hard))


def _set(which: int, value: int) -> None:
    resource.setrlimit(which, (value, value))


def scrub_environment(home: str) -> None:
    """Replace the environment, so no credential or API key reaches user code."""
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8"})


class SyscallFilter:
    """A compiled seccomp BPF program; `load` installs it in the calling process with two prctl calls."""

    def __init__(self, program: bytes) -> None:
        self._program = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(len(program) // 8, ctypes.cast(self._program, ctypes.c_void_p))

    def load(self) -> None:
        if (_LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                or _LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0) != 0):
            raise OSError(ctypes.get_errno(), "loading the seccomp filter failed")


def syscall_filter() -> SyscallFilter | None:
    """The seccomp filter denying sockets and new processes (threads still work); None without libseccomp.

    libseccomp compiles the rules once, in the fork server; each child only loads the compiled program.
    """
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    context = ctypes.c_void_p(lib.seccomp_init(_SCMP_ACT_ALLOW))
    try:
        for name in _DENIED:
            _deny(lib, context, name, errno.EPERM)
        # clone without CLONE_THREAD makes a process; clone3 answers ENOSYS so libc falls back to clone.
        _deny(lib, context, "clone", errno.EPERM, _ArgCmp(0, _SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0))
        _deny(lib, context, "clone3", errno.ENOSYS)
        # prlimit on another process would change its limits (a CPU limit of 1 s kills the caller).
        _deny(lib, context, "prlimit64", errno.EPERM, _ArgCmp(0, _SCMP_CMP_NE, 0, 0))
        _deny(lib, context, "ioctl", errno.EPERM, _ArgCmp(1, _SCMP_CMP_MASKED_EQ, _IOC_WRITE, _IOC_WRITE))
        for command in (_F_SETLEASE, _F_NOTIFY):
            _deny(lib, context, "fcntl", errno.EPERM, _ArgCmp(1, _SCMP_CMP_EQ, command, 0))
        return SyscallFilter(_export(lib, context))
    except OSError:
        return None
    finally:
        lib.seccomp_release(context)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _deny(lib: ctypes.CDLL, context: ctypes.c_void_p, name: str, code: int, *conditions: _ArgCmp) -> None:
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number == _NR_SCMP_ERROR:
        return  # not a system call on this architecture
    array = (_ArgCmp * len(conditions))(*conditions)
    if lib.seccomp_rule_add_array(context, 0x00050000 | code, number, len(conditions), array) != 0:
        raise OSError(f"seccomp: cannot add a rule for {name}")


def _export(lib: ctypes.CDLL, context: ctypes.c_void_p) -> bytes:
    read_end, write_end = os.pipe()  # a filter is a few hundred bytes: it fits the pipe's buffer
    try:
        failed = lib.seccomp_export_bpf(context, write_end)
        os.close(write_end)
        write_end = -1
        program = os.read(read_end, 1 << 16)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if failed or not program:
        raise OSError("seccomp: cannot export the filter")
    return program


def watch_violations() -> None:
    """Record and refuse escape attempts that Python's audit hooks can see."""
    import sys

    def hook(event: str, args: tuple) -> None:
        if event.startswith(_WATCHED):
            violations.append(event)
            raise PermissionError(f"sandbox: {event} is not allowed")

    sys.addaudithook(hook)

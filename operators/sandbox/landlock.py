"""Filesystem containment with Landlock: a sandbox child reads only what the interpreter needs, writes only
its scratch directory.

Landlock (Linux >= 5.13) lets an unprivileged process restrict itself, and every process it could start, for
good; it needs no root, no namespaces and no bubblewrap, and stacks with seccomp. The fork server builds each
child's ruleset (`Rules.ruleset`) and the child enforces it (`restrict`) before user code runs. What it may
read: the interpreter's standard library and packages, the system's shared libraries and a few device and
configuration files (`read_roots`) — nothing under the home directory but the interpreter, no other temp
directory (Ray's logs, other jobs), no output, no /proc.
What it may write: its scratch directory. TCP bind/connect (ABI 4) and signals or abstract sockets to
processes outside the sandbox (ABI 6) are refused too, where the kernel knows them.

Limits, stated plainly: Landlock checks opening, listing, creating, removing and renaming; it does not hide
metadata (`os.stat`, `os.path.exists`, `readlink`, `listxattr` still answer outside the allowed trees), and a
file already open stays usable (a child closes every inherited descriptor before user code runs).
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import sysconfig
from collections.abc import Callable

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_TRUNCATE, _IOCTL_DEV = 1 << 14, 1 << 15
# Every filesystem right each ABI version knows: 13 in ABI 1, REFER in 2, TRUNCATE in 3, IOCTL_DEV in 5.
_FS_RIGHTS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_NET_TCP = (1 << 0) | (1 << 1)  # bind and connect, from ABI 4
_SCOPES = (1 << 0) | (1 << 1)  # abstract unix sockets and signals, from ABI 6
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV  # what a rule on a file may hold
_READ = _EXECUTE | _READ_FILE | _READ_DIR
_ALL = (1 << 64) - 1
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.syscall.restype = ctypes.c_long
_SYSTEM_READS = ("/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib", "/lib64", "/usr/share/zoneinfo",
                 "/etc/ld.so.cache", "/etc/localtime", "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The Landlock ABI this kernel offers; 0 where Landlock is missing or disabled."""
    version = _LIBC.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def read_roots() -> list[str]:
    """The files and trees a child may read: the interpreter's and the system's libraries, nothing else."""
    paths = sysconfig.get_paths()
    interpreter = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    interpreter |= {os.path.dirname(os.__file__), sys.base_prefix + "/lib", sys.prefix + "/lib"}
    found = {os.path.realpath(p) for p in (*interpreter, *_SYSTEM_READS) if os.path.exists(p)}
    return sorted(p for p in found if not any(p.startswith(q + os.sep) for q in found))


class Rules:
    """The rules every child shares, opened once per fork server; `ruleset` adds one child's scratch directory.

    The server builds each child's ruleset before forking it (a warm process does this in a few system calls,
    a fresh child would first fault in the pages ctypes touches), so the child only calls `restrict`.
    """

    def __init__(self, readable: list[str], abi: int) -> None:
        self.abi = abi
        self.handled = _FS_RIGHTS[max(v for v in _FS_RIGHTS if v <= abi)]
        # /dev/null may be written too: a child points its standard streams at it.
        self._rules = [(os.open(path, os.O_PATH | os.O_CLOEXEC), self._rights(path, _READ | (
            _WRITE_FILE if path == os.devnull else 0))) for path in readable]

    def ruleset(self, writable: str) -> int:
        """A new ruleset file descriptor: read the shared paths, read and write `writable`."""
        attr = _RulesetAttr(self.handled, _NET_TCP if self.abi >= 4 else 0, _SCOPES if self.abi >= 6 else 0)
        size = ctypes.sizeof(_RulesetAttr) if self.abi >= 6 else (16 if self.abi >= 4 else 8)
        fd = _LIBC.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
        if fd < 0:
            raise OSError(ctypes.get_errno(), "landlock: cannot create a ruleset")
        try:
            for parent, rights in self._rules:
                _add_rule(fd, parent, rights)
            scratch = os.open(writable, os.O_PATH | os.O_CLOEXEC)
            try:
                _add_rule(fd, scratch, self._rights(writable, self.handled))
            finally:
                os.close(scratch)
        except OSError:
            os.close(fd)
            raise
        return fd

    def _rights(self, path: str, rights: int) -> int:
        return rights & self.handled & (_ALL if os.path.isdir(path) else _FILE_RIGHTS)


def restrict(ruleset: int) -> None:
    """Enforce a ruleset on this process and everything it could start, for good."""
    if _LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 \
            or _LIBC.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
        raise OSError(ctypes.get_errno(), "landlock: cannot restrict this process")


def contain(writable: str, readable: list[str], abi: int) -> None:
    """Restrict this process for good: read `readable`, read and write `writable`, nothing else on disk."""
    ruleset = Rules(readable, abi).ruleset(writable)
    try:
        restrict(ruleset)
    finally:
        os.close(ruleset)


def _add_rule(ruleset: int, parent: int, rights: int) -> None:
    rule = _PathBeneathAttr(rights, parent)
    if _LIBC.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule),
                     ctypes.c_uint32(0)) != 0:
        raise OSError(ctypes.get_errno(), "landlock: cannot add a rule")


def works(readable: list[str], abi: int) -> bool:
    """Whether containment holds here, tried in a throwaway child: the standard library stays readable, the
    root directory cannot be listed, and nothing can be created in /tmp (refused by Landlock, or by a read-only
    root under bubblewrap)."""
    if abi < 1:
        return False
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            contain("/dev/null", readable, abi)
            with open(os.__file__, "rb"):
                pass
            probe = f"/tmp/.tracecot-probe-{os.getpid()}"
            if _refused(lambda: os.listdir("/")) and _refused(lambda: os.open(probe, os.O_CREAT | os.O_WRONLY)):
                code = 0
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _refused(action: Callable[[], object]) -> bool:
    try:
        action()
    except OSError as err:
        return err.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    return False

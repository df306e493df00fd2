"""Which jobs may run one after another in the same sandbox child.

A fork per job costs more than tracing the job itself (fork, exit and the first touch of copied pages, ~2 ms
on a small VM, against ~0.4 ms to trace a typical call). Jobs whose code can reach nothing outside the
namespace it runs in cannot change what a later job in the same interpreter sees, so the fork server lets
such jobs share a child (`jobs_per_child`); every other job gets a child of its own.

"Reaches nothing outside" is decided from the syntax alone and errs on the side of a private child. Code is
self-contained when it:
- imports nothing (no module object, so no `sys`, `os`, `random`, threads or files);
- names no reflective builtin and no dunder name (`__builtins__` is the builtins module itself);
- reads no attribute that starts with `_` (dunders lead to globals, classes and the interpreter) or that
  belongs to frames, generators, coroutines or tracebacks (`f_back`, `gi_frame`, `tb_frame`, …: a frame's
  `f_builtins` is writable shared state).
Anything the check cannot parse is treated as not self-contained. Every child still applies every isolation
layer; sharing only decides how many jobs one child serves.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from functools import lru_cache

_REFLECTIVE = frozenset({"__import__", "getattr", "setattr", "delattr", "vars", "globals", "locals", "eval",
                         "exec", "compile", "breakpoint", "open", "input", "help", "memoryview"})
_INTERNAL_ATTRIBUTE = re.compile(r"^(_|(f|gi|cr|ag|tb)_)")


@lru_cache(maxsize=64)  # the fork server asks again about the job that ended the previous child's run
def self_contained(*sources: str) -> bool:
    """Whether code (and the argument text that calls it) can only touch its own namespace."""
    try:
        return all(_self_contained(ast.walk(ast.parse(source))) for source in sources)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def _self_contained(nodes: Iterable[ast.AST]) -> bool:
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            return False
        if isinstance(node, ast.Name) and (node.id in _REFLECTIVE or node.id.startswith("__")):
            return False
        if isinstance(node, ast.Attribute) and _INTERNAL_ATTRIBUTE.match(node.attr):
            return False
    return True

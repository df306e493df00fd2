"""Canonical value text: literals read back with `ast.literal_eval`, everything else is type-tagged.

Limits, stated plainly: values deeper than `MAX_DEPTH` render as `<...>` (not a literal, so a value cut there is
never taken for one); integers too long for `repr` (Python's 4,300-digit limit) as `<int of N bits>`; a text
longer than the caller's limit is cut and the caller is told (`render` returns a flag), never silently.
Rendering stops once the text is past the limit, so a value of a million items costs about as much as one of a
hundred (the tracer renders every changed local at every step). A set is the exception: its items are sorted by
their text, so all are rendered.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

MAX_DEPTH = 12
# Whether a set whose iteration order depends on the hash seed (or on memory addresses) was rendered since
# the last `reset_seed_order`: the sandbox then checks the call under more seeds.
_seed_ordered = [False]
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_SCALARS = (bool, int, str, bytes, type(None))
_INT_BITS = 14_000  # below Python's default 4,300-digit limit on int-to-text conversion (~14,284 bits)


def render(value: Any, limit: int = 10_000) -> tuple[str, bool]:
    """Return (text, truncated) for `value`, cutting the text at `limit` characters."""
    text = _render(value, 0, set(), limit)
    if len(text) > limit:
        return text[:limit] + "…", True
    return text, False


def is_immutable_scalar(value: Any) -> bool:
    """True for values whose identity implies their content (no need to re-render)."""
    return type(value) in _SCALARS or type(value) is float


def parse_literal(text: str) -> Any:
    """`ast.literal_eval` that raises ValueError for anything that is not a literal."""
    try:
        return ast.literal_eval(text.strip())
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as err:
        raise ValueError(f"not a Python literal: {text[:80]!r}") from err


def equal_literals(expected: str, output: str) -> bool:
    """Python `==` on two values written as text, as the data sets' own asserts compare; an expectation that is
    not a literal passes, an output that is not one fails."""
    try:
        wanted = parse_literal(expected)
    except ValueError:
        return True
    try:
        return bool(wanted == parse_literal(output))
    except (ValueError, RecursionError):
        return False


def valid_text(value: Any) -> Any:
    """`value` (JSON-like) with every string made encodable as UTF-8: a lone surrogate, which JSON can carry
    but Parquet cannot store, becomes its escape text (`\\ud800`). Anything else is returned as it is."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [valid_text(item) for item in value]
    if isinstance(value, dict):
        return {valid_text(key): valid_text(item) for key, item in value.items()}
    return value


def canonical(text: str) -> str | None:
    """Canonical rendering of a literal's text, or None when the text is not a literal."""
    try:
        value = parse_literal(text)
    except ValueError:
        return None
    rendered, _ = render(value)
    return rendered


def _render(value: Any, depth: int, seen: set[int], budget: int) -> str:
    """The value's text; or, once it is longer than `budget` characters, a prefix of it longer than that."""
    kind = type(value)
    if kind is int and value.bit_length() > _INT_BITS:
        return f"<int of {value.bit_length()} bits>"
    if kind in _SCALARS:
        return repr(value)
    if kind is float:
        return repr(value) if math.isfinite(value) else f"float('{value}')"
    if depth >= MAX_DEPTH:
        return "<...>"
    if kind in (list, tuple, set, frozenset, dict):
        if id(value) in seen:
            return "[...]" if kind is list else "{...}"
        seen.add(id(value))
        try:
            return _render_container(value, depth + 1, seen, budget)
        finally:
            seen.discard(id(value))
    return _render_other(value, depth, seen, budget)


def _render_container(value: Any, depth: int, seen: set[int], budget: int) -> str:
    kind = type(value)
    if kind in (set, frozenset):
        return _render_set(value, depth, seen, budget)
    opening, closing = {dict: "{}", list: "[]", tuple: "()"}[kind]
    parts: list[str] = []
    length = 1  # of the text so far
    for item in value.items() if kind is dict else value:
        if length > budget:  # the caller cuts the text here anyway
            return opening + ", ".join(parts)
        start = length + 2 if parts else length
        if kind is dict:
            key = _render(item[0], depth, seen, budget - start)
            part = f"{key}: {_render(item[1], depth, seen, budget - start - len(key) - 2)}"
        else:
            part = _render(item, depth, seen, budget - start)
        parts.append(part)
        length = start + len(part)
    if kind is tuple and len(parts) == 1:
        return f"({parts[0]},)"
    return opening + ", ".join(parts) + closing


def _render_set(value: set | frozenset, depth: int, seen: set[int], budget: int) -> str:
    """Items sorted by their text, so the text does not depend on hash seeds (every item is rendered to sort)."""
    parts = [_render(item, depth, seen, budget) for item in value]
    if any(_seed_hashed(item) for item in value):
        _seed_ordered[0] = True
    text = "{" + ", ".join(sorted(parts)) + "}" if parts else "set()"
    return text if type(value) is set else f"frozenset({text if parts else ''})"


def _seed_hashed(value: Any) -> bool:
    """Whether `value`'s hash may differ between processes: strings and bytes (hash seed), objects hashed by
    identity (memory address); numbers, booleans and None hash the same everywhere."""
    if type(value) in (int, bool, float, complex, type(None)):
        return value != value  # NaN hashes by identity
    if type(value) in (tuple, frozenset):
        return any(_seed_hashed(item) for item in value)
    return True


def seed_ordered_seen() -> bool:
    """Whether a seed-ordered set was rendered since `reset_seed_order` (see `_seed_ordered`)."""
    return _seed_ordered[0]


def reset_seed_order() -> None:
    _seed_ordered[0] = False


def _render_other(value: Any, depth: int, seen: set[int], budget: int) -> str:
    """A stable type-tagged text for objects that are not literals; never a memory address. An object's
    attributes render shallowly (two levels below it at most), and an object met again inside itself as `<...>`."""
    kind = type(value)
    name = kind.__name__
    if kind.__module__ in ("builtins", "collections") and not callable(value):
        try:
            text = repr(value)
        except Exception:
            text = f"<{name}>"
        return _ADDRESS.sub("", text)
    if callable(value) and hasattr(value, "__qualname__"):
        return f"<{name} {value.__qualname__}>"
    fields = getattr(value, "__dict__", None)
    if not isinstance(fields, dict):
        return f"<{name}>"
    if id(value) in seen:
        return "<...>"
    seen.add(id(value))
    try:
        below = max(depth, MAX_DEPTH - 3) + 1
        attrs = ", ".join(f"{k}={_render(v, below, seen, budget)}" for k, v in fields.items())
    finally:
        seen.discard(id(value))
    return f"<{name} {attrs}>" if attrs else f"<{name}>"

"""Static structure of a problem's code (loops, branches) and the loop instances seen in a trace.

Shared by the tracer, the narrators and the verifier, so all three agree on what an iteration is.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from operators.trace.events import Event


@dataclass(frozen=True)
class Structure:
    loops: dict[int, int]  # loop header line -> last line of the loop
    branches: dict[int, tuple[int, int]]  # `if`/`elif` line -> (first, last) line of its body
    statements: dict[int, int]  # a later line of a multi-line statement (or header) -> its first line
    condition_names: dict[int, list[str]]  # `if`/`elif`/`while` line -> the names its condition reads
    comparisons: dict[int, tuple[str, str, str]]  # such a line whose condition is `a OP b` -> (a, OP, b)
    names: frozenset[str]  # every name the code uses: variables, parameters, functions, attributes
    functions: frozenset[str]  # the functions the code defines
    calls: dict[int, frozenset[str]]  # line -> what its statement calls (`len`, `append`, `str.join`, ...)
    lazy: frozenset[int]  # lines where part of an expression may not run: `and`/`or`, `x if c else y`, lambdas…
    tests: dict[str, int]  # the test of an `if`/`elif`/`while` (whitespace normalised) -> its line, if unique


@lru_cache(maxsize=256)
def structure(code: str) -> Structure:
    loops: dict[int, int] = {}
    branches: dict[int, tuple[int, int]] = {}
    statements: dict[int, int] = {}
    condition_names: dict[int, list[str]] = {}
    comparisons: dict[int, tuple[str, str, str]] = {}
    tree = ast.parse(code)
    for node in _statements(tree.body):
        if isinstance(node, ast.For | ast.AsyncFor | ast.While):
            loops[node.lineno] = node.end_lineno or node.lineno
        if isinstance(node, ast.If | ast.While) and node.body:
            branches[node.lineno] = (node.body[0].lineno, node.body[-1].end_lineno or node.body[-1].lineno)
            names = (n.id for n in ast.walk(node.test) if isinstance(n, ast.Name))
            condition_names[node.lineno] = list(dict.fromkeys(names))
            comparison = _simple_comparison(node.test, code)
            if comparison:
                comparisons[node.lineno] = comparison
        body = getattr(node, "body", None)
        last = body[0].lineno - 1 if isinstance(body, list) and body else node.end_lineno or node.lineno
        for line in range(node.lineno + 1, last + 1):
            statements.setdefault(line, node.lineno)
    names, functions, calls, lazy = _names(tree)
    return Structure(loops, branches, statements, condition_names, comparisons, names, functions, calls, lazy,
                     _tests(tree, code))


def _tests(tree: ast.Module, code: str) -> dict[str, int]:
    """Each condition's test source → its line, for tests that appear on one line only."""
    seen: dict[str, list[int]] = {}
    for node in _statements(tree.body):
        if isinstance(node, ast.If | ast.While):
            text = " ".join((ast.get_source_segment(code, node.test) or "").split())
            seen.setdefault(text, []).append(node.lineno)
    return {text: lines[0] for text, lines in seen.items() if text and len(lines) == 1}


def _names(tree: ast.Module) -> tuple[frozenset[str], frozenset[str], dict[int, frozenset[str]], frozenset[int]]:
    names: set[str] = set()
    functions: set[str] = set()
    calls: dict[int, set[str]] = {}
    lazy: set[int] = set()
    for node in ast.walk(tree):
        match node:
            case ast.Name(id=name) | ast.arg(arg=name) | ast.Attribute(attr=name):
                names.add(name)
            case ast.FunctionDef(name=name) | ast.AsyncFunctionDef(name=name) | ast.ClassDef(name=name):
                names.add(name)
                functions.add(name)
        if isinstance(node, ast.BoolOp | ast.IfExp | ast.Lambda | ast.ListComp | ast.SetComp | ast.DictComp
                      | ast.GeneratorExp | ast.Yield | ast.Await):
            lazy.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        body = getattr(node, "body", None)
        if isinstance(node, ast.stmt) and isinstance(body, list) and body and body[0].lineno == node.lineno:
            lazy.add(node.lineno)  # `if c: g()` on one line: the call runs only if the test holds
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
            called = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                calls.setdefault(line, set()).add(called)
    return (frozenset(names), frozenset(functions), {line: frozenset(c) for line, c in calls.items()},
            frozenset(lazy))


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement, nested ones included, without visiting expressions (which hold no statements):
    several times faster than `ast.walk`, and the tracer pays for this once per job."""
    for node in body:
        yield node
        for name in ("body", "orelse", "finalbody"):
            inner = getattr(node, name, None)
            if isinstance(inner, list):
                yield from _statements(inner)
        for block in (*getattr(node, "handlers", ()), *getattr(node, "cases", ())):
            yield from _statements(block.body)


_OPERATORS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
              ast.In: "in", ast.NotIn: "not in"}


def _simple_comparison(test: ast.expr, code: str) -> tuple[str, str, str] | None:
    """`a OP b` for a condition comparing two names or constants, else None."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _OPERATORS):
        return None
    operands = (test.left, test.comparators[0])
    if not all(isinstance(o, ast.Name | ast.Constant) for o in operands):
        return None
    left, right = (ast.get_source_segment(code, o) or "" for o in operands)
    return left, _OPERATORS[type(test.ops[0])], right


@dataclass
class LoopInstance:
    frame: int
    line: int
    headers: list[int] = field(default_factory=list)  # event index of each header visit
    iterations: int = 0  # header visits after which the body ran


class TraceView:
    """A trace with the lookups narrators and the verifier need, each computed once."""

    def __init__(self, events: list[Event], code: str) -> None:
        self.events = events
        self.code = code
        self.structure = structure(code)
        self.next_in_frame = self._next_in_frame()
        self.loops, self.loop_of = self._loop_instances()
        self.returned = {e["frame"]: e.get("value") for e in events if e["event"] == "return"}  # frame → value
        self.visit = {i: n for loop in self.loops for n, i in enumerate(loop.headers)}  # header index → visit

    def summarised(self, full: int) -> set[int]:
        """Event indices inside the middle iterations of loops longer than `2 * full + 1` iterations.

        A narrator may tell those iterations in summary; coverage does not count their state changes.
        """
        inside: set[int] = set()
        for loop in self.loops:
            if loop.iterations > 2 * full + 1:
                inside.update(range(loop.headers[full], loop.headers[loop.iterations - full]))
        return inside

    def after(self, index: int) -> Event | None:
        """The next event after `index` in the same frame."""
        nxt = self.next_in_frame[index]
        return None if nxt is None else self.events[nxt]

    def branch_taken(self, index: int) -> bool | None:
        """Whether the `if`/`while` condition evaluated at event `index` was true; None if not a branch."""
        body = self.structure.branches.get(self.events[index]["line"])
        if body is None or self.events[index]["event"] != "line":
            return None
        after = self.after(index)
        # `return` counts too: a one-line `if x: return y` runs its body without a new line event.
        return after is not None and after["event"] in ("line", "return") and body[0] <= after["line"] <= body[1]

    def enters_body(self, index: int) -> bool:
        """For a loop header event: whether the loop body runs after this visit."""
        event = self.events[index]
        end = self.structure.loops.get(event["line"])
        after = self.after(index)
        if end is None or after is None or after["event"] != "line":
            return False
        if end == event["line"]:  # one-line loop: the body ran if the header line comes round again
            return after["line"] == end
        return event["line"] < after["line"] <= end

    def state_before(self, index: int, name: str) -> str | None:
        """The value text `name` holds in the frame of event `index`, just before that event."""
        frame = self.events[index]["frame"]
        for event in reversed(self.events[:index]):
            if event["frame"] == frame and name in event.get("changes", {}):
                return event["changes"][name]
        return None

    def state_after(self, index: int, name: str) -> str | None:
        """The value text `name` holds in the frame of event `index`, once that event's step has run."""
        changes = self.events[index].get("changes", {})
        return changes[name] if name in changes else self.state_before(index, name)

    def initial_value(self, name: str) -> str | None:
        """The value text `name` first took in the entry function's frame."""
        top = self.events[0]["frame"] if self.events else None
        for event in self.events:
            if event["frame"] == top and name in event.get("changes", {}):
                return event["changes"][name]
        return None

    def final_value(self, name: str) -> str | None:
        """The value text `name` last took in the entry function's frame."""
        top = self.events[0]["frame"] if self.events else None
        for event in reversed(self.events):
            if event["frame"] == top and name in event.get("changes", {}):
                return event["changes"][name]
        return None

    def _next_in_frame(self) -> list[int | None]:
        result: list[int | None] = [None] * len(self.events)
        last: dict[int, int] = {}
        for index in range(len(self.events) - 1, -1, -1):
            frame = self.events[index]["frame"]
            result[index] = last.get(frame)
            last[frame] = index
        return result

    def _loop_instances(self) -> tuple[list[LoopInstance], dict[int, LoopInstance]]:
        open_loops: dict[tuple[int, int], LoopInstance] = {}
        instances: list[LoopInstance] = []
        by_event: dict[int, LoopInstance] = {}
        for index, event in enumerate(self.events):
            if "loop_iter" not in event:
                continue
            key = (event["frame"], event["line"])
            if event["loop_iter"] == 1 or key not in open_loops:
                open_loops[key] = LoopInstance(event["frame"], event["line"])
                instances.append(open_loops[key])
            instance = open_loops[key]
            instance.headers.append(index)
            instance.iterations += self.enters_body(index)
            by_event[index] = instance
        return instances, by_event

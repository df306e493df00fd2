"""The trace model without a sandbox: the tracer's events, and TraceView's loops, branches and states.

The code traced here is the tests' own (trusted), run in this process; user code only ever runs in the sandbox.
"""

from __future__ import annotations

from typing import Any

import pytest

from operators.trace.structure import TraceView
from operators.trace.tracer import CODE_FILENAME, TraceLimit, Tracer

LOOP = """\
def f(xs):
    total = 0
    for x in xs:
        if x > 1:
            total += x
    return total
"""


def trace(code: str, entry_point: str, *args: Any, max_events: int = 20_000) -> tuple[Any, Tracer]:
    namespace: dict[str, Any] = {}
    exec(compile(code, CODE_FILENAME, "exec"), namespace)
    tracer = Tracer(code, max_events=max_events)
    return tracer.run(namespace[entry_point], args, {}), tracer


def test_events_carry_the_locals_each_line_changed():
    result, tracer = trace(LOOP, "f", [1, 2, 3])
    assert result == 5
    events = tracer.events
    assert events[0]["event"] == "call" and events[0]["changes"] == {"xs": "[1, 2, 3]"}
    assert [e["line"] for e in events if e["event"] == "line"] == [2, 3, 4, 3, 4, 5, 3, 4, 5, 3, 6]
    changes = [(e["line"], e.get("changes")) for e in events if e["event"] == "line" and e.get("changes")]
    assert changes == [(2, {"total": "0"}), (3, {"x": "1"}), (3, {"x": "2"}), (5, {"total": "2"}), (3, {"x": "3"}),
                       (5, {"total": "5"})]
    assert events[-1] == {**events[-1], "event": "return", "value": "5", "line": 6}
    assert [e.get("loop_iter") for e in events if e["line"] == 3 and e["event"] == "line"] == [1, 2, 3, 4]
    assert [e["step"] for e in events] == list(range(len(events)))


def test_a_statement_over_several_lines_is_one_step():
    code = "def f(a):\n    b = (a +\n         1)\n    return b\n"
    _, tracer = trace(code, "f", 1)
    assert [(e["event"], e["line"]) for e in tracer.events] == [("call", 1), ("line", 2), ("line", 4), ("return", 4)]
    assert tracer.events[1]["changes"] == {"b": "2"}


def test_exceptions_and_nested_calls_are_events_of_their_own_frames():
    code = ("def g(n):\n    return 10 // n\n\n"
            "def f(n):\n    try:\n        return g(n)\n    except ZeroDivisionError:\n        return -1\n")
    result, tracer = trace(code, "f", 0)
    assert result == -1
    kinds = [(e["event"], e["func"], e["depth"]) for e in tracer.events]
    assert ("exception", "g", 1) in kinds and ("return", "g", 1) in kinds
    raised = next(e for e in tracer.events if e["event"] == "return" and e["func"] == "g")
    assert raised["raised"] == "ZeroDivisionError" and "value" not in raised
    assert tracer.events[-1]["value"] == "-1"


def test_the_event_cap_stops_the_call_and_is_flagged():
    namespace: dict[str, Any] = {}
    exec(compile(LOOP, CODE_FILENAME, "exec"), namespace)
    tracer = Tracer(LOOP, max_events=10)
    with pytest.raises(TraceLimit):
        tracer.run(namespace["f"], (list(range(100)),), {})
    assert tracer.truncated_events and len(tracer.events) == 10


def test_trace_view_counts_iterations_and_knows_branches_and_states():
    _, tracer = trace(LOOP, "f", [1, 2, 3])
    view = TraceView(tracer.events, LOOP)
    [loop] = view.loops
    assert (loop.line, loop.iterations, len(loop.headers)) == (3, 3, 4)
    headers = loop.headers
    assert [view.enters_body(i) for i in headers] == [True, True, True, False]
    tests = [i for i, e in enumerate(view.events) if e["event"] == "line" and e["line"] == 4]
    assert [view.branch_taken(i) for i in tests] == [False, True, True]
    last = len(view.events) - 1
    assert view.state_before(last, "total") == "5" and view.state_before(headers[1], "total") == "0"
    assert view.state_before(last, "nothing") is None


def test_a_loop_that_never_runs_has_no_iteration():
    _, tracer = trace(LOOP, "f", [])
    [loop] = TraceView(tracer.events, LOOP).loops
    assert loop.iterations == 0 and len(loop.headers) == 1


def test_long_loops_are_summarised_in_the_middle_only():
    _, tracer = trace(LOOP, "f", list(range(10)))
    view = TraceView(tracer.events, LOOP)
    [loop] = view.loops
    middle = view.summarised(2)
    assert loop.headers[2] in middle and loop.headers[1] not in middle and loop.headers[8] not in middle

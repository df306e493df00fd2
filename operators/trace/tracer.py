"""Line-level tracer for one call of user code, built on `sys.settrace`.

What it records: one event per call, executed line, return and exception in frames compiled from the
problem's code (filename `CODE_FILENAME`); library code is not traced. Each line event carries the locals
that the line changed (name → canonical text, see `operators.trace.values`); changes are attached to the line that
made them. A statement spanning several lines is one step, reported at its first line. Loop headers carry
`loop_iter`, the how-many-th time the header runs in this loop instance.

Limits: at most `max_events` events and `max_value_len` characters per value; reaching either is flagged
(`truncated_events`, `truncated_values`), never silent. At the event cap the call is aborted, not run on: the
tracer raises `TraceLimit` into the traced code. It is a BaseException, so `except Exception` lets it through;
code that catches it anyway runs on untraced (until the sandbox's CPU limit), and the call still counts as
truncated. Only the calling thread is traced.

The tracer never raises into the traced code anything but `TraceLimit`: a value it cannot render (a repr that
raises, an integer too long to print, recursion) or traced code that removes or replaces the trace function
(`sys.settrace`) leaves the trace unreliable, so the call is stopped and the run reports `failure`. Old values
are not kept alive by the tracer (only immutable scalars are held, to skip re-rendering them), so finalisers
and weak references behave as they do untraced. Code written to deceive can still reach the tracer object
(`sys.gettrace().__self__`) and forge its own call's trace: see the sandbox's stated limits.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from operators.trace.events import Event
from operators.trace.structure import structure
from operators.trace.values import is_immutable_scalar, render

TRACER_VERSION = "2"
CODE_FILENAME = "<problem>"
_UNHELD = object()  # a snapshot's value that is not kept (anything but an immutable scalar)


class TraceLimit(BaseException):
    """Raised into the traced code when the trace reaches its event cap: the call stops there."""


@dataclass
class _Frame:
    """Per-frame bookkeeping: the last rendered locals and the open line event they belong to."""

    number: int
    depth: int
    func: str
    snapshot: dict[str, tuple[Any, str]] = field(default_factory=dict)
    pending: Event | None = None
    last_line: int = 0
    pending_raw: int = 0
    loop_iters: dict[int, int] = field(default_factory=dict)


class Tracer:
    """Collects the trace of one call; use `run(fn, args, kwargs)` once per instance."""

    def __init__(self, code: str, max_events: int = 20_000, max_value_len: int = 400) -> None:
        self.lines = code.splitlines()
        self.loops = structure(code).loops
        self.statements = structure(code).statements
        self.max_events = max_events
        self.max_value_len = max_value_len
        self.events: list[Event] = []
        self.truncated_events = False
        self.truncated_values = 0
        self.failure: str | None = None  # why the trace is unreliable, if it is
        self._frames: dict[int, _Frame] = {}
        self._depth = 0
        self._calls = 0

    def run(self, fn: Any, args: tuple, kwargs: dict) -> Any:
        """Call `fn(*args, **kwargs)` under the tracer; exceptions propagate to the caller."""
        sys.settrace(self._global)
        try:
            return fn(*args, **kwargs)
        finally:
            if sys.gettrace() != self._global and not (self.truncated_events or self.failure):
                self.failure = "the traced code removed or replaced the tracer"
            sys.settrace(None)

    @property
    def stopped(self) -> bool:
        """Whether the tracer stopped the call (event cap or failure)."""
        return self.truncated_events or self.failure is not None

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        try:
            return self._on_call(frame)
        except TraceLimit:
            raise
        except BaseException as err:
            self._fail(err)

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        try:
            return self._on_event(frame, event, arg)
        except TraceLimit:
            raise
        except BaseException as err:
            self._fail(err)

    def _fail(self, err: BaseException) -> None:
        """The trace cannot be trusted from here on: stop tracing and stop the call."""
        self.failure = f"the tracer failed: {type(err).__name__}"
        sys.settrace(None)
        raise TraceLimit(self.failure)

    def _on_call(self, frame: FrameType) -> Any:
        if self.stopped or frame.f_code.co_filename != CODE_FILENAME:
            return None
        self._depth += 1
        self._calls += 1
        state = _Frame(self._calls, self._depth - 1, frame.f_code.co_qualname)
        self._frames[id(frame)] = state
        changes = self._diff(state, frame)
        self._emit(state, "call", self._line_of(frame), changes=changes)
        return self._local

    def _on_event(self, frame: FrameType, event: str, arg: Any) -> Any:
        state = self._frames.get(id(frame))
        if state is None or self.stopped:
            return None
        line = self._line_of(frame)
        if event == "line" and self._continues(state, line, frame.f_lineno):
            self._settle(state, frame, keep_open=True)
            return self._local
        self._settle(state, frame)
        if event == "line":
            self._on_line(state, line)
        elif event == "return":
            self._on_return(state, frame, arg)
        elif event == "exception":
            exc_type, exc, _ = arg
            self._emit(state, "exception", self._line_of(frame), exc_type=exc_type.__name__, message=str(exc)[:200])
        return self._local

    @staticmethod
    def _continues(state: _Frame, line: int, raw: int) -> bool:
        """A line event inside the statement already open (Python revisits lines of multi-line statements);
        a one-line loop repeating its own line is a new step, not a continuation."""
        previous_raw = state.pending_raw
        state.pending_raw = raw
        return state.pending is not None and line == state.last_line and (raw != line or previous_raw != line)

    def _line_of(self, frame: FrameType) -> int:
        """The first line of the statement being run: one step per statement, however many lines it spans."""
        return self.statements.get(frame.f_lineno, frame.f_lineno)

    def _on_line(self, state: _Frame, line: int) -> None:
        event = self._emit(state, "line", line)
        end = self.loops.get(line)
        if end is not None:
            # A one-line loop (`for x in xs: total += x`) repeats its header line for every iteration.
            inside = line < state.last_line <= end or line == end == state.last_line
            state.loop_iters[line] = state.loop_iters.get(line, 0) + 1 if inside else 1
            event["loop_iter"] = state.loop_iters[line]
        state.last_line = line
        state.pending = event

    def _on_return(self, state: _Frame, frame: FrameType, value: Any) -> None:
        last = self.events[-1] if self.events else None
        raised = last is not None and last["event"] == "exception" and last["frame"] == state.number
        if raised:
            self._emit(state, "return", self._line_of(frame), raised=last["exc_type"])
        else:
            self._emit(state, "return", self._line_of(frame), value=self._text(value))
        self._depth -= 1
        del self._frames[id(frame)]

    def _settle(self, state: _Frame, frame: FrameType, keep_open: bool = False) -> None:
        """Attach the locals changed since the last event of this frame to that frame's open line."""
        changes = self._diff(state, frame)
        if changes and state.pending is not None:
            state.pending.setdefault("changes", {}).update(changes)
        if not keep_open:
            state.pending = None

    def _diff(self, state: _Frame, frame: FrameType) -> dict[str, str | None]:
        changes: dict[str, str | None] = {}
        current = frame.f_locals
        for name, value in current.items():
            if name.startswith("."):
                continue
            previous = state.snapshot.get(name)
            scalar = is_immutable_scalar(value)
            if previous is not None and previous[0] is value and scalar:
                continue
            text = self._text(value)
            if previous is None or text != previous[1]:
                changes[name] = text
            state.snapshot[name] = (value if scalar else _UNHELD, text)
        for name in [n for n in state.snapshot if n not in current]:
            del state.snapshot[name]
            changes[name] = None
        return changes

    def _text(self, value: Any) -> str:
        text, cut = render(value, self.max_value_len)
        self.truncated_values += cut
        return text

    def _emit(self, state: _Frame, kind: str, line: int, **extra: Any) -> Event:
        if len(self.events) >= self.max_events:
            self.truncated_events = True
            sys.settrace(None)
            raise TraceLimit(f"the trace reached {self.max_events} events")
        event: Event = {
            "step": len(self.events),
            "event": kind,
            "func": state.func,
            "frame": state.number,
            "depth": state.depth,
            "line": line,
            "src": self.lines[line - 1].strip() if 0 < line <= len(self.lines) else "",
        }
        event.update({k: v for k, v in extra.items() if v is not None and v != {}})
        self.events.append(event)
        return event

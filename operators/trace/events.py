"""The shape of a trace: typed events, and a traced call (what narrators, prompts and the verifier read).

Events stay plain dicts at run time — they cross the sandbox pipe and Arrow as JSON — so `Event` is a
`TypedDict`: a checked description of the keys the tracer writes, at no cost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Required, TypedDict


class Event(TypedDict, total=False):
    """One step of a trace, in frames compiled from the problem's code (`operators.trace.tracer`)."""

    step: Required[int]  # index in the trace
    event: Required[Literal["call", "line", "return", "exception"]]
    func: Required[str]  # qualified name of the function (or `<listcomp>`, `<lambda>`, …)
    frame: Required[int]  # the how-many-th call of the run this frame is
    depth: Required[int]  # call depth below the entry point (0)
    line: Required[int]  # first line of the statement
    src: Required[str]  # that line's source, stripped
    changes: dict[str, str | None]  # locals the step changed: name → canonical value text (None: deleted)
    loop_iter: int  # loop headers: the how-many-th visit of the header in this loop instance
    value: str  # return: the value returned, as canonical text
    raised: str  # return: the exception type the frame ended with (instead of `value`)
    exc_type: str  # exception: its type name
    message: str  # exception: its message, cut to 200 characters


@dataclass(frozen=True)
class TracedCall:
    """One call of a problem's entry point, with its output and its trace, parsed once."""

    code: str
    entry_point: str
    input: str
    output: str
    events: list[Event]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TracedCall:
        """From a work row of the pipeline, whose `trace` column holds the events as JSON."""
        return cls(row["code"], row["entry_point"], row["input"], row["output"], json.loads(row["trace"]))

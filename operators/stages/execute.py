"""Execution stage: run each (problem, input) in the sandbox under the tracer."""

from __future__ import annotations

import json
from typing import Any

from operators.records import reject
from operators.sandbox.client import Limits, Sandbox
from operators.stages.base import Placement, RowStage, guarded
from operators.trace.values import equal_literals


class Executor(RowStage):
    """Owns one sandbox (a warm fork server) for the life of the actor."""

    name = "execute"
    placement = Placement(cpus=0.5, on_executor_nodes=True)

    def __init__(self, limits: Limits | None = None, require: tuple[str, ...] = (), max_events: int = 20_000,
                 max_value_len: int = 400) -> None:
        self.sandbox = Sandbox(limits, require)
        self.job_options = {"max_events": max_events, "max_value_len": max_value_len}
        self.isolation = [layer for layer, active in self.sandbox.isolation.items() if active]

    def process_rows(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        jobs = [{"code": row["code"], "entry_point": row["entry_point"], "input": row["input"], **self.job_options}
                for row in rows]
        results = self.sandbox.run_many(jobs)
        return [guarded("execute", row, lambda row=row, result=result: self._outcome(row, result))
                for row, result in zip(rows, results, strict=True)]

    def _outcome(self, row: dict[str, Any], result: dict[str, Any]) -> list[dict[str, Any]]:
        row = {**row, "isolation": self.isolation}
        outcome = result["outcome"]
        if outcome == "bad_input":
            return [reject(row, "execute", "input_not_literal", result.get("message", ""))]
        if outcome != "ok":
            return [reject(row, "execute", outcome, _describe(result))]
        row.update(output=result["output"], trace=json.dumps(result["trace"], separators=(",", ":")),
                   trace_steps=len(result["trace"]))
        problem = _trace_problem(result, row.get("expected_output"))
        return [reject(row, "trace", *problem) if problem else row]


def _describe(result: dict[str, Any]) -> str:
    parts = [result.get("exc_type"), result.get("message")]
    line = result.get("line")
    text = ": ".join(str(p) for p in parts if p)
    return f"{text} (line {line})" if line else text


def _trace_problem(result: dict[str, Any], expected: str | None) -> tuple[str, str] | None:
    """Why a successful run cannot become a record, or None."""
    if not result["trace"]:
        return "empty_trace", "the entry point ran no code of this problem (a builtin or a C function?)"
    if result["output_truncated"]:
        return "output_too_long", "the output is longer than the value cap"
    if not result["output_is_literal"]:
        return "output_not_literal", f"the output {result['output'][:80]} is not a Python literal"
    if expected is not None and not equal_literals(expected, result["output"]):
        return "output_mismatch", f"expected {expected[:80]}, the code returned {result['output'][:80]}"
    return None


"""Verify stage: each narration checked against its trace; backward answers re-executed in the sandbox."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from operators.cot.verify import (
    ParsedAnswer,
    Verifier,
    check_backward_answer,
    literal_arguments,
    parse_answer,
    reason_for,
    same_arguments,
)
from operators.records import reject
from operators.sandbox.client import Limits, Sandbox
from operators.stages.base import Placement, RowStage, guarded
from operators.trace.events import TracedCall


class VerifyStage(RowStage):
    """Ray Data stage: verify each narration; backward answers are re-executed in the sandbox."""

    name = "verify"
    placement = Placement(cpus=0.25, on_executor_nodes=True)  # backward answers run in the sandbox

    def __init__(self, min_coverage: float = 0.5, min_claims: int = 1, full_iterations: int = 2,
                 strict: bool = True, limits: Limits | None = None, require: tuple[str, ...] = ()) -> None:
        self.verifier = Verifier(min_coverage, min_claims, full_iterations, strict)
        self.limits = limits
        self.require = require
        self._sandbox: Sandbox | None = None

    def process_rows(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Verify each row; the backward answers of the whole batch run in the sandbox together."""
        parsed = [parse_answer(row["cot"]) if row["direction"] == "backward" else None for row in rows]
        jobs = [None if answer is None else _answer_run(row, answer) for row, answer in zip(rows, parsed, strict=True)]
        runnable = [i for i, job in enumerate(jobs) if isinstance(job, dict) and "outcome" not in job]
        runs = dict(zip(runnable, self.sandbox.run_many([jobs[i] for i in runnable]), strict=True)) if runnable else {}
        return [guarded("verify", row, lambda i=i, row=row: self._verdict(row, parsed[i], runs.get(i, jobs[i])))
                for i, row in enumerate(rows)]

    def _verdict(self, row: dict[str, Any], parsed: ParsedAnswer | None,
                 answer_run: dict[str, Any] | str | None) -> list[dict[str, Any]]:
        """The verified row or its rejection; `answer_run` is the backward answer's sandboxed run, or the
        reason it could not run."""
        if isinstance(answer_run, str):
            return [reject({**row, "stage": "verify"}, "verify", "wrong_answer", answer_run)]
        call = TracedCall.from_row(row)
        if parsed is not None and answer_run is not None and answer_run["outcome"] == "ok" \
                and not same_arguments(parsed.input_text, row["input"]):
            # Reasoning about one input cannot vouch for another: check the claims on the answer's trace.
            call = replace(call, input=parsed.input_text, events=answer_run["trace"])
        report, _ = self.verifier.check(row["direction"], row["cot"], call)
        if answer_run is not None:
            check_backward_answer(report, answer_run, row["output"])
        row = {**row, "verification": report.as_dict(), "stage": "verify"}
        if report.passed:
            return [row]
        return [reject(row, "verify", reason_for(report), report.first_failure or "")]

    @property
    def sandbox(self) -> Sandbox:
        """Started on first use: forward-only runs never need one here."""
        if self._sandbox is None:
            self._sandbox = Sandbox(self.limits, self.require)
        return self._sandbox


def _answer_run(row: dict[str, Any], parsed: ParsedAnswer) -> dict[str, Any] | str:
    """A backward answer's run: already known when its input is the traced one (same syntax tree, so the same
    call: the call is paid once), else the sandbox job that traces it, or the reason it may not run (an input
    other than the given one must be plain literals)."""
    if same_arguments(parsed.input_text, row["input"]):
        return {"outcome": "ok", "output": row["output"]}
    if not literal_arguments(parsed.input_text):
        return "a backward answer's input must be Python literals"
    return {"code": row["code"], "entry_point": row["entry_point"], "input": parsed.input_text}

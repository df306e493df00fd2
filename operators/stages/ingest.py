"""Ingest stage: raw input lines → work rows, one per (problem, input) and direction (or per narration).

Problem formats are read by `operators.ingest.formats`; this stage adds record ids, the repeated-call check and
the rows already done. It runs as a single actor: the repeated-call check needs every call seen so far.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container
from typing import Any

from operators.cot.prompts import messages, student_prompt
from operators.ids import DIRECTIONS, content_hash, record_id
from operators.ingest.formats import (
    BadProblem,
    Problem,
    check_code,
    detect_format,
    json_object,
    peek_id,
    row_license,
    to_problem,
)
from operators.records import reject
from operators.sandbox.calls import BadInput, check_syntax
from operators.stages.base import Placement, RowStage, guarded


class LineParser(RowStage):
    """The ingest stage over raw input rows (`{"text": <one JSON object>}`); subclasses define `parse`.

    A single actor: the repeated-call check needs every call met so far.
    """

    name = "ingest"
    placement = Placement(single_actor=True)

    def parse(self, text: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def parse_guarded(self, text: str) -> list[dict[str, Any]]:
        """`parse`, or one rejected row when parsing fails in a way `parse` did not foresee: no line stops a run."""
        fallback = {"raw": text[:2000], "rows_read": 1, "record_id": content_hash("failed row", text)}
        return guarded("ingest", fallback, lambda: self.parse(text))

    def process_rows(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        return [self.parse_guarded(row["text"]) for row in rows]


class ParseProblems(LineParser):
    """Problems → work rows, one per (problem, input), to be traced, narrated and verified.

    Rows already in the output under this fingerprint (`done`) are passed on marked `skipped`.
    """

    def __init__(self, fmt: str | None, source: str, fingerprint: str, directions: tuple[str, ...] = DIRECTIONS,
                 done: Container[str] = frozenset(), samples: int = 1) -> None:
        self.fmt = fmt
        self.source = source
        self.fingerprint = fingerprint
        self.directions = tuple(d for d in directions for _ in range(samples))  # one item per narration
        self.samples = samples
        self.done = done
        self.seen: Counter[str] = Counter()  # calls met so far; this stage runs as a single actor

    def parse(self, text: str) -> list[dict[str, Any]]:
        """All work rows of one input row (the stage counts the input row once, on the first)."""
        base = {"source": self.source, "fingerprint": self.fingerprint, "rows_read": 1}
        try:
            problem = self._problem(text)
        except BadProblem as err:
            row_id = content_hash("row", text, self.fingerprint)
            pid = peek_id(text)
            rejected = reject({**base, "record_id": row_id, "problem_id": pid, "raw": text[:2000]},
                              "ingest", err.reason, str(err))
            return [{**rejected, "skipped": row_id in self.done}]
        out = [self._bad_input(base, problem, raw, message) for raw, message in problem.bad_inputs]
        for args, expected in zip(problem.inputs, problem.outputs, strict=True):
            out.extend(self._call_rows(base, problem, args, expected))
        return out

    def _problem(self, text: str) -> Problem:
        row = json_object(text)
        fmt = self.fmt or detect_format(row)
        if fmt is None:
            raise BadProblem("unknown_format", f"cannot tell the format from the keys {sorted(row)[:8]}")
        return to_problem(row, fmt)

    def _call_rows(self, base: dict, problem: Problem, args: str, expected: str | None) -> list[dict[str, Any]]:
        """The row to run for one call, plus a skipped row for its directions already in the output."""
        ids = [record_id(problem.code, problem.entry_point, args, d, self.fingerprint, n % self.samples)
               for n, d in enumerate(self.directions)]
        row = {**base, "problem_id": problem.problem_id, "license": problem.license, "code": problem.code,
               "entry_point": problem.entry_point, "input": args, "expected_output": expected, "stage": "ingest"}
        self.seen[ids[0]] += 1
        if self.seen[ids[0]] > 1:  # the same code and input again: one record is enough
            dup_id = content_hash("duplicate call", ids[0], self.seen[ids[0]])
            duplicate = reject({**row, "record_id": dup_id}, "ingest", "duplicate_call",
                               "the same code and input appear earlier in this input")
            return [{**duplicate, "skipped": dup_id in self.done}]
        done = [(d, rid) for d, rid in zip(self.directions, ids, strict=True) if rid in self.done]
        todo = [(d, rid) for d, rid in zip(self.directions, ids, strict=True) if rid not in self.done]
        out = [{**row, "directions": [d for d, _ in done], "record_ids": [r for _, r in done], "skipped": True}
               ] if done else []
        if todo:
            runnable = {**row, "directions": [d for d, _ in todo], "record_ids": [r for _, r in todo]}
            try:
                check_syntax(args)
            except BadInput as err:
                runnable = reject(runnable, "ingest", "bad_input", str(err))
            out.append(runnable)
        return out

    def _bad_input(self, base: dict, problem: Problem, raw: str, message: str) -> dict[str, Any]:
        row = {**base, "problem_id": problem.problem_id, "code": problem.code, "entry_point": problem.entry_point,
               "raw": raw}
        row_id = content_hash("input", problem.code, raw, self.fingerprint)
        return {**reject({**row, "record_id": row_id}, "ingest", "input_not_literal", message),
                "skipped": row_id in self.done}


class ParseNarrations(LineParser):
    """CoT made elsewhere → work rows to trace and verify (`tracecot verify`).

    A row is either one of tracecot's records or JSON with `code`, `entry_point`, `input`, `output`, `cot`,
    `direction` (and an `id`, kept as `problem_id`). The record id hashes the CoT too: one problem may come
    with many narrations.
    """

    _FIELDS = ("code", "entry_point", "input", "output", "cot", "direction")

    def __init__(self, source: str, fingerprint: str, done: Container[str] = frozenset()) -> None:
        self.source = source
        self.fingerprint = fingerprint
        self.done = done

    def parse(self, text: str) -> list[dict[str, Any]]:
        base = {"source": self.source, "fingerprint": self.fingerprint, "rows_read": 1, "narrator": "external"}
        try:
            row = json_object(text)
            missing = [key for key in self._FIELDS if not isinstance(row.get(key), str)]
            if missing:
                raise BadProblem("missing_field", f"narration row lacks text field(s): {', '.join(missing)}")
            if row["direction"] not in DIRECTIONS:
                raise BadProblem("bad_direction", f"direction must be forward or backward, not {row['direction']!r}")
            problem = Problem(peek_id(text) or "", row["code"], row["entry_point"], [row["input"]])
            check_code(problem)
            check_syntax(row["input"])
        except (BadProblem, BadInput) as err:
            row_id = content_hash("narration", text, self.fingerprint)
            reason = err.reason if isinstance(err, BadProblem) else "bad_input"
            rejected = reject({**base, "record_id": row_id, "problem_id": peek_id(text), "raw": text[:2000]},
                              "ingest", reason, str(err))
            return [{**rejected, "skipped": row_id in self.done}]
        rid = record_id(row["code"], row["entry_point"], row["input"], row["direction"],
                        f"{self.fingerprint}:{content_hash(row['cot'])}")
        prompt = student_prompt(row["direction"], row["code"], row["entry_point"], row["input"], row["output"])
        return [{**base, "record_id": rid, "record_ids": [rid], "directions": [row["direction"]],
                 "direction": row["direction"], "problem_id": peek_id(text), "license": row_license(row),
                 "code": row["code"],
                 "entry_point": row["entry_point"], "input": row["input"], "expected_output": row["output"],
                 "cot": row["cot"], "answer": row.get("answer"), "messages": messages(prompt, row["cot"]),
                 "stage": "ingest", "skipped": rid in self.done}]

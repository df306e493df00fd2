"""Ingest stage: raw input lines → work rows, one per (problem, input) and direction (or per narration).

Problem formats are read by `operators.ingest.formats`; this stage adds record ids, the repeated-call check and
the rows already done. It runs as a pool of actors: both checks go to the run index (`operators.ingest.index`),
asked once per batch: a batch is parsed first, then the index asked, then its rows finished.
"""

from __future__ import annotations

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
from operators.ingest.index import LocalIndex, RunIndex, token_of
from operators.records import reject
from operators.sandbox.calls import BadInput, check_syntax
from operators.stages.base import LIGHT, Placement, RowStage, guarded


class LineParser(RowStage):
    """The ingest stage over raw input rows (`{"text": <one JSON object>, "at": <its place in the input>}`).

    Subclasses define `parse`: the draft rows of one line, each with its `record_id`, not yet known to be done.
    A batch's drafts are checked against the run index at once (`done_of`), then finished (`finish`).
    """

    name = "ingest"
    placement = Placement(cpus=LIGHT)
    index: RunIndex

    def parse(self, text: str, at: str | None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def parse_guarded(self, text: str, at: str | None) -> list[dict[str, Any]]:
        """`parse`, or one rejected row when parsing fails in a way `parse` did not foresee: no line stops a run."""
        fallback = {"raw": text[:2000], "rows_read": 1, "record_id": content_hash("failed row", text)}
        return guarded("ingest", fallback, lambda: self.parse(text, at))

    def process_rows(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        drafts = [self.parse_guarded(row["text"], row.get("at")) for row in rows]
        done = self.done_of(drafts)
        return [[out for draft in line for out in guarded("ingest", draft, lambda d=draft: self.finish(d, done))]
                for line in drafts]

    def done_of(self, drafts: list[list[dict[str, Any]]]) -> set[str]:
        """The record ids of these drafts that the output already holds: one question to the index."""
        ids = [draft["record_id"] for line in drafts for draft in line]
        answer, _ = self.index.ask(ids)
        return {rid for rid, done in zip(ids, answer, strict=True) if done}

    def finish(self, draft: dict[str, Any], done: set[str]) -> list[dict[str, Any]]:
        """The rows a draft becomes, marked `skipped` when done."""
        return [{**draft, "skipped": draft["record_id"] in done}]


class ParseProblems(LineParser):
    """Problems → work rows, one per (problem, input), to be traced, narrated and verified.

    Rows already in the output under this fingerprint are passed on marked `skipped`. A call met again in this
    input (same code and input) is rejected `duplicate_call`, once per repeat, with an id made of the call and
    its meeting number. Both answers come from `index` (default: a `LocalIndex`, nothing done).

    With a pool of ingest actors, the order in which batches reach the index is not the input's order: among
    exact duplicate calls, which row carries the record (and so its `problem_id` and `license`) and
    which are rejected as repeats depends on that order. The set of record ids, and so what a rerun skips, does
    not.
    """

    def __init__(self, fmt: str | None, source: str, fingerprint: str, directions: tuple[str, ...] = DIRECTIONS,
                 index: RunIndex | None = None, samples: int = 1) -> None:
        self.fmt = fmt
        self.source = source
        self.fingerprint = fingerprint
        self.directions = tuple(d for d in directions for _ in range(samples))  # one item per narration
        self.samples = samples
        self.index = index or LocalIndex()

    def parse(self, text: str, at: str | None) -> list[dict[str, Any]]:
        """All draft rows of one input row (the stage counts the input row once, on the first)."""
        base = {"source": self.source, "fingerprint": self.fingerprint, "rows_read": 1}
        try:
            problem = self._problem(text)
        except BadProblem as err:
            row_id = content_hash("row", text, self.fingerprint)
            pid = peek_id(text)
            return [reject({**base, "record_id": row_id, "problem_id": pid, "raw": text[:2000]},
                           "ingest", err.reason, str(err))]
        out = [self._bad_input(base, problem, raw, message) for raw, message in problem.bad_inputs]
        for n, (args, expected) in enumerate(zip(problem.inputs, problem.outputs, strict=True)):
            out.append(self._call_draft(base, problem, args, expected, None if at is None else token_of(at, n)))
        return out

    def done_of(self, drafts: list[list[dict[str, Any]]]) -> set[str]:
        """The done ids of the batch, and each call's meeting number: one question to the index, and a second
        only when the batch holds repeats (a repeat's id names its meeting number, known after the first)."""
        flat = [draft for line in drafts for draft in line]
        calls = [draft for draft in flat if "call" in draft]
        ids = [draft["record_id"] for draft in flat if "call" not in draft] + \
            [rid for draft in calls for rid in draft["record_ids"]]
        answer, numbers = self.index.ask(ids, [draft["call"] for draft in calls])
        done = {rid for rid, is_done in zip(ids, answer, strict=True) if is_done}
        repeats = []
        for draft, number in zip(calls, numbers, strict=True):
            if number > 1:
                draft["record_id"] = content_hash("duplicate call", draft["call"][0], number)
                repeats.append(draft["record_id"])
        if repeats:
            again, _ = self.index.ask(repeats)
            done |= {rid for rid, is_done in zip(repeats, again, strict=True) if is_done}
        return done

    def finish(self, draft: dict[str, Any], done: set[str]) -> list[dict[str, Any]]:
        if "call" not in draft:
            return super().finish(draft, done)
        row = {key: value for key, value in draft.items() if key not in ("call", "record_ids")}
        if draft.get("record_id"):  # the same code and input again: one record is enough
            duplicate = reject(row, "ingest", "duplicate_call", "the same code and input appear earlier in this input")
            return [{**duplicate, "skipped": row["record_id"] in done}]
        return self._call_rows(row, draft["record_ids"], done)

    def _problem(self, text: str) -> Problem:
        row = json_object(text)
        fmt = self.fmt or detect_format(row)
        if fmt is None:
            raise BadProblem("unknown_format", f"cannot tell the format from the keys {sorted(row)[:8]}")
        return to_problem(row, fmt)

    def _call_draft(self, base: dict, problem: Problem, args: str, expected: str | None,
                    token: int | None) -> dict[str, Any]:
        """One call, its record ids (one per direction and sample), and what the index counts it by (`call`)."""
        ids = [record_id(problem.code, problem.entry_point, args, d, self.fingerprint, n % self.samples)
               for n, d in enumerate(self.directions)]
        return {**base, "problem_id": problem.problem_id, "license": problem.license, "code": problem.code,
                "entry_point": problem.entry_point, "input": args, "expected_output": expected, "stage": "ingest",
                "record_ids": ids, "call": (ids[0], token)}

    def _call_rows(self, row: dict[str, Any], ids: list[str], done: set[str]) -> list[dict[str, Any]]:
        """The row to run for one call met the first time, plus a skipped row for its directions already done."""
        args = row["input"]
        finished = [(d, rid) for d, rid in zip(self.directions, ids, strict=True) if rid in done]
        todo = [(d, rid) for d, rid in zip(self.directions, ids, strict=True) if rid not in done]
        out = [{**row, "directions": [d for d, _ in finished], "record_ids": [r for _, r in finished],
                "skipped": True}] if finished else []
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
        return reject({**row, "record_id": row_id}, "ingest", "input_not_literal", message)


class ParseNarrations(LineParser):
    """CoT made elsewhere → work rows to trace and verify (`tracecot verify`).

    A row is either one of tracecot's records or JSON with `code`, `entry_point`, `input`, `output`, `cot`,
    `direction` (and an `id`, kept as `problem_id`). The record id hashes the CoT too: one problem may come
    with many narrations.
    """

    _FIELDS = ("code", "entry_point", "input", "output", "cot", "direction")

    def __init__(self, source: str, fingerprint: str, index: RunIndex | None = None) -> None:
        self.source = source
        self.fingerprint = fingerprint
        self.index = index or LocalIndex()

    def parse(self, text: str, at: str | None) -> list[dict[str, Any]]:
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
            return [reject({**base, "record_id": row_id, "problem_id": peek_id(text), "raw": text[:2000]},
                           "ingest", reason, str(err))]
        rid = record_id(row["code"], row["entry_point"], row["input"], row["direction"],
                        f"{self.fingerprint}:{content_hash(row['cot'])}")
        prompt = student_prompt(row["direction"], row["code"], row["entry_point"], row["input"], row["output"])
        return [{**base, "record_id": rid, "record_ids": [rid], "directions": [row["direction"]],
                 "direction": row["direction"], "problem_id": peek_id(text), "license": row_license(row),
                 "code": row["code"],
                 "entry_point": row["entry_point"], "input": row["input"], "expected_output": row["output"],
                 "cot": row["cot"], "answer": row.get("answer"), "messages": messages(prompt, row["cot"]),
                 "stage": "ingest"}]

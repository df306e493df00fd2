"""Stages that keep a model's candidate problems only when execution agrees on them (`tracecot agree`, and the
end of `tracecot synthesize`):

    candidates → every (solution, test) pair in the sandbox → dual agreement → dedup and decontamination

(`tracecot synthesize` adds bare functions: the sandbox stage finds their inputs, and dedup sees them too.)
One row per candidate set (an instruction with its solutions and tests) flows through; it ends as a kept
problem in the generic input format, or as a rejected row with a reason.
"""

from __future__ import annotations

import json
import time
from typing import Any

from operators.ids import content_hash
from operators.ingest.formats import BadProblem, json_object, peek_id, row_license
from operators.ingest.index import LocalIndex, RunIndex
from operators.records import SYNTH_WORK_SCHEMA, reject
from operators.sandbox.client import Limits, Sandbox
from operators.stages.base import Placement, RowStage, guarded
from operators.stages.ingest import LineParser
from operators.synth import inputs
from operators.synth.agreement import (
    MAX_PAIRS,
    ROW_SECONDS,
    CandidateSet,
    agree,
    candidate_set,
    kept_problem,
    pair_job,
    passes,
)
from operators.synth.dedup import Deduplicator


class ParseCandidates(LineParser):
    """Candidate rows (`id`, `instruction`, `entry_point`, `solutions`, `tests`) → work rows, duplicates and
    unusable solutions and tests set aside. No state across rows, so it runs as a pool."""

    placement = Placement()
    schema = SYNTH_WORK_SCHEMA

    def __init__(self, source: str, fingerprint: str, index: RunIndex | None = None,
                 max_pairs: int = MAX_PAIRS) -> None:
        self.source = source
        self.fingerprint = fingerprint
        self.index = index or LocalIndex()
        self.max_pairs = max_pairs

    def parse(self, text: str, at: str | None) -> list[dict[str, Any]]:
        base = {"source": self.source, "fingerprint": self.fingerprint, "rows_read": 1, "generator": "input"}
        try:
            row = json_object(text)
            record_id = content_hash("candidates", row, self.fingerprint)
            candidates = candidate_set(row)
        except BadProblem as err:
            return [rejected_line(base, text, err)]
        return [candidate_row({**base, "record_id": record_id, "seed_id": record_id, "license": row_license(row)},
                              candidates, self.max_pairs)]


def rejected_line(base: dict[str, Any], text: str, err: BadProblem) -> dict[str, Any]:
    """The rejected row of an input line that is not a usable row (the ingest stage marks it skipped when an
    earlier run rejected it)."""
    record_id = content_hash("row", text, base["fingerprint"])
    return reject({**base, "record_id": record_id, "seed_id": record_id, "id": peek_id(text), "raw": text[:2000]},
                  "ingest", err.reason, str(err))


def candidate_row(base: dict[str, Any], candidates: CandidateSet, max_pairs: int = MAX_PAIRS) -> dict[str, Any]:
    """The work row of one candidate set, or a rejected one when no solution or no test is usable, or when it
    would run more than `max_pairs` programs."""
    row = {**base, "kind": "candidates", "id": candidates.problem_id, "instruction": candidates.instruction,
           "concept": candidates.concept, "difficulty": candidates.difficulty, "entry_point": candidates.entry_point,
           "solutions": list(candidates.solutions),
           "tests": list(candidates.tests), "agreement": _seen(candidates)}
    if not candidates.solutions or not candidates.tests:
        empty = " and ".join(kind for kind, kept in (("solution", candidates.solutions), ("test", candidates.tests))
                             if not kept)
        return reject(row, "ingest", "unparseable", f"no usable {empty} (set aside: {_set_aside(candidates)})")
    pairs = len(candidates.solutions) * len(candidates.tests)
    if pairs > max_pairs:
        return reject(row, "ingest", "too_large", f"{len(candidates.solutions)} solutions x {len(candidates.tests)} "
                      f"tests = {pairs} programs, more than synth.max_pairs={max_pairs}")
    return row


def _seen(candidates: CandidateSet) -> dict[str, Any]:
    return {"solutions_seen": candidates.solutions_seen, "solutions_distinct": len(candidates.solutions),
            "tests_seen": candidates.tests_seen, "tests_distinct": len(candidates.tests),
            "set_aside": json.dumps(dict(sorted(candidates.dropped.items())))}


def _set_aside(candidates: CandidateSet) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(candidates.dropped.items())) or "none"


class ExecutePairs(RowStage):
    """The sandbox stage of synthesis. A candidate set: every (solution, test) pair runs as one program, a
    fresh child per pair, each run twice under two hash seeds; a pair passes when its program raises nothing
    both times. A bare function (`synthesize`): the proposed inputs and the static ones (type hints, defaults,
    how the arguments are used) are tried; those that run deterministically with a bounded literal output are
    kept (`operators.synth.inputs.keep`). One stage for both, so synthesis holds one sandbox per actor."""

    name = "execute"
    placement = Placement(cpus=0.5, on_executor_nodes=True)
    schema = SYNTH_WORK_SCHEMA

    def __init__(self, limits: Limits | None = None, require: tuple[str, ...] = (), inputs_wanted: int = 3,
                 row_seconds: float = ROW_SECONDS) -> None:
        self.sandbox = Sandbox(limits, require)
        self.isolation = [layer for layer, active in self.sandbox.isolation.items() if active]
        self.inputs_wanted = inputs_wanted
        self.row_seconds = row_seconds

    def wants(self, row: dict[str, Any]) -> bool:
        return row.get("kind") in ("candidates", "function")

    def process_rows(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        return [guarded(self.name, row, lambda row=row: self._run_pairs(row) if row["kind"] == "candidates"
                        else self._find_inputs(row)) for row in rows]

    def _run_pairs(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The pass matrix, one solution's tests at a time; a row still running after `row_seconds` stops
        there (`too_slow`): `max_pairs` bounds how many programs a row runs, this how long they take."""
        started = time.monotonic()
        entry_point, tests = row["entry_point"], row["tests"]
        passed: list[list[bool]] = []
        row = {**row, "isolation": self.isolation}
        for number, solution in enumerate(row["solutions"]):
            if time.monotonic() - started > self.row_seconds:
                return [reject(row, "execute", "too_slow", f"{number} of {len(row['solutions'])} solutions ran "
                               f"against every test in {self.row_seconds:g} s (synth.max_row_seconds)")]
            results = self.sandbox.run_many([pair_job(solution, test, entry_point) for test in tests])
            passed.append([passes(result, test, entry_point) for result, test in zip(results, tests, strict=True)])
        return [{**row, "passed": passed}]

    def _find_inputs(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        tried = [*(row.get("inputs") or []), *inputs.propose(row["code"], row["entry_point"])]
        found = inputs.keep(self.sandbox, row["code"], row["entry_point"], tried, want=self.inputs_wanted)
        row = {**row, "isolation": self.isolation}
        if not found.inputs:
            return [reject(row, "execute", "no_inputs", found.why())]
        return [{**row, "inputs": found.inputs, "outputs": [None] * len(found.inputs)}]


class Agree(RowStage):
    """Dual agreement over the pass matrix: the top cluster becomes the problem, or the row is rejected."""

    name = "agree"
    schema = SYNTH_WORK_SCHEMA

    def __init__(self, min_tests: int = 1, min_solutions: int = 1, ties: str = "reject",
                 near_duplicate: float = 0.8) -> None:
        self.options = {"min_tests": min_tests, "min_solutions": min_solutions, "ties": ties}
        self.near_duplicate = near_duplicate

    def wants(self, row: dict[str, Any]) -> bool:
        return row.get("kind") == "candidates"

    def process(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        candidates = CandidateSet(row["id"], row["entry_point"], row["instruction"], row["concept"],
                                  tuple(row["solutions"]), tuple(row["tests"]), 0, 0)
        decided = agree(row["passed"], contradictions=candidates.contradictions(),
                        families=candidates.families(self.near_duplicate), **self.options)
        summary = {**row["agreement"], "clusters": len(decided.clusters)}
        if decided.kept is None:
            return [reject({**row, "agreement": summary}, "agree", decided.reason or "no_agreement", decided.message)]
        cluster = decided.kept
        summary.update(score=cluster.score, cluster_size=cluster.votes, tests_kept=len(cluster.tests))
        try:
            problem = kept_problem(candidates, cluster)
        except BadProblem as err:
            return [reject({**row, "agreement": summary}, "agree", err.reason, str(err))]
        return [{**row, "agreement": summary, "code": problem.code, "inputs": problem.inputs,
                 "outputs": problem.outputs, "solutions": [row["solutions"][s] for s in cluster.solutions],
                 "tests": [row["tests"][t] for t in cluster.tests]}]


class Dedup(RowStage):
    """Drops a kept problem whose solution duplicates one kept before (in this run or an earlier one: `kept`):
    `duplicate`, or a benchmark item: `contaminated` (exact: the same syntax tree up to names; near: MinHash
    over code tokens, `operators.synth.dedup`).

    A single actor: every kept problem must be compared with every other."""

    name = "dedup"
    placement = Placement(single_actor=True)
    schema = SYNTH_WORK_SCHEMA

    def __init__(self, threshold: float, benchmarks: dict[str, dict[str, str]], kept: Any = ()) -> None:
        self.index = Deduplicator(threshold=threshold, benchmarks=benchmarks)
        self.kept = kept  # (id, code) pairs of problems an earlier run kept, loaded here on first use
        self.ids: set[str] = set()
        self._loaded = False

    def process(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        if not self._loaded:
            for problem_id, code in self.kept:
                self.index.seen(f"problem:{problem_id}", code)
                self.ids.add(problem_id)
            self._loaded = True
        if row["id"] in self.ids:
            return [reject(row, "dedup", "duplicate_id", f"a problem with id {row['id']!r} was kept before")]
        duplicate = self.index.check(f"problem:{row['id']}", row["code"])
        if duplicate is not None:
            of = duplicate.of.removeprefix("problem:")
            reason = "duplicate" if duplicate.of.startswith("problem:") else "contaminated"
            return [reject(row, "dedup", reason,
                           f"{duplicate.kind} duplicate of {of} (similarity {duplicate.similarity:.2f})")]
        self.ids.add(row["id"])
        return [row]

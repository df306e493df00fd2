"""Stages that write candidate problems with a model (`tracecot synthesize`), before the agreement stages:

    seeds (texts, concepts or bare functions) → generate (concepts → instructions → solutions and tests;
    or input proposals for a bare function) → then the stages of `operators/stages/agree.py`

The model's steps are one stage on purpose: as separate Ray Data stages each would hold its own copy of the
model (a vLLM engine per GPU, or a transformers model per CPU actor), for steps that each use it briefly;
inside the stage every step is its own method (`Generate._concepts`, `_instructions`, `_candidates`,
`_proposals`), and a step sends all of a batch's prompts to the engine at once.

Every model answer is counted on the row made from it (`generations`: kind, outcome, count), so the report
accounts for each one: used, unparseable, or failed. Candidate sets keep their instruction's id (`<seed
id>/c<k>/i<j>`): answers are matched to the request that asked for them, never by position in a batch.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from operators.ids import content_hash
from operators.ingest.formats import BadProblem, json_object, row_license, top_level_functions
from operators.ingest.index import LocalIndex, RunIndex
from operators.llm.backends import Completion, Sampling, make_backend
from operators.records import SYNTH_WORK_SCHEMA, reject
from operators.stages.agree import candidate_row, rejected_line
from operators.stages.base import Placement, RowStage
from operators.stages.ingest import LineParser
from operators.synth import inputs, prompts
from operators.synth.agreement import MAX_PAIRS, candidate_set


class ParseSeeds(LineParser):
    """Input rows → seed rows: `{"id", "text"}` a seed text, `{"id", "concept"}` a concept, `{"id", "code",
    "entry_point"?}` a bare function (code without inputs). A row already in the output is skipped whole."""

    placement = Placement()
    schema = SYNTH_WORK_SCHEMA

    def __init__(self, source: str, fingerprint: str, index: RunIndex | None = None) -> None:
        self.source = source
        self.fingerprint = fingerprint
        self.index = index or LocalIndex()

    def parse(self, text: str, at: str | None) -> list[dict[str, Any]]:
        base = {"source": self.source, "fingerprint": self.fingerprint, "rows_read": 1}
        try:
            row = json_object(text)
            seed_id = content_hash("seed", row, self.fingerprint)
            seed = _seed_row(row)
        except BadProblem as err:
            return [rejected_line(base, text, err)]
        return [{**base, **seed, "record_id": seed_id, "seed_id": seed_id, "license": row_license(row)}]


def _seed_row(row: dict[str, Any]) -> dict[str, Any]:
    row_id = row.get("id", row.get("task_id"))
    if row_id is None:
        raise BadProblem("missing_field", "seed row lacks an 'id'")
    for key, kind in (("code", "function"), ("concept", "concept"), ("text", "seed")):
        value = row.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise BadProblem("bad_field", f"seed row: {key!r} must be non-empty text")
        if kind == "function":
            return {"kind": kind, "id": str(row_id), "code": value, "entry_point": _entry_point(row, value)}
        return {"kind": kind, "id": str(row_id), kind if kind == "concept" else "seed": value}
    raise BadProblem("unknown_format", "a seed row holds 'text' (a seed text), 'concept' or 'code' (a bare function)")


def _entry_point(row: dict[str, Any], code: str) -> str:
    """The row's `entry_point`, else the last function the code defines at its top level."""
    given = row.get("entry_point")
    if given is not None:
        if not isinstance(given, str) or not given.isidentifier():
            raise BadProblem("bad_field", "seed row: 'entry_point' must be a function name")
        return given
    names = top_level_functions(code)
    if not names:
        raise BadProblem("entry_point_missing", "the code defines no function and the row names no entry_point")
    return names[-1]


class Generate(RowStage):
    """Owns one model backend; turns seed texts into concepts, concepts into instructions, instructions into
    candidate sets, and asks for example calls of bare functions. Each step sends all of a batch's prompts
    in one call to the engine."""

    name = "generate"
    schema = SYNTH_WORK_SCHEMA

    def __init__(self, backend: str, model: str | None, sampling: Sampling, options: dict[str, Any],
                 concepts: int, instructions: int, solutions: int, test_generations: int,
                 max_pairs: int = MAX_PAIRS, difficulties: tuple[str, ...] = prompts.DIFFICULTIES) -> None:
        self.engine = make_backend(backend, model, sampling, options)
        self.generator = f"{backend}:{model}"
        self.max_pairs = max_pairs
        self.levels = tuple(difficulties)
        self.counts = {"concepts": concepts, "instructions": instructions, "solutions": solutions,
                       "test_generations": test_generations}

    def wants(self, row: dict[str, Any]) -> bool:
        return row.get("kind") in ("seed", "concept", "function")

    def process_rows(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        rows = [{**row, "generator": self.generator} for row in rows]
        out: list[list[dict[str, Any]]] = [[] for _ in rows]
        work = list(enumerate(rows))
        for step in (self._concepts, self._instructions, self._candidates, self._proposals):
            work = step(work, out)
        return out

    def _ask(self, conversations: list[prompts.Conversation]) -> list[Completion]:
        return self.engine.generate(conversations) if conversations else []

    def _concepts(self, work: list[tuple[int, dict]], out: list[list[dict]]) -> list[tuple[int, dict]]:
        """Seed rows → one concept row each concept the model lists; other rows pass on."""
        seeds = [(i, row) for i, row in work if row["kind"] == "seed"]
        answers = self._ask([prompts.concepts_prompt(row["seed"], self.counts["concepts"]) for _, row in seeds])
        passed = [(i, row) for i, row in work if row["kind"] != "seed"]
        for (i, row), answer in zip(seeds, answers, strict=True):
            found = [] if answer.error else prompts.parse_concepts(answer.text, self.counts["concepts"])
            made = [_child(row, f"/c{k}", kind="concept", concept=concept) for k, concept in enumerate(found)]
            passed += self._fan_out(i, row, answer, "concepts", made, out)
        return passed

    def _instructions(self, work: list[tuple[int, dict]], out: list[list[dict]]) -> list[tuple[int, dict]]:
        concepts = [(i, row) for i, row in work if row["kind"] == "concept"]
        answers = self._ask([prompts.instructions_prompt(row["concept"], self.counts["instructions"], self.levels)
                             for _, row in concepts])
        passed = [(i, row) for i, row in work if row["kind"] != "concept"]
        for (i, row), answer in zip(concepts, answers, strict=True):
            found = [] if answer.error else prompts.parse_instructions(answer.text, self.counts["instructions"],
                                                                       self.levels)
            made = [_child(row, f"/i{k}", kind="instruction", instruction=task.text, signature=task.signature,
                           entry_point=task.entry_point, difficulty=task.difficulty) for k, task in enumerate(found)]
            passed += self._fan_out(i, row, answer, "instructions", made, out)
        return passed

    def _candidates(self, work: list[tuple[int, dict]], out: list[list[dict]]) -> list[tuple[int, dict]]:
        """Instruction rows → candidate sets: `solutions` answers of one solution each, `test_generations`
        answers of several asserts each; each set is finished here, the others pass on."""
        tasks = [(i, row) for i, row in work if row["kind"] == "instruction"]
        n, m = self.counts["solutions"], self.counts["test_generations"]
        conversations = []
        for _, row in tasks:
            task = prompts.Instruction(row["instruction"], row["signature"], row["entry_point"], row["difficulty"])
            conversations += [prompts.solution_prompt(task, k) for k in range(n)]
            conversations += [prompts.tests_prompt(task, k) for k in range(m)]
        answers = iter(self._ask(conversations))
        for i, row in tasks:
            solutions, tests, counted = [], [], Counter(_counts(row))
            for k in range(n + m):
                answer = next(answers)
                kind = "solutions" if k < n else "tests"
                parsed = [] if answer.error else ([prompts.parse_code(answer.text)] if k < n else
                                                  prompts.parse_tests(answer.text))
                counted[kind, _outcome(answer, parsed)] += 1
                counted["tokens", "in"] += answer.tokens_in
                counted["tokens", "out"] += answer.tokens_out
                (solutions if k < n else tests).extend(parsed)
            candidates = candidate_set({"id": row["id"], "instruction": row["instruction"],
                                        "concept": row.get("concept") or "", "difficulty": row["difficulty"],
                                        "entry_point": row["entry_point"],
                                        "solutions": solutions, "tests": tests})
            out[i].append(_with_counts(candidate_row(row, candidates, self.max_pairs), counted))
        return [(i, row) for i, row in work if row["kind"] != "instruction"]

    def _proposals(self, work: list[tuple[int, dict]], out: list[list[dict]]) -> list[tuple[int, dict]]:
        """Bare functions: example calls proposed by the model, tried later in the sandbox with the static ones."""
        functions = [(i, row) for i, row in work if row["kind"] == "function"]
        answers = self._ask([inputs.prompt(row["code"], row["entry_point"]) for _, row in functions])
        for (i, row), answer in zip(functions, answers, strict=True):
            proposed = [] if answer.error else inputs.parse_proposals(answer.text, row["entry_point"])
            counted = Counter(_counts(row)) + Counter({("inputs", _outcome(answer, proposed)): 1})
            out[i].append(_with_counts({**row, "inputs": proposed}, counted))
        return []

    def _fan_out(self, i: int, row: dict, answer: Completion, kind: str, made: list[dict],
                 out: list[list[dict]]) -> list[tuple[int, dict]]:
        """The rows one answer made, the answer counted on the first; a rejected row when it made none."""
        counted = Counter(_counts(row)) + Counter({(kind, _outcome(answer, made)): 1,
                                                   ("tokens", "in"): answer.tokens_in,
                                                   ("tokens", "out"): answer.tokens_out})
        if not made:
            reason = "model_error" if answer.error else f"no_{kind}"
            message = answer.error or f"the model's answer held no usable {kind}"
            out[i].append(_with_counts(reject({**row, "raw": answer.text[:2000]}, "generate", reason, message),
                                       counted))
            return []
        made[0] = _with_counts(made[0], counted)
        return [(i, child) for child in made]


def _child(row: dict[str, Any], suffix: str, **fields: Any) -> dict[str, Any]:
    return {**row, "generations": None, "id": f"{row['id']}{suffix}",
            "record_id": content_hash(row["record_id"], suffix), **fields}


def _outcome(answer: Completion, parsed: list) -> str:
    return "error" if answer.error else ("used" if parsed else "unparseable")


def _counts(row: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(kind, outcome): n for kind, outcome, n in json.loads(row.get("generations") or "[]")}


def _with_counts(row: dict[str, Any], counted: Counter) -> dict[str, Any]:
    tokens_in, tokens_out = counted.pop(("tokens", "in"), 0), counted.pop(("tokens", "out"), 0)
    return {**row, "generations": json.dumps(sorted([*key, n] for key, n in counted.items())),
            "tokens_in": (row.get("tokens_in") or 0) + tokens_in,
            "tokens_out": (row.get("tokens_out") or 0) + tokens_out}


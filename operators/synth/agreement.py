"""Dual agreement (CodeT) over candidate solutions and tests, done the way its own paper describes it.

A candidate set is one instruction with `n` solutions and `m` tests, each test one `assert` that calls the
entry point. Every (solution, test) pair runs in the sandbox as the program `solution + test`; a pair passes
when that program raises nothing, twice, under two hash seeds. Then:

- **Clusters**: solutions that pass exactly the same set of tests form one cluster (a consensus set).
- **Score**: `|tests passed| × sqrt(|solutions in the cluster|)`, CodeT's dampened variant.
- **Duplicates count once, on both sides**: solutions are compared, and tests too, by their syntax tree
  printed back (`ast.unparse`, docstrings dropped), so a copy differing in layout or comments is the same
  solution or test. A model that writes one wrong solution five times, or one wrong test three times, gets
  one vote, not five or three. How many were seen and how many were distinct is kept with the problem.
- **Selection**: the top-scoring cluster is kept when it passes at least `min_tests` tests and holds at least
  `min_solutions` solutions. When two clusters share the top score the set is rejected (`tie`), unless
  `ties: first` keeps the cluster holding the earliest solution. A cluster passing no test is never kept.
- The kept problem is the cluster's first solution (in the order given) plus the tests it passes, turned into
  inputs: one input per distinct call of the entry point in those tests, and the expected output where the
  test reads `assert entry_point(...) == expected`.

Limits, plainly: a pass means "the program raised nothing", exactly as CodeT and the benchmarks' harnesses
define it; code that fakes equality (an object whose `__eq__` always answers True) passes such a test here,
and is caught only later, when `tracecot run` traces the kept solution and finds no literal output. Tests
with set-up lines, or written as `def test_…():` functions, are not tests here (one assert statement each).
"""

from __future__ import annotations

import ast
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from operators.ingest.decontam import normalise
from operators.ingest.formats import BadProblem, Problem, check_code, from_asserts

AGREEMENT_VERSION = "agree-1"
TIES = ("reject", "first")


@dataclass(frozen=True)
class CandidateSet:
    """One instruction's candidates, with duplicates and unusable ones set aside (counted in `dropped`)."""

    problem_id: str
    entry_point: str
    instruction: str
    concept: str
    solutions: tuple[str, ...]  # distinct, parsing, defining the entry point; in the order given
    tests: tuple[str, ...]  # distinct single asserts calling the entry point; in the order given
    solutions_seen: int
    tests_seen: int
    dropped: Counter[str] = field(default_factory=Counter)  # why solutions or tests were set aside


@dataclass(frozen=True)
class Cluster:
    """Solutions (indices into `CandidateSet.solutions`) that pass exactly the same tests."""

    solutions: tuple[int, ...]
    tests: tuple[int, ...]

    @property
    def score(self) -> float:
        return len(self.tests) * math.sqrt(len(self.solutions))


@dataclass(frozen=True)
class Agreement:
    """What dual agreement decided for one candidate set: the kept cluster, or why none was kept."""

    clusters: tuple[Cluster, ...]  # best first
    kept: Cluster | None
    reason: str | None = None  # when nothing was kept: nothing_passes, tie, too_few_tests, too_few_solutions
    message: str = ""


def candidate_set(row: dict[str, Any]) -> CandidateSet:
    """The candidates of one input row, or BadProblem when the row itself is unusable."""
    missing = [key for key in ("id", "entry_point", "solutions", "tests") if row.get(key) in (None, "")]
    if missing:
        raise BadProblem("missing_field", f"candidates row lacks field(s): {', '.join(missing)}")
    entry_point = row["entry_point"]
    if not isinstance(entry_point, str) or not entry_point.isidentifier():
        raise BadProblem("bad_field", "candidates row: 'entry_point' must be a function name")
    lists = [key for key in ("solutions", "tests")
             if not isinstance(row[key], list) or not all(isinstance(item, str) for item in row[key])]
    if lists:
        raise BadProblem("bad_field", f"candidates row: {' and '.join(repr(k) for k in lists)} must be lists of text")
    texts = [key for key in ("instruction", "concept") if not isinstance(row.get(key) or "", str)]
    if texts:
        raise BadProblem("bad_field", f"candidates row: {' and '.join(repr(k) for k in texts)} must be text")
    dropped: Counter[str] = Counter()
    solutions = _distinct(row["solutions"], lambda code: _solution_problem(code, entry_point), "solution", dropped)
    tests = _distinct(row["tests"], lambda test: _test_problem(test, entry_point), "test", dropped)
    return CandidateSet(str(row["id"]), entry_point, row.get("instruction") or "", row.get("concept") or "",
                        tuple(solutions), tuple(tests), len(row["solutions"]), len(row["tests"]), dropped)


def _distinct(texts: list[str], problem_of, kind: str, dropped: Counter[str]) -> list[str]:
    """The usable texts, each once (compared by `normalise`); the others counted in `dropped` by why."""
    kept: list[str] = []
    seen: set[str] = set()
    for text in texts:
        problem = problem_of(text)
        if problem:
            dropped[f"{kind}_{problem}"] += 1
            continue
        key = normalise(text)
        if key in seen:
            dropped[f"{kind}_duplicate"] += 1
            continue
        seen.add(key)
        kept.append(text)
    return kept


def _solution_problem(code: str, entry_point: str) -> str | None:
    try:
        check_code(Problem("", code, entry_point))
    except BadProblem as err:
        return "unparseable" if err.reason == "syntax_error" else "no_entry_point"
    return None


def _test_problem(test: str, entry_point: str) -> str | None:
    """Why `test` is not one assert statement calling the entry point, or None."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "unparseable"
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return "not_one_assert"
    calls = [node for node in ast.walk(tree.body[0].test) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name) and node.func.id == entry_point]
    return None if calls else "no_call"


def program(solution: str, test: str) -> str:
    """The program one (solution, test) pair runs as: the solution, then the test."""
    return f"{solution.rstrip()}\n\n{test.strip()}\n"


def clusters(passed: list[list[bool]]) -> tuple[Cluster, ...]:
    """Solutions grouped by the exact set of tests they pass; best score first, then by earliest solution."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for solution, row in enumerate(passed):
        groups.setdefault(tuple(t for t, ok in enumerate(row) if ok), []).append(solution)
    found = [Cluster(tuple(members), tests) for tests, members in groups.items()]
    return tuple(sorted(found, key=lambda c: (-c.score, c.solutions[0])))


def agree(passed: list[list[bool]], min_tests: int = 1, min_solutions: int = 1, ties: str = "reject") -> Agreement:
    """Dual agreement over a pass matrix (`passed[solution][test]`): the top cluster, or why there is none."""
    found = clusters(passed)
    if not found or found[0].score == 0:
        return Agreement(found, None, "nothing_passes", "no solution passes any test")
    top = found[0]
    tied = [c for c in found if math.isclose(c.score, top.score)]
    if len(tied) > 1 and ties == "reject":
        return Agreement(found, None, "tie", f"{len(tied)} clusters share the top score {top.score:.3g}: "
                         + "; ".join(f"{len(c.solutions)} solution(s) passing {len(c.tests)} test(s)" for c in tied))
    if len(top.tests) < min_tests:
        return Agreement(found, None, "too_few_tests",
                         f"the top cluster passes {len(top.tests)} test(s), fewer than min_tests={min_tests}")
    if len(top.solutions) < min_solutions:
        return Agreement(found, None, "too_few_solutions", f"the top cluster holds {len(top.solutions)} "
                         f"solution(s), fewer than min_solutions={min_solutions}")
    return Agreement(found, top)


def kept_problem(candidates: CandidateSet, cluster: Cluster) -> Problem:
    """The problem a kept cluster becomes: its first solution, and one input per distinct call of the entry
    point in the tests it passes (with the expected output where the test compares the call with `==`)."""
    code = candidates.solutions[cluster.solutions[0]]
    return from_asserts(candidates.problem_id, code, [candidates.tests[t] for t in cluster.tests],
                        candidates.entry_point, callee=candidates.entry_point)

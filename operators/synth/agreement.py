"""Dual agreement (CodeT) over candidate solutions and tests, done the way its own paper describes it.

A candidate set is one instruction with `n` solutions and `m` tests, each test one `assert` that calls the
entry point. Every (solution, test) pair runs in the sandbox as the program `solution + test`; a pair passes
when that program raises nothing, twice, under two hash seeds. Then:

- **Clusters**: solutions that pass exactly the same set of tests form one cluster (a consensus set).
- **Score**: `|tests passed| × sqrt(|solutions in the cluster|)`, CodeT's dampened variant.
- **Duplicates count once, on both sides**: solutions are compared by their syntax tree with every name they
  bind renamed (`operators.synth.dedup.canonical`), so a copy differing in layout, comments, docstrings or
  local names is the same solution; tests by the calls they make and the values they expect (`f(1) == 3`,
  `3 == f(1)` and `f(1) == 3.0` are one test). A model that writes one wrong solution five times, or one
  wrong test three times, gets one vote, not five or three. How many were seen and how many were distinct
  is kept with the problem.
- **Impossible passes**: two tests that call the entry point with the same arguments and expect different
  literal values cannot both pass honest code. A solution that passes both (it forged its result, or
  returns an object whose `==` always answers True) is left out of every cluster.
- **Selection**: the top-scoring cluster is kept when it passes at least `min_tests` tests and holds at least
  `min_solutions` solutions. When two clusters share the top score the set is rejected (`tie`), unless
  `ties: first` keeps the cluster holding the earliest solution. A cluster passing no test is never kept.
- The kept problem is the cluster's first solution (in the order given) plus the tests it passes, turned into
  inputs: one input per distinct call of the entry point in those tests (an argument list that is not plain
  arguments, or itself calls the entry point, is left out), and the expected output where the test reads
  `assert entry_point(...) == expected` with a literal `expected`.
- A candidate set with more than `max_pairs` (solution, test) pairs is rejected before anything runs, so
  one row cannot hold an executor for hours.

Limits, plainly: a pass means "the program reported no exception", as CodeT and the benchmarks' harnesses
define it, and the program reports it from inside the process its code runs in: code written to deceive
(faking equality, or writing the sandbox's own result frame) passes every test it is run with. Only the
impossible-pass check above catches it, when the tests contradict each other; otherwise it is caught later,
when `tracecot run` traces the kept solution (an output that is not a literal, or not the expected one).
Which tests truly exercise the entry point is judged from their syntax: a call inside a lambda does not
count, but `assert f(1) or True` does. Tests with set-up lines, or written as `def test_…():` functions, are
not tests here.
"""

from __future__ import annotations

import ast
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from operators.ingest.formats import BadProblem, Problem, check_code, from_asserts
from operators.sandbox.calls import BadInput, check_syntax
from operators.synth.dedup import canonical
from operators.trace.values import parse_literal

AGREEMENT_VERSION = "agree-2"
TIES = ("reject", "first")
MAX_PAIRS = 1024  # (solution, test) programs one candidate set may run: ~15 s of a sandbox at ~70 programs/s


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

    def contradictions(self) -> list[tuple[int, int]]:
        """Pairs of tests (indices) that no honest solution passes together: the same call, two different
        literal expected values."""
        calls = [_calls(test, self.entry_point) for test in self.tests]
        return [(a, b) for a in range(len(calls)) for b in range(a + 1, len(calls))
                if any(args == other and _differ(value, expected) for args, value in calls[a]
                       for other, expected in calls[b])]


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
    solutions = _distinct(row["solutions"], lambda code: _solution_problem(code, entry_point), canonical, "solution",
                          dropped)
    tests = _distinct(row["tests"], lambda test: _test_problem(test, entry_point),
                      lambda test: _calls(test, entry_point) or " ".join(test.split()), "test", dropped)
    return CandidateSet(str(row["id"]), entry_point, row.get("instruction") or "", row.get("concept") or "",
                        tuple(solutions), tuple(tests), len(row["solutions"]), len(row["tests"]), dropped)


def _distinct(texts: list[str], problem_of, key_of, kind: str, dropped: Counter[str]) -> list[str]:
    """The usable texts, each once (compared by `key_of`); the others counted in `dropped` by why."""
    kept: list[str] = []
    seen: list[Any] = []
    for text in texts:
        problem = problem_of(text)
        if problem:
            dropped[f"{kind}_{problem}"] += 1
            continue
        key = key_of(text)
        if key in seen:  # a list, not a set: keys hold literal values, and 3 == 3.0
            dropped[f"{kind}_duplicate"] += 1
            continue
        seen.append(key)
        kept.append(text)
    return kept


def _calls(test: str, entry_point: str) -> list[tuple[str, Any]]:
    """Each call of the entry point in a test, with what the test expects it to equal: a literal value, the
    expression's text, or None."""
    try:
        problem = from_asserts("", "", [test], entry_point, callee=entry_point)
    except BadProblem:
        return []
    return [(args, _value(expected)) for args, expected in zip(problem.inputs, problem.outputs, strict=True)]


def _value(expected: str | None) -> Any:
    if expected is None:
        return None
    try:
        return ("literal", parse_literal(expected))
    except ValueError:
        return ("text", " ".join(expected.split()))


def _differ(value: Any, other: Any) -> bool:
    """Two literal expectations that cannot both hold."""
    if not (value and other and value[0] == other[0] == "literal"):
        return False
    try:
        return bool(value[1] != other[1])
    except Exception:  # literals compare without raising, but a comparison must never stop a row
        return False


def _solution_problem(code: str, entry_point: str) -> str | None:
    try:
        check_code(Problem("", code, entry_point))
    except BadProblem as err:
        return "unparseable" if err.reason == "syntax_error" else "no_entry_point"
    return None if canonical(code) is not None else "unparseable"  # too deep to print back


def _test_problem(test: str, entry_point: str) -> str | None:
    """Why `test` is not one assert statement calling the entry point, or None."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "unparseable"
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return "not_one_assert"
    return None if _calls_entry_point(tree.body[0].test, entry_point) else "no_call"


def _calls_entry_point(node: ast.AST, entry_point: str) -> bool:
    """Whether evaluating `node` calls the entry point: a call inside a lambda may never run, so it does not
    count (`assert callable(lambda: f(1))` passes whatever `f` does)."""
    if isinstance(node, ast.Lambda):
        return False
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == entry_point:
        return True
    return any(_calls_entry_point(child, entry_point) for child in ast.iter_child_nodes(node))


def program(solution: str, test: str) -> str:
    """The program one (solution, test) pair runs as: the solution, then the test."""
    return f"{solution.rstrip()}\n\n{test.strip()}\n"


def clusters(passed: list[list[bool]]) -> tuple[Cluster, ...]:
    """Solutions grouped by the exact set of tests they pass; best score first, then by earliest solution."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for solution, row in enumerate(passed):
        groups.setdefault(tuple(t for t, ok in enumerate(row) if ok), []).append(solution)
    found = [Cluster(tuple(members), tests) for tests, members in groups.items()]
    # rounded, so that scores equal but for the float's last bit (sqrt(18) and 3 * sqrt(2)) sort as a tie
    return tuple(sorted(found, key=lambda c: (-round(c.score, 9), c.solutions[0])))


def agree(passed: list[list[bool]], min_tests: int = 1, min_solutions: int = 1, ties: str = "reject",
          contradictions: list[tuple[int, int]] = ()) -> Agreement:
    """Dual agreement over a pass matrix (`passed[solution][test]`): the top cluster, or why there is none.
    A solution passing both tests of a `contradictions` pair is left out (it passes nothing)."""
    passed = [[False] * len(row) if any(row[a] and row[b] for a, b in contradictions) else row for row in passed]
    found = clusters(passed)
    if not found or found[0].score == 0:
        return Agreement(found, None, "nothing_passes", "no solution passes any test")
    top = found[0]
    tied = [c for c in found if round(c.score, 9) == round(top.score, 9)]
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
    point in the tests it passes, with the expected output where the test compares the call with `==` to a
    literal. Argument texts that are not plain arguments, or that call the entry point themselves, are left out."""
    code = candidates.solutions[cluster.solutions[0]]
    found = from_asserts(candidates.problem_id, code, [candidates.tests[t] for t in cluster.tests],
                         candidates.entry_point, callee=candidates.entry_point)
    problem = Problem(found.problem_id, code, found.entry_point)
    for args, expected in zip(found.inputs, found.outputs, strict=True):
        if _plain_arguments(args, candidates.entry_point):
            problem.inputs.append(args)
            problem.outputs.append(expected if _value(expected) and _value(expected)[0] == "literal" else None)
    if not problem.inputs:
        raise BadProblem("no_inputs", "the kept tests hold no plain call of the entry point to turn into an input")
    return problem


def _plain_arguments(args: str, entry_point: str) -> bool:
    try:
        check_syntax(args)
        tree = ast.parse(f"_({args})")
    except (BadInput, SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return not any(isinstance(node, ast.Name) and node.id == entry_point for node in ast.walk(tree))

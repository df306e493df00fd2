"""Dual agreement (CodeT) over candidate solutions and tests, done the way its own paper describes it.

A candidate set is one instruction with `n` solutions and `m` tests, each test one `assert` that calls the
entry point. Every (solution, test) pair runs in the sandbox, twice, under two hash seeds. A test of the
common shape `assert entry_point(ARGS) == LITERAL` runs as a call of the entry point: its output comes back as
text and the verdict is taken here, outside the solution's process (the output must be a literal equal to the
expected one). Any other test runs as the program `solution + test` and passes when it raises nothing. Then:

- **Clusters**: solutions that pass exactly the same set of tests form one cluster (a consensus set).
- **Score**: `|tests passed| × sqrt(votes)`, CodeT's dampened variant, where `votes` counts the cluster's
  solutions once per family of near-duplicates.
- **Duplicates count once, on both sides**: solutions are compared by their syntax tree with every name they
  bind renamed (`operators.synth.dedup.canonical`), so a copy differing in layout, comments, docstrings or
  local names is the same solution and runs once; copies that differ a little more (a statement inserted, a
  constant changed: MinHash over code tokens at `synth.dedup_threshold`, for code of 40 tokens or more) run
  but vote once. Tests are compared by the calls they make and the values they expect (`f(1) == 3`,
  `3 == f(1)` and `f(1) == 3.0` are one test). A model that writes one wrong solution five times, or one
  wrong test three times, gets one vote, not five or three. How many were seen and how many were distinct
  is kept with the problem.
- **Tests that check something**: a test must call the entry point (outside a lambda, which may never run)
  and have the shape of a check that can fail: a comparison of two different expressions, a call, `not` or
  `and` of these. `assert f(1) or True`, `assert (f(1), True)` or `assert f(1) == f(1)` are set aside.
- **Impossible passes**: two tests that call the entry point with the same arguments and expect different
  literal values cannot both pass honest code. A solution that passes both is left out of every cluster.
- **Selection**: the top-scoring cluster is kept when it passes at least `min_tests` tests and has at least
  `min_solutions` votes. When two clusters share the top score the set is rejected (`tie`), unless
  `ties: first` keeps the cluster holding the earliest solution. A cluster passing no test is never kept.
- The kept problem is the cluster's first solution (in the order given) plus the tests it passes, turned into
  inputs: one input per distinct call of the entry point in those tests (an argument list that is not plain
  arguments, or itself calls the entry point, is left out), and the expected output where the test reads
  `assert entry_point(...) == expected` with a literal `expected`.
- A candidate set with more than `max_pairs` (solution, test) pairs is rejected before anything runs, and
  one still running after `max_row_seconds` is stopped (`too_slow`, checked after each solution's tests), so
  one row cannot hold an executor for hours.

Limits, plainly: a test of another shape passes when its program reports no exception, as CodeT and the
benchmarks' harnesses define it, and the program reports it from inside the process its code runs in: code
written to deceive (faking `==` inside such a test, or writing the sandbox's own result frame) passes it.
The impossible-pass check catches that when tests contradict each other; otherwise it is caught later, when
`tracecot run` traces the kept solution (an output that is not a literal, or not the expected one). Whether
a test checks something is judged from its syntax: `assert len([f(1)]) == 1` still counts. A solution
returning a value that equals a literal without being one (a `Counter`, a `Fraction`) fails equality tests
here, as `tracecot run` would reject its output. Tests with set-up lines, or written as `def test_…():`
functions, are not tests here.
"""

from __future__ import annotations

import ast
import builtins
import itertools
import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from operators.ingest.formats import BadProblem, Problem, check_code, from_asserts, top_level_functions
from operators.sandbox.calls import BadInput, check_syntax
from operators.synth.dedup import Deduplicator, canonical
from operators.trace.values import equal_literals, parse_literal

AGREEMENT_VERSION = "agree-3"
TIES = ("reject", "first")
MAX_PAIRS = 1024  # (solution, test) programs one candidate set may run: ~15 s of a sandbox at ~70 programs/s
ROW_SECONDS = 300.0  # and how long they may take together (slow or sleeping solutions), checked per solution


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
    difficulty: str = ""  # as the instruction was rated, when it was

    def families(self, threshold: float) -> list[int]:
        """For each solution, the first solution it near-duplicates (MinHash over code tokens, the dedup
        stage's measure at `threshold`), or itself: a copy with a statement inserted or a constant changed is
        one vote, not two."""
        index = Deduplicator(threshold=threshold)
        found = [index.check(str(i), code) for i, code in enumerate(self.solutions)]
        return [int(duplicate.of) if duplicate else i for i, duplicate in enumerate(found)]

    def contradictions(self) -> list[tuple[int, int]]:
        """Pairs of tests (indices) that no honest solution passes together: the same call, two different
        literal expected values."""
        calls = [[(args, value) for args, text in _calls(test, self.entry_point)
                  if (value := _literal(text)) is not NOT_LITERAL] for test in self.tests]
        return [(a, b) for a in range(len(calls)) for b in range(a + 1, len(calls))
                if any(args == other and _differ(value, expected) for args, value in calls[a]
                       for other, expected in calls[b])]


@dataclass(frozen=True)
class Cluster:
    """Solutions (indices into `CandidateSet.solutions`) that pass exactly the same tests; `votes` counts them
    once per family of near-duplicates (`CandidateSet.families`)."""

    solutions: tuple[int, ...]
    tests: tuple[int, ...]
    votes: int

    @property
    def score(self) -> float:
        return len(self.tests) * math.sqrt(self.votes)


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
    texts = [key for key in ("instruction", "concept", "difficulty") if not isinstance(row.get(key) or "", str)]
    if texts:
        raise BadProblem("bad_field", f"candidates row: {' and '.join(repr(k) for k in texts)} must be text")
    dropped: Counter[str] = Counter()
    solutions = _distinct(row["solutions"], lambda code: _solution_problem(code, entry_point), canonical, "solution",
                          dropped)
    tests = _distinct(row["tests"], lambda test: _test_problem(test, entry_point),
                      lambda test: _test_key(test, entry_point), "test", dropped)
    return CandidateSet(str(row["id"]), entry_point, row.get("instruction") or "", row.get("concept") or "",
                        tuple(solutions), tuple(tests), len(row["solutions"]), len(row["tests"]), dropped,
                        row.get("difficulty") or "")


def _distinct(texts: list[str], problem_of, key_of, kind: str, dropped: Counter[str]) -> list[str]:
    """The usable texts, each once (compared by `key_of`, which gives hashable keys); the others counted in
    `dropped` by why."""
    kept: list[str] = []
    seen: set[Any] = set()
    for text in texts:
        problem = problem_of(text)
        if problem:
            dropped[f"{kind}_{problem}"] += 1
            continue
        key = key_of(text)
        if key in seen:
            dropped[f"{kind}_duplicate"] += 1
            continue
        seen.add(key)
        kept.append(text)
    return kept


def _test_key(test: str, entry_point: str) -> tuple:
    """What makes two tests one test. An equality test: its call and its expected value, compared as Python
    compares them (`f(1) == 3`, `3 == f( 1, )` and `f(1) == 3.0` are one; `f(1) == [1]` and `f(1) == (1,)` are
    two). Any other: its condition as the syntax tree prints it (layout and the assert's message aside), so
    `f(3) is True` and `f(3) is False` are two."""
    check = equality_test(test, entry_point)
    if check is not None:
        return "equal", check.args, _frozen(parse_literal(check.expected))
    return "assert", ast.unparse(ast.parse(test).body[0].test)  # type: ignore[attr-defined]


def _frozen(value: Any) -> Any:
    """A literal as a hashable key that is equal, and hashes alike, exactly when the literals are equal."""
    if isinstance(value, list | tuple):
        return type(value).__name__, tuple(_frozen(item) for item in value)
    if isinstance(value, dict):
        return "dict", frozenset((_frozen(k), _frozen(v)) for k, v in value.items())
    if isinstance(value, set | frozenset):
        return "set", frozenset(_frozen(item) for item in value)
    return value


def _calls(test: str, entry_point: str) -> list[tuple[str, str | None]]:
    """Each call of the entry point in a test, its argument text as the syntax tree prints it (spacing, quotes
    and trailing commas aside), with the text of what the test compares it with `==`, when it does."""
    try:
        problem = from_asserts("", "", [test], entry_point, callee=entry_point)
    except BadProblem:
        return []
    return [(_normal_arguments(args), expected) for args, expected in zip(problem.inputs, problem.outputs, strict=True)]


def _normal_arguments(args: str) -> str:
    try:
        call = ast.parse(f"_({args})", mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return args
    return ast.unparse(call)[2:-1]


NOT_LITERAL = object()


def _literal(text: str | None) -> Any:
    """The literal value `text` writes, or NOT_LITERAL."""
    if text is None:
        return NOT_LITERAL
    try:
        return parse_literal(text)
    except ValueError:
        return NOT_LITERAL


def _differ(value: Any, other: Any) -> bool:
    """Two literal expectations that cannot both hold."""
    try:
        return bool(value != other)
    except Exception:  # literals compare without raising, but a comparison must never stop a row
        return False


def _solution_problem(code: str, entry_point: str) -> str | None:
    """Why a solution cannot be used, or None: it must parse and define the entry point with `def` (a name
    imported or assigned has no code of its own to trace)."""
    try:
        check_code(Problem("", code, entry_point))
    except BadProblem as err:
        return "unparseable" if err.reason == "syntax_error" else "no_entry_point"
    if entry_point not in top_level_functions(code):
        return "no_entry_point"
    return None if canonical(code) is not None else "unparseable"  # too deep to print back


def _test_problem(test: str, entry_point: str) -> str | None:
    """Why `test` is not one assert statement calling the entry point, or None."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "unparseable"
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return "not_one_assert"
    condition = tree.body[0].test
    if not _calls_entry_point(condition, entry_point):
        return "no_call"
    return None if _checks(condition) else "no_check"


def _checks(node: ast.AST) -> bool:
    """Whether an assert's condition has the shape of a check that can fail: a comparison of different
    expressions, a call, `not` of a check, `and` of checks. An `or`, a conditional, a constant or a display
    (a non-empty tuple is always true) can pass whatever the entry point returns, and so can `x == x`."""
    if isinstance(node, ast.BoolOp):
        return isinstance(node.op, ast.And) and all(_checks(value) for value in node.values)
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.Not) and _checks(node.operand)
    if isinstance(node, ast.Compare):
        operands = [ast.dump(operand) for operand in (node.left, *node.comparators)]
        return all(a != b for a, b in itertools.pairwise(operands))
    return isinstance(node, ast.Call)


def _calls_entry_point(node: ast.AST, entry_point: str) -> bool:
    """Whether evaluating `node` calls the entry point: a call inside a lambda may never run, so it does not
    count (`assert callable(lambda: f(1))` passes whatever `f` does)."""
    if isinstance(node, ast.Lambda):
        return False
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == entry_point:
        return True
    return any(_calls_entry_point(child, entry_point) for child in ast.iter_child_nodes(node))


@dataclass(frozen=True)
class EqualityTest:
    """A test that reads `assert entry_point(ARGS) == LITERAL` (or `LITERAL == entry_point(ARGS)`), ARGS plain
    arguments: its verdict is reached outside the solution's process (`pair_job`, `passes`)."""

    args: str
    expected: str  # the literal's text


def equality_test(test: str, entry_point: str) -> EqualityTest | None:
    """The test as an `EqualityTest`, or None when it has another shape."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    node = tree.body[0].test if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert) else None
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq)):
        return None
    calls = _calls(test, entry_point)
    if len(calls) != 1:
        return None
    args, expected = calls[0]
    direct = [side for side in (node.left, node.comparators[0])
              if isinstance(side, ast.Call) and isinstance(side.func, ast.Name) and side.func.id == entry_point]
    if not (direct and _literal(expected) is not NOT_LITERAL and _plain_arguments(args)):
        return None
    other = node.comparators[0] if direct[0] is node.left else node.left
    return EqualityTest(args, ast.get_source_segment(test, other) or ast.unparse(other))


def program(solution: str, test: str) -> str:
    """The program a (solution, test) pair runs as when its test is not an equality test: the solution, then
    the test. Standard-library modules the test names (`math.isclose(...)`) are imported for the test alone,
    as parameters of a function it runs in: the solution does not get an import it forgot."""
    modules = _modules_named(test)
    if not modules:
        return f"{solution.rstrip()}\n\n{test.strip()}\n"
    parameters = ", ".join(f"{name}=__import__({name!r})" for name in modules)
    return f"{solution.rstrip()}\n\n\ndef _test({parameters}):\n    {test.strip()}\n\n\n_test()\n"


def _modules_named(test: str) -> list[str]:
    names = {node.id for node in ast.walk(ast.parse(test)) if isinstance(node, ast.Name)}
    return sorted(name for name in names if name in sys.stdlib_module_names and not hasattr(builtins, name))


def pair_job(solution: str, test: str, entry_point: str) -> dict[str, Any]:
    """The sandbox job of one (solution, test) pair. An equality test becomes a call of the entry point whose
    output comes back as text, compared here (`passes`): a returned object whose `==` always answers True is
    not a literal and passes nothing. Any other test runs as the program `solution + test`."""
    check = equality_test(test, entry_point)
    if check is None:
        return {"kind": "program", "code": program(solution, test), "module": "__problem__"}
    # "compare": "value": runs under other hash seeds agree when their outputs are equal values, so a dict built
    # from a set (its order follows the seed) is not taken for nondeterminism
    return {"kind": "call", "code": solution, "entry_point": entry_point, "input": check.args, "traced": False,
            "compare": "value"}


def passes(result: dict[str, Any], test: str, entry_point: str) -> bool:
    """Whether a pair's result passes its test: a program that raised nothing, or a call whose output is a
    literal equal (Python `==`) to the expected one."""
    if result["outcome"] != "ok":
        return False
    check = equality_test(test, entry_point)
    if check is None:
        return True
    return bool(result.get("output_is_literal")) and not result.get("output_truncated") \
        and equal_literals(check.expected, result["output"])


def clusters(passed: list[list[bool]], families: Sequence[int] = ()) -> tuple[Cluster, ...]:
    """Solutions grouped by the exact set of tests they pass, each family of near-duplicates one vote (no
    `families`: every solution its own); best score first, then by earliest solution."""
    family = families or range(len(passed))
    groups: dict[tuple[int, ...], list[int]] = {}
    for solution, row in enumerate(passed):
        groups.setdefault(tuple(t for t, ok in enumerate(row) if ok), []).append(solution)
    found = [Cluster(tuple(members), tests, len({family[m] for m in members})) for tests, members in groups.items()]
    # rounded, so that scores equal but for the float's last bit (sqrt(18) and 3 * sqrt(2)) sort as a tie
    return tuple(sorted(found, key=lambda c: (-round(c.score, 9), c.solutions[0])))


def agree(passed: list[list[bool]], min_tests: int = 1, min_solutions: int = 1, ties: str = "reject",
          contradictions: Sequence[tuple[int, int]] = (), families: Sequence[int] = ()) -> Agreement:
    """Dual agreement over a pass matrix (`passed[solution][test]`): the top cluster, or why there is none.
    A solution passing both tests of a `contradictions` pair is left out (it passes nothing); near-duplicate
    solutions (`families`, see `clusters`) vote once."""
    passed = [[False] * len(row) if any(row[a] and row[b] for a, b in contradictions) else row for row in passed]
    found = clusters(passed, families)
    if not found or found[0].score == 0:
        return Agreement(found, None, "nothing_passes", "no solution passes any test")
    top = found[0]
    tied = [c for c in found if round(c.score, 9) == round(top.score, 9)]
    if len(tied) > 1 and ties == "reject":
        return Agreement(found, None, "tie", f"{len(tied)} clusters share the top score {top.score:.3g}: "
                         + "; ".join(f"{c.votes} solution(s) passing {len(c.tests)} test(s)" for c in tied))
    if len(top.tests) < min_tests:
        return Agreement(found, None, "too_few_tests",
                         f"the top cluster passes {len(top.tests)} test(s), fewer than min_tests={min_tests}")
    if top.votes < min_solutions:
        return Agreement(found, None, "too_few_solutions", f"the top cluster holds {top.votes} distinct "
                         f"solution(s), fewer than min_solutions={min_solutions}")
    return Agreement(found, top)


def kept_problem(candidates: CandidateSet, cluster: Cluster) -> Problem:
    """The problem a kept cluster becomes: its first solution, and one input per distinct call of the entry
    point in the tests it passes, with the expected output where any of them compares the call with `==` to a
    literal. Calls whose arguments are not literals are left out (`f(x)` inside a comprehension, `f(Node())`)."""
    expected: dict[str, str | None] = {}
    for test in cluster.tests:
        for args, text in _calls(candidates.tests[test], candidates.entry_point):
            if _plain_arguments(args) and expected.get(args) is None:
                expected[args] = text.strip() if _literal(text) is not NOT_LITERAL else None  # type: ignore[union-attr]
    if not expected:
        raise BadProblem("no_inputs", "the kept tests hold no call of the entry point with literal arguments")
    return Problem(candidates.problem_id, candidates.solutions[cluster.solutions[0]], candidates.entry_point,
                   list(expected), list(expected.values()))


def _plain_arguments(args: str) -> bool:
    """Whether every argument is a literal (`1, [2], k='x'`, `*[1, 2]`): what `tracecot run` takes as an input."""
    try:
        check_syntax(args)
        call = ast.parse(f"_({args})", mode="eval").body
    except (BadInput, SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    if any(keyword.arg is None for keyword in call.keywords):  # type: ignore[attr-defined]
        return False
    values = [arg.value if isinstance(arg, ast.Starred) else arg for arg in call.args]  # type: ignore[attr-defined]
    try:
        for value in [*values, *(keyword.value for keyword in call.keywords)]:  # type: ignore[attr-defined]
            ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True

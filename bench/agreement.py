"""Dual agreement (`tracecot agree`) under attack, on real MBPP problems whose ground truth is known.

    PYTHONPATH=. python bench/agreement.py [--data ../shared/data/mbpp/mbpp.jsonl] [--limit N] [--timeout S]

For every MBPP problem the `code` is a correct solution and its `test_list` asserts are correct tests. Each
problem is turned into one candidate set per adversarial class (below): the honest candidates plus wrong
solutions (AST mutants of the correct code, constants, special-cased inputs, code that raises, loops, exits,
floods stdout, fakes equality, or forges the sandbox's own "ok"), wrong tests (the correct call with the
value a wrong solution returns), copies of the wrong ones (reformatted, commented, renamed locals, dead
statements), tests that pass everything, exactly balanced ties, empty and non-parsing candidates.

Each set goes through what `tracecot agree` runs, in-process and without Ray: `candidate_set` and
`candidate_row` (ParseCandidates), `ExecutePairs.process_rows`, `Agree.process`. Then the ground truth judges
what was kept, in the sandbox:

- kept-correct: the kept solution passes every original MBPP assert (as a program) AND returns, on every
  original input, the same value text as the MBPP solution (so an object that fakes `==` is not "correct");
- kept-wrong: a kept solution failing either check (must be 0);
- wrong-tests: kept tests the MBPP solution fails (must be 0);
- wrong-outputs: kept (input, expected output) pairs the MBPP solution does not reproduce (must be 0);
- rejected, by stage:reason; and whether every row ended exactly once (kept or rejected).

Prints one line per class, the totals and the seconds taken; exits 1 when a must-be-0 column is not 0,
except in the classes of `UNDECIDABLE`, where no rule over a pass matrix can know better.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from operators.ingest.formats import BadProblem, from_asserts
from operators.sandbox.client import Limits, Sandbox
from operators.stages.agree import Agree, ExecutePairs, candidate_row
from operators.synth.agreement import candidate_set, program

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/mbpp/mbpp.jsonl"


# ---------------------------------------------------------------- source transformations (all by syntax tree)

def _function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def reformatted(code: str) -> str:
    """The same code, laid out by `ast.unparse`, with comments and a docstring added (dedup must see through)."""
    tree = ast.parse(code)
    return "# a second attempt\n" + ast.unparse(tree).replace("\n", "  # same\n", 1) + "\n# end\n"


def renamed_locals(code: str, entry: str) -> str | None:
    """The same code with the entry point's assigned locals renamed: same behaviour, another syntax tree."""
    tree = ast.parse(code)
    fn = _function(tree, entry)
    if fn is None:
        return None
    params = {a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)}
    stored = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)} - params
    if not stored:
        return None
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and node.id in stored:
            node.id = f"renamed_{node.id}"
    return ast.unparse(tree)


def with_dead_statement(code: str, entry: str) -> str | None:
    """The same code with one statement that does nothing: another syntax tree, the same function."""
    tree = ast.parse(code)
    fn = _function(tree, entry)
    if fn is None:
        return None
    fn.body.insert(0, ast.parse("unused_marker = None").body[0])
    return ast.unparse(tree)


_FLIP = {ast.Lt: ast.GtE, ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.GtE: ast.Lt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}
_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult}


def mutants(code: str) -> list[tuple[str, str]]:
    """(kind, code) mutants: each site of each kind changed alone (flip a comparison, off by one, swap an
    arithmetic operator, drop `not`, return early with the first argument)."""
    found: list[tuple[str, str]] = []
    base = ast.parse(code)
    sites = list(ast.walk(base))
    for i, node in enumerate(sites):
        kind = None
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _FLIP:
            kind = "flip_comparison"
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            kind = "off_by_one"
        elif isinstance(node, ast.BinOp) and type(node.op) in _SWAP:
            kind = "swap_operator"
        if kind is None:
            continue
        tree = ast.parse(code)
        target = list(ast.walk(tree))[i]
        if kind == "flip_comparison":
            target.ops[0] = _FLIP[type(target.ops[0])]()  # type: ignore[attr-defined]
        elif kind == "off_by_one":
            target.value += 1  # type: ignore[attr-defined]
        else:
            target.op = _SWAP[type(target.op)]()  # type: ignore[attr-defined]
        found.append((kind, ast.unparse(tree)))
    return found


def special_cased(code: str, entry: str, args: str, value: str) -> str:
    """The correct code, except that one input (a wrong test's) returns the wrong test's value."""
    tree = ast.parse(code)
    fn = _function(tree, entry)
    assert fn is not None
    fn.name = f"honest_{entry}"
    for node in ast.walk(tree):  # recursion goes through the special case too
        if isinstance(node, ast.Name) and node.id == entry:
            node.id = fn.name
    wrapper = (f"def {entry}(*args, **kwargs):\n"
               f"    if (args, kwargs) == (({args},), {{}}):\n"
               f"        return {value}\n"
               f"    return honest_{entry}(*args, **kwargs)\n")
    return ast.unparse(tree) + "\n\n" + wrapper


def wrong_value(expected: str) -> str | None:
    """A literal unequal to `expected`, of the same kind where possible."""
    try:
        value = ast.literal_eval(expected)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if isinstance(value, bool):
        return repr(not value)
    if isinstance(value, int | float):
        return repr(value + 1)
    if isinstance(value, str):
        return repr(value + "x")
    if isinstance(value, list | tuple):
        return repr(value + type(value)([0]))
    return repr(None) if value is not None else "0"


def hostile(entry: str) -> dict[str, str]:
    """Solutions that attack the harness rather than the problem."""
    return {
        "raises": f"def {entry}(*args, **kwargs):\n    raise ValueError('no')\n",
        "loops": f"def {entry}(*args, **kwargs):\n    while True:\n        pass\n",
        "sys_exit": f"import sys\n\ndef {entry}(*args, **kwargs):\n    sys.exit(0)\n",
        "os_exit": f"import os\n\ndef {entry}(*args, **kwargs):\n    os._exit(0)\n",
        "module_exit": f"import sys\n\ndef {entry}(*args, **kwargs):\n    return 0\nsys.exit(0)\n",
        "huge_print": f"def {entry}(*args, **kwargs):\n    print('x' * 50_000_000)\n    return None\n",
        "always_eq": ("class Anything:\n    def __eq__(self, other):\n        return True\n\n"
                      "    def __ne__(self, other):\n        return False\n    __hash__ = object.__hash__\n\n"
                      f"def {entry}(*args, **kwargs):\n    return Anything()\n"),
        # writes the fork server's own result frame for "ok" on the result pipe, then leaves without a trace
        "forged_ok": ("import os\nimport struct\n\n"
                      f"def {entry}(*args, **kwargs):\n    return None\n"
                      "FRAME = b'{\"outcome\":\"ok\"}'\n"
                      "for fd in range(3, 1024):\n    try:\n"
                      "        os.write(fd, struct.pack('>I', len(FRAME)) + FRAME)\n"
                      "    except OSError:\n        pass\nos._exit(0)\n"),
    }


# ---------------------------------------------------------------- one MBPP problem, its ground truth

@dataclass
class Truth:
    pid: str
    entry: str
    code: str  # the MBPP solution
    tests: list[str]  # its asserts
    inputs: list[str]
    expected: list[str | None]
    outputs: list[str] = field(default_factory=list)  # the MBPP solution's value text per input


def truth_of(row: dict[str, Any], sandbox: Sandbox) -> Truth | None:
    """The problem, when its own solution passes its own asserts and returns literal values; else None."""
    if row.get("test_setup_code"):
        return None
    code = row["code"].replace("\r\n", "\n").expandtabs(4)
    tests = [t.strip() for t in row["test_list"]]
    try:
        ast.parse(code)
        problem = from_asserts(str(row["task_id"]), code, tests)
    except (BadProblem, SyntaxError):
        return None
    truth = Truth(f"mbpp/{row['task_id']}", problem.entry_point, code, tests, problem.inputs, problem.outputs)
    checks = sandbox.run_many([{"kind": "program", "code": program(code, t)} for t in tests])
    calls = sandbox.run_many([{"code": code, "entry_point": truth.entry, "input": i, "traced": False}
                              for i in truth.inputs])
    if any(r["outcome"] != "ok" for r in checks + calls) or not all(r.get("output_is_literal") for r in calls):
        return None
    truth.outputs = [r["output"] for r in calls]
    return truth


def values_of(sandbox: Sandbox, code: str, entry: str, inputs: list[str]) -> list[str | None]:
    """The value text `code` returns on each input, None where the call fails."""
    found = sandbox.run_many([{"code": code, "entry_point": entry, "input": i, "traced": False} for i in inputs])
    return [r["output"] if r["outcome"] == "ok" else None for r in found]


# ---------------------------------------------------------------- the adversarial classes

def candidate_rows(truth: Truth, sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    """One candidate row per class that this problem can make (a class needing a mutant is skipped when no
    mutant fails an original test)."""
    e, good, tests = truth.entry, truth.code, truth.tests
    wrong, wrong_tests = None, []
    for _kind, code in mutants(good):
        values = values_of(sandbox, code, e, truth.inputs)
        differs = [i for i, (v, o) in enumerate(zip(values, truth.outputs, strict=True)) if v != o]
        if differs and all(values[i] is not None for i in differs):
            wrong = code
            wrong_tests = [f"assert {e}({truth.inputs[i]}) == {values[i]}" for i in differs]
            break
    rows: dict[str, dict[str, Any]] = {}

    def add(name: str, solutions: list[str], tests_: list[str], **extra: Any) -> None:
        rows[name] = {"id": f"{truth.pid}/{name}", "instruction": name, "entry_point": e,
                      "solutions": solutions, "tests": tests_, **extra}

    add("honest", [good, reformatted(good)], tests)
    add("all_mutants", [good, *(m for _, m in mutants(good)[:6])], tests)
    constant = f"def {e}(*args, **kwargs):\n    return {truth.expected[0] or truth.outputs[0]}\n"
    add("constant_of_test0", [constant, good], tests)
    for name, code in hostile(e).items():
        add(f"hostile_{name}", [good, code], tests)
    add("hostile_only", list(hostile(e).values())[:6], tests)  # all but the fakes of equality and of "ok"
    add("tautology_test", [good, *(m for _, m in mutants(good)[:3])], [*tests, f"assert {e}({truth.inputs[0]}) "
                                                                             f"== {e}({truth.inputs[0]})"])
    lambdas = [f"assert callable(lambda: {e}({truth.inputs[0]}))", f"assert callable(lambda: {e}({truth.inputs[-1]}))"]
    add("lambda_test_honest_present", [good, hostile(e)["raises"]], [*tests[:1], *lambdas])
    add("lambda_test_raiser_only", [hostile(e)["raises"]], lambdas)  # a "test" that never runs the call
    value = wrong_value(truth.expected[0] or truth.outputs[0])
    if value is not None:
        special = special_cased(good, e, truth.inputs[0], value)
        add("special_cased_test0_input", [good, special], [*tests, f"assert {e}({truth.inputs[0]}) == {value}"])
        add("always_eq_with_wrong_test", [good, hostile(e)["always_eq"]],
            [*tests, f"assert {e}({truth.inputs[0]}) == {value}"])
        add("forged_ok_with_wrong_test", [good, hostile(e)["forged_ok"]],
            [*tests, f"assert {e}({truth.inputs[0]}) == {value}"])
    if wrong is not None:
        add("mutant_vs_honest", [good, wrong], tests)
        # exactly balanced: the mutant passes as many (wrong + original) tests as the honest solution
        add("tie_balanced", [good, wrong], [*tests, *wrong_tests])
        add("tie_balanced_first", [wrong, good], [*tests, *wrong_tests], ties="first")
        # copies that dedup must count once: reformatted and commented
        add("dup_wrong_reformatted", [good, wrong, reformatted(wrong), reformatted(wrong) + "\n"],
            [*tests, *wrong_tests, *(t.replace(" == ", "==") for t in wrong_tests),
             *(f"assert ({t.removeprefix('assert ')})" for t in wrong_tests)])
        variants = [v for v in (renamed_locals(wrong, e), with_dead_statement(wrong, e)) if v]
        add("dup_wrong_renamed", [good, wrong, *variants], [*tests, *wrong_tests])
        sides = [t.removeprefix("assert ").split(" == ", 1) for t in wrong_tests]
        flipped = [f"assert {right} == {left}" for left, right in sides]  # the same wrong test, written backwards
        add("dup_wrong_tests_reordered", [good, wrong], [*tests, *wrong_tests, *flipped])
        honest_variants = [v for v in (renamed_locals(good, e), with_dead_statement(good, e)) if v]
        # two honest solutions against one wrong solution whose wrong tests are each written four ways
        add("wrong_tests_four_spellings", [good, *honest_variants[-1:], wrong],
            [*tests, *wrong_tests, *flipped, *(f"{t}, 'again'" for t in wrong_tests),
             *(f"{t}, 'once more'" for t in wrong_tests)])
        add("honest_majority_vs_wrong_tests", [good, *honest_variants[:1], wrong], [*tests, *wrong_tests])
        add("no_honest_solution", [wrong, *variants], [*tests, *wrong_tests])
    add("empty_solutions", [], tests)
    add("empty_tests", [good], [])
    add("unparseable", ["def f(:\n", f"def {e}(x) return x"], ["assert (", f"{e}(1) == 1", f"assert {e}(1) == (("])
    add("wrong_entry_point", [good.replace(f"def {e}(", "def other_name(")], tests)
    return rows


# ---------------------------------------------------------------- judging what agreement kept

# Classes whose kept-wrong solutions no agreement rule can avoid; counted in the table, not in the exit status.
UNDECIDABLE = {
    "tie_balanced_first": "kept wrong by design: the set asks for ties: first, and the wrong cluster comes first",
    "no_honest_solution": "kept wrong by design: no correct solution is offered, and the wrong ones agree",
}

@dataclass
class Tally:
    rows: int = 0
    kept_correct: int = 0
    kept_wrong: int = 0
    kept_fooling_asserts: int = 0  # kept-wrong that still passes every original assert
    wrong_tests: int = 0
    wrong_outputs: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    unaccounted: int = 0
    crashed: int = 0
    examples: list[str] = field(default_factory=list)


def judge(truth: Truth, row: dict[str, Any], out: list[dict[str, Any]], sandbox: Sandbox, tally: Tally) -> None:
    tally.rows += 1
    if len(out) != 1:
        tally.unaccounted += 1
        return
    [final] = out
    if final.get("reason"):
        tally.rejected[f"{final.get('stage')}:{final['reason']}"] += 1
        return
    assert len(final["tests"]) == final["agreement"]["tests_kept"]
    code = final["code"]
    passes = sandbox.run_many([{"kind": "program", "code": program(code, t)} for t in truth.tests])
    values = values_of(sandbox, code, truth.entry, truth.inputs)
    fools = all(r["outcome"] == "ok" for r in passes)
    if fools and values == truth.outputs:
        tally.kept_correct += 1
    else:
        tally.kept_wrong += 1
        tally.kept_fooling_asserts += fools
        tally.examples.append(f"kept wrong solution in {row['id']}")
    kept_tests = final["tests"]
    checks = sandbox.run_many([{"kind": "program", "code": program(truth.code, t)} for t in kept_tests])
    bad = [t for t, r in zip(kept_tests, checks, strict=True) if r["outcome"] != "ok"]
    tally.wrong_tests += len(bad)
    tally.examples += [f"kept wrong test in {row['id']}: {t[:100]}" for t in bad[:1]]
    pairs = [(i, o) for i, o in zip(final["inputs"], final["outputs"], strict=True) if o is not None]
    checks = sandbox.run_many([{"kind": "program", "code": program(truth.code, f"assert {truth.entry}({i}) == {o}")}
                               for i, o in pairs])
    wrong_pairs = [p for p, r in zip(pairs, checks, strict=True) if r["outcome"] != "ok"]
    tally.wrong_outputs += len(wrong_pairs)
    tally.examples += [f"kept wrong output in {row['id']}: {p}" for p in wrong_pairs[:1]]


def through_agreement(rows: list[dict[str, Any]], execute: ExecutePairs, decide: Callable[[dict], Agree]
                      ) -> list[list[dict[str, Any]]]:
    """What `tracecot agree` makes of each row, in order (ParseCandidates, ExecutePairs, Agree), in process."""
    work: list[dict[str, Any]] = []
    for row in rows:
        try:
            work.append(candidate_row({"record_id": row["id"]}, candidate_set(row)))
        except BadProblem as err:
            work.append({"id": row["id"], "stage": "ingest", "reason": err.reason, "message": str(err)})
    live = [i for i, w in enumerate(work) if not w.get("reason")]
    executed = execute.process_rows([work[i] for i in live])
    out: list[list[dict[str, Any]]] = [[w] for w in work]
    for i, rows_of_one in zip(live, executed, strict=True):
        out[i] = [new for ex in rows_of_one for new in decide(rows[i]).process(ex)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=1.0, help="CPU seconds per program (Limits.timeout_s)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    lines = Path(args.data).read_text().splitlines()
    execute = ExecutePairs(Limits(timeout_s=args.timeout), require=())
    judge_box = Sandbox(Limits(timeout_s=args.timeout), require=())
    tallies: dict[str, Tally] = defaultdict(Tally)
    problems = skipped = 0
    for line in lines:
        if args.limit is not None and problems >= args.limit:
            break
        truth = truth_of(json.loads(line), judge_box)
        if truth is None:
            skipped += 1
            continue
        problems += 1
        named = candidate_rows(truth, judge_box)
        rows = list(named.values())
        try:
            outs = through_agreement(rows, execute, lambda r: Agree(ties=r.get("ties", "reject")))
        except Exception as err:  # a stage let an exception escape: that is a finding, counted per class
            print(f"stage crashed on {truth.pid}: {type(err).__name__}: {err}", file=sys.stderr)
            for name in named:
                tallies[name].crashed += 1
            continue
        for name, row, out in zip(named, rows, outs, strict=True):
            judge(truth, row, out, judge_box, tallies[name])
    seconds = time.perf_counter() - started
    print(f"{problems} MBPP problems ({skipped} skipped: set-up code or a solution failing its own asserts), "
          f"{sum(t.rows for t in tallies.values())} candidate sets")
    header = (f"{'class':32} {'rows':>4} {'kept-ok':>7} {'kept-WRONG':>10} {'fools-asserts':>13} "
              f"{'wrong-tests':>11} {'wrong-outputs':>13} {'crash':>5} {'lost':>4}  rejected (stage:reason)")
    print(header)
    print("-" * len(header))
    total = Tally()
    for name, t in tallies.items():
        print(f"{name:32} {t.rows:>4} {t.kept_correct:>7} {t.kept_wrong:>10} {t.kept_fooling_asserts:>13} "
              f"{t.wrong_tests:>11} {t.wrong_outputs:>13} {t.crashed:>5} {t.unaccounted:>4}  "
              + ", ".join(f"{r} {n}" for r, n in sorted(t.rejected.items())))
        for key in ("rows", "kept_correct", "kept_wrong", "kept_fooling_asserts", "wrong_tests", "wrong_outputs",
                    "crashed", "unaccounted"):
            setattr(total, key, getattr(total, key) + getattr(t, key))
        total.rejected += t.rejected
        total.examples += t.examples
    print("-" * len(header))
    print(f"{'TOTAL':32} {total.rows:>4} {total.kept_correct:>7} {total.kept_wrong:>10} "
          f"{total.kept_fooling_asserts:>13} {total.wrong_tests:>11} {total.wrong_outputs:>13} {total.crashed:>5} "
          f"{total.unaccounted:>4}  {sum(total.rejected.values())} rejected")
    adds_up = total.rows == total.kept_correct + total.kept_wrong + sum(total.rejected.values()) \
        + total.crashed + total.unaccounted
    print(f"every row ended once: {adds_up and total.unaccounted == 0 and total.crashed == 0}")
    print(f"seconds: {seconds:.1f}")
    if args.verbose:
        for example in total.examples:
            print("  ", example)
    execute.sandbox.close()
    judge_box.close()
    for name, why in UNDECIDABLE.items():
        print(f"{name}: {why}")
    decidable = [t for name, t in tallies.items() if name not in UNDECIDABLE]
    failed = any(t.kept_wrong or t.wrong_tests or t.wrong_outputs for t in decidable) or total.crashed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Dedup of synthesised problems: disguised copies are caught (exactly or as near duplicates, within the set and
against real benchmark items); distinct short functions are not merged; the deduplicator is deterministic and
survives pickling."""

from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys

import pytest
from conftest import ROOT, shared

from operators.synth.dedup import Deduplicator, Duplicate, canonical
from pipeline.decontaminate import read_benchmarks

RUN_LENGTH = '''
def run_length(items, limit):
    """Run-length encode `items`, splitting runs longer than `limit`."""
    out = []
    count = 0
    previous = None
    for item in items:
        if item == previous and count < limit:
            count += 1
            continue
        if previous is not None:
            out.append((previous, count))
        previous = item
        count = 1
    if previous is not None:
        out.append((previous, count))
    return out
'''

# The same program: every name changed, re-indented, comments and another docstring added.
RUN_LENGTH_DISGUISED = '''
# encode runs
def rle(seq, cap):
  """Different words, same code."""
  result = []   # pairs
  n = 0
  last = None

  for x in seq:  # each element
    if x == last and n < cap:
      n += 1
      continue
    if last is not None:
      result.append((last, n))
    last = x
    n = 1
  if last is not None:
    result.append((last, n))
  return result
'''


def renamed(code: str, names: dict[str, str]) -> str:
    """`code` with the given names replaced wherever they are variables, parameters or function names."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            node.id = names.get(node.id, node.id)
        elif isinstance(node, ast.arg):
            node.arg = names.get(node.arg, node.arg)
        elif isinstance(node, ast.FunctionDef):
            node.name = names.get(node.name, node.name)
    return ast.unparse(tree)


def test_renamed_reformatted_commented_copies_are_exact_duplicates():
    assert canonical(RUN_LENGTH) == canonical(RUN_LENGTH_DISGUISED) is not None
    dedup = Deduplicator()
    assert dedup.check("a", RUN_LENGTH) is None
    assert dedup.check("b", RUN_LENGTH_DISGUISED) == Duplicate("exact", "a", 1.0)


def test_plain_padding_is_dropped_and_anything_that_may_act_is_kept():
    short = "def f(x):\n    return x + 1\n"
    for padded in ("def f(x):\n    unused = None\n    return x + 1\n", "def f(x):\n    pass\n    return x + 1\n",
                   "def f(x):\n    42\n    return x + 1\n", "def f(x):\n    a = b = 'pad'\n    return x + 1\n"):
        assert canonical(padded) == canonical(short), padded
    for acting in ("def f(x):\n    x = 3\n    return x + 1\n",  # read afterwards
                   "def f(x):\n    unused = None\n    return locals()\n",  # names read dynamically
                   "def f(x):\n    global g\n    g = 1\n    return x + 1\n",
                   "def f(x):\n    x.y = 1\n    return x + 1\n", "def f(x):\n    unused = x\n    return x + 1\n",
                   "LIMIT = 5\ndef f(x):\n    return x + 1\n",  # a module's names can be read from outside
                   "class C:\n    BASE = 5\n    def f(self, x):\n        return x + self.BASE\n"):
        assert canonical(acting) != canonical(short), acting
    assert canonical("class C:\n    BASE = 4\n") != canonical("class C:\n    BASE = 5\n")
    assert canonical("def f(x):\n    pass\n") == "def _v0(_v1):\n    pass"


def test_canonical_keeps_builtins_attributes_imports_and_unbound_globals():
    form = canonical("import math\ndef area(r):\n    return math.pi * r ** 2 + len(SCALE) + r.real\n")
    assert form is not None
    for kept in ("import math", "math.pi", "len(", "SCALE", ".real"):
        assert kept in form
    assert "area" not in form and "(r)" not in form


def test_same_name_in_two_scopes_is_two_variables():
    code = "def f(xs):\n    i = 0\n    return [i for i in xs]\n\ndef g(n):\n    i = n\n    return i\n"
    # Renaming each variable on its own (only g's i, only the comprehension's i) changes nothing.
    only_g = code.replace("    i = n\n    return i\n", "    k = n\n    return k\n")
    only_comprehension = code.replace("[i for i in xs]", "[j for j in xs]")
    assert canonical(code) == canonical(only_g) == canonical(only_comprehension)
    # But a program that really uses one variable where the other used two is different.
    merged = code.replace("[i for i in xs]", "[i for j in xs]")
    assert canonical(merged) != canonical(code)


def test_a_one_line_edit_of_a_fifteen_line_function_is_a_near_duplicate():
    edited = RUN_LENGTH.replace("count < limit", "count <= limit")
    assert edited != RUN_LENGTH
    dedup = Deduplicator()
    assert dedup.check("orig", RUN_LENGTH) is None
    found = dedup.check("edit", edited)
    assert found is not None and (found.kind, found.of) == ("near", "orig")
    assert dedup.threshold <= found.similarity < 1


def test_an_unrelated_function_of_the_same_length_is_kept():
    other = '''
def histogram(values, bins):
    low, high = min(values), max(values)
    width = (high - low) / bins or 1
    counts = [0] * bins
    for value in values:
        index = int((value - low) / width)
        counts[min(index, bins - 1)] += 1
    return counts
'''
    dedup = Deduplicator()
    assert dedup.check("rle", RUN_LENGTH) is None
    assert dedup.check("hist", other) is None


@pytest.mark.parametrize(("first", "second"), [
    ("def add(a, b):\n    return a + b\n", "def mul(a, b):\n    return a * b\n"),
    ("def total(x):\n    return sum(x)\n", "def total(x):\n    return max(x)\n"),
    ("def pick(xs, n):\n    return [x[n] for x in xs]\n", "def pick(xs, n):\n    return [xs[i] for i in n]\n"),
])
def test_distinct_short_functions_are_not_merged(first, second):
    # With any threshold, even 0.5: short code is matched exactly only.
    dedup = Deduplicator(threshold=0.5)
    assert dedup.check("first", first) is None
    assert dedup.check("second", second) is None
    # ...and exact matching still catches a renamed copy of a short function.
    assert dedup.check("copy", renamed(first, {"a": "p", "b": "q", "x": "v", "xs": "vs"})) == \
        Duplicate("exact", "first", 1.0)


@pytest.fixture(scope="module")
def benchmarks() -> dict[str, dict[str, str]]:
    return read_benchmarks(f"humaneval={shared('humaneval/HumanEval.jsonl.gz')},mbpp={shared('mbpp/mbpp.jsonl')}")


def test_renamed_benchmark_items_are_flagged_against_the_benchmark(benchmarks):
    dedup = Deduplicator(benchmarks=benchmarks)
    humaneval = renamed(benchmarks["humaneval"]["HumanEval/0"],
                        {"has_close_elements": "any_near", "numbers": "xs", "threshold": "eps", "idx": "a",
                         "elem": "u", "idx2": "b", "elem2": "w", "distance": "d"})
    assert dedup.check("synth-1", humaneval) == Duplicate("exact", "humaneval:HumanEval/0", 1.0)
    mbpp = benchmarks["mbpp"]["20"]
    copy = renamed(mbpp, {name: f"{name}_x" for name in
                          {node.id for node in ast.walk(ast.parse(mbpp)) if isinstance(node, ast.Name)}})
    assert copy != mbpp
    assert dedup.check("synth-2", copy) == Duplicate("exact", "mbpp:20", 1.0)
    found = dedup.check("synth-3", RUN_LENGTH)
    assert found is None, found


def test_a_small_edit_of_a_benchmark_item_is_a_near_duplicate_of_it(benchmarks):
    dedup = Deduplicator(benchmarks={"humaneval": benchmarks["humaneval"]})
    edited = benchmarks["humaneval"]["HumanEval/0"].replace("distance < threshold", "distance <= threshold")
    found = dedup.check("synth", edited)
    assert found is not None and (found.kind, found.of) == ("near", "humaneval:HumanEval/0")


def test_unparseable_code_does_not_crash_and_is_compared_as_text():
    assert canonical("def f(:\n    return") is None
    assert canonical("x = " + "+".join(["1"] * 50000)) is None  # too deep for the parser
    dedup = Deduplicator()
    assert dedup.check("bad", "def f(:\n    return") is None
    assert dedup.check("bad-again", "def f(:   return") == Duplicate("exact", "bad", 1.0)
    assert dedup.check("nul", "x = 1\0") is None
    assert dedup.check("deep", "x = " + "+".join(["1"] * 50000)) is None


def test_only_kept_problems_are_compared_against_and_keys_are_unique():
    dedup = Deduplicator()
    dedup.seen("previous-run", RUN_LENGTH)
    assert dedup.check("dup", RUN_LENGTH_DISGUISED) == Duplicate("exact", "previous-run", 1.0)
    # The duplicate was not kept: another copy is still reported against the kept one.
    assert dedup.check("dup-2", RUN_LENGTH).of == "previous-run"
    with pytest.raises(ValueError, match="already kept"):
        dedup.check("previous-run", "def other():\n    return 1\n")


def mbpp_stream() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in shared("mbpp/mbpp.jsonl").read_text().splitlines()]
    return [(str(row["task_id"]), row["code"]) for row in rows]


def test_two_instances_and_two_processes_agree():
    stream = mbpp_stream()
    first, second = Deduplicator(), Deduplicator()
    answers = [first.check(key, code) for key, code in stream]
    assert answers == [second.check(key, code) for key, code in stream]
    assert sum(answer is not None and answer.kind == "near" for answer in answers) >= 5  # near ones are compared
    script = ("import json, sys\nfrom operators.synth.dedup import Deduplicator\nd = Deduplicator()\n"
              "stream = json.load(sys.stdin)\n"
              "print(json.dumps([str(d.check(k, c)) for k, c in stream]))\n")
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        run = subprocess.run([sys.executable, "-c", script], input=json.dumps(stream[:300]), capture_output=True,
                             text=True, env=env, check=True, timeout=120)
        outputs.append(json.loads(run.stdout))
    assert outputs[0] == outputs[1] == [str(answer) for answer in answers[:300]]


def test_pickled_copy_answers_like_the_original():
    stream = mbpp_stream()
    dedup = Deduplicator(benchmarks={"own": {"rle": RUN_LENGTH}})
    for key, code in stream[:500]:
        dedup.check(key, code)
    copy = pickle.loads(pickle.dumps(dedup))
    assert copy.check("x", RUN_LENGTH_DISGUISED) == dedup.check("x", RUN_LENGTH_DISGUISED) == \
        Duplicate("exact", "own:rle", 1.0)
    assert [copy.check(key, code) for key, code in stream[500:]] == \
        [dedup.check(key, code) for key, code in stream[500:]]

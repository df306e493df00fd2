"""Inputs for bare functions: static proposals, proposals parsed from model text, and keeping what runs
deterministically in the real sandbox."""

from __future__ import annotations

import ast
import json
from typing import Any

import pytest
from conftest import shared

from operators.ingest.formats import to_problem
from operators.synth.inputs import PROMPT_VERSION, keep, parse_proposals, prompt, proposals, propose


def values(args: str) -> tuple[Any, ...]:
    """The positional argument values of an argument-list text (literals only)."""
    call = ast.parse(f"_({args})", mode="eval").body
    assert isinstance(call, ast.Call)
    return tuple(ast.literal_eval(arg) for arg in call.args)


def keywords(args: str) -> dict[str, Any]:
    call = ast.parse(f"_({args})", mode="eval").body
    assert isinstance(call, ast.Call)
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


# --- propose: type hints, defaults, usage ---------------------------------------------------------------------

def test_type_hints_decide_the_first_candidates():
    code = ("from typing import Optional\n"
            "def f(xs: list[int], d: dict[str, float], s: Optional[str], t: tuple[int, str]) -> int:\n"
            "    return 0\n")
    first = values(propose(code, "f")[0])
    xs, d, s, t = first
    assert isinstance(xs, list) and xs and all(type(x) is int for x in xs)
    assert isinstance(d, dict) and d and all(type(k) is str and type(v) is float for k, v in d.items())
    assert isinstance(s, str)
    assert isinstance(t, tuple) and [type(v) for v in t] == [int, str]
    assert all(source == "hint" for source in {p.source for p in proposals(code, "f")})


def test_a_literal_default_is_tried_first_and_sets_the_type():
    code = "def f(text, sep=', ', times=[1, 2]):\n    return text\n"
    first = values(propose(code, "f")[0])
    assert first[1:] == (", ", [1, 2])
    second_args = {values(args)[2] != [1, 2] and type(values(args)[2]) for args in propose(code, "f", 40)}
    assert list in second_args  # other lists than the default are tried too


@pytest.mark.parametrize(("param", "body", "check"), [
    ("s", "return s.upper()", lambda v: isinstance(v, str)),
    ("s", "return s[0] == 'a'", lambda v: isinstance(v, str)),
    ("xs", "xs.append(1)\n    return len(xs)", lambda v: isinstance(v, list)),
    ("n", "return sum(range(n))", lambda v: type(v) is int),
    ("d", "return [k for k, v in d.items() if v > 1]", lambda v: isinstance(v, dict) and v),
    ("m", "return m[0][1] + 1", lambda v: isinstance(v, list) and v and all(isinstance(r, list) and r for r in v)),
    ("a", "return [w.lower() for w in a]", lambda v: isinstance(v, list) and v and all(isinstance(w, str) for w in v)),
    ("t", "a, b = t\n    return a * b", lambda v: isinstance(v, tuple) and len(v) == 2),
    ("n", "return n % 2 == 0 and n > 10", lambda v: type(v) is int),
])
def test_usage_decides_the_type(param, body, check):
    found = proposals(f"def f({param}):\n    {body}\n", "f")
    assert found and found[0].source == "usage"
    assert check(values(found[0].args)[0]), found[0].args


def test_square_roots_get_floats_among_the_candidates():
    found = propose("import math\ndef f(x):\n    return math.sqrt(x) + x ** 0.5\n", "f")
    assert any(type(values(args)[0]) is float for args in found[:4])


def test_a_value_combined_with_another_takes_its_type():
    code = "def f(a, b):\n    if a.startswith('x'):\n        return a + b\n    return b\n"
    first = values(propose(code, "f")[0])
    assert all(isinstance(v, str) for v in first)


def test_use_in_a_helper_function_counts():
    code = ("def helper(items):\n    return [item.upper() for item in items]\n"
            "def f(pairs):\n    return helper(pairs)\n")
    first = values(propose(code, "f")[0])[0]
    assert isinstance(first, list) and first and all(isinstance(x, str) for x in first)


def test_names_are_a_weak_hint_and_ints_the_fallback():
    found = proposals("def f(matrix, mystery):\n    return 0\n", "f")
    matrix, mystery = values(found[0].args)
    assert isinstance(matrix, list) and all(isinstance(row, list) for row in matrix)
    assert type(mystery) is int
    assert found[0].source == "fallback"  # the weakest source among the values: `mystery` says nothing
    assert proposals("def f(matrix):\n    return 0\n", "f")[0].source == "name"


def test_candidates_are_distinct_varied_and_limited():
    found = propose("def f(a, b):\n    return a - b\n", "f", limit=7)
    assert len(found) == 7 == len(set(found))
    assert len({values(args)[0] for args in found}) > 1 and len({values(args)[1] for args in found}) > 1


def test_no_candidates_for_code_that_does_not_parse_or_lacks_the_entry_point():
    assert propose("def f(x:\n    return x\n", "f") == []
    assert propose("def g(x):\n    return x\n", "f") == []
    assert propose("class C:\n    def f(self, x):\n        return x\n", "f") == []  # not callable by that name


def test_parameters_of_every_kind():
    assert propose("def f():\n    return 1\n", "f") == [""]
    init = propose("class C:\n    def __init__(self, n):\n        self.n = n + 1\n", "C")
    assert init and all(type(v) is int for args in init for v in values(args))
    varargs = propose("def f(*xs):\n    return sum(xs)\n", "f")
    assert "" in varargs and any(len(values(args)) == 2 for args in varargs)
    assert all(type(v) is int for args in varargs for v in values(args))
    kw = propose("def f(a, *, k: str, flag=True, **rest):\n    return a\n", "f")
    assert kw and all(set(keywords(args)) == {"k", "flag"} and isinstance(keywords(args)["k"], str) for args in kw)
    lam = propose("f = lambda s: s.split()\n", "f")
    assert lam and isinstance(values(lam[0])[0], str)


# --- a model's proposals ----------------------------------------------------------------------------------------

def test_prompt_is_a_chat_naming_the_function():
    chat = prompt("def area(r):\n    return 3 * r * r\n", "area")
    assert [m["role"] for m in chat] == ["system", "user"]
    assert "def area(r):" in chat[1]["content"] and "area(" in chat[1]["content"]
    assert PROMPT_VERSION


def test_parse_proposals_takes_literal_calls_of_the_entry_point_only():
    text = ("Sure! Here are some calls:\n```python\nf([1, 2], k=3)\nprint(f('ab'))\nassert f(0) == 1\n"
            "g(5)\nf(g(1))\nf(*xs)\nf([1, 2], k=3)\nf(\n    {'a': 1},\n)\n```\nHope it helps.")
    assert parse_proposals(text, "f") == ["[1, 2], k=3", "'ab'", "0", "{'a': 1}"]


def test_parse_proposals_reads_lines_of_text_without_fences():
    text = "Examples:\n>>> f(-1.5, 'x')\nthis line is not Python (f(2) either\nf(())"
    assert parse_proposals(text, "f") == ["-1.5, 'x'", "()"]


@pytest.mark.parametrize("text", ["", "no calls here", "```python\nf(1\n```", "f(x)", "h(1)", "```\n)))(((\n```",
                                  "f" * 10_000 + "(1)"])
def test_parse_proposals_of_garbage_is_empty(text):
    assert parse_proposals(text, "f") == []


# --- keep, in the real sandbox ----------------------------------------------------------------------------------

def test_keep_runs_candidates_and_stops_at_want(sandbox):
    code = "def f(n):\n    return n * 2\n"
    found = keep(sandbox, code, "f", [str(i) for i in range(10)], want=2)
    assert found.inputs == ["0", "1"]
    assert found.tried < 10


def test_keep_skips_repeats_long_and_malformed_candidates_before_running(sandbox):
    found = keep(sandbox, "def f(n):\n    return n\n", "f", ["1", " 1", "9" * 300, "1,,", "2"], max_chars=200)
    assert found.inputs == ["1", "2"]
    assert found.tried == 2
    assert found.reasons == {"input_too_long": 1, "bad_input": 1}


def test_a_nondeterministic_function_gets_no_input(sandbox):
    code = "def f(s):\n    return hash(s.upper() + '!')\n"
    found = keep(sandbox, code, "f", propose(code, "f"))
    assert found.inputs == []
    assert found.tried > 0 and found.reasons["nondeterministic"] == found.tried


def test_only_the_inputs_that_run_deterministically_are_kept(sandbox):
    code = "def f(n):\n    if n == 3:\n        return hash('seeded')\n    return n + 1\n"
    found = keep(sandbox, code, "f", ["3", "2"])
    assert found.inputs == ["2"]
    assert found.reasons == {"nondeterministic": 1}


def test_an_input_with_a_huge_output_is_not_kept(sandbox):
    code = "def f(n: int):\n    return 'x' * (abs(n) * 100 + 300)\n"
    found = keep(sandbox, code, "f", propose(code, "f"), max_chars=200)
    assert found.inputs == []
    assert found.tried > 0 and found.reasons["output_too_long"] == found.tried


def test_a_function_that_always_raises_gets_none_and_says_why(sandbox):
    code = "def f(n):\n    raise ValueError(n)\n"
    found = keep(sandbox, code, "f", propose(code, "f"))
    assert found.inputs == []
    assert found.tried == len(propose(code, "f")) and found.reasons["exception"] == found.tried
    assert "exception" in found.why()


@pytest.mark.parametrize(("code", "reason"), [
    ("f = len\n", "empty_trace"),
    ("def f(n):\n    return object()\n", "output_not_literal"),
])
def test_outputs_that_cannot_make_a_record_are_rejected(sandbox, code, reason):
    found = keep(sandbox, code, "f", ["[1, 2]"])
    assert found.inputs == [] and found.reasons == {reason: 1}


def test_real_mbpp_functions_without_their_inputs_get_inputs(sandbox):
    rows = {row["task_id"]: row for row in map(json.loads, shared("mbpp/mbpp.jsonl").read_text().splitlines())}
    for task_id in (1, 2, 7, 17):
        problem = to_problem(rows[task_id], "mbpp")
        found = keep(sandbox, problem.code, problem.entry_point, propose(problem.code, problem.entry_point))
        assert found.inputs, (task_id, found.why())
        for args in found.inputs:  # each runs again to the same literal output
            result = sandbox.run({"code": problem.code, "entry_point": problem.entry_point, "input": args})
            assert result["outcome"] == "ok" and result["output_is_literal"], (task_id, args)

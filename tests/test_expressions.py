"""The restricted evaluator for expressions in claims: it computes what a CoT may write about traced values,
and refuses anything else — claim text is untrusted, so nothing here may run code or build huge values."""

from __future__ import annotations

import pytest

from operators.cot.expressions import MAX_SIZE, UnknownName, Unsupported, evaluate

STATE = {"s": "'hello'", "xs": "[3, 1, 2]", "d": "{'a': 1}", "n": "4", "obj": "<map object>"}


def value(text: str):
    return evaluate(text, STATE.get)


@pytest.mark.parametrize(("text", "expected"), [
    ("len(s)", 5), ("s[0]", "h"), ("s[::-1]", "olleh"), ("xs[1:]", [1, 2]), ("n + 1", 5), ("n ** 2", 16),
    ("sorted(xs)", [1, 2, 3]), ("max(xs) - min(xs)", 2), ("d['a']", 1), ("s.upper()", "HELLO"),
    ("'l' in s", True), ("n % 3 == 1", True), ("-n", -4), ("list(d.keys())", ["a"]), ("', '.join(['a', 'b'])", "a, b"),
])
def test_it_computes_expressions_over_traced_values(text, expected):
    assert value(text) == expected


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')",  # no names but the frame's, no calls but the listed ones
    "s.__class__", "().__class__.__bases__", "(lambda: 1)()", "[x for x in xs]", "open('/etc/passwd')",
    "eval('1')", "xs.append(1)", "d.pop('a')", "obj", "s.format(1)",
])
def test_it_refuses_anything_but_pure_literal_computation(text):
    with pytest.raises(Unsupported):
        value(text)


@pytest.mark.parametrize("text", [
    "'a' * 10**9", "s * 100000", "[0] * (10**6)", "10 ** 10 ** 10", "2 ** 100000", "s.replace('l', s * 1000)",
    "'x' * 9000 + 'y' * 9000", "(" * 500 + "1" + ")" * 500,
])
def test_it_refuses_to_build_huge_values(text):
    with pytest.raises(Unsupported):
        value(text)
    assert MAX_SIZE <= 10_000


def test_a_name_the_frame_lacks_is_known_absent():
    with pytest.raises(UnknownName):
        value("len(counter)")


@pytest.mark.parametrize("text", ["xs[10]", "d['zz']", "n / 0", "int('x')"])
def test_an_expression_that_fails_has_no_value(text):
    with pytest.raises(Unsupported):
        value(text)

"""Claim extraction and the verifier's alignment of claims with a trace, without a sandbox."""

from __future__ import annotations

import pytest
from test_trace_model import LOOP, trace

from operators.cot.claims import answer, body, extract, quote
from operators.cot.verify import Verifier
from operators.trace.events import TracedCall


def test_each_claim_form_is_found_once_in_text_order():
    cot = ("Line 2 runs: `total` becomes `0`. Iteration 1 of the loop on line 3: `x` is `1`. "
           "The condition on line 4 (`x > 1`) is False. `1` > `1` is False. "
           "The loop on line 3 finishes after 3 iterations. `f` returns `5`. It calls `g` and raises `ValueError`."
           + answer("f", "[1, 2, 3]", "5"))
    kinds = [claim.kind for claim in extract(cot)]
    assert kinds == ["line", "change", "iteration", "state", "condition", "compare", "loopcount", "returns", "calls",
                     "raises"]
    change = extract(cot)[1]
    assert change.fields == {"name": "total", "value": "0"}


def test_claims_inside_the_answer_block_are_not_claims():
    assert extract(body("Line 3 runs. " + answer("f", "`x` is `1`", "line 3"))) == extract("Line 3 runs. ")


def test_values_holding_backticks_use_double_backticks():
    assert quote("'a`b'") == "`` 'a`b' ``"
    [claim] = extract("`s` is `` 'a`b' ``.")
    assert claim.fields == {"sname": "s", "svalue": "'a`b'"}


FORWARD = ("Line 2 runs: `total` becomes `0`. Iteration 1 of the loop on line 3: `x` becomes `1`. "
           "The condition on line 4 (`x > 1`) is False. Iteration 2 of the loop on line 3: `x` becomes `2`. "
           "The condition on line 4 (`x > 1`) is True. Line 5 runs: `total` becomes `2`. "
           "Iteration 3 of the loop on line 3: `x` becomes `3`. Line 5 runs: `total` becomes `5`. "
           "The loop on line 3 finishes after 3 iterations. `f` returns `5`. " + answer("f", "[1, 2, 3]", "5"))


def check(cot: str, direction: str = "forward", output: str = "5"):
    _, tracer = trace(LOOP, "f", [1, 2, 3])
    report, _ = Verifier().check(direction, cot, TracedCall(LOOP, "f", "[1, 2, 3]", output, tracer.events))
    return report


def test_true_claims_in_trace_order_verify():
    report = check(FORWARD)
    assert report.passed and report.n_contradicted == 0 and report.n_verified == report.n_claims >= 10
    assert report.coverage > 0.8  # every change but the argument `xs` is told


@pytest.mark.parametrize(("true", "false"), [
    ("`total` becomes `2`", "`total` becomes `3`"),
    ("finishes after 3 iterations", "finishes after 4 iterations"),
    ("(`x > 1`) is False", "(`x > 1`) is True"),
    ("Iteration 3 of the loop", "Iteration 4 of the loop"),
    ("`f` returns `5`", "`f` returns `6`"),
])
def test_one_false_claim_is_a_contradiction(true, false):
    report = check(FORWARD.replace(true, false, 1))
    assert not report.passed and report.n_contradicted >= 1 and report.first_failure


def test_claims_out_of_trace_order_do_not_align():
    swapped = FORWARD.replace("`total` becomes `0`", "`total` becomes `5`", 1)
    assert not check(swapped).passed


def test_a_wrong_answer_fails_even_when_every_claim_holds():
    report = check(FORWARD.replace(answer("f", "[1, 2, 3]", "5"), answer("f", "[1, 2, 3]", "6")))
    assert not report.passed and not report.answer_ok


@pytest.mark.parametrize("false", [
    "Line 5 (`total -= x`) runs.",  # misquoted code
    "The condition on line 4 (`x >= 1`) is True.",  # misquoted condition
    "The result is therefore `6`.",  # a conclusion that is not the output
    "So the final answer is `6`.",
    "`counter` == `5` is True.",  # a name the frame does not have
    "`len(xs)` == `4` is True.",  # an expression, evaluated on the traced values
    "`xs.pop()` == `3` is True.",  # a method the restricted evaluator does not run: unchecked, so rejected
])
def test_statements_that_used_to_pass_are_rejected(false):
    cot = FORWARD.replace("`f` returns `5`. ", f"`f` returns `5`. {false} ")
    assert not check(cot).passed


def test_honest_quotes_and_conclusions_verify():
    cot = FORWARD.replace("`f` returns `5`. ", "`f` returns `5`. The result is therefore `5`. ").replace(
        "Line 5 runs", "Line 5 (`total += x`) runs", 1)  # FORWARD quotes `x > 1` for `if x > 1:` already
    report = check(cot)
    assert report.passed, report.first_failure


def test_an_iteration_claim_needs_a_visit_that_enters_the_body():
    _, tracer = trace(LOOP, "f", [])
    cot = "Iteration 1 of the loop on line 3. " + answer("f", "[]", "0")
    report, _ = Verifier(min_coverage=0).check("forward", cot, TracedCall(LOOP, "f", "[]", "0", tracer.events))
    assert not report.passed and report.n_contradicted == 1


def test_a_backward_target_must_be_the_output():
    _, tracer = trace(LOOP, "f", [1, 2, 3])
    call = TracedCall(LOOP, "f", "[1, 2, 3]", "5", tracer.events)
    cot = "We need an input that makes `f` produce `{}`. Line 5 (`total += x`) ran: `total` becomes `5`. " + answer(
        "f", "[1, 2, 3]", "5")
    assert Verifier(min_coverage=0).check("backward", cot.format(5), call)[0].passed
    assert not Verifier(min_coverage=0).check("backward", cot.format(6), call)[0].passed

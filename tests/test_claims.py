"""Claim extraction and the verifier's alignment of claims with a trace, without a sandbox."""

from __future__ import annotations

import pytest
from test_trace_model import LOOP, trace

from operators.cot.claims import answer, body, extract, quote
from operators.cot.sentences import split
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


# Sentence accounting: what a sentence says outside its claims must be nothing, or the CoT is not vouched for.

@pytest.mark.parametrize("false", [
    "It took 5 steps in all.",  # a number in prose
    "That leaves total equal to 20.",  # a value in other words
    "That is because `xs` is quite long.",  # a quoted name with no claim about it
    "The variable x never changes.",  # a sweeping claim with a code name and no value
    "The loop body never runs.",
    "At this point total is ''.",  # an empty string written bare
])
def test_a_sentence_stating_what_no_claim_checks_rejects_the_cot(false):
    report = check(FORWARD.replace("`f` returns `5`. ", f"`f` returns `5`. {false} "))
    assert not report.passed and report.n_unverifiable == 1
    assert "unverifiable" in [s.verdict for s in report.sentences] and false[:20] in report.first_failure


def test_non_strict_mode_rejects_contradictions_only():
    cot = FORWARD.replace("`f` returns `5`. ", "`f` returns `5`. It took 5 steps in all. ")
    _, tracer = trace(LOOP, "f", [1, 2, 3])
    call = TracedCall(LOOP, "f", "[1, 2, 3]", "5", tracer.events)
    report, _ = Verifier(strict=False).check("forward", cot, call)
    assert report.passed and report.unverified_share > 0
    false = FORWARD.replace("`total` becomes `2`", "`total` becomes `3`")
    assert not Verifier(strict=False).check("forward", false, call)[0].passed


def test_every_sentence_gets_a_verdict_with_its_span():
    cot = "Let's run it by hand. " + FORWARD
    report = check(cot)
    assert report.passed and report.unverified_share == 0.0
    first, second = report.sentences[:2]
    assert (first.kind, first.verdict) == ("prose", "content-free")
    assert cot[second.start:second.end] == "Line 2 runs: `total` becomes `0`."
    assert second.verdict == "verified" and second.kind == "line,change" and second.step is not None


def test_a_quoted_value_is_never_split_or_read_as_claims():
    sentences = list(split("`s` is `'I got 1. Then x is 2!'`. Next."))
    assert len(sentences) == 2
    assert [c.kind for c in extract("`s` is `'I got 1 and x becomes 2'`.")] == ["state"]


@pytest.mark.parametrize("honest", [
    "Line 5 runs and total is now 2.",  # other verbs, bare values
    "After line 5 (`total += x`), `total` is `2`.",  # the value once the step has run
    "Line 5 runs: `total` takes the value `2`.",
    "Line 5 runs: `total` turns into 2.",
])
def test_honest_wording_of_a_change_verifies(honest):
    report = check(FORWARD.replace("Line 5 runs: `total` becomes `2`.", honest))
    assert report.passed, report.first_failure


@pytest.mark.parametrize(("honest", "false"), [
    ("The loop on line 3 runs three times.", "The loop on line 3 runs twice."),
    ("The test on line 4 (`x > 1`) fails.", "The test on line 4 (`x > 1`) holds."),
    ("So `total` ends up as `5`.", "So `total` ends up as `4`."),
    ("`xs` has three elements.", "`xs` has four elements."),
    ("`len(xs)` == `3` is true.", "`xs[0]` == `2` is True."),
    ("`xs[1:]` is `[2, 3]`.", "`xs[::-1]` is `[1, 2, 3]`."),
    ("So the final result is 5.", "So the final result is 6."),
    ("Hence calling `f([1, 2, 3])` produces the required output.", "So `f([1, 2])` returns `5`."),
])
def test_wider_grammar_checks_both_ways(honest, false):
    anchor = {"loop": "The loop on line 3 finishes after 3 iterations.",
              "test": "The condition on line 4 (`x > 1`) is False."}
    for text, ok in ((honest, True), (false, False)):
        key = next((k for k in anchor if text.startswith(f"The {k}")), None)
        ending = "`f` returns `5`. "
        cot = FORWARD.replace(anchor[key], text, 1) if key else FORWARD.replace(ending, f"{ending}{text} ")
        report = check(cot)
        assert report.passed is ok, (text, report.first_failure)


@pytest.mark.parametrize("false", [
    "It is untrue that line 5 (`total += x`) runs.",  # a negation around a true claim
    "Line 6 is not executed at all.",
    "The return statement is not reached.",
    "After this nothing else happens.",
    "`total` is `5`, in reverse order.",  # a qualifier after a true value
    "`total` stays `5` from here on.",  # persistence in time
    "So the call hands back a tuple.",  # a type in prose
    "So the call hands back [].",  # an empty value, bare
    "So the call hands back ‘5’.",  # curly quotes
    "The loop on line four runs thrice.",  # a line number in words
    "The con\u200bdition on line 4 is True.",  # a zero-width space inside a word
    "`xs` has 3 words.",  # a length in the wrong unit
    "`reversed(xs)` == `[3, 2, 1]` is True.",  # built-in semantics the evaluator must not bend
])
def test_facts_outside_the_claims_reject_the_cot_whatever_their_wording(false):
    assert not check(FORWARD.replace("`f` returns `5`. ", f"`f` returns `5`. {false} ")).passed


def test_a_branch_effect_is_checked_at_its_own_step():
    stale = FORWARD.replace("The condition on line 4 (`x > 1`) is True. Line 5 runs",
                            "The condition on line 4 (`x > 1`) is True. Line 3 runs, so the branch runs. Line 5 runs")
    assert not check(stale).passed
    told = FORWARD.replace("(`x > 1`) is True.", "(`x > 1`) is True, so the branch runs.")
    assert check(told).passed


def test_before_a_line_means_the_values_before_it():
    before = "Before line 5 (`total += x`) runs, `total` is `{}`. Line 5 runs: `total` becomes `2`."
    cot = FORWARD.replace("Line 5 runs: `total` becomes `2`.", before.format(0))
    assert check(cot).passed
    assert not check(FORWARD.replace("Line 5 runs: `total` becomes `2`.", before.format(2))).passed


@pytest.mark.parametrize("false", [
    # a step claim after "iteration 1" may not skip to a later iteration (line 5 first runs in iteration 2)
    "Iteration 1 of the loop on line 3: `x` becomes `1`. Line 5 runs: `total` becomes `2`.",
    "Before line 2 runs, `total` becomes `0`.",  # a change cannot lie before the step it is said to precede
    "Line 2 runs and we get `5`.",  # "the result" of a step is not the call's output
    "The loop on line 3 finishes after 3 iterations. This loop runs 4 times.",  # a re-mention is the same loop
])
def test_claims_keep_to_the_step_the_text_is_at(false):
    cot = ("Let's go. " + false + " " + answer("f", "[1, 2, 3]", "5"))
    assert not Verifier(min_coverage=0).check("forward", cot, call_of([1, 2, 3]))[0].passed


@pytest.mark.parametrize("answer_block", [
    "[ANSWER]assert f([1, 2, 3]) == 5, 'f returns 6'[/ANSWER]",  # an assert message
    "[ANSWER]assert f([1, 2, 3]) == 5  # f returns 6[/ANSWER]",  # a comment
    "[ANSWER]assert f([1, 2, 3]) == 5; x = 6[/ANSWER]",  # a second statement
])
def test_the_answer_is_one_bare_assert(answer_block):
    cot = FORWARD.replace(answer("f", "[1, 2, 3]", "5"), answer_block)
    assert not check(cot).passed


def test_a_literal_that_repeats_a_dict_key_is_not_the_value_it_collapses_to():
    cot = FORWARD.replace("`total` becomes `0`", "`total` becomes `0`. Here `{1: 2, 1: 0}[1]` is `0`")
    assert check(cot).passed
    code = "def f(d):\n    d[1] = 2\n    return d\n"
    _, tracer = trace(code, "f", {})
    call = TracedCall(code, "f", "{}", "{1: 2}", tracer.events)
    claim = "Line 2 runs: `d` becomes `VALUE`. " + answer("f", "{}", "{1: 2}")
    assert Verifier(min_coverage=0).check("forward", claim.replace("VALUE", "{1: 2}"), call)[0].passed
    assert not Verifier(min_coverage=0).check("forward", claim.replace("VALUE", "{1: 'x', 1: 2}"), call)[0].passed


def test_honest_loop_and_condition_wording_verifies():
    cot = FORWARD.replace("The condition on line 4 (`x > 1`) is True.",
                          "On line 4, `x > 1` is True, so the branch runs.")
    cot = cot.replace("The loop on line 3 finishes after 3 iterations.",
                      "The loop on line 3 finishes after 3 iterations. This loop runs three times.")
    report = check(cot)
    assert report.passed, report.first_failure


def call_of(xs: list[int]) -> TracedCall:
    _, tracer = trace(LOOP, "f", xs)
    return TracedCall(LOOP, "f", repr(xs), str(sum(x for x in xs if x > 1)), tracer.events)


@pytest.mark.parametrize("false", [
    "`total` is `0` at the end of the function.",  # a place in the run the state claim does not check
    "At the top of the function, `total` is `2`.",
    "Line 5 runs: `total` decreases to `2`.",  # a direction the change verb would imply
    "This calls `sum`, and the call returns `5`.",  # "the call" is not the function's output
    "When the loop begins, `total` is `5`.",
])
def test_time_and_direction_words_are_not_framing(false):
    cot = FORWARD.replace("Line 5 runs: `total` becomes `2`.", f"Line 5 runs: `total` becomes `2`. {false}")
    assert not check(cot).passed

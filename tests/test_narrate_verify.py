"""Template narrations verify; narrations with a planted error do not."""

import json

import pytest
from conftest import SAMPLES

from operators.cot.mutations import ALL_KINDS, mutate
from operators.cot.narrate import TemplateNarrator
from operators.cot.verify import Verifier, check_backward_answer, parse_answer
from operators.trace.events import TracedCall

PROBLEMS = [json.loads(line) for line in SAMPLES.read_text().splitlines()]
NARRATOR = TemplateNarrator()
VERIFIER = Verifier()


def traced(sandbox, problem, index=0):
    raw = problem["inputs"][index]
    args = raw if isinstance(raw, str) else ", ".join(f"{k}={v!r}" for k, v in raw.items())
    result = sandbox.run({"code": problem["code"], "entry_point": problem["entry_point"], "input": args})
    assert result["outcome"] == "ok", result
    return args, result


def call_of(problem, args, result):
    return TracedCall(problem["code"], problem["entry_point"], args, result["output"], result["trace"])


def narrate(direction, problem, args, result):
    write = NARRATOR.forward if direction == "forward" else NARRATOR.backward
    return write(call_of(problem, args, result), problem["id"])


def verify(direction, cot, problem, args, result):
    report, _ = VERIFIER.check(direction, cot, call_of(problem, args, result))
    return report


@pytest.mark.parametrize("problem", PROBLEMS, ids=[p["id"] for p in PROBLEMS])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_template_narrations_verify(sandbox, problem, direction):
    args, result = traced(sandbox, problem)
    cot = narrate(direction, problem, args, result)
    report = verify(direction, cot, problem, args, result)
    assert report.passed, report.first_failure
    assert report.n_contradicted == 0 and report.coverage >= 0.5
    assert cot.rstrip().endswith(f"[ANSWER]assert {problem['entry_point']}({args}) == {result['output']}[/ANSWER]")
    if direction == "backward":
        rerun = sandbox.run({"code": problem["code"], "entry_point": problem["entry_point"],
                             "input": parse_answer(cot).input_text})
        check_backward_answer(report, rerun, result["output"])
        assert report.passed


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_a_function_without_arguments_narrates_and_verifies(sandbox, direction):
    """No input to quote: the backward CoT names the call (`f()`), not an empty input (CRUXEval sample_135)."""
    problem = {"entry_point": "f", "inputs": [""],
               "code": "def f():\n    d = {'a': [1, 2], 'b': [3]}\n    return list(d.keys())"}
    args, result = traced(sandbox, problem)
    for key in range(8):  # the key picks among a sentence's wordings
        cot = narrate(direction, {**problem, "id": f"no-args-{key}"}, args, result)
        assert "``" not in cot
        report = verify(direction, cot, problem, args, result)
        assert report.passed, report.first_failure


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_planted_errors_are_rejected(sandbox, kind):
    applied = 0
    for problem in PROBLEMS:
        args, result = traced(sandbox, problem)
        for direction in ("forward", "backward"):  # mutants keep the answer's input: the check alone decides
            cot = narrate(direction, problem, args, result)
            mutant = mutate(cot, kind, pick=len(cot))
            if mutant is None:
                continue
            assert mutant != cot
            assert not verify(direction, mutant, problem, args, result).passed, (problem["id"], mutant)
            applied += 1
    assert applied >= 3

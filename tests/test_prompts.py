import json

from conftest import SAMPLES

from operators.cot.narrate import TemplateNarrator
from operators.cot.prompts import parse_completion, render_trace, student_prompt, teacher_prompt
from operators.cot.verify import Verifier
from operators.trace.events import TracedCall

PROBLEMS = {p["id"]: p for p in map(json.loads, SAMPLES.read_text().splitlines())}


def traced(sandbox, problem_id):
    problem = PROBLEMS[problem_id]
    args = problem["inputs"][0]
    args = args if isinstance(args, str) else ", ".join(f"{k}={v!r}" for k, v in args.items())
    result = sandbox.run({"code": problem["code"], "entry_point": problem["entry_point"], "input": args})
    return problem, args, result


def test_trace_rendering_fits_the_budget(sandbox):
    problem, _, result = traced(sandbox, "sample/sum_squares_loop")
    full = render_trace(result["trace"], problem["code"], budget_chars=10**6, full_iterations=10**6)
    short = render_trace(result["trace"], problem["code"], budget_chars=800)
    assert len(short) <= 800 < len(full)
    assert "left out" in short and short.splitlines()[0].startswith("call ")


def test_teacher_prompt_names_the_claim_forms(sandbox):
    problem, args, result = traced(sandbox, "sample/bubble_sort")
    prompt = teacher_prompt("forward", TracedCall(problem["code"], problem["entry_point"], args, result["output"],
                                                  result["trace"]))
    assert "  1 | def bubble_sort" in prompt and "becomes" in prompt and "[ANSWER]assert" in prompt
    assert result["output"] in prompt
    assert "Output:" in student_prompt("backward", problem["code"], problem["entry_point"], args, result["output"])


def test_completions_are_parsed_and_verified(sandbox):
    problem, args, result = traced(sandbox, "sample/gcd")
    call = TracedCall(problem["code"], problem["entry_point"], args, result["output"], result["trace"])
    cot = TemplateNarrator().forward(call, "k")
    parsed = parse_completion("  " + cot + "\nSome trailing chatter.")
    assert parsed == cot
    report, _ = Verifier().check("forward", parsed, call)
    assert report.passed
    assert parse_completion("no answer here") is None

"""What a student model sees: the fixed instruction format of forward and backward prompts."""

from __future__ import annotations

from operators.trace.events import Event, TracedCall
from operators.trace.structure import TraceView

PROMPT_VERSION = "1"

_FORWARD = (
    "You are given a Python function and an input. Execute the function step by step on the input, "
    "tracking the values of the variables, and find the output.\n\n"
    "```python\n{code}\n```\n\n"
    "Input: `{call}`\n\n"
    "Reason step by step, then give the answer as [ANSWER]assert {call} == <output>[/ANSWER]."
)
_BACKWARD = (
    "You are given a Python function and an output. Find an input such that executing the function on it "
    "leads to the given output. Reason back from the output, step by step.\n\n"
    "```python\n{code}\n```\n\n"
    "Output: `{output}`\n\n"
    "Give the answer as [ANSWER]assert {entry_point}(<input>) == {output}[/ANSWER]."
)


def student_prompt(direction: str, code: str, entry_point: str, input_text: str, output_text: str) -> str:
    if direction == "forward":
        return _FORWARD.format(code=code.rstrip(), call=f"{entry_point}({input_text})")
    return _BACKWARD.format(code=code.rstrip(), entry_point=entry_point, output=output_text)


def messages(prompt: str, cot: str) -> list[dict[str, str]]:
    """A chat record as TRL / LLaMA-Factory SFT read it."""
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": cot}]


# Prompts for model narrators (the backends come with the LLM narrator issue): the model sees the trace and
# is told to state values in the claim forms the verifier checks (operators/cot/claims.py).
TEACHER_PROMPT_VERSION = "2"

_RULES = """Write the reasoning a careful teacher would give, step by step, one fact per sentence.
A checker compares every sentence with the trace: a sentence that states anything (a value, a number, a
variable, a line, a loop, a condition, the input or the output) must say it in one of these forms, and a
sentence in no form must state nothing at all ("Let's go through it."). Values go in backticks.
- "Line N (`code`): `x` becomes `value`."  or  "After line N, `x` is `value`."  (x is now / holds / is set to)
- "Iteration K of the loop on line N: `i` is `value`."
- "The condition on line N (`code`) is True." (or False; "holds" / "fails"), "so the branch runs" / "is skipped"
- "The loop on line N finishes after K iterations."  (K in digits or words: "runs twice")
- "This calls `g`."  "`g` returns `value`."  "`len(s)` is `3`."  "`s[0]` == `'a'` is True."
- "So the output is `value`."  and, for an input: "So the input `args` gives `value`."
Only state what the trace shows; no summaries in other words. End with exactly one line:
[ANSWER]assert {call} == {result}[/ANSWER]"""

_TEACHER = """{task}

```python
{code}
```

{given}

Execution trace (step: line, loop visit, changed values):
{trace}

{rules}"""


def numbered(code: str) -> str:
    return "\n".join(f"{n:>3} | {line}" for n, line in enumerate(code.splitlines(), 1))


def render_trace(events: list[Event], code: str, budget_chars: int = 6000, full_iterations: int = 2) -> str:
    """A compact trace that fits `budget_chars`: middle iterations of long loops are elided, and what still
    does not fit is cut in the middle, with a marker saying how many steps were left out."""
    view = TraceView(events, code)
    hidden = view.summarised(full_iterations)
    lines: list[str] = []
    skipping = False
    for index, event in enumerate(events):
        if index in hidden:
            if not skipping:
                lines.append("  … (middle iterations of a long loop left out) …")
            skipping = True
            continue
        skipping = False
        text = render_event(event)
        if text:
            lines.append(text)
    return _fit(lines, budget_chars)


def render_event(event: Event) -> str | None:
    """One trace step as the teacher prompt shows it (`L4 it2: i=1, total=3`)."""
    indent = "  " * event["depth"]
    visit = f" it{event['loop_iter']}" if "loop_iter" in event else ""
    changes = ", ".join(f"{k}={v}" for k, v in event.get("changes", {}).items())
    if event["event"] == "call":
        return f"{indent}call {event['func']}({changes})"
    if event["event"] == "return":
        value = f"raises {event['raised']}" if "raised" in event else f"returns {event.get('value')}"
        return f"{indent}{event['func']} {value}"
    if event["event"] == "exception":
        return f"{indent}L{event['line']} raises {event['exc_type']}"
    return f"{indent}L{event['line']}{visit}" + (f": {changes}" if changes else "")


def _fit(lines: list[str], budget: int) -> str:
    text = "\n".join(lines)
    if len(text) <= budget:
        return text
    head, tail, used = [], [], 0
    for front, back in zip(lines, reversed(lines), strict=True):
        if used + len(front) + len(back) + 2 > budget - 60:
            break
        head.append(front)
        tail.append(back)
        used += len(front) + len(back) + 2
    left_out = len(lines) - len(head) - len(tail)
    return "\n".join([*head, f"  … ({left_out} steps left out to fit) …", *reversed(tail)])


def teacher_prompt(direction: str, traced: TracedCall, budget_chars: int = 6000) -> str:
    """What a model narrator is asked: the code, the known side, the trace, and the claim forms to use."""
    code, output_text = traced.code, traced.output
    call, result = f"{traced.entry_point}({traced.input})", output_text
    if direction == "forward":
        task = "Explain how the function computes its output for the given input."
        given = f"Input: `{call}`"
    else:
        task = ("Explain how one can find an input that makes the function return the given output, reasoning "
                "backwards from the return statement to the arguments.")
        given = f"Output: `{output_text}`"
    return _TEACHER.format(task=task, code=numbered(code), given=given,
                           trace=render_trace(traced.events, code, budget_chars), rules=_RULES.format(call=call,
                                                                                                result=result))


def parse_completion(text: str) -> str | None:
    """The CoT in a model's answer: everything up to and including the last [ANSWER] block, or None."""
    end = text.rfind("[/ANSWER]")
    if end < 0 or text.rfind("[ANSWER]", 0, end) < 0:
        return None
    return text[: end + len("[/ANSWER]")].strip()

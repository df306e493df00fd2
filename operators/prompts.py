"""What a student model sees: the fixed instruction format of forward and backward prompts."""

from __future__ import annotations

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

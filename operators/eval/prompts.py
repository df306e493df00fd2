"""Prompts for evaluating a model on the execution benchmarks, and how an answer is read back from its text.

Two formats:
- `cruxeval`: CRUXEval's structure — an instruction, a worked example, then the task inside `[PYTHON]` tags,
  the answer inside `[ANSWER]assert …[/ANSWER]`; with `cot`, reasoning first inside `[THOUGHT]` tags. It
  follows CRUXEval's structure and tags in tracecot's own words; for CRUXEval's exact text, use a template.
- `chat`: tracecot's own student prompt (`operators.cot.prompts.student_prompt`), so a model trained on tracecot
  records is evaluated in the format it was trained on.
- a template of the user's (`fill_template`): any text with `{code}`, `{input}` and `{output}` in it — for
  example CRUXEval's own prompt text, taken from its repository, to compare with published scores.
HumanEval is a code-generation benchmark: the model completes the function from its signature and docstring.
"""

from __future__ import annotations

import re

from operators.cot.prompts import student_prompt

_EXAMPLE_O = ('[PYTHON]\ndef f(s):\n    return s + "a"\nassert f("x9j") == ??\n[/PYTHON]\n'
              '{thought}[ANSWER]\nassert f("x9j") == "x9ja"\n[/ANSWER]')
_THOUGHT_O = ('[THOUGHT]\nThe function f is called with s = "x9j". It returns s + "a", which is "x9ja".\n'
              '[/THOUGHT]\n')
_EXAMPLE_I = ('[PYTHON]\ndef f(x):\n    return x + 1\nassert f(??) == 17\n[/PYTHON]\n'
              '{thought}[ANSWER]\nassert f(16) == 17\n[/ANSWER]')
_THOUGHT_I = ('[THOUGHT]\nf(x) returns x + 1. For f(??) to be 17, x + 1 = 17, so x = 16.\n[/THOUGHT]\n')
_TASK_O = ("You are given a Python function and an assertion containing an input to the function. Complete the "
           "assertion with a literal (no unsimplified expressions, no function calls) containing the output when "
           "executing the function on the input, even if the function is incorrect or incomplete.{how} Give the "
           "full assertion inside [ANSWER] and [/ANSWER] tags, as in the example.")
_TASK_I = ("You are given a Python function and an assertion with its output. Find any input such that executing "
           "the function on it leads to the given output; there may be several, give one.{how} Give the full "
           "assertion inside [ANSWER] and [/ANSWER] tags, as in the example.")
_HOW_COT = " Think step by step inside [THOUGHT] and [/THOUGHT] tags first."
_HOW_DIRECT = " Do not output anything else."


def benchmark_prompt(bench: str, code: str, input_text: str, output_text: str, cot: bool, fmt: str,
                     entry_point: str = "f") -> str:
    """The prompt for one output- or input-prediction item (CRUXEval-O/I, LiveCodeBench execution)."""
    backward = bench == "cruxeval-i"
    if fmt == "chat":
        return student_prompt("backward" if backward else "forward", code, entry_point, input_text, output_text)
    how = _HOW_COT if cot else _HOW_DIRECT
    if backward:
        example = _EXAMPLE_I.format(thought=_THOUGHT_I if cot else "")
        task = f"[PYTHON]\n{code.rstrip()}\nassert {entry_point}(??) == {output_text}\n[/PYTHON]\n"
        return f"{_TASK_I.format(how=how)}\n\n{example}\n\n{task}"
    example = _EXAMPLE_O.format(thought=_THOUGHT_O if cot else "")
    call = input_text if bench == "lcb-exec" else f"{entry_point}({input_text})"
    task = f"[PYTHON]\n{code.rstrip()}\nassert {call} == ??\n[/PYTHON]\n"
    return f"{_TASK_O.format(how=how)}\n\n{example}\n\n{task}"


_PLACEHOLDER = re.compile(r"\{(code|input|output)\}")


def fill_template(template: str, code: str, input_text: str, output_text: str) -> str:
    """A user's prompt template with the item filled in. Only `{code}`, `{input}` and `{output}` are replaced,
    in one pass, so other braces stay as they are. `{input}` is the argument list (LiveCodeBench: the call)."""
    values = {"code": code.rstrip(), "input": input_text, "output": output_text}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def check_template(template: str) -> None:
    """Raise ValueError unless the template has a place for the code."""
    if "{code}" not in template:
        raise ValueError("a prompt template needs a {code} placeholder (and {input} or {output})")


def humaneval_prompt(prompt: str) -> str:
    return ("Complete the following Python function. Reply with the whole function in one ```python code "
            f"block.\n\n```python\n{prompt.rstrip()}\n```")


def extract_prediction(bench: str, text: str) -> str:
    """The prediction in a model's answer, as CRUXEval's and LiveCodeBench's harnesses read it: the text inside
    the last [ANSWER] block (else the whole text, up to its first line break), then the side of `==` that was
    asked for."""
    opened = text.rfind("[ANSWER]")
    answer = text[opened + len("[ANSWER]"):] if opened >= 0 else text.strip().split("\n")[0]
    answer = answer.split("[/ANSWER]")[0].strip()
    answer = answer.removeprefix("assert").strip()
    if bench == "cruxeval-i":
        return answer.split("==")[0].strip()
    return answer.split("==", 1)[1].strip() if "==" in answer else answer


def extract_code(text: str) -> str:
    """The first fenced code block of an answer, else the whole answer."""
    match = re.search(r"```(?:python)?\n(.*?)```", text, re.S)
    return match.group(1) if match else text

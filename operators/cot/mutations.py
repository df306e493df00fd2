"""Planted errors in a CoT, one kind at a time: how the verifier is measured (bench/mutations.py, tests).

Each mutation edits one claim so that the text stays fluent but says something the trace contradicts.
`mutate` returns None when a CoT has no place for that kind of error.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_Edit = Callable[[re.Match[str]], str]


def _bump(value: str) -> str:
    return str(int(value) + 1) if value.lstrip("-").isdigit() else value + " + [1]"


def _value(match: re.Match[str]) -> str:
    return f"{match.group(1)}`{_bump(match.group(2))}`"


KINDS: dict[str, tuple[str, _Edit]] = {
    "wrong_value": (r"(`\w+` (?:becomes|is set to|=) )`([^`]+)`", _value),
    "wrong_branch": (r"(condition on line \d+ \(`[^`]*`\) is )(True|False)",
                     lambda m: m.group(1) + ("False" if m.group(2) == "True" else "True")),
    "wrong_comparison": (r"(`[^`]+` (?:<=|>=|==|!=|<|>|not in|in) `[^`]+` is )(True|False)",
                         lambda m: m.group(1) + ("False" if m.group(2) == "True" else "True")),
    "off_by_one_loop_count": (r"(finishes after )(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + 1}"),
    "wrong_return": (r"(`[\w.]+` returns )`([^`]+)`", _value),
    "wrong_answer": (r"(\[ANSWER\]assert .*?\) == )(.+?)(\[/ANSWER\])",
                     lambda m: f"{m.group(1)}{_bump(m.group(2))}{m.group(3)}"),
    "wrong_variable": (r"`(\w+)`( (?:becomes|is set to|=) `[^`]+`)", lambda m: f"`{m.group(1)}_`{m.group(2)}"),
    "misquoted_code": (r"([Ll]ine \d+ \(`)([^`]+)(`\))", lambda m: f"{m.group(1)}{m.group(2)} + 0{m.group(3)}"),
    "wrong_line": (r"([Ll]ine )(\d+)( \(`)", lambda m: f"{m.group(1)}{int(m.group(2)) + 1}{m.group(3)}"),
    "wrong_target": (r"((?:makes `\w+` produce|to the output) )`([^`]+)`", _value),
    "wrong_backward_input": (r"((?:was called with|must have had) `\w+` = )`([^`]+)`", _value),
}
ALL_KINDS = (*KINDS, "skipped_iteration")


def mutate(cot: str, kind: str, pick: int = 0) -> str | None:
    """The CoT with one error of `kind` planted at the `pick`-th place that allows it (wrapping around)."""
    if kind == "skipped_iteration":
        return _skip_iteration(cot, pick)
    pattern, edit = KINDS[kind]
    matches = list(re.finditer(pattern, cot))
    if not matches:
        return None
    target = matches[pick % len(matches)]
    return cot[:target.start()] + edit(target) + cot[target.end():]


def _skip_iteration(cot: str, pick: int) -> str | None:
    """Drop iteration k's sentences and tell iteration k+1 as if it were k."""
    heads = list(re.finditer(r"Iteration (\d+) of the loop on line (\d+)", cot))
    pairs = [(a, b) for a in heads for b in heads
             if b.start() > a.start() and b.group(2) == a.group(2) and int(b.group(1)) == int(a.group(1)) + 1]
    if not pairs:
        return None
    first, second = pairs[pick % len(pairs)]
    renumbered = f"Iteration {first.group(1)} of the loop on line {first.group(2)}"
    return cot[:first.start()] + renumbered + cot[second.end():]

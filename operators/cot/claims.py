"""The checkable sentences of a CoT: how narrators write claims and how the verifier finds them.

Values are quoted in backticks (`` `[1, 2]` ``; a value holding a backtick is quoted with double backticks).
Kinds of claims, each found by one pattern below:
  line       "line 5", "line 5 (`x = 1`)"              → the next step runs line 5 (and quotes its source)
  iteration  "iteration 3 of the loop on line 4"       → that loop visit exists
  loopcount  "the loop on line 4 finishes after 3 iterations"
  change     "`x` becomes `v`", "`x` = `v`", "sets `x` to `v`", "`x` is set to `v`" → x's next change is v
  state      "`x` is `v`", "`x` was `v`", "`x` holds `v`"  → x's value just before the current step
  condition  "the condition on line 5 (`n > 2`) is True"  (a quoted source must be line 5's)
  result     "the result is `v`", "produce `v`"        → v is the call's output (a restated target too)
  compare    "`5` > `2` is True" (a side may name a variable: its value before the current step)
  returns    "`g` returns `v`", "`g` yields `v`"
  comprehension "the comprehension on line 3 builds `v`"
  calls      "calls `g`"                               → the next call is of g
  raises     "raises `ValueError`"
  answer     "[ANSWER]assert f(<input>) == <output>[/ANSWER]"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VALUE = r"(?:``\s(?P<{0}d>.+?)\s``|`(?P<{0}>[^`\n]+)`)"
_NAME = r"`(?P<name>[A-Za-z_][\w.]*)`"
_FUNC = r"`(?P<func>[A-Za-z_<][\w.<>]*)`"

PATTERNS: dict[str, re.Pattern[str]] = {
    "iteration": re.compile(r"[Ii]teration (?P<k>\d{1,9}) of the loop on line (?P<line>\d{1,9})"),
    "loopcount": re.compile(r"loop on line (?P<line>\d{1,9}) (?:finishes|ends|stops) after (?P<n>\d{1,9}) iterations?"),
    "condition": re.compile(r"condition on line (?P<line>\d{1,9})(?: \(" + _VALUE.format("code") + r"\))? (?:is|was) "
                            r"(?P<truth>True|False)"),
    "comprehension": re.compile(r"comprehension on line (?P<line>\d{1,9}) (?:builds|produces) "
                                + _VALUE.format("value")),
    "compare": re.compile(r"`(?P<left>[^`\n]+)` (?P<op><=|>=|==|!=|<|>|not in|in) `(?P<right>[^`\n]+)` "
                          r"is (?P<ctruth>True|False)"),
    "result": re.compile(r"(?:[Tt]he (?:final )?(?:result|output|return value|answer)|\bproduces?|to the output) "
                         r"(?:is |would be |will be )?(?:therefore |thus |then |again )?" + _VALUE.format("result")),
    "line": re.compile(r"\b[Ll]ine (?P<line>\d{1,9})\b(?: \(" + _VALUE.format("code") + r"\)|, "
                       + _VALUE.format("ran") + r" runs)?"),
    "change": re.compile(
        r"(?:" + _NAME + r" (?:becomes|became|is set to|was set to|changes to|=)"
        r"|sets? `(?P<name2>[A-Za-z_][\w.]*)` to) " + _VALUE.format("value")),
    "state": re.compile(_NAME.replace("name", "sname") + r" (?:is still|holds|is|was) " + _VALUE.format("svalue")),
    "returns": re.compile(_FUNC + r" (?:returns|yields|gives back) " + _VALUE.format("rvalue")),
    "calls": re.compile(r"calls " + _FUNC),
    "raises": re.compile(r"raises `(?P<exc>[A-Za-z_]\w*)`"),
}
ANSWER = re.compile(r"\[ANSWER\](?P<body>.*?)\[/ANSWER\]", re.S)


@dataclass(frozen=True)
class Claim:
    kind: str
    start: int
    text: str
    fields: dict[str, str]


def quote(value: str) -> str:
    return f"`` {value} ``" if "`" in value else f"`{value}`"


def answer(entry_point: str, input_text: str, output_text: str) -> str:
    return f"[ANSWER]assert {entry_point}({input_text}) == {output_text}[/ANSWER]"


def extract(cot: str) -> list[Claim]:
    """Every claim in `cot`, in text order; a span matched by one kind is not matched again by another."""
    body = ANSWER.split(cot)[0] if ANSWER.search(cot) else cot
    taken: list[tuple[int, int]] = []
    claims: list[Claim] = []
    for kind, pattern in PATTERNS.items():
        for match in pattern.finditer(body):
            if any(a < match.end() and match.start() < b for a, b in taken):
                continue
            taken.append(match.span())
            fields = {k.rstrip("d"): v for k, v in match.groupdict().items() if v is not None}
            if "name2" in fields:
                fields["name"] = fields.pop("name2")
            if "ran" in fields:
                fields["code"] = fields.pop("ran")
            claims.append(Claim(kind, match.start(), match.group(0), fields))
    claims.sort(key=lambda claim: claim.start)
    return claims

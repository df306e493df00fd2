"""The checkable sentences of a CoT: how narrators write claims and how the verifier finds them.

Values are quoted in backticks (`` `[1, 2]` ``; a value holding a backtick is quoted with double backticks), or
written bare when they are short literals: numbers, `true`/`false`/`none` in any case, quoted strings, flat
lists. Counts may be number words ("seven iterations", "twice"). Kinds of claims, each found by the patterns
below (tried in this order; a span taken by one kind is not matched again):
  compare      "`len(s)` > `2` is True"                        → sides evaluated (`operators.cot.expressions`)
  invocation   "`f('ab')` returns `2`", "calling `f(3)` produces the required output" → that input, that output
  input        "the input `'ab', 2` gives `'abab'`"            → the call's input (and output)
  target       "an input that makes `f` produce `True`"       → the output
  result       "the result is `v`", "so the output is v"      → the output
  iterations   "iterations 3 to 7 of the loop on line 4"      → those visits all enter the body
  iteration    "iteration 3 of the loop on line 4", "the third pass of the loop on line 4", "in iteration 2"
  loopcount    "the loop on line 4 finishes after 3 iterations", "the loop runs twice"
  condition    "the condition on line 5 (`n > 2`) is True", "the test on line 5 fails"
  effect       "so the branch runs", "so we skip the body"       → the branch at the step just claimed
  comprehension "the list comprehension on line 3 builds `v`"
  before       "before line 5 runs"                            → that step, not yet run; values are those before it
  after        "after line 5 (`x += 1`)"                       → that step; values then are those after it
  line         "line 5", "line 5 (`x = 1`)", "on line 5, `x = 1` runs" → the next step runs line 5
  length       "`s` has 5 characters", "the length of `s` is 5"
  initial      "initially, `x` is `v`", "`x` starts as `v`"    → x's first value in the entry function
  final        "`x` ends up as `v`", "in the end, `x` is `v`"  → x's last value in the entry function
  change       "`x` becomes `v`", "x is now 5", "sets `x` to `v`", "`x` = `v`" → x's next change is v
  returns      "`g` returns `v` (at `return x`)", "the function returns `v`", "f outputs `v`"
  raises       "raises `ValueError`", "`f` stops there because of the `KeyError`"
  calls        "calls `g`", "the call of `f`", "`f` was called with", "this calls `len`"
  state        "`x` is `v`", "`x[0]` was `v`", "n holds 3"      → a value (or expression) at the current step
  answer       "[ANSWER]assert f(<input>) == <output>[/ANSWER]"
No claim says "still", "stays", "remains", "never" or "not": such words are left in the sentence's rest, which
must hold framing only (`operators.cot.sentences`), so a sentence using them is unverifiable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

NUMBER_WORDS = {
    "zero": 0, "no": 0, "one": 1, "once": 1, "a single": 1, "two": 2, "twice": 2, "three": 3, "thrice": 3,
    "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100,
}
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12,
}
_NUM = r"(?:\d{1,9}|" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r")"
_ORD = r"(?:\d{1,9}(?:st|nd|rd|th)|" + "|".join(ORDINALS) + r")"
_TRUTH = r"(?:True|False|true|false)"


def _value(group: str) -> str:
    """A value: backtick-quoted (`_q`, `_qq`) or a bare short literal (`_b`)."""
    return (rf"(?:``\s(?P<{group}_qq>.+?)\s``|`(?P<{group}_q>[^`\n]+)`"
            rf"|(?P<{group}_b>-?\d+(?:\.\d+)?(?![\w.]\w)|(?<!\w)(?:True|False|None|true|false|none)\b"
            rf"|'[^'\n]{{0,80}}'|\"[^\"\n]{{0,80}}\"|\[[^\[\]`\n]{{0,80}}\]|\{{[^{{}}`\n]{{0,80}}\}}))")


def _code(group: str = "code") -> str:
    return rf"(?:``\s(?P<{group}_qq>.+?)\s``|`(?P<{group}_q>[^`\n]+)`)"


_NOT_NAMES = ("(?:now|it|this|that|which|what|there|here|then|so|we|and|the|one|all|each|function|code|call|loop"
              "|line)")


def _name(group: str) -> str:
    """A variable: quoted, or bare (the verifier then finds out whether the frame holds it)."""
    return rf"(?:`(?P<{group}_q>[A-Za-z_]\w*)`|\b(?!{_NOT_NAMES}\b)(?P<{group}_b>[A-Za-z_]\w*))"


_FUNC = r"`(?P<func>[A-Za-z_<][\w.<>]*)(?:\(\))?`"
_LINE = r"line (?P<line>\d{1,9})"
_CHANGE_VERBS = (r"(?:becomes|became|is set to|was set to|gets set to|is now equal to|now equals|is now|was now"
                 r"|now holds|now is|holds now|gets the value|is assigned the value|is given the value"
                 r"|receives the value"
                 r"|is updated to|was updated to|is reassigned to|was reassigned to|changes to|changed to"
                 r"|takes the value|took the value|turns into|turned into|is assigned|was assigned|=)")
_GIVES = r"(?:gives|gave|produces|produced|returns|returned|yields|outputs|leads to|results in|evaluates to)"
_REQUIRED = r"the (?:required|desired|expected|target|given|same|wanted|needed) (?:output|result|value)"
_GIVES_VALUE = (r"(?:" + _GIVES + r"|is|==|equals|should return|would return|will return)(?: indeed| exactly)? (?:"
                + _value("result") + "|" + _REQUIRED + ")")
_AT_END = r"(?:[Ff]inally|[Ii]n the end|[Aa]t the end),? "  # of the whole call: where its output is told
_CALL = r"(?:``\s(?P<call_qq>[A-Za-z_]\w*\(.*?\))\s``|`(?P<call_q>[A-Za-z_]\w*\([^`\n]*\))`)"
_BRANCH = r"(?:branch|body|block|if[- ]branch|if[- ]block|loop body)"

PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {kind: tuple(re.compile(p) for p in patterns) for kind, patterns in {
    "compare": (
        r"`(?P<left>[^`\n]+)` (?P<op><=|>=|==|!=|<|>|not in|in) `(?P<right>[^`\n]+)` (?:is|was|evaluates to) "
        r"(?P<ctruth>" + _TRUTH + r")",
    ),
    "input": (
        r"(?:[Tt]he |[Aa]n |[Oo]ur )?input(?: is| must be| should be| could be| =|:)? " + _code("args")
        + r"(?! (?:is|was|=|holds|becomes)\b)(?:,? (?:which |that )?(?:" + _GIVES + ") (?:" + _value("result")
        + "|" + _REQUIRED + "))?",
    ),
    "invocation": (
        r"(?:[Cc]alling|[Cc]all) " + _CALL + r"(?: " + _GIVES_VALUE + ")?",
        _CALL + r" " + _GIVES_VALUE,
    ),
    "target": (
        r"(?:input|arguments?|call) (?:that|which) (?:makes?|leads?|gets?|causes?|has) " + _FUNC
        + r" (?:to )?(?:(?:produce|return|output|give|yield|evaluate to)s? (?:the (?:output|value) )?"
        r"|the (?:output|value) )" + _value("result"),
    ),
    "result": (
        r"(?:" + _AT_END + r")?(?:[Tt]he (?:final |required |expected |desired |returned )?"
        r"(?:result|output|return value|answer)"
        r"|to the output) (?:is |would be |will be |should be |must be |equals |= )?"
        r"(?:therefore |thus |then |again |indeed )?" + _value("result"),
        r"(?:[Ww]e get|[Ww]e obtain|[Ww]e end up with|[Tt]his gives|[Tt]hat gives) " + _value("result")
        + r"(?=[.!]?\s*$)",
    ),
    "iterations": (
        r"[Ii]terations (?P<k>" + _NUM + r") (?:to|through|and|-|–) (?P<k2>" + _NUM + r") of the loop on " + _LINE
        + r"(?: are not told in full(?: either)?)?",
    ),
    "iteration": (
        r"(?:[Ww]hen )?(?:[Ii]teration|[Pp]ass) (?P<k>" + _NUM + r") of the loop on " + _LINE + r"(?: begins)?",
        r"(?P<kord>" + _ORD + r") (?:iteration|pass) of the loop on " + _LINE,
        r"\b(?:[Ii]teration|[Pp]ass) (?P<k>" + _NUM + r")\b",  # of the loop the text is in
        r"(?P<kord>" + _ORD + r") (?:iteration|pass)\b",
    ),
    "loopcount": (
        r"[Aa]fter (?P<n>" + _NUM + r") iterations?,? the loop on " + _LINE
        + r" (?:ends|ended|finishes|finished|stops|stopped|exits|exited)",
        r"loop on " + _LINE + r" (?:finishes|finished|ends|ended|stops|stopped|exits|exited|terminates|is done"
        r"|runs|ran|executes|executed|iterates|iterated|repeats|goes round)(?: after| for)? (?P<n>" + _NUM
        + r") (?:iterations?|times|passes|rounds|loops)",
        r"loop on " + _LINE + r" (?:runs|ran|executes|executed|iterates|iterated|repeats|repeated) (?P<n>once|twice)",
        r"(?:[Tt]he|[Tt]his) loop (?:runs|ran|executes|executed|iterates|iterated|repeats|repeated)(?: for)? "
        r"(?:(?P<n>" + _NUM + r") (?:iterations?|times|passes|rounds)|(?P<n2>once|twice))",
    ),
    "condition": (
        r"(?:condition|test|check) (?:on|at|in) " + _LINE + r"(?: \(" + _code() + r"\))? (?P<truth>(?:is|was"
        r"|evaluates to|evaluated to|is evaluated as|comes out) " + _TRUTH + r"|holds|held|is met|was met"
        r"|is satisfied|was satisfied|passes|passed|fails|failed|is not met|was not met|does not hold"
        r"|did not hold|is not satisfied|was not satisfied)",
    ),
    "effect": (
        r"[Ss]o (?:the (?P<what>" + _BRANCH + r") (?P<effect>runs|ran|is taken|was taken|is executed|was executed"
        r"|is entered|was entered|is skipped|was skipped|is not taken|was not taken|is not executed"
        r"|was not executed)|we (?P<weffect>enter|skip) the " + _BRANCH + r")",
    ),
    "comprehension": (
        r"(?:(?P<ckind>list|dict|set|generator) )?comprehension on " + _LINE + r" (?:builds|produces|gives|creates"
        r"|evaluates to|returns) " + _value("value"),
    ),
    "before": (
        r"[Bb]efore " + _LINE + r"(?: \(" + _code() + r"\))?(?: (?:runs|executes|is executed|ran))?",
    ),
    "after": (
        r"[Aa]fter " + _LINE + r"(?: \(" + _code() + r"\))?(?: (?:runs|executes|is executed|has run))?",
    ),
    "line": (
        r"\b[Ll]ine (?P<line>\d{1,9})\b(?: \(" + _code() + r"\)|, " + _code("code2")
        + r" (?:runs|executes|is executed))?"
        r"(?: (?:runs|executes|is executed|ran|was executed))?",
    ),
    "length": (
        r"`(?P<name>[^`\n]+)` (?:has|had|contains|contained|is made of|consists of) (?P<n>" + _NUM + r") "
        r"(?P<unit>characters?|elements?|items?|entries|entry|keys?)\b",
        r"`(?P<name>[^`\n]+)` (?:has|had|is of) length (?P<n>" + _NUM + r")",
        r"[Tt]he length of `(?P<name>[^`\n]+)` (?:is|was|equals) (?P<n>" + _NUM + r")",
    ),
    "initial": (
        r"(?:[Ii]nitially|[Aa]t the start|[Aa]t first),? " + _name("name") + r" (?:is|was|holds|equals) "
        + _value("value"),
        _name("name") + r" (?:starts|started) (?:out )?(?:as|at|with|equal to) " + _value("value"),
    ),
    "final": (
        _name("name") + r" (?:ends up (?:as|being|equal to|holding|with)?|finally (?:is|holds|becomes)|is finally"
        r"|ends as) ?" + _value("value"),
        r"(?:[Ii]n the end|[Aa]t the end|[Ff]inally),? " + _name("name") + r" (?:is|holds|equals) " + _value("value"),
    ),
    "change": (
        _name("name") + r" " + _CHANGE_VERBS + r" " + _value("value"),
        r"\bsets? " + _name("name") + r" to " + _value("value"),
        r"\bassigns? " + _value("value") + r" to " + _name("name"),
        r"`(?P<name>[A-Za-z_]\w*)` (?:changes \((?P<cut>its value is too long to show)\)|(?P<deleted>is deleted))",
    ),
    "returns": (
        r"(?:" + _FUNC + r"|(?:" + _AT_END + r")?(?P<subject>[Tt]he function)|(?P<subject2>[Ii]t|[Tt]his)|\b(?!"
        + _NOT_NAMES
        + r"\b)(?P<bfunc>[A-Za-z_]\w*))"
        r"(?: (?:finally|then|now|therefore|thus))? (?:returns"
        r"|returned|yields|yielded|gives back|gave back|will return|would return|ends by returning|outputs"
        r"|produces|gives) "
        r"(?:" + _value("rvalue") + r"|(?P<cut>a value too long to show))"
        r"(?: (?:at|on|from|in) (?:line (?P<rline>\d{1,9})(?: \(" + _code() + r"\))?|" + _code("code2") + r"))?",
    ),
    "raises": (
        r"raises (?:an? |the )?`(?P<exc>[A-Za-z_]\w*)`",
        r"(?:" + _FUNC + r" )?(?:stops|stopped|ends|ended|fails|failed) (?:there |here )?(?:because of|with) "
        r"(?:an? |the )?`(?P<exc>[A-Za-z_]\w*)`",
        r"`(?P<exc>[A-Za-z_]\w*)` is raised",
    ),
    "calls": (
        r"(?:calls|called|(?:[Ww]e begin with the )?call of|calling|invokes) " + _FUNC
        + r"(?P<noargs>,? (?:which takes|with) no arguments| must have had no arguments)?",
        _FUNC + r" (?:is|was|gets|got) called(?P<noargs> with no arguments)?",
    ),
    "state": (
        r"`(?P<sname>[^`\n]+)` (?:holds|is|was|equals|is equal to|==) " + _value("svalue"),
        r"\b(?!" + _NOT_NAMES + r"\b)(?P<sname>[A-Za-z_]\w*) (?:holds|equals|is equal to) " + _value("svalue"),
    ),
}.items()}
ANSWER = re.compile(r"\[ANSWER\](?P<body>.*?)\[/ANSWER\]", re.S)
QUOTED = re.compile(r"``\s.+?\s``|`[^`\n]+`")
_BARE_WORDS = {"true": "True", "false": "False", "none": "None"}
# alternatives of one field
_SAME = {"code2": "code", "n2": "n", "weffect": "effect", "kord": "k", "bfunc": "func", "subject2": "subject"}


@dataclass(frozen=True)
class Claim:
    kind: str
    start: int
    end: int
    text: str
    fields: dict[str, str]


def quote(value: str) -> str:
    return f"`` {value} ``" if "`" in value else f"`{value}`"


def answer(entry_point: str, input_text: str, output_text: str) -> str:
    return f"[ANSWER]assert {entry_point}({input_text}) == {output_text}[/ANSWER]"


def number(text: str) -> int:
    """A count written as digits, a number word ("seven", "twice") or an ordinal ("third", "3rd")."""
    word = text.lower()
    if word in NUMBER_WORDS:
        return NUMBER_WORDS[word]
    if word in ORDINALS:
        return ORDINALS[word]
    return int(word.rstrip("stndrh"))


def body(cot: str) -> str:
    """The reasoning of a CoT: its text before the [ANSWER] block."""
    match = ANSWER.search(cot)
    return cot[: match.start()] if match else cot


def extract(text: str, offset: int = 0) -> list[Claim]:
    """Every claim in `text`, in text order; a span matched by one kind is not matched again by another.
    `offset` is added to the claims' positions (for a sentence cut out of a longer text)."""
    claims = _claims_in(text) if len(text) <= _CACHED_CHARS else _claims_in.__wrapped__(text)
    if not offset:
        return list(claims)
    return [replace(claim, start=claim.start + offset, end=claim.end + offset) for claim in claims]


_CACHED_CHARS = 1000  # longer sentences are not remembered: the cache stays under ~10 MB


@lru_cache(maxsize=8192)
def _claims_in(text: str) -> tuple[Claim, ...]:
    """`extract` at offset 0, remembered: the two directions of a call, and the calls of one problem, repeat
    most sentences (61% of them on HumanEval), and matching every pattern is most of a verification's cost."""
    quotes = [quoted.span() for quoted in QUOTED.finditer(text)]
    taken: list[tuple[int, int]] = []
    claims: list[Claim] = []
    for kind, patterns in PATTERNS.items():
        for pattern in patterns:
            for match in pattern.finditer(text):
                start, end = match.span()
                if any(a < end and start < b for a, b in taken):
                    continue
                # A quoted value is never cut: a claim holds it whole or leaves it alone (`'I got 1'` holds none).
                if any(a < end and start < b and not (start <= a and b <= end) for a, b in quotes):
                    continue
                taken.append(match.span())
                claims.append(Claim(kind, match.start(), match.end(), match.group(0), _fields(match)))
    claims.sort(key=lambda claim: claim.start)
    return tuple(claims)


def _fields(match: re.Match[str]) -> dict[str, str]:
    """The matched groups, a value's `_q`/`_qq`/`_b` variants folded into one field (bare words normalised)."""
    fields: dict[str, str] = {}
    for key, value in match.groupdict().items():
        if value is None:
            continue
        base, _, variant = key.rpartition("_")
        if variant in ("q", "qq", "b") and base:
            key, value = base, _BARE_WORDS.get(value, value) if variant == "b" else value
        fields[_SAME.get(key, key)] = value
    return fields

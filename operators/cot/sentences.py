"""Sentences of a CoT, and what is left of one once its claims are taken out.

The verifier gives every sentence a verdict. What its claims do not cover (the *rest*) must say nothing a
reader could take as a fact about the run: no quoted value, number or number word, name from the code, or
word about lines, loops, conditions, iterations, inputs, outputs and results. A rest that says such a thing
is unverifiable — the verifier cannot vouch for it, so in strict mode it rejects the CoT.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from operators.cot.claims import NUMBER_WORDS, ORDINALS, QUOTED

_STRING = re.compile(r"(?<!\w)'[^'\n]*'(?!\w)|\"[^\"\n]*\"")  # a bare string value ('Let\'s' is no string)
_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[A-Za-z_][\w']*")
# Words that state a fact about the run (besides numbers and the code's own names).
FACT_WORDS = frozenset({
    "line", "lines", "loop", "loops", "looping", "iterate", "iterates", "iterated", "iteration", "iterations",
    "pass", "passes", "round", "rounds", "times", "condition", "conditions", "test", "tests", "check", "checks",
    "branch", "branches", "true", "false", "none", "null", "input", "inputs", "output", "outputs", "result",
    "results", "answer", "returns", "returned", "returning", "return", "argument", "arguments", "parameter",
    "parameters", "raise", "raises", "raised", "error", "exception", "empty", "even", "odd", "length", "characters",
    "character", "elements", "element", "items", "item", "letters", "letter", "digits", "digit", "words", "entries",
    "keys", "key", "index", "indices", "greater", "smaller", "less", "more", "fewer", "larger", "bigger", "longer",
    "shorter", "higher", "lower", "equal", "equals", "same", "different", "unchanged", "increments", "incremented",
    "decrements", "decremented", "appends", "appended", "adds", "added", "removes", "removed", "doubles", "doubled",
    "reverses", "reversed", "sorted", "sorts", "counts", "counted", "contains", "contained", "skip", "skips",
    "skipped", "holds", "held", "becomes", "became", "positive", "negative", "maximum", "minimum", "max", "min",
    "sum", "total", "change", "changes", "changed", "stay", "stays", "remain", "remains", "never", "always",
    "throughout", "updated", "assigned", "increases", "decreases", "grows", "shrinks", "multiplied", "divided",
})
NUMBERS = frozenset(word for phrase in NUMBER_WORDS for word in phrase.split() if word not in ("a", "no")) \
    | frozenset(ORDINALS) | {"half", "double", "triple", "dozen", "single", "last"}
# Framing that names a fact word without stating a fact.
_GLUE = re.compile(r"\bthe return statement\b|\bstep by step\b|\bline by line\b|\bby hand\b"
                   r"|^\s*(?:first|second|third|finally|lastly|last|next|then)(?:ly)?,", re.I)
# Short English words that are also common variable names: in prose they are words, not names.
_ENGLISH = frozenset({
    "a", "an", "as", "at", "be", "by", "do", "go", "he", "if", "in", "is", "it", "me", "my", "no", "of", "on",
    "or", "so", "to", "up", "us", "we",
})


def split(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each sentence of `text`; a quoted value's full stops do not end a sentence."""
    masked = _STRING.sub(lambda m: "x" * len(m.group(0)), QUOTED.sub(lambda m: "x" * len(m.group(0)), text))
    start = 0
    for boundary in _END.finditer(masked):
        if masked[start:boundary.start()].strip():
            yield start, boundary.start()
        start = boundary.end()
    if masked[start:].strip():
        yield start, len(text)


def fact_in(rest: str, names: frozenset[str]) -> str | None:
    """The first thing in `rest` that states a fact about the run, or None when it states none."""
    rest = _GLUE.sub(" ", rest)
    quoted = QUOTED.search(rest)
    if quoted or "`" in rest:
        return quoted.group(0) if quoted else "`"
    digit = re.search(r"\d+", rest)
    if digit:
        return digit.group(0)
    for match in _WORD.finditer(rest):
        word = match.group(0)
        lower = word.lower()
        if lower in FACT_WORDS or lower in NUMBERS or (word in names and word not in _ENGLISH):
            return word
    string = _STRING.search(rest)
    return string.group(0) if string else None

"""Sentences of a CoT, and what is left of one once its claims are taken out.

The verifier gives every sentence a verdict. What its claims do not cover (the *rest*) may only be framing:
words from a short closed list (`FRAMING`: articles, pronouns, connectives, "let's run the function by hand")
and plain punctuation. Anything else in the rest — a value, a number, a name from the code, a negation, a
quantifier, a timing word, a unit, any word the list lacks, any character outside plain ASCII — might state
a fact the claims do not check, so the sentence is *unverifiable* and, in strict mode, rejects the CoT. The
list is closed on purpose: when unsure, reject.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from operators.cot.claims import QUOTED

_STRING = re.compile(r"(?<!\w)'[^'\n]*'(?!\w)|\"[^\"\n]*\"")  # a bare string value ("let's" is no string)
_END = re.compile(r"(?<=[.!?])\s+|\n+")
_TOKEN = re.compile(r"[^\s,.:;!?()]+")
# Words that frame reasoning without stating anything about the run. No negation ("not", "no", "never"),
# quantifier ("all", "only", "each"), time or place in the run ("still", "initially", "before", "first",
# "finally", "when", "end", "top", "earlier"), number, unit or property word is here.
FRAMING = frozenset({
    "a", "an", "the", "this", "that", "it", "we", "us", "our", "let's", "let", "so", "then", "next", "now",
    "hence", "thus", "therefore", "and", "also", "here", "where", "as", "since", "because", "with", "at",
    "on", "of", "to", "in", "by", "from", "for", "is", "was", "be", "execute", "run", "trace", "go", "work",
    "backwards", "reason", "look", "code", "function", "program", "call", "step", "hand", "way", "there",
    "must", "have", "had", "need", "through", "carefully", "see", "what", "happens", "check", "think",
    "about", "consider", "understand", "simulate", "manually", "walk", "execution", "follow", "along",
    "statement", "statements", "-", "*",
})
# Framing phrases that hold a word the list lacks on its own.
_PHRASES = re.compile(r"\bbefore that\b|\bgoing back\b|\bon the way there\b", re.I)


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
    """The first thing in `rest` that is not framing (so may state a fact about the run), or None."""
    for token in _TOKEN.findall(_PHRASES.sub(" ", rest)):
        word = token.lower()
        if word not in FRAMING or (token in names and word != "a"):
            return token
    return None

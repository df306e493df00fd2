"""Benchmark contamination: does a problem's code overlap a benchmark item's code?

Two tests, as decontamination reports usually give them:
- normalised exact match: the code's syntax tree, printed back (`ast.unparse`) without docstrings, so layout,
  comments and docstrings do not hide a copy;
- n-gram overlap: the share of the code's token n-grams (default 10) that occur in one benchmark item; at or
  above the threshold (default 0.5) the code is flagged.
Only static analysis: nothing is executed.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+|\S")


@dataclass(frozen=True)
class Match:
    benchmark: str
    item: str
    kind: str  # "exact" or "ngram"
    overlap: float

    def describe(self) -> str:
        return f"overlaps {self.benchmark} item {self.item} ({self.kind}, {self.overlap:.0%} of its n-grams)"


def normalise(code: str) -> str:
    """The code as its syntax tree prints it, docstrings dropped; whitespace-collapsed text if it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return " ".join(code.split())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.unparse(tree)


def ngrams(code: str, n: int) -> set[tuple[str, ...]]:
    tokens = _TOKEN.findall(normalise(code))
    return {tuple(tokens[i:i + n]) for i in range(max(len(tokens) - n + 1, 1))}


class BenchmarkIndex:
    """The code of benchmark items, indexed for both tests."""

    def __init__(self, items: dict[str, dict[str, str]], n: int = 10, threshold: float = 0.5) -> None:
        self.n = n
        self.threshold = threshold
        self.exact: dict[str, tuple[str, str]] = {}
        self.grams: dict[tuple[str, ...], set[tuple[str, str]]] = defaultdict(set)
        for benchmark, codes in items.items():
            for item, code in codes.items():
                self.exact.setdefault(normalise(code), (benchmark, item))
                for gram in ngrams(code, n):
                    self.grams[gram].add((benchmark, item))

    def match(self, code: str) -> Match | None:
        hit = self.exact.get(normalise(code))
        if hit:
            return Match(*hit, "exact", 1.0)
        grams = ngrams(code, self.n)
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for gram in grams:
            for owner in self.grams.get(gram, ()):
                counts[owner] += 1
        if not counts:
            return None
        owner, shared = max(counts.items(), key=lambda pair: pair[1])
        overlap = shared / len(grams)
        return Match(*owner, "ngram", overlap) if overlap >= self.threshold else None


def benchmark_codes(name: str, text: bytes) -> dict[str, str]:
    """Item id → code of a benchmark file's JSON lines: CRUXEval / generic (`code`), MBPP (`code`), HumanEval
    (prompt + canonical solution)."""
    try:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as err:
        raise ValueError(f"benchmark {name} is not JSON lines: {err}") from err
    codes = {}
    for number, row in enumerate(rows):
        item = str(row.get("id", row.get("task_id", number)))
        code = row.get("code") or (row.get("prompt", "") + row.get("canonical_solution", ""))
        if code:
            codes[item] = code
    if not codes:
        raise ValueError(f"benchmark {name} has no code fields")
    return codes


def parse_against(spec: str) -> dict[str, str]:
    """`cruxeval=PATH,humaneval=PATH` → {name: path}; a bare name looks for the file under $TRACECOT_BENCHMARKS."""
    known = {"cruxeval": "cruxeval/cruxeval.jsonl", "humaneval": "humaneval/HumanEval.jsonl.gz",
             "mbpp": "mbpp/mbpp.jsonl"}
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, path = part.partition("=")
        if not path:
            if name not in known:
                raise ValueError(f"unknown benchmark {name!r}: give it as {name}=PATH")
            path = str(Path(os.environ.get("TRACECOT_BENCHMARKS", "benchmarks")) / known[name])
        out[name] = path
    if not out:
        raise ValueError("--against names no benchmark")
    return out

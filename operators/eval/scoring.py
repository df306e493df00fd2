"""Benchmark scoring rules, as the official harnesses define them; every program runs in the sandbox.

Each check builds the program the official harness runs; `pipeline.evaluate` runs it in the sandbox (3 s).

CRUXEval (facebookresearch/cruxeval, evaluation/): a generation `g` passes when the program
`code + "\\nassert " + output + " == " + g` runs without an exception within 3 s.
- output prediction (O): `g` is the predicted output; a `g` containing the call `f(<input>)` fails.
- input prediction (I): `g` is a call `f(...)`; a `g` without "f(" is skipped (left out of n).
A sample none of whose generations passes counts all of them as failed (the harness's quirk).
LiveCodeBench execution: the same as CRUXEval-O after LCB's imports; the input is a whole call expression.
HumanEval: `prompt + completion + "\n" + test + "\ncheck(entry_point)"` runs without an exception.
pass@k is the unbiased estimator 1 - C(n-c, k) / C(n, k), averaged over samples, times 100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TIMEOUT_S = 3.0
BENCHES = ("cruxeval-o", "cruxeval-i", "lcb-exec", "humaneval")
# LiveCodeBench's checker runs every program after these imports (lcb_runner BASE_IMPORTS).
LCB_IMPORTS = ("from itertools import *\nfrom collections import *\nfrom heapq import *\nfrom bisect import *\n"
               "from math import *\nfrom functools import *\nfrom typing import *\nimport string\nimport re\n")


@dataclass(frozen=True)
class Check:
    """One generation to score: the program to run, or a verdict reached without running anything."""

    program: str | None
    verdict: bool | None = None  # set when no program runs: False = fails, None with no program = skipped


def cruxeval_check(bench: str, code: str, input_text: str, output_text: str, generation: str) -> Check:
    if bench == "cruxeval-o" and f"f({input_text})" in generation:
        return Check(None, verdict=False)
    if bench == "cruxeval-i" and "f(" not in generation:
        return Check(None)
    return Check(f"{code}\nassert {output_text} == {generation}")


def lcb_check(code: str, call: str, output_text: str, generation: str) -> Check:
    """LiveCodeBench execution: like CRUXEval-O, with the input a whole call (`f(nums = [1, 2])`)."""
    if call in generation:
        return Check(None, verdict=False)
    return Check(f"{LCB_IMPORTS}{code}\nassert {output_text} == {generation}")


def humaneval_check(prompt: str, completion: str, test: str, entry_point: str) -> Check:
    """HumanEval (human_eval/execution.py): the prompt, the completion, the tests, then `check(entry_point)`."""
    return Check(f"{prompt}{completion}\n{test}\ncheck({entry_point})")


def sample_results(verdicts: list[bool | None], n_generations: int) -> list[bool]:
    """A sample's scored list: skipped generations dropped, or all False when none passed."""
    scored = [v for v in verdicts if v is not None]
    return scored if True in scored else [False] * n_generations


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for n samples with c correct (Chen et al. 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(results: dict[str, list[bool]], k: int) -> float:
    """pass@k averaged over samples, in percent."""
    return 100.0 * sum(pass_at_k(len(r), sum(r), k) for r in results.values()) / len(results)

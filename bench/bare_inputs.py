"""How many bare functions get an input from static inference alone (`operators.synth.inputs`), on MBPP.

    python bench/bare_inputs.py [--data ../shared/data/mbpp/mbpp.jsonl] [--limit N] [--candidates 12] [--want 3]

Each MBPP row's inputs are thrown away: only its `code` (with `test_setup_code`, as the mbpp reader joins them)
and its entry point are used. The entry point is the function the first test calls, as the mbpp reader takes it
(`operators.ingest.formats`): the first call in the asserts of a name the code defines at top level. No model is
used. For every function: `propose` (type hints, defaults, usage, names), then `keep` in one sandbox (2 s CPU a
call, each call run twice under two hash seeds, a result kept only when both agree). Prints the share of
functions with at least one kept input, the mean kept, candidates run, rejects by reason, seconds, and where
the values of each function's first kept input came from (its weakest source: hint, default, usage, name,
fallback; none for functions without parameters). Functions are run one after another.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from collections import Counter
from pathlib import Path

from operators.ingest.formats import BadProblem, to_problem
from operators.sandbox.client import Limits, Sandbox
from operators.synth.inputs import keep, proposals

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/mbpp/mbpp.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=None, help="only the first N functions")
    parser.add_argument("--candidates", type=int, default=12, help="candidates proposed per function")
    parser.add_argument("--want", type=int, default=3, help="inputs to keep per function")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()][:args.limit]

    functions = with_input = kept = tried = hinted = unreadable = 0
    reasons: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    started = time.perf_counter()
    with Sandbox(Limits(timeout_s=2.0), require=()) as sandbox:
        for row in rows:
            try:
                problem = to_problem(row, "mbpp")
            except BadProblem:
                unreadable += 1
                continue
            functions += 1
            hinted += has_type_hints(problem.code)
            candidates = proposals(problem.code, problem.entry_point, args.candidates)
            found = keep(sandbox, problem.code, problem.entry_point, [c.args for c in candidates], args.want)
            tried += found.tried
            kept += len(found.inputs)
            reasons.update(found.reasons)
            if not candidates:
                reasons["no_candidates"] += 1
            if found.inputs:
                with_input += 1
                sources[next(c.source for c in candidates if c.args.strip() == found.inputs[0])] += 1
    seconds = time.perf_counter() - started

    print(f"functions: {functions} (unreadable rows skipped: {unreadable}); with type hints: {hinted}")
    print(f"with >= 1 deterministic input kept: {with_input} = {with_input / max(functions, 1):.1%}")
    print(f"inputs kept per function: {kept / max(functions, 1):.2f} (at most {args.want})")
    print(f"candidates run in the sandbox: {tried} ({tried / max(functions, 1):.1f} per function)")
    print("rejects by reason: " + ", ".join(f"{reason} {n}" for reason, n in reasons.most_common()))
    print("source of the first kept input: "
          + ", ".join(f"{source} {n / max(with_input, 1):.1%}" for source, n in sources.most_common()))
    print(f"seconds: {seconds:.1f} ({seconds / max(functions, 1):.2f} per function)")


def has_type_hints(code: str) -> bool:
    """Whether any function in the code annotates a parameter or its return."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return False
    return any(node.returns is not None or any(a.annotation is not None for a in ast.walk(node.args)
                                               if isinstance(a, ast.arg))
               for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef))


if __name__ == "__main__":
    main()

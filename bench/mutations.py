"""The verifier against planted errors, on CRUXEval: how many mutants it rejects, and what it costs.

    python bench/mutations.py [--data ../shared/data/cruxeval/cruxeval.jsonl] [--limit N]

For every problem: trace in the sandbox, narrate forward and backward with the template narrator, verify
(unmutated records must all pass), then plant each kind of error of `operators.cot.mutations` in both and verify
again.
Prints the rejection rate per kind, acceptance per direction, CoT length and coverage, and throughput.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

from operators.cot.mutations import ALL_KINDS, mutate
from operators.cot.narrate import TemplateNarrator
from operators.cot.verify import Verifier, check_backward_answer
from operators.sandbox.client import Sandbox
from operators.trace.events import TracedCall

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cruxeval" / "cruxeval.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()][: args.limit]
    narrator, verifier = TemplateNarrator(), Verifier()
    accepted: Counter[str] = Counter()
    planted: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    escaped: dict[str, str] = {}
    words, coverage = [], []
    narrate_verify_s = verify_cpu_s = 0.0
    with Sandbox() as sandbox:
        for row in rows:
            result = sandbox.run({"code": row["code"], "entry_point": "f", "input": row["input"]})
            if result["outcome"] != "ok" or not result.get("output_is_literal"):
                continue
            for direction in ("forward", "backward"):
                started = time.perf_counter()
                write = narrator.forward if direction == "forward" else narrator.backward
                call = TracedCall(row["code"], "f", row["input"], result["output"], result["trace"])
                cot = write(call, row["id"])
                cpu = time.process_time()
                report, parsed = verifier.check(direction, cot, call)
                verify_cpu_s += time.process_time() - cpu
                narrate_verify_s += time.perf_counter() - started
                if direction == "backward" and parsed is not None:
                    rerun = sandbox.run({"code": row["code"], "entry_point": "f", "input": parsed.input_text,
                                         "traced": False})
                    check_backward_answer(report, rerun, result["output"])
                accepted[direction] += report.passed
                words.append(len(cot.split()))
                coverage.append(report.coverage)
                if not report.passed:
                    continue
                for kind in ALL_KINDS:
                    mutant = mutate(cot, kind, pick=len(row["id"]))
                    if mutant is None or mutant == cot:
                        continue
                    planted[kind] += 1
                    # Mutants keep the answer's input, so the check alone decides (no sandbox rerun needed).
                    verdict, _ = verifier.check(direction, mutant, call)
                    caught[kind] += not verdict.passed
                    if verdict.passed:
                        escaped.setdefault(kind, row["id"])
    n = len(rows)
    print(f"{n} problems; accepted forward {accepted['forward']} ({accepted['forward'] / n:.1%}), "
          f"backward {accepted['backward']} ({accepted['backward'] / n:.1%})")
    total_planted, total_caught = sum(planted.values()), sum(caught.values())
    print(f"mutants rejected: {total_caught}/{total_planted} ({total_caught / max(total_planted, 1):.2%})")
    for kind in ALL_KINDS:
        first = f"  first escape: {escaped[kind]}" if kind in escaped else ""
        print(f"  {kind:24s} {caught[kind]:5d}/{planted[kind]:<5d} "
              f"({caught[kind] / max(planted[kind], 1):.1%}){first}")
    print(f"CoT length (whitespace tokens): median {statistics.median(words):.0f}, "
          f"p90 {statistics.quantiles(words, n=10)[-1]:.0f}")
    quartiles = statistics.quantiles(coverage, n=4)
    print(f"coverage: min {min(coverage):.2f}, quartiles {quartiles[0]:.2f} / {quartiles[1]:.2f} / "
          f"{quartiles[2]:.2f}")
    print(f"narration + verification (no sandbox): {len(words) / narrate_verify_s:.0f} CoTs/s on one core; "
          f"verification {1000 * verify_cpu_s / len(words):.2f} ms CPU per CoT")


if __name__ == "__main__":
    main()

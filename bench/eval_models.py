"""tracecot eval: scoring throughput on the official reference generations, and SmolLM2 on CRUXEval-O/I.

    python bench/eval_models.py [--problems 100] [--max-tokens 192]

1. Scores the official Code Llama 7B generations (800 samples × 5 generations, both tasks) in the sandbox and
   prints generations scored per second.
2. Runs SmolLM2-135M-Instruct (transformers, greedy) on the first --problems CRUXEval items for output and
   input prediction, in both prompt formats, and prints pass@1 (and faithful@1 for output prediction, which
   is asked with --cot).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from pipeline.cli import main as tracecot
from pipeline.evaluate import score

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cruxeval"
REFERENCE = DATA / "reference_scoring_codellama7b"


def scoring_throughput() -> None:
    for bench, mode in (("cruxeval-o", "output"), ("cruxeval-i", "input")):
        generations = REFERENCE / f"model_generations__sample_codellama-7b_temp0.2_{mode}__generations.json"
        report, items = score(bench, str(DATA / "cruxeval.jsonl"), str(generations))
        print(f"{bench}: scored {len(items)} generations in {report['seconds']:.1f} s = "
              f"{report['generations_per_s']:.0f} generations/s; pass@1 {report['pass@1']:.2f} "
              f"pass@5 {report['pass@5']:.2f}")


def smollm2(problems: int, max_tokens: int) -> None:
    for bench, style in (("cruxeval-o", "--cot"), ("cruxeval-i", "--direct")):
        for fmt in ("cruxeval", "chat"):
            with tempfile.TemporaryDirectory() as scratch:
                report_path = Path(scratch) / "report.json"
                started = time.perf_counter()
                code = tracecot(["eval", "--bench", bench, "--data", str(DATA / "cruxeval.jsonl"), "--model",
                                 "smollm2-135m", "--n", "1", "--temperature", "0", style, "--prompt-format", fmt,
                                 "--limit", str(problems), "--max-tokens", str(max_tokens),
                                 "--report", str(report_path)])
                assert code == 0
                report = json.loads(report_path.read_text())
            faithful = f", faithful@1 {report['faithful@1']:.1f}" if "faithful@1" in report else ""
            print(f"SmolLM2 {bench} {style[2:]} {fmt:8s}: pass@1 {report['pass@1']:.1f}{faithful} "
                  f"({problems} problems, {time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--skip-scoring", action="store_true")
    args = parser.parse_args()
    if not args.skip_scoring:
        scoring_throughput()
    smollm2(args.problems, args.max_tokens)


if __name__ == "__main__":
    main()

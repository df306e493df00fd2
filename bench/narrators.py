"""Model narrators on CRUXEval with SmolLM2: narrations and tokens per second, and acceptance per direction.

    python bench/narrators.py [--problems 100] [--backends transformers,openai] [--max-tokens 256]
    .venv-vllm/bin/python bench/narrators.py --backends vllm      # vLLM needs its own environment on CPU

Every backend narrates the same traced items (the first --problems CRUXEval calls, both directions) with the
same sampling (greedy, no retries), in one process, one engine; the openai backend talks to a local
OpenAI-compatible server wrapping the transformers model, so its figure is the HTTP path's cost on top of
transformers. The verify stage then decides acceptance, running backward answers in the sandbox.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from operators.ingest.index import LocalIndex
from operators.llm.backends import Sampling, TransformersBackend
from operators.llm.models import DEFAULT_MODEL
from operators.records import table
from operators.sandbox.client import Limits
from operators.stages.model_narrate import ModelNarrateStage
from operators.stages.verify import VerifyStage
from pipeline import config as cfg
from pipeline.stages import run_local, steps

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "cruxeval" / "cruxeval.jsonl"
sys.path.insert(0, str(ROOT / "tests"))


def traced_items(problems: int) -> list[dict]:
    """The first `problems` CRUXEval problems through the run's own ingest and execute stages."""
    ingest, execute, *_ = steps(cfg.load(None, {}), "bench", LocalIndex())
    lines = DATA.read_text().splitlines()[:problems]
    return [row for batch in run_local([ingest, execute], lines) for row in batch.to_pylist() if not row.get("reason")]


def narrate(backend: str, items: list[dict], sampling: Sampling, batch: int, url: str | None) -> tuple[float, list]:
    options = {"openai": {"base_url": url, "concurrency": batch},
               "transformers": {"batch_size": batch},
               "vllm": {"max_model_len": 4096, "gpu_memory_utilization": 0.3}}[backend]
    stage = ModelNarrateStage(backend, DEFAULT_MODEL, sampling, options, retries=0)
    if stage.broken:
        raise SystemExit(stage.broken)
    started = time.perf_counter()
    rows = []
    for start in range(0, len(items), batch):
        rows += stage(table(items[start:start + batch])).to_pylist()
    return time.perf_counter() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--backends", default="transformers,openai")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    sampling = Sampling(max_tokens=args.max_tokens, temperature=0.0)
    items = traced_items(args.problems)
    verify = VerifyStage(limits=Limits())
    print(f"{len(items)} traced CRUXEval calls ({args.problems} problems), both directions, "
          f"greedy, max {args.max_tokens} new tokens, batches of {args.batch}")
    server = None
    for backend in args.backends.split(","):
        url = None
        if backend == "openai":
            from openai_server import OpenAIServer

            server = OpenAIServer(TransformersBackend(None, sampling, batch_size=args.batch))
            url = server.url
        seconds, rows = narrate(backend, items, sampling, args.batch, url)
        verdicts = verify(table(rows)).to_pylist()
        narrated, accepted = Counter(r["direction"] for r in verdicts), Counter(
            r["direction"] for r in verdicts if not r.get("reason"))
        errors = sum(r.get("reason") == "narrator_error" for r in verdicts)
        tokens_out = sum(r.get("tokens_out") or 0 for r in rows)
        print(f"{backend:12s} {len(rows) / seconds:6.2f} narrations/s  {tokens_out / seconds:7.1f} output tokens/s  "
              f"({len(rows)} narrations, {tokens_out} tokens, {seconds:.0f} s, {errors} engine errors)")
        for direction in ("forward", "backward"):
            print(f"{'':12s} {direction:8s} accepted {accepted[direction]}/{narrated[direction]}")
        if server is not None:
            server.close()
            server = None


if __name__ == "__main__":
    main()

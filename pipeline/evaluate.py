"""`tracecot eval`: score a model's generations on a benchmark, every program run in the sandbox."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from operators.sandbox import Limits, Sandbox
from operators.scoring import TIMEOUT_S, cruxeval_check, mean_pass_at_k, sample_results
from pipeline.sources import InputError


def load_generations(path: str) -> dict[str, list[str]]:
    """CRUXEval's generation files: a JSON object mapping sample id to a list of generation strings."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        raise InputError(f"cannot read generations {path}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise InputError(f"generations {path} are not JSON: {err.msg} (line {err.lineno})") from err
    if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(g, str) for g in v) for v in data.values()):
        raise InputError(f"generations {path} must map each sample id to a list of strings")
    return data


def load_cruxeval(path: str) -> dict[str, dict[str, str]]:
    try:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as err:
        raise InputError(f"cannot read benchmark data {path}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise InputError(f"benchmark data {path} is not JSON lines: {err.msg}") from err
    if not rows or not all({"id", "code", "input", "output"} <= set(row) for row in rows):
        raise InputError(f"{path} is not CRUXEval data (each row needs id, code, input, output)")
    return {row["id"]: row for row in rows}


def score(bench: str, data_path: str, generations_path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score every generation; returns the report and one row per generation."""
    data = load_cruxeval(data_path)
    generations = load_generations(generations_path)
    unknown = sorted(set(generations) - set(data))
    if unknown:
        raise InputError(f"generations name samples the data does not have, e.g. {unknown[0]!r}")
    started = time.perf_counter()
    results: dict[str, list[bool]] = {}
    items: list[dict[str, Any]] = []
    with Sandbox(Limits(timeout_s=TIMEOUT_S, runs=1)) as sandbox:
        for sample_id, gens in generations.items():
            row = data[sample_id]
            verdicts = []
            for index, generation in enumerate(gens):
                check = cruxeval_check(bench, row["code"], row["input"], row["output"], generation)
                verdict = check.verdict
                if check.program is not None:
                    outcome = sandbox.run({"kind": "program", "code": check.program})["outcome"]
                    verdict = outcome == "ok"
                verdicts.append(verdict)
                items.append({"sample_id": sample_id, "index": index, "generation": generation,
                              "passed": verdict, "skipped": verdict is None})
            results[sample_id] = sample_results(verdicts, len(gens))
    seconds = time.perf_counter() - started
    report = {
        "bench": bench, "data": data_path, "generations": generations_path,
        "pass@1": round(mean_pass_at_k(results, 1), 4), "pass@5": round(mean_pass_at_k(results, 5), 4),
        "samples": len(results), "generations_scored": sum(1 for item in items if not item["skipped"]),
        "generations_skipped": sum(1 for item in items if item["skipped"]),
        "seconds": round(seconds, 2), "generations_per_s": round(len(items) / seconds, 1),
        "settings": {"timeout_s": TIMEOUT_S, "sandbox": "tracecot fork server, 1 run per program"},
        "per_sample": results,
    }
    return report, items


def write_items(items: list[dict[str, Any]], path: str) -> None:
    pq.write_table(pa.Table.from_pylist(items), path)

"""`tracecot eval`: score a model on an execution benchmark — its existing generations, or generated here with
a model backend — with every program run in the sandbox, and (for CoT output prediction) its faithfulness."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from operators.eval.prompts import (
    benchmark_prompt,
    extract_code,
    extract_prediction,
    fill_template,
    humaneval_prompt,
)
from operators.eval.scoring import (
    TIMEOUT_S,
    Check,
    cruxeval_check,
    humaneval_check,
    lcb_check,
    mean_pass_at_k,
    sample_results,
)
from operators.llm.backends import Sampling, make_backend
from operators.sandbox.client import Limits, Sandbox
from pipeline.config import load as load_config
from pipeline.sources import InputError
from pipeline.stages import run_local, steps
from pipeline.storage import locate

_FIELDS = {"cruxeval-o": ("id", "code", "input", "output"), "cruxeval-i": ("id", "code", "input", "output"),
           "lcb-exec": ("id", "code", "input", "output"), "humaneval": ("task_id", "prompt", "test", "entry_point")}
_CHUNK = 64  # programs per request to a sandbox


def load_generations(path: str) -> dict[str, list[str]]:
    """CRUXEval's generation files: a JSON object mapping sample id to a list of generation strings."""
    try:
        data = json.loads(locate(path).read_bytes())
    except OSError as err:
        raise InputError(f"cannot read generations {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise InputError(f"generations {path} are not UTF-8 text: {err.reason}") from err
    except json.JSONDecodeError as err:
        raise InputError(f"generations {path} are not JSON: {err.msg} (line {err.lineno})") from err
    if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(g, str) for g in v) for v in data.values()):
        raise InputError(f"generations {path} must map each sample id to a list of strings")
    return data


def load_benchmark(bench: str, path: str) -> dict[str, dict[str, Any]]:
    """The benchmark's items by id, from JSON lines (`.gz` too) or Parquet (LiveCodeBench's own file)."""
    try:
        location = locate(path)
        if path.endswith(".parquet"):
            rows = location.read_parquet().to_pylist()
        else:
            rows = [json.loads(line) for line in location.read_bytes().splitlines() if line.strip()]
    except OSError as err:
        raise InputError(f"cannot read benchmark data {path}: {getattr(err, 'strerror', None) or err}") from err
    except (json.JSONDecodeError, UnicodeDecodeError, pa.ArrowInvalid) as err:
        raise InputError(f"benchmark data {path} is not JSON lines or Parquet: {err}") from err
    fields = _FIELDS[bench]
    if bench == "lcb-exec":
        rows = [{**row, "id": str(row.get("id", row.get("question_id")))} for row in rows]
    if not rows or not all(set(fields) <= set(row) for row in rows):
        raise InputError(f"{path} is not {bench} data (each row needs {', '.join(fields)})")
    return {str(row[fields[0]]): row for row in rows}


def check(bench: str, item: dict[str, Any], generation: str) -> Check:
    if bench == "humaneval":
        return humaneval_check(item["prompt"], generation, item["test"], item["entry_point"])
    if bench == "lcb-exec":
        return lcb_check(item["code"], item["input"], item["output"], generation)
    return cruxeval_check(bench, item["code"], item["input"], item["output"], generation)


def score(bench: str, data_path: str, generations_path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score a generations file; returns the report and one row per generation."""
    data = load_benchmark(bench, data_path)
    report, items = score_generations(bench, data, load_generations(generations_path))
    report.update(data=data_path, generations=generations_path)
    return report, items


def score_generations(bench: str, data: dict[str, dict[str, Any]],
                      generations: dict[str, list[str]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    unknown = sorted(set(generations) - set(data))
    if unknown:
        raise InputError(f"generations name samples the data does not have, e.g. {unknown[0]!r}")
    started = time.perf_counter()
    jobs = [(sample_id, index, generation) for sample_id, gens in generations.items()
            for index, generation in enumerate(gens)]
    verdicts = _run_all([check(bench, data[sample_id], generation) for sample_id, _, generation in jobs])
    items = [{"sample_id": sample_id, "index": index, "generation": generation, "passed": verdict,
              "skipped": verdict is None} for (sample_id, index, generation), verdict in zip(jobs, verdicts,
                                                                                               strict=True)]
    by_sample: dict[str, list[bool | None]] = {sample_id: [] for sample_id in generations}
    for item in items:
        by_sample[item["sample_id"]].append(item["passed"])
    # CRUXEval's harness counts a sample none of whose generations passed as all failed.
    results = {sample_id: sample_results(v, len(v)) if bench.startswith("cruxeval") else [x is True for x in v]
               for sample_id, v in by_sample.items()}
    seconds = time.perf_counter() - started
    report = {
        "bench": bench,
        "pass@1": round(mean_pass_at_k(results, 1), 4),
        # With fewer than 5 generations per item the estimator says 100% for any answers: no figure at all.
        "pass@5": round(mean_pass_at_k(results, 5), 4) if max(map(len, generations.values()), default=0) >= 5
        else None,
        "samples": len(results), "generations_scored": sum(1 for item in items if not item["skipped"]),
        "generations_skipped": sum(1 for item in items if item["skipped"]),
        "seconds": round(seconds, 2), "generations_per_s": round(len(items) / max(seconds, 1e-9), 1),
        "settings": {"timeout_s": TIMEOUT_S,
                     "sandbox": "tracecot fork servers (one per CPU), 1 run per program, a child per program"},
        "per_sample": results,
    }
    return report, items


def _run_all(checks: list[Check]) -> list[bool | None]:
    """Each check's verdict. Programs go to one sandbox per CPU, side by side, in chunks; each program runs in
    a sandbox child of its own."""
    verdicts = [check.verdict for check in checks]
    programs = [i for i, check in enumerate(checks) if check.program is not None]
    chunks = [programs[k:k + _CHUNK] for k in range(0, len(programs), _CHUNK)]
    local = threading.local()
    boxes: list[Sandbox] = []

    def run(chunk: list[int]) -> list[bool]:
        if not hasattr(local, "box"):
            local.box = Sandbox(Limits(timeout_s=TIMEOUT_S, runs=1))
            boxes.append(local.box)
        results = local.box.run_many([{"kind": "program", "code": checks[i].program} for i in chunk])
        return [result["outcome"] == "ok" for result in results]

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            for chunk, passed in zip(chunks, pool.map(run, chunks), strict=True):
                for i, ok in zip(chunk, passed, strict=True):
                    verdicts[i] = ok
    finally:
        for box in boxes:
            box.close()
    return verdicts


def generate(bench: str, data: dict[str, dict[str, Any]], backend: str, model: str | None, n: int,
             sampling: Sampling, cot: bool, fmt: str, options: dict[str, Any],
             template: str | None = None) -> dict[str, list[str]]:
    """Ask the model `n` times per item; returns its raw answers by sample id."""
    engine = make_backend(backend, model, sampling, options)
    ids = list(data)
    prompts = [_prompt(bench, data[i], cot, fmt, template) for i in ids]
    completions = engine.generate([[{"role": "user", "content": p}] for p in prompts for _ in range(n)])
    return {i: [c.text if c.error is None else "" for c in completions[k * n:(k + 1) * n]]
            for k, i in enumerate(ids)}


def _prompt(bench: str, item: dict[str, Any], cot: bool, fmt: str, template: str | None) -> str:
    if bench == "humaneval":
        return humaneval_prompt(item["prompt"])
    if template is not None:
        return fill_template(template, item["code"], item["input"], item["output"])
    entry = item.get("function_name", "f")
    return benchmark_prompt(bench, item["code"], item["input"], item["output"], cot, fmt, entry)


def predictions(bench: str, answers: dict[str, list[str]]) -> dict[str, list[str]]:
    """What each raw answer predicts, read the way the benchmark's harness reads it."""
    if bench == "humaneval":
        return {i: [extract_code(a) for a in texts] for i, texts in answers.items()}
    return {i: [extract_prediction(bench, a) for a in texts] for i, texts in answers.items()}


def faithfulness(data: dict[str, dict[str, Any]], answers: dict[str, list[str]],
                 results: dict[str, list[bool]]) -> dict[str, Any]:
    """faithful@1 for output prediction with CoT: the first answer is correct and the verifier accepts its
    reasoning — every sentence checked against the real trace or content-free, as for tracecot's own records
    (only the minimum coverage and claim count are waived). The first answers run through `tracecot verify`'s
    own stages (traced in the sandbox), in this process. `uncontradicted@1` is the weaker figure: correct, and
    no claim found false (unverifiable sentences allowed)."""
    correct = [i for i, texts in answers.items() if texts and results[i] and results[i][0]]
    lines = [json.dumps({"id": i, "code": data[i]["code"], "entry_point": "f", "input": data[i]["input"],
                         "output": data[i]["output"], "cot": answers[i][0], "direction": "forward"}) for i in correct]
    config = load_config(None, {"sandbox.timeout_s": TIMEOUT_S, "verifier.min_coverage": 0.0,
                                "verifier.min_claims": 0})
    reports = [row["verification"] for batch in run_local(steps(config, "eval", frozenset(), "verify"), lines)
               for row in batch.to_pylist() if row.get("verification")]
    faithful = sum(bool(report["passed"]) for report in reports)
    uncontradicted = sum(report["n_contradicted"] == 0 for report in reports)
    total = len(answers)
    return {"faithful@1": round(100.0 * faithful / total, 4) if total else 0.0,
            "uncontradicted@1": round(100.0 * uncontradicted / total, 4) if total else 0.0,
            "correct_but_unfaithful_share": round((len(correct) - faithful) / len(correct), 4) if correct else 0.0,
            "unverified_share": round(sum(r["unverified_share"] for r in reports) / len(reports), 4)
            if reports else 0.0,
            "claims_checked": sum(report["n_claims"] for report in reports)}


def write_items(items: list[dict[str, Any]], path: str) -> None:
    locate(path).write_parquet(pa.Table.from_pylist(items))

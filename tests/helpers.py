"""Helpers for pipeline tests: run a config in-process and read what it wrote."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads

from operators.records import RECORD_SCHEMA, REJECT_SCHEMA
from pipeline import config as cfg
from pipeline.progress import Progress
from pipeline.run import run


def run_job(**overrides: Any) -> dict[str, Any]:
    config = cfg.load(None, overrides)
    return run(config, Progress(io.StringIO()))


def run_verify(**overrides: Any) -> dict[str, Any]:
    config = cfg.load(None, overrides)
    return run(config, Progress(io.StringIO()), mode="verify")


def read(output: Path | str, folder: str) -> pa.Table:
    schema = RECORD_SCHEMA if folder == "records" else REJECT_SCHEMA
    path = Path(output) / folder
    if not path.exists():
        return schema.empty_table()
    return pads.dataset(path, format="parquet", schema=schema).to_table()


def funnel_adds_up(report: dict[str, Any]) -> None:
    funnel = report["funnel"]
    assert funnel["items"] == funnel["written_records"] + funnel["written_rejected"] + funnel["skipped_existing"]
    stages = funnel["stages"]
    for stage in stages.values():
        assert stage["in"] == stage["out"] + stage["rejected"]
    assert stages["verify"]["out"] == funnel["written_records"]
    assert sum(funnel["rejects_by_reason"].values()) == funnel["written_rejected"]


def model_outcomes(output: Path | str) -> tuple[list[dict], list[dict], list[dict]]:
    """Records, final rejects, and retried attempts (rejected by the narrate stage and asked again)."""
    records = read(output, "records").to_pylist()
    rejected = read(output, "rejected").to_pylist()
    retried = [r for r in rejected if r["stage"] == "narrate" and r["reason"] != "narrator_error"]
    final = [r for r in rejected if not (r["stage"] == "narrate" and r["reason"] != "narrator_error")]
    return records, final, retried


def check_model_run(report: dict[str, Any], output: Path, narrator: str, items: int) -> None:
    """A model narrator run with one retry: every item ends once, every attempt is kept and reported."""
    funnel_adds_up(report)
    records, final, retried = model_outcomes(output)
    assert len(records) + len(final) == report["funnel"]["items"] == items
    assert len(retried) == report["funnel"]["retried_attempts"] >= 1
    assert all(r["attempt"] == 0 for r in retried) and all(r["attempt"] in (0, 1) for r in records + final)
    assert all(r["narrator"] == narrator for r in records + final + retried)
    assert all(r["cot"] and r["verification"] is not None for r in final + retried)
    assert all(r["verification"]["passed"] for r in records)
    narration = report["narration"]
    assert narration["tokens_out"] > 0 and narration["tokens_in"] > narration["tokens_out"]
    assert set(narration["acceptance"]) == {f"{narrator}:forward", f"{narrator}:backward"}

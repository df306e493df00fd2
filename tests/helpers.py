"""Helpers for pipeline tests: run a config in-process and read what it wrote."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads

from operators.records import RECORD_SCHEMA, REJECT_SCHEMA
from pipeline import config as cfg
from pipeline.graph import run
from pipeline.report import Progress


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

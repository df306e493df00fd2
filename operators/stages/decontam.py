"""Decontamination stage (after ingest): problems whose code overlaps a benchmark item never become records."""

from __future__ import annotations

from typing import Any

from operators.ingest.decontam import BenchmarkIndex
from operators.records import reject
from operators.stages.base import LIGHT, Placement, RowStage


class DecontamStage(RowStage):
    """Ray Data stage (after ingest): problems whose code overlaps a benchmark item are rejected
    (`contaminated`), so they never become training records. A pool: each actor builds its own index of the
    benchmarks (small: thousands of items)."""

    name = "ingest"  # counted as part of ingest: a contaminated problem never enters the dataset
    placement = Placement(cpus=LIGHT)

    def __init__(self, benchmarks: dict[str, dict[str, str]], n: int = 10, threshold: float = 0.5) -> None:
        """`benchmarks`: name → item id → code (read by the driver, so no node needs the files)."""
        self.index = BenchmarkIndex(benchmarks, n, threshold)

    def process(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        match = self.index.match(row["code"])
        return [reject(row, "ingest", "contaminated", match.describe())] if match else [row]

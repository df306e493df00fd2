"""Decontamination stage (after ingest): problems whose code overlaps a benchmark item never become records."""

from __future__ import annotations

from typing import Any

from operators.ingest.decontam import BenchmarkIndex, benchmark_codes
from operators.records import reject
from operators.stages.base import Placement, RowStage


class DecontamStage(RowStage):
    """Ray Data stage (after ingest): problems whose code overlaps a benchmark item are rejected
    (`contaminated`), so they never become training records."""

    name = "ingest"  # counted as part of ingest: a contaminated problem never enters the dataset
    placement = Placement(single_actor=True)  # one benchmark index in memory

    def __init__(self, against: dict[str, str], n: int = 10, threshold: float = 0.5) -> None:
        self.index = BenchmarkIndex({name: benchmark_codes(name, path) for name, path in against.items()}, n,
                                    threshold)

    def process(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        match = self.index.match(row["code"])
        return [reject(row, "ingest", "contaminated", match.describe())] if match else [row]

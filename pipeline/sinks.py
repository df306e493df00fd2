"""The Parquet sink: accepted rows to `records/`, rejected rows to `rejected/`, one tally row per batch out.

Writes are idempotent: a row already written in this run is not written again (an upstream task retried
after a crash may resend it), and a file is named after the hash of the record ids it holds, so a retried
sink batch rewrites the same file instead of adding a copy; on local disks a file appears under its final name only
once complete (written to a hidden temporary name, then renamed), so an interrupted run leaves no torn file.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from operators.records import RECORD_SCHEMA, REJECT_SCHEMA, content_hash, table
from pipeline.config import StorageConfig
from pipeline.storage import Location, locate

TIMINGS = ("t_ingest", "t_execute", "t_narrate", "t_verify")
TOKENS = ("tokens_in", "tokens_out")
TALLY_SCHEMA = pa.schema([("tally", pa.string())])


class ParquetSink:
    """Ray Data stage: writes one batch of finished work rows and returns what it counted."""

    def __init__(self, output: str, storage: StorageConfig, run_id: str) -> None:
        self.location: Location = locate(output, storage)
        self.run_id = run_id
        self.seen: set[str] = set()  # rows written by this run: a retried upstream task may send them again
        for part in ("records", "rejected"):
            self.location.fs.create_dir(self.location.join(part), recursive=True)

    def __call__(self, batch: pa.Table) -> pa.Table:
        tally, accepted, rejected = count(self._first_time(batch.to_pylist()))
        self._write("records", table([{**row, "run_id": self.run_id} for row in accepted], RECORD_SCHEMA))
        self._write("rejected", table([{**row, "run_id": self.run_id} for row in rejected], REJECT_SCHEMA))
        return pa.table({"tally": [json.dumps(tally)]}, schema=TALLY_SCHEMA)

    def _first_time(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop rows already written (and counted) in this run: a task retried after a crash resends them."""
        fresh = []
        for row in rows:
            key = row.get("record_id") or ",".join(row.get("record_ids") or [])
            if key and key in self.seen:
                continue
            self.seen.add(key)
            fresh.append(row)
        return fresh

    def _write(self, folder: str, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        name = f"part-{content_hash(sorted(rows.column('record_id').to_pylist()))}.parquet"
        final = self.location.join(folder, name)
        if not self.location.is_local:
            pq.write_table(rows, final, filesystem=self.location.fs)  # an S3 PUT is atomic
            return
        temporary = self.location.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        pq.write_table(rows, temporary, filesystem=self.location.fs)
        self.location.fs.move(temporary, final)


def count(rows: list[dict[str, Any]]) -> tuple[Counter[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """Tally finished work rows (read, skipped, rejected by stage and reason, accepted, busy time)."""
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    tally: Counter[str] = Counter()
    for row in rows:
        tally["rows_read"] += row.get("rows_read") or 0
        for entry in filter(None, (row.get("placement") or "").split(";")):
            tally[f"placement:{entry}"] += 1
        for key in TIMINGS + TOKENS:
            tally[key] += row.get(key) or 0
        if row.get("retried"):
            tally["retried_attempts"] += 1
            rejected.append(row)
            continue
        if row.get("narrator") and row.get("direction"):
            tally[f"narrated:{row['narrator']}:{row['direction']}"] += 1
        for unit in _units(row):
            if unit.get("skipped"):
                tally["skipped"] += 1
            elif unit.get("reason"):
                tally[f"rejected:{unit['stage']}:{unit['reason']}"] += 1
                rejected.append(unit)
            else:
                tally["accepted"] += 1
                if unit.get("narrator"):
                    tally[f"accepted:{unit['narrator']}:{unit['direction']}"] += 1
                accepted.append(unit)
    return tally, accepted, rejected


def _units(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (call, direction): a call rejected before narration stands for each of its directions."""
    if row.get("direction") or not row.get("record_ids"):
        return [row]
    return [{**row, "direction": direction, "record_id": rid}
            for direction, rid in zip(row["directions"], row["record_ids"], strict=True)]

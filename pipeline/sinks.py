"""The Parquet sink: accepted rows to `records/`, rejected rows to `rejected/`, one tally row per batch out.

Writes are idempotent: a row already written in this run is not written again (an upstream task retried
after a crash may resend it), and a file is named after the hash of the record ids it holds, so a retried
sink batch rewrites the same file instead of adding a copy; on local disks a file appears under its final name only
once complete (written to a hidden temporary name, then renamed), so an interrupted run leaves no torn file.
"""

from __future__ import annotations

import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from operators.ids import content_hash
from operators.records import RECORD_SCHEMA, REJECT_SCHEMA, table
from operators.stages.base import Placement
from pipeline.config import StorageConfig
from pipeline.storage import Location, locate
from pipeline.tally import count

TALLY_SCHEMA = pa.schema([("tally", pa.string())])


class ParquetSink:
    """The last stage: writes one batch of finished work rows and returns what it counted (a `Tally`).

    A single actor: it remembers the rows this run wrote."""

    placement = Placement(single_actor=True)

    def __init__(self, output: str, storage: StorageConfig, run_id: str, kept: str = "records",
                 schemas: tuple[pa.Schema, pa.Schema] = (RECORD_SCHEMA, REJECT_SCHEMA)) -> None:
        self.location: Location = locate(output, storage)
        self.run_id = run_id
        self.kept = kept  # the folder accepted rows go to (`problems` for synthesis); rejected rows go to rejected/
        self.schemas = schemas  # of accepted and of rejected rows
        self.seen: set[str] = set()  # rows written by this run: a retried upstream task may send them again
        for part in (kept, "rejected"):
            self.location.fs.create_dir(self.location.join(part), recursive=True)

    def __call__(self, batch: pa.Table) -> pa.Table:
        tally, accepted, rejected = count(self._first_time(batch.to_pylist()))
        kept_schema, rejected_schema = self.schemas
        self._write(self.kept, table([{**row, "run_id": self.run_id} for row in accepted], kept_schema))
        self._write("rejected", table([{**row, "run_id": self.run_id} for row in rejected], rejected_schema))
        return pa.table({"tally": [tally.to_json()]}, schema=TALLY_SCHEMA)

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

"""The Parquet sink: accepted rows to `records/`, rejected rows to `rejected/`, one tally row per file out.

On Ray the sink runs as tasks, not actors: it keeps nothing between files, so each file is written by whichever
worker is free, anywhere in the cluster, up to `sink.actors` at once. Which rows make a file (`sink.rows_per_file`
of them, or fewer once they have waited `sink.flush_s`) the driver decides, by reference (`pipeline.filing`).

Writes are idempotent: a row already written in this run is not written again (an upstream task retried after
a crash may resend it, in another file, to another writer): each file claims its rows in the run index
(`operators.ingest.index`) and writes those no other file claimed first. A retried sink task claims the same
rows again, and a file is named after the hash of the record ids it holds, so it rewrites the same file instead
of adding a copy. On local disks a file appears under its final name only once complete (written to a hidden
temporary name, then renamed), so an interrupted run leaves no torn file.
"""

from __future__ import annotations

import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from operators.ids import content_hash
from operators.ingest.index import LocalIndex, RunIndex, token_of
from operators.records import RECORD_SCHEMA, REJECT_SCHEMA, table
from operators.stages.base import LIGHT, Placement, step_name, worker
from pipeline.config import StorageConfig
from pipeline.storage import Location, locate
from pipeline.tally import count

TALLY_SCHEMA = pa.schema([("tally", pa.string())])


class ParquetSink:
    """The last stage: writes one file's worth of finished work rows and returns what it counted (a `Tally`).

    `index` remembers the rows written in this run across the writers (a `pipeline.state.ShardedIndex`); the
    default, a `LocalIndex`, remembers them in this object only, which is right for one writer in one process."""

    placement = Placement(cpus=LIGHT, tasks=True)

    def __init__(self, output: str, storage: StorageConfig, run_id: str, kept: str = "records",
                 schemas: tuple[pa.Schema, pa.Schema] = (RECORD_SCHEMA, REJECT_SCHEMA),
                 index: RunIndex | None = None) -> None:
        self.location: Location = locate(output, storage)
        self.run_id = run_id
        self.kept = kept  # the folder accepted rows go to (`problems` for synthesis); rejected rows go to rejected/
        self.schemas = schemas  # of accepted and of rejected rows
        self.index = index or LocalIndex()
        self.actor = worker()[1]
        for part in (kept, "rejected"):
            self.location.fs.create_dir(self.location.join(part), recursive=True)

    def __call__(self, batch: pa.Table) -> pa.Table:
        fresh = self._first_time(batch.to_pylist())
        tally, accepted, rejected = count(fresh)
        tally.actors[step_name(self), self.actor] += len(fresh)
        kept_schema, rejected_schema = self.schemas
        self._write(self.kept, table([{**row, "run_id": self.run_id} for row in accepted], kept_schema))
        self._write("rejected", table([{**row, "run_id": self.run_id} for row in rejected], rejected_schema))
        return pa.table({"tally": [tally.to_json()]}, schema=TALLY_SCHEMA)

    def _first_time(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop rows another batch of this run claimed first: a task retried after a crash resends them."""
        keyed = {}  # row key → row, the first of a key in this batch
        unkeyed = []
        for row in rows:
            key = row.get("record_id") or (row.get("record_ids") or [None])[0]
            if key is None:
                unkeyed.append(row)
            else:
                keyed.setdefault(key, row)
        ids = sorted(keyed)
        fresh = self.index.claim(ids, token_of(*ids))
        return [*unkeyed, *(keyed[key] for key, ok in zip(ids, fresh, strict=True) if ok)]

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

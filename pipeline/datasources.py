"""The input as a Ray Dataset: the rows `pipeline.sources.iter_lines` reads, in Ray Data read tasks."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import ray.data
from ray.data.datasource import FileBasedDatasource

from pipeline.sources import JSONL_SUFFIXES, PARQUET_SUFFIXES, as_text, input_files, lines_of, rows_at
from pipeline.storage import Location

# Reading is light; a full CPU per read task would starve the actor pools on small machines.
READ_CPUS = 0.25


def read_problems(location: Location) -> ray.data.Dataset:
    """Every input row as `{"text": <one JSON object>, "at": <file>:<row>}`, whatever the file type. `at` names
    the row's place, so that ingest asks the run index the same question when a batch is retried."""
    files = input_files(location)
    jsonl = [f for f in files if f.endswith(JSONL_SUFFIXES)]
    parquet = [f for f in files if f.endswith(PARQUET_SUFFIXES)]
    parts = [ray.data.read_datasource(kind(names, filesystem=location.fs), num_cpus=READ_CPUS)
             for kind, names in ((JsonLines, jsonl), (ParquetRows, parquet)) if names]
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


class JsonLines(FileBasedDatasource):
    """JSON-lines files as rows `{"text": <line>}`, like `ray.data.read_text`, but a line that is not UTF-8
    does not fail its whole file: it is marked and rejected alone at ingest."""

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        yield rows_at(lines_of(f.readall()), path, 0)


class ParquetRows(FileBasedDatasource):
    """Parquet files as rows `{"text": <the row as one JSON object>}`, the same rows as `JsonLines` gives.

    A datasource of its own rather than `read_parquet` followed by a map: that extra task stage, between the
    read and the actor pools, left a whole run waiting forever on a 2-CPU machine."""

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        first = 0
        for batch in pq.ParquetFile(pa.BufferReader(f.readall())).iter_batches():  # Parquet needs to seek
            yield rows_at([as_text(row) for row in batch.to_pylist()], path, first)
            first += batch.num_rows

"""Readers: problem files (JSONL, JSONL.gz, Parquet; a file or a folder of them) as a Ray Dataset of lines."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray.data
from ray.data.datasource import FileBasedDatasource

from operators.ingest.formats import decode_line
from pipeline.storage import Location

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
# Reading is light; a full CPU per read task would starve the actor pools on small machines.
READ_CPUS = 0.25
# How much input the driver reads to know a run's size (the total of its progress lines); a larger input runs
# without one.
COUNT_JSONL_BYTES = 64 * 2**20
COUNT_PARQUET_FILES = 64


class InputError(ValueError):
    """The input cannot be read at all (as opposed to bad rows, which are rejected one by one)."""


def input_files(location: Location) -> list[str]:
    try:
        info = location.fs.get_file_info(location.path)
    except OSError as err:
        raise InputError(f"cannot read input {location.uri}: {err}") from err
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"input not found: {location.uri}")
    if info.type == pafs.FileType.File:
        files = [info.path]
    else:
        selector = pafs.FileSelector(location.path, recursive=True)
        files = sorted(i.path for i in location.fs.get_file_info(selector) if i.type == pafs.FileType.File
                       and i.path.endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES))
        if not files:
            raise InputError(f"no .jsonl, .jsonl.gz or .parquet files in {location.uri}")
    unknown = [f for f in files if not f.endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES)]
    if unknown:
        raise InputError(f"cannot read {unknown[0]}: expected .jsonl, .jsonl.gz or .parquet")
    return files


def input_bytes(location: Location) -> int:
    """The size of the input files, in bytes (compressed files: as stored)."""
    return sum(info.size or 0 for info in location.fs.get_file_info(input_files(location)))


def read_problems(location: Location) -> ray.data.Dataset:
    """Every input row as `{"text": <one JSON object>, "at": <file>:<row>}`, whatever the file type. `at` names
    the row's place, so that ingest asks the run index the same question when a batch is retried."""
    files = input_files(location)
    jsonl = [f for f in files if f.endswith(JSONL_SUFFIXES)]
    parquet = [f for f in files if f.endswith(PARQUET_SUFFIXES)]
    parts = [ray.data.read_datasource(kind(names, filesystem=location.fs), num_cpus=READ_CPUS)
             for kind, names in ((JsonLines, jsonl), (ParquetRows, parquet)) if names]
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def iter_lines(location: Location) -> Iterator[str]:
    """The same rows as `read_problems`, read in this process (for the driver's quick up-to-date check)."""
    for path in input_files(location):
        if path.endswith(PARQUET_SUFFIXES):
            for row in pq.read_table(path, filesystem=location.fs).to_pylist():
                yield _as_text(row)
            continue
        for raw in _raw_lines(location, path):
            yield decode_line(raw.rstrip(b"\r\n"))


def _raw_lines(location: Location, path: str) -> Iterator[bytes]:
    """The non-empty lines of a JSON-lines file (gunzipped if need be), as bytes, read line by line."""
    compression = "gzip" if path.endswith(".gz") else None
    with location.fs.open_input_stream(path, compression=compression) as stream:
        yield from (raw for raw in io.BufferedReader(stream) if raw.strip())


def count_rows(location: Location) -> int | None:
    """The number of input rows, when it is cheap to know: Parquet files' footers (up to `COUNT_PARQUET_FILES`
    files) and local JSON-lines files (up to `COUNT_JSONL_BYTES` in all) are read here; None otherwise, or when
    the input cannot be read (the run says why)."""
    try:
        infos = location.fs.get_file_info(input_files(location))
        jsonl = [info for info in infos if info.path.endswith(JSONL_SUFFIXES)]
        parquet = [info.path for info in infos if info.path.endswith(PARQUET_SUFFIXES)]
        jsonl_too_far = bool(jsonl) and (not location.is_local or sum(i.size for i in jsonl) > COUNT_JSONL_BYTES)
        if jsonl_too_far or len(parquet) > COUNT_PARQUET_FILES:
            return None
        return sum(pq.read_metadata(path, filesystem=location.fs).num_rows for path in parquet) + \
            sum(sum(1 for _ in _raw_lines(location, info.path)) for info in jsonl)
    except (OSError, InputError, pa.ArrowException):
        return None


def lines_of(data: bytes) -> list[str]:
    """The non-empty lines of a JSON-lines file, each decoded alone (`decode_line`)."""
    return [decode_line(raw) for raw in data.splitlines() if raw.strip()]


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
            yield rows_at([_as_text(row) for row in batch.to_pylist()], path, first)
            first += batch.num_rows


def rows_at(texts: list[str], path: str, first: int) -> pa.Table:
    """Input rows with their place in the input: `<path>:<row number>`, counted from `first`."""
    return pa.table({"text": pa.array(texts, pa.string()),
                     "at": pa.array([f"{path}:{first + i}" for i in range(len(texts))], pa.string())})


def _as_text(row: dict) -> str:
    return json.dumps(row, default=_plain)


def _plain(value: object) -> object:
    tolist = getattr(value, "tolist", None)
    return tolist() if tolist else str(value)

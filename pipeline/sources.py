"""Readers: problem files (JSONL, JSONL.gz, Parquet; a file or a folder of them) as lines, read in this process;
`pipeline.datasources` reads the same rows as a Ray Dataset."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from operators.ingest.formats import decode_line
from pipeline.config import RunConfig
from pipeline.storage import Location

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
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


def iter_lines(location: Location) -> Iterator[str]:
    """Every input row as one JSON object's text, whatever the file type: the rows `pipeline.datasources` reads."""
    for path in input_files(location):
        if path.endswith(PARQUET_SUFFIXES):
            for row in pq.read_table(path, filesystem=location.fs).to_pylist():
                yield as_text(row)
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


def input_size(config: RunConfig, source: Location) -> int | None:
    """How many input rows the run reads, when that is cheap to know: the input's size, or `limit` if smaller."""
    rows = count_rows(source)
    if config.limit and (rows is None or config.limit < rows):
        return config.limit
    return rows




def lines_of(data: bytes) -> list[str]:
    """The non-empty lines of a JSON-lines file, each decoded alone (`decode_line`)."""
    return [decode_line(raw) for raw in data.splitlines() if raw.strip()]


def rows_at(texts: list[str], path: str, first: int) -> pa.Table:
    """Input rows with their place in the input: `<path>:<row number>`, counted from `first`."""
    return pa.table({"text": pa.array(texts, pa.string()),
                     "at": pa.array([f"{path}:{first + i}" for i in range(len(texts))], pa.string())})


def as_text(row: dict) -> str:
    return json.dumps(row, default=_plain)


def _plain(value: object) -> object:
    tolist = getattr(value, "tolist", None)
    return tolist() if tolist else str(value)

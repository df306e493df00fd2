"""Where data lives: a local path or `s3://bucket/prefix`, as a pyarrow filesystem plus a path in it.

Every file tracecot reads or writes goes through here — run input and output, benchmark files, generations,
prompt templates, reports — so whatever this module supports, every command supports.

S3 endpoint and region come from the config (`storage.endpoint_url`, `storage.region`) or the standard AWS
variables (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `AWS_REGION`); credentials only from the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.config import ConfigError, StorageConfig


@dataclass(frozen=True)
class Location:
    fs: pafs.FileSystem
    path: str
    uri: str

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts])

    def uri_of(self, *parts: str) -> str:
        """`join` as the user would write it: `s3://bucket/…` for object storage."""
        return self.join(*parts) if self.is_local else "s3://" + self.join(*parts)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def read_bytes(self, *parts: str) -> bytes:
        """A whole file, gunzipped when its name ends in `.gz`."""
        path = self.join(*parts)
        with self.fs.open_input_stream(path, compression="gzip" if path.endswith(".gz") else None) as stream:
            return stream.read()

    def write_bytes(self, data: bytes, *parts: str) -> None:
        path = self._parent_made(*parts)
        with self.fs.open_output_stream(path) as stream:
            stream.write(data)

    def read_parquet(self, *parts: str) -> pa.Table:
        """A Parquet file, or every Parquet file under a folder."""
        return pads.dataset(self.join(*parts), filesystem=self.fs, format="parquet").to_table()

    def write_parquet(self, table: pa.Table, *parts: str) -> None:
        pq.write_table(table, self._parent_made(*parts), filesystem=self.fs)

    def _parent_made(self, *parts: str) -> str:
        path = self.join(*parts)
        parent = path.rsplit("/", 1)[0]
        if parent:
            self.fs.create_dir(parent, recursive=True)
        return path


class StorageError(OSError):
    """The output cannot be written (missing bucket, no permission, …): reported before any work starts."""


def ensure_writable(location: Location, folders: tuple[str, ...] = ("records", "rejected", "runs")) -> None:
    try:
        for folder in folders:
            location.fs.create_dir(location.join(folder), recursive=True)
    except OSError as err:
        raise StorageError(f"cannot write to {location.uri}: {err}") from err


def locate(uri: str, storage: StorageConfig | None = None) -> Location:
    """Where `uri` lives; S3 settings from `storage` (or the environment, when a command has no config)."""
    storage = storage or StorageConfig()
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return Location(s3_filesystem(storage), f"{parsed.netloc}{parsed.path}".rstrip("/"), uri)
    if parsed.scheme not in ("", "file"):
        raise ConfigError(f"unsupported storage scheme {parsed.scheme!r} in {uri} (use a path or s3://)")
    path = os.path.abspath(parsed.path if parsed.scheme == "file" else uri)
    return Location(pafs.LocalFileSystem(), path, uri)


def s3_filesystem(storage: StorageConfig) -> pafs.S3FileSystem:
    endpoint = storage.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, object] = {"region": storage.region or os.environ.get("AWS_REGION")
                                  or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parsed.netloc, scheme=parsed.scheme)
    return pafs.S3FileSystem(**options)

"""Incremental state: which record ids an output already holds, accepted or rejected, and the run's index.

`DoneIndex` answers "is this item done?" for one slice of the keys (`operators.ingest.index`: a record id's
first 64 bits, slice `key % shards`). It travels as the output's address and loads where it is first asked,
so the driver never holds the ids. It reads only the `record_id` column and keeps the keys of its slice in a
sorted array: 8 bytes per record (100M records over 4 slices: 200 MB per slice, against ~10 GB as a set of
Python strings). Every slice reads the whole column once, keeping its part. Ids are uniform hashes, so a new
id sharing its first 64 bits with any of 1e8 done ones has a chance of about 5e-12.

`ShardedIndex` is the run index on Ray: one `KeySlice` actor (no CPU) per slice, holding that slice's done
keys, the calls met so far and the rows written this run. An index shard is not restarted when it dies (its
counts would start again): the run fails, and a rerun skips what was written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from operators.ingest.index import KeySlice, RunIndex, id_keys, sorted_contains
from pipeline.config import StorageConfig
from pipeline.storage import Location, locate

_ID_SCHEMA = pa.schema([("record_id", pa.string())])
FOLDERS = ("records", "rejected")  # of a run's output; a synthesis output has problems/ and rejected/


class DoneIndex:
    """The record ids in an output (those of slice `shard` of `shards`), loaded lazily where first asked."""

    def __init__(self, output: str, storage: StorageConfig, folders: tuple[str, ...] = FOLDERS, shard: int = 0,
                 shards: int = 1) -> None:
        self.output = output
        self.storage = storage
        self.folders = folders
        self.shard = shard
        self.shards = shards
        self._keys: np.ndarray | None = None

    def __getstate__(self) -> dict:  # ship the address, not the ids
        return {**self.__dict__, "_keys": None}

    def __contains__(self, record_id: object) -> bool:
        return isinstance(record_id, str) and bool(self.contains(id_keys([record_id]))[0])

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Which of `keys` (all of this slice) are done."""
        return sorted_contains(self.loaded(), keys)

    def __len__(self) -> int:
        return len(self.loaded())

    def loaded(self) -> np.ndarray:
        if self._keys is None:
            location = locate(self.output, self.storage)
            parts = [self._mine(id_keys(batch.column(0).to_pylist())) for batch in _id_batches(location, self.folders)]
            self._keys = np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)
        return self._keys

    def _mine(self, keys: np.ndarray) -> np.ndarray:
        return keys[keys % np.uint64(self.shards) == self.shard] if self.shards > 1 else keys


class ShardedIndex(RunIndex):
    """The run index over one `KeySlice` actor per slice: one remote call per slice per question.

    Actors ask the slices rather than rows going to the actor that owns their key: Ray Data routes rows by key
    only through its hash shuffle (`groupby`, `repartition(keys=…)`), which is a barrier: nothing after it
    starts before the whole input is read, so a run would stop streaming."""

    def __init__(self, shards: list[Any]) -> None:
        self.handles = shards
        self.shards = len(shards)

    def _send(self, method: str, questions: dict[int, tuple[Any, ...]]) -> dict[int, Any]:
        import ray  # a run on Ray; this module serves in-process runs too

        sent = {s: getattr(self.handles[s], method).remote(*question) for s, question in questions.items()}
        return dict(zip(sent, ray.get(list(sent.values())), strict=True))


@contextlib.contextmanager
def sharded_index(output: str, storage: StorageConfig, shards: int,
                  folders: tuple[str, ...] = FOLDERS) -> Iterator[ShardedIndex]:
    """A `ShardedIndex` of `shards` actors over the output's done ids, for the block's run; killed after it."""
    import ray  # a run on Ray; this module serves in-process runs too

    shard_actor = ray.remote(num_cpus=0, max_restarts=0)(KeySlice)
    handles = [shard_actor.remote(DoneIndex(output, storage, folders, shard, shards)) for shard in range(shards)]
    try:
        yield ShardedIndex(handles)
    finally:
        for handle in handles:
            ray.kill(handle)


def count_done(location: Location, folders: tuple[str, ...] = FOLDERS) -> int:
    """How many rows the output holds (in `folders`), from the Parquet footers alone (no ids are read)."""
    total = 0
    for folder in folders:
        dataset = _dataset(location, folder)
        if dataset is not None:
            total += sum(fragment.count_rows() for fragment in dataset.get_fragments())
    return total


def _id_batches(location: Location, folders: tuple[str, ...]):
    for folder in folders:
        dataset = _dataset(location, folder)
        if dataset is not None:
            yield from dataset.to_batches(columns=["record_id"])


def _dataset(location: Location, folder: str) -> pads.Dataset | None:
    path = location.join(folder)
    if location.fs.get_file_info(path).type != pafs.FileType.Directory:
        return None
    return pads.dataset(path, filesystem=location.fs, format="parquet", schema=_ID_SCHEMA)

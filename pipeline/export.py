"""`tracecot export --format hf`: an output's records in the layout `datasets.load_dataset(FOLDER)` reads.

    FOLDER/README.md                      the dataset card; its `configs` name the splits' files
    FOLDER/data/train-00000.parquet       …
    FOLDER/data/validation-00000.parquet  …

Records are split by problem: a function (its code and entry point) goes to validation when the hash of both
falls under `validation_share`, so no function is on both sides, and the split of a function never changes
when the dataset grows.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from operators.ids import content_hash
from operators.records import RECORD_SCHEMA
from pipeline.card import CARD, Contents, ForeignCard, card_text, check_card_free
from pipeline.config import ConfigError
from pipeline.report import read_report
from pipeline.sources import InputError
from pipeline.storage import Location, StorageError, locate

SPLITS = ("train", "validation")
ROWS_PER_FILE = 50_000


def split_of(code: str, entry_point: str, validation_share: float) -> str:
    """The split of every record of one function: stable, and the same for all its inputs and directions."""
    position = int(content_hash(code, entry_point)[:8], 16) / 0x1_0000_0000
    return "validation" if position < validation_share else "train"


def export_hf(source: str, destination: str, validation_share: float = 0.05, max_tokens: int | None = None,
              fingerprint: str | None = None) -> dict[str, Any]:
    """Write the records of the output at `source` as an HF dataset folder at `destination`; returns counts.

    Only records of one fingerprint go out: `fingerprint`, by default the latest run's ("all": every record).
    Records made under an older config are other versions of the same items, and would be duplicates.
    Split files an earlier export left in `destination/data/` are removed first, so none is read twice.
    """
    if not 0 <= validation_share < 1:
        raise ConfigError("--validation-share must be in [0, 1)")
    src, dst = locate(source), locate(destination)
    try:
        return _export(src, dst, validation_share, max_tokens, fingerprint)
    except ForeignCard as err:
        raise InputError(f"{err}; export to another folder") from err
    except OSError as err:  # pyarrow's file systems: no such bucket, not a folder, no permission, …
        raise StorageError(f"cannot export {source} to {destination}: {err}") from err


def _export(src: Location, dst: Location, validation_share: float, max_tokens: int | None,
            fingerprint: str | None) -> dict[str, Any]:
    source = src.uri
    records = src.join("records")
    if src.fs.get_file_info(records).type != pafs.FileType.Directory:
        raise InputError(f"{source} holds no records/ folder: is it a tracecot output?")
    if type(src.fs) is type(dst.fs) and (dst.path + "/").startswith(src.path.rstrip("/") + "/"):
        raise InputError(f"the export's folder {dst.uri} is inside the output it reads ({source})")
    report = read_report(src)
    fingerprint = fingerprint or report["fingerprint"]
    check_card_free(dst)
    _remove_old_splits(dst)
    writers = {split: _Writer(dst, split) for split in SPLITS}
    dropped = Counter[str]()
    dataset = pads.dataset(records, filesystem=src.fs, format="parquet", schema=RECORD_SCHEMA)
    for batch in dataset.to_batches():
        table = _selected(pa.Table.from_batches([batch]), fingerprint, max_tokens, dropped)
        splits = [split_of(code, entry, validation_share) for code, entry in
                  zip(table.column("code").to_pylist(), table.column("entry_point").to_pylist(), strict=True)]
        for split, writer in writers.items():
            writer.add(table.filter(pa.array([s == split for s in splits], pa.bool_())))
    files = {split: f"data/{split}-*.parquet" for split, writer in writers.items() if writer.close()}
    if not files:
        raise InputError(f"{source} has no records of fingerprint {fingerprint} to export"
                         + (f" within {max_tokens} tokens" if max_tokens else ""))
    totals = Contents()
    for split in files:
        totals.update(writers[split].contents)
    card = card_text(files, {split: writers[split].contents.records for split in files}, totals, report)
    dst.write_bytes(card.encode(), CARD)
    return {"destination": dst.uri, "fingerprint": fingerprint,
            "splits": {split: writers[split].contents.total for split in files},
            "files": {split: writers[split].files for split in files}, "dropped": dict(dropped),
            "validation_share": validation_share, "card": dst.uri_of(CARD)}


def _selected(table: pa.Table, fingerprint: str, max_tokens: int | None, dropped: Counter[str]) -> pa.Table:
    """The rows to export; what is left out is counted in `dropped` by why."""
    keep = pc.fill_null(pc.equal(table.column("fingerprint"), fingerprint), False) if fingerprint != "all" else \
        pa.array([True] * table.num_rows)
    dropped["other_fingerprint"] += table.num_rows - (pc.sum(keep).as_py() or 0)
    if max_tokens is not None:
        lengths = table.column("n_tokens")
        unknown = pc.and_(keep, pc.is_null(lengths))
        too_long = pc.and_(keep, pc.fill_null(pc.greater(lengths, max_tokens), False))
        dropped["unknown_length"] += pc.sum(unknown).as_py() or 0
        dropped["too_long"] += pc.sum(too_long).as_py() or 0
        keep = pc.and_(keep, pc.invert(pc.or_(unknown, too_long)))
    return table.filter(keep)


def _remove_old_splits(location: Location) -> None:
    selector = pafs.FileSelector(location.join("data"), allow_not_found=True)
    for info in location.fs.get_file_info(selector):
        if info.base_name.endswith(".parquet") and info.base_name.split("-", 1)[0] in SPLITS:
            location.fs.delete_file(info.path)


class _Writer:
    """Parquet files of one split, `ROWS_PER_FILE` rows each, and what they hold (for the card)."""

    def __init__(self, location: Location, split: str) -> None:
        self.location = location
        self.split = split
        self.files = 0
        self.rows_in_file = 0
        self.writer: pq.ParquetWriter | None = None
        self.contents = Contents()

    def add(self, table: pa.Table) -> None:
        self.contents.add(table)
        written = 0
        while written < table.num_rows:
            if self.writer is None or self.rows_in_file >= ROWS_PER_FILE:
                self._next_file()
            part = table.slice(written, ROWS_PER_FILE - self.rows_in_file)
            self.writer.write_table(part)
            self.rows_in_file += part.num_rows
            written += part.num_rows

    def _next_file(self) -> None:
        self.close()
        self.location.fs.create_dir(self.location.join("data"), recursive=True)
        path = self.location.join("data", f"{self.split}-{self.files:05d}.parquet")
        self.writer = pq.ParquetWriter(path, RECORD_SCHEMA, filesystem=self.location.fs)
        self.files += 1
        self.rows_in_file = 0

    def close(self) -> int:
        """Finish the open file; returns how many files the split has."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        return self.files

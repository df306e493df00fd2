"""Incremental state: which record ids an output already holds, accepted or rejected.

Only the `record_id` column is read. (At very large scale this set belongs in per-partition state rather than
in the driver; see the cluster issue.)
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from pipeline.storage import Location

_ID_SCHEMA = pa.schema([("record_id", pa.string())])


def done_ids(location: Location) -> frozenset[str]:
    ids: set[str] = set()
    for folder in ("records", "rejected"):
        path = location.join(folder)
        if location.fs.get_file_info(path).type != pafs.FileType.Directory:
            continue
        dataset = pads.dataset(path, filesystem=location.fs, format="parquet", schema=_ID_SCHEMA)
        ids.update(dataset.to_table().column("record_id").to_pylist())
    return frozenset(ids)

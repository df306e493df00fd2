"""`tracecot decontam`: flag (or drop) records whose code overlaps benchmark items, with a report."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from operators.ingest.decontam import BenchmarkIndex, benchmark_codes, parse_against
from pipeline.sources import InputError


def read_records(path: str) -> pa.Table:
    """Records from Parquet (a file or a folder of files) or JSON lines; each needs a `code` column."""
    try:
        if path.endswith((".jsonl", ".json")):
            rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
            table = pa.Table.from_pylist(rows)
        else:
            table = pads.dataset(path, format="parquet").to_table()
    except (OSError, ValueError, pa.ArrowInvalid) as err:
        raise InputError(f"cannot read records {path}: {err}") from err
    if "code" not in table.column_names:
        raise InputError(f"records {path} have no code column")
    return table


def decontaminate(input_path: str, against: str, output: str, drop: bool, n: int = 10,
                  threshold: float = 0.5) -> dict[str, Any]:
    try:
        benchmarks = {name: benchmark_codes(name, path) for name, path in parse_against(against).items()}
    except ValueError as err:
        raise InputError(str(err)) from err
    if n < 1 or not 0 < threshold <= 1:
        raise InputError("--ngram must be at least 1 and --threshold in (0, 1]")
    records = read_records(input_path)
    index = BenchmarkIndex(benchmarks, n, threshold)
    matches = [index.match(code or "") for code in records.column("code").to_pylist()]
    flags = [m.describe() if m else None for m in matches]
    flagged = records.append_column("contamination", pa.array(flags, pa.string()))
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    keep = pa.array([f is None for f in flags])
    pq.write_table(flagged.filter(keep) if drop else flagged, folder / "records.parquet")
    if drop:
        pq.write_table(flagged.filter(pc.invert(keep)), folder / "flagged.parquet")
    by = Counter((m.benchmark, m.kind) for m in matches if m)
    report = {
        "input": input_path, "records": records.num_rows, "flagged": sum(by.values()), "dropped": drop,
        "by_benchmark": {f"{bench}/{kind}": count for (bench, kind), count in sorted(by.items())},
        "benchmarks": {name: len(codes) for name, codes in benchmarks.items()},
        "settings": {"ngram": n, "threshold": threshold},
    }
    (folder / "decontam_report.json").write_text(json.dumps(report, indent=2))
    return report

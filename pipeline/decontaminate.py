"""`tracecot decontam`: flag (or drop) records whose code overlaps benchmark items, with a report; and the
benchmark files the run's decontamination stage compares against, read once on the driver."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from operators.ingest.decontam import BenchmarkIndex, benchmark_codes, parse_against
from pipeline.sources import InputError
from pipeline.storage import locate


def read_benchmarks(against: str) -> dict[str, dict[str, str]]:
    """Benchmark name → item id → code, for `--against` / `decontam.against` (paths or s3:// URIs)."""
    try:
        return {name: benchmark_codes(name, locate(uri).read_bytes()) for name, uri in parse_against(against).items()}
    except OSError as err:
        raise InputError(f"cannot read a benchmark of {against}: {err}") from err
    except ValueError as err:
        raise InputError(str(err)) from err


def read_records(uri: str) -> pa.Table:
    """Records from Parquet (a file or a folder of files) or JSON lines; each needs a `code` column."""
    try:
        location = locate(uri)
        if uri.endswith((".jsonl", ".json")):
            table = pa.Table.from_pylist([json.loads(line) for line in location.read_bytes().splitlines()
                                          if line.strip()])
        else:
            table = location.read_parquet()
    except (OSError, ValueError, pa.ArrowInvalid) as err:
        raise InputError(f"cannot read records {uri}: {err}") from err
    if "code" not in table.column_names:
        raise InputError(f"records {uri} have no code column")
    return table


def decontaminate(input_path: str, against: str, output: str, drop: bool, n: int = 10,
                  threshold: float = 0.5) -> dict[str, Any]:
    benchmarks = read_benchmarks(against)
    if n < 1 or not 0 < threshold <= 1:
        raise InputError("--ngram must be at least 1 and --threshold in (0, 1]")
    records = read_records(input_path)
    index = BenchmarkIndex(benchmarks, n, threshold)
    matches = [index.match(code or "") for code in records.column("code").to_pylist()]
    flags = [m.describe() if m else None for m in matches]
    flagged = records.append_column("contamination", pa.array(flags, pa.string()))
    folder = locate(output)
    keep = pa.array([f is None for f in flags])
    folder.write_parquet(flagged.filter(keep) if drop else flagged, "records.parquet")
    if drop:
        folder.write_parquet(flagged.filter(pc.invert(keep)), "flagged.parquet")
    by = Counter((m.benchmark, m.kind) for m in matches if m)
    report = {
        "input": input_path, "records": records.num_rows, "flagged": sum(by.values()), "dropped": drop,
        "by_benchmark": {f"{bench}/{kind}": count for (bench, kind), count in sorted(by.items())},
        "benchmarks": {name: len(codes) for name, codes in benchmarks.items()},
        "settings": {"ngram": n, "threshold": threshold},
    }
    folder.write_bytes(json.dumps(report, indent=2).encode(), "decontam_report.json")
    return report

"""The dataset card: `README.md` at the root of an output (and of an HF export), in the Hugging Face format.

Its YAML header is what `datasets.load_dataset(FOLDER)` reads (the `configs` say which Parquet files make which
split); its body says what the records are, how many there are per split and direction, where they came from
and under which licenses, which fingerprints and config made them, and how to load them. Every run rewrites it
from what the output holds, so it never describes a dataset that is not there.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import yaml

from operators.ids import DIRECTIONS
from operators.ingest.formats import UNKNOWN_LICENSE
from operators.records import RECORD_SCHEMA
from pipeline.storage import Location

CARD = "README.md"
MARK = "<!-- tracecot dataset card: every run rewrites this file from the data; edit the config, not this file -->"
_LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")  # how Hugging Face writes license ids: mit, cc-by-4.0
_COUNTED = ("direction", "source", "license", "narrator", "fingerprint")


@dataclass
class Contents:
    """What the card reports about a set of Parquet files, counted column by column (no text is read)."""

    records: Counter[str] = field(default_factory=Counter)  # direction → records
    sources: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, license) → records
    narrators: Counter[str] = field(default_factory=Counter)
    fingerprints: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)  # "stage/reason" → rejected rows

    @property
    def total(self) -> int:
        return sum(self.records.values())

    def add(self, records: pa.Table | pa.RecordBatch) -> None:
        """Count records (any table holding the counted columns)."""
        columns = records.select(list(_COUNTED)).to_pydict()
        for direction, source, license_, narrator, fingerprint in zip(*columns.values(), strict=True):
            self.records[direction] += 1
            self.sources[source or "", license_ or UNKNOWN_LICENSE] += 1
            self.narrators[narrator or ""] += 1
            self.fingerprints[fingerprint or ""] += 1

    def update(self, other: Contents) -> None:
        for name in ("records", "sources", "narrators", "fingerprints", "rejected"):
            getattr(self, name).update(getattr(other, name))


def count_records(location: Location, folder: str) -> Contents:
    """The records of every Parquet file under `folder`."""
    contents = Contents()
    for batch in _batches(location, folder, _COUNTED):
        contents.add(batch)
    return contents


def count_rejected(location: Location, contents: Contents) -> Contents:
    for batch in _batches(location, "rejected", ("stage", "reason")):
        columns = batch.to_pydict()
        contents.rejected.update(f"{stage}/{reason}" for stage, reason in zip(columns["stage"], columns["reason"],
                                                                              strict=True))
    return contents


def _batches(location: Location, folder: str, columns: tuple[str, ...]):
    path = location.join(folder)
    if location.fs.get_file_info(path).type != pafs.FileType.Directory:
        return
    schema = pa.schema([pa.field(name, pa.string()) for name in columns])
    yield from pads.dataset(path, filesystem=location.fs, format="parquet", schema=schema).to_batches(
        columns=list(columns))


class ForeignCard(ValueError):
    """A README.md that tracecot did not write is where the card would go: it is left alone."""


def check_card_free(location: Location) -> None:
    """Raise `ForeignCard` if `location` holds a README.md without tracecot's mark (the user's own file)."""
    path = location.join(CARD)
    if location.fs.get_file_info(path).type == pafs.FileType.NotFound:
        return
    if MARK not in location.read_bytes(CARD).decode("utf-8", "replace"):
        raise ForeignCard(f"{location.uri_of(CARD)} exists and was not written by tracecot: it is left as it is")


def write_card(output: Location, report: dict[str, Any]) -> str | None:
    """The card of a run's output (every record under `records/` is the train split); returns why it was not
    written, or None."""
    try:
        check_card_free(output)
    except ForeignCard as err:
        return str(err)
    contents = count_rejected(output, count_records(output, "records"))
    splits = {"train": contents.records}
    output.write_bytes(card_text({"train": "records/*.parquet"}, splits, contents, report).encode(), CARD)
    return None


def card_text(files: dict[str, str], splits: dict[str, Counter[str]], contents: Contents,
              report: dict[str, Any]) -> str:
    """The card: `files` maps each split to its Parquet files (a glob relative to the card), `splits` each
    split to its records per direction; `report` is the run report of the run that made the latest records."""
    licenses = sorted({license_ for _, license_ in contents.sources})
    single = licenses[0] if len(licenses) == 1 else UNKNOWN_LICENSE
    header = {
        "license": single if _LICENSE_ID.fullmatch(single) and single != UNKNOWN_LICENSE else "other",
        "pretty_name": "tracecot execution-traced chain-of-thought",
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["code", "reasoning", "chain-of-thought", "execution-trace", "tracecot"],
        "size_categories": [_size_category(contents.total)],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": split, "path": path} for split, path in files.items()]}],
    }
    directions = sorted({direction for counts in splits.values() for direction in counts}) or list(DIRECTIONS)
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", MARK, "",
        "# tracecot: execution-traced chain-of-thought records", "",
        "Each record is a Python function, one input and the step-by-step reasoning from the input to the output",
        "(`forward`) or from the output back to an input (`backward`). The function ran in a sandbox under a",
        "line tracer, and every sentence of the reasoning was checked against that trace. A record is kept only",
        "when every sentence is verified or states nothing and its answer is right. Rejected items, with their",
        "reasons, are kept apart (`rejected/` in tracecot's output).", "",
        "## Counts", "",
        "| split | " + " | ".join(directions) + " | total |",
        "|---|" + "---:|" * (len(directions) + 1),
        *(f"| {split} | " + " | ".join(str(counts[d]) for d in directions) + f" | {sum(counts.values())} |"
          for split, counts in splits.items()),
        "",
    ]
    if contents.rejected:
        lines += ["Rejected items, by stage and reason (not in the splits above):", "",
                  *(f"- {_cell(key)}: {n}" for key, n in contents.rejected.most_common()), ""]
    lines += [
        "## Sources and licenses", "",
        "| source | license | records |", "|---|---|---:|",
        *(f"| {_cell(source)} | {_cell(license_)} | {n} |"
          for (source, license_), n in sorted(contents.sources.items())), "",
        f"A license is the input row's own `license` field; `{UNKNOWN_LICENSE}` means the row had none: check the",
        "terms of that source before you publish or train on it. The reasoning text is written by the narrators",
        "below.", "",
        "## Narrators", "",
        *(f"- {_cell(name)}: {n} records" for name, n in contents.narrators.most_common()), "",
        "## Columns", "",
        "| column | type |", "|---|---|",
        *(f"| `{f.name}` | `{f.type}` |" for f in RECORD_SCHEMA), "",
        "`prompt` and `completion` are the user and assistant turns of `messages`. `n_tokens` counts the prompt",
        f"and the completion with the tokenizer `{report.get('tokenizer')}` (no special tokens); a trainer adds",
        "its chat template and end-of-sequence tokens. `verification` holds the verifier's report: one verdict",
        "per sentence, with its span and the trace step it was checked at.", "",
        "## How to load", "",
        "```python",
        "import datasets",
        'ds = datasets.load_dataset("PATH")  # PATH: the folder holding this README',
        "```", "",
        "For supervised fine-tuning with the prompt masked (TRL's `SFTTrainer` reads `prompt` / `completion`):", "",
        "```python",
        'train = ds["train"].select_columns(["prompt", "completion"])',
        "```", "",
        "With polars: `polars.read_parquet(\"PATH/" + next(iter(files.values())) + "\")`.", "",
        "## Provenance", "",
        f"Made by tracecot {report['versions']['tracecot']}. Fingerprints (a hash of everything that decides a",
        "record's text: tracer, narrator, prompts, verifier and sandbox settings, tokenizer):", "",
        *(f"- {_cell(fingerprint)}: {n} records" for fingerprint, n in contents.fingerprints.most_common()), "",
        "Records of different fingerprints are versions of the same items made under different configs; "
        "`tracecot export` takes one fingerprint (the latest run's by default).", "",
        f"The latest run, `{report['run_id']}` ({report['started']}, {report['status']}, fingerprint "
        f"`{report['fingerprint']}`), used this config:", "",
        "```yaml", yaml.safe_dump(report["config"], sort_keys=False).rstrip(), "```", "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text from the data (a file name, a license) as one Markdown table cell that cannot break the table,
    start a heading or carry HTML: newlines become spaces; pipes, backticks, emphasis, links and tags are
    escaped."""
    flat = " ".join(str(text).split())[:200]
    return re.sub(r"([\\`*_\[\]<>|])", r"\\\1", flat) or "(none)"


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return name
    return "100M<n<1B"

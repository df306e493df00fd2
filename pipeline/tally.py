"""Run accounting: what finished work rows add up to, counted by the sink and summed for the report.

An *item* is one (call, direction), or one unreadable input row. A call rejected before narration stands for
each of its directions. A `Tally` crosses from the sink (Ray tasks) to the driver as JSON (`to_json` / `from_json`),
the only place it is ever a string.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

STAGES = ("ingest", "execute", "narrate", "verify", "export")  # stages that note their busy time on the rows they make
LENGTHS = ("trace_steps", "n_tokens", "n_completion_tokens")  # record lengths counted in histogram buckets
TOKEN_BUCKET = 64


def bucket(measure: str, value: int) -> int:
    """The lower edge of `value`'s histogram bucket: 64-token steps for token counts (so a trainer's
    `max_length` can be read off), powers of two for trace steps (they span 1 to 20,000)."""
    if measure == "trace_steps":
        return 1 << (value.bit_length() - 1) if value > 0 else 0
    return value // TOKEN_BUCKET * TOKEN_BUCKET


@dataclass
class Tally:
    rows_read: int = 0
    skipped: int = 0  # items already in the output under the same fingerprint
    accepted: int = 0
    retried_attempts: int = 0  # model attempts rejected and asked again: kept in rejected/, not items
    busy_s: Counter[str] = field(default_factory=Counter)  # stage → seconds, summed over actors
    tokens: Counter[str] = field(default_factory=Counter)  # "in", "out"
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)  # (stage, reason) → items
    narrated: Counter[tuple[str, str]] = field(default_factory=Counter)  # (narrator, direction) → narrations
    accepted_by: Counter[tuple[str, str]] = field(default_factory=Counter)  # (narrator, direction) → records
    placement: Counter[tuple[str, str]] = field(default_factory=Counter)  # (stage, node) → rows made there
    actors: Counter[tuple[str, str]] = field(default_factory=Counter)  # (step, actor) → rows made (written) there
    lengths: Counter[tuple[str, int]] = field(default_factory=Counter)  # (measure, bucket) → records: `bucket`
    generations: Counter[tuple[str, str]] = field(default_factory=Counter)  # synthesis: (kind, outcome) → answers

    def add(self, other: Tally) -> None:
        for name in _NAMES:
            value = getattr(other, name)
            if isinstance(value, Counter):
                getattr(self, name).update(value)
            else:
                setattr(self, name, getattr(self, name) + value)

    @property
    def items(self) -> int:
        return self.accepted + self.skipped + sum(self.rejected.values())

    def to_json(self) -> str:
        return json.dumps({name: _plain(getattr(self, name)) for name in _NAMES})

    @classmethod
    def from_json(cls, text: str) -> Tally:
        data = json.loads(text)
        tally = cls(**{name: data[name] for name in ("rows_read", "skipped", "accepted", "retried_attempts")})
        tally.busy_s.update(data["busy_s"])
        tally.tokens.update(data["tokens"])
        for name in ("rejected", "narrated", "accepted_by", "placement", "actors", "lengths", "generations"):
            getattr(tally, name).update({(a, b): n for a, b, n in data[name]})
        return tally


_NAMES = [f.name for f in fields(Tally)]


def _plain(value: Any) -> Any:
    if isinstance(value, Counter) and value and isinstance(next(iter(value)), tuple):
        return [[*key, n] for key, n in value.items()]
    return dict(value) if isinstance(value, Counter) else value


def count(rows: list[dict[str, Any]]) -> tuple[Tally, list[dict[str, Any]], list[dict[str, Any]]]:
    """Tally finished work rows; also returns the accepted and rejected rows, one per item."""
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    tally = Tally()
    for row in rows:
        tally.rows_read += row.get("rows_read") or 0
        for place in row.get("placement") or []:
            tally.placement[place["stage"], place["node"]] += 1
            tally.actors[place["step"], place["actor"]] += 1
        for key, value in row.items():
            if key.startswith("t_") and value:
                tally.busy_s[key[2:]] += value
        tally.tokens["in"] += row.get("tokens_in") or 0
        tally.tokens["out"] += row.get("tokens_out") or 0
        for kind, outcome, n in json.loads(row.get("generations") or "[]"):
            tally.generations[kind, outcome] += n
        if row.get("retried"):
            tally.retried_attempts += 1
            rejected.append(row)
            continue
        if row.get("narrator") and row.get("direction"):
            tally.narrated[row["narrator"], row["direction"]] += 1
        for unit in _units(row):
            if unit.get("skipped"):
                tally.skipped += 1
            elif unit.get("reason"):
                tally.rejected[unit["stage"], unit["reason"]] += 1
                rejected.append(unit)
            else:
                tally.accepted += 1
                if unit.get("narrator"):
                    tally.accepted_by[unit["narrator"], unit["direction"]] += 1
                for measure in LENGTHS:
                    if unit.get(measure) is not None:
                        tally.lengths[measure, bucket(measure, unit[measure])] += 1
                accepted.append(unit)
    return tally, accepted, rejected


def _units(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (call, direction): a call rejected before narration stands for each of its directions."""
    if row.get("direction") or not row.get("record_ids"):
        return [row]
    return [{**row, "direction": direction, "record_id": rid}
            for direction, rid in zip(row["directions"], row["record_ids"], strict=True)]

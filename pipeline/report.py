"""The funnel (where every input row ended up), live progress, and the run report JSON."""

from __future__ import annotations

import json
import platform
import sys
import time
from collections import Counter
from typing import Any, TextIO

from pipeline.storage import Location

STAGES = ("ingest", "execute", "trace", "narrate", "verify")
FUNNEL_NAMES = ("read", "executed", "traced", "narrated", "verified")
STAGE_TIMINGS = {"ingest": "t_ingest", "execute": "t_execute", "narrate": "t_narrate", "verify": "t_verify"}


class Funnel:
    """Sums the sink's per-batch tallies. An item is one (call, direction), or one unreadable input row."""

    def __init__(self) -> None:
        self.tally: Counter[str] = Counter()

    def add(self, tally: dict[str, float]) -> None:
        self.tally.update(tally)

    @property
    def rejects(self) -> dict[str, int]:
        """Rejected items by `stage/reason`."""
        return {key.split(":", 1)[1].replace(":", "/"): int(n) for key, n in sorted(self.tally.items())
                if key.startswith("rejected:")}

    @property
    def items(self) -> int:
        return int(self.tally["accepted"] + self.tally["skipped"] + sum(self.rejects.values()))

    def stages(self) -> dict[str, dict[str, int]]:
        """Items in, out and rejected at each stage; in = out + rejected, out = next stage's in."""
        entering = self.items - int(self.tally["skipped"])
        result = {}
        for stage in STAGES:
            rejected = sum(n for key, n in self.rejects.items() if key.startswith(f"{stage}/"))
            result[stage] = {"in": entering, "rejected": rejected, "out": entering - rejected}
            entering -= rejected
        return result

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_read": int(self.tally["rows_read"]),
            "items": self.items,
            "skipped_existing": int(self.tally["skipped"]),
            "stages": self.stages(),
            "written_records": int(self.tally["accepted"]),
            "written_rejected": sum(self.rejects.values()),
            "rejects_by_reason": self.rejects,
            "retried_attempts": int(self.tally["retried_attempts"]),  # also in rejected/, not items of their own
        }

    def summary_lines(self) -> list[str]:
        stages = self.stages()
        chain = " → ".join(f"{name} {stages[stage]['out']}" for name, stage in zip(FUNNEL_NAMES[1:], STAGES[1:],
                                                                                    strict=True))
        lines = [f"funnel: read {int(self.tally['rows_read'])} rows ({self.items} items) → {chain} "
                 f"→ written {int(self.tally['accepted'])}"]
        if self.tally["skipped"]:
            lines.append(f"skipped {int(self.tally['skipped'])} items already in the output (same fingerprint)")
        if self.tally["retried_attempts"]:
            lines.append(f"{int(self.tally['retried_attempts'])} model attempts were rejected and asked again "
                         "(kept in rejected/)")
        if self.rejects:
            reasons = ", ".join(f"{key} {n}" for key, n in self.rejects.items())
            lines.append(f"rejected {sum(self.rejects.values())}: {reasons}")
        return lines


def placement(tally: Counter[str]) -> dict[str, dict[str, int]]:
    """Rows each node worked on, per stage: where the work ran."""
    nodes: dict[str, dict[str, int]] = {}
    for key, n in sorted(tally.items()):
        if key.startswith("placement:"):
            stage, _, node = key.removeprefix("placement:").partition("@")
            nodes.setdefault(stage, {})[node] = int(n)
    return nodes


def narration_summary(tally: Counter[str], narrator: Any) -> dict[str, Any]:
    """Tokens, speed, acceptance per narrator and direction, and machine-hours per 1,000 accepted records."""
    busy = tally["t_narrate"]
    narrated = {key.split(":", 1)[1]: int(n) for key, n in tally.items() if key.startswith("narrated:")}
    accepted = {key.split(":", 1)[1]: int(n) for key, n in tally.items() if key.startswith("accepted:")}
    attempts = sum(narrated.values()) + int(tally["retried_attempts"])
    summary: dict[str, Any] = {
        "narrations": attempts, "retried_attempts": int(tally["retried_attempts"]),
        "tokens_in": int(tally["tokens_in"]), "tokens_out": int(tally["tokens_out"]), "busy_s": round(busy, 2),
        "narrations_per_s": round(attempts / busy, 3) if busy else None,
        "tokens_out_per_s": round(tally["tokens_out"] / busy, 1) if busy else None,
        "acceptance": {key: {"narrated": n, "accepted": accepted.get(key, 0),
                             "rate": round(accepted.get(key, 0) / n, 4)} for key, n in sorted(narrated.items())},
    }
    if narrator.is_model and tally["accepted"]:
        unit, per_actor = ("gpu", narrator.actors.gpus) if narrator.actors.gpus else ("cpu", narrator.actors.cpus)
        summary[f"{unit}_hours_per_1000_accepted"] = round(busy * per_actor / 3600 / tally["accepted"] * 1000, 4)
    return summary


class Progress:
    """Prints a line to stderr at most every `every` seconds while a run goes on."""

    def __init__(self, stream: TextIO = sys.stderr, every: float = 2.0) -> None:
        self.stream = stream
        self.every = every
        self.started = time.monotonic()
        self.last = 0.0

    def update(self, funnel: Funnel, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.started
        done = funnel.items
        print(f"[tracecot] {elapsed:6.1f}s  rows {int(funnel.tally['rows_read'])}  items {done}  "
              f"records {int(funnel.tally['accepted'])}  rejected {sum(funnel.rejects.values())}  "
              f"skipped {int(funnel.tally['skipped'])}  ({done / max(elapsed, 1e-9):.1f} items/s)",
              file=self.stream, flush=True)


def versions() -> dict[str, str]:
    import pyarrow
    import ray

    from pipeline import __version__
    return {"tracecot": __version__, "python": platform.python_version(), "ray": ray.__version__,
            "pyarrow": pyarrow.__version__, "platform": platform.platform()}


def stage_timings(funnel: Funnel) -> dict[str, float]:
    """Busy seconds per stage, summed over all actors (so they can exceed the wall time)."""
    return {stage: round(funnel.tally[column], 3) for stage, column in STAGE_TIMINGS.items()}


def write_report(location: Location, run_id: str, report: dict[str, Any]) -> None:
    with location.fs.open_output_stream(location.join("runs", f"{run_id}.json")) as stream:
        stream.write(json.dumps(report, indent=2).encode())

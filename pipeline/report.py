"""The funnel (where every input row ended up) and the run report JSON; live progress is `pipeline/progress.py`."""

from __future__ import annotations

import json
import platform
from collections import Counter
from typing import Any

import pyarrow.fs as pafs

from pipeline.storage import Location
from pipeline.tally import STAGES as TALLIED_STAGES
from pipeline.tally import Tally

STAGES = ("ingest", "execute", "trace", "narrate", "verify", "export")
FUNNEL_NAMES = ("read", "executed", "traced", "narrated", "verified", "written")  # what leaves each stage


class Funnel:
    """Sums the sink's per-batch tallies: where every input row ended up. `stages` are the stages that reject,
    in order, and `names` what leaves each of them (a synthesis run has its own)."""

    def __init__(self, stages: tuple[str, ...] = STAGES, names: tuple[str, ...] = FUNNEL_NAMES) -> None:
        self.tally = Tally()
        self.stage_names = stages
        self.names = names

    def add(self, tally: Tally) -> None:
        self.tally.add(tally)

    @property
    def rejects(self) -> dict[str, int]:
        """Rejected items by `stage/reason`."""
        return {f"{stage}/{reason}": n for (stage, reason), n in sorted(self.tally.rejected.items())}

    @property
    def items(self) -> int:
        return self.tally.items

    def stages(self) -> dict[str, dict[str, int]]:
        """Items in, out and rejected at each stage; in = out + rejected, out = next stage's in."""
        entering = self.items - self.tally.skipped
        result = {}
        for stage in self.stage_names:
            rejected = sum(n for (where, _), n in self.tally.rejected.items() if where == stage)
            result[stage] = {"in": entering, "rejected": rejected, "out": entering - rejected}
            entering -= rejected
        return result

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.tally.rows_read,
            "items": self.items,
            "skipped_existing": self.tally.skipped,
            "stages": self.stages(),
            "written_records": self.tally.accepted,
            "written_rejected": sum(self.rejects.values()),
            "rejects_by_reason": self.rejects,
            "retried_attempts": self.tally.retried_attempts,  # also in rejected/, not items of their own
            **({"generations": self.generations()} if self.tally.generations else {}),
        }

    def generations(self) -> dict[str, dict[str, int]]:
        """Synthesis: the model's answers by kind (concepts, instructions, solutions, tests, inputs) and outcome."""
        out: dict[str, dict[str, int]] = {}
        for (kind, outcome), n in sorted(self.tally.generations.items()):
            out.setdefault(kind, {})[outcome] = n
        return out

    def lengths(self) -> dict[str, dict[int, int]]:
        """Accepted records per histogram bucket of each length (`pipeline.tally.bucket`)."""
        out: dict[str, dict[int, int]] = {}
        for (measure, edge), n in sorted(self.tally.lengths.items()):
            out.setdefault(measure, {})[edge] = n
        return out

    def summary_lines(self) -> list[str]:
        stages = self.stages()
        chain = " → ".join(f"{name} {stages[stage]['out']}" for name, stage in zip(self.names[1:],
                                                                                    self.stage_names[1:], strict=True))
        lines = [f"funnel: read {self.tally.rows_read} rows ({self.items} items) → {chain}"]
        if self.tally.skipped:
            lines.append(f"skipped {self.tally.skipped} items already in the output (same fingerprint)")
        if self.tally.retried_attempts:
            lines.append(f"{self.tally.retried_attempts} model attempts were rejected and asked again "
                         "(kept in rejected/)")
        if self.tally.generations:
            lines.append("model answers: " + "; ".join(
                f"{kind} " + ", ".join(f"{n} {outcome}" for outcome, n in outcomes.items())
                for kind, outcomes in self.generations().items()))
        if self.rejects:
            reasons = ", ".join(f"{key} {n}" for key, n in self.rejects.items())
            lines.append(f"rejected {sum(self.rejects.values())}: {reasons}")
        return lines


def placement(tally: Tally) -> dict[str, dict[str, int]]:
    """Rows each node worked on, per stage: where the work ran."""
    nodes: dict[str, dict[str, int]] = {}
    for (stage, node), n in sorted(tally.placement.items()):
        nodes.setdefault(stage, {})[node] = n
    return nodes


def actors(tally: Tally) -> dict[str, int]:
    """How many actors of each step (stage class) worked on rows: a pool's size as the run used it."""
    return dict(sorted(Counter(step for step, _ in tally.actors).items()))


def narration_summary(tally: Tally, narrator: Any) -> dict[str, Any]:
    """Tokens, speed, acceptance per narrator and direction, and machine-hours per 1,000 accepted records."""
    busy = tally.busy_s["narrate"]
    narrated = {f"{name}:{direction}": n for (name, direction), n in tally.narrated.items()}
    accepted = {f"{name}:{direction}": n for (name, direction), n in tally.accepted_by.items()}
    attempts = sum(narrated.values()) + tally.retried_attempts
    summary: dict[str, Any] = {
        "narrations": attempts, "retried_attempts": tally.retried_attempts,
        "tokens_in": tally.tokens["in"], "tokens_out": tally.tokens["out"], "busy_s": round(busy, 2),
        "narrations_per_s": round(attempts / busy, 3) if busy else None,
        "tokens_out_per_s": round(tally.tokens["out"] / busy, 1) if busy else None,
        "acceptance": {key: {"narrated": n, "accepted": accepted.get(key, 0),
                             "rate": round(accepted.get(key, 0) / n, 4)} for key, n in sorted(narrated.items())},
    }
    if narrator.is_model and tally.accepted:
        unit, per_actor = ("gpu", narrator.actors.gpus) if narrator.actors.gpus else ("cpu", narrator.actors.cpus)
        summary[f"{unit}_hours_per_1000_accepted"] = round(busy * per_actor / 3600 / tally.accepted * 1000, 4)
    return summary


def versions() -> dict[str, str]:
    import pyarrow
    import ray

    from pipeline import __version__
    return {"tracecot": __version__, "python": platform.python_version(), "ray": ray.__version__,
            "pyarrow": pyarrow.__version__, "platform": platform.platform()}


def stage_timings(funnel: Funnel, stages: tuple[str, ...] = TALLIED_STAGES) -> dict[str, float]:
    """Busy seconds per stage, summed over all actors (so they can exceed the wall time)."""
    return {stage: round(funnel.tally.busy_s[stage], 3) for stage in stages}


def write_report(location: Location, run_id: str, report: dict[str, Any]) -> None:
    location.write_bytes(json.dumps(report, indent=2).encode(), "runs", f"{run_id}.json")


REPORT_KEYS = ("run_id", "mode", "status", "started", "wall_s", "fingerprint", "config", "versions", "funnel",
               "stage_busy_s", "narration", "records_per_s", "output")


def read_report(location: Location, run_id: str | None = None) -> dict[str, Any]:
    """The JSON report of run `run_id`, or of the latest run (run ids sort by their start time)."""
    from pipeline.sources import InputError

    try:
        selector = pafs.FileSelector(location.join("runs"), allow_not_found=True)
        ids = sorted(info.base_name.removesuffix(".json") for info in location.fs.get_file_info(selector)
                     if info.base_name.endswith(".json") and info.type == pafs.FileType.File)
        if not ids:
            raise InputError(f"{location.uri} has no run reports in runs/: is it a tracecot output?")
        if run_id is not None and run_id not in ids:
            raise InputError(f"no run {run_id} in {location.uri_of('runs')} (latest: {ids[-1]})")
        path = location.uri_of("runs", f"{run_id or ids[-1]}.json")
        report = json.loads(location.read_bytes("runs", f"{run_id or ids[-1]}.json"))
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the run reports of {location.uri}: {err}") from err
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not JSON: {err}") from err
    missing = [key for key in REPORT_KEYS if not isinstance(report, dict) or key not in report]
    if missing:
        raise InputError(f"{path} is not a tracecot run report (it has no {missing[0]!r})")
    return report

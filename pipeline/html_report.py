"""The run report as one self-contained HTML page (`runs/<run_id>.html`): charts drawn with matplotlib as inline
SVG (text as paths, so no fonts, scripts or files are fetched), built from the run report JSON alone.

Charts of a run: the funnel, rejects by stage and reason, trace lengths, token counts, acceptance by narrator and
direction, busy time per stage, and items and records over time. Of a synthesis run (`tracecot synthesize`,
`tracecot agree`): the funnel, rejects, the model's answers by kind and outcome, busy time, and items and kept
problems over time. `tracecot report OUTPUT [--run ID]` rebuilds the page from `runs/<ID>.json`.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Callable
from functools import partial
from typing import Any

from matplotlib.figure import Figure

from pipeline.storage import Location

_COLOURS = {"in": "#9db4d3", "out": "#2c6fbb", "rejected": "#d1495b", "accepted": "#2e8b57", "other": "#edae49"}


def write_html(location: Location, run_id: str, report: dict[str, Any]) -> None:
    location.write_bytes(render(report).encode(), "runs", f"{run_id}.html")


def render(report: dict[str, Any]) -> str:
    synthesis = report["mode"] in ("agree", "synthesize")
    charts = _synthesis_charts() if synthesis else _run_charts(report)
    figures = "\n".join(f'<figure class="chart" id="{key}"><figcaption>{html.escape(title)}</figcaption>'
                        f"{_chart(draw, report)}</figure>" for key, title, draw in charts)
    lines = _synthesis_summary(report) if synthesis else _summary(report)
    summary = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>tracecot {'synthesis' if synthesis else 'run'} {html.escape(report['run_id'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
.charts {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1.5em; }}
figure.chart {{ margin: 0; border: 1px solid #ddd; border-radius: 6px; padding: 0.5em; }}
figcaption {{ font-weight: 600; margin-bottom: 0.3em; }}
figure.chart svg {{ width: 100%; height: auto; }}
pre {{ background: #f6f6f6; padding: 1em; overflow: auto; font-size: 12px; }}
</style></head><body>
<h1>tracecot {'synthesis' if synthesis else 'run'} {html.escape(report['run_id'])}</h1>
<ul>{summary}</ul>
<div class="charts">
{figures}
</div>
<h2>Config</h2>
<pre>{html.escape(json.dumps(report['config'], indent=2))}</pre>
<h2>Versions</h2>
<pre>{html.escape(json.dumps(report['versions'], indent=2))}</pre>
</body></html>
"""


Chart = tuple[str, str, Callable[[Any, dict[str, Any]], None]]


def _run_charts(report: dict[str, Any]) -> list[Chart]:
    return [
        ("funnel", "Funnel: items entering and leaving each stage", _funnel),
        ("rejects", "Rejected items by stage and reason", _rejects),
        ("trace-lengths", "Trace length of accepted records (steps, power-of-two buckets)",
         partial(_histogram, measures=["trace_steps"], unit="trace steps")),
        ("tokens", "Tokens per accepted record (64-token buckets)",
         partial(_histogram, measures=["n_tokens", "n_completion_tokens"], unit="tokens",
                 limit=report["config"].get("export", {}).get("max_tokens"))),
        ("acceptance", "Acceptance by narrator and direction", _acceptance),
        ("busy", "Busy time per stage (seconds, summed over actors)", _busy),
        ("throughput", "Items and records over time", _timeline),
    ]


def _synthesis_charts() -> list[Chart]:
    return [
        ("funnel", "Funnel: items entering and leaving each stage", _funnel),
        ("rejects", "Rejected items by stage and reason", _rejects),
        ("generations", "Model answers by kind and outcome", _generations),
        ("busy", "Busy time per stage (seconds, summed over actors)", _busy),
        ("throughput", "Items and kept problems over time", partial(_timeline, kept="problems kept")),
    ]


def _summary(report: dict[str, Any]) -> list[str]:
    funnel = report["funnel"]
    return [
        f"{report['mode']} run, {report['status']}, started {report['started']}, {report['wall_s']} s, "
        f"{report['records_per_s']} records/s",
        f"{funnel['rows_read']} rows read, {funnel['items']} items: {funnel['written_records']} records written, "
        f"{funnel['written_rejected']} rejected, {funnel['skipped_existing']} already in the output",
        f"fingerprint {report['fingerprint']}, tokenizer {report.get('tokenizer')}",
        f"records: {report['output']['records']}",
    ]


def _synthesis_summary(report: dict[str, Any]) -> list[str]:
    funnel = report["funnel"]
    answers = {kind: sum(outcomes.values()) for kind, outcomes in funnel.get("generations", {}).items()}
    return [
        f"{report['mode']} run, {report['status']}, started {report['started']}, {report['wall_s']} s",
        f"{funnel['rows_read']} rows read, {funnel['items']} items: {funnel['written_records']} problems kept, "
        f"{funnel['written_rejected']} rejected, {funnel['skipped_existing']} already in the output",
        "model answers: " + (", ".join(f"{n} {kind}" for kind, n in answers.items()) or "none"),
        f"fingerprint {report['fingerprint']}",
        f"problems: {report['output']['problems']}",
    ]


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prologue: the page embeds the element


def _chart(draw: Callable[[Any, dict[str, Any]], None], report: dict[str, Any]) -> str:
    """One chart as SVG: `draw` fills the axes from the report."""
    figure = Figure(figsize=(7, 3.6), dpi=100)
    draw(figure.add_subplot(), report)
    return _svg(figure)


def _empty(axes: Any, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="#666")
    axes.set_xticks([])
    axes.set_yticks([])


def _funnel(axes: Any, report: dict[str, Any]) -> None:
    stages = report["funnel"]["stages"]
    names = list(stages)[::-1]
    axes.barh(names, [stages[name]["in"] for name in names], color=_COLOURS["in"], label="in")
    axes.barh(names, [stages[name]["out"] for name in names], color=_COLOURS["out"], label="out")
    for y, name in enumerate(names):
        rejected = stages[name]["rejected"]
        if rejected:
            axes.text(stages[name]["in"], y, f"  -{rejected}", va="center", color=_COLOURS["rejected"])
    axes.set_xlabel("items")
    axes.legend(loc="lower right")


def _rejects(axes: Any, report: dict[str, Any]) -> None:
    rejects = report["funnel"]["rejects_by_reason"]
    if not rejects:
        _empty(axes, "no rejected items")
    else:
        top = sorted(rejects.items(), key=lambda item: item[1])[-15:]
        axes.barh([key for key, _ in top], [n for _, n in top], color=_COLOURS["rejected"])
        axes.set_xlabel("items")


def _histogram(axes: Any, report: dict[str, Any], measures: list[str], unit: str, limit: int | None = None) -> None:
    lengths = report.get("lengths", {})
    present = [measure for measure in measures if lengths.get(measure)]
    if not present:
        _empty(axes, "no accepted records")
        return
    edges = sorted({int(edge) for measure in present for edge in lengths[measure]})
    width = 0.8 / len(present)
    for i, (measure, colour) in enumerate(zip(present, (_COLOURS["out"], _COLOURS["other"]), strict=False)):
        counts = {int(edge): n for edge, n in lengths[measure].items()}
        axes.bar([x + i * width for x in range(len(edges))], [counts.get(edge, 0) for edge in edges], width,
                 label=measure, color=colour, align="edge")
    axes.set_xticks(range(len(edges)), [str(edge) for edge in edges], rotation=60, fontsize=7)
    axes.set_xlabel(f"{unit} (bucket's lower edge)")
    axes.set_ylabel("records")
    if limit:
        axes.set_title(f"export.max_tokens = {limit}", fontsize=9)
    axes.legend()


def _acceptance(axes: Any, report: dict[str, Any]) -> None:
    acceptance = report["narration"]["acceptance"]
    if not acceptance:
        _empty(axes, "nothing was narrated")
        return
    keys = list(acceptance)
    positions = range(len(keys))
    axes.bar([p - 0.2 for p in positions], [acceptance[key]["narrated"] for key in keys], 0.4,
             label="narrated", color=_COLOURS["in"])
    axes.bar([p + 0.2 for p in positions], [acceptance[key]["accepted"] for key in keys], 0.4,
             label="accepted", color=_COLOURS["accepted"])
    for p, key in zip(positions, keys, strict=True):
        axes.text(p + 0.2, acceptance[key]["accepted"], f"{acceptance[key]['rate']:.0%}", ha="center",
                  va="bottom", fontsize=8)
    axes.set_xticks(list(positions), keys, fontsize=8)
    axes.set_ylabel("narrations")
    axes.legend()


def _busy(axes: Any, report: dict[str, Any]) -> None:
    busy = report["stage_busy_s"]
    axes.bar(list(busy), list(busy.values()), color=_COLOURS["out"])
    axes.set_ylabel("seconds")


def _generations(axes: Any, report: dict[str, Any]) -> None:
    generations = report["funnel"].get("generations", {})
    if not generations:
        _empty(axes, "no model answers (agree, or nothing new to synthesise)")
        return
    kinds = list(generations)
    bottom = [0] * len(kinds)
    for outcome, colour in (("used", _COLOURS["accepted"]), ("unparseable", _COLOURS["other"]),
                            ("error", _COLOURS["rejected"])):
        counts = [generations[kind].get(outcome, 0) for kind in kinds]
        axes.bar(kinds, counts, bottom=bottom, label=outcome, color=colour)
        bottom = [b + n for b, n in zip(bottom, counts, strict=True)]
    axes.set_ylabel("answers")
    axes.legend()


def _timeline(axes: Any, report: dict[str, Any], kept: str = "records written") -> None:
    timeline = report.get("timeline") or []
    if len(timeline) < 2:
        _empty(axes, "no work ran (everything was already in the output)")
        return
    seconds, items, records = zip(*timeline, strict=True)
    axes.plot(seconds, items, label="items finished", color=_COLOURS["out"], marker=".")
    axes.plot(seconds, records, label=kept, color=_COLOURS["accepted"], marker=".")
    axes.set_xlabel("seconds since the start")
    axes.legend()

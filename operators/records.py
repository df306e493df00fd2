"""Row schemas shared by the stages, and turning rows into tables (a row that cannot be stored becomes a
rejected row)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from operators.ids import content_hash

VERIFICATION = pa.struct([
    ("passed", pa.bool_()),
    ("n_claims", pa.int32()),
    ("n_verified", pa.int32()),
    ("n_contradicted", pa.int32()),
    ("n_unchecked", pa.int32()),
    ("n_unverifiable", pa.int32()),
    ("coverage", pa.float32()),
    ("unverified_share", pa.float32()),
    ("answer_ok", pa.bool_()),
    ("first_failure", pa.string()),
    ("failure_step", pa.int32()),
    # Each sentence of the CoT: its character span, the kinds of claim it makes ("prose": none), its verdict
    # (verified, contradicted, unchecked, unverifiable, content-free) and the trace step it was checked at.
    ("sentences", pa.list_(pa.struct([("start", pa.int32()), ("end", pa.int32()), ("kind", pa.string()),
                                      ("verdict", pa.string()), ("step", pa.int32())]))),
])
# Where a stage worked on a row: its stage, node, step (the stage class) and actor. Work rows only, never written.
PLACEMENT = pa.list_(pa.struct([("stage", pa.string()), ("node", pa.string()), ("step", pa.string()),
                                ("actor", pa.string())]))
MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

# Columns of an accepted record, in order (DESIGN.md, "Output dataset").
RECORD_SCHEMA = pa.schema([
    ("record_id", pa.string()),
    ("problem_id", pa.string()),
    ("source", pa.string()),
    ("license", pa.string()),  # the input row's `license` field, else "unknown"
    ("direction", pa.string()),
    ("code", pa.string()),
    ("entry_point", pa.string()),
    ("input", pa.string()),
    ("output", pa.string()),
    ("trace", pa.string()),
    ("trace_steps", pa.int32()),
    ("cot", pa.string()),
    ("answer", pa.string()),
    ("messages", MESSAGES),
    ("prompt", pa.string()),  # the user turn of `messages`, for trainers that mask the prompt
    ("completion", pa.string()),  # the assistant turn: the CoT ending in its [ANSWER] block
    ("n_tokens", pa.int32()),  # prompt + completion tokens (export.tokenizer, no special tokens)
    ("n_completion_tokens", pa.int32()),
    ("narrator", pa.string()),
    ("attempt", pa.int32()),  # model narrators: 0 for the first answer, k after k retries with feedback
    ("verification", VERIFICATION),
    ("isolation", pa.list_(pa.string())),
    ("fingerprint", pa.string()),
    ("run_id", pa.string()),
])

# Rejected rows: where they stopped and why, plus whatever of the record existed at that point.
REJECT_SCHEMA = pa.schema([
    ("record_id", pa.string()),
    ("problem_id", pa.string()),
    ("source", pa.string()),
    ("direction", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),
    ("message", pa.string()),
    ("raw", pa.string()),
    *[field for field in RECORD_SCHEMA if field.name not in
      ("record_id", "problem_id", "source", "direction")],
])

# What flows between stages: every column any stage needs, all nullable.
WORK_SCHEMA = pa.schema([
    *REJECT_SCHEMA,
    ("expected_output", pa.string()),
    ("directions", pa.list_(pa.string())),
    ("record_ids", pa.list_(pa.string())),
    ("rows_read", pa.int32()),
    ("placement", PLACEMENT),  # each stage that worked on the row, and on which node and actor
    ("retried", pa.bool_()),  # a rejected model attempt that was asked again: kept, but not the item's outcome
    ("tokens_in", pa.int64()),
    ("tokens_out", pa.int64()),
    ("skipped", pa.bool_()),
    ("t_ingest", pa.float64()),
    ("t_execute", pa.float64()),
    ("t_narrate", pa.float64()),
    ("t_verify", pa.float64()),
    ("t_export", pa.float64()),
])


# Problem synthesis (`tracecot agree`, `tracecot synthesize`): what dual agreement saw and decided.
AGREEMENT = pa.struct([
    ("score", pa.float64()),  # |tests passed| × sqrt(votes), near-duplicates one vote (operators/synth/agreement.py)
    ("cluster_size", pa.int32()),  # votes: the top cluster's solutions, near-duplicates once
    ("clusters", pa.int32()),
    ("solutions_seen", pa.int32()),
    ("solutions_distinct", pa.int32()),
    ("tests_seen", pa.int32()),
    ("tests_distinct", pa.int32()),
    ("tests_kept", pa.int32()),
    ("set_aside", pa.string()),  # JSON: solutions and tests not used, by why (duplicate, unparseable, …)
])

# A kept problem: the generic input format (`id`, `code`, `entry_point`, `inputs`, `outputs`) plus provenance.
PROBLEM_SCHEMA = pa.schema([
    ("record_id", pa.string()),
    ("id", pa.string()),
    ("seed_id", pa.string()),  # the input row it came from (a seed text, a concept, a function, candidates)
    ("source", pa.string()),
    ("license", pa.string()),
    ("code", pa.string()),
    ("entry_point", pa.string()),
    ("inputs", pa.list_(pa.string())),
    ("outputs", pa.list_(pa.string())),
    ("instruction", pa.string()),
    ("concept", pa.string()),
    ("difficulty", pa.string()),  # as the instruction was rated (synth.difficulties), "" when it was not
    ("solutions", pa.list_(pa.string())),  # kept: the top cluster's solutions (the first is `code`)
    ("tests", pa.list_(pa.string())),  # kept: the tests they pass (rejected: every distinct candidate)
    ("generator", pa.string()),  # the model that wrote the candidates, or "input" for `tracecot agree`
    ("agreement", AGREEMENT),
    ("isolation", pa.list_(pa.string())),
    ("fingerprint", pa.string()),
    ("run_id", pa.string()),
])

SYNTH_REJECT_SCHEMA = pa.schema([
    ("record_id", pa.string()),
    ("id", pa.string()),
    ("source", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),
    ("message", pa.string()),
    ("raw", pa.string()),
    *[field for field in PROBLEM_SCHEMA if field.name not in ("record_id", "id", "source")],
])
SYNTH_KINDS = ("seed", "concept", "instruction", "function", "candidates")

SYNTH_WORK_SCHEMA = pa.schema([
    *SYNTH_REJECT_SCHEMA,
    ("kind", pa.string()),  # what the row holds, one of SYNTH_KINDS; stages work on their kinds only
    ("passed", pa.list_(pa.list_(pa.bool_()))),  # [solution][test], distinct solutions and tests
    ("seed", pa.string()),  # synthesize: the text concepts are drawn from
    ("signature", pa.string()),  # synthesize: the function header an instruction asks for
    ("generations", pa.string()),  # JSON [[kind, outcome, n], …]: the model answers this row was made from
    ("rows_read", pa.int32()),
    ("placement", PLACEMENT),
    ("tokens_in", pa.int64()),
    ("tokens_out", pa.int64()),
    ("skipped", pa.bool_()),
    ("t_ingest", pa.float64()),
    ("t_generate", pa.float64()),
    ("t_execute", pa.float64()),
    ("t_agree", pa.float64()),
    ("t_dedup", pa.float64()),
])


def table(rows: list[dict[str, Any]], schema: pa.Schema = WORK_SCHEMA) -> pa.Table:
    """The rows as a table; a row that cannot be stored (a value of the wrong type, text that is not valid
    Unicode) becomes a rejected row saying so, instead of failing the whole batch."""
    columns = [{name: row.get(name) for name in schema.names} for row in rows]
    try:
        return pa.Table.from_pylist(columns, schema=schema)
    except (pa.ArrowException, UnicodeError, OverflowError, TypeError, ValueError):
        return pa.Table.from_pylist([_storable(row, schema) for row in columns], schema=schema)


def _storable(row: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    try:
        pa.Table.from_pylist([row], schema=schema)
        return row
    except (pa.ArrowException, UnicodeError, OverflowError, TypeError, ValueError) as err:
        kept = {key: row.get(key) for key in ("record_id", "problem_id", "source", "direction", "rows_read")}
        kept = {key: value if isinstance(value, int | None) else str(value).encode("utf-8", "backslashreplace")
                .decode() for key, value in kept.items()}
        return reject({**kept, "record_id": kept["record_id"] or content_hash("unstorable", repr(row)[:10_000])},
                      row.get("stage") or "store", "internal_error", f"row cannot be stored: {type(err).__name__}")


def reject(row: dict[str, Any], stage: str, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    """Turn a work row into a rejected one, keeping what it already has."""
    return {**row, **extra, "stage": stage, "reason": reason, "message": message[:500]}

"""Training-ready columns on accepted rows: `prompt` / `completion` beside `messages`, and their token counts.

Rows longer than `max_tokens` (prompt plus completion) are rejected as `too_long`, so a trainer's truncation
never cuts off a record's `[ANSWER]` block.
"""

from __future__ import annotations

from typing import Any

from operators.dataset import tokens
from operators.records import reject
from operators.stages.base import LIGHT, Placement, RowStage


class TrainingColumns(RowStage):
    name = "export"
    placement = Placement(cpus=LIGHT)  # tokenizing: light, a fixed pool as large as the sink's

    def __init__(self, tokenizer: str, max_tokens: int | None = None) -> None:
        self.tokenizer = tokens.load(tokenizer)
        self.max_tokens = max_tokens

    def process_rows(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        prompts = [_turn(row, "user") for row in rows]
        completions = [_turn(row, "assistant") for row in rows]
        prompt_tokens = tokens.count(self.tokenizer, prompts)
        completion_tokens = tokens.count(self.tokenizer, completions)
        out = []
        for row, prompt, completion, n_prompt, n_completion in zip(
                rows, prompts, completions, prompt_tokens, completion_tokens, strict=True):
            row = {**row, "prompt": prompt, "completion": completion, "n_tokens": n_prompt + n_completion,
                   "n_completion_tokens": n_completion}
            if self.max_tokens is not None and row["n_tokens"] > self.max_tokens:
                row = reject(row, self.name, "too_long",
                             f"{row['n_tokens']} tokens (prompt and completion) > export.max_tokens {self.max_tokens}")
            out.append([row])
        return out


def _turn(row: dict[str, Any], role: str) -> str:
    """The text of the record's one message in `role` (a record is one user turn and one assistant turn)."""
    return next((message["content"] for message in row.get("messages") or [] if message["role"] == role), "")

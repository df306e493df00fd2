"""Narrate stage (template narrator): one traced call → one narration per requested direction."""

from __future__ import annotations

from typing import Any

from operators.cot.claims import answer
from operators.cot.narrate import TemplateNarrator
from operators.cot.prompts import messages, student_prompt
from operators.stages.base import RowStage
from operators.trace.events import TracedCall


class NarrateStage(RowStage):
    """Ray Data stage: one traced execution → one narration per requested direction."""

    name = "narrate"

    def __init__(self, full_iterations: int = 2) -> None:
        self.narrator = TemplateNarrator(full_iterations)

    def process(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        call = TracedCall.from_row(row)
        out = []
        for direction, rid in zip(row["directions"], row["record_ids"], strict=True):
            write = self.narrator.forward if direction == "forward" else self.narrator.backward
            cot = write(call, rid)
            prompt = student_prompt(direction, row["code"], row["entry_point"], row["input"], row["output"])
            out.append({**row, "direction": direction, "record_id": rid, "cot": cot,
                        "answer": answer(row["entry_point"], row["input"], row["output"]),
                        "messages": messages(prompt, cot), "narrator": self.narrator.name, "stage": "narrate"})
        return out

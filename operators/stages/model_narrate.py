"""The model narrator stage: teacher prompts in, model-written CoT out, each attempt checked by the verifier.

For every (call, direction) the model sees the code, the known side, a compact trace and the claim forms
(`operators.cot.prompts.teacher_prompt`). Its answer is checked with the same `Verifier` the verify stage uses;
a rejected attempt is kept (it goes to `rejected/` marked `retried`) and the model is asked again, up to
`retries` times, with the verifier's first failing claim and the trace step it contradicts. The last attempt
goes on to the verify stage, which decides for good (and runs a backward answer's input in the sandbox; an
answer whose input fails there is not retried).

Engine calls are bounded by `timeout_s`; an engine that raises is called once more, then the items of that
call are rejected as `narrator_error` and the engine is rebuilt for the next batch.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from operators.cot.claims import answer
from operators.cot.prompts import messages, parse_completion, render_event, student_prompt, teacher_prompt
from operators.cot.verify import Report, Verifier, reason_for
from operators.ids import content_hash
from operators.llm.backends import Backend, Completion, Conversation, Sampling, make_backend
from operators.records import reject
from operators.stages.base import RowStage
from operators.trace.events import TracedCall


@dataclass
class _Narration:
    """One (call, direction) on its way through the attempts."""

    index: int  # of the row in its batch
    row: dict[str, Any]
    direction: str
    record_id: str
    call: TracedCall
    conversation: Conversation = field(default_factory=list)


class ModelNarrateStage(RowStage):
    """The narrate stage with a model (an actor holding one engine): narrate, verify, retry with feedback.

    Its placement (CPUs, GPUs, pool size, node resource) comes from `narrator.actors` in the config."""

    name = "narrate"

    def __init__(self, backend: str, model: str | None, sampling: Sampling, options: dict[str, Any],
                 retries: int = 1, timeout_s: float = 600.0, prompt_budget_chars: int = 6000,
                 min_coverage: float = 0.5, min_claims: int = 1, full_iterations: int = 2,
                 strict: bool = True) -> None:
        self.settings = (backend, model, sampling, options)
        self.backend: Backend | None = None
        self.broken = ""  # why the engine could not start: its items are rejected, the run goes on
        self._start_engine()
        self.narrator = f"{backend}:{model}"
        self.retries = retries
        self.timeout_s = timeout_s
        self.budget = prompt_budget_chars
        self.verifier = Verifier(min_coverage, min_claims, full_iterations, strict)
        self._watchdog = ThreadPoolExecutor(max_workers=1)

    def process_rows(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Every attempt at every narration of the batch, grouped by the row it came from; the engine is asked
        for all pending narrations of the batch at once, once per attempt."""
        pending = [narration for index, row in enumerate(rows) for narration in self._narrations(index, row)]
        produced: list[list[dict[str, Any]]] = [[] for _ in rows]
        for attempt in range(self.retries + 1):
            completions = self._generate([n.conversation for n in pending])
            again = []
            for narration, completion in zip(pending, completions, strict=True):
                row, report = self._attempt(narration, completion, attempt)
                if report is not None and not report.passed and attempt < self.retries:
                    row = {**reject(row, "narrate", reason_for(report), report.first_failure or ""), "retried": True}
                    narration.conversation += [{"role": "assistant", "content": completion.text},
                                               {"role": "user", "content": _feedback(narration, report)}]
                    again.append(narration)
                produced[narration.index].append(row)
            pending = again
            if not pending:
                break
        return produced

    def _narrations(self, index: int, row: dict[str, Any]) -> list[_Narration]:
        call = TracedCall.from_row(row)
        narrations = []
        for direction, rid in zip(row["directions"], row["record_ids"], strict=True):
            prompt = teacher_prompt(direction, call, self.budget)
            narrations.append(_Narration(index, row, direction, rid, call, [{"role": "user", "content": prompt}]))
        return narrations

    def _attempt(self, narration: _Narration, completion: Completion,
                 attempt: int) -> tuple[dict[str, Any], Report | None]:
        """The row for one attempt and the verifier's report on it (None when the engine gave no answer)."""
        row = narration.row
        rid = narration.record_id if attempt == 0 else content_hash(narration.record_id, "attempt", attempt)
        base = {**row, "direction": narration.direction, "record_id": rid, "narrator": self.narrator,
                "attempt": attempt, "tokens_in": completion.tokens_in, "tokens_out": completion.tokens_out,
                "stage": "narrate"}
        if completion.error is not None:
            return reject(base, "narrate", "narrator_error", completion.error), None
        cot = parse_completion(completion.text) or completion.text.strip()
        prompt = student_prompt(narration.direction, row["code"], row["entry_point"], row["input"], row["output"])
        report, _ = self.verifier.check(narration.direction, cot, narration.call)
        return {**base, "cot": cot, "answer": answer(row["entry_point"], row["input"], row["output"]),
                "messages": messages(prompt, cot), "verification": report.as_dict()}, report

    def _start_engine(self) -> None:
        try:
            self.backend = make_backend(*self.settings)
            self.broken = ""
        except Exception as err:  # a model that cannot load must not make Ray restart this actor forever
            self.broken = f"engine did not start: {type(err).__name__}: {str(err)[:300]}"

    def _generate(self, conversations: list[Conversation]) -> list[Completion]:
        """The engine's completions, each call bounded in time; a failing engine is tried twice, then rebuilt."""
        if not conversations:
            return []
        if self.broken:
            return [Completion(error=self.broken) for _ in conversations]
        problem = ""
        for _ in range(2):
            future = self._watchdog.submit(self.backend.generate, conversations)
            try:
                return future.result(timeout=self.timeout_s)
            except FutureTimeout:
                problem = f"engine call timed out after {self.timeout_s:.0f} s"
                self._watchdog = ThreadPoolExecutor(max_workers=1)  # the stuck thread is abandoned with its engine
                self._start_engine()
                if self.broken:
                    break
            except Exception as err:  # an engine crash fails this call only
                problem = f"engine failed: {type(err).__name__}: {str(err)[:200]}"
        return [Completion(error=problem) for _ in conversations]


def _feedback(narration: _Narration, report: Report) -> str:
    """What the model is told after a rejected attempt: the first failing sentence, what is wrong with it, and
    the trace step it was checked at."""
    step = report.failure_step
    where = f" The trace at that step: {render_event(narration.call.events[step])}." \
        if step is not None and 0 <= step < len(narration.call.events) else ""
    return (f"A checker compared your reasoning with the real execution and found a problem: "
            f"{report.first_failure}.{where} Write the whole reasoning again, correcting it; state every fact in "
            f"the checkable forms and nothing else, and end with the [ANSWER] line.")

"""Template narration: forward and backward reasoning written from the trace, true by construction.

Every value stated comes from the trace and is written in the claim forms of `operators.cot.claims`, so the
verifier can check each one. Long loops are told in part: the first and last `full_iterations` iterations in
full, the ones between summarised with the state they leave behind. Phrasings vary by a choice seeded with
the record's id, so the text is reproducible but not monotonous.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from operators.cot.claims import answer, quote
from operators.cot.sentences import fact_in
from operators.trace.events import Event, TracedCall
from operators.trace.structure import LoopInstance, TraceView
from operators.trace.values import parse_literal

NARRATOR_VERSION = "3"
_OPAQUE = ("<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>", "<lambda>")
_COMPREHENSION = {"<listcomp>": "list", "<dictcomp>": "dict", "<setcomp>": "set"}
_SNIPPET = 70


def short(src: str) -> str:
    return quote(src if len(src) <= _SNIPPET else src[: _SNIPPET - 1] + "…")


def is_opaque(func: str) -> bool:
    return func.endswith(_OPAQUE)


class _Story:
    """Sentences plus the seeded choice of phrasings for one record."""

    def __init__(self, key: str, names: frozenset[str]) -> None:
        self.rng = random.Random(key)
        self.names = names
        self.sentences: list[str] = []

    def say(self, *options: str) -> None:
        self.sentences.append(self.rng.choice(options))

    def say_prose(self, *options: str) -> None:
        """A sentence that states nothing: one whose words cannot be read as the code's names."""
        self.say(*[o for o in options if fact_in(o, self.names) is None] or ["Let's go."])

    def changes(self, changes: dict[str, str | None], past: bool = False, equals: bool = False) -> str:
        verb = ("=",) if equals else ("became", "was set to", "was updated to") if past else (
            "becomes", "is set to", "=", "is now", "takes the value", "is updated to")
        parts = []
        for name, value in changes.items():
            if value is None:
                parts.append(f"`{name}` is deleted")
            elif value.endswith("…"):
                parts.append(f"`{name}` changes (its value is too long to show)")
            else:
                parts.append(f"`{name}` {self.rng.choice(verb)} {quote(value)}")
        if len(parts) > 1:
            return ", ".join(parts[:-1]) + " and " + parts[-1]
        return parts[0] if parts else ""

    def text(self) -> str:
        return " ".join(self.sentences)


class TemplateNarrator:
    """Writes forward and backward CoT from a trace; no model involved."""

    name = "template"

    def __init__(self, full_iterations: int = 2) -> None:
        self.full = full_iterations

    def forward(self, call: TracedCall, key: str) -> str:
        """Input → output reasoning; `key` (the record id) seeds the choice of phrasings."""
        view = TraceView(call.events, call.code)
        story = _Story(key, view.structure.names)
        story.say_prose("Let's execute the code step by step.", "We trace the call step by step.",
                        "Let's run the function by hand.")
        index = 0
        while index < len(call.events):
            index = self._forward_event(story, view, index)
        story.say(f"So the output is {quote(call.output)}.", f"The result is therefore {quote(call.output)}.",
                  f"So the final result is {quote(call.output)}.")
        return story.text() + "\n\n" + answer(call.entry_point, call.input, call.output)

    def backward(self, call: TracedCall, key: str) -> str:
        """Output → input reasoning, from the return statement back to the arguments."""
        view = TraceView(call.events, call.code)
        story = _Story(key, view.structure.names)
        entry_point, input_text, output_text = call.entry_point, call.input, call.output
        top = call.events[0]["frame"]
        story.say(f"We need an input that makes `{entry_point}` produce {quote(output_text)}.",
                  f"We look for arguments that lead `{entry_point}` to the output {quote(output_text)}.")
        story.say_prose("Let's work backwards.", "We reason backwards, step by step.")
        for index, skipped in self._backward_steps(view, top):
            if skipped is None:
                self._backward_event(story, view, index)
            else:
                self._backward_summary(story, view, index, skipped)
        call_text = f"Hence calling {quote(f'{entry_point}({input_text})')} produces the required output."
        if input_text:
            story.say(f"So the input {quote(input_text)} gives {quote(output_text)}.", call_text)
        else:  # no arguments: there is no input to quote
            story.say(call_text)
        return story.text() + "\n\n" + answer(entry_point, input_text, output_text)

    # forward

    def _forward_event(self, story: _Story, view: TraceView, index: int) -> int:
        """Narrate event `index`; return the index of the next event to narrate."""
        event = view.events[index]
        kind = event["event"]
        if is_opaque(event["func"]):
            if kind == "call":
                self._comprehension(story, view, index)
        elif kind == "call":
            self._call(story, event)
        elif kind == "line":
            loop = view.loop_of.get(index)
            if loop is not None:
                return self._loop_header(story, view, index, loop)
            self._line(story, view, index)
        elif kind == "return":
            self._return(story, event)
        elif kind == "exception" and not _propagating(view.events, index):
            story.say(f"Line {event['line']} raises `{event['exc_type']}`.")
        return index + 1

    def _call(self, story: _Story, event: Event) -> None:
        params = story.changes(event.get("changes", {}), equals=True)
        func = event["func"]
        if event["depth"] == 0:
            story.say(f"We begin with the call of `{func}`, where {params}." if params else
                      f"We begin with the call of `{func}`, which takes no arguments.")
        else:
            story.say(f"This calls `{func}` with {params}." if params else f"This calls `{func}`.",
                      f"Now the program calls `{func}`" + (f", where {params}." if params else "."))

    def _line(self, story: _Story, view: TraceView, index: int) -> None:
        event = view.events[index]
        changes = story.changes(event.get("changes", {}))
        taken = view.branch_taken(index)
        line, src = event["line"], short(event["src"])
        if taken is not None:
            outcome = "so the branch runs" if taken else "so the branch is skipped"
            verdict = story.rng.choice([f"is {taken}", "holds" if taken else "fails"])
            story.say(f"The condition on line {line} ({src}) {verdict}{_deciding(view, index)}, {outcome}.")
        elif changes:
            story.say(f"Line {line} ({src}): {changes}.", f"On line {line}, {src} runs and {changes}.",
                      f"After line {line} ({src}), {changes}.")

    def _loop_header(self, story: _Story, view: TraceView, index: int, loop: LoopInstance) -> int:
        event = view.events[index]
        position = view.visit[index]
        line = event["line"]
        if not view.enters_body(index):
            story.say(f"The loop on line {line} finishes after {_times(loop.iterations)}.",
                      f"The loop on line {line} runs {_count(loop.iterations)}.")
            return index + 1
        if self.full <= position < loop.iterations - self.full and loop.iterations > 2 * self.full + 1:
            return self._skip_iterations(story, view, index, loop)
        changes = story.changes(event.get("changes", {}))
        story.say(f"Iteration {position + 1} of the loop on line {line}" + (f": {changes}." if changes else "."))
        return index + 1

    def _skip_iterations(self, story: _Story, view: TraceView, index: int, loop: LoopInstance) -> int:
        resume_position = loop.iterations - self.full
        resume = loop.headers[resume_position]
        state = _state_after_skip(view, loop, index, resume, at=resume)
        line = view.events[index]["line"]
        story.say(f"Iterations {view.visit[index] + 1} to {resume_position} of the loop on line {line} "
                  "are not told in full.")
        story.say(_resume(resume_position + 1, line, state))
        return resume + 1

    def _comprehension(self, story: _Story, view: TraceView, index: int) -> None:
        """A comprehension is told by what it builds; calls made inside it are still narrated."""
        event = view.events[index]
        kind = _COMPREHENSION.get(event["func"].rsplit(".", 1)[-1])
        returned = view.events[_frame_end(view.events, index)]
        if kind and "value" in returned and not returned["value"].endswith("…"):
            story.say(f"The {kind} comprehension on line {event['line']} builds {quote(returned['value'])}.")

    def _return(self, story: _Story, event: Event) -> None:
        func = event["func"]
        if "raised" in event:
            story.say(f"`{func}` stops there because of the `{event['raised']}`.")
        elif event["value"].endswith("…"):
            story.say(f"`{func}` returns a value too long to show.")
        elif "yield" in event["src"]:
            story.say(f"`{func}` yields {quote(event['value'])}.")
        else:
            story.say(f"`{func}` returns {quote(event['value'])}.", f"So `{func}` returns {quote(event['value'])}.")

    # backward

    def _backward_steps(self, view: TraceView, top: int) -> Iterator[tuple[int, LoopInstance | None]]:
        """The top frame's events from last to first; the middle of a long loop comes as one summary step."""
        index = len(view.events) - 1
        while index >= 0:
            loop = view.loop_of.get(index)
            if view.events[index]["frame"] != top:
                index -= 1
                continue
            yield index, None
            if loop is not None and loop.iterations > 2 * self.full + 1 and \
                    view.visit[index] == loop.iterations - self.full:
                yield loop.headers[self.full], loop
                index = loop.headers[self.full]
            index -= 1

    def _backward_event(self, story: _Story, view: TraceView, index: int) -> None:
        event = view.events[index]
        kind, line, src = event["event"], event["line"], short(event["src"])
        changes = story.changes(event.get("changes", {}), past=True, equals=kind == "call")
        if kind == "return" and "value" in event:
            story.say(f"`{event['func']}` returns {quote(event['value'])} at {src}.")
        elif kind == "call":
            params = changes or "no arguments"
            story.say(f"So, at line {line}, `{event['func']}` was called with {params}.",
                      f"Going back to line {line}, the call of `{event['func']}` must have had {params}.")
        elif index in view.loop_of:
            loop = view.loop_of[index]
            if not view.enters_body(index):
                story.say(f"Before that, the loop on line {line} finishes after {_times(loop.iterations)}.")
            else:
                position = view.visit[index] + 1
                story.say(f"That was iteration {position} of the loop on line {line}"
                          + (f", where {changes}." if changes else "."))
        elif (taken := view.branch_taken(index)) is not None:
            story.say(f"On the way there, the condition on line {line} ({src}) was {taken}"
                      f"{_deciding(view, index, past=True)}.")
        elif changes:
            story.say(f"Before that, line {line} ({src}) ran: {changes}.",
                      f"Going back, line {line} ({src}) ran: {changes}.")

    def _backward_summary(self, story: _Story, view: TraceView, header: int, loop: LoopInstance) -> None:
        """Skipped iterations, told by the state at the start of the first of them."""
        first = view.visit[header] + 1
        last = loop.iterations - self.full
        state = _state_after_skip(view, loop, header, loop.headers[last], at=header)
        story.say(f"Iterations {first} to {last} of the loop on line {loop.line} are not told in full either.")
        story.say(_resume(first, loop.line, state))  # claims about steps need an iteration claimed first


_CONSTANTS = ("True", "False", "None")


def _deciding(view: TraceView, index: int, past: bool = False) -> str:
    """`, as `x` is `3`` for the local values a condition reads (short ones only, to stay readable)."""
    values = []
    for name in view.structure.condition_names.get(view.events[index]["line"], []):
        value = view.state_after(index, name)
        if value is not None and len(value) <= 40 and "`" not in value:
            values.append(f"`{name}` {'was' if past else 'is'} `{value}`")
    comparison = _comparison(view, index)
    if comparison:
        values.append(comparison)
    return ", as " + " and ".join(values) if values else ""


def _comparison(view: TraceView, index: int) -> str | None:
    """`` `5` > `2` is True `` for a condition comparing two names or constants, with the values it compared."""
    parts = view.structure.comparisons.get(view.events[index]["line"])
    if parts is None:
        return None
    left, op, right = parts  # only the sides can name variables: `in` is an operator, not a name
    left, right = (view.state_after(index, p) if p.isidentifier() and p not in _CONSTANTS else p
                   for p in (left, right))
    if left is None or right is None or any(len(v) > 40 or "`" in v or "\n" in v or not _literal(v)
                                            for v in (left, right)):
        return None  # only what the verifier can check: short literal values
    return f"`{left}` {op} `{right}` is {view.branch_taken(index)}"


def _literal(text: str) -> bool:
    try:
        parse_literal(text)
    except ValueError:
        return False
    return True


def _times(n: int) -> str:
    return "1 iteration" if n == 1 else f"{n} iterations"


def _count(n: int) -> str:
    """How often, in words where they are short: "once", "twice", "five times", "14 times"."""
    words = {0: "zero times", 1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times",
             6: "six times", 7: "seven times", 8: "eight times", 9: "nine times", 10: "ten times"}
    return words.get(n, f"{n} times")


def _resume(iteration: int, line: int, state: list[str]) -> str:
    """The sentence that picks a loop up again after iterations told in summary, with the state then."""
    return f"When iteration {iteration} of the loop on line {line} begins" + (", " + ", ".join(state) if state
                                                                              else "") + "."


def _state_after_skip(view: TraceView, loop: LoopInstance, start: int, end: int, at: int) -> list[str]:
    """State claims ("`x` is `v`") once loop header `at` has run, for the variables the skipped events
    `start:end` changed and the header itself changes."""
    names = _changed_names([*view.events[start:end], view.events[at]], loop.frame)
    return [f"`{n}` is {quote(v)}" for n in names
            if (v := view.state_after(at, n)) is not None and not v.endswith("…")]


def _changed_names(events: list[Event], frame: int) -> list[str]:
    names: dict[str, None] = {}
    for event in events:
        if event["frame"] == frame:
            names.update(dict.fromkeys(event.get("changes", {})))
    return list(names)


def _frame_end(events: list[Event], index: int) -> int:
    """Index of the return event that closes the frame opened at `index` (or the last event)."""
    frame = events[index]["frame"]
    for end in range(index + 1, len(events)):
        if events[end]["frame"] == frame and events[end]["event"] == "return":
            return end
    return len(events) - 1


def _propagating(events: list[Event], index: int) -> bool:
    """An exception event that only re-reports an exception raised in a callee."""
    return index > 0 and events[index - 1]["event"] == "return" and "raised" in events[index - 1]

"""The verifier: every sentence of a CoT gets a verdict, and every claim in it is checked against the trace.

A CoT is split into sentences (`operators.cot.sentences`). The claims of each (`operators.cot.claims`) are
aligned with the trace by a cursor that walks it forwards (forward reasoning) or backwards (backward
reasoning): each claim is matched at or after the cursor, so a claim about iteration 3 is checked against
iteration 3. A value claim right after a claim about a step (a line, an iteration, a call) must hold at that
very step — a change is that step's change, a stated value the value once the step has run; one with no such
anchor is matched with the variable's next change. Restated inputs, outputs, targets and conclusions are
checked against the call. Expressions in claims (`len(s)`) are evaluated by a restricted interpreter over the
traced values, never by `eval`.

Verdicts: *verified* (every claim holds and nothing else is said), *contradicted* (a claim is false),
*unchecked* (a claim the trace cannot decide), *unverifiable* (the sentence states something — a value, a
number, a name from the code, a line, loop, condition, input or output — that no claim of it checks) and
*content-free* ("Let's run it by hand."). Strict mode (the default) accepts a CoT only when every sentence is
verified or content-free. The final answer is checked too: forward, the output must equal the traced output;
backward, the answer's input is run in the sandbox by the caller (`check_backward_answer`) and must give the
output.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from operators.cot.claims import ANSWER, Claim, body, extract, number
from operators.cot.expressions import UnknownName, Unsupported, evaluate
from operators.cot.narrate import is_opaque
from operators.cot.sentences import fact_in, split
from operators.sandbox.calls import arguments_text
from operators.trace.events import Event, TracedCall
from operators.trace.structure import LoopInstance, TraceView
from operators.trace.values import canonical, render

VERIFIER_VERSION = "3"
_HEADER = re.compile(r"^(?:if|elif|while)\s+")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "in": lambda a, b: a in b, "not in": lambda a, b: a not in b,
}
_FREE_DEPTH = ("calls", "returns", "comprehension", "raises")  # found by function name, at any depth
_LOOP_KINDS = ("iteration", "iterations", "loopcount")  # claims that may leave the iteration the text is in
# Claims a result claim may stand beside in one sentence; beside any other ("line 2 runs and we get `v`")
# "the result" may mean that step's result, which is not what is checked.
_RESULT_COMPANIONS = {"result", "target", "input", "invocation", "returns"}
_HOLDS = ("holds", "held", "is met", "was met", "is satisfied", "was satisfied", "passes", "passed")
_TAKEN = ("runs", "ran", "is taken", "was taken", "is executed", "was executed", "is entered", "was entered",
          "enter")
VERDICTS = ("verified", "contradicted", "unchecked", "unverifiable", "content-free")


@dataclass
class Sentence:
    """One sentence's verdict: its span in the CoT, the kinds of claim it makes, the trace step it was
    checked at (the cursor's, once its claims are aligned)."""

    start: int
    end: int
    kind: str
    verdict: str
    step: int | None


@dataclass
class Report:
    passed: bool = False
    n_claims: int = 0
    n_verified: int = 0
    n_contradicted: int = 0
    n_unchecked: int = 0
    n_unverifiable: int = 0  # sentences that state what no claim checks
    coverage: float = 0.0
    unverified_share: float = 0.0  # of the sentences that say something, the share not verified
    answer_ok: bool = False
    first_failure: str | None = None
    failure_step: int | None = None
    sentences: list[Sentence] = field(default_factory=list)
    covered: set[tuple[int, str]] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The report as a record stores it (`covered` is bookkeeping); built by hand: `dataclasses.asdict`
        deep-copies every field, `covered` too, and was a tenth of a verification's time."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("covered", "sentences")}
        return {**out, "sentences": [dict(vars(sentence)) for sentence in self.sentences]}

    def fail(self, message: str, step: int | None = None) -> None:
        """Record why the CoT fails, unless an earlier reason is already recorded."""
        if self.first_failure is None:
            self.first_failure, self.failure_step = message, step


@dataclass
class ParsedAnswer:
    entry_point: str
    input_text: str
    output_text: str
    blocks: int = 1  # how many [ANSWER] blocks the CoT has
    trailing: bool = False  # whether text follows the last one


def parse_answer(cot: str) -> ParsedAnswer | None:
    """The last `[ANSWER]assert f(<input>) == <output>[/ANSWER]` of a CoT, or None."""
    matches = list(ANSWER.finditer(cot))
    if not matches:
        return None
    body = matches[-1].group("body").strip()
    try:
        module = ast.parse(body)
    except (SyntaxError, ValueError, RecursionError):
        return None
    if len(module.body) != 1 or "#" in _code_only(body):  # one bare assert: no comment, no second statement
        return None
    test = module.body[0]
    if not (isinstance(test, ast.Assert) and test.msg is None and isinstance(test.test, ast.Compare)
            and len(test.test.ops) == 1
            and isinstance(test.test.ops[0], ast.Eq) and isinstance(test.test.left, ast.Call)
            and isinstance(test.test.left.func, ast.Name)):
        return None
    call = test.test.left
    output = ast.get_source_segment(body, test.test.comparators[0]) or ""
    trailing = bool(cot[matches[-1].end():].strip())
    return ParsedAnswer(call.func.id, arguments_text(call, body), output, len(matches), trailing)


def same_arguments(a: str, b: str) -> bool:
    """Whether two argument-list texts are the same expressions (compared as syntax trees)."""
    try:
        return ast.dump(ast.parse(f"_({a})", mode="eval")) == ast.dump(ast.parse(f"_({b})", mode="eval"))
    except (SyntaxError, ValueError, RecursionError):
        return False


def literal_arguments(args_text: str) -> bool:
    """Whether an argument list is made of literals only (checked without evaluating anything)."""
    try:
        call = ast.parse(f"_({args_text})", mode="eval").body
        for node in [*call.args, *(kw.value for kw in call.keywords)]:  # type: ignore[attr-defined]
            ast.literal_eval(node)
    except (SyntaxError, ValueError, TypeError, AttributeError, RecursionError):
        return False
    return True


def same_value(claimed: str, traced: str | None) -> bool:
    """A claimed value text matches the trace's canonical text (literals compared after canonicalising; a
    literal that repeats a dict key or set element is not the value it collapses to)."""
    if traced is None:
        return False
    return claimed.strip() == traced or (canonical(claimed) == traced and not _repeats(claimed))


def _repeats(text: str) -> bool:
    """Whether a literal's text repeats a key of one of its dicts or an element of one of its sets."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
        for node in ast.walk(tree):
            items = node.keys if isinstance(node, ast.Dict) else node.elts if isinstance(node, ast.Set) else None
            if items is not None:
                values = [ast.literal_eval(item) for item in items if item is not None]
                if len({repr(v) for v in values}) < len(values) or len(set(values)) < len(values):
                    return True
    except (SyntaxError, ValueError, TypeError, RecursionError):
        return False
    return False


def _code_only(source: str) -> str:
    """`source` with its string literals blanked, so a `#` left is a comment."""
    return re.sub(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"", "''", source)


class Verifier:
    """Checks a CoT against a trace; configuration in the constructor, one `check` per record."""

    def __init__(self, min_coverage: float = 0.5, min_claims: int = 1, full_iterations: int = 2,
                 strict: bool = True) -> None:
        self.min_coverage = min_coverage
        self.min_claims = min_claims
        self.full_iterations = full_iterations
        self.strict = strict

    def check(self, direction: str, cot: str, call: TracedCall) -> tuple[Report, ParsedAnswer | None]:
        """Verify every sentence of `cot` about `call` and (forward) its answer; a backward answer's input still
        needs running (`check_backward_answer`)."""
        view = TraceView(call.events, call.code)
        report = Report()
        alignment = _Alignment(view, report, call, backward=direction == "backward")
        reasoning = body(cot)
        for start, end in split(reasoning):
            self._sentence(report, alignment, reasoning, start, end)
        report.coverage = coverage(view, report.covered, direction, self.full_iterations)
        saying = [s for s in report.sentences if s.verdict != "content-free"]
        report.unverified_share = sum(s.verdict != "verified" for s in saying) / len(saying) if saying else 0.0
        parsed = parse_answer(cot)
        answer_problem = self._answer_problem(direction, parsed, call)
        report.answer_ok = answer_problem is None
        if answer_problem:
            report.fail(answer_problem)
        # When unsure, reject: a claim that cannot be checked, or a sentence no claim accounts for, is no evidence.
        unsure = self.strict and (report.n_unchecked or report.n_unverifiable)
        report.passed = bool(report.n_contradicted == 0 and not unsure and report.answer_ok
                             and report.n_claims >= self.min_claims and report.coverage >= self.min_coverage)
        if not report.passed:
            report.fail(f"too few checkable claims: {report.n_claims} claims, "
                        f"coverage {report.coverage:.2f} < {self.min_coverage}")
        return report, parsed

    def _sentence(self, report: Report, alignment: _Alignment, text: str, start: int, end: int) -> None:
        """Align one sentence's claims and give it a verdict."""
        sentence = text[start:end]
        claims = extract(sentence, start)
        alignment.start_sentence()
        ambiguous = {c.kind for c in claims} - _RESULT_COMPANIONS  # "line 2 runs and we get `v`": whose result?
        outcomes = [alignment.check(claim, undecided=_restates_output(claim) and bool(ambiguous)) for claim in claims]
        rest = list(sentence)
        for claim in claims:
            rest[claim.start - start:claim.end - start] = " " * (claim.end - claim.start)
        fact = fact_in("".join(rest), alignment.view.structure.names)
        step = alignment.step_now()
        quoted = repr(sentence.strip()[:160])
        if False in outcomes:
            verdict = "contradicted"
            failed = claims[outcomes.index(False)]
            report.fail(f"sentence {quoted}: {failed.kind} claim {failed.text!r} contradicts the trace", step)
        elif None in outcomes:
            verdict = "unchecked"
            failed = claims[outcomes.index(None)]
            if self.strict:
                report.fail(f"sentence {quoted}: {failed.kind} claim {failed.text!r} cannot be checked", step)
        elif fact is not None:
            verdict = "unverifiable"
            report.n_unverifiable += 1
            if self.strict:
                report.fail(f"sentence {quoted}: {fact!r} is stated but no checkable claim covers it", step)
        else:
            verdict = "verified" if claims else "content-free"
        kinds = ",".join(dict.fromkeys(claim.kind for claim in claims)) or "prose"
        report.sentences.append(Sentence(start, end, kinds, verdict, step))

    @staticmethod
    def _answer_problem(direction: str, parsed: ParsedAnswer | None, call: TracedCall) -> str | None:
        entry_point, input_text, output_text = call.entry_point, call.input, call.output
        if parsed is None:
            return "no [ANSWER]assert f(...) == ...[/ANSWER] found"
        if parsed.blocks != 1 or parsed.trailing:
            return "the CoT must end in exactly one [ANSWER] block"
        if parsed.entry_point != entry_point:
            return f"answer calls {parsed.entry_point!r}, not {entry_point!r}"
        if not same_value(parsed.output_text, output_text):
            return f"answer output {parsed.output_text[:80]!r} is not the output {output_text[:80]!r}"
        if direction == "forward" and not same_arguments(parsed.input_text, input_text):
            return f"answer input {parsed.input_text[:80]!r} is not the given input"
        return None


def check_backward_answer(report: Report, result: dict[str, Any], output_text: str) -> None:
    """Fold the sandboxed run of a backward answer's input into the report."""
    if result.get("outcome") == "ok" and same_value(result.get("output", ""), output_text):
        return
    got = result.get("output") if result.get("outcome") == "ok" else result.get("outcome")
    report.answer_ok = report.passed = False
    report.first_failure = report.first_failure or f"the answer's input gives {str(got)[:80]!r}, not the output"


class _Alignment:
    """Walks the trace with a cursor, matching claims in text order."""

    def __init__(self, view: TraceView, report: Report, call: TracedCall, backward: bool) -> None:
        self.view = view
        self.call = call
        self.lines = call.code.splitlines()
        self.events = view.events
        self.report = report
        self.step = -1 if backward else 1
        self.cursor = len(self.events) - 1 if backward else 0
        self.consumed = False  # the cursor's event was matched by a claim about a step; look past it
        self.anchor = "start"  # the kind of claim that moved the cursor last
        self.values_after = True  # stated values are those once the cursor's step has run ("before line N": not)
        self.bound: int | None = None  # an iteration claimed: step claims stay inside it, up to this header visit
        self.stepped = False  # a claim of the current sentence moved the cursor to a step
        self.checks: dict[str, Callable[[Claim], bool | None]] = {
            "line": self._line, "after": self._line, "before": self._before, "iteration": self._iteration,
            "iterations": self._iterations,
            "loopcount": self._loopcount, "condition": self._condition, "effect": self._effect,
            "change": self._change, "state": self._state, "final": self._final, "initial": self._initial,
            "length": self._length,
            "returns": self._returns, "calls": self._calls, "raises": self._raises,
            "comprehension": self._comprehension, "compare": self._compare, "result": self._result,
            "target": self._target, "input": self._input, "invocation": self._invocation,
        }

    def check(self, claim: Claim, undecided: bool = False) -> bool | None:
        """The claim's verdict (None: the trace cannot decide it, or `undecided` says its context leaves it
        open), counted in the report."""
        self.report.n_claims += 1
        verdict = None if undecided else self.checks[claim.kind](claim) if self.events else False
        if verdict is None:
            self.report.n_unchecked += 1
        elif verdict:
            self.report.n_verified += 1
        else:
            self.report.n_contradicted += 1
        return verdict

    def start_sentence(self) -> None:
        self.stepped = False

    def step_now(self) -> int | None:
        return self.events[self.cursor]["step"] if self.events else None

    def _scan(self, claim: Claim, match: Callable[[Event], bool], move: bool = True) -> int | None:
        """The first event from the cursor on that matches; a claim about a step looks past a used step."""
        limit = 10**9 if claim.kind in _FREE_DEPTH else self.events[self.cursor]["depth"]
        end = -1 if self.step < 0 else len(self.events)
        if self.bound is not None and claim.kind not in _LOOP_KINDS:
            end = self.bound
        start = self.cursor + self.step if self.consumed and move and claim.kind != "change" else self.cursor
        for index in range(start, end, self.step):
            event = self.events[index]
            if event["depth"] <= limit and match(event):
                return index
        return None

    def _move(self, index: int | None, anchor: str = "step") -> bool:
        if index is None:
            return False
        self.cursor, self.consumed, self.anchor = index, True, anchor
        self.values_after = self.stepped = True
        return True

    def _value_of(self, name: str) -> str | None:
        """A variable's value as the text stands here: once the cursor's step has run (at the start: once the
        call has bound its arguments), or — after "before line N" — just before it."""
        if self.values_after:
            return self.view.state_after(self.cursor, name)
        return self.view.state_before(self.cursor, name)

    def _evaluate(self, text: str) -> Any:
        """A claimed expression's value here: raises UnknownName for a name the frame lacks, Unsupported for
        what the restricted evaluator does not interpret."""
        return evaluate(text, self._value_of)

    def _line(self, claim: Claim) -> bool:
        line = int(claim.fields["line"])
        if not self._quotes_line(claim, line):
            return False
        return self._move(self._scan(claim, lambda e: e["line"] == line and e["event"] in ("line", "call", "return")),
                          "line")

    def _before(self, claim: Claim) -> bool:
        """"Before line N runs": that step, not yet taken — values are those just before it, and the next claim
        about a step may be that very step."""
        if not self._line(claim):
            return False
        self.anchor, self.consumed, self.values_after = "before", False, False
        return True

    def _quotes_line(self, claim: Claim, line: int) -> bool:
        """Code quoted with a line reference is that line's source (whitespace aside; `…` ends a shortened one)."""
        quoted = claim.fields.get("code")
        if quoted is None:
            return True
        if not 0 < line <= len(self.lines):
            return False
        source, quoted = " ".join(self.lines[line - 1].split()), " ".join(quoted.split())
        test = _HEADER.sub("", source).removesuffix(":").strip()  # `x > 1` quotes `if x > 1:` too
        return quoted in (source, test) or (quoted.endswith("…") and source.startswith(quoted[:-1]))

    def _iteration(self, claim: Claim) -> bool:
        """An iteration is a visit of the loop header that goes on into the body (not the visit that exits).
        Claims about steps that follow stay inside that iteration, until the next claim about the loop."""
        visit = number(claim.fields["k"])
        if "line" in claim.fields:
            line = int(claim.fields["line"])
            index = self._scan(claim, lambda e: e["line"] == line and e.get("loop_iter") == visit)
        else:  # "in iteration 2": of the loop the text is in, or the next one
            loop = self._instance(None)
            index = loop.headers[visit - 1] if loop is not None and 0 < visit <= len(loop.headers) else None
        if not self._move(index) or not self.view.enters_body(index):
            return False
        loop, position = self.view.loop_of[index], self.view.visit[index]
        neighbour = position + self.step
        self.bound = loop.headers[neighbour] if 0 <= neighbour < len(loop.headers) else None
        return True

    def _loops(self, line: int | None) -> list[LoopInstance]:
        """Loop instances on `line` (or any), those of the cursor's frame when it has some."""
        loops = [loop for loop in self.view.loops if line in (None, loop.line)]
        frame = self.events[self.cursor]["frame"]
        return [loop for loop in loops if loop.frame == frame] or loops

    def _instance(self, line: int | None) -> LoopInstance | None:
        """The loop instance the cursor is in, else the next one in reading order."""
        loops = self._loops(line)
        for loop in loops:
            if loop.headers[0] <= self.cursor <= loop.headers[-1]:
                return loop
        ahead = [loop for loop in loops if (loop.headers[0] - self.cursor) * self.step >= 0]
        return min(ahead, key=lambda loop: abs(loop.headers[0] - self.cursor), default=None)

    def _iterations(self, claim: Claim) -> bool:
        """"Iterations K to M of the loop on line N": all those visits enter the body; the cursor stays, and no
        claim about a step may follow until an iteration is claimed again."""
        line, first, last = int(claim.fields["line"]), number(claim.fields["k"]), number(claim.fields["k2"])
        index = self._scan(claim, lambda e: e["line"] == line and e.get("loop_iter") == first, move=False)
        self.bound = self.cursor  # steps inside iterations not told cannot be claimed: an iteration claim first
        return index is not None and first <= last <= self.view.loop_of[index].iterations

    def _loopcount(self, claim: Claim) -> bool:
        """How often a loop ran its body: the loop instance whose header comes next from the cursor (the cursor's
        own step included, so a loop just told is told again). The cursor goes to that header without using
        it, so an "iteration 1" claim may follow; claims about steps are free of iterations again."""
        line = int(claim.fields["line"]) if "line" in claim.fields else None
        index = self._scan(claim, lambda e: "loop_iter" in e and line in (None, e["line"]), move=False)
        self.bound = None
        if index is None:
            return False
        self.cursor, self.consumed = index, False
        return self.view.loop_of[index].iterations == number(claim.fields["n"])

    def _condition(self, claim: Claim) -> bool:
        line = int(claim.fields["line"])
        if not self._quotes_line(claim, line):
            return False
        index = self._scan(claim, lambda e: e["line"] == line and e["event"] == "line")
        truth = claim.fields["truth"]
        holds = truth in _HOLDS or truth.endswith(("True", "true"))
        return self._move(index) and self.view.branch_taken(index) is holds

    def _effect(self, claim: Claim) -> bool | None:
        """"So the branch runs": the branch at the step just claimed was taken (no such step: unchecked)."""
        if not self.consumed:
            return None
        taken = self.view.branch_taken(self.cursor)
        if taken is None and self.cursor in self.view.loop_of:  # "so we enter the loop body"
            taken = self.view.enters_body(self.cursor)
        if taken is None:
            return None
        return (claim.fields["effect"] in _TAKEN) is taken

    def _result(self, claim: Claim) -> bool:
        """A stated result, output or conclusion of the call is its output; the cursor stays where it is."""
        return same_value(claim.fields["result"], self.call.output)

    def _target(self, claim: Claim) -> bool:
        """A restated target of backward reasoning: the entry point and its output."""
        return _named(self.call.entry_point, claim.fields["func"]) and self._result(claim)

    def _input(self, claim: Claim) -> bool:
        """A stated input (and what it gives): the call's own."""
        return self._gives(claim.fields["args"], claim)

    def _invocation(self, claim: Claim) -> bool | None:
        """`f(<args>)`: the entry point called with the call's input (giving its output, when one is stated).
        Any other call (`len(s)` is `3`) is an expression, evaluated on the traced values."""
        text = claim.fields["call"]
        try:
            node = ast.parse(text, mode="eval").body
        except (SyntaxError, ValueError, RecursionError):
            return None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == self.call.entry_point:
            return self._gives(arguments_text(node, text), claim)
        if "result" not in claim.fields:
            return None
        return self._same_evaluated(text, claim.fields["result"])

    def _gives(self, args: str, claim: Claim) -> bool:
        return same_arguments(args, self.call.input) and ("result" not in claim.fields or self._result(claim))

    def _change(self, claim: Claim) -> bool | None:
        name = claim.fields["name"]
        if not self.values_after:  # "before line N runs, `x` becomes …": no change is that step's past
            return None
        if self.consumed and self.stepped:  # in a sentence about a step, a change belongs to that very step
            index = self.cursor if name in self.events[self.cursor].get("changes", {}) else None
        else:  # the next change of x not told yet
            index = self._scan(claim, lambda e: name in e.get("changes", {})
                               and (e["step"], name) not in self.report.covered)
        if index is None:
            return False
        if index != self.cursor:
            self.cursor, self.consumed, self.anchor = index, False, "change"
        traced = self.events[index]["changes"][name]
        self.report.covered.add((index, name))
        if "deleted" in claim.fields or "cut" in claim.fields:  # "`x` is deleted", "`x` changes (… too long …)"
            return traced is None if "deleted" in claim.fields else traced is not None and traced.endswith("…")
        if traced is not None and traced.endswith("…"):
            return None
        return same_value(claim.fields["value"], traced)

    def _state(self, claim: Claim) -> bool | None:
        """`x` is `v` (or an expression: `x[0]` is `v`): its value here. A condition's own test said true or
        false at that condition's step ("on line 4, `n > 2` is True") is the outcome of that evaluation."""
        subject, claimed = claim.fields["sname"], claim.fields["svalue"]
        line = self.view.structure.tests.get(" ".join(subject.split()))
        if line is not None and claimed in ("True", "False") and not subject.isidentifier():
            def tested(event: Event) -> bool:
                return event["line"] == line and event["event"] == "line"

            if self.consumed and tested(self.events[self.cursor]):  # "on line 4, `x > 1` is False"
                return self.view.branch_taken(self.cursor) is (claimed == "True")
        if subject.isidentifier() and subject not in ("True", "False", "None"):
            traced = self._value_of(subject)
            if traced is None or traced.endswith("…"):
                return None if traced else False
            if self.consumed and subject in self.events[self.cursor].get("changes", {}):
                self.report.covered.add((self.cursor, subject))
            return same_value(claimed, traced)
        return self._same_evaluated(subject, claimed)

    def _same_evaluated(self, expression: str, claimed: str) -> bool | None:
        try:
            value = self._evaluate(expression)
        except UnknownName:
            return False
        except Unsupported:
            return None
        return same_value(claimed, render(value)[0])

    def _final(self, claim: Claim) -> bool | None:
        """"`x` ends up as `v`": the last value x takes in the entry function; the cursor stays."""
        traced = self.view.final_value(claim.fields["name"])
        if traced is not None and traced.endswith("…"):
            return None
        return same_value(claim.fields["value"], traced)

    def _initial(self, claim: Claim) -> bool | None:
        """"Initially, `x` is `v`": the first value x takes in the entry function; the cursor stays."""
        traced = self.view.initial_value(claim.fields["name"])
        if traced is not None and traced.endswith("…"):
            return None
        return same_value(claim.fields["value"], traced)

    def _length(self, claim: Claim) -> bool | None:
        """"`s` has 5 characters" (a string), "5 elements / items / entries" (a container), "5 keys" (a dict)."""
        unit = claim.fields.get("unit", "")
        try:
            value = self._evaluate(claim.fields["name"])
        except UnknownName:
            return False
        except Unsupported:
            return None
        kinds = {"c": str, "k": dict}.get(unit[:1], (list, tuple, set, frozenset, dict)) if unit else \
            (str, list, tuple, set, frozenset, dict)
        return isinstance(value, kinds) and len(value) == number(claim.fields["n"])

    def _compare(self, claim: Claim) -> bool | None:
        """`a OP b is T`: each side a literal, a variable's value here, or an expression of those."""
        try:
            left, right = (self._evaluate(claim.fields[side]) for side in ("left", "right"))
        except UnknownName:
            return False
        except Unsupported:
            return None
        try:
            outcome = _COMPARE[claim.fields["op"]](left, right)
        except (TypeError, RecursionError):
            return False
        return outcome is (claim.fields["ctruth"] in ("True", "true"))

    def _returns(self, claim: Claim) -> bool | None:
        subject = claim.fields.get("subject", "").lower()
        if subject == "the function":  # the call being reasoned about: its output
            return "rvalue" in claim.fields and same_value(claim.fields["rvalue"], self.call.output)
        func = claim.fields.get("func", self.call.entry_point)
        frame = self.events[self.cursor]["frame"]

        def returned(event: Event) -> bool:
            if subject in ("it", "this"):  # the function the text is in
                return event["event"] == "return" and event["frame"] == frame
            return event["event"] == "return" and _named(event["func"], func)

        # "So `f` returns `v`" again, right after the step that returned that value: the same return
        here = self.events[self.cursor]
        again = self.consumed and returned(here) and same_value(claim.fields.get("rvalue", ""), here.get("value"))
        index = self.cursor if again else self._scan(claim, returned)
        if index is None and (func == self.call.entry_point or subject in ("it", "this")) and "rvalue" in claim.fields:
            return same_value(claim.fields["rvalue"], self.call.output)  # the call's own return, restated
        if not self._move(index):
            return False
        event = self.events[index]
        line = int(claim.fields.get("rline", event["line"]))
        if line != event["line"] or not self._quotes_line(claim, line):
            return False
        value = event.get("value")
        if "cut" in claim.fields:
            return value is not None and value.endswith("…")
        return same_value(claim.fields["rvalue"], value)

    def _calls(self, claim: Claim) -> bool | None:
        """A call of a function the code defines is found in the trace; one of a built-in or a method (not
        traced) must be made by the statement at the cursor."""
        func = claim.fields["func"]
        if func.split(".")[0] in self.view.structure.functions or func.startswith("<"):
            def called(event: Event) -> bool:
                return event["event"] == "call" and _named(event["func"], func)

            # "at line 1, `f` was called": the line claim found the call already
            here = self.consumed and self.anchor in ("line", "after") and called(self.events[self.cursor])
            index = self.cursor if here else self._scan(claim, called)
            if not self._move(index):
                return False
            return "noargs" not in claim.fields or not self.events[index].get("changes")
        # A built-in or method is not traced: a plain name the statement at the cursor calls is accepted only
        # where that statement ran whole (no short-circuit, no loop header revisited) — else unchecked.
        event = self.events[self.cursor]
        if "noargs" in claim.fields or "." in func or event["event"] != "line" or "loop_iter" in event \
                or event["line"] in self.view.structure.lazy:
            return None
        return func in self.view.structure.calls.get(event["line"], ())

    def _raises(self, claim: Claim) -> bool:
        """An exception raised; with a function named, one that ended that function's frame."""
        exc, func = claim.fields["exc"], claim.fields.get("func")
        if func is not None:
            return self._move(self._scan(claim, lambda e: e["event"] == "return" and e.get("raised") == exc
                                         and _named(e["func"], func)))
        return self._move(self._scan(claim, lambda e: e["event"] == "exception" and e["exc_type"] == exc))

    def _comprehension(self, claim: Claim) -> bool | None:
        """What a list, dict or set comprehension built (a generator's frame holds no such value)."""
        line, kind = int(claim.fields["line"]), claim.fields.get("ckind")
        if kind == "generator":
            return None
        frames = (f"<{kind}comp>",) if kind else ("<listcomp>", "<dictcomp>", "<setcomp>")

        def shown(event: Event) -> bool:  # a narrator cannot state a value that was cut
            value = self.view.returned.get(event["frame"])
            return value is not None and not value.endswith("…")

        index = self._scan(claim, lambda e: e["event"] == "call" and e["func"].endswith(frames) and e["line"] == line
                           and shown(e))
        return self._move(index) and same_value(claim.fields["value"], self.view.returned[self.events[index]["frame"]])


def _restates_output(claim: Claim) -> bool:
    """A claim that the call's output is a value: "the result is `v`", "the function returns `v`"."""
    subject = claim.fields.get("subject", "").lower()
    return claim.kind == "result" or (claim.kind == "returns" and subject == "the function")


def coverage(view: TraceView, covered: set[tuple[int, str]], direction: str, full_iterations: int) -> float:
    """Share of the trace's state changes that a checked claim mentions.

    Not counted: changes inside comprehensions (told by their result), inside the middle iterations of long
    loops (which may be summarised), and for backward reasoning, changes outside the entry function's frame.
    """
    skip = view.summarised(full_iterations)
    top = view.events[0]["frame"] if view.events else None
    total = {(i, name) for i, e in enumerate(view.events)
             if i not in skip and not is_opaque(e["func"]) and (direction == "forward" or e["frame"] == top)
             for name in e.get("changes", {})}
    return 1.0 if not total else len(covered & total) / len(total)


def _named(qualname: str, claimed: str) -> bool:
    return qualname == claimed or qualname.endswith("." + claimed)


def reason_for(report: Report) -> str:
    """The rejection reason a failed report stands for."""
    if report.n_contradicted:
        return "claim_contradicted"
    if not report.answer_ok:
        return "wrong_answer"
    return "unverifiable"

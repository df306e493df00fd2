"""The verifier: every checkable claim of a CoT is aligned with the trace and checked.

Alignment is monotone: a cursor walks the trace (forwards for forward reasoning, backwards for backward
reasoning) and each claim is matched at or after the cursor, so a claim about iteration 3 is checked against
iteration 3. A value claim right after a claim about a step (a line, an iteration, a call) must hold at that
very step; one with no such anchor is matched with the variable's next change. A claim that cannot be
matched, or matches a different value, contradicts the trace. The final
answer is checked too: forward, the output must equal the traced output; backward, the answer's input is run
in the sandbox by the caller (`check_backward_answer`) and must give the output.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from operators.cot.claims import ANSWER, Claim, extract
from operators.cot.narrate import is_opaque
from operators.sandbox.calls import arguments_text
from operators.trace.events import Event, TracedCall
from operators.trace.structure import TraceView
from operators.trace.values import canonical, parse_literal

VERIFIER_VERSION = "2"
_HEADER = re.compile(r"^(?:if|elif|while)\s+")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "in": lambda a, b: a in b, "not in": lambda a, b: a not in b,
}
_FREE_DEPTH = ("calls", "returns", "comprehension", "raises")  # found by function name, at any depth


@dataclass
class Report:
    passed: bool = False
    n_claims: int = 0
    n_verified: int = 0
    n_contradicted: int = 0
    n_unchecked: int = 0
    coverage: float = 0.0
    answer_ok: bool = False
    first_failure: str | None = None
    failure_step: int | None = None
    covered: set[tuple[int, str]] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "covered"}


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
        test = ast.parse(body).body[0]
    except (SyntaxError, IndexError, ValueError, RecursionError):
        return None
    if not (isinstance(test, ast.Assert) and isinstance(test.test, ast.Compare) and len(test.test.ops) == 1
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
    """A claimed value text matches the trace's canonical text (literals compared after canonicalising)."""
    if traced is None:
        return False
    return claimed.strip() == traced or canonical(claimed) == traced


class Verifier:
    """Checks a CoT against a trace; configuration in the constructor, one `check` per record."""

    def __init__(self, min_coverage: float = 0.5, min_claims: int = 1, full_iterations: int = 2) -> None:
        self.min_coverage = min_coverage
        self.min_claims = min_claims
        self.full_iterations = full_iterations

    def check(self, direction: str, cot: str, call: TracedCall) -> tuple[Report, ParsedAnswer | None]:
        """Verify the claims of `cot` about `call` and (forward) its answer; a backward answer's input still
        needs running (`check_backward_answer`)."""
        view = TraceView(call.events, call.code)
        report = Report()
        _Alignment(view, report, call, backward=direction == "backward").run(extract(cot))
        report.coverage = coverage(view, report.covered, direction, self.full_iterations)
        parsed = parse_answer(cot)
        answer_problem = self._answer_problem(direction, parsed, call)
        report.answer_ok = answer_problem is None
        if answer_problem and report.first_failure is None:
            report.first_failure = answer_problem
        # A claim that cannot be checked is not evidence: when unsure, reject.
        report.passed = (report.n_contradicted == 0 and report.n_unchecked == 0 and report.answer_ok
                         and report.n_claims >= self.min_claims and report.coverage >= self.min_coverage)
        if report.n_unchecked and report.first_failure is None:
            report.first_failure = f"{report.n_unchecked} claim(s) cannot be checked against the trace"
        if report.passed is False and report.first_failure is None:
            report.first_failure = (f"too few checkable claims: {report.n_claims} claims, "
                                    f"coverage {report.coverage:.2f} < {self.min_coverage}")
        return report, parsed

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

    def run(self, claims: list[Claim]) -> None:
        checks: dict[str, Callable[[Claim], bool | None]] = {
            "line": self._line, "iteration": self._iteration, "loopcount": self._loopcount,
            "condition": self._condition, "change": self._change, "state": self._state,
            "returns": self._returns, "calls": self._calls, "raises": self._raises,
            "comprehension": self._comprehension, "compare": self._compare, "result": self._result,
        }
        for claim in claims:
            self.report.n_claims += 1
            verdict = checks[claim.kind](claim) if self.events else False
            if verdict is None:
                self.report.n_unchecked += 1
            elif verdict:
                self.report.n_verified += 1
            else:
                self.report.n_contradicted += 1
                if self.report.first_failure is None:
                    self.report.first_failure = f"{claim.kind} claim {claim.text!r} contradicts the trace"
                    self.report.failure_step = self.events[self.cursor]["step"] if self.events else None

    def _scan(self, claim: Claim, match: Callable[[Event], bool]) -> int | None:
        """The first event from the cursor on that matches; a claim about a step looks past a used step."""
        limit = 10**9 if claim.kind in _FREE_DEPTH else self.events[self.cursor]["depth"]
        end = -1 if self.step < 0 else len(self.events)
        start = self.cursor + self.step if self.consumed and claim.kind != "change" else self.cursor
        for index in range(start, end, self.step):
            event = self.events[index]
            if event["depth"] <= limit and match(event):
                return index
        return None

    def _move(self, index: int | None) -> bool:
        if index is None:
            return False
        self.cursor = index
        self.consumed = True
        return True

    def _line(self, claim: Claim) -> bool:
        line = int(claim.fields["line"])
        if not self._quotes_line(claim, line):
            return False
        return self._move(self._scan(claim, lambda e: e["line"] == line and e["event"] in ("line", "call", "return")))

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
        """An iteration is a visit of the loop header that goes on into the body (not the visit that exits)."""
        line, visit = int(claim.fields["line"]), int(claim.fields["k"])
        index = self._scan(claim, lambda e: e["line"] == line and e.get("loop_iter") == visit)
        return self._move(index) and self.view.enters_body(index)

    def _loopcount(self, claim: Claim) -> bool:
        line = int(claim.fields["line"])
        index = self._scan(claim, lambda e: e["line"] == line and "loop_iter" in e)
        return self._move(index) and self.view.loop_of[index].iterations == int(claim.fields["n"])

    def _condition(self, claim: Claim) -> bool:
        line = int(claim.fields["line"])
        if not self._quotes_line(claim, line):
            return False
        index = self._scan(claim, lambda e: e["line"] == line and e["event"] == "line")
        return self._move(index) and self.view.branch_taken(index) is (claim.fields["truth"] == "True")

    def _result(self, claim: Claim) -> bool:
        """A stated result, output or target of the call is its output; the cursor stays where it is."""
        return same_value(claim.fields["result"], self.call.output)

    def _change(self, claim: Claim) -> bool | None:
        name, value = claim.fields["name"], claim.fields["value"]
        if self.consumed:  # right after a claim about a step, a change belongs to that very step
            index = self.cursor if name in self.events[self.cursor].get("changes", {}) else None
        else:
            index = self._scan(claim, lambda e: name in e.get("changes", {}))
        if index is None:
            return False
        if index != self.cursor:
            self.cursor, self.consumed = index, False
        traced = self.events[index]["changes"][name]
        if traced is not None and traced.endswith("…"):
            return None
        self.report.covered.add((index, name))
        return same_value(value, traced)

    def _state(self, claim: Claim) -> bool:
        name = claim.fields["sname"]
        return same_value(claim.fields["svalue"], self.view.state_before(self.cursor, name))

    def _compare(self, claim: Claim) -> bool | None:
        """`a OP b is T`: each side a literal or a variable's value before the current step."""
        sides = []
        for text in (claim.fields["left"], claim.fields["right"]):
            if text.isidentifier() and text not in ("True", "False", "None"):
                text = self.view.state_before(self.cursor, text)
                if text is None:  # a name the frame does not hold here
                    return False
            try:
                sides.append(parse_literal(text or ""))
            except ValueError:
                return None
        try:
            outcome = _COMPARE[claim.fields["op"]](*sides)
        except (TypeError, RecursionError):
            return False
        return outcome is (claim.fields["ctruth"] == "True")

    def _returns(self, claim: Claim) -> bool:
        func = claim.fields["func"]
        index = self._scan(claim, lambda e: e["event"] == "return" and _named(e["func"], func))
        return self._move(index) and same_value(claim.fields["rvalue"], self.events[index].get("value"))

    def _calls(self, claim: Claim) -> bool:
        func = claim.fields["func"]
        return self._move(self._scan(claim, lambda e: e["event"] == "call" and _named(e["func"], func)))

    def _raises(self, claim: Claim) -> bool:
        exc = claim.fields["exc"]
        return self._move(self._scan(claim, lambda e: e["event"] == "exception" and e["exc_type"] == exc))

    def _comprehension(self, claim: Claim) -> bool:
        line = int(claim.fields["line"])

        def shown(event: Event) -> bool:  # a narrator cannot state a value that was cut
            value = self.view.returned.get(event["frame"])
            return value is not None and not value.endswith("…")

        index = self._scan(claim, lambda e: e["event"] == "call" and is_opaque(e["func"]) and e["line"] == line
                           and shown(e))
        return self._move(index) and same_value(claim.fields["value"], self.view.returned[self.events[index]["frame"]])


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

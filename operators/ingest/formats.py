"""Ingest: turn input rows of any supported format into one work row per (problem, input).

Formats (DESIGN.md): generic, asserts, cruxeval, mbpp, mbppplus, humaneval; `detect_format` picks one from a row's keys.
Everything here is static analysis (`ast` and `ast.literal_eval`): no user code runs outside the sandbox.
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from operators.sandbox.calls import BadInput, arguments_text, input_text
from operators.trace.values import render, valid_text

FORMATS = ("generic", "asserts", "cruxeval", "mbpp", "mbppplus", "humaneval")
_REQUIRED = {
    "generic": ("id", "code", "entry_point", "inputs"),
    "asserts": ("id", "code", "tests"),
    "cruxeval": ("id", "code", "input", "output"),
    "mbpp": ("task_id", "code", "test_list"),
    "mbppplus": ("task_id", "canonical_solution", "entry_point", "base_input"),
    "humaneval": ("task_id", "prompt", "canonical_solution", "test", "entry_point"),
}


UNKNOWN_LICENSE = "unknown"


class BadProblem(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Problem:
    problem_id: str
    code: str
    entry_point: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str | None] = field(default_factory=list)
    bad_inputs: list[tuple[str, str]] = field(default_factory=list)
    license: str = UNKNOWN_LICENSE


def detect_format(row: dict[str, Any]) -> str | None:
    keys = set(row)
    if {"canonical_solution", "base_input"} <= keys:
        return "mbppplus"
    if {"canonical_solution", "test"} <= keys:
        return "humaneval"
    if "test_list" in keys:
        return "mbpp"
    if "inputs" in keys:
        return "generic"
    if {"tests", "code"} <= keys:
        return "asserts"
    if {"input", "output", "code"} <= keys:
        return "cruxeval"
    return None


def to_problem(row: dict[str, Any], fmt: str) -> Problem:
    # An empty input string is a call with no arguments, so only None counts as missing there.
    missing = [key for key in _REQUIRED[fmt] if row.get(key) is None or (key != "input" and row.get(key) == "")]
    if missing:
        raise BadProblem("missing_field", f"{fmt} row lacks field(s): {', '.join(missing)}")
    text_fields = [key for key in ("code", "prompt", "canonical_solution", "test", "entry_point", "input", "output")
                   if key in _REQUIRED[fmt] and not isinstance(row[key], str)]
    if text_fields:
        raise BadProblem("bad_field", f"{fmt} row: field(s) {', '.join(text_fields)} must be text")
    if fmt == "generic":
        problem = _generic(row)
    elif fmt == "cruxeval":
        problem = Problem(str(row["id"]), row["code"], "f", [row["input"]], [row["output"]])
    elif fmt == "asserts":
        if not isinstance(row["tests"], list) or not all(isinstance(test, str) for test in row["tests"]):
            raise BadProblem("bad_field", "asserts row: 'tests' must be a list of assert statements")
        problem = from_asserts(str(row["id"]), row["code"], row["tests"])
    elif fmt == "mbppplus":
        problem = _mbppplus(row)
    elif fmt == "mbpp":
        problem = from_asserts(str(row["task_id"]), _join(row.get("test_setup_code"), row["code"]),
                               list(row["test_list"]))
    else:
        problem = from_asserts(str(row["task_id"]), row["prompt"] + row["canonical_solution"],
                               [row["test"]], row["entry_point"], callee="candidate")
    check_code(problem)
    problem.license = row_license(row)
    return problem


def row_license(row: dict[str, Any]) -> str:
    """The row's own `license` field, or "unknown": tracecot does not guess a source's terms."""
    value = row.get("license")
    return value.strip()[:100] if isinstance(value, str) and value.strip() else UNKNOWN_LICENSE


def _generic(row: dict[str, Any]) -> Problem:
    inputs = row["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise BadProblem("bad_field", "generic row: 'inputs' must be a non-empty list")
    outputs = row.get("outputs") or [None] * len(inputs)
    if not isinstance(outputs, list) or len(outputs) != len(inputs):
        raise BadProblem("bad_field", "generic row: 'outputs' must be a list as long as 'inputs'")
    problem = Problem(str(row["id"]), row["code"], str(row["entry_point"]))
    for raw, expected in zip(inputs, outputs, strict=True):
        try:
            problem.inputs.append(input_text(raw))
        except BadInput as err:
            problem.bad_inputs.append((json.dumps(raw)[:200], str(err)))
            continue
        problem.outputs.append(None if expected is None else str(expected))
    return problem


def _mbppplus(row: dict[str, Any]) -> Problem:
    """EvalPlus MBPP+: `base_input` and `plus_input` are lists of positional-argument lists, stored as JSON.

    JSON has no tuples or sets, so an argument EvalPlus turns back into a tuple for some tasks stays a list
    here: the call is still a consistent (function, input) pair, traced as written. No outputs are stored.
    """
    groups = [row["base_input"], row.get("plus_input") or []]
    if not all(isinstance(group, list) for group in groups):
        raise BadProblem("bad_field", "mbppplus row: 'base_input' and 'plus_input' must be lists")
    problem = Problem(str(row["task_id"]), row["canonical_solution"].strip("\n") + "\n", row["entry_point"])
    for args in groups[0] + groups[1]:
        try:
            if not isinstance(args, list):
                raise BadInput("an MBPP+ input must be a list of positional arguments")
            problem.inputs.append(", ".join(render(value, limit=sys.maxsize)[0] for value in args))
        except BadInput as err:
            problem.bad_inputs.append((json.dumps(args)[:200], str(err)))
            continue
        problem.outputs.append(None)
    if not problem.inputs:
        raise BadProblem("no_inputs", "mbppplus row has no usable input")
    return problem


def _join(setup: str | None, code: str) -> str:
    code = code.replace("\r\n", "\n")
    return f"{setup.strip()}\n{code}" if setup and setup.strip() else code


def from_asserts(problem_id: str, code: str, tests: list[str], entry_point: str | None = None,
                 callee: str | None = None) -> Problem:
    """Take the calls out of assert-style tests: MBPP's `assert fn(..) == ..`, HumanEval's `candidate(..)`
    (`callee` names what the tests call when it is not the entry point; without an entry point, the first
    function of the code a test calls is taken)."""
    defined = _top_level_names(code)
    problem = Problem(problem_id, code, entry_point or "")
    seen: set[str] = set()
    for test in tests:
        tree = _parsed(test.replace("\r\n", "\n"), "test")
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare | ast.Call | ast.UnaryOp)):
                continue
            for call, expected in _calls_in(node.test, test, callee or defined):
                name = call.func.id  # type: ignore[attr-defined]
                problem.entry_point = entry_point or problem.entry_point or name
                if name != (callee or problem.entry_point):
                    continue
                args = arguments_text(call, test)
                if args in seen:
                    continue
                seen.add(args)
                problem.inputs.append(args)
                problem.outputs.append(expected)
    if not problem.inputs:
        raise BadProblem("no_inputs", "no call of the entry point found in the tests")
    return problem


def _calls_in(test: ast.AST, source: str, names: str | set[str]):
    """Calls of `names` in an assert's test, each with the expected value's text when the test reads
    `call == expected` or `expected == call`."""
    wanted = {names} if isinstance(names, str) else names
    sides = (test.left, test.comparators[0]) if isinstance(test, ast.Compare) and len(test.ops) == 1 \
        and isinstance(test.ops[0], ast.Eq) else ()
    for node in ast.walk(test):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in wanted:
            other = [side for side in sides if side is not node] if node in sides else []
            yield node, ast.get_source_segment(source, other[0]) if other else None


def _parsed(source: str, what: str) -> ast.Module:
    """The syntax tree of untrusted text, or BadProblem: no text, however deep or odd, raises anything else."""
    try:
        return ast.parse(source)
    except SyntaxError as err:
        raise BadProblem("syntax_error", f"{what} does not parse: {err.msg} (line {err.lineno})") from err
    except (ValueError, RecursionError, MemoryError) as err:
        raise BadProblem("syntax_error", f"{what} cannot be parsed: {type(err).__name__}") from err


def top_level_functions(code: str) -> list[str]:
    """The functions the code defines at its top level, in order; none when it does not parse."""
    try:
        tree = _parsed(code, "code")
    except BadProblem:
        return []
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]


def _top_level_names(code: str) -> set[str]:
    try:
        tree = _parsed(code, "code")
    except BadProblem:
        return set()
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}


def check_code(problem: Problem) -> None:
    tree = _parsed(problem.code, "code")
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    if problem.entry_point not in names:
        raise BadProblem("entry_point_missing", f"entry point {problem.entry_point!r} is not defined in the code")


UNDECODABLE = "\x00not utf-8\x00"  # marks a line whose bytes are not UTF-8 (see `decode_line`)


def decode_line(raw: bytes) -> str:
    """One input line as text. A line that is not UTF-8 becomes `UNDECODABLE` plus its text with the bad bytes
    escaped (`\\xff`), so it travels like any line and is rejected alone (`not_utf8`), never failing the read."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return UNDECODABLE + raw.decode("utf-8", "backslashreplace")


def json_object(text: str) -> dict[str, Any]:
    """The row a line holds, every text in it valid Unicode (a lone surrogate becomes its escape text)."""
    if text.startswith(UNDECODABLE):
        raise BadProblem("not_utf8", "line is not valid UTF-8 (its raw text shows the bad bytes escaped)")
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        raise BadProblem("malformed_json", f"line is not JSON: {err.msg} at column {err.colno}") from err
    except (RecursionError, ValueError) as err:  # nested too deep, an integer too long to read, …
        raise BadProblem("malformed_json", f"line is JSON that cannot be read: {type(err).__name__}") from err
    if not isinstance(row, dict):
        raise BadProblem("malformed_json", "line is JSON but not an object")
    return valid_text(row)


def peek_id(text: str) -> str | None:
    try:
        row = json_object(text)
    except BadProblem:
        return None
    value = row.get("id", row.get("task_id", row.get("problem_id")))
    return None if value is None else valid_text(str(value))

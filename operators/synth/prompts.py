"""The prompts `tracecot synthesize` sends, and the parsers that read the answers. Versioned: a change to any
prompt or parser changes `SYNTH_PROMPT_VERSION`, which is part of the synthesis fingerprint.

Parsers never raise: an answer they cannot read gives nothing, and the caller rejects it with a reason.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

SYNTH_PROMPT_VERSION = "synth-prompts-2"
Conversation = list[dict[str, str]]
DIFFICULTIES = ("easy", "medium", "hard")  # the levels instructions are asked for unless synth.difficulties says

_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
_TASK = re.compile(r"^\s*(?:\d+[.)]\s*)?\**task\**\s*:\**\s*(.+?)\s*^\s*\**signature\**\s*:\**\s*`*\s*(def .+?)`*\s*$",
                   re.IGNORECASE | re.MULTILINE | re.DOTALL)
_DIFFICULTY = re.compile(r"^\s*\**difficulty\**\s*:\s*\**\s*([a-z-]+)", re.IGNORECASE | re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.+?)\s*$")


@dataclass(frozen=True)
class Instruction:
    text: str
    signature: str  # `def name(args):`
    entry_point: str
    difficulty: str = ""  # one of the levels asked for, as the model rated the task; "" when it named none


def _user(text: str) -> Conversation:
    return [{"role": "user", "content": text}]


def concepts_prompt(seed: str, count: int) -> Conversation:
    return _user(f"Read this text:\n\n{seed[:4000]}\n\nList {count} distinct programming concepts a Python exercise "
                 "could practise, drawn from the text. One per line, each starting with '- '.")


def parse_concepts(text: str, count: int) -> list[str]:
    """The bullet lines of the answer, each once, at most `count`."""
    found: list[str] = []
    for line in text.splitlines():
        match = _BULLET.match(line)
        concept = match.group(1).strip(" *:.") if match else ""
        if 2 < len(concept) <= 200 and concept.lower() not in (c.lower() for c in found):
            found.append(concept)
    return found[:count]


def instructions_prompt(concept: str, count: int, levels: tuple[str, ...]) -> Conversation:
    spread = f"spread over the levels {', '.join(levels)}" if count > 1 and len(levels) > 1 else levels[0]
    return _user(f"Write {count} self-contained Python programming task(s) about: {concept}; difficulty: "
                 f"{spread}.\nEach task is one function that takes arguments and returns a value (no input(), no "
                 "printing, no files, no randomness). For each task write exactly three lines:\n"
                 "Task: <what the function must do, with an example>\n"
                 f"Difficulty: <one of {', '.join(levels)}>\n"
                 "Signature: def <name>(<parameters>):")


def parse_instructions(text: str, count: int, levels: tuple[str, ...]) -> list[Instruction]:
    """`Task:` / `Difficulty:` / `Signature:` triples whose signature is a valid function header, at most
    `count`. A difficulty that is not one of `levels` is left empty, not guessed."""
    found: list[Instruction] = []
    for match in _TASK.finditer(text):
        task, header = match.group(1), match.group(2).strip().rstrip(":") + ":"
        rated = _DIFFICULTY.search(task)
        difficulty = rated.group(1).lower() if rated and rated.group(1).lower() in levels else ""
        task = " ".join((task[:rated.start()] if rated else task).split())
        name = _function_name(header)
        if name and task:
            found.append(Instruction(task[:2000], header, name, difficulty))
    return found[:count]


def _function_name(header: str) -> str | None:
    try:
        tree = ast.parse(f"{header}\n    pass\n")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    node = tree.body[0] if len(tree.body) == 1 else None
    return node.name if isinstance(node, ast.FunctionDef) else None


def solution_prompt(instruction: Instruction, attempt: int) -> Conversation:
    """One solution; `attempt` numbers the request, so that the solutions of one task are separate samples."""
    return _user(f"Task: {instruction.text}\n\nWrite a Python function with this signature:\n{instruction.signature}\n"
                 f"Answer with one ```python code block holding the whole function (imports inside it). "
                 f"This is attempt {attempt + 1}.")


def tests_prompt(instruction: Instruction, attempt: int) -> Conversation:
    return _user(f"Task: {instruction.text}\n\nThe function is:\n{instruction.signature}\n"
                 f"Write 5 test cases for it, each one line of the form `assert {instruction.entry_point}(...) == "
                 f"<expected value>`, in one ```python code block. This is attempt {attempt + 1}.")


def parse_code(text: str) -> str:
    """The first fenced code block of an answer, else the whole answer."""
    match = _FENCE.search(text)
    return (match.group(1) if match else text).strip() + "\n"


def parse_tests(text: str) -> list[str]:
    """Every line of the answer that is, on its own, an assert statement."""
    tests = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("assert"):
            continue
        try:
            tree = ast.parse(line)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert):
            tests.append(line)
    return tests

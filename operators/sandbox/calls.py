"""Calls of user code: argument parsing (literals only) and the traced call that runs inside the sandbox."""

from __future__ import annotations

import ast
import builtins
import hashlib
import io
import json
import sys
import types
from functools import lru_cache
from typing import Any

from operators.sandbox import isolation
from operators.trace.tracer import CODE_FILENAME, TraceLimit, Tracer
from operators.trace.values import render, reset_seed_order, seed_ordered_seen


class BadInput(ValueError):
    """The problem's input cannot be turned into call arguments."""


def arguments_text(call: ast.Call, source: str) -> str:
    """The argument list of a parsed call, as written in `source` (`"1, [2], k='x'"`)."""
    parts = [ast.get_source_segment(source, arg) or "" for arg in call.args]
    parts += [f"{kw.arg}={ast.get_source_segment(source, kw.value)}" for kw in call.keywords]
    return ", ".join(parts)


def input_text(raw: Any) -> str:
    """The argument-list text of an input: kept as given for strings, `k=v, …` for keyword objects."""
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, dict):
        for key in raw:
            if not str(key).isidentifier():
                raise BadInput(f"keyword argument name {key!r} is not an identifier")
        return ", ".join(f"{key}={render(value)[0]}" for key, value in raw.items())
    raise BadInput(f"an input must be an argument-list string or a keyword object, got {type(raw).__name__}")


def check_syntax(args_text: str) -> None:
    """Raise BadInput unless the text is an argument list (static check, nothing is evaluated)."""
    try:
        call = ast.parse(f"_({args_text})", mode="eval").body
    except (SyntaxError, ValueError, RecursionError) as err:
        raise BadInput(f"input is not an argument list: {args_text[:80]!r}") from err
    if not isinstance(call, ast.Call):
        raise BadInput(f"input is not an argument list: {args_text[:80]!r}")


def evaluate_args(args_text: str, namespace: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """Evaluate an argument list in the problem's module namespace; runs inside the sandbox.

    Inputs are usually literals (`"[1, 2], 'a'"`) but data sets also use expressions such as
    `"'ab' * 3"` or names the code defines, as in CRUXEval's checker; either is accepted as long as every
    resulting value is a literal, a range, or a lambda written in the input.
    """
    check_syntax(args_text)
    try:
        args, kwargs = eval(f"(lambda *a, **k: (a, k))({args_text})", namespace)
    except Exception as err:
        raise BadInput(f"input could not be evaluated: {type(err).__name__}: {str(err)[:80]}") from err
    for value in (*args, *kwargs.values()):
        if not (_written_in_input(value) or _round_trips(value, render(value, limit=sys.maxsize)[0])):
            raise BadInput(f"input value is not a Python literal: {render(value, 80)[0]}")
    return args, kwargs


def _written_in_input(value: Any) -> bool:
    """A range, or a lambda defined by the input text itself: rebuilt exactly whenever that text is evaluated."""
    if isinstance(value, range):
        return True
    return isinstance(value, types.LambdaType) and value.__name__ == "<lambda>" \
        and value.__code__.co_filename == "<string>"


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run a job once in this process (a sandbox child). Its time limits are kept from outside: the fork server
    watches the child's CPU time (`operators.sandbox.forkserver`), which code in here could not forge.

    Whether a result is reproducible is decided by the client, which runs the job again in another fork
    server started with another hash seed (`operators.sandbox.client`).
    """
    return run_program(job) if job.get("kind") == "program" else run_traced(job)


def run_traced(job: dict[str, Any]) -> dict[str, Any]:
    """Execute `job["code"]`, call its entry point on `job["input"]` under the tracer; runs in the sandbox.

    A call that reaches the event cap stops there (`trace_truncated`, no trace sent back); one whose trace
    became unreliable stops too (`trace_failed`, see `Tracer`). `"traced": False` runs the call without the
    tracer, for its output alone (an empty trace)."""
    namespace: dict[str, Any] = {"__name__": "__problem__", "__builtins__": builtins}
    stdout = _CappedText(job.get("max_stdout", 10_000))
    sys.stdout = sys.stderr = stdout
    try:
        exec(_compiled(job["code"], CODE_FILENAME), namespace)
    except (Exception, SystemExit) as exc:
        return {**_raised(exc), "where": "module"}
    try:
        args, kwargs = evaluate_args(job["input"], namespace)
    except BadInput as err:
        return {"outcome": "bad_input", "message": str(err)}
    fn = namespace.get(job["entry_point"])
    if not callable(fn):
        return {"outcome": "entry_point_missing", "message": f"no callable named {job['entry_point']!r}"}
    tracer = Tracer(job["code"], job.get("max_events", 20_000), job.get("max_value_len", 400))
    result: dict[str, Any] = {}
    reset_seed_order()
    try:
        value = tracer.run(fn, args, kwargs) if job.get("traced", True) else fn(*args, **kwargs)
    except TraceLimit as exc:  # the tracer's own stop is reported below, whatever the code did after it
        if not tracer.stopped:
            result.update(_raised(exc))  # raised by the traced code itself: an exception like any other
    except (Exception, SystemExit) as exc:
        result.update(_raised(exc))
    else:
        text, cut = render(value, job.get("max_output_len", 10_000))
        result.update(outcome="ok", output=text, output_truncated=cut, output_is_literal=_round_trips(value, text))
    result.update(trace=tracer.events, truncated_values=tracer.truncated_values, seed_ordered=seed_ordered_seen())
    result["stdout"] = stdout.getvalue()
    if tracer.truncated_events:
        return {"outcome": "trace_truncated", "message": f"the trace reached {tracer.max_events} events "
                "(tracer.max_events); the call was stopped there", "stdout": result["stdout"]}
    if tracer.failure:
        return {"outcome": "trace_failed", "message": f"{tracer.failure}; the call was stopped there",
                "stdout": result["stdout"]}
    if isolation.violations and result["outcome"] == "ok":
        result.update(outcome="sandbox_violation", message=f"attempted {isolation.violations[0]}")
    return result


_WARM_UP = ("def f(xs, k=2):\n    seen = {}\n    for x in xs:\n        if x not in seen:\n"
            "            seen[x] = str(x) * k\n    return sorted(seen.items()), {x % 2 for x in xs}\n")


def warm_up() -> None:
    """Run one trusted call under the tracer here, in the fork server before it forks children: the lazy
    imports, caches and first-use set-up it triggers then happen once, not again in every child."""
    saved = sys.stdout, sys.stderr
    try:
        run_traced({"code": _WARM_UP, "entry_point": "f", "input": "[3, 1, 3], k=1"})
    finally:
        sys.stdout, sys.stderr = saved


def run_program(job: dict[str, Any]) -> dict[str, Any]:
    """Execute a whole program (a benchmark's checker: code plus asserts); ok when it raises nothing. It runs as
    the module `job["module"]` (default `__main__`; another name skips the code's `if __name__ == "__main__":`
    block)."""
    sys.stdout = sys.stderr = _CappedText(job.get("max_stdout", 10_000))
    try:
        namespace = {"__name__": job.get("module", "__main__"), "__builtins__": builtins}
        exec(_compiled(job["code"], "<program>"), namespace)
    except (Exception, SystemExit) as exc:
        return {"outcome": _failure_outcome(exc), "exc_type": type(exc).__name__, "message": str(exc)[:300]}
    return {"outcome": "sandbox_violation" if isolation.violations else "ok"}


@lru_cache(maxsize=4)
def _compiled(code: str, filename: str) -> types.CodeType:
    """Compiled once for both determinism runs: a code object is immutable, each run executes it afresh."""
    return compile(code, filename, "exec")


def encode_result(result: dict[str, Any], compare_only: bool = False) -> bytes:
    """The result as JSON, with `digest`, a hash of the trace, so two runs compare without sending both traces;
    `compare_only` leaves the trace itself out (a determinism run needs only what is compared)."""
    trace = json.dumps(result.pop("trace", []), separators=(",", ":"))
    result["digest"] = hashlib.blake2b(trace.encode(), digest_size=16).hexdigest()
    head = json.dumps(result, separators=(",", ":"))
    return (head if compare_only else f'{head[:-1]},"trace":{trace}}}').encode()


def _raised(exc: BaseException) -> dict[str, Any]:
    return {"outcome": _failure_outcome(exc), "exc_type": type(exc).__name__, "message": str(exc)[:300],
            "line": _user_line(exc)}


def _failure_outcome(exc: BaseException) -> str:
    if isolation.violations:
        return "sandbox_violation"
    return "memory" if isinstance(exc, MemoryError) else "exception"


def _round_trips(value: Any, text: str) -> bool:
    try:
        back = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return type(back) is type(value) and render(back, limit=len(text) + 1)[0] == text


@lru_cache(maxsize=256)
def builds_sets(*sources: str) -> bool:
    """Whether code or input text makes a set (a display, a comprehension, `set`, `frozenset`), or cannot be
    parsed: such calls may depend on a set's iteration order, which follows the hash seed. A static check,
    so it also sees sets that never reach a traced local (`''.join(set(s))`)."""
    try:
        trees = [ast.parse(source) for source in sources]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True
    return any(isinstance(node, ast.Set | ast.SetComp)
               or (isinstance(node, ast.Name) and node.id in ("set", "frozenset"))
               or _view_set_operation(node)
               for tree in trees for node in ast.walk(tree))


def _view_set_operation(node: ast.AST) -> bool:
    """`d.keys() | e.keys()` and the like: set operators on dict views make sets."""
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr | ast.BitAnd | ast.BitXor | ast.Sub) \
        and any(isinstance(side, ast.Call) and isinstance(side.func, ast.Attribute)
                and side.func.attr in ("keys", "items") for side in (node.left, node.right))


def _user_line(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == CODE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class _CappedText(io.StringIO):
    """A stdout replacement that keeps the first `limit` characters and drops the rest."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, text: str) -> int:
        room = self.limit - self.tell()
        if room > 0:
            super().write(text[:room])
        return len(text)

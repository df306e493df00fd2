"""A restricted evaluator for the expressions a CoT writes about traced values (`len(s)`, `x[0]`, `n + 1`).

CoT text is untrusted, so nothing here calls `eval`: the expression is parsed with `ast` and interpreted node
by node over literal values only — constants, the traced values of names (each a Python literal), displays,
subscripts and slices, arithmetic, comparisons, and a short list of pure built-ins and methods. Anything else
raises `Unsupported` (the claim is then unchecked, which rejects the CoT). Sizes are bounded so that
`'a' * 10**9` is refused rather than built.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

from operators.trace.values import parse_literal

MAX_TEXT = 300  # characters of expression text
MAX_SIZE = 10_000  # elements or characters of any value built

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Eq: operator.eq,
    ast.NotEq: operator.ne, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len, "abs": abs, "min": min, "max": max, "sum": sum, "sorted": sorted, "str": str, "int": int,
    "float": float, "bool": bool, "list": list, "tuple": tuple, "set": set, "ord": ord, "chr": chr,
    "round": round, "any": any, "all": all,
}
_METHODS = {
    str: {"upper", "lower", "strip", "lstrip", "rstrip", "split", "count", "find", "index", "startswith",
          "endswith", "isdigit", "isalpha", "isalnum", "isspace", "isupper", "islower", "istitle", "title",
          "capitalize", "swapcase", "casefold", "isnumeric", "isdecimal", "join", "replace"},
    list: {"count", "index"},
    tuple: {"count", "index"},
    dict: {"get", "keys", "values", "items"},
}


class Unsupported(ValueError):
    """The expression uses something the evaluator does not interpret, or grows too large."""


class UnknownName(Unsupported):
    """The expression names a variable the frame does not hold."""


def evaluate(text: str, lookup: Callable[[str], str | None]) -> Any:
    """The value of expression `text`, with `lookup(name)` giving a name's traced value text (None: absent)."""
    if len(text) > MAX_TEXT:
        raise Unsupported("expression too long")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError) as err:
        raise Unsupported("not an expression") from err
    try:
        return _Interpreter(lookup).value(tree.body)
    except RecursionError as err:
        raise Unsupported("nested too deeply") from err


class _Interpreter:
    def __init__(self, lookup: Callable[[str], str | None]) -> None:
        self.lookup = lookup

    def value(self, node: ast.expr) -> Any:
        result = self._value(node)
        if isinstance(result, str | bytes | list | tuple | set | dict | frozenset) and len(result) > MAX_SIZE:
            raise Unsupported("value too large")
        return result

    def _value(self, node: ast.expr) -> Any:
        match node:
            case ast.Constant(value=value):
                return value
            case ast.Name(id=name):
                return self._name(name)
            case ast.List(elts=items) | ast.Tuple(elts=items) | ast.Set(elts=items):
                values = [self.value(item) for item in items]
                return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](values)
            case ast.Dict(keys=keys, values=values) if None not in keys:
                return {self.value(k): self.value(v) for k, v in zip(keys, values, strict=True)}  # type: ignore[arg-type]
            case ast.Subscript(value=container, slice=ast.Slice() as part):
                return self._guard(lambda: self.value(container)[slice(*(
                    None if p is None else self.value(p) for p in (part.lower, part.upper, part.step)))])
            case ast.Subscript(value=container, slice=index):
                return self._guard(lambda: self.value(container)[self.value(index)])
            case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
                return self._binary(op, self.value(left), self.value(right))
            case ast.UnaryOp(op=op, operand=operand) if type(op) in _UNARY:
                return self._guard(lambda: _UNARY[type(op)](self.value(operand)))
            case ast.Compare(left=left, ops=[op], comparators=[right]):
                return self._guard(lambda: _COMPARE[type(op)](self.value(left), self.value(right)))
            case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in _FUNCTIONS:
                return self._guard(lambda: _FUNCTIONS[name](*(self.value(a) for a in args)))
            case ast.Call(func=ast.Attribute(value=owner, attr=method), args=args, keywords=[]):
                return self._method(self.value(owner), method, [self.value(a) for a in args])
        raise Unsupported(f"cannot evaluate {type(node).__name__}")

    def _name(self, name: str) -> Any:
        if name in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[name]
        text = self.lookup(name)
        if text is None:
            raise UnknownName(name)
        try:
            return parse_literal(text)
        except ValueError as err:
            raise Unsupported(f"{name} is not a literal value") from err

    def _binary(self, op: ast.operator, left: Any, right: Any) -> Any:
        if isinstance(op, ast.Mult) and any(isinstance(v, str | list | tuple) for v in (left, right)):
            count = right if isinstance(left, str | list | tuple) else left
            size = len(left) if isinstance(left, str | list | tuple) else len(right)
            if not isinstance(count, int) or count * size > MAX_SIZE:
                raise Unsupported("repetition too large")
        if isinstance(op, ast.Pow) and not (isinstance(right, int) and 0 <= right <= 64
                                             and isinstance(left, int | float) and abs(left) <= 10**6):
            raise Unsupported("power out of range")
        return self._guard(lambda: _BINARY[type(op)](left, right))

    def _method(self, owner: Any, method: str, args: list[Any]) -> Any:
        if method not in _METHODS.get(type(owner), ()):
            raise Unsupported(f"method {method} is not evaluated")
        if method in ("replace", "join") and _grown_size(owner, args) > MAX_SIZE:
            raise Unsupported(f"{method} result too large")
        return self._guard(lambda: getattr(owner, method)(*args))

    @staticmethod
    def _guard(compute: Callable[[], Any]) -> Any:
        """Run one operation; a Python error in the claimed expression means it has no value."""
        try:
            return compute()
        except Unsupported:
            raise
        except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, AttributeError,
                OverflowError) as err:
            raise Unsupported(f"{type(err).__name__}: {err}") from err


def _grown_size(owner: Any, args: list[Any]) -> int:
    """A bound on the size of `owner.replace(*args)` or `owner.join(*args)`, computed before building it."""
    parts = [a for arg in args for a in (arg if isinstance(arg, list | tuple) else [arg]) if isinstance(a, str)]
    return (len(owner) + 1) * (1 + sum(len(p) for p in parts))

"""Inputs for bare functions (CodeI/O-style): propose argument lists for code that came without any, and keep
only those that run in the sandbox deterministically.

Proposals come from static analysis (`ast`; nothing is executed here): type hints, literal defaults, how the
body uses each parameter and, failing those, the parameter's name; or from a model (`prompt`,
`parse_proposals`). Whoever proposed an input, only `keep` accepts it, after running it in the sandbox.

Limits, stated plainly:
- inference is per parameter and local: it follows a parameter through loops, indexing, unpacking and plain
  assignments (`x = arr[i]`), not into other functions nor across parameters (`a + b` tells nothing);
- values are small fixed examples (short lists, a few words, small ints), not values chosen to reach branches;
- entry points are what the sandbox can call: top-level functions, lambdas assigned to a name, and classes
  (their `__init__`, whose instances are rarely literals, so `keep` usually rejects them); `**kwargs` gets
  nothing, `*args` zero to three values, keyword-only parameters are passed by name;
- callables, iterators, bytes and user classes as parameters are not inferred: they get an int, and fail.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from operators.sandbox.calls import BadInput, arguments_text, check_syntax

if TYPE_CHECKING:
    from operators.sandbox.client import Sandbox

PROMPT_VERSION = "1"
# Where a proposal's values came from, strongest first; a proposal is as weak as its weakest value.
SOURCES = ("none", "hint", "default", "usage", "name", "fallback")
JOB_OPTIONS = {"max_events": 20_000, "max_value_len": 400}  # as the execute stage runs calls

# Concrete kinds a vote supports, with weights. `seq`: indexed or iterated; `container`: the right of `in`.
_VOTE_KINDS: dict[str, dict[str, float]] = {
    "int": {"int": 1}, "float": {"float": 1}, "num": {"int": 0.6, "float": 0.5}, "bool": {"bool": 1},
    "str": {"str": 1}, "char": {"char": 1, "str": 0.5}, "digits": {"digits": 1, "str": 0.3},
    "seq": {"list": 1, "str": 0.5, "tuple": 0.5}, "list": {"list": 1}, "tuple": {"tuple": 1},
    "dict": {"dict": 1}, "set": {"set": 1}, "container": {"list": 0.6, "str": 0.4, "dict": 0.3, "set": 0.2},
}
_METHODS = {
    "str": {"split", "upper", "lower", "strip", "lstrip", "rstrip", "replace", "startswith", "endswith", "find",
            "rfind", "title", "capitalize", "swapcase", "join", "format", "encode", "splitlines", "partition",
            "rpartition", "center", "ljust", "rjust", "zfill", "casefold", "translate", "istitle"},
    "char": {"isupper", "islower", "isdigit", "isalpha", "isalnum", "isspace", "isnumeric", "isdecimal"},
    "list": {"append", "extend", "insert", "remove", "sort", "reverse", "pop", "clear"},
    "dict": {"items", "keys", "values", "get", "setdefault", "update", "popitem"},
    "set": {"add", "discard", "union", "intersection", "difference", "issubset", "issuperset"},
    "seq": {"count", "index"}, "float": {"is_integer"}, "int": {"bit_length"},
}
_CALL_VOTES = {
    "len": "seq", "range": "int", "sum": "seq", "abs": "num", "round": "num", "pow": "num", "divmod": "num",
    "bin": "int", "hex": "int", "oct": "int", "chr": "int", "ord": "char", "enumerate": "seq", "zip": "seq",
    "list": "seq", "tuple": "seq", "reversed": "seq", "iter": "seq", "set": "seq", "frozenset": "seq",
    "Counter": "seq", "deque": "seq", "any": "seq", "all": "seq", "filter": "seq", "map": "seq",
}
# Library functions called as `module.name(...)` (whatever the module is imported as): the vote for each
# positional argument, the last one repeated.
_LIBRARY_CALLS = {
    "nlargest": ("int", "seq"), "nsmallest": ("int", "seq"), "heapify": ("seq",), "heappush": ("seq", "int"),
    "heappop": ("seq",), "bisect": ("seq", "int"), "bisect_left": ("seq", "int"), "bisect_right": ("seq", "int"),
    "insort": ("seq", "int"), "permutations": ("seq", "int"), "combinations": ("seq", "int"),
    "combinations_with_replacement": ("seq", "int"), "product": ("seq",), "chain": ("seq",),
    "groupby": ("seq",), "accumulate": ("seq",), "Counter": ("seq",), "deque": ("seq",), "merge": ("seq",),
}
# Methods whose arguments tell something, whatever object they are called on (`text.replace(old, new)`).
_METHOD_ARGUMENTS = {
    "replace": "str", "split": "str", "startswith": "str", "endswith": "str", "find": "str", "strip": "str",
    "search": "str", "match": "str", "fullmatch": "str", "findall": "str", "finditer": "str", "update": "dict",
    "extend": "seq", "union": "seq", "intersection": "seq", "difference": "seq",
}
_WITH_FUNCTION = {"sorted", "min", "max", "map", "filter"}  # `sorted(xs, key=lambda x: …)`, `map(lambda x: …, xs)`
_INT_MATH = {"factorial", "gcd", "lcm", "comb", "perm", "isqrt"}
_SAME_ITEMS = {"sorted", "reversed", "list", "tuple", "set", "iter", "frozenset"}  # f(x) has x's items
# Names are weak evidence: (pattern, votes on the value, votes on its items); the first match counts.
_NAME_HINTS: tuple[tuple[str, str, str | None], ...] = (
    (r"(matrix|grid|mat|board)\d*", "list", "list"),
    (r"\w*(words|strings|names|strs)\d*", "list", "str"),
    (r"\w*tup\w*", "tuple", None),
    (r"\w*dict\w*|dic\d*|d\d+|mapping", "dict", None),
    (r"\w*(list|arr|array|nums|numbers|lst|items|elements|seq|values)\w*|li\d*|xs", "list", None),
    (r"\w*(str|string|text|word|sentence|txt)\w*|s\d*|st\d*", "str", None),
    (r"(ch|char|letter|character)\d*", "char", None),
    (r"\w*(radius|height|width|side|area|price|rate|amount|weight|base)\w*", "num", None),
    (r"[a-z]\d*|n\w*|\w*(num|count|size|len|length|limit|idx|index|start|end|low|high|year|pos)\w*", "int", None),
)
_EXAMPLES = {  # top-level values of a scalar kind, likeliest to work first, edge cases last
    "int": ("3", "2", "1", "5", "0", "10", "7", "-4"), "float": ("2.5", "1.5", "10.0", "0.5", "-3.25"),
    "str": ("'hello world'", "'Python'", "'abcba'", "'1, 2, 3'", "'a'", "''", "'Hello World 123'"),
    "char": ("'a'", "'e'", "'Z'", "'5'"), "digits": ("'123'", "'7'", "'2024'", "'0'"), "bool": ("True", "False"),
}
_ITEMS: dict[str, tuple[Any, ...]] = {  # the i-th item of a collection
    "int": (3, 1, 4, 1, 5, 9, 2, 6, 5, 8, 7, 10), "float": (1.5, 2.0, 3.25, 0.5, 4.75),
    "str": ("apple", "banana", "cherry", "date", "fig", "grape"), "char": tuple("abcdefgh"),
    "digits": tuple("12345678"), "bool": (True, False),
}
_SIZES = ((5, 0), (3, 5), (1, 2), (0, 0))  # (items, first item) of the top-level examples of a collection
_OPEN_CLOSE = {"list": ("[", "]"), "tuple": ("(", ")"), "set": ("{", "}")}
Function = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda


@dataclass(eq=False)  # compared by identity: usages refer to each other (peers)
class Usage:
    """What the code does with one value: a parameter, or the items, keys or fields of one."""

    votes: Counter[str] = field(default_factory=Counter)
    children: dict[str, Usage] = field(default_factory=dict)  # "item", "key", "0", "1", … (unpacked fields)
    arity: int | None = None  # unpacked into this many names
    peers: list[Usage] = field(default_factory=list)  # values it is added to or compared with (`a + b`)

    def child(self, key: str) -> Usage:
        return self.children.setdefault(key, Usage())

    def seen(self) -> bool:
        return any(v > 0 for v in self.votes.values()) or any(c.seen() for c in self.children.values())


@dataclass(frozen=True)
class Shape:
    """A value to make: a scalar kind (`_EXAMPLES`), or a collection of `parts` (list/set/tuple: the item;
    a `fixed` tuple: one part per field; dict: key and value)."""

    kind: str
    parts: tuple[Shape, ...] = ()
    fixed: bool = False


@dataclass(frozen=True)
class Proposal:
    """One candidate argument list and the weakest evidence behind its values (see `SOURCES`)."""

    args: str
    source: str


@dataclass
class Found:
    """What `keep` kept, how many candidates it ran in the sandbox, and why the others were rejected."""

    inputs: list[str] = field(default_factory=list)
    tried: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def why(self) -> str:
        """One line on why nothing (or less than wanted) was kept."""
        if not self.tried and not self.reasons:
            return "no candidate input"
        counts = ", ".join(f"{reason} {n}" for reason, n in self.reasons.most_common())
        return f"{len(self.inputs)} of {self.tried} candidates run kept; rejected: {counts or 'none'}"


# --- proposals from static analysis -------------------------------------------------------------------------

def propose(code: str, entry_point: str, limit: int = 12) -> list[str]:
    """Up to `limit` candidate argument lists for `entry_point` (`"[3, 1, 4], 2"`), from the code alone.
    Empty when the code does not parse or defines no such entry point (the caller rejects the row)."""
    return [p.args for p in proposals(code, entry_point, limit)]


def proposals(code: str, entry_point: str, limit: int = 12) -> list[Proposal]:
    """`propose`, with where each candidate's values came from."""
    try:
        tree = ast.parse(code)
        target = _entry(tree, entry_point)
        if target is None:
            return []
        functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
        return _combine(_parameters(target, functions, code), limit)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []


def _entry(tree: ast.Module, name: str) -> tuple[Function, bool] | None:
    """The last top-level definition of `name` (what the sandbox calls), and whether its first parameter is
    bound (a class's `__init__`); None if there is none."""
    found = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            found = (node, False)
        elif isinstance(node, ast.ClassDef) and node.name == name:
            inits = [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
            found = (inits[-1], True) if inits else (ast.Lambda(ast.arguments([], [], None, [], [], None, []),
                                                                 ast.Constant(None)), False)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda) \
                and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            found = (node.value, False)
    return found


def _parameters(target: tuple[Function, bool], functions: dict[str, Function],
                code: str) -> list[list[tuple[str, str]]]:
    """For each argument slot of a call, its candidate texts with their sources (`"x=1"` for keywords)."""
    fn, bound = target
    a = fn.args
    positional = [*a.posonlyargs, *a.args][1 if bound else 0:]
    defaults = [None] * (len(a.posonlyargs) + len(a.args) - len(a.defaults)) + list(a.defaults)
    defaults = defaults[1 if bound else 0:]
    names = [p.arg for p in (*positional, *a.kwonlyargs)] + ([a.vararg.arg] if a.vararg else [])
    usages = _Analysis(fn, {name: Usage() for name in names}, functions).usages
    slots = [_values(p, d, usages[p.arg], code) for p, d in zip(positional, defaults, strict=True)]
    if a.vararg:
        slots.append(_varargs(usages[a.vararg.arg]))
    for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        slots.append([(f"{p.arg}={text}", source) for text, source in _values(p, d, usages[p.arg], code)])
    return slots


def _values(param: ast.arg, default: ast.expr | None, usage: Usage, code: str) -> list[tuple[str, str]]:
    """Candidate texts for one parameter: its literal default first, then examples of its likeliest types."""
    found: list[tuple[str, str]] = []
    default_text = ast.get_source_segment(code, default) if default is not None else None
    if default_text is not None and _is_literal(default):
        found.append((default_text, "default"))
    hint = _hint(param.annotation, usage) if param.annotation is not None else None
    if hint is not None:
        found += [(text, "hint") for text in _examples(hint)]
    else:
        shapes, source = _ranked(usage, param.arg)
        if source == "fallback" and found and default_text != "None":  # the default's type beats a guess
            shapes, source = [_shape_of(ast.literal_eval(default))], "default"
        lists = [_examples(shape) for shape in shapes]
        firsts = [text for n, texts in zip((3, 2, 2), lists, strict=False) for text in texts[:n]]
        found += [(text, source) for text in firsts + [text for texts in lists for text in texts]]
    unique: dict[str, str] = {}
    for text, source in found:
        unique.setdefault(text, source)
    return list(unique.items())[:8]


def _varargs(usage: Usage) -> list[tuple[str, str]]:
    """`*args`: two values, one, none, three, of the items' likeliest type."""
    item = _best(usage.children.get("item"))
    source = "usage" if usage.seen() else "fallback"
    values = [_literal(item, 3, i) for i in range(3)]
    return [(", ".join(values[:n]), source) for n in (2, 1, 0, 3)]


def _combine(slots: list[list[tuple[str, str]]], limit: int) -> list[Proposal]:
    """Argument lists from the slots' values, those nearest every slot's first value first."""
    found: list[Proposal] = []
    for index in _index_tuples([len(values) for values in slots]):
        if len(found) >= limit:
            break
        chosen = [values[i] for values, i in zip(slots, index, strict=True)]
        args = ", ".join(text for text, _ in chosen if text)
        source = max((s for _, s in chosen), key=SOURCES.index, default="none")
        found.append(Proposal(args, source))
    return found


def _index_tuples(lengths: list[int], total: int | None = None) -> Iterator[tuple[int, ...]]:
    """Every tuple of indices below `lengths`, by increasing sum (only those summing to `total` if given)."""
    if total is None:
        for t in range(sum(lengths) - len(lengths) + 1):
            yield from _index_tuples(lengths, t)
        return
    if not lengths:
        if total == 0:
            yield ()
        return
    for first in range(min(total, lengths[0] - 1) + 1):
        for rest in _index_tuples(lengths[1:], total - first):
            yield (first, *rest)


# --- what the code does with each parameter -----------------------------------------------------------------

class _Analysis:
    """Usage of each parameter, gathered over the function's whole tree (nested code included) and over the
    top-level `functions` it passes the parameter to (helpers, one level of call each, no recursion)."""

    def __init__(self, fn: Function, usages: dict[str, Usage], functions: dict[str, Function],
                 visiting: frozenset[str] = frozenset()) -> None:
        self.usages = usages
        self.functions = {name: f for name, f in functions.items() if name not in visiting and f is not fn}
        self.helper_calls: dict[str, dict[int, Usage]] = {}  # helper → its argument positions → usage
        self.bound: dict[str, Usage] = dict(usages)  # names bound to a parameter or a part of one
        self.parents = {child: parent for parent in ast.walk(fn) for child in ast.iter_child_nodes(parent)}
        nodes = list(ast.walk(fn))
        for _ in range(3):  # bindings made from other bindings (`for row in m: for x in row`)
            for node in nodes:
                self._bind(node)
        for node in nodes:
            if isinstance(node, ast.Name | ast.Subscript) and (usage := self.resolve(node)) is not None:
                self._evidence(node, usage)
        for name, passed in self.helper_calls.items():
            helper = self.functions[name]
            params = [*helper.args.posonlyargs, *helper.args.args]
            shared = {params[i].arg: usage for i, usage in passed.items() if i < len(params)}
            _Analysis(helper, shared, functions, visiting | {name, getattr(fn, "name", "")})

    def resolve(self, node: ast.AST, depth: int = 0) -> Usage | None:
        """The usage an expression's value belongs to, if it is a parameter or a part of one."""
        if depth > 12:
            return None
        if isinstance(node, ast.Name):
            return self.bound.get(node.id)
        if isinstance(node, ast.Subscript):
            usage = self.resolve(node.value, depth + 1)
            if usage is None:
                return None
            return usage if isinstance(node.slice, ast.Slice) else usage.child("item")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SAME_ITEMS \
                and len(node.args) == 1:
            return self.resolve(node.args[0], depth + 1)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "copy":
            return self.resolve(node.func.value, depth + 1)
        return None

    def _bind(self, node: ast.AST) -> None:
        if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            self._bind_iteration(node.target, node.iter)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            usage = self.resolve(node.value)
            if usage is not None:
                self._bind_to(node.targets[0], usage)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _WITH_FUNCTION:
            functions = [*node.args, *(kw.value for kw in node.keywords if kw.arg == "key")]
            lambdas = [f for f in functions if isinstance(f, ast.Lambda) and f.args.args]
            iterated = [self.resolve(arg) for arg in node.args if not isinstance(arg, ast.Lambda)]
            if lambdas and iterated and iterated[0] is not None:
                self._bind_name(lambdas[0].args.args[0].arg, iterated[0].child("item"))

    def _bind_iteration(self, target: ast.expr, it: ast.expr) -> None:
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.args:
            many = isinstance(target, ast.Tuple | ast.List)
            if it.func.id == "enumerate" and many and len(target.elts) == 2:  # type: ignore[attr-defined]
                return self._bind_iteration(target.elts[1], it.args[0])  # type: ignore[attr-defined]
            if it.func.id == "zip" and many and len(target.elts) == len(it.args):  # type: ignore[attr-defined]
                for part, source in zip(target.elts, it.args, strict=True):  # type: ignore[attr-defined]
                    self._bind_iteration(part, source)
                return None
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and not it.args:
            usage = self.resolve(it.func.value)
            if usage is not None and it.func.attr in ("items", "keys", "values"):
                key, value = usage.child("key"), usage.child("item")
                if it.func.attr == "items" and isinstance(target, ast.Tuple) and len(target.elts) == 2:
                    self._bind_to(target.elts[0], key)
                    self._bind_to(target.elts[1], value)
                elif it.func.attr != "items":
                    self._bind_to(target, key if it.func.attr == "keys" else value)
                return None
        usage = self.resolve(it)
        if usage is not None:
            self._bind_to(target, usage.child("item"))
        return None

    def _bind_name(self, name: str, usage: Usage) -> None:
        if name not in self.bound:
            self.bound[name] = usage
            _name_votes(usage, name, weight=0.5)

    def _bind_to(self, target: ast.expr, usage: Usage) -> None:
        if isinstance(target, ast.Name):
            self._bind_name(target.id, usage)
        elif isinstance(target, ast.Tuple | ast.List):
            usage.arity = len(target.elts)
            usage.votes["tuple"] += 0.5
            for i, part in enumerate(target.elts):
                self._bind_to(part, usage.child(str(i)))

    def _evidence(self, node: ast.expr, usage: Usage) -> None:
        """Votes from what directly encloses one use of a value."""
        parent = self.parents.get(node)
        votes = usage.votes
        if isinstance(parent, ast.Attribute):
            votes.update(kind for kind, names in _METHODS.items() if parent.attr in names)
        elif isinstance(parent, ast.Call) and node in parent.args:
            self._argument(parent, node, usage)
        elif isinstance(parent, ast.BinOp):
            other = parent.right if parent.left is node else parent.left
            _operand(parent.op, other, usage)
            self._peer(usage, other)
        elif isinstance(parent, ast.AugAssign):
            if parent.target is node:
                _operand(parent.op, parent.value, usage)
            else:
                votes["num"] += 0.5
        elif isinstance(parent, ast.UnaryOp) and not isinstance(parent.op, ast.Not):
            votes["int" if isinstance(parent.op, ast.Invert) else "num"] += 1
        elif isinstance(parent, ast.Compare):
            _compared(parent, node, usage)
            for other in (parent.left, *parent.comparators):
                if other is not node:
                    self._peer(usage, other)
        elif isinstance(parent, ast.For | ast.AsyncFor | ast.comprehension | ast.Starred) \
                and getattr(parent, "iter", node) is node:
            votes["seq"] += 1
        elif isinstance(parent, ast.Subscript):
            if parent.value is node:
                self._indexed(parent.slice, usage)
            else:
                votes["int"] += 1  # an index
        elif isinstance(parent, ast.Slice):
            votes["int"] += 1

    def _peer(self, usage: Usage, other: ast.expr) -> None:
        peer = self.resolve(other)
        if peer is not None and peer is not usage and peer not in usage.peers:
            usage.peers.append(peer)

    def _argument(self, call: ast.Call, node: ast.expr, usage: Usage) -> None:
        func, votes = call.func, usage.votes
        if isinstance(func, ast.Name) and func.id in self.functions:  # a helper: what it does with the value
            self.helper_calls.setdefault(func.id, {})[call.args.index(node)] = usage
            return
        if isinstance(func, ast.Attribute):
            module = func.value.id if isinstance(func.value, ast.Name) else None
            if func.attr == "join":
                votes["seq"] += 1
                usage.child("item").votes["str"] += 1
            elif module == "math":
                votes["int" if func.attr in _INT_MATH else "num"] += 1
            elif module == "re":
                votes["str"] += 1
            elif func.attr in _LIBRARY_CALLS:
                kinds = _LIBRARY_CALLS[func.attr]
                votes[kinds[min(call.args.index(node), len(kinds) - 1)]] += 1
            elif func.attr in _METHOD_ARGUMENTS:
                votes[_METHOD_ARGUMENTS[func.attr]] += 0.6
            return
        if not isinstance(func, ast.Name):
            return
        name = func.id
        if name in ("min", "max", "sorted"):
            votes["seq" if len(call.args) == 1 else "num"] += 1
            key = next((kw.value for kw in call.keywords if kw.arg == "key"), None)
            if isinstance(key, ast.Name) and key.id in ("sum", "len"):  # `sorted(m, key=sum)`: items are lists
                usage.child("item").votes["seq"] += 1
            elif isinstance(key, ast.Call) and isinstance(key.func, ast.Name) and key.func.id == "itemgetter":
                usage.child("item").votes["tuple"] += 1
        elif name in ("int", "float"):
            votes.update({"digits": 0.5, "num": 0.4})
        elif name == "str":
            votes["int"] += 0.5
        elif name == "dict":
            votes["seq"] += 1
            usage.child("item").votes["tuple"] += 1
        elif name == "isinstance" and len(call.args) == 2 and isinstance(call.args[1], ast.Name):
            kind = call.args[1].id
            if kind in _VOTE_KINDS:
                votes[kind] += 1
        elif name in _CALL_VOTES:
            votes[_CALL_VOTES[name]] += 1
            if name == "sum":
                usage.child("item").votes["num"] += 1
        elif name in _LIBRARY_CALLS:  # imported by name: `from heapq import merge`
            kinds = _LIBRARY_CALLS[name]
            votes[kinds[min(call.args.index(node), len(kinds) - 1)]] += 1

    def _indexed(self, index: ast.expr, usage: Usage) -> None:
        if isinstance(index, ast.Constant) and isinstance(index.value, str):
            usage.votes["dict"] += 1
            usage.child("key").votes["str"] += 1
        elif not isinstance(index, ast.Slice) and self.resolve(index) is usage.children.get("key") is not None:
            usage.votes["dict"] += 1
        else:
            usage.votes["seq"] += 1


def _operand(op: ast.operator, other: ast.expr, usage: Usage) -> None:
    """Votes from an arithmetic operator applied to the value and `other`."""
    votes = usage.votes
    if isinstance(op, ast.BitAnd | ast.BitOr | ast.BitXor | ast.LShift | ast.RShift):
        votes["int"] += 1
    elif isinstance(other, ast.Constant) and not isinstance(other.value, bool):
        value = other.value
        if isinstance(value, int):
            votes["num" if isinstance(op, ast.Div | ast.Pow) else "int"] += 0.6 if isinstance(op, ast.Mult) else 1
        elif isinstance(value, float):
            votes.update({"num": 1, "float": 0.3})
        elif isinstance(value, str) and isinstance(op, ast.Add):
            votes["str"] += 1
    elif isinstance(other, ast.List | ast.ListComp):
        votes["list"] += 1
    elif isinstance(other, ast.Tuple):
        votes["tuple"] += 1
    elif isinstance(op, ast.Div | ast.Pow | ast.Sub | ast.Mod | ast.FloorDiv):
        votes["num"] += 0.5
    elif isinstance(op, ast.Mult):
        votes["num"] += 0.3


def _compared(compare: ast.Compare, node: ast.expr, usage: Usage) -> None:
    """Votes from a comparison the value takes part in."""
    operands = [compare.left, *compare.comparators]
    position = next(i for i, operand in enumerate(operands) if operand is node)
    pairs = [(op, operands[position + 1], True) for op in compare.ops[position:position + 1]]
    pairs += [(compare.ops[position - 1], operands[position - 1], False)] if position else []
    for op, other, node_left in pairs:
        if isinstance(op, ast.Is | ast.IsNot):
            continue
        if isinstance(op, ast.In | ast.NotIn):
            if node_left:
                _element_votes(other, usage)
            else:
                usage.votes["container"] += 1
                if isinstance(other, ast.Constant) and not isinstance(other.value, bool | type(None)):
                    usage.child("item").votes[_constant_kind(other.value)] += 1
        elif isinstance(other, ast.Constant) and other.value is not None:
            usage.votes[_constant_kind(other.value)] += 1
        elif isinstance(other, ast.List | ast.Tuple | ast.Dict):
            usage.votes[type(other).__name__.lower()] += 1
        elif isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE):
            usage.votes["num"] += 0.3


def _element_votes(container: ast.expr, usage: Usage) -> None:
    """`value in container`, where the container is written out: the value is like its elements."""
    if isinstance(container, ast.Constant) and isinstance(container.value, str):
        usage.votes["char"] += 1
    elif isinstance(container, ast.List | ast.Tuple | ast.Set) and container.elts \
            and isinstance(container.elts[0], ast.Constant) and container.elts[0].value is not None:
        usage.votes[_constant_kind(container.elts[0].value)] += 1


def _constant_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "char" if len(value) == 1 else "str"
    return "float" if isinstance(value, float) else "int"


def _name_votes(usage: Usage, name: str, weight: float) -> bool:
    """Add the weak evidence of a name (`arr`, `s`, `matrix`…); whether the name suggested anything."""
    for pattern, kind, item in _NAME_HINTS:
        if re.fullmatch(pattern, name.lower()):
            usage.votes[kind] += weight
            if item:
                usage.child("item").votes[item] += weight
            return True
    return False


# --- from usage and hints to shapes, from shapes to example values ------------------------------------------

def _scores(usage: Usage, peers: bool = True) -> Counter[str]:
    """Concrete kinds (scalars, list, tuple, set, dict) with their weight of evidence; a value with no
    evidence of its own takes that of the values it is added to or compared with."""
    scores: Counter[str] = Counter()
    for vote, weight in usage.votes.items():
        for kind, share in _VOTE_KINDS.get(vote, {}).items():
            scores[kind] += weight * share
    if peers and not usage.seen():
        for peer in usage.peers:
            scores.update({kind: 0.8 * score for kind, score in _scores(peer, peers=False).items()})
    item = usage.children.get("item")
    if item is not None and item.seen():
        top = _scores(item).most_common(1)
        kind = top[0][0] if top else "int"
        if kind in ("char", "digits"):
            scores.update({"str": 1, "list": 0.3})
        elif kind == "str":
            scores.update({"list": 0.8, "str": 0.4})
        else:
            scores.update({"list": 0.8, "tuple": 0.3})
            scores["str"] *= 0.3
    if usage.arity:
        scores["tuple"] += 0.3
    key = usage.children.get("key")
    if key is not None and key.seen():
        scores["dict"] += 0.5
    return scores


def _ranked(usage: Usage, name: str) -> tuple[list[Shape], str]:
    """Up to three likeliest shapes of a parameter, and the kind of evidence behind them."""
    if usage.seen():
        source = "usage"
        _name_votes(usage, name, weight=0.3)
    elif any(peer.seen() for peer in usage.peers):
        source = "usage"
    else:
        source = "name" if _name_votes(usage, name, weight=0.7) else "fallback"
    scores = _scores(usage).most_common()
    if not scores or scores[0][1] <= 0:
        return [Shape("int")], source
    kinds = [kind for kind, score in scores[:3] if score >= 0.25 * scores[0][1]]
    return [_shape(kind, usage) for kind in kinds], source


def _best(usage: Usage | None, default: str = "int", depth: int = 0) -> Shape:
    """The likeliest shape of a part of a value (an item, a key), or `default` when nothing is known."""
    if usage is None or not usage.seen() or depth > 3:
        return Shape(default)
    top = _scores(usage).most_common(1)
    return _shape(top[0][0], usage, depth) if top and top[0][1] > 0 else Shape(default)


def _shape(kind: str, usage: Usage, depth: int = 0) -> Shape:
    children = usage.children
    if kind in ("list", "set"):
        return Shape(kind, (_best(children.get("item"), depth=depth + 1),))
    if kind == "dict":
        return Shape(kind, (_best(children.get("key"), "str", depth + 1),
                            _best(children.get("item"), depth=depth + 1)))
    if kind == "tuple":
        if usage.arity:
            return Shape(kind, tuple(_best(children.get(str(i)), depth=depth + 1) for i in range(usage.arity)),
                         fixed=True)
        return Shape(kind, (_best(children.get("item"), depth=depth + 1),))
    return Shape(kind)


def _hint(annotation: ast.expr, usage: Usage) -> Shape | None:
    """The shape a type hint names (`list[int]`, `Dict[str, int]`, `Optional[str]`, `int | None`), or None
    for hints that say nothing usable (`Any`, a user class); missing parts come from usage."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            return _hint(ast.parse(annotation.value, mode="eval").body, usage)
        except SyntaxError:
            return None
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        return _hint(annotation.left, usage) or _hint(annotation.right, usage)
    base = annotation.value if isinstance(annotation, ast.Subscript) else annotation
    name = base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""
    kind = {"List": "list", "Sequence": "list", "Iterable": "list", "Collection": "list", "MutableSequence": "list",
            "Tuple": "tuple", "Dict": "dict", "Mapping": "dict", "Set": "set", "FrozenSet": "set",
            "frozenset": "set"}.get(name, name)
    if not isinstance(annotation, ast.Subscript):
        if kind in ("int", "float", "str", "bool"):
            return Shape(kind)
        return _shape(kind, usage) if kind in ("list", "tuple", "dict", "set") else None
    args = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
    if name in ("Optional", "Union"):
        return next((shape for arg in args if (shape := _hint(arg, usage))), None)
    if kind == "dict" and len(args) == 2:
        return Shape("dict", (_hint(args[0], usage.child("key")) or Shape("str"),
                              _hint(args[1], usage.child("item")) or _best(usage.children.get("item"))))
    if kind == "tuple" and not (len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is ...):
        return Shape("tuple", tuple(_hint(arg, Usage()) or Shape("int") for arg in args), fixed=True)
    if kind in ("list", "set", "tuple"):
        item = usage.child("item")
        return Shape(kind, (_hint(args[0], item) or _best(item),))
    return None


def _shape_of(value: Any) -> Shape:
    """The shape of a literal default's value (its items' shape from its first item)."""
    kind = "str" if isinstance(value, str) else type(value).__name__
    if isinstance(value, list | tuple | set | frozenset):
        item = _shape_of(next(iter(value))) if value else Shape("int")
        return Shape("set" if isinstance(value, frozenset) else kind, (item,))
    if isinstance(value, dict):
        key, item = next(iter(value.items()), ("a", 1))
        return Shape("dict", (_shape_of(key), _shape_of(item)))
    return Shape(kind if kind in _EXAMPLES else "int")


def _examples(shape: Shape) -> list[str]:
    """Example values (literal texts) of a shape, likeliest to work first."""
    if shape.kind in _EXAMPLES:
        return list(_EXAMPLES[shape.kind])
    if shape.fixed:
        return [_literal(shape, 0, offset) for offset in (0, 3, 6)]
    return [_literal(shape, size, offset) for size, offset in _SIZES]


def _literal(shape: Shape, size: int, offset: int) -> str:
    """A value of `shape`: a collection of `size` items (a fixed tuple: its fields), items from the
    `offset`-th example item on; nested lists are square."""
    if shape.kind in _ITEMS:
        pool = _ITEMS[shape.kind]
        return repr(pool[offset % len(pool)])
    if shape.kind not in ("list", "tuple", "set", "dict"):
        return "3"
    if shape.fixed:
        items = [_literal(part, 2, offset + i) for i, part in enumerate(shape.parts)]
    elif shape.kind == "dict":
        key, value = shape.parts
        items = [f"{_key(key, offset + i)}: {_literal(value, 2, offset + i)}" for i in range(size)]
        return "{" + ", ".join(items) + "}"
    else:
        item = shape.parts[0]
        inner = size if item.kind == "list" else 1 if item.kind in _ITEMS else 2
        items = [_literal(item, inner, offset + i * inner) for i in range(size)]
    if shape.kind == "set" and not items:
        return "set()"
    start, end = _OPEN_CLOSE[shape.kind]
    return start + ", ".join(items) + ("," if shape.kind == "tuple" and len(items) == 1 else "") + end


def _key(shape: Shape, i: int) -> str:
    """The i-th dict key of a shape: distinct for the first few keys."""
    if shape.kind == "int":
        return str(i + 1)
    if shape.kind in ("str", "char"):
        return repr(_ITEMS[shape.kind][i % len(_ITEMS[shape.kind])])
    return _literal(shape, 2, i)


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return False
    return True


# --- proposals from a model ---------------------------------------------------------------------------------

_SYSTEM = "You write test inputs for Python functions."
_ASK = ("Here is a Python function.\n\n```python\n{code}\n```\n\n"
        "Write 5 different calls of `{entry_point}` with small, varied, valid arguments, one of them an edge "
        "case. Use only literal values as arguments (numbers, strings, lists, tuples, dicts, sets, True, False, "
        "None), no variables or expressions. Answer with one call per line in a single ```python block:\n\n"
        "```python\n{entry_point}(...)\n```")
_FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)


def prompt(code: str, entry_point: str) -> list[dict[str, str]]:
    """A chat conversation asking a model for example calls of `entry_point` (see `parse_proposals`)."""
    return [{"role": "system", "content": _SYSTEM},
            {"role": "user", "content": _ASK.format(code=code.rstrip(), entry_point=entry_point)}]


def parse_proposals(text: str, entry_point: str) -> list[str]:
    """The argument lists of the calls of `entry_point` in a model's answer, wherever they stand
    (`print(f(1))`, `assert f(1) == 2`), in order, without repeats. Calls whose arguments are not all
    literals (`f(g(1))`, `f(*xs)`) are skipped; text that is not Python is skipped line by line."""
    found: list[str] = []
    for block in _FENCE.findall(text) or [text]:
        for tree, source in _trees(block):
            calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                     and isinstance(node.func, ast.Name) and node.func.id == entry_point and _literal_arguments(node)]
            for call in sorted(calls, key=lambda node: (node.lineno, node.col_offset)):
                args = arguments_text(call, source)
                if args not in found:
                    found.append(args)
    return found


def _trees(block: str) -> list[tuple[ast.Module, str]]:
    """The block parsed whole, or else each line of it that parses on its own."""
    sources = [block, *(line.strip().removeprefix(">>>").strip() for line in block.splitlines())]
    parsed = []
    for source in sources:
        try:
            parsed.append((ast.parse(source), source))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        if source is block:
            break
    return parsed


def _literal_arguments(call: ast.Call) -> bool:
    return all(not isinstance(arg, ast.Starred) and _is_literal(arg) for arg in call.args) \
        and all(kw.arg is not None and _is_literal(kw.value) for kw in call.keywords)


# --- keeping what runs --------------------------------------------------------------------------------------

def keep(sandbox: Sandbox, code: str, entry_point: str, candidates: list[str], want: int = 3,
         max_chars: int = 200) -> Found:
    """Run candidates in the sandbox, in order and in batches, until `want` are kept. A candidate is kept when
    it is at most `max_chars` long, not a repeat, and its call is `ok` (the sandbox has reproduced it under
    another hash seed), traced the entry point's own code, and returned a literal of at most `max_chars`."""
    found = Found()
    queue: list[str] = []
    for candidate in candidates:
        text = candidate.strip()
        if text in queue:
            continue
        if len(text) > max_chars:
            found.reasons["input_too_long"] += 1
            continue
        try:
            check_syntax(text)
        except BadInput:
            found.reasons["bad_input"] += 1
            continue
        queue.append(text)
    batch = max(2 * want, 1)
    for start in range(0, len(queue), batch):
        if len(found.inputs) >= want:
            break
        texts = queue[start:start + batch]
        jobs = [{"code": code, "entry_point": entry_point, "input": text, "max_output_len": max_chars,
                 **JOB_OPTIONS} for text in texts]
        for text, result in zip(texts, sandbox.run_many(jobs), strict=True):
            found.tried += 1
            reason = _rejection(result, max_chars)
            if reason:
                found.reasons[reason] += 1
            elif len(found.inputs) < want:
                found.inputs.append(text)
    return found


def _rejection(result: dict[str, Any], max_chars: int) -> str | None:
    """Why a sandbox result cannot give an input, or None."""
    if result["outcome"] != "ok":
        return result["outcome"]
    if not result.get("trace"):
        return "empty_trace"
    if result["output_truncated"] or len(result["output"]) > max_chars:
        return "output_too_long"
    return None if result["output_is_literal"] else "output_not_literal"

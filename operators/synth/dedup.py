"""Dedup and decontamination of synthesised problems: is this code a copy of one already kept, or of a benchmark item?

Two tests, on the code's canonical form (`canonical`: syntax tree without docstrings, identifiers alpha-renamed):
- exact: the canonical forms are equal, so renaming, layout, comments and docstrings do not hide a copy;
- near: the Jaccard similarity of the canonical forms' token shingles (renamed names all one placeholder, so an
  inserted variable does not renumber the rest) is at least the threshold. MinHash LSH finds the candidates; each
  is confirmed with the exact Jaccard of the two shingle sets, so LSH's false positives never count.

Limits, stated plainly:
- Only static analysis: nothing is executed, so two programs that compute the same thing differently are distinct.
  Of dead code only the plainest padding is dropped (`pass`, a bare constant, a constant stored in a function's
  local that nothing reads); `if False:` blocks or unused computed values still make another syntax tree.
- Code shorter than `min_tokens` is matched exactly only: distinct short functions share most or all of their
  shingles (`[x[n] for x in xs]` / `[xs[i] for i in n]`: all of them, once names are anonymised), so a
  near-duplicate test on them merges distinct problems.
- Attributes keep their names, so renaming a method that is called as `self.method()` shows as a difference.
- Reordered statements, and copies that embed a kept program inside a much larger one (containment rather than
  similarity), are not caught by either test.
- Memory grows with what is kept: a digest per kept problem, and a shingle set plus LSH bands per long one.
"""

from __future__ import annotations

import ast
import hashlib
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from operators.ingest.decontam import _TOKEN, normalise

if TYPE_CHECKING:
    from datasketch import MinHash

# Python scopes: a name bound inside one of these is a different variable from the same name outside it.
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)

# The names `canonical` gives.
_RENAMED = re.compile(r"\b_v\d+\b")
# The MinHash permutations' seed: fixed, so that reruns and separate instances agree.
SEED = 1
DEDUP_VERSION = "dedup-2"  # in the synthesis fingerprint: what counts as a duplicate decides what is kept


@dataclass
class _Scope:
    """The names one scope binds: renamed ones, imported ones (kept as written), and those declared
    `global`/`nonlocal` (bound in an outer scope)."""

    is_class: bool
    bound: set[str] = field(default_factory=set)
    imported: set[str] = field(default_factory=set)
    declared: set[str] = field(default_factory=set)
    renamed: dict[str, str] = field(default_factory=dict)  # bound name → canonical name, filled as they appear


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of `scope` that belong to its namespace: nested scopes are yielded (their name binds here) but not
    entered."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def _scope_of(node: ast.AST) -> _Scope:
    scope = _Scope(is_class=isinstance(node, ast.ClassDef))
    for child in _own_nodes(node):
        match child:
            case ast.Name(ctx=ast.Store() | ast.Del()):
                scope.bound.add(child.id)
            case ast.arg():
                scope.bound.add(child.arg)
            case ast.FunctionDef() | ast.AsyncFunctionDef() | ast.ClassDef():
                scope.bound.add(child.name)
            case ast.ExceptHandler(name=str()) | ast.MatchAs(name=str()) | ast.MatchStar(name=str()):
                scope.bound.add(child.name)
            case ast.MatchMapping(rest=str()):
                scope.bound.add(child.rest)
            case ast.Import() | ast.ImportFrom():
                scope.imported.update((alias.asname or alias.name).split(".")[0] for alias in child.names)
            case ast.Global() | ast.Nonlocal():
                scope.declared.update(child.names)
    return scope


class _Renamer(ast.NodeVisitor):
    """Renames, in place, every name the code binds to `_v0`, `_v1`, … in order of first appearance, one name per
    variable (the same text in two scopes is two variables). Builtins, attributes, keyword-argument names, imported
    names and globals the code does not bind are kept."""

    def __init__(self, module: ast.Module) -> None:
        self.stack = [_scope_of(module)]
        self.count = 0

    def visit(self, node: ast.AST) -> None:
        self._rename(node)  # a def's or class's own name binds in the enclosing scope: renamed before entering
        entered = isinstance(node, _SCOPES)
        if entered:
            self.stack.append(_scope_of(node))
        self.generic_visit(node)
        if entered:
            self.stack.pop()

    def _rename(self, node: ast.AST) -> None:
        match node:
            case ast.Name():
                node.id = self._resolve(node.id)
            case ast.arg():
                node.arg = self._resolve(node.arg)
            case ast.FunctionDef() | ast.AsyncFunctionDef() | ast.ClassDef():
                node.name = self._resolve(node.name)
            case ast.ExceptHandler(name=str()) | ast.MatchAs(name=str()) | ast.MatchStar(name=str()):
                node.name = self._resolve(node.name)
            case ast.MatchMapping(rest=str()):
                node.rest = self._resolve(node.rest)
            case ast.Global() | ast.Nonlocal():
                node.names = [self._resolve(name) for name in node.names]

    def _resolve(self, name: str) -> str:
        """The canonical name of the variable `name` refers to here, found as Python finds it: innermost scope
        first, skipping class bodies of enclosing scopes; the name itself when the code does not bind it."""
        for depth, scope in enumerate(reversed(self.stack)):
            if name in scope.declared or (scope.is_class and depth > 0):
                continue
            if name in scope.imported:
                return name
            if name in scope.bound:
                if name not in scope.renamed:
                    scope.renamed[name] = f"_v{self.count}"
                    self.count += 1
                return scope.renamed[name]
        return name


def canonical(code: str) -> str | None:
    """The code's syntax tree printed back (`ast.unparse`) without docstrings, without statements that do
    nothing (`_drop_no_ops`), and with every name it binds
    (functions, classes, parameters, locals, comprehension variables, its own globals) renamed in order of first
    appearance; None when the code does not parse. Two programs that differ only in names, layout, comments and
    docstrings give the same text. Keyword arguments keep their names, so renaming a parameter that a call passes
    by keyword shows as a difference."""
    try:
        with warnings.catch_warnings():  # e.g. invalid escape sequences: the code's own business, not ours
            warnings.simplefilter("ignore")
            ast.parse(code)  # normalise falls back to text for code that does not parse: refuse it here
            tree = ast.parse(normalise(code))
        _drop_no_ops(tree)
        _Renamer(tree).visit(tree)
        return ast.unparse(tree)
    except (SyntaxError, ValueError, RecursionError):
        return None


_DYNAMIC = {"locals", "vars", "globals", "eval", "exec", "__import__", "getattr"}  # names read without a Name node


def _drop_no_ops(tree: ast.Module) -> None:
    """Drop statements that cannot change what the code does: `pass`, an expression statement that is only a
    constant, and, inside a function, an assignment of a constant to a name nothing reads (a module's or a
    class's names can be read from outside, as `Rates.bonus` or `self.BASE`; code that could read names
    dynamically, with `locals()` or `eval`, is left alone). A body keeps at least one statement. Copies padded
    this way are then one syntax tree."""
    names = [node for node in ast.walk(tree) if isinstance(node, ast.Name)]
    if any(node.id in _DYNAMIC for node in names) or any(isinstance(node, ast.Global | ast.Nonlocal)
                                                          for node in ast.walk(tree)):
        return
    _prune(tree, {node.id for node in names if isinstance(node.ctx, ast.Load)}, in_function=False)


def _prune(node: ast.AST, read: set[str], in_function: bool) -> None:
    for body_name in ("body", "orelse", "finalbody"):
        body = getattr(node, body_name, None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            kept = [statement for statement in body if not _no_op(statement, read, in_function)]
            setattr(node, body_name, kept or body[:1])
    for child in ast.iter_child_nodes(node):
        _prune(child, read, isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
               or (in_function and not isinstance(child, ast.ClassDef)))


def _no_op(statement: ast.stmt, read: set[str], in_function: bool) -> bool:
    if isinstance(statement, ast.Pass):
        return True
    if isinstance(statement, ast.Expr):
        return isinstance(statement.value, ast.Constant)
    return in_function and isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant) \
        and all(isinstance(target, ast.Name) and target.id not in read for target in statement.targets)


@dataclass(frozen=True)
class Duplicate:
    """Why a problem is a duplicate: `kind` of match, the key it duplicates (a kept problem, or `bench:item`), and
    the Jaccard similarity of their shingle sets (1.0 for an exact match)."""

    kind: Literal["exact", "near"]
    of: str
    similarity: float


@dataclass(frozen=True)
class _Fingerprint:
    digest: bytes  # of the canonical form
    shingles: frozenset[int] | None  # hashed token shingles; None below min_tokens (matched exactly only)


def _hash32(shingle: tuple[str, ...]) -> int:
    """A stable 32-bit hash (the width MinHash expects), the same in every process, unlike `hash`."""
    return int.from_bytes(hashlib.blake2b("\x1f".join(shingle).encode(), digest_size=4).digest(), "little")


def _bands(threshold: float, num_perm: int, recall: float = 0.995) -> tuple[int, int]:
    """LSH (bands, rows): the most rows per band (fewest candidates) that still makes a pair at the threshold a
    candidate with probability `recall`. Candidates are confirmed exactly, so a false candidate costs one set
    comparison while a missed one is a duplicate kept: recall comes first."""
    for rows in range(num_perm, 1, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


def _shingles(tokens: list[str], size: int) -> frozenset[int]:
    """Hashed shingles of `size` tokens, each numbered by its occurrence, so that the Jaccard similarity counts
    repeats (`x * x * x` and `x * x * x * x` differ); decontam's `ngrams` gives a plain set, which does not."""
    occurrences: Counter[tuple[str, ...]] = Counter()
    hashes = set()
    for start in range(len(tokens) - size + 1):
        gram = tuple(tokens[start:start + size])
        occurrences[gram] += 1
        hashes.add(_hash32((*gram, str(occurrences[gram]))))
    return frozenset(hashes)


class Deduplicator:
    """Keeps problems one by one and says which later ones duplicate a kept problem or a benchmark item.

    `check(key, code)` answers with a `Duplicate`, or None and keeps the code; `seen(key, code)` keeps code without
    checking it (previously kept problems, on an incremental rerun). Keys must be unique. Picklable, so it can be
    passed to a Ray stage; deterministic, so reruns and separate instances agree.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, min_tokens: int = 40, shingle: int = 4,
                 benchmarks: dict[str, dict[str, str]] | None = None) -> None:
        """`threshold` (Jaccard of the shingle sets) 0.8: a one-token edit or an inserted statement stays above it
        from about 40 tokens, since it changes at most `shingle` shingles; on MBPP (`bench/dedup.py`) 0.75 catches
        under 1% more copies and 0.9 misses half of them. `min_tokens` (of the canonical form) 40: below it only the
        exact test applies, because short functions that differ in one operator or in which variable goes where share
        nearly all their shingles (`[x[n] for x in xs]` / `[xs[i] for i in n]`: Jaccard 1.0 once names are
        anonymised); at 20 such distinct MBPP functions merge. `shingle` 4: 3 gives the same recall with a
        little more merging, 5 loses 10-20 points of near-duplicate recall. `num_perm`: MinHash permutations, used
        only to find candidates (the similarity is exact). `benchmarks`: name → item id → code, kept as
        `name:item`."""
        if not 0 < threshold <= 1 or num_perm < 1 or min_tokens < shingle or shingle < 1:
            raise ValueError("need 0 < threshold <= 1, num_perm >= 1 and min_tokens >= shingle >= 1")
        self.threshold = threshold
        self.num_perm = num_perm
        self.min_tokens = min_tokens
        self.shingle = shingle
        self._exact: dict[bytes, str] = {}
        self._shingles: dict[str, frozenset[int]] = {}
        self._keys: set[str] = set()
        # Imported here: datasketch loads scipy (~0.8 s), which every `tracecot` command and Ray worker would pay
        # for, through the config's synthesis fingerprint, without deduplicating anything.
        from datasketch import MinHashLSH

        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=_bands(threshold, num_perm))
        for bench, items in (benchmarks or {}).items():
            for item, code in items.items():
                self.seen(f"{bench}:{item}", code)

    def check(self, key: str, code: str) -> Duplicate | None:
        """Why `code` duplicates a kept problem or a benchmark item, or None: then it is kept under `key`."""
        fingerprint = self._fingerprint(code)
        duplicate = self._exact_match(fingerprint) or self._near_match(fingerprint)
        if duplicate is None:
            self._keep(key, fingerprint)
        return duplicate

    def seen(self, key: str, code: str) -> None:
        """Keep `code` under `key` without checking it, so later problems are compared against it."""
        self._keep(key, self._fingerprint(code))

    def _fingerprint(self, code: str) -> _Fingerprint:
        """Code that does not parse is compared by its whitespace-collapsed text."""
        form = canonical(code)
        if form is None:
            form = " ".join(code.split())
        # One placeholder for every renamed name: an inserted variable would otherwise renumber all later ones.
        tokens = _TOKEN.findall(_RENAMED.sub("_v", form))
        shingles = _shingles(tokens, self.shingle) if len(tokens) >= self.min_tokens else None
        return _Fingerprint(hashlib.blake2b(form.encode(), digest_size=16).digest(), shingles)

    def _minhash(self, shingles: frozenset[int]) -> MinHash:
        from datasketch import MinHash

        minhash = MinHash(num_perm=self.num_perm, seed=SEED, hashfunc=int)  # shingles are hashed already
        minhash.update_batch(sorted(shingles))
        return minhash

    def _exact_match(self, fingerprint: _Fingerprint) -> Duplicate | None:
        kept = self._exact.get(fingerprint.digest)
        return Duplicate("exact", kept, 1.0) if kept is not None else None

    def _near_match(self, fingerprint: _Fingerprint) -> Duplicate | None:
        """The most similar kept problem at or above the threshold (ties: the smallest key), among LSH's candidates."""
        if fingerprint.shingles is None:
            return None
        best, similarity = None, 0.0
        for candidate in sorted(self._lsh.query(self._minhash(fingerprint.shingles))):
            kept = self._shingles[candidate]
            score = len(fingerprint.shingles & kept) / len(fingerprint.shingles | kept)
            if score > similarity:
                best, similarity = candidate, score
        return Duplicate("near", best, similarity) if best is not None and similarity >= self.threshold else None

    def _keep(self, key: str, fingerprint: _Fingerprint) -> None:
        if key in self._keys:
            raise ValueError(f"key {key!r} is already kept: keys must be unique")
        self._keys.add(key)
        self._exact.setdefault(fingerprint.digest, key)
        if fingerprint.shingles is not None:
            self._shingles[key] = fingerprint.shingles
            self._lsh.insert(key, self._minhash(fingerprint.shingles))

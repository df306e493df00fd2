"""Dedup of synthesised problems against adversarial copies of real functions: recall per transform, false merges.

    python bench/dedup.py [--data ../shared/data/mbpp/mbpp.jsonl] [--threshold 0.8] [--min-tokens 40] [--shingle 4]

For each MBPP function (`code`), copies made by one transform each:
  rename     every name the code binds renamed (one new name per old name), printed back by ast.unparse
  reformat   printed back by ast.unparse, indented by 2 spaces, a blank line after every statement line
  comments   a docstring in every function and a comment line before every statement line
  all_exact  rename + comments + reformat together
  dead       an unused constant (`unused_marker = None`) inserted as the first statement of the first function
             (or of the module): padding `canonical` drops, so an exact duplicate
  computed   an unused computed value (`unused_marker = len(str(0))`) inserted the same way: not dropped
  constant   the first integer constant changed by one (functions without one are left out)
The first five must be exact duplicates; `computed` and `constant` are near-duplicates, which the near test can
only catch from `min_tokens` on (recall is shown for those too).

Recall: a Deduplicator is given the originals (`seen`), then each copy is checked; a copy counts as caught when
flagged against its own original or an original with the same canonical form (MBPP repeats some functions); a
copy that is not caught is kept, as `check` does, so a later copy of an equal original may be caught against it.
False merges: the originals alone, checked in order in a fresh Deduplicator: every one flagged is listed with the
item it was flagged against, so that true repeats inside MBPP can be told apart from false merges.
Throughput: checks per second over all the checks above (one process, canonical form included).
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

from operators.synth.dedup import Deduplicator, canonical

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"


def bound_names(tree: ast.AST) -> set[str]:
    """Names the code binds (not imported ones), whatever their scope."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return names


def rename(code: str) -> str:
    tree = ast.parse(code)
    new = {name: f"renamed_{index}_{name[::-1]}" for index, name in enumerate(sorted(bound_names(tree)))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            node.id = new.get(node.id, node.id)
        elif isinstance(node, ast.arg):
            node.arg = new.get(node.arg, node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            node.name = new.get(node.name, node.name)
    return ast.unparse(tree)


def reformat(code: str) -> str:
    lines = []
    for line in ast.unparse(ast.parse(code)).splitlines():
        stripped = line.lstrip(" ")
        depth = (len(line) - len(stripped)) // 4
        lines += ["  " * depth + stripped, ""]
    return "\n".join(lines)


STATEMENTS = ("def ", "for ", "if ", "while ", "return ", "else", "elif ", "try", "except", "with ")


def comments(code: str) -> str:
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.body.insert(0, ast.Expr(ast.Constant(f"Helper {node.name}: see the tests for what it returns.")))
    lines = []
    for line in ast.unparse(tree).splitlines():
        stripped = line.lstrip(" ")
        if stripped.startswith(STATEMENTS):
            lines.append(" " * (len(line) - len(stripped)) + f"# step {len(lines)}: {stripped[:20]!r}")
        lines.append(line)
    return "\n".join(lines)


def all_exact(code: str) -> str:
    return reformat(comments(rename(code)))


def inserted(statement: str, code: str) -> str:
    tree = ast.parse(code)
    first = next((node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)), tree)
    first.body.insert(0, ast.parse(statement).body[0])
    return ast.unparse(tree)


def constant(code: str) -> str | None:
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            node.value += 1
            return ast.unparse(tree)
    return None


TRANSFORMS: dict[str, Callable[[str], str | None]] = {
    "rename": rename, "reformat": reformat, "comments": comments, "all_exact": all_exact,
    "dead": partial(inserted, "unused_marker = None"), "computed": partial(inserted, "unused_marker = len(str(0))"),
    "constant": constant}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--min-tokens", type=int, default=40)
    parser.add_argument("--shingle", type=int, default=4)
    parser.add_argument("--show", type=int, default=8, help="flagged MBPP pairs to print")
    args = parser.parse_args()
    settings = {"threshold": args.threshold, "min_tokens": args.min_tokens, "shingle": args.shingle}

    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    originals = {str(row["task_id"]): row["code"] for row in rows}
    forms = {key: canonical(code) for key, code in originals.items()}
    same_form: dict[str | None, set[str]] = {}
    for key, form in forms.items():
        same_form.setdefault(form, set()).add(key)
    probe = Deduplicator(**settings)
    long = {key for key, code in originals.items() if probe._fingerprint(code).shingles is not None}
    print(f"{len(originals)} MBPP functions, {len(long)} of them at least {args.min_tokens} tokens; {settings}")

    checks, seconds = 0, 0.0
    print(f"\n{'transform':10} {'copies':>6} {'caught':>7} {'exact':>6} {'near':>6} {'recall':>7} "
          f"{'recall (long)':>14}")
    for name, transform in TRANSFORMS.items():
        dedup = Deduplicator(**settings)
        for key, code in originals.items():
            dedup.seen(key, code)
        kinds: Counter[str] = Counter()
        copies = caught_long = copies_long = 0
        for key, code in originals.items():
            copy = transform(code)
            if copy is None:
                continue
            copies += 1
            copies_long += key in long
            start = time.perf_counter()
            found = dedup.check(f"{name}/{key}", copy)
            seconds += time.perf_counter() - start
            checks += 1
            if found and found.of.removeprefix(f"{name}/") in same_form[forms[key]]:
                kinds[found.kind] += 1
                caught_long += key in long
            elif found:
                kinds["wrong"] += 1
        caught = kinds["exact"] + kinds["near"]
        print(f"{name:10} {copies:6} {caught:7} {kinds['exact']:6} {kinds['near']:6} {caught / copies:7.1%} "
              f"{caught_long / max(copies_long, 1):14.1%}" + (f"  (+{kinds['wrong']} flagged against another item)"
                                                              if kinds["wrong"] else ""))

    dedup = Deduplicator(**settings)
    flagged = []
    for key, code in originals.items():
        start = time.perf_counter()
        found = dedup.check(key, code)
        seconds += time.perf_counter() - start
        checks += 1
        if found:
            flagged.append((key, found))
    by_kind = Counter(found.kind for _, found in flagged)
    print(f"\nMBPP against itself: {len(flagged)} of {len(originals)} flagged ({len(flagged) / len(originals):.1%}): "
          f"{by_kind['exact']} exact, {by_kind['near']} near")
    for key, found in flagged[:args.show]:
        print(f"\n--- {key} flagged as {found.kind} duplicate of {found.of} (Jaccard {found.similarity:.2f})")
        print(f"{originals[key].strip()}\n--- {found.of}:\n{originals[found.of].strip()}")
    print(f"\nthroughput: {checks / seconds:.0f} checks/s ({checks} checks, {seconds:.2f} s)")


if __name__ == "__main__":
    main()

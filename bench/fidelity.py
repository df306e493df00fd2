"""The verifier against false statements written the way models write them, and honest text in other words.

    python bench/fidelity.py [--data ../shared/data/cruxeval/cruxeval.jsonl] [--limit N] [--show K]

For every problem: trace in the sandbox, narrate forward and backward with the template narrator (the
verified starting point), then build
  * false CoTs, each with exactly one false statement of one class, placed in a real CoT. Every false value
    is one the trace never gives that variable (or count, or length), so the statement is false wherever it
    stands; and
  * honest CoTs, the whole template CoT rewritten in other true wording (synonyms, bare values, number words,
    recaps, expressions).
Prints, per class, how many were built and how many the verifier accepted (false) or rejected (honest), and
a few examples of every failure. The classes attack how the verifier reads text — claims in other words,
facts outside any claim form, names and values it must look up — not the planted-error patterns of
`bench/mutations.py`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from operators.cot.claims import ANSWER, quote
from operators.cot.narrate import TemplateNarrator
from operators.cot.sentences import split
from operators.cot.verify import Verifier
from operators.sandbox.client import Sandbox
from operators.trace.events import TracedCall
from operators.trace.structure import TraceView
from operators.trace.values import parse_literal

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cruxeval" / "cruxeval.jsonl"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]


@dataclass
class Facts:
    """What the trace says, gathered once per record: every value each name takes, loop counts, branches."""

    call: TracedCall
    view: TraceView
    values: dict[str, set[str]]  # entry-frame name → every value it takes
    final: dict[str, str]
    counts: set[int]  # iterations of every loop
    loops: list[tuple[int, int]]  # (header line, iterations) of the entry frame's loops
    conditions: list[tuple[int, bool]]  # (line, outcome) of each condition evaluated in the entry frame

    @classmethod
    def of(cls, call: TracedCall) -> Facts:
        view = TraceView(call.events, call.code)
        top = call.events[0]["frame"]
        values: dict[str, set[str]] = defaultdict(set)
        final: dict[str, str] = {}
        for event in call.events:
            if event["frame"] == top:
                for name, value in event.get("changes", {}).items():
                    if value is not None:
                        values[name].add(value)
                        final[name] = value
        loops = [(loop.line, loop.iterations) for loop in view.loops if loop.frame == top]
        conditions = [(e["line"], taken) for i, e in enumerate(call.events)
                      if e["frame"] == top and (taken := view.branch_taken(i)) is not None]
        return cls(call, view, dict(values), final, {n for _, n in loops}, loops, conditions)

    def absent_value(self, name: str, rng: random.Random) -> str | None:
        """A value `name` never takes: another name's value, or one of its own changed a little."""
        taken = self.values.get(name, set())
        others = sorted({v for n, vs in self.values.items() if n != name for v in vs} - taken)
        for value in sorted(taken):
            try:
                literal = parse_literal(value)
            except ValueError:
                continue
            if isinstance(literal, bool):
                others.append(repr(not literal))
            elif isinstance(literal, int | float):
                others.append(repr(literal + rng.choice([1, -1, 2])))
            elif isinstance(literal, str):
                others.append(repr(literal + "x"))
            elif isinstance(literal, list):
                others.append(repr([*literal, 0]))
        candidates = [v for v in others if v not in taken and len(v) <= 60 and "`" not in v]
        return rng.choice(candidates) if candidates else None

    def wrong_output(self) -> str | None:
        """A value that is not the output (None: the output is no literal)."""
        try:
            literal = parse_literal(self.call.output)
        except ValueError:
            return None
        return repr(literal + 1) if isinstance(literal, int) and not isinstance(literal, bool) else repr([literal])

    def wrong_count(self, rng: random.Random) -> int:
        return rng.choice([n for n in range(0, 13) if n not in self.counts])

    def absent_length(self, name: str, rng: random.Random) -> int | None:
        """A length `name` never has (None: it has no length, or every small one)."""
        lengths = self.lengths(name)
        options = [k for k in range(0, 15) if k not in lengths]
        return None if -1 in lengths or not options else rng.choice(options)

    def lengths(self, name: str) -> set[int]:
        out = set()
        for value in self.values.get(name, ()):
            try:
                out.add(len(parse_literal(value)))
            except (ValueError, TypeError):
                out.add(-1)
        return out


Generator = Callable[[str, str, Facts, random.Random], str | None]


def sentences_of(cot: str) -> tuple[list[str], str]:
    """A CoT's reasoning sentences and its [ANSWER] tail."""
    match = ANSWER.search(cot)
    reasoning, tail = (cot[: match.start()], cot[match.start():]) if match else (cot, "")
    return [reasoning[a:b] for a, b in split(reasoning)], tail


def joined(parts: list[str], tail: str) -> str:
    """Reasoning sentences and the [ANSWER] tail, back into one CoT."""
    return " ".join(parts) + "\n\n" + tail


def append(cot: str, sentence: str) -> str:
    """The CoT with `sentence` as its last reasoning sentence."""
    parts, tail = sentences_of(cot)
    return joined([*parts, sentence], tail)


def final_name(facts: Facts, rng: random.Random) -> str | None:
    """An entry-frame name whose final value is short enough to quote."""
    names = sorted(n for n, v in facts.final.items() if len(v) <= 60 and "`" not in v)
    return rng.choice(names) if names else None


def insert(cot: str, sentence: str, rng: random.Random, after: Callable[[str], bool] = lambda s: True) -> str | None:
    """The CoT with `sentence` placed after a randomly chosen sentence that satisfies `after`."""
    parts, tail = sentences_of(cot)
    places = [i for i, s in enumerate(parts) if after(s)]
    if not places:
        return None
    at = rng.choice(places) + 1
    return joined([*parts[:at], sentence, *parts[at:]], tail)


def a_name(facts: Facts, rng: random.Random, short: bool = True) -> str | None:
    names = sorted(n for n, vs in facts.values.items() if not short or all(len(v) <= 60 for v in vs))
    return rng.choice(names) if names else None


# False statements, one per CoT. Each returns None when the record has no place for it.

def value_in_other_words(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    name = a_name(facts, rng)
    value = facts.absent_value(name, rng) if name else None
    if value is None:
        return None
    form = rng.choice([f"So `{name}` now holds {quote(value)}.", f"That leaves {name} equal to {value}.",
                       f"At this point {name} is {value}.", f"Now `{name}` has the value {quote(value)}.",
                       f"`{name}` is updated to {value}.", f"This makes {name} {value}."])
    return insert(cot, form, rng)


def prose_fact(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    name = a_name(facts, rng)
    options = []
    n = facts.absent_length(name, rng) if name else None
    if n is not None:
        options += [f"This works because `{name}` contains {n} characters.", f"Note that {name} has {WORDS[n % 13]}"
                    " elements.", f"The length of {name} is {n} here."]
    if facts.loops:
        n = facts.wrong_count(rng)
        options += [f"The loop runs {n} times.", f"The loop runs {WORDS[n]} times in all.",
                    f"Overall the loop on line {facts.loops[0][0]} makes {WORDS[n]} passes."]
    return insert(cot, rng.choice(options), rng) if options else None


def phantom_variable(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    phantom = rng.choice(["counter", "acc", "tmp_value", "result_list", "idx2"])
    if phantom in facts.view.structure.names:
        return None
    form = rng.choice([f"`{phantom}` == `'999'` is True.", f"`{phantom}` is `3`.", f"So {phantom} becomes 3.",
                       f"Meanwhile `{phantom}` stays `[]`."])
    return insert(cot, form, rng)


def wrong_variable(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    """A right value given to the wrong variable (one that never holds it)."""
    pairs = [(a, b, v) for a in facts.values for b in facts.values if a != b
             for v in facts.values[a] - facts.values[b] if len(v) <= 60 and "`" not in v]
    if not pairs:
        return None
    a, b, value = rng.choice(sorted(pairs))
    pattern = re.compile(rf"`{re.escape(a)}` (becomes|is set to|=|became|was set to) {re.escape(quote(value))}")
    matches = list(pattern.finditer(cot))
    if not matches:
        return None
    match = rng.choice(matches)
    return cot[:match.start()] + f"`{b}` {match.group(1)} {quote(value)}" + cot[match.end():]


def branch_in_other_words(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    lines = {line for line, _ in facts.conditions}
    always = [(line, taken) for line in sorted(lines)
              if len({t for l2, t in facts.conditions if l2 == line}) == 1
              for taken in {t for l2, t in facts.conditions if l2 == line}]
    if not always:
        return None
    line, taken = rng.choice(always)
    form = rng.choice([f"The test on line {line} {'fails' if taken else 'holds'}.",
                       f"The check on line {line} is {'not met' if taken else 'met'}.",
                       f"The condition on line {line} is {'false' if taken else 'true'}."])
    return insert(cot, form, rng)


def expression(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    name = a_name(facts, rng)
    n = facts.absent_length(name, rng) if name else None
    if n is None:
        return None
    form = rng.choice([f"`len({name})` == `{n}` is True.", f"`len({name})` is `{n}`.",
                       f"`len({name}) > 100` is True."])
    return insert(cot, form, rng) if "100" not in form or max(facts.lengths(name)) <= 100 else None


def false_summary(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    """A correct CoT whose closing recap is false."""
    name = a_name(facts, rng)
    value = facts.absent_value(name, rng) if name else None
    if value is None:
        return None
    return append(cot, rng.choice([f"In the end, `{name}` is {quote(value)}.", f"So {name} ends up as {value}.",
                                   f"To sum up, `{name}` finally holds {quote(value)}."]))


def conclusion(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    """A conclusion that contradicts the answer."""
    wrong = facts.wrong_output()
    if wrong is None:
        return None
    return append(cot, rng.choice([f"The result is therefore {quote(wrong)}.", f"So `f` returns {quote(wrong)}.",
                                   f"Thus the output is {wrong}."]))


def backward_input(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    """A false statement about the input (the answer keeps the true one)."""
    params = list(facts.call.events[0].get("changes", {}))
    if not params:
        return None
    name = rng.choice(params)
    value = facts.absent_value(name, rng)
    if value is None:
        return None
    form = rng.choice([f"So `f` was called with `{name}` = {quote(value)}.", f"The input must have had {name} = "
                       f"{value}.", f"Hence the input is {quote(value)}."])
    return insert(cot, form, rng)


def misquote(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    lines = facts.call.code.splitlines()
    candidates = [(i + 1, line.strip()) for i, line in enumerate(lines) if "=" in line and "`" not in line]
    if not candidates:
        return None
    number, source = rng.choice(candidates)
    wrong = source.replace("=", "= -", 1) if "==" not in source else source.replace("==", "!=", 1)
    return insert(cot, f"Line {number} (`{wrong}`) is where the work happens.", rng)


def wrong_target(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    if direction != "backward":
        return None
    wrong = facts.wrong_output()
    if wrong is None:
        return None
    return insert(cot, rng.choice([f"We need an input that makes `f` return {quote(wrong)}.",
                                   f"The target output is {wrong}."]), rng, lambda s: True)


def negation(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    """Denies a value the variable really holds at the end."""
    name = final_name(facts, rng)
    if name is None:
        return None
    value = quote(facts.final[name])
    return append(cot, rng.choice([f"`{name}` does not end up as {value}.", f"In the end, `{name}` is not {value}."]))


def vague_fact(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    """Sweeping claims without a value in them, false for this run."""
    name = a_name(facts, rng, short=False)
    options = []
    if name and len(facts.values.get(name, ())) > 1:
        options += [f"The variable {name} never changes.", f"{name} stays the same throughout."]
    if facts.loops and all(n > 0 for _, n in facts.loops):
        options += ["The loop body never runs.", "The loop is skipped entirely."]
    if any(taken for _, taken in facts.conditions):
        options += ["No condition is ever met.", "Every branch is skipped."]
    return insert(cot, rng.choice(options), rng) if options else None


def hidden_in_clause(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    """A false value inside a parenthesis, a subordinate clause or after a semicolon of a true sentence."""
    name = a_name(facts, rng)
    value = facts.absent_value(name, rng) if name else None
    if value is None:
        return None
    parts, tail = sentences_of(cot)
    places = [i for i, s in enumerate(parts) if s.endswith(".") and "`" in s]
    if not places:
        return None
    at = rng.choice(places)
    extra = rng.choice([f" (while {name} is {value})", f"; meanwhile {name} is {value}",
                        f", since `{name}` is {quote(value)}", f" — with {name} at {value}"])
    parts[at] = parts[at][:-1] + extra + "."
    return joined(parts, tail)


def negated_truth(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    """A true sentence turned into its denial."""
    parts, tail = sentences_of(cot)
    places = [i for i, s in enumerate(parts) if "`" in s and s.endswith(".")]
    if not places:
        return None
    at = rng.choice(places)
    prefix = rng.choice(["It is untrue that ", "It is not the case that ", "Contrary to what one might think, not: "])
    parts[at] = prefix + parts[at][0].lower() + parts[at][1:]
    return joined(parts, tail)


def persistence(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    """"`x` stays `v` from here on" right after x took v, though x changes again later."""
    parts, tail = sentences_of(cot)
    places = [(i, m) for i, s in enumerate(parts)
              for m in re.finditer(r"`(\w+)` (?:becomes|is set to|=) (`[^`]+`)", s)
              if facts.final.get(m.group(1)) != m.group(2).strip("`") and direction == "forward"]
    if not places:
        return None
    i, match = rng.choice(places)
    parts.insert(i + 1, rng.choice([f"`{match.group(1)}` stays {match.group(2)} from here on.",
                                    f"After this, `{match.group(1)}` remains {match.group(2)} until the end."]))
    return joined(parts, tail)


def stale_effect(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    """A branch effect added to a step that is no condition."""
    parts, tail = sentences_of(cot)
    places = [i for i, s in enumerate(parts) if re.match(r"Line \d+ \(`[^`]+`\): ", s)
              and not re.search(r"`(?:if|elif|while) ", s)]
    if not places:
        return None
    at = rng.choice(places)
    parts[at] = parts[at][:-1] + rng.choice([", so the branch runs.", ", so the branch is skipped."])
    return joined(parts, tail)


def wrong_unit(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    """A true length in a unit that is not what `len` counts."""
    names = [n for n in sorted(facts.values) if any(v.startswith("'") and " " in v for v in facts.values[n])]
    if not names:
        return None
    name = rng.choice(names)
    value = next(v for v in sorted(facts.values[name]) if v.startswith("'") and " " in v)
    return insert(cot, f"At some point `{name}` has {len(parse_literal(value))} words.", rng)


def disguised_words(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    """A false loop count with invisible or look-alike characters in its words."""
    if not facts.loops:
        return None
    line, _ = facts.loops[0]
    n = facts.wrong_count(rng)
    form = rng.choice([f"The lo\u200bop on line {line} runs {n} times.", f"The lооp on line {line} runs {n} times.",
                       f"The loop on line {line} runs {WORDS[n]}\u00a0times."])
    return insert(cot, form, rng)


FALSE: dict[str, Generator] = {g.__name__: g for g in (
    value_in_other_words, prose_fact, phantom_variable, wrong_variable, branch_in_other_words, expression,
    false_summary, conclusion, backward_input, misquote, wrong_target, negation, vague_fact, hidden_in_clause,
    negated_truth, persistence, stale_effect, wrong_unit, disguised_words)}


# Honest rewrites of the whole CoT: the same true statements in other words.

def _sub(pattern: str, repl: Callable[[re.Match[str]], str] | str) -> Generator:
    def rewrite(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
        parts, tail = sentences_of(cot)
        new = re.sub(pattern, repl, " ".join(parts))
        return None if new == " ".join(parts) else new + "\n\n" + tail
    return rewrite


def _bare(match: re.Match[str]) -> str:
    value = match.group(2)
    simple = re.fullmatch(r"-?\d+|'[^'`]{0,30}'|True|False|None", value)
    return f"{match.group(1)}{value.lower() if value in ('True', 'False') else value}" if simple else match.group(0)


def recap(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    name = final_name(facts, rng)
    if name is None:
        return None
    value = quote(facts.final[name])
    return append(cot, rng.choice([f"So `{name}` ends up as {value}.", f"In the end, `{name}` is {value}."]))


def true_length(cot: str, direction: str, facts: Facts, rng: random.Random) -> str | None:
    """After a change of a sized variable, state its length."""
    parts, tail = sentences_of(cot)
    for i, sentence in enumerate(parts):
        match = re.search(r"`(\w+)` (?:becomes|is set to|=) `([^`]+)`\.$", sentence)
        if match and facts.view.structure.names and match.group(1) in facts.values:
            try:
                size = len(parse_literal(match.group(2)))
            except (ValueError, TypeError):
                continue
            unit = {str: "characters", dict: "entries"}.get(type(parse_literal(match.group(2))), "elements")
            parts.insert(i + 1, rng.choice([f"Now `len({match.group(1)})` is `{size}`.",
                                            f"So `{match.group(1)}` has {size} {unit}."]))
            return joined(parts, tail)
    return None


HONEST: dict[str, Generator] = {
    "synonyms": _sub(r"`(\w+)` (?:becomes|is set to|=) ", lambda m: f"`{m.group(1)}` " + random.Random(
        m.group(0)).choice(["is now ", "takes the value ", "is updated to ", "turns into "])),
    "bare_values": _sub(r"(`\w+` (?:becomes|is set to|=|is|was|was set to|became) )`([^`]+)`", _bare),
    "number_words": _sub(r"finishes after (\d+) iterations?", lambda m: "runs " + {
        "1": "once", "2": "twice"}.get(m.group(1), f"{WORDS[int(m.group(1)) % 13]} times")
        if int(m.group(1)) < 13 else m.group(0)),
    "conditions_in_words": _sub(r"condition on line (\d+) (\(`[^`]*`\) )?is (True|False)",
                                lambda m: f"test on line {m.group(1)} {m.group(2) or ''}"
                                          + ("holds" if m.group(3) == "True" else "fails")),
    "lowercase_truth": _sub(r"(`\)?,? (?:is|was) )(True|False)\b", lambda m: m.group(1) + m.group(2).lower()),
    "result_wording": _sub(r"So the output is `([^`]+)`\.|The result is therefore `([^`]+)`\.",
                           lambda m: f"So the final result is {quote(m.group(1) or m.group(2))}."),
    "after_line": _sub(r"Line (\d+) \((`[^`]+`)\): `(\w+)` (?:becomes|is set to|=) ",
                       lambda m: f"After line {m.group(1)} ({m.group(2)}), `{m.group(3)}` is "),
    "more_verbs": _sub(r"`(\w+)` (?:becomes|is set to|=) ", lambda m: f"`{m.group(1)}` " + random.Random(
        m.group(0)).choice(["now equals ", "gets the value ", "is assigned the value ", "changes to "])),
    "restated_return": _sub(r"(?:So the output is|The result is therefore) (`[^`]+`)\.",
                            lambda m: f"So the function returns {m.group(1)}."),
    "recap": recap,
    "true_length": true_length,
}


def records(path: str, limit: int | None) -> Iterator[tuple[str, TracedCall]]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()][:limit]
    with Sandbox() as sandbox:
        for row in rows:
            result = sandbox.run({"code": row["code"], "entry_point": "f", "input": row["input"]})
            if result["outcome"] == "ok" and result.get("output_is_literal"):
                yield row["id"], TracedCall(row["code"], "f", row["input"], result["output"], result["trace"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--limit", type=int)
    parser.add_argument("--show", type=int, default=2, help="examples printed per failing class")
    args = parser.parse_args()
    narrator, verifier = TemplateNarrator(), Verifier()
    built: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    for rid, call in records(args.data, args.limit):
        facts = Facts.of(call)
        for direction in ("forward", "backward"):
            cot = (narrator.forward if direction == "forward" else narrator.backward)(call, rid)
            if not verifier.check(direction, cot, call)[0].passed:
                failed["template"] += 1
                continue
            for family, generators, bad in (("false", FALSE, True), ("honest", HONEST, False)):
                for name, generate in generators.items():
                    rng = random.Random(f"{rid}/{direction}/{name}")
                    variant = generate(cot, direction, facts, rng)
                    if variant is None:
                        continue
                    key = f"{family}:{name}"
                    built[key] += 1
                    report, _ = verifier.check(direction, variant, call)
                    if report.passed is bad:
                        failed[key] += 1
                        if len(examples[key]) < args.show:
                            examples[key].append(f"{rid} {direction}: {report.first_failure or _diff(cot, variant)}")
    print(f"template CoTs rejected: {failed['template']}")
    for family, verb in (("false", "accepted"), ("honest", "rejected")):
        print(f"\n{family} CoTs ({verb} = verifier wrong)")
        for key in sorted(k for k in built if k.startswith(family)):
            print(f"  {key.split(':')[1]:<24} {failed[key]:>5} / {built[key]:<5} {verb} "
                  f"({100 * failed[key] / built[key]:.1f}%)")
            for example in examples[key]:
                print(f"      e.g. {example[:300]}")


def _diff(before: str, after: str) -> str:
    """The sentence(s) of `after` that `before` lacks."""
    old = set(sentences_of(before)[0])
    return " | ".join(s for s in sentences_of(after)[0] if s not in old)[:300]


if __name__ == "__main__":
    main()

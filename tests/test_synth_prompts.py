"""The synthesis prompts' parsers: what they read from a model's answer, and what they refuse to guess."""

from operators.synth.prompts import DIFFICULTIES, instructions_prompt, parse_instructions, parse_tests

ANSWER = """Here are the tasks.

1. **Task:** Return the sum of the even numbers in a list, e.g. [1, 2, 4] gives 6.
**Difficulty:** Easy
**Signature:** `def sum_even(xs):`

2. Task: Count the words of a sentence
that appear more than once.
Difficulty: legendary
Signature: def repeated_words(sentence: str) -> int:

3. Task: Reverse a string.
Signature: def reverse(s)
"""


def test_tasks_are_read_with_their_difficulty_and_an_unknown_level_is_left_empty():
    found = parse_instructions(ANSWER, 5, DIFFICULTIES)
    assert [(t.entry_point, t.difficulty) for t in found] == [("sum_even", "easy"), ("repeated_words", ""),
                                                              ("reverse", "")]
    assert found[0].text == "Return the sum of the even numbers in a list, e.g. [1, 2, 4] gives 6."
    assert found[1].text == "Count the words of a sentence that appear more than once."
    assert found[1].signature == "def repeated_words(sentence: str) -> int:"
    assert parse_instructions(ANSWER, 1, DIFFICULTIES) == found[:1]


def test_the_levels_asked_for_are_the_configured_ones():
    text = instructions_prompt("recursion", 3, ("beginner", "expert"))[0]["content"]
    assert "beginner, expert" in text and "Difficulty:" in text
    assert parse_instructions("Task: x\nDifficulty: expert\nSignature: def f(a):", 1, ("beginner", "expert"))[0] \
        .difficulty == "expert"


def test_an_answer_without_a_valid_header_gives_nothing():
    assert parse_instructions("Task: add\nSignature: def (a, b):", 3, DIFFICULTIES) == []
    assert parse_instructions("no tasks here", 3, DIFFICULTIES) == []


def test_only_lines_that_are_one_assert_each_are_tests():
    assert parse_tests("```python\nassert f(1) == 2\nassert f(\nprint(3)\n  assert f(2) == 4  \n```") == \
        ["assert f(1) == 2", "assert f(2) == 4"]

"""Dual agreement (CodeT) over candidate solutions and tests: the rules, then the real sandbox deciding passes."""

import pytest

from operators.ingest.formats import BadProblem
from operators.records import SYNTH_WORK_SCHEMA
from operators.sandbox.client import Limits
from operators.stages.agree import Agree, ExecutePairs, candidate_row
from operators.synth.agreement import Cluster, agree, candidate_set, clusters, kept_problem

SQUARE = "def f(x):\n    return x * x\n"
SQUARE_TOO = "def f(x):\n    # the same function, written another way\n    return x ** 2\n"
TRIPLE = "def f(x):\n    return 3 * x\n"
TESTS = ["assert f(2) == 4", "assert f(4) == 16", "assert f(0) == 0"]
WRONG_TEST = "assert f(1) == 3"  # passes 3*x only


def test_the_score_is_tests_times_the_root_of_the_cluster_size():
    assert Cluster((0, 1, 2, 3), (0, 1), 4).score == pytest.approx(2 * 2)
    assert Cluster((0,), (0, 1, 2), 1).score == pytest.approx(3)
    assert Cluster((0, 1, 2, 3), (0, 1), 1).score == pytest.approx(2)  # four near-copies: one vote


def test_solutions_passing_the_same_tests_form_one_cluster_and_the_best_comes_first():
    found = clusters([[True, True, False], [False, False, True], [True, True, False]])
    assert found[0] == Cluster((0, 2), (0, 1), 2)
    assert found[1] == Cluster((1,), (2,), 1)


def test_a_wrong_solution_passing_a_wrong_test_is_not_kept():
    # two correct solutions pass three tests; a wrong one passes only the wrong test
    decided = agree([[True, True, True, False], [True, True, True, False], [False, False, True, True]])
    assert decided.kept == Cluster((0, 1), (0, 1, 2), 2)


def test_nothing_passing_is_rejected():
    assert agree([[False, False], [False, False]]).reason == "nothing_passes"
    assert agree([]).reason == "nothing_passes"


def test_ties_are_rejected_unless_the_first_is_asked_for():
    passed = [[True, True, False, False], [False, False, True, True]]
    assert agree(passed).reason == "tie"
    assert agree(passed, ties="first").kept == Cluster((0,), (0, 1), 1)


def test_minimum_tests_and_cluster_size():
    passed = [[True, False], [True, False]]
    assert agree(passed, min_tests=2).reason == "too_few_tests"
    assert agree(passed, min_solutions=3).reason == "too_few_solutions"
    assert agree(passed, min_tests=1, min_solutions=2).kept == Cluster((0, 1), (0,), 2)
    assert agree(passed, min_solutions=2, families=[0, 0]).reason == "too_few_solutions"


def test_duplicates_count_once_on_both_sides():
    """The same wrong solution five times (reformatted) and the same wrong test three times get one vote each:
    counted with their copies, 3 x sqrt(5) would beat the honest cluster's 3 x sqrt(2)."""
    wrong = [TRIPLE, TRIPLE, "def f(x):\n    return 3*x  # again\n", TRIPLE.replace("    ", "\t"), TRIPLE]
    row = {"id": "p", "entry_point": "f", "solutions": [SQUARE, *wrong, SQUARE_TOO],
           "tests": [*TESTS, "assert f(1) == 3", "assert f(1)==3", "assert  f(1) == 3"]}
    candidates = candidate_set(row)
    assert candidates.solutions == (SQUARE, TRIPLE, SQUARE_TOO)
    assert candidates.tests == (*TESTS, "assert f(1) == 3")
    assert candidates.dropped == {"solution_duplicate": 4, "test_duplicate": 2}
    assert (candidates.solutions_seen, candidates.tests_seen) == (7, 6)


def test_unusable_solutions_and_tests_are_set_aside_with_the_reason():
    row = {"id": "p", "entry_point": "f",
           "solutions": [SQUARE, "def f(x) return x", "def g(x):\n    return x\n", ""],
           "tests": ["assert f(2) == 4", "assert g(2) == 4", "x = 2\nassert f(x) == 4", "assert f(", "f(2) == 4",
                     "assert callable(lambda: f(1))", "assert f(2) == 4 or True", "assert (f(2), 4)",
                     "assert f(2) == f(2)", "assert f(3) == 9 if True else 0"]}
    candidates = candidate_set(row)
    assert candidates.solutions == (SQUARE,) and candidates.tests == ("assert f(2) == 4",)
    assert candidates.dropped == {"solution_unparseable": 1, "solution_no_entry_point": 2, "test_no_call": 2,
                                  "test_not_one_assert": 2, "test_unparseable": 1, "test_no_check": 4}


@pytest.mark.parametrize("row, reason", [
    ({"id": "p", "entry_point": "f", "solutions": [SQUARE]}, "missing_field"),
    ({"id": "p", "entry_point": "f", "solutions": SQUARE, "tests": TESTS}, "bad_field"),
    ({"id": "p", "entry_point": "f x", "solutions": [SQUARE], "tests": TESTS}, "bad_field"),
    ({"id": "p", "entry_point": "f", "solutions": [SQUARE], "tests": [1]}, "bad_field"),
    ({"id": "p", "entry_point": "f", "solutions": [SQUARE], "tests": TESTS, "instruction": ["x"]}, "bad_field"),
])
def test_malformed_rows_are_refused_with_a_reason(row, reason):
    with pytest.raises(BadProblem) as caught:
        candidate_set(row)
    assert caught.value.reason == reason


def test_a_kept_cluster_becomes_a_problem_with_one_input_per_distinct_call():
    candidates = candidate_set({"id": "p", "entry_point": "f", "solutions": [SQUARE],
                                "tests": [*TESTS, "assert f(2) > 3", "assert isinstance(f(5), int)"]})
    problem = kept_problem(candidates, Cluster((0,), (0, 1, 2, 3, 4), 1))
    assert problem.problem_id == "p" and problem.code == SQUARE and problem.entry_point == "f"
    assert problem.inputs == ["2", "4", "0", "5"]
    assert problem.outputs == ["4", "16", "0", None]


def test_the_sandbox_decides_passes_and_agreement_keeps_the_honest_cluster():
    """Real execution: two honest solutions, a wrong one that passes a wrong test, one that loops forever and
    one that exits the interpreter; only the honest cluster and the tests it passes are kept."""
    looping = "def f(x):\n    while True:\n        pass\n"
    exits = "import sys\ndef f(x):\n    sys.exit(0)\n"
    row = {"id": "sq", "entry_point": "f", "instruction": "square a number",
           "solutions": [TRIPLE, SQUARE, looping, SQUARE_TOO, exits], "tests": [*TESTS, WRONG_TEST]}
    work = candidate_row({"record_id": "r"}, candidate_set(row))
    executed = ExecutePairs(Limits(timeout_s=1.0)).process_rows([work])[0][0]
    assert executed["passed"] == [[False, False, True, True], [True, True, True, False],
                                  [False, False, False, False], [True, True, True, False],
                                  [False, False, False, False]]
    kept = Agree().process(executed)[0]
    assert "reason" not in kept or kept["reason"] is None
    assert kept["code"] == SQUARE and kept["inputs"] == ["2", "4", "0"] and kept["outputs"] == ["4", "16", "0"]
    assert kept["agreement"]["cluster_size"] == 2 and kept["agreement"]["tests_kept"] == 3
    assert set(SYNTH_WORK_SCHEMA.names) >= set(kept)


def test_renamed_copies_and_other_spellings_of_a_test_are_one_vote():
    """Found by an adversarial review: renamed locals gave a wrong solution three votes, and five spellings
    of one wrong test five."""
    wrong = ["def f(x):\n    y = 3 * x\n    return y\n", "def f(x):\n    z = 3 * x\n    return z\n",
             "def f(n):\n    return 3 * n\n"]
    spellings = ["assert f(1) == 3", "assert 3 == f(1)", "assert f(1) == 3.0", "assert f(1) == 3, 'x'",
                 "assert f( 1 ) == 3"]
    candidates = candidate_set({"id": "p", "entry_point": "f", "solutions": [SQUARE, *wrong],
                                "tests": [*TESTS, *spellings]})
    assert len(candidates.solutions) == 3  # SQUARE, one 3*x with a local, one without
    assert candidates.tests == (*TESTS, "assert f(1) == 3")


def test_a_solution_passing_contradicting_tests_is_left_out():
    """f(2) == 4 and f(2) == 5 cannot both pass honest code: the solution that passes both (a forged result,
    an object equal to everything) joins no cluster."""
    candidates = candidate_set({"id": "p", "entry_point": "f", "solutions": [SQUARE, TRIPLE],
                                "tests": [*TESTS, "assert f(2) == 5"]})
    assert candidates.contradictions() == [(0, 3)]
    decided = agree([[True, True, True, False], [True, True, True, True]],
                    contradictions=candidates.contradictions())
    assert decided.kept == Cluster((0,), (0, 1, 2), 1)


def test_scores_equal_but_for_the_last_bit_are_a_tie():
    passed = [[True, False, False, False]] * 18 + [[False, True, True, True]] * 2
    assert agree(passed).reason == "tie"
    assert agree(passed, ties="first").kept.solutions[0] == 0


def test_inputs_that_are_not_plain_arguments_are_left_out_and_only_literal_outputs_kept():
    candidates = candidate_set({"id": "p", "entry_point": "f", "solutions": [SQUARE],
                                "tests": ["assert f(**{'x': 3}) == 9", "assert f(f(1)) == 1",
                                          "assert f(2) == f(-2)", "assert f(5) == sorted([25])[0]"]})
    problem = kept_problem(candidates, Cluster((0,), (0, 1, 2, 3), 1))
    assert problem.inputs == ["1", "2", "-2", "5"]
    assert problem.outputs == [None, None, None, None]


def test_a_solution_too_deep_to_print_back_is_set_aside_not_an_error():
    deep = "def f(x):\n    return " + "-" * 500 + "x\n"
    candidates = candidate_set({"id": "p", "entry_point": "f", "solutions": [deep, SQUARE], "tests": TESTS})
    assert candidates.solutions == (SQUARE,) and candidates.dropped == {"solution_unparseable": 1}


def test_a_candidate_set_over_max_pairs_is_rejected_before_it_runs():
    candidates = candidate_set({"id": "p", "entry_point": "f", "solutions": [SQUARE, TRIPLE], "tests": TESTS})
    assert candidate_row({"record_id": "r"}, candidates, max_pairs=5)["reason"] == "too_large"
    assert candidate_row({"record_id": "r"}, candidates, max_pairs=6).get("reason") is None


def test_a_forged_result_frame_does_not_win_when_the_tests_contradict_it():
    """The reviewer's forger writes the sandbox's own 'ok' frame to every descriptor and exits: it passes
    every program test it runs with, so there it is caught only by contradicting tests (the module docstring
    says so)."""
    forger = ("import os, struct\ndef f(x):\n    return 0\nF = b'{\"outcome\":\"ok\"}'\nfor fd in range(3, 1024):\n"
              "    try:\n        os.write(fd, struct.pack('>I', len(F)) + F)\n    except OSError:\n        pass\n"
              "os._exit(0)\n")
    row = {"id": "p", "entry_point": "f", "solutions": [SQUARE, forger], "tests": [*TESTS, "assert f(2) == 5"]}
    executed = ExecutePairs(Limits(timeout_s=1.0)).process_rows([candidate_row({"record_id": "r"},
                                                                                candidate_set(row))])[0][0]
    kept = Agree().process(executed)[0]
    assert kept.get("reason") is None and kept["code"] == SQUARE and kept["inputs"] == ["2", "4", "0"]
    # Equality tests are decided on the call's output: this forged frame carries none, so they fail it.
    row["tests"] = [*TESTS, "assert isinstance(f(1), int)"]
    executed = ExecutePairs(Limits(timeout_s=1.0)).process_rows([candidate_row({"record_id": "r"},
                                                                                candidate_set(row))])[0][0]
    assert executed["passed"][1] == [False, False, False, True]


ALWAYS_EQUAL = ("class Anything:\n    def __eq__(self, other):\n        return True\n    def __repr__(self):\n"
                "        return '4'\n\ndef f(x):\n    return Anything()\n")


def test_an_object_equal_to_everything_passes_no_equality_test():
    """The verdict of `assert f(2) == 4` is taken outside the solution's process, on the output's text: an
    object whose `==` always answers True (and that prints as the expected value) is not a literal. Without
    a contradicting test it used to win with two votes against one."""
    twin = ALWAYS_EQUAL.replace("return True", "return not False")  # another solution, not a copy
    row = {"id": "p", "entry_point": "f", "solutions": [ALWAYS_EQUAL, twin, SQUARE], "tests": TESTS}
    executed = ExecutePairs(Limits(timeout_s=1.0)).process_rows([candidate_row({"record_id": "r"},
                                                                                candidate_set(row))])[0][0]
    assert executed["passed"] == [[False] * 3, [False] * 3, [True] * 3]
    kept = Agree().process(executed)[0]
    assert kept.get("reason") is None and kept["code"] == SQUARE


def test_an_honest_output_that_is_not_a_literal_fails_an_equality_test_as_tracing_would_reject_it():
    counter = "from collections import Counter\ndef f(s):\n    return Counter(s)\n"
    row = {"id": "p", "entry_point": "f", "solutions": [counter], "tests": ["assert f('aab') == {'a': 2, 'b': 1}",
                                                                               "assert len(f('aab')) == 2"]}
    executed = ExecutePairs(Limits(timeout_s=1.0)).process_rows([candidate_row({"record_id": "r"},
                                                                                candidate_set(row))])[0][0]
    assert executed["passed"] == [[False, True]]


def test_near_copies_of_a_wrong_solution_vote_once():
    """Copies of one wrong solution, each with a different statement inserted (not the same syntax tree, so
    they run), outvote two different honest solutions when each copy votes; as one family they vote once."""
    wrong = ("def f(values, key):\n    total = 0\n    for index, value in enumerate(values):\n"
             "        if value % key == 0:\n            total += value * index\n        else:\n"
             "            total -= value\n    return total + 1\n")
    copies = [wrong.replace("    return", f"    unused_{k} = len(values) + {k}\n    return") for k in range(4)]
    honest = ["def f(values, key):\n    return sum(v * i if v % key == 0 else -v for i, v in enumerate(values))\n",
              "def f(xs, k):\n    out = 0\n    i = 0\n    while i < len(xs):\n"
              "        out += xs[i] * i if xs[i] % k == 0 else -xs[i]\n        i += 1\n    return out\n"]
    candidates = candidate_set({"id": "p", "entry_point": "f", "solutions": [*copies, *honest], "tests": TESTS})
    assert len(candidates.solutions) == 6
    families = candidates.families(0.8)
    assert families == [0, 0, 0, 0, 4, 5]
    passed = [[True, True, False, False]] * 4 + [[False, False, True, True]] * 2
    assert agree(passed).kept.solutions == (0, 1, 2, 3)  # 2 x sqrt(4) against 2 x sqrt(2)
    assert agree(passed, families=families).kept.solutions == (4, 5)  # 2 x 1 against 2 x sqrt(2)


def decide(row: dict, **execute) -> dict:
    """One candidates row through the sandbox stage and agreement, in-process."""
    executed = ExecutePairs(Limits(timeout_s=1.0), **execute).process_rows([candidate_row({"record_id": "r"},
                                                                                          candidate_set(row))])[0][0]
    return Agree().process(executed)[0] if executed.get("reason") is None else executed


IS_EVEN = ["def is_even(n):\n    return n % 2 == 0\n", "def is_even(n):\n    return not (n % 2)\n",
           "def is_even(n):\n    return (n & 1) == 0\n", "def is_even(n):\n    return n % 2 == 1\n"]
HYP_TESTS = ["assert math.isclose(hyp(3, 4), 5.0)", "assert math.isclose(hyp(1, 1), 1.4142135623730951)",
             "assert math.isclose(hyp(0, 2), 2.0)"]


@pytest.mark.parametrize("row, code, tests", [
    # tests with the same call but another check are two tests (`is True` / `is False`)
    ({"id": "p", "entry_point": "is_even", "solutions": IS_EVEN,
      "tests": ["assert is_even(3) is True", "assert is_even(4) is False", "assert is_even(3) is False",
                "assert is_even(4) is True"]},
     IS_EVEN[0], ["assert is_even(3) is False", "assert is_even(4) is True"]),
    # one wrong test spelled four ways (spacing, trailing comma) is one vote
    ({"id": "p", "entry_point": "total",
      "solutions": ["def total(xs):\n    return sum(xs)\n",
                    "def total(xs):\n    t = 0\n    for x in xs:\n        t += x\n    return t\n",
                    "def total(xs):\n    return sum(xs) + (1 if xs == [1, 2] else 0)\n"],
      "tests": ["assert total([3]) == 3", "assert total([]) == 0", "assert total([1, 2]) == 3",
                "assert total([1,2]) == 4", "assert total([1, 2]) == 4", "assert total([1 ,2]) == 4",
                "assert total([1,2,]) == 4"]},
     "def total(xs):\n    return sum(xs)\n", ["assert total([3]) == 3", "assert total([]) == 0",
                                               "assert total([1, 2]) == 3"]),
    # class constants are not padding: two solutions differing in one are two
    ({"id": "p", "entry_point": "pay",
      "solutions": ["class Rates:\n    base = 10\n    bonus = 4\n\ndef pay(hours):\n    return hours * Rates.base + "
                    "Rates.bonus\n", "class Rates:\n    base = 10\n    bonus = 5\n\ndef pay(hours):\n    return hours"
                    " * Rates.base + Rates.bonus\n"],
      "tests": ["assert pay(1) == 15", "assert pay(2) == 25", "assert pay(0) == 5", "assert pay(3) == 34"]},
     "class Rates:\n    base = 10\n    bonus = 5\n\ndef pay(hours):\n    return hours * Rates.base + Rates.bonus\n",
     ["assert pay(1) == 15", "assert pay(2) == 25", "assert pay(0) == 5"]),
    # a dict built from a set is ordered by the hash seed, but equal under every seed: it passes
    ({"id": "p", "entry_point": "char_freq",
      "solutions": ["def char_freq(s):\n    return {c: s.count(c) for c in set(s)}\n",
                    "def char_freq(s):\n    return dict((c, s.count(c)) for c in set(s))\n",
                    "def char_freq(s):\n    d = {}\n    for c in s.replace(' ', ''):\n        d[c] = d.get(c, 0) + 1\n"
                    "    return d\n"],
      "tests": ["assert char_freq('hello') == {'h': 1, 'e': 1, 'l': 2, 'o': 1}", "assert char_freq('') == {}",
                "assert char_freq('a b') == {'a': 1, ' ': 1, 'b': 1}"]},
     "def char_freq(s):\n    return {c: s.count(c) for c in set(s)}\n",
     ["assert char_freq('hello') == {'h': 1, 'e': 1, 'l': 2, 'o': 1}", "assert char_freq('') == {}",
      "assert char_freq('a b') == {'a': 1, ' ': 1, 'b': 1}"]),
    # a `__main__` block that reads stdin does not run under any test
    ({"id": "p", "entry_point": "sq",
      "solutions": ["def sq(x):\n    return x * x\n\nif __name__ == '__main__':\n    print(sq(int(input())))\n",
                    "def sq(x):\n    return x ** 2\n\nif __name__ == '__main__':\n    print(sq(int(input())))\n",
                    "def sq(x):\n    return x * x + (x == 7)\n"],
      "tests": ["assert sq(3) == 9", "assert sq(-2) > 0", "assert sq(7) is not None", "assert sq(7) == 50"]},
     "def sq(x):\n    return x * x\n\nif __name__ == '__main__':\n    print(sq(int(input())))\n",
     ["assert sq(3) == 9", "assert sq(-2) > 0", "assert sq(7) is not None"]),
    # a module the test names is imported for the test, not for the solutions
    ({"id": "p", "entry_point": "hyp",
      "solutions": ["def hyp(a, b):\n    return (a * a + b * b) ** 0.5\n",
                    "def hyp(a, b):\n    total = a ** 2 + b ** 2\n    return total ** 0.5\n",
                    "import math\n\ndef hyp(a, b):\n    return math.hypot(a, b) + (a == 0)\n",
                    "def hyp(a, b):\n    return math.sqrt(a * a + b * b)\n"], "tests": HYP_TESTS},
     "def hyp(a, b):\n    return (a * a + b * b) ** 0.5\n", HYP_TESTS),
])
def test_found_by_the_second_review(row, code, tests):
    kept = decide(row)
    assert kept.get("reason") is None, kept.get("message")
    assert kept["code"] == code and kept["tests"] == tests


def test_a_solution_must_define_its_entry_point_with_def():
    candidates = candidate_set({"id": "p", "entry_point": "factorial", "tests": ["assert factorial(3) == 6"],
                                "solutions": ["from math import factorial\n", "factorial = lambda n: 1\n",
                                              "def factorial(n):\n    return 1 if n < 2 else n * factorial(n - 1)\n"]})
    assert len(candidates.solutions) == 1 and candidates.dropped == {"solution_no_entry_point": 2}


def test_inputs_are_literal_calls_and_a_later_test_supplies_the_expected_output():
    candidates = candidate_set({"id": "p", "entry_point": "f", "solutions": ["def f(n):\n    return list(range(n))\n"],
                                "tests": ["assert len(f(5)) == 5", "assert f(5) == [0, 1, 2, 3, 4]",
                                          "assert [f(i) for i in range(3)] == [[], [0], [0, 1]]",
                                          "assert f(float('inf')) is None or True", "assert f(n=2) == [0, 1]"]})
    problem = kept_problem(candidates, Cluster((0,), tuple(range(len(candidates.tests))), 1))
    assert problem.inputs == ["5", "n=2"] and problem.outputs == ["[0, 1, 2, 3, 4]", "[0, 1]"]


def test_a_row_running_past_its_time_budget_is_stopped_as_too_slow():
    slow = "import time\ndef f(x):\n    time.sleep(0.2)\n    return x * x\n"
    row = {"id": "p", "entry_point": "f", "solutions": [slow, SQUARE, TRIPLE], "tests": TESTS}
    stopped = decide(row, row_seconds=0.1)
    assert stopped["reason"] == "too_slow" and stopped["stage"] == "execute"
    assert decide(row, row_seconds=60)["code"] == slow

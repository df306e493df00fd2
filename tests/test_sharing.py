"""Self-contained jobs share a sandbox child; nothing one job does reaches another's result."""

import threading

import pytest

from operators.sandbox import Limits, Sandbox
from operators.sharing import self_contained

PURE = "def f(xs):\n    total = 0\n    for x in xs:\n        total += len(str(x))\n    return total\n"


def job(code, args=""):
    return {"code": code, "entry_point": "f", "input": args}


@pytest.mark.parametrize("code", [
    PURE,
    "class Box:\n    def __init__(self, v):\n        self.v = v\ndef f(x):\n    return Box(x).v\n",
    "def f(s):\n    return sorted({c: s.count(c) for c in s}.items())\n",
])
def test_code_that_keeps_to_its_namespace_is_self_contained(code):
    assert self_contained(code, "_([1, 2])")


@pytest.mark.parametrize("code", [
    "import math\ndef f(x):\n    return math.floor(x)\n",
    "from os import path\ndef f(x):\n    return x\n",
    "def f(x):\n    __builtins__.len = lambda v: 0\n    return x\n",
    "def f(x):\n    return getattr(x, 'real')\n",
    "def f(x):\n    g = (i for i in [x])\n    g.gi_frame.f_builtins['len'] = None\n    return x\n",
    "def f(x):\n    return f.__globals__\n",
    "class B(list):\n    def __init__(self):\n        super().__init__()\ndef f(x):\n    return x\n",
    "def f(x):\n    return eval('x')\n",
    "def f(x:\n",
])
def test_code_that_could_reach_shared_state_is_not(code):
    assert not self_contained(code, "_(1)")


def test_the_input_text_is_checked_too():
    assert not self_contained(PURE, "_(__import__('os').getpid())")


@pytest.fixture(scope="module")
def box():
    with Sandbox(Limits(timeout_s=1.0)) as sandbox:
        yield sandbox


def test_self_contained_jobs_share_a_child_and_others_get_their_own(box):
    jobs = [job(PURE, "[1, 22]"), job(PURE, "['abc']"),
            job("import math\ndef f(x):\n    return math.floor(x)\n", "2.5"), job(PURE, "[]")]
    results = box.run_many(jobs)
    assert [r["output"] for r in results] == ["3", "3", "2", "0"]
    children = [r["child"] for r in results]
    assert children[0] == children[1] and len({children[1], children[2], children[3]}) == 3


def test_a_job_that_ends_its_child_fails_alone(box):
    spin = job("def f():\n    while True:\n        pass\n")
    deep = job("def f(n):\n    return f(n + 1)\n", "0")
    results = box.run_many([job(PURE, "[1]"), spin, job(PURE, "[10]"), deep, job(PURE, "[100]")])
    assert [r["outcome"] for r in results] == ["ok", "timeout", "ok", "exception", "ok"]
    assert [r.get("output") for r in results[::2]] == ["1", "2", "3"]
    assert results[0]["child"] != results[2]["child"] == results[4]["child"]


def test_a_patched_builtin_never_reaches_a_later_job(box):
    patch = job("import builtins\ndef f():\n    builtins.sorted = lambda v: [42]\n    return sorted([])\n")
    uses = job("def f(xs):\n    return sorted(xs)\n", "[3, 1]")
    results = box.run_many([patch, uses, patch, uses])
    assert [r.get("output") for r in results] == ["[42]", "[1, 3]", "[42]", "[1, 3]"]


def test_a_finaliser_left_behind_runs_before_the_next_job(box):
    leaky = ("class Cycle:\n    def __del__(self):\n        print('finalised')\n"
             "def f():\n    c = Cycle()\n    c.me = c\n    return 1\n")
    allocates = job("def f(n):\n    return len([[i] for i in range(n)])\n", "2000")  # enough to start a collection
    first, second = box.run_many([job(leaky), allocates])
    assert first["child"] == second["child"]
    assert second["stdout"] == "" and second["output"] == "2000"
    assert {event["func"] for event in second["trace"]} <= {"f", "f.<locals>.<listcomp>"}


def test_one_child_per_job_when_asked():
    with Sandbox(Limits(jobs_per_child=1)) as sandbox:
        results = sandbox.run_many([job(PURE, "[1]"), job(PURE, "[2]")])
    assert results[0]["child"] != results[1]["child"]


def test_when_the_fork_server_dies_mid_batch_only_the_job_in_flight_fails():
    spin = job("def f():\n    while True:\n        pass\n")
    with Sandbox(Limits(timeout_s=1.0)) as sandbox:
        killer = threading.Timer(0.3, sandbox._proc.kill)
        killer.start()
        results = sandbox.run_many([spin, job(PURE, "[1]"), job(PURE, "[10]")])
        killer.join()
        assert [r["outcome"] for r in results] == ["sandbox_error", "ok", "ok"]
        assert [r["output"] for r in results[1:]] == ["1", "2"] and sandbox.restarts == 1


def test_a_memory_failure_leaves_the_shared_child_usable():
    bomb = job("def f(n):\n    return len('x' * n)\n", str(2**30))
    big = job("def f(n):\n    return len([0] * n)\n", str(10**7))
    with Sandbox(Limits(memory_mb=512)) as sandbox:
        first, second = sandbox.run_many([bomb, big])
    assert first["outcome"] == "memory" and second["output"] == "10000000"
    assert first["child"] == second["child"]

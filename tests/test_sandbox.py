"""Hostile code through the real sandbox: each case ends in the right outcome and the sandbox stays usable."""

import os
import socket
import threading
import uuid
from pathlib import Path

import pytest

from operators.sandbox.client import Limits, Sandbox


def run(sandbox, body, entry="f", args=""):
    return sandbox.run({"code": body, "entry_point": entry, "input": args})


def test_plain_call_is_traced(sandbox):
    result = run(sandbox, "def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n",
                 args="[1, 2]")
    assert result["outcome"] == "ok" and result["output"] == "3"
    lines = [(e["line"], e.get("changes")) for e in result["trace"] if e["event"] == "line"]
    assert lines[0] == (2, {"total": "0"})
    assert [e.get("loop_iter") for e in result["trace"] if e["line"] == 3] == [1, 2, 3]


def test_no_network_even_to_a_local_listener(sandbox):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    code = f"import socket\ndef f():\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    return 1\n"
    result = run(sandbox, code)
    listener.close()
    assert result["outcome"] == "sandbox_violation"
    assert not accepted


def test_dns_lookup_fails(sandbox):
    result = run(sandbox, "import socket\ndef f():\n    return socket.getaddrinfo('example.com', 80)\n")
    assert result["outcome"] in ("sandbox_violation", "exception")


@pytest.mark.parametrize("body", [
    "import os\ndef f():\n    return os.fork()\n",
    "import subprocess\ndef f():\n    return subprocess.run(['true']).returncode\n",
    "import os\ndef f():\n    return os.system('true')\n",
])
def test_no_new_processes(sandbox, body):
    assert run(sandbox, body)["outcome"] == "sandbox_violation"


def test_environment_secrets_do_not_leak(monkeypatch):
    monkeypatch.setenv("TRACECOT_FAKE_SECRET", "s3cr3t")
    with Sandbox() as fresh:
        result = run(fresh, "import os\ndef f():\n    return [sorted(os.environ), 's3cr3t' in repr(os.environ)]\n")
    assert result["outcome"] == "ok"
    names, leaked = eval(result["output"])
    assert "TRACECOT_FAKE_SECRET" not in names and not leaked and "AWS_SECRET_ACCESS_KEY" not in names


def test_cpu_time_limit_and_recovery():
    with Sandbox(Limits(timeout_s=1.0)) as box:
        spin = run(box, "def f():\n    return any(iter(int, 1))\n")  # endless, inside one C call: no trace events
        assert spin["outcome"] == "timeout"
        assert run(box, "def f():\n    return 2\n")["output"] == "2"


def test_the_wall_clock_net_stops_a_call_that_only_waits():
    with Sandbox(Limits(timeout_s=1.0, wall_timeout_s=2.0)) as box:
        result = run(box, "import time\ndef f():\n    time.sleep(30)\n")
    assert result["outcome"] == "timeout" and "wall-clock" in result["message"]


@pytest.mark.parametrize("body", [
    "    while True:\n        pass\n",
    "    try:\n        while True:\n            pass\n    except BaseException:\n        pass\n    return 1\n",
])
def test_a_call_stops_at_the_event_cap_and_is_not_run_again(body):
    """An endless loop is stopped by the event cap (run on untraced it would be a timeout); code that catches
    the tracer's stop runs on untraced but is still reported truncated; the determinism run is not paid."""
    with _CountingSandbox(Limits(timeout_s=2.0)) as box:
        result = box.run({"code": f"def f():\n{body}", "entry_point": "f", "input": "", "max_events": 500})
    assert result["outcome"] == "trace_truncated" and not result["trace"]
    assert box.servers_used == (box.servers[0],)


class _CountingSandbox(Sandbox):
    """The real sandbox, noting which fork servers ran jobs."""

    servers_used: tuple = ()

    def _run_on(self, server, jobs, limits):
        self.servers_used = (*self.servers_used, server)
        return super()._run_on(server, jobs, limits)


def test_memory_bomb(sandbox):
    assert run(sandbox, "def f():\n    x = 'a' * (4 * 2**30)\n    return 1\n")["outcome"] == "memory"


def test_exits_and_crashes_do_not_hurt_the_caller(sandbox):
    assert run(sandbox, "import os\ndef f():\n    os._exit(3)\n")["outcome"] == "killed"
    assert run(sandbox, "import ctypes\ndef f():\n    return ctypes.string_at(0)\n")["outcome"] == "killed"
    assert run(sandbox, "import sys\ndef f():\n    sys.exit(0)\n")["outcome"] == "exception"
    assert run(sandbox, "import os, signal\ndef f():\n    os.kill(os.getppid(), signal.SIGKILL)\n")["outcome"] \
        == "sandbox_violation"
    endless = run(sandbox, "def f(n=0):\n    return f(n + 1)\n")  # the limit may strike inside the tracer
    assert "RecursionError" in (endless.get("exc_type") or "") + endless["message"]
    assert run(sandbox, "def f():\n    return 5\n")["output"] == "5"


def test_stdout_flood_and_huge_results_are_capped(sandbox):
    flood = run(sandbox, "def f():\n    for _ in range(100):\n        print('x' * 100_000)\n    return 1\n")
    assert flood["outcome"] == "ok" and len(flood["stdout"]) <= 10_000
    huge = run(sandbox, "def f():\n    return list(range(3 * 10**6))\n")
    assert huge["outcome"] in ("output_limit", "ok")
    if huge["outcome"] == "ok":
        assert huge["output_truncated"]


def test_writes_stay_in_the_scratch_directory():
    with Sandbox(Limits(runs=1)) as box:  # one run: the scratch path differs from child to child
        result = run(box, "import os\ndef f():\n    open('x.txt', 'w').write('hi')\n    return os.getcwd()\n")
    assert result["outcome"] == "ok"
    assert not os.path.exists(eval(result["output"]))  # the scratch directory is removed after the job


def test_canary_outside_the_scratch_directory_stays_unchanged(sandbox):
    if not sandbox.isolation["readonly_fs"]:
        pytest.skip("no read-only root on this machine (bubblewrap missing or refused)")
    canary = Path("/var/tmp") / f"tracecot-canary-{uuid.uuid4().hex}"
    canary.write_text("original")
    try:
        body = f"def f():\n    open({str(canary)!r}, 'w').write('changed')\n    return 1\n"
        result = run(sandbox, body)
        assert result["outcome"] == "exception" and "Read-only" in result["message"]
        assert canary.read_text() == "original"
    finally:
        canary.unlink()


def test_fork_server_restarts_after_it_dies():
    with Sandbox() as box:
        box.servers[0]._proc.kill()
        box.servers[0]._proc.wait()
        assert run(box, "def f():\n    return 1\n")["outcome"] == "sandbox_error"
        assert run(box, "def f():\n    return 1\n")["output"] == "1"
        assert box.restarts == 1


def test_a_bubblewrap_that_cannot_start_leaves_the_other_layers(tmp_path, monkeypatch):
    """bwrap installed where it may not make namespaces (an unprivileged container) fails at once: the fork server
    starts without it and says so, instead of failing."""
    refused = tmp_path / "bwrap"
    refused.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    refused.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with Sandbox() as box:
        assert run(box, "def f():\n    return 1\n")["output"] == "1"
        assert box.isolation["network_namespace"] is True
        assert box.isolation["readonly_fs"] is not os.access("/", os.W_OK)


def test_isolation_layers_are_reported(sandbox):
    for layer in ("network_namespace", "seccomp", "rlimits", "timeout"):
        assert sandbox.isolation[layer] is True


@pytest.mark.parametrize("body", [
    "import time\ndef f():\n    return time.time()\n",
    "import random\ndef f():\n    return random.random()\n",
    "import os\ndef f():\n    return os.urandom(4)\n",
])
def test_time_and_randomness_are_nondeterministic(sandbox, body):
    assert run(sandbox, body)["outcome"] == "nondeterministic"


def test_threads_that_keep_running_die_with_the_call(sandbox):
    body = ("import threading, time\n"
            "def f():\n"
            "    threading.Thread(target=lambda: time.sleep(60), daemon=False).start()\n"
            "    return 1\n")
    result = run(sandbox, body)
    assert result["outcome"] == "ok" and result["wall_s"] < 5


def test_signal_handler_tricks_do_not_block_the_timeout():
    body = ("import signal\n"
            "def f():\n"
            "    for s in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT):\n"
            "        signal.signal(s, signal.SIG_IGN)\n"
            "    any(iter(int, 1))\n")
    with Sandbox(Limits(timeout_s=1.0)) as box:
        assert run(box, body)["outcome"] == "timeout"


def test_the_cpu_limit_is_kept_from_outside_the_child():
    """Code that ignores SIGXCPU, raises its own soft CPU limit, stops the tracer and patches the clock is still
    stopped at its CPU limit, job by job: three such calls of one problem share a child and a hard limit of
    several seconds, and each is cut at one second of CPU, long before the wall-clock net."""
    body = ("import resource, signal, sys, time\n"
            "def f(k):\n"
            "    sys.settrace(None)\n"
            "    signal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
            "    resource.setrlimit(resource.RLIMIT_CPU, (resource.getrlimit(resource.RLIMIT_CPU)[1],) * 2)\n"
            "    time.process_time = lambda: 0.0\n"
            "    any(iter(int, 1))\n")
    with Sandbox(Limits(timeout_s=1.0, wall_timeout_s=30.0, runs=1)) as box:
        results = box.run_many([{"code": body, "entry_point": "f", "input": str(k)} for k in range(3)])
    assert [(r["outcome"], r["message"].split(" (")[0]) for r in results] == [("timeout", "CPU-time limit reached")] * 3


@pytest.mark.parametrize(("body", "why"), [
    ("import sys\ndef f():\n    sys.settrace(None)\n    y = 1\n    return y\n", "removed or replaced"),
    ("class E(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\n"
     "def f():\n    try:\n        raise E()\n    except Exception:\n        pass\n    return 1\n", "failed"),
    ("class Stop(BaseException):\n    pass\nclass O:\n    @property\n    def __dict__(self):\n        raise Stop()\n"
     "def f():\n    try:\n        o = O()\n        y = 1\n    except Stop:\n        pass\n    return 2\n", "failed"),
])
def test_a_trace_user_code_broke_is_never_ok(sandbox, body, why):
    """Whatever stops the tracer (the code itself, a repr or str that raises into it) stops the call: a partial
    trace is never passed off as a whole one."""
    result = run(sandbox, body)
    assert result["outcome"] == "trace_failed" and why in result["message"]


@pytest.mark.parametrize(("body", "args", "output"), [
    # The tracer renders every local: a 5,700-digit int cannot be printed, and must not raise into the call.
    ("def f(n):\n    try:\n        x = 1\n        for i in range(2, n + 1):\n            x *= i\n"
     "        return x.bit_length()\n    except ValueError:\n        return -1\n", "2000", "19053"),
    # A linked list of 400 objects renders shallowly, without recursion errors inside the call.
    ("class N:\n    def __init__(s, v, nxt=None):\n        s.v = v\n        s.nxt = nxt\n"
     "def f(k):\n    head = None\n    try:\n        for i in range(k):\n            head = N(i, head)\n"
     "    except RecursionError:\n        return -1\n    return head.v\n", "400", "399"),
    # The tracer keeps no old value alive: a finaliser runs when the code drops the object, as untraced.
    ("class D:\n    def __del__(self):\n        log.append('del')\nlog = []\n"
     "def f():\n    d = D()\n    d = None\n    log.append('after')\n    return log\n", "", "['del', 'after']"),
    # A TraceLimit raised by the code itself is an exception like any other, not the tracer's stop.
    ("import operators.trace.tracer as t\ndef f():\n    try:\n        raise t.TraceLimit('mine')\n"
     "    except BaseException as e:\n        return str(e)\n", "", "'mine'"),
])
def test_tracing_does_not_change_what_honest_code_computes(sandbox, body, args, output):
    result = run(sandbox, body, args=args)
    assert (result["outcome"], result.get("output")) == ("ok", output)


def test_values_cut_by_depth_are_not_literals(sandbox):
    """A list nested deeper than the renderer goes is shown cut (`<...>`): never read back as a literal."""
    result = run(sandbox, "def f(n):\n    x = 0\n    for _ in range(n):\n        x = [x]\n    return x\n", args="14")
    assert result["outcome"] == "ok" and "<...>" in result["output"] and not result["output_is_literal"]
    assert run(sandbox, "def f(x):\n    return 1\n", args="10 ** 5000")["outcome"] == "bad_input"


def test_objects_come_back_as_type_tagged_text(sandbox):
    result = run(sandbox, "class P:\n    pass\ndef f():\n    return P()\n")
    assert result["outcome"] == "ok" and result["output"] == "<P>" and not result["output_is_literal"]


def test_user_code_cannot_reach_the_fork_servers_pipes(sandbox):
    body = ("import os, struct\n"
            "def f():\n"
            "    fake = b'{\"outcome\":\"ok\",\"output\":\"12345\"}'\n"
            "    for fd in os.listdir(f'/proc/{os.getppid()}/fd'):\n"
            "        with open(f'/proc/{os.getppid()}/fd/{fd}', 'wb') as pipe:\n"
            "            pipe.write(struct.pack('>I', len(fake)) + fake)\n"
            "    return 1\n")
    assert run(sandbox, body)["outcome"] in ("exception", "sandbox_violation", "nondeterministic")
    assert run(sandbox, "def f(x):\n    return x * 2\n", args="5")["output"] == "10"
    assert run(sandbox, "def f(x):\n    return x * 3\n", args="5")["output"] == "15"


def test_a_forged_result_is_not_trusted(sandbox):
    body = ("import os, struct\n"
            "def f():\n"
            "    fake = b'{\"outcome\": \"ok\"}'\n"
            "    for fd in range(3, 256):\n"
            "        try:\n"
            "            os.write(fd, struct.pack('>I', len(fake)) + fake)\n"
            "        except OSError:\n"
            "            pass\n"
            "    os._exit(0)\n")
    assert run(sandbox, body)["outcome"] == "sandbox_error"


def test_closing_the_result_pipe_and_sleeping_does_not_stall(sandbox):
    body = "import os, time\ndef f():\n    os.closerange(3, 1024)\n    time.sleep(600)\n"
    result = run(sandbox, body)
    assert result["outcome"] == "killed" and result["wall_s"] < 5


def test_fork_bomb_is_stopped(sandbox):
    body = "import os\ndef f():\n    while True:\n        os.fork()\n"
    assert run(sandbox, body)["outcome"] == "sandbox_violation"
    assert run(sandbox, "def f():\n    return 1\n")["output"] == "1"


def test_children_run_unprivileged_and_cannot_see_the_home_directory(sandbox):
    if not sandbox.isolation["unprivileged_uid"]:
        pytest.skip("nobody cannot read this interpreter (no bubblewrap to re-expose it)")
    home = Path.home()
    body = (f"import os\ndef f():\n    hidden = os.path.exists({str(home / '.bash_history')!r})\n"
            f"    return [os.getuid(), os.getgid(), hidden]\n")
    result = run(sandbox, body)
    assert result["outcome"] == "ok"
    uid, gid, _ = eval(result["output"])
    assert uid != 0 and gid != 0
    if sandbox.isolation["readonly_fs"] and os.geteuid() == 0:
        secret = home / f".tracecot-secret-{uuid.uuid4().hex}"
        secret.write_text("s3cr3t")
        try:
            body = f"def f():\n    return open({str(secret)!r}).read()\n"
            assert run(sandbox, body)["outcome"] == "exception"
        finally:
            secret.unlink()


@pytest.mark.parametrize(("body", "text"), [
    ("def f():\n    return lambda x: x\n", "<function>"),
    ("def f():\n    return (i for i in range(3))\n", "<generator>"),
    ("import threading\ndef f():\n    return threading.Lock()\n", "<lock>"),
])
def test_unpicklable_returns_come_back_as_text(sandbox, body, text):
    result = run(sandbox, body)
    assert result["outcome"] == "ok" and not result["output_is_literal"]
    assert result["output"].startswith(text[:-1])


def test_generators_are_traced_across_resumes(sandbox):
    body = ("def gen(n):\n    for i in range(n):\n        yield i * i\n"
            "def f(n):\n    return sum(gen(n))\n")
    result = run(sandbox, body, args="3")
    assert result["outcome"] == "ok" and result["output"] == "5"
    returns = [e.get("value") for e in result["trace"] if e["event"] == "return" and e["func"] == "gen"]
    assert returns == ["0", "1", "4", "None"]

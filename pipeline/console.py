"""What a run does with its terminal: Ctrl-C held off where an interrupt would do harm, and what the process
writes to stderr kept in the run's log."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import TextIO

from pipeline.storage import Location


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def stderr_to_log(output: Location, run_id: str) -> Iterator[TextIO]:
    """What this process writes to its stderr while the block runs goes to `runs/<run_id>.log` in the output:
    Ray's start-up warnings, its C++ core-worker lines and the log lines its workers forward. Yields a stream
    to the real stderr for tracecot's own progress lines."""
    sys.stderr.flush()
    terminal_fd = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        terminal = os.fdopen(os.dup(terminal_fd), "w", buffering=1)
        try:
            yield terminal
        finally:
            sys.stderr.flush()
            os.dup2(terminal_fd, 2)
            os.close(terminal_fd)
            terminal.close()
            log.seek(0)
            output.write_bytes(log.read(), "runs", f"{run_id}.log")



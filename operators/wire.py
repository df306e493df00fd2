"""Length-prefixed JSON messages over pipes, with deadlines (the sandbox's protocol)."""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

_HEADER = struct.Struct(">I")


def send_msg(fd: int, message: Any) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    write_all(fd, _HEADER.pack(len(data)) + data)


def recv_msg(fd: int, deadline: float | None = None) -> Any:
    """Read one message; raises EOFError when the peer is gone, TimeoutError past `deadline`."""
    (size,) = _HEADER.unpack(read_exact(fd, _HEADER.size, deadline))
    return json.loads(read_exact(fd, size, deadline))


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_exact(fd: int, size: int, deadline: float | None = None) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        wait_readable(fd, deadline)
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def wait_readable(fd: int, deadline: float | None) -> None:
    if deadline is None:
        return
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([fd], [], [], left)[0]:
        raise TimeoutError("no answer before the deadline")

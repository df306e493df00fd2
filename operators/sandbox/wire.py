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
    send_frame(fd, json.dumps(message, separators=(",", ":")).encode())


def recv_msg(fd: int, deadline: float | None = None) -> Any:
    """Read one message; raises EOFError when the peer is gone, TimeoutError past `deadline`."""
    return json.loads(recv_frame(fd, deadline))


def send_frame(fd: int, data: bytes) -> None:
    write_all(fd, _HEADER.pack(len(data)) + data)


def recv_frame(fd: int, deadline: float | None = None, limit: int | None = None) -> bytes:
    """Read one frame's bytes; raises OverflowError, unread, when the frame says it is larger than `limit`."""
    (size,) = _HEADER.unpack(read_exact(fd, _HEADER.size, deadline))
    if limit is not None and size > limit:
        raise OverflowError(f"a frame of {size} bytes is over the {limit}-byte limit")
    return read_exact(fd, size, deadline)


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

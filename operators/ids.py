"""The content hashes that name records and files, so equal work gets equal ids and writes are idempotent.

Kept free of heavy imports: the CLI and the config use them before anything else is loaded.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

DIRECTIONS = ("forward", "backward")


def content_hash(*parts: Any) -> str:
    blob = json.dumps(parts, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def record_id(code: str, entry_point: str, input_text: str, direction: str, fingerprint: str, sample: int = 0) -> str:
    """The id of a (problem call, direction, sample) under one fingerprint: equal inputs give equal ids."""
    if sample:
        return content_hash(code, entry_point, input_text, direction, fingerprint, sample)
    return content_hash(code, entry_point, input_text, direction, fingerprint)

"""The run index: what ingest and the sink ask about a whole batch at once, answered by slices of 64-bit keys.

A record id's key is its first 64 bits (`id_keys`). The index is split into `shards` slices, a key belonging to
slice `key % shards`; each slice (`KeySlice`) answers three batched questions about its keys:

- which are done: already in the output under this fingerprint (the slice holds only its own done keys);
- the how-manieth meeting of a call this is (1 the first time), counted per call key across the whole run;
- which rows a sink batch may write: a row is claimed by the first sink batch that brings it, so a row an
  upstream retry resends in another batch is dropped, while the retry of the same batch is allowed again.

`RunIndex` splits a batch's questions by slice and sends one question per slice; `LocalIndex` is the whole index
in this process (tests, the driver's up-to-date check, `run_local`); `pipeline.state.ShardedIndex` is the same
interface over one Ray actor per slice, so that no actor and not the driver holds every id.

A meeting is counted once per *token* (the input row's position and the call's place in it): a batch retried
after an ingest actor died asks again for the same tokens and gets the same numbers. Calls without a token
(rows read in this process, which are never retried) are counted each time they are asked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from operators.ids import content_hash

Call = tuple[str, int | None]  # a call's first record id, and the token of the row meeting it (None: no retries)


def id_keys(ids: Sequence[str]) -> np.ndarray:
    """The first 64 bits of each hex id, as unsigned integers."""
    return np.frombuffer(bytes.fromhex("".join(i[:16].ljust(16, "0") for i in ids)), dtype=">u8").astype(np.uint64)


def sorted_contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Which of `keys` are in `sorted_keys` (sorted, unique), as a boolean array."""
    position = np.searchsorted(sorted_keys, keys)
    found = position < len(sorted_keys)
    found[found] = sorted_keys[position[found]] == keys[found]
    return found


class DoneKeys(Protocol):
    """The done keys of one slice (`KeySet` in memory, `pipeline.state.DoneIndex` read from an output)."""

    def contains(self, keys: np.ndarray) -> np.ndarray: ...


class KeySet:
    """Done record ids held in memory."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self.keys = np.unique(id_keys(list(ids)))

    def contains(self, keys: np.ndarray) -> np.ndarray:
        return sorted_contains(self.keys, keys)


class KeySlice:
    """One slice of the index: its done keys, the calls met so far, and the rows claimed by sink batches.

    Memory: the done keys (8 bytes each), and a few Python ints per call met and per row written this run."""

    def __init__(self, done: DoneKeys) -> None:
        self.done = done
        self.met: Counter[int] = Counter()
        self.numbers: dict[tuple[int, int], int] = {}
        self.claims: dict[int, int] = {}

    def ask(self, keys: np.ndarray, calls: list[tuple[int, int | None]]) -> tuple[np.ndarray, list[int]]:
        """Which `keys` are done, and for each call its meeting number."""
        return self.done.contains(keys), [self._meet(call, token) for call, token in calls]

    def claim(self, keys: np.ndarray, writer: int) -> list[bool]:
        """Which rows `writer` (a sink batch) may write: those no other batch claimed first."""
        return [self.claims.setdefault(int(key), writer) == writer for key in keys]

    def _meet(self, call: int, token: int | None) -> int:
        if token is not None and (call, token) in self.numbers:
            return self.numbers[call, token]
        self.met[call] += 1
        if token is not None:
            self.numbers[call, token] = self.met[call]
        return self.met[call]


class RunIndex:
    """The index's interface, split over `shards` slices; subclasses say how one question reaches each slice."""

    shards: int = 1

    def ask(self, ids: Sequence[str], calls: Sequence[Call] = ()) -> tuple[list[bool], list[int]]:
        """Which record `ids` are done, and each call's meeting number (1 the first time in this run)."""
        keys, call_keys = id_keys(ids), id_keys([call for call, _ in calls])
        by_key, by_call = self._slices(keys), self._slices(call_keys)
        answers = self._send("ask", {s: (keys[by_key[s]], [(int(call_keys[i]), calls[i][1]) for i in by_call[s]])
                                     for s in range(self.shards) if len(by_key[s]) or len(by_call[s])})
        done = np.zeros(len(ids), dtype=bool)
        numbers = [0] * len(calls)
        for s, (slice_done, slice_numbers) in answers.items():
            done[by_key[s]] = slice_done
            for i, number in zip(by_call[s], slice_numbers, strict=True):
                numbers[i] = number
        return done.tolist(), numbers

    def claim(self, ids: Sequence[str], writer: int) -> list[bool]:
        """Which rows (by record id) the sink batch `writer` may write."""
        keys = id_keys(ids)
        by_key = self._slices(keys)
        answers = self._send("claim", {s: (keys[by_key[s]], writer) for s in range(self.shards) if len(by_key[s])})
        fresh = np.zeros(len(ids), dtype=bool)
        for s, slice_fresh in answers.items():
            fresh[by_key[s]] = slice_fresh
        return fresh.tolist()

    def _slices(self, keys: np.ndarray) -> list[np.ndarray]:
        """The positions of `keys` in each slice."""
        owner = keys % np.uint64(self.shards)
        return [np.flatnonzero(owner == s) for s in range(self.shards)]

    def _send(self, method: str, questions: dict[int, tuple[Any, ...]]) -> dict[int, Any]:
        """Each slice's answer to its question (`method` of `KeySlice`), one question per slice."""
        raise NotImplementedError


class LocalIndex(RunIndex):
    """The whole index in this process, over `done` (default: nothing done)."""

    def __init__(self, done: DoneKeys | None = None) -> None:
        self.slice = KeySlice(done if done is not None else KeySet())

    def _send(self, method: str, questions: dict[int, tuple[Any, ...]]) -> dict[int, Any]:
        return {s: getattr(self.slice, method)(*question) for s, question in questions.items()}


def token_of(*parts: str | int) -> int:
    """A 64-bit token naming one place in the input (see the module docstring)."""
    return int(id_keys([content_hash(*parts)])[0])

"""A bounded map from a token (or its digest) to its verdict, with a deadline per entry.

Plain dict, oldest-first eviction (insertion order): cheaper per hit than an LRU's
reordering, and for access tokens, which live minutes, age is what matters.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["TokenCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TokenCache(Generic[K, V]):
    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, token: K, now: float) -> V | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if now >= entry[0]:
            self._entries.pop(token, None)
            return None
        return entry[1]

    def put(self, token: K, value: V, until: float) -> None:
        entries = self._entries
        entries.pop(token, None)
        if len(entries) >= self._max:
            # Drop the oldest tenth at once: one pass instead of one eviction per insert.
            for stale in list(entries)[: max(1, self._max // 10)]:
                del entries[stale]
        entries[token] = (until, value)

    def discard(self, token: K) -> None:
        self._entries.pop(token, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

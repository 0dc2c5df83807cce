"""Values read from the database lately, kept for a moment so that a burst of requests reads
them once (a device's push then pull, a match's viewers opening together).

An entry is served for ``ttl_s`` seconds at most. ``forget`` drops everything at once and
starts a new generation: whoever changes what was read calls it, here or on the relay bus's
word from another instance. A read that was under way while that happened is never kept: it
carries the generation it started in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class RecentReads(Generic[K, V]):
    def __init__(
        self,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._generation = 0
        self._entries: dict[K, tuple[float, int, V]] = {}

    @property
    def generation(self) -> int:
        """Take it before reading; give it to ``keep`` with what was read."""
        return self._generation

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, generation, value = entry
        if generation != self._generation or self._clock() - stored_at >= self._ttl_s:
            del self._entries[key]
            return None
        return value

    def keep(self, key: K, value: V, generation: int) -> None:
        if generation != self._generation:
            return  # read before a change: it may already be stale
        if len(self._entries) >= self._max_entries:
            self._entries.clear()  # bounded memory; the next requests simply read again
        self._entries[key] = (self._clock(), generation, value)

    def forget(self) -> None:
        """Something read here changed: read everything afresh."""
        self._generation += 1
        self._entries.clear()

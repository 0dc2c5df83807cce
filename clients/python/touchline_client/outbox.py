"""A device's outbox: the changes it made that the server has not acknowledged yet.

Invariants: the pending changes' sequences are consecutive and start right after the last
acknowledged one; a change leaves the outbox only when the server acknowledged it, and only
from the front. Each change keeps the version vector its author had when making it, because
a push states that vector (``seen``) once for the whole set.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import msgspec

from protocol.wire import Change

__all__ = ["Outbox", "PendingChange"]


class PendingChange(msgspec.Struct, frozen=True, kw_only=True):
    """A change waiting for acknowledgement, with what its author had integrated then."""

    change: Change
    seen: dict[str, int]
    """Other devices' sequences integrated when the change was made (the author's own entry
    is left out: the server ignores it, and leaving it out lets consecutive changes made
    without pulling in between share one push)."""


class Outbox:
    """Pending changes in sequence order."""

    def __init__(self, pending: Sequence[PendingChange] = ()) -> None:
        for before, after in itertools.pairwise(pending):
            if after.change.seq != before.change.seq + 1:
                raise ValueError(
                    f"outbox sequences must be consecutive: {before.change.seq} is followed "
                    f"by {after.change.seq}"
                )
        self._pending = list(pending)

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[PendingChange]:
        return iter(self._pending)

    @property
    def first_seq(self) -> int | None:
        return self._pending[0].change.seq if self._pending else None

    def append(self, pending: PendingChange) -> None:
        if self._pending and pending.change.seq != self._pending[-1].change.seq + 1:
            raise ValueError(
                f"seq {pending.change.seq} does not follow {self._pending[-1].change.seq}"
            )
        self._pending.append(pending)

    def next_run(self, max_changes: int) -> list[PendingChange]:
        """The leading changes that share one ``seen`` vector, at most ``max_changes``.

        Sending them as one set keeps ``seen`` exact for every change in it: a set stating an
        older vector would report conflicts its later changes do not have, a newer one would
        hide conflicts its earlier changes do have.
        """
        if max_changes < 1:
            raise ValueError("max_changes must be at least 1")
        run: list[PendingChange] = []
        for pending in self._pending:
            if len(run) == max_changes or (run and pending.seen != run[0].seen):
                break
            run.append(pending)
        return run

    def acknowledge(self, acked_seq: int) -> list[PendingChange]:
        """Remove and return the pending changes with a sequence up to ``acked_seq``."""
        count = 0
        while count < len(self._pending) and self._pending[count].change.seq <= acked_seq:
            count += 1
        acked, self._pending = self._pending[:count], self._pending[count:]
        return acked

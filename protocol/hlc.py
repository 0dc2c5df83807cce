"""Hybrid logical clocks.

An HLC timestamp is a pair (wall_ms, logical). It never goes backwards on one replica, it
stays close to physical time, and it respects causality: a replica that has received a
timestamp ``t`` only ever issues timestamps greater than ``t`` afterwards. That last property
is what lets "an edit made after seeing another edit" win over it whatever the wall clocks say.

On the wire an HLC is a fixed-width string, ``"<wall_ms:15 digits>-<logical:5 digits>"``, so
that string order equals timestamp order (databases and JavaScript compare it directly).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

MAX_LOGICAL = 99_999
# END_OF_TEXT, not "$": in Python "$" also matches before a trailing newline, and "\Z" is
# not understood by the JSON Schema (ECMAScript) readers of the OpenAPI document.
END_OF_TEXT = r"(?![\s\S])"
_WIRE = re.compile(r"^([0-9]{15})-([0-9]{5})" + END_OF_TEXT)
HLC_PATTERN = _WIRE.pattern


@dataclass(frozen=True, order=True, slots=True)
class Hlc:
    """A hybrid logical timestamp; ordered by (wall_ms, logical)."""

    wall_ms: int
    logical: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.wall_ms < 10**15:
            raise ValueError(f"HLC wall time out of range: {self.wall_ms}")
        if not 0 <= self.logical <= MAX_LOGICAL:
            raise ValueError(f"HLC logical counter out of range: {self.logical}")

    def encode(self) -> str:
        """The wire form: fixed width so that string order is timestamp order."""
        return f"{self.wall_ms:015d}-{self.logical:05d}"

    @classmethod
    def parse(cls, text: str) -> Hlc:
        """Parse the wire form; raises ``ValueError`` on anything else."""
        found = _WIRE.match(text)
        if found is None:
            raise ValueError(f"not an HLC: {text!r}")
        return cls(int(found.group(1)), int(found.group(2)))

    def successor(self) -> Hlc:
        """The smallest timestamp greater than this one."""
        if self.logical < MAX_LOGICAL:
            return Hlc(self.wall_ms, self.logical + 1)
        # Borrow a millisecond rather than overflow the fixed-width counter.
        return Hlc(self.wall_ms + 1, 0)

    def __str__(self) -> str:
        return self.encode()


ZERO = Hlc(0, 0)


class HybridClock:
    """The clock of one replica. Pure: physical time comes from the injected ``now_ms``.

    Invariant: every timestamp returned is strictly greater than every timestamp this clock
    returned or received before.
    """

    def __init__(self, now_ms: Callable[[], int], last: Hlc = ZERO) -> None:
        self._now_ms = now_ms
        self._last = last

    @property
    def last(self) -> Hlc:
        """The greatest timestamp issued or received so far."""
        return self._last

    def now(self) -> Hlc:
        """A timestamp for a local event (a change this replica makes)."""
        physical = self._now_ms()
        if physical > self._last.wall_ms:
            self._last = Hlc(physical, 0)
        else:
            self._last = self._last.successor()
        return self._last

    def receive(self, remote: Hlc) -> Hlc:
        """Merge a timestamp seen on a remote change; later local events sort after it."""
        physical = self._now_ms()
        latest = max(self._last, remote)
        self._last = Hlc(physical, 0) if physical > latest.wall_ms else latest.successor()
        return self._last


def stamp(
    sent: Hlc, *, now_ms: int, max_skew_ms: int, previous: Hlc | None, floor: Hlc | None = None
) -> Hlc:
    """The effective HLC the server records for a change, fixed once at first ingestion.

    A device whose clock runs fast would otherwise win every concurrent conflict until real
    time caught up. The server caps a timestamp at ``now_ms + max_skew_ms`` (the change still
    gets in; it just cannot win by being early) and keeps one device's timestamps strictly
    increasing (``previous`` is the effective HLC of that device's last change), so that
    (hlc, device) orders all field writes totally.

    ``floor`` is the greatest effective HLC the server has stored in this club. The cap never
    goes below its successor, so a change made after seeing a capped change still sorts after
    it even when the server's clock has stepped back since.
    """
    ceiling = Hlc(now_ms + max_skew_ms, 0)
    if floor is not None:
        ceiling = max(ceiling, floor.successor())
    effective = min(sent, ceiling)
    if previous is not None and effective <= previous:
        effective = previous.successor()
    return effective

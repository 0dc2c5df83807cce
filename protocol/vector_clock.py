"""Version vectors: what a replica has integrated, as the highest sequence per device.

Every device numbers its own changes densely from 1, and the server keeps each device's
changes in that order, so "I have device d up to seq n" describes exactly which of d's changes
a replica holds. A change set carries the vector of its author's knowledge; the server uses it
to tell a causal overwrite ("I saw your value and changed it") from a real conflict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum

VersionVector = dict[str, int]
"""device id -> highest sequence integrated from that device (absent means 0)."""


class Causality(Enum):
    """How two version vectors relate."""

    EQUAL = "equal"
    BEFORE = "before"
    AFTER = "after"
    CONCURRENT = "concurrent"


def covers(vector: Mapping[str, int], device_id: str, seq: int) -> bool:
    """True when the change ``(device_id, seq)`` is part of what ``vector`` describes."""
    return vector.get(device_id, 0) >= seq


def advance(vector: Mapping[str, int], device_id: str, seq: int) -> VersionVector:
    """The vector after integrating ``(device_id, seq)``; never moves an entry backwards."""
    merged = dict(vector)
    if seq > merged.get(device_id, 0):
        merged[device_id] = seq
    return merged


def merge(vectors: Iterable[Mapping[str, int]]) -> VersionVector:
    """The least vector covering all of ``vectors`` (entry-wise maximum)."""
    merged: VersionVector = {}
    for vector in vectors:
        for device_id, seq in vector.items():
            if seq > merged.get(device_id, 0):
                merged[device_id] = seq
    return merged


def compare(left: Mapping[str, int], right: Mapping[str, int]) -> Causality:
    """Whether ``left`` happened before, after, equal to or concurrently with ``right``."""
    devices = set(left) | set(right)
    left_ahead = any(left.get(d, 0) > right.get(d, 0) for d in devices)
    right_ahead = any(right.get(d, 0) > left.get(d, 0) for d in devices)
    if left_ahead and right_ahead:
        return Causality.CONCURRENT
    if left_ahead:
        return Causality.AFTER
    if right_ahead:
        return Causality.BEFORE
    return Causality.EQUAL

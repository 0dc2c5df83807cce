"""How long a device waits before retrying a sync the network or the server let down.

Exponential backoff with full jitter: the n-th retry waits a uniformly random time in
``[0, min(cap, base * 2**n)]``, so devices that lost the signal together (a whole touchline of
phones when the clubhouse Wi-Fi comes back) do not all retry in the same instant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries: at most ``attempts`` tries in all, waits growing from ``base_s``."""

    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("backoff times cannot be negative")

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(retry, 62))
        return rng.uniform(0.0, ceiling)

"""Backoff with full jitter: bounded, growing, never negative."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from touchline_client import RetryPolicy


@given(
    retry=st.integers(0, 10_000),
    base=st.floats(0, 10),
    cap=st.floats(0, 120),
    seed=st.integers(0, 2**32),
)
def test_a_wait_stays_between_zero_and_the_capped_exponential(
    retry: int, base: float, cap: float, seed: int
) -> None:
    delay = RetryPolicy(base_s=base, cap_s=cap).delay(retry, random.Random(seed))
    assert 0 <= delay <= min(cap, base * 2.0 ** min(retry, 62))


def test_waits_spread_out_and_grow() -> None:
    policy, rng = RetryPolicy(base_s=1.0, cap_s=1_000.0), random.Random(7)
    first = [policy.delay(0, rng) for _ in range(200)]
    later = [policy.delay(6, rng) for _ in range(200)]
    assert len(set(first)) == 200  # jittered, not in lock step
    assert max(first) <= 1.0 and max(later) > 10 * max(first) / 2


def test_a_policy_must_allow_one_attempt() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(base_s=-1)

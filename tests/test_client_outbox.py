"""The outbox: consecutive pending changes, pushed in runs that share one ``seen`` vector."""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.hlc import Hlc
from protocol.wire import Change
from touchline_client.outbox import Outbox, PendingChange

VECTORS: tuple[dict[str, int], ...] = ({}, {"coach-b": 1}, {"coach-b": 1, "coach-c": 2})


def pending(seq: int, seen: dict[str, int]) -> PendingChange:
    change = Change(
        seq=seq, hlc=Hlc(1_780_000_000_000 + seq).encode(), table="events", id=uuid.uuid4()
    )
    return PendingChange(change=change, seen=seen)


@given(
    seens=st.lists(st.sampled_from(VECTORS), min_size=1, max_size=15),
    first=st.integers(1, 100),
    size=st.integers(1, 4),
)
def test_runs_cover_the_outbox_in_order_and_split_where_seen_changes(
    seens: list[dict[str, int]], first: int, size: int
) -> None:
    outbox = Outbox([pending(first + i, seen) for i, seen in enumerate(seens)])
    runs = []
    while run := outbox.next_run(size):
        runs.append(run)
        assert outbox.acknowledge(run[-1].change.seq) == run
    assert len(outbox) == 0 and outbox.first_seq is None
    changes = [p for run in runs for p in run]
    assert [p.change.seq for p in changes] == list(range(first, first + len(seens)))
    assert [p.seen for p in changes] == seens
    for run in runs:
        assert 1 <= len(run) <= size and all(p.seen == run[0].seen for p in run)
    for before, after in itertools.pairwise(runs):
        assert len(before) == size or before[0].seen != after[0].seen  # runs are maximal


def test_acknowledging_is_idempotent_and_only_from_the_front() -> None:
    outbox = Outbox([pending(seq, {}) for seq in (4, 5, 6)])
    assert outbox.acknowledge(3) == []
    assert [p.change.seq for p in outbox.acknowledge(5)] == [4, 5]
    assert outbox.acknowledge(5) == [] and outbox.first_seq == 6
    outbox.append(pending(7, {}))
    with pytest.raises(ValueError, match="does not follow"):
        outbox.append(pending(9, {}))
    with pytest.raises(ValueError, match="consecutive"):
        Outbox([pending(1, {}), pending(3, {})])
    with pytest.raises(ValueError, match="at least 1"):
        outbox.next_run(0)

"""What an instance remembers of each club's log: bounded, and a turn per club."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import anyio
import pytest

from protocol import merge
from protocol.ingest import DeviceCursor, RecordKey
from sync_server.club_heads import ClubHead, ClubHeads
from sync_server.store_sql import PlannedWrites

pytestmark = pytest.mark.anyio

STATE = merge.RecordState(fields={"kind": merge.FieldVersion("goal", "h", "phone-a", 1)})


def records(count: int) -> dict[RecordKey, merge.RecordState]:
    return {("events", uuid.uuid4()): STATE for _ in range(count)}


def commit(seq: int, device_id: str = "d", last_seq: int = 1) -> PlannedWrites:
    """A commit that brought the club's log to ``seq``, pushed by ``device_id``."""
    return PlannedWrites(
        club_id=uuid.uuid4(),
        device_id=device_id,
        log_rows=[],
        log_seq=seq,
        club_max=None,
        record_rows={},
        conflicts=[],
        conflict_rows=[],
        device=DeviceCursor(last_seq),
        received=datetime.now(UTC),
    )


def test_a_head_keeps_its_most_recent_records_and_devices() -> None:
    heads = ClubHeads(records_per_club=3, devices_per_club=2)
    club = uuid.uuid4()
    head = heads.start(club, 0, None)
    first = records(2)
    heads.advance(club, head, commit(2, "phone-a", 2), first)
    later = records(2)
    heads.advance(club, head, commit(4, "phone-b", 2), later)
    heads.advance(club, head, commit(4, "phone-c", 1), {})
    assert list(head.records) == [list(first)[1], *later]
    assert list(head.devices) == ["phone-b", "phone-c"]
    assert (head.seq, heads.records) == (4, 3)


def test_the_budget_lets_go_of_the_least_recently_used_clubs() -> None:
    heads = ClubHeads(max_clubs=3, max_records=5)
    clubs = [uuid.uuid4() for _ in range(4)]
    for club in clubs[:3]:
        heads.advance(club, heads.start(club, 0, None), commit(2, "d", 2), records(2))
    # Over the record budget (6 > 5): the oldest club goes.
    assert heads.get(clubs[0]) is None and heads.records == 4
    assert heads.get(clubs[1]) is not None  # now the most recently used
    heads.start(clubs[3], 0, None)
    heads.start(uuid.uuid4(), 0, None)
    assert len(heads) == 3 and heads.get(clubs[2]) is None and heads.get(clubs[1]) is not None


def test_a_head_let_go_of_meanwhile_is_not_counted() -> None:
    heads = ClubHeads()
    club = uuid.uuid4()
    head = heads.start(club, 0, None)
    heads.forget(club)
    heads.advance(club, head, commit(2, "d", 2), records(2))
    assert (heads.records, heads.get(club)) == (0, None)


def test_a_read_joins_the_instances_head_only_at_the_same_point() -> None:
    heads = ClubHeads()
    club = uuid.uuid4()
    kept = records(1)
    heads.advance(club, heads.start(club, 0, None), commit(1, "phone-a", 1), kept)
    read = records(1)
    same = heads.start(club, 1, None, ClubHead(1, None, {"phone-b": DeviceCursor(3)}, read))
    assert set(same.records) == {*kept, *read} and set(same.devices) == {"phone-a", "phone-b"}
    # Read at another point: what the instance had is not known to hold any more.
    other = heads.start(club, 7, None, ClubHead(7, None, {"phone-b": DeviceCursor(4)}, {}))
    assert (other.records, list(other.devices), heads.records) == ({}, ["phone-b"], 0)


async def test_pushes_to_one_club_take_turns() -> None:
    heads = ClubHeads()
    club = uuid.uuid4()
    inside: list[str] = []
    entered = anyio.Event()
    release = anyio.Event()

    async def first() -> None:
        async with heads.turn(club):
            inside.append("first")
            entered.set()
            await release.wait()
            inside.append("first done")

    async def second() -> None:
        await entered.wait()
        async with heads.turn(club):
            inside.append("second")

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        group.start_soon(second)
        await entered.wait()
        async with heads.turn(uuid.uuid4()):  # another club does not wait
            inside.append("other club")
        release.set()
    assert inside == ["first", "other club", "first done", "second"]

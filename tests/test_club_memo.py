"""The memo of clubs a PostgreSQL store pushes on: exact while its head is, bounded always."""

from __future__ import annotations

import uuid

from protocol import merge
from protocol.ingest import DeviceCursor, RecordKey
from sync_server.club_memo import ClubMemos


def state(value: str) -> merge.RecordState:
    return merge.RecordState(fields={"name": merge.FieldVersion(value, "hlc", "phone", 1)})


def keys(n: int) -> list[RecordKey]:
    return [("teams", uuid.uuid4()) for _ in range(n)]


def commit(
    memos: ClubMemos, club: uuid.UUID, before: int, after: int, records: list[RecordKey]
) -> None:
    memos.committed(
        club,
        before=before,
        after=after,
        club_max=None,
        device_id=f"phone-{after}",
        device=DeviceCursor(after),
        states={key: state(f"v{after}") for key in records},
    )


def test_a_commit_after_the_memos_head_moves_it_on_and_keeps_what_it_knew() -> None:
    memos, club = ClubMemos(), uuid.uuid4()
    first, second = keys(2)
    commit(memos, club, 0, 1, [first])
    commit(memos, club, 1, 2, [second])
    memo = memos.get(club)
    assert memo is not None and memo.head == 2
    assert set(memo.devices) == {"phone-1", "phone-2"}
    assert memo.records == {first: state("v1"), second: state("v2")}


def test_a_commit_from_another_head_replaces_the_memo() -> None:
    """Someone else wrote in between: nothing the memo held can be trusted any more."""
    memos, club = ClubMemos(), uuid.uuid4()
    first, second = keys(2)
    commit(memos, club, 0, 1, [first])
    commit(memos, club, 5, 6, [second])
    memo = memos.get(club)
    assert memo is not None and memo.head == 6
    assert set(memo.devices) == {"phone-6"} and list(memo.records) == [second]
    assert memos.records == 1


def test_one_club_keeps_its_most_recently_touched_records() -> None:
    memos, club = ClubMemos(max_records_per_club=3), uuid.uuid4()
    records = keys(5)
    commit(memos, club, 0, 1, records[:3])
    commit(memos, club, 1, 2, [records[0]])  # touched again: now the newest
    commit(memos, club, 2, 3, records[3:])
    memo = memos.get(club)
    assert memo is not None and list(memo.records) == [records[0], records[3], records[4]]
    assert memos.records == 3


def test_the_least_recently_used_clubs_go_first() -> None:
    memos = ClubMemos(max_records=4, max_clubs=3)
    a, b, c, d = (uuid.uuid4() for _ in range(4))
    commit(memos, a, 0, 1, keys(2))
    commit(memos, b, 0, 1, keys(2))
    assert memos.get(a) is not None  # a is now more recent than b
    commit(memos, c, 0, 1, keys(1))  # five records: b goes
    assert (memos.get(b), len(memos), memos.records) == (None, 2, 3)
    commit(memos, d, 0, 1, [])
    commit(memos, b, 0, 1, [])  # four clubs: the oldest, a, goes
    assert memos.get(a) is None and len(memos) == 3 and memos.records == 1
    memos.forget(c)
    assert memos.records == 0

"""A channel's presence: its own coach devices, what other instances said, and forgetting
an instance that went quiet (PROTOCOL.md §17.4)."""

from __future__ import annotations

import uuid

from protocol.relay import EditingRecord, PresentDevice
from sync_server.relay.channel import Channel
from sync_server.relay.outbox import Outbox

CLUB, MATCH = uuid.UUID(int=1), uuid.UUID(int=2)
ANNA, BEN = uuid.UUID(int=10), uuid.UUID(int=11)


def coach(
    device: str, user: uuid.UUID, opened_at: float, editing: uuid.UUID | None = None
) -> Outbox:
    return Outbox(
        kind="coach",
        club_id=CLUB,
        match_id=MATCH,
        limit=8,
        device_id=device,
        user_id=user,
        opened_at=opened_at,
        editing=None if editing is None else EditingRecord("events", editing),
    )


def test_one_entry_per_device_its_newest_connection() -> None:
    channel = Channel(CLUB, MATCH)
    event = uuid.uuid4()
    channel.coaches |= {coach("anna-phone", ANNA, 1.0), coach("anna-phone", ANNA, 2.0, event)}
    assert channel.local_devices() == [
        PresentDevice("anna-phone", ANNA, EditingRecord("events", event))
    ]


def test_other_instances_devices_join_the_list_until_they_go_quiet() -> None:
    channel = Channel(CLUB, MATCH)
    channel.coaches.add(coach("anna-phone", ANNA, 1.0))
    channel.hear("instance-b", [PresentDevice("ben-phone", BEN)], at=100.0)
    assert [d.device_id for d in channel.present_devices()] == ["anna-phone", "ben-phone"]
    assert channel.forget_stale(before=50.0) is False
    assert channel.forget_stale(before=150.0) is True
    assert [d.device_id for d in channel.present_devices()] == ["anna-phone"]


def test_an_instance_with_nobody_left_is_forgotten_at_once() -> None:
    channel = Channel(CLUB, MATCH)
    channel.hear("instance-b", [PresentDevice("ben-phone", BEN)], at=100.0)
    channel.hear("instance-b", [], at=101.0)
    assert channel.present_devices() == []

"""A device's saved state: complete, atomic, and refused when it does not add up."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import msgspec
import pytest

from protocol.wire import LoggedChange
from touchline_client import Credentials, DeviceReplica, HttpTransport, SyncDevice
from touchline_client.outbox import Outbox
from touchline_client.persistence import load_state, save_state

BASE_MS = 1_780_000_000_000
MATCH = str(uuid.UUID(int=1))


def busy_replica() -> DeviceReplica:
    """A device with confirmed records, pulled changes, a cursor and a pending outbox."""
    replica = DeviceReplica("coach-a", now_ms=lambda: BASE_MS)
    replica.integrate(
        LoggedChange(
            server_seq=1, device_id="coach-b", seq=1, hlc="001780000000500-00000",
            table="events", id=uuid.UUID(int=2), op="upsert",
            fields={"match_id": MATCH, "kind": "save", "x": 12.5},
        )
    )  # fmt: skip
    replica.create("events", uuid.UUID(int=3), {"match_id": MATCH, "kind": "goal"})
    replica.update("events", uuid.UUID(int=2), {"notes": None, "sentiment": -2})
    return replica


def test_state_survives_a_round_trip(tmp_path: Path) -> None:
    replica = busy_replica()
    save_state(tmp_path / "device.json", replica.to_state())
    loaded = DeviceReplica.from_state(load_state(tmp_path / "device.json"), now_ms=lambda: 0)
    assert loaded.to_state() == replica.to_state()
    assert loaded.view().snapshot() == replica.view().snapshot()
    assert loaded.clock == replica.clock and loaded.version_vector == {"coach-a": 2, "coach-b": 1}
    # The clock never goes back, even if the restarted device's wall clock does.
    assert loaded.record("events", uuid.UUID(int=3), "delete", {}).hlc > replica.clock.encode()
    assert [p.change.seq for p in loaded.outbox] == [1, 2, 3]


def test_saving_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    replica = busy_replica()
    save_state(path, replica.to_state())
    replica.update("events", uuid.UUID(int=3), {"clock_ms": 1_000})
    save_state(path, replica.to_state())
    assert [p.name for p in tmp_path.iterdir()] == ["device.json"]
    assert len(load_state(path).outbox) == 3


def test_a_failed_save_keeps_the_previous_state(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    save_state(path, busy_replica().to_state())
    before = path.read_bytes()
    unencodable = msgspec.structs.replace(busy_replica().to_state(), hlc=object())
    with pytest.raises(TypeError):
        save_state(path, unencodable)
    assert path.read_bytes() == before


def test_a_failed_replace_leaves_no_temporary(tmp_path: Path) -> None:
    occupied = tmp_path / "device.json"
    (occupied / "something").mkdir(parents=True)  # a directory cannot be replaced by a file
    with pytest.raises(OSError):
        save_state(occupied, busy_replica().to_state())
    assert [p.name for p in tmp_path.iterdir()] == ["device.json"]


def test_a_corrupt_or_inconsistent_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    path.write_bytes(b'{"device_id": "coach-a", "next_seq": 1')
    with pytest.raises(msgspec.DecodeError):
        load_state(path)
    state = busy_replica().to_state()
    with pytest.raises(ValueError, match="next sequence"):
        DeviceReplica.from_state(msgspec.structs.replace(state, next_seq=9), now_ms=lambda: 0)
    with pytest.raises(ValueError, match="consecutive"):
        Outbox([state.outbox[1], state.outbox[0]])


@pytest.mark.anyio
async def test_a_new_device_never_overwrites_saved_state(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    async with httpx.AsyncClient() as client:  # never used: nothing here talks to a server
        credentials = Credentials("coach@example.org", "never sent", "coach-a")
        transport = HttpTransport(client, credentials)
        device = SyncDevice("coach-a", transport, now_ms=lambda: BASE_MS, state_path=path)
        assert load_state(path).next_seq == 1  # saved from the start
        device.create("events", {"match_id": MATCH, "kind": "goal"})
        with pytest.raises(FileExistsError):
            SyncDevice("coach-b", transport, now_ms=lambda: BASE_MS, state_path=path)
        assert SyncDevice.load(path, transport, now_ms=lambda: BASE_MS).pending == 1

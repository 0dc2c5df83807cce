"""The match WebSocket on one served instance: catch-up, live changes, viewers, pushes,
presence, revocation, limits and slow consumers (PROTOCOL.md §17)."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sync_server.settings import Settings
from tests.auth_fixtures import FORGERIES, forge_token
from tests.live_fixtures import (
    STALL_PUSHES,
    LiveMatch,
    Served,
    ended_with,
    live_match,
    receive,
    receive_until,
    serve_in_thread,
    served_match,
    stalled_socket,
)
from tests.sync_fixtures import FakeClock, ScriptedDevice, goal, new_match_changes

pytestmark = pytest.mark.anyio


@pytest.fixture
def served(settings: Settings, clean_engine: AsyncEngine) -> Iterator[Served]:
    with serve_in_thread(settings) as served:
        yield served


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        yield client


@pytest.fixture
async def live(http: httpx.AsyncClient, served: Served) -> LiveMatch:
    return await live_match(http, served)


async def test_a_coach_gets_a_catchup_then_every_merged_change(live: LiveMatch) -> None:
    token = await live.token("phone-b")
    async with connect(live.ws_url(token)) as ws:
        first = await receive(ws)
        assert first["type"] == "catchup"
        assert [c["table"] for c in first["changes"]] == ["matches"]
        assert first["more"] is False
        change = goal(live.device, live.match_id, live.home)
        await live.push(live.device.push(change))
        message, _ = await receive_until(ws, "changes")
        assert [c["id"] for c in message["changes"]] == [str(change.id)]
        assert message["seq"] == message["changes"][-1]["server_seq"]


async def test_reconnecting_with_since_gets_exactly_what_was_missed(live: LiveMatch) -> None:
    token = await live.token("phone-b")
    async with connect(live.ws_url(token)) as ws:
        seq = (await receive(ws))["seq"]
    missed = [goal(live.device, live.match_id, live.home) for _ in range(3)]
    for change in missed:
        await live.push(live.device.push(change))
    async with connect(live.ws_url(token, since=seq)) as ws:
        catchup = await receive(ws)
        assert catchup["type"] == "catchup"
        assert [c["id"] for c in catchup["changes"]] == [str(c.id) for c in missed]
        # And nothing twice: the next live change is the only thing after it.
        later = goal(live.device, live.match_id, live.home)
        await live.push(live.device.push(later))
        message, skipped = await receive_until(ws, "changes")
        assert [c["id"] for c in message["changes"]] == [str(later.id)]
        assert all(m["type"] in ("presence", "heartbeat") for m in skipped)


async def test_a_viewer_gets_a_snapshot_then_deltas_without_private_fields(
    live: LiveMatch,
) -> None:
    share, _ = await live.share_token()
    async with connect(live.ws_url(share)) as ws:
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        assert snapshot["view"]["match"]["score"] == {"home": 0, "away": 0}
        change = goal(live.device, live.match_id, live.home, notes="private note")
        await live.push(live.device.push(change))
        delta, _ = await receive_until(ws, "delta")
        assert delta["match"]["score"] == {"home": 1, "away": 0}
        assert [e["id"] for e in delta["events"]] == [str(change.id)]
        assert "removed" not in delta
        assert "private" not in json.dumps(delta)
        archive = live.device.change("events", change.id, {}, op="delete")
        await live.push(live.device.push(archive))
        removed, _ = await receive_until(ws, "delta")
        assert removed["removed"] == [str(change.id)]
        assert removed["match"]["score"] == {"home": 0, "away": 0}


async def test_a_viewer_cannot_push(live: LiveMatch) -> None:
    share, _ = await live.share_token()
    async with connect(live.ws_url(share)) as ws:
        await receive(ws)
        push = live.device.push(goal(live.device, live.match_id, live.home))
        await ws.send(
            json.dumps({"type": "push", "id": "p1", "change_set": msgspec.to_builtins(push)})
        )
        error, _ = await receive_until(ws, "error")
        assert error["id"] == "p1"
        assert error["problem"]["status"] == 403
    pulled = await live.http.post(
        "/api/sync/pull",
        json={"device_id": "phone-a", "include_own": True, "match_id": str(live.match_id)},
        headers=await live.club.headers("phone-a"),
    )
    assert [c["table"] for c in pulled.json()["changes"]] == ["matches"]


async def test_a_coach_pushes_over_the_socket_idempotently(live: LiveMatch) -> None:
    token = await live.token("phone-a")
    async with connect(live.ws_url(token)) as ws:
        await receive(ws)
        push = live.device.push(goal(live.device, live.match_id, live.home))
        body = json.dumps({"type": "push", "id": "p1", "change_set": msgspec.to_builtins(push)})
        await ws.send(body)
        ack, _ = await receive_until(ws, "ack")
        assert ack["id"] == "p1" and ack["result"]["applied"] == 1
        await ws.send(body.replace('"p1"', '"p2"'))
        again, _ = await receive_until(ws, "ack")
        assert again["result"]["applied"] == 0
        assert again["result"]["duplicates"] == 1


async def test_a_revoked_share_link_closes_its_socket(live: LiveMatch) -> None:
    share, link_id = await live.share_token()
    async with connect(live.ws_url(share)) as ws:
        await receive(ws)
        await live.revoke(link_id)
        assert (await ended_with(ws, 410, 4410))["code"] == "link-revoked"


async def test_a_share_token_opens_its_own_match_only(live: LiveMatch) -> None:
    share, _ = await live.share_token()
    other = live.served.ws(f"/ws/match/{uuid.uuid4()}?token={share}")
    async with connect(other) as ws:
        error = await receive(ws)
        assert error["type"] == "error" and error["problem"]["status"] == 404


async def test_a_forged_token_is_refused(live: LiveMatch) -> None:
    async with connect(live.ws_url("a.b.c")) as ws:
        error = await receive(ws)
        assert error["problem"]["status"] == 401
        with pytest.raises(ConnectionClosed):
            await receive(ws, within=1.0)
    assert ws.close_code == 4401


async def test_coach_devices_see_who_is_connected_and_what_they_edit(live: LiveMatch) -> None:
    event_id = uuid.uuid4()
    async with connect(live.ws_url(await live.token("phone-a"))) as ws_a:
        await receive(ws_a)
        async with connect(live.ws_url(await live.token("phone-b"))) as ws_b:
            await receive(ws_b)
            await ws_b.send(
                json.dumps({"type": "editing", "record": {"table": "events", "id": str(event_id)}})
            )
            while True:
                presence, _ = await receive_until(ws_a, "presence")
                devices = {d["device_id"]: d for d in presence["devices"]}
                if devices.get("phone-b", {}).get("editing"):
                    break
            assert devices["phone-b"]["editing"] == {"table": "events", "id": str(event_id)}
            assert set(devices) == {"phone-a", "phone-b"}
        while True:
            presence, _ = await receive_until(ws_a, "presence")
            if [d["device_id"] for d in presence["devices"]] == ["phone-a"]:
                break


async def test_logging_out_closes_the_devices_socket(live: LiveMatch) -> None:
    headers = await live.club.headers("phone-b")
    async with connect(live.ws_url(headers["Authorization"].removeprefix("Bearer "))) as ws:
        await receive(ws)
        response = await live.http.post("/api/auth/logout", headers=headers)
        assert response.status_code in (200, 204), response.text
        await ended_with(ws, 401, 4401)


async def test_bad_messages_get_a_problem_and_the_socket_stays(live: LiveMatch) -> None:
    async with connect(live.ws_url(await live.token("phone-a"))) as ws:
        await receive(ws)
        for bad in ("not json", '{"type": "dance"}', '{"type": "push", "id": "x"}'):
            await ws.send(bad)
            error, _ = await receive_until(ws, "error")
            assert error["problem"]["status"] == 422, error
        await ws.send('{"type": "ping"}')
        pong, _ = await receive_until(ws, "pong")
        assert pong["seq"] >= 1


async def test_the_viewer_stream_as_server_sent_events(live: LiveMatch) -> None:
    share, link_id = await live.share_token()
    async with live.http.stream("GET", f"/api/watch/{share}/stream") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        events = _sse_events(lines)
        first = await _next(events)
        assert first["event"] == "snapshot" and int(first["id"]) >= 1
        await live.push(live.device.push(goal(live.device, live.match_id, live.home)))
        while (event := await _next(events))["event"] != "delta":
            pass
        assert json.loads(event["data"])["match"]["score"] == {"home": 1, "away": 0}
        last_id = event["id"]
    # EventSource reconnects with Last-Event-ID: a fresh snapshot holds what it missed.
    await live.push(live.device.push(goal(live.device, live.match_id, live.away)))
    resumed_headers = {"Last-Event-ID": last_id}
    async with live.http.stream(
        "GET", f"/api/watch/{share}/stream", headers=resumed_headers
    ) as stream:
        events = _sse_events(stream.aiter_lines())
        first = await _next(events)
        assert first["event"] == "snapshot" and int(first["id"]) > int(last_id)
        assert json.loads(first["data"])["view"]["match"]["score"] == {"home": 1, "away": 1}
        await live.http.delete(
            f"/api/matches/{live.match_id}/share/{link_id}",
            headers=await live.club.headers("phone-a"),
        )
        while (event := await _next(events))["event"] != "error":
            pass
        assert json.loads(event["data"])["problem"]["status"] == 410
    gone = await live.http.get(f"/api/watch/{share}/stream")
    assert gone.status_code == 410
    assert gone.headers["content-type"] == "application/problem+json"


async def _sse_events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, str]]:
    event: dict[str, str] = {}
    async for line in lines:
        if not line:
            if "event" in event:
                yield event
            event = {}
            continue
        name, _, value = line.partition(": ")
        event[name] = value


async def _next(events: AsyncIterator[dict[str, str]]) -> dict[str, str]:
    with anyio.fail_after(5):
        return await anext(events)


async def test_metrics_count_connections_and_messages(live: LiveMatch) -> None:
    share, _ = await live.share_token()
    async with connect(live.ws_url(share)) as ws:
        await receive(ws)
        await live.push(live.device.push(goal(live.device, live.match_id, live.home)))
        await receive_until(ws, "delta")
        text = (await live.http.get("/metrics")).text
    assert 'touchline_relay_connections{kind="viewer",transport="ws"} 1.0' in text
    assert 'touchline_relay_messages_sent_total{kind="viewer"}' in text
    assert "touchline_relay_merge_to_send_seconds_bucket" in text


async def test_a_stalled_client_is_dropped_and_the_others_keep_up(
    settings: Settings, clean_engine: AsyncEngine
) -> None:
    async with served_match(settings, relay_queue_limit=8) as live:
        stalled = stalled_socket(live.ws_url(await live.token("phone-s")))
        try:
            async with connect(live.ws_url(await live.token("phone-b"))) as ws:
                await receive(ws)
                after_ack = []
                for _ in range(STALL_PUSHES):
                    changes = [
                        goal(live.device, live.match_id, live.home, notes="x" * 8000)
                        for _ in range(20)
                    ]
                    await live.push(live.device.push(*changes))
                    acked = time.monotonic()
                    # A relay that waited on the stalled socket would stop delivering here
                    # once its buffers filled: receive_until gives up after five seconds.
                    message, _ = await receive_until(ws, "changes")
                    after_ack.append(time.monotonic() - acked)
                    assert [c["id"] for c in message["changes"]] == [str(c.id) for c in changes]
                metrics = (await live.http.get("/metrics")).text
        finally:
            stalled.close()
    assert 'touchline_relay_queue_drops_total{kind="coach"} 1.0' in metrics
    # The healthy device's deliveries kept pace with its acknowledgements. The median, not
    # the maximum: a busy machine may pause any one push, stalled client or not.
    assert statistics.median(after_ack) < 0.25, after_ack


async def test_message_floods_are_refused_then_closed(
    settings: Settings, clean_engine: AsyncEngine
) -> None:
    async with served_match(settings, ws_messages_per_second=2) as live:
        async with connect(live.ws_url(await live.token("phone-a"))) as ws:
            await receive(ws)
            for _ in range(40):
                await ws.send('{"type": "ping"}')
            error, _ = await receive_until(ws, "error")
            assert error["problem"]["status"] == 429
            with pytest.raises(ConnectionClosed):
                while True:
                    await receive(ws)
        assert ws.close_code == 1008


async def test_another_clubs_match_is_not_found_on_the_socket(live: LiveMatch) -> None:
    other = await live_match(live.http, live.served, device_id="other-phone")
    token = await other.token("other-phone")
    async with connect(live.ws_url(token)) as ws:
        error = await receive(ws)
        assert error["type"] == "error" and error["problem"]["status"] == 404
        with pytest.raises(ConnectionClosed):
            await receive(ws, within=1.0)
    assert ws.close_code == 4404
    unknown = await live.http.get("/api/watch/not-a-real-token/stream")
    assert unknown.status_code == 404


async def test_a_viewer_applying_every_message_holds_what_watch_answers(live: LiveMatch) -> None:
    """Goals, an edit, an archive, a new player and a renamed one (a club-wide change) and
    the clock: a page applying the messages ends up where a fresh GET would."""
    share, _ = await live.share_token()
    device = live.device
    player = uuid.uuid4()
    async with connect(live.ws_url(share)) as ws:
        held = (await receive(ws))["view"]
        first = goal(device, live.match_id, live.home)
        await live.push(device.push(first))
        await live.push(
            device.push(
                device.change("players", player, {"full_name": "Maya Kowalski"}),
                goal(device, live.match_id, live.away, player_id=str(player), clock_ms=90_000),
            )
        )
        await live.push(device.push(device.change("events", first.id, {"clock_ms": 30_000})))
        await live.push(device.push(device.change("players", player, {"full_name": "Ana Lee"})))
        await live.push(
            device.push(
                device.change(
                    "clock_actions",
                    uuid.uuid4(),
                    {
                        "match_id": str(live.match_id),
                        "action": "start",
                        "at": datetime.now(UTC).isoformat(),
                    },
                )
            )
        )
        await live.push(device.push(device.change("events", first.id, {}, op="delete")))
        final_seq = (await live.push(device.push(goal(device, live.match_id, live.home))))["cursor"]
        while True:
            message = await receive(ws)
            _apply(held, message)
            if message["seq"] >= final_seq and message["type"] == "delta":
                break
    expected = (await live.http.get(f"/api/watch/{share}")).json()
    assert _comparable(held) == _comparable(expected)
    assert {e["player"] for e in held["recent_events"]} >= {"Ana L."}


def _apply(view: dict[str, Any], message: dict[str, Any]) -> None:
    if message["type"] != "delta":
        return
    view["match"] = message.get("match", view["match"])
    changed = {e["id"]: e for e in message.get("events", [])}
    gone = set(message.get("removed", [])) | set(changed)
    view["recent_events"] = [e for e in view["recent_events"] if e["id"] not in gone]
    view["recent_events"].extend(changed.values())


def _comparable(view: dict[str, Any]) -> tuple[Any, ...]:
    match = {k: v for k, v in view["match"].items() if k not in ("clock_time", "period_elapsed_ms")}
    events = sorted(view["recent_events"], key=lambda e: e["id"])
    return match, events


async def test_forged_tokens_never_open_a_socket(live: LiveMatch, settings: Settings) -> None:
    for forge in FORGERIES:
        token = forge_token(live.club.owner, settings.secret_key, forge)
        async with connect(live.ws_url(token)) as ws:
            error = await receive(ws)
            assert error["type"] == "error", (forge, error)
            assert error["problem"]["status"] in (401, 404), (forge, error)
            with pytest.raises(ConnectionClosed):
                await receive(ws, within=1.0)
        assert ws.close_code in (4401, 4404), forge


async def test_a_shutdown_closes_sockets_with_1012_so_clients_reconnect(
    settings: Settings, clean_engine: AsyncEngine
) -> None:
    with serve_in_thread(settings) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
            live = await live_match(http, served)
            share, _ = await live.share_token()
            ws = await connect(live.ws_url(share))
            await receive(ws)
    # Leaving the block stopped the server.
    with pytest.raises(ConnectionClosed):
        await receive(ws, within=5.0)
    assert ws.close_code == 1012


async def test_concurrent_pushes_reach_a_socket_once_each_in_log_order(live: LiveMatch) -> None:
    """Commits may announce out of order; the socket still gets every change exactly once."""
    second = ScriptedDevice("phone-c", FakeClock(live.device.clock.now))
    other = LiveMatch(
        live.http, live.served, live.club, second, live.match_id, live.home, live.away
    )
    async with connect(live.ws_url(await live.token("phone-b"))) as ws:
        await receive(ws)
        sets = [
            [goal(device, live.match_id, live.home) for _ in range(3)]
            for device in (live.device, second)
            for _ in range(8)
        ]
        by_device = {live.device.device_id: sets[:8], second.device_id: sets[8:]}

        async def push_all(side: LiveMatch) -> None:
            for changes in by_device[side.device.device_id]:
                await side.push(side.device.push(*changes))

        async with anyio.create_task_group() as group:
            group.start_soon(push_all, live)
            group.start_soon(push_all, other)
        expected = {str(c.id) for changes in sets for c in changes}
        seen: list[int] = []
        ids: list[str] = []
        while set(ids) != expected:
            message, _ = await receive_until(ws, "changes")
            seen.extend(c["server_seq"] for c in message["changes"])
            ids.extend(c["id"] for c in message["changes"])
    assert len(ids) == len(expected)
    assert seen == sorted(seen)


async def test_on_a_plain_asgi_server_every_message_goes_through_the_writer(
    settings: Settings, clean_engine: AsyncEngine
) -> None:
    """Servers without the direct send (anything but ours) get the same stream."""
    async with served_match(settings, ws="websockets-sansio") as live:
        share, _ = await live.share_token()
        async with (
            connect(live.ws_url(share)) as viewer,
            connect(live.ws_url(await live.token("phone-b"))) as coach,
        ):
            await receive(viewer)
            await receive(coach)
            change = goal(live.device, live.match_id, live.home)
            await live.push(live.device.push(change))
            delta, _ = await receive_until(viewer, "delta")
            changes, _ = await receive_until(coach, "changes")
            assert [e["id"] for e in delta["events"]] == [str(change.id)]
            assert [c["id"] for c in changes["changes"]] == [str(change.id)]
            metrics = (await live.http.get("/metrics")).text
    assert 'touchline_relay_messages_sent_total{kind="viewer"} 2.0' in metrics


async def test_commits_on_this_instance_are_relayed_without_reading_the_log(
    live: LiveMatch,
) -> None:
    """Pushes to two matches of one club, in turn: the watched match's channel keeps up with
    the club's log from memory, so nothing is read back (PROTOCOL.md §17.9)."""
    other_match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await live.push(live.device.push(*new_match_changes(live.device, other_match, home, away)))
    share, _ = await live.share_token()
    async with (
        connect(live.ws_url(share)) as viewer,
        connect(live.ws_url(await live.token("phone-b"))) as coach,
    ):
        await receive(viewer)
        await receive(coach)
        for _ in range(3):
            await live.push(live.device.push(goal(live.device, other_match, home)))
            await live.push(live.device.push(goal(live.device, live.match_id, live.home)))
            await receive_until(viewer, "delta")
            await receive_until(coach, "changes")
        metrics = (await live.http.get("/metrics")).text
    assert "touchline_relay_log_reads_total 0.0" in metrics


async def test_heartbeats_carry_the_sequence_and_the_time(
    settings: Settings, clean_engine: AsyncEngine
) -> None:
    async with served_match(settings, relay_heartbeat_s=1) as live:
        share, _ = await live.share_token()
        async with connect(live.ws_url(share)) as ws:
            snapshot = await receive(ws)
            # Each channel beats on its own phase within the interval, from the first tick.
            beat, _ = await receive_until(ws, "heartbeat", within=5.0)
    assert beat["seq"] == snapshot["seq"]
    assert abs(beat["server_time_ms"] - time.time() * 1000) < 10_000

"""The relay's viewer deltas: a page that applies them to what it holds ends up holding the
new view, whatever changed in between; and its wire messages round-trip."""

from __future__ import annotations

import uuid

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from protocol.hlc import Hlc
from protocol.relay import (
    ClientMessage,
    Delta,
    MatchReplica,
    ServerMessage,
    Snapshot,
    view_at,
    viewer_delta,
)
from protocol.replica import Replica
from protocol.schema import Scalar
from protocol.viewer import MatchView, Scoreboard, ViewerEvent, ViewerMatch
from protocol.wire import LoggedChange

EVENT_IDS = [uuid.UUID(int=n) for n in range(1, 9)]
MATCH_ID = uuid.UUID(int=100)
NOW = 1_795_000_000_000


def header(**changes: object) -> ViewerMatch:
    base = ViewerMatch(
        id=MATCH_ID,
        home_team="Riverside",
        away_team="Hillview",
        score=Scoreboard(home=0, away=0),
        status="live",
        current_period=1,
        clock_time="10:00",
        clock_running=True,
        period_elapsed_ms=600_000,
        period_format="half",
        kickoff_ts=None,
        competition=None,
        venue=None,
    )
    return msgspec.structs.replace(base, **changes)


events = st.builds(
    ViewerEvent,
    id=st.sampled_from(EVENT_IDS),
    kind=st.sampled_from(["goal", "shot", "foul"]),
    player=st.sampled_from([None, "Maya K.", "#7"]),
    team=st.sampled_from([None, "home", "away"]),
    timestamp=st.sampled_from(["01:00", "12:34"]),
    period=st.sampled_from([None, 1, 2]),
)


@st.composite
def views(draw: st.DrawFn) -> MatchView:
    running = draw(st.booleans())
    elapsed = draw(st.integers(0, 3_000_000))
    now = NOW + draw(st.integers(0, 60_000))
    match = header(
        score=Scoreboard(home=draw(st.integers(0, 3)), away=draw(st.integers(0, 3))),
        status=draw(st.sampled_from(["live", "half_time", "finished"])),
        current_period=draw(st.integers(1, 2)),
        clock_running=running,
        period_elapsed_ms=elapsed,
    )
    chosen = draw(st.lists(events, unique_by=lambda e: e.id, max_size=len(EVENT_IDS)))
    return MatchView(match=match, recent_events=chosen, server_time_ms=now)


def apply(view: MatchView, delta: Delta | None) -> MatchView:
    """What a page does (PROTOCOL.md §17.2)."""
    if delta is None:
        return view
    match = delta.match or view.match
    held = {event.id: event for event in view.recent_events}
    held.update({event.id: event for event in delta.events})
    for event_id in delta.removed:
        held.pop(event_id, None)
    return MatchView(match=match, recent_events=list(held.values()), server_time_ms=0)


def same_events(left: MatchView, right: MatchView) -> bool:
    return {e.id: e for e in left.recent_events} == {e.id: e for e in right.recent_events}


@given(before=views(), after=views())
def test_applying_the_deltas_gives_the_new_events(before: MatchView, after: MatchView) -> None:
    delta = viewer_delta(before, after, seq=7)
    assert same_events(apply(before, delta), after)
    assert delta is None or delta.seq == 7


@given(before=views(), after=views())
def test_the_header_is_sent_whenever_what_a_page_shows_differs(
    before: MatchView, after: MatchView
) -> None:
    held = apply(before, viewer_delta(before, after, seq=7)).match
    frozen = {"clock_time": "", "period_elapsed_ms": 0}
    assert msgspec.structs.replace(held, **frozen) == msgspec.structs.replace(after.match, **frozen)


@given(view=views())
def test_nothing_changed_sends_nothing(view: MatchView) -> None:
    assert viewer_delta(view, view, seq=1) is None


def test_a_running_clock_ticking_on_is_not_a_change() -> None:
    before = MatchView(match=header(), recent_events=[], server_time_ms=NOW)
    later = MatchView(
        match=header(period_elapsed_ms=630_000, clock_time="10:30"),
        recent_events=[],
        server_time_ms=NOW + 30_000,
    )
    assert viewer_delta(before, later, seq=2) is None
    adjusted = msgspec.structs.replace(
        later, match=header(period_elapsed_ms=700_000, clock_time="11:40")
    )
    moved = viewer_delta(before, adjusted, seq=2)
    assert moved is not None and moved.match == adjusted.match and not moved.events


def test_a_stopped_clock_that_moves_is_a_change() -> None:
    stopped = header(clock_running=False)
    before = MatchView(match=stopped, recent_events=[], server_time_ms=NOW)
    after = MatchView(
        match=msgspec.structs.replace(stopped, period_elapsed_ms=0, clock_time="00:00"),
        recent_events=[],
        server_time_ms=NOW + 5,
    )
    delta = viewer_delta(before, after, seq=2)
    assert delta is not None and delta.match == after.match


def test_view_at_moves_a_running_clock_on_and_trims_events() -> None:
    many = [
        ViewerEvent(id=i, kind="shot", player=None, team=None, timestamp="01:00", period=1)
        for i in EVENT_IDS
    ]
    view = MatchView(match=header(), recent_events=many, server_time_ms=NOW)
    later = view_at(view, NOW + 65_000, recent=3)
    assert later.match.period_elapsed_ms == 665_000
    assert later.match.clock_time == "11:05"
    assert later.server_time_ms == NOW + 65_000
    assert later.recent_events == many[:3]
    stopped = MatchView(match=header(clock_running=False), recent_events=[], server_time_ms=NOW)
    assert view_at(stopped, NOW + 65_000).match == stopped.match


def test_messages_carry_their_type_and_round_trip() -> None:
    snapshot = Snapshot(seq=3, view=MatchView(match=header(), recent_events=[], server_time_ms=NOW))
    raw = msgspec.json.encode(snapshot)
    assert msgspec.json.decode(raw)["type"] == "snapshot"
    assert msgspec.json.decode(raw, type=ServerMessage) == snapshot
    ping = msgspec.json.decode(b'{"type":"ping"}', type=ClientMessage)
    assert type(ping).__name__ == "Ping"


PLAYERS = [uuid.UUID(int=200 + n) for n in range(3)]
TEAMS = [uuid.UUID(int=300 + n) for n in range(2)]

event_writes = st.lists(
    st.tuples(
        st.sampled_from(EVENT_IDS[:4]),
        st.sampled_from(["upsert", "delete", "restore"]),
        st.fixed_dictionaries(
            {},
            optional={
                "kind": st.sampled_from(["goal", "shot"]),
                "player_id": st.sampled_from([str(p) for p in PLAYERS]),
                "team_id": st.sampled_from([str(t) for t in TEAMS]),
                "clock_ms": st.integers(0, 3_000_000),
                "period_number": st.integers(1, 2),
            },
        ),
        st.sampled_from(["phone-a", "phone-b"]),
    ),
    max_size=25,
)


def _logged(writes: list[tuple[uuid.UUID, str, dict[str, object], str]]) -> list[LoggedChange]:
    match_fields: dict[str, Scalar] = {
        "home_team_id": str(TEAMS[0]),
        "away_team_id": str(TEAMS[1]),
    }
    changes = [
        LoggedChange(
            server_seq=1,
            device_id="phone-a",
            seq=1,
            hlc=Hlc(NOW).encode(),
            table="matches",
            id=MATCH_ID,
            op="upsert",
            fields=match_fields,
        )
    ]
    for n, (event_id, op, fields, device) in enumerate(writes, start=2):
        body = {"match_id": str(MATCH_ID), **fields} if op == "upsert" else {}
        changes.append(
            LoggedChange(
                server_seq=n,
                device_id=device,
                seq=n,
                hlc=Hlc(NOW + n // 2, n % 2).encode(),
                table="events",
                id=event_id,
                op=op,  # type: ignore[arg-type]
                fields=body,  # type: ignore[arg-type]
            )
        )
    return changes


NAMES = {str(p): {"full_name": f"Player {n} Surname"} for n, p in enumerate(PLAYERS)}
TEAM_NAMES = {str(t): {"name": f"Team {n}"} for n, t in enumerate(TEAMS)}


@given(writes=event_writes, split=st.integers(0, 30))
def test_a_replica_fed_change_by_change_shows_what_one_built_from_the_result_shows(
    writes: list[tuple[uuid.UUID, str, dict[str, object], str]], split: int
) -> None:
    """The relay's replica starts from stored states and merges what comes after; wherever
    it starts, it shows the same view as the final states do."""
    changes = _logged(writes)
    start, rest = changes[:split], changes[split:]
    stored = Replica()
    for change in start:
        stored.apply(change)
    states = [
        (table, record_id, state)
        for table in ("matches", "events")
        for record_id, state in stored.records(table)
    ]
    live = MatchReplica(MATCH_ID, states, players={}, teams={}, naming="first_name_initial")
    for change in rest:
        live.apply(change)
    final = Replica()
    for change in changes:
        final.apply(change)
    rebuilt = MatchReplica(
        MATCH_ID,
        [(t, r, s) for t in ("matches", "events") for r, s in final.records(t)],
        players={},
        teams={},
        naming="first_name_initial",
    )
    assert live.missing() == rebuilt.missing()
    for replica in (live, rebuilt):
        players, teams = replica.missing()
        replica.players.update({str(p): NAMES[str(p)] for p in players})
        replica.teams.update({str(t): TEAM_NAMES[str(t)] for t in teams})
        replica.named()
        assert replica.missing() == (set(), set())
    assert live.view(NOW) == rebuilt.view(NOW)
    shown = live.view(NOW)
    assert shown is not None
    assert all("Surname" not in (e.player or "") for e in shown.recent_events)

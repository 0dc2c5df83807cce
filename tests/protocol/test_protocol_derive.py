"""Score and match clock, derived from merged records (never stored)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from protocol.derive import ClockState, Score, clock, score
from protocol.hlc import Hlc
from protocol.merge import RecordState, Write, apply
from protocol.replica import Replica
from protocol.schema import CLOCK_ACTIONS, Scalar

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
KICKOFF = 1_772_359_200_000  # 2026-03-01T10:00:00Z
MINUTE = 60_000
HOME = "11111111-1111-4111-8111-111111111111"
AWAY = "22222222-2222-4222-8222-222222222222"
ELSEWHERE = "33333333-3333-4333-8333-333333333333"
MATCH: Mapping[str, Scalar] = {"home_team_id": HOME, "away_team_id": AWAY}


def iso(epoch_ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=epoch_ms)).isoformat(timespec="milliseconds")


def event(kind: str, team: str | None) -> dict[str, Scalar]:
    return {"kind": kind, "team_id": team}


# -- score -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], Score(0, 0)),
        ([event("goal", HOME)], Score(1, 0)),
        ([event("goal", AWAY)], Score(0, 1)),
        ([event("own_goal", HOME)], Score(0, 1)),  # into their own net: a goal for the away side
        ([event("own_goal", AWAY)], Score(1, 0)),
        ([event("goal", HOME), event("goal", HOME), event("own_goal", AWAY)], Score(3, 0)),
        ([event("goal", None), event("own_goal", None)], Score(0, 0)),
        ([event("goal", ELSEWHERE), event("own_goal", ELSEWHERE)], Score(0, 0)),
        ([event(kind, HOME) for kind in ("assist", "save", "penalty", "shot_on_target")],
         Score(0, 0)),
        ([{"team_id": HOME}, {"kind": "goal"}], Score(0, 0)),
    ],
)  # fmt: skip
def test_score_counts_goals_and_own_goals_per_side(
    events: list[dict[str, Scalar]], expected: Score
) -> None:
    assert score(MATCH, events) == expected


def test_score_of_a_match_without_teams_is_nil() -> None:
    assert score({}, [event("goal", HOME), event("own_goal", AWAY)]) == Score(0, 0)


scored_events = st.lists(
    st.builds(event, st.sampled_from(["goal", "own_goal", "save", "foul"]),
              st.sampled_from([HOME, AWAY, ELSEWHERE, None])),
    max_size=20,
)  # fmt: skip


@given(st.data())
def test_score_depends_only_on_which_events_there_are(data: st.DataObject) -> None:
    events = data.draw(scored_events)
    shuffled = data.draw(st.permutations(events))
    result = score(MATCH, shuffled)
    assert result == score(MATCH, events)
    goals_for = {HOME: 0, AWAY: 0}
    for e in events:
        if e["kind"] == "goal" and e["team_id"] in goals_for:
            goals_for[str(e["team_id"])] += 1
        elif e["kind"] == "own_goal" and e["team_id"] in goals_for:
            goals_for[AWAY if e["team_id"] == HOME else HOME] += 1
    assert result == Score(goals_for[HOME], goals_for[AWAY])


def test_score_counts_what_the_caller_passes_so_callers_pass_only_live_events() -> None:
    """``score`` does not know about archiving: the caller passes the live events, as
    ``Replica.live`` returns them. An archived goal stops counting; restored, it counts again."""
    replica = Replica()
    goals = [uuid.UUID(int=n) for n in range(1, 4)]
    for seq, goal in enumerate(goals, start=1):
        replica.apply_write(
            "events",
            goal,
            Write("d1", seq, Hlc(KICKOFF + seq).encode(), "upsert", event("goal", HOME)),
        )
    replica.apply_write(
        "events", goals[0], Write("d2", 1, Hlc(KICKOFF + 10).encode(), "delete", {})
    )
    live = replica.live("events").values()
    assert score(MATCH, live) == Score(2, 0)
    every = [state.values() for _, state in replica.records("events")]
    assert score(MATCH, every) == Score(3, 0)  # archived events must be left out by the caller
    replica.apply_write(
        "events", goals[0], Write("d1", 9, Hlc(KICKOFF + 11).encode(), "restore", {})
    )
    assert score(MATCH, replica.live("events").values()) == Score(3, 0)


# -- clock ----------------------------------------------------------------------------------


def action(
    name: str, at_ms: int | None, order: int, device: str = "d1", **extra: Scalar
) -> RecordState:
    """A clock action record; ``order`` places its HLC (actions replay in HLC order)."""
    fields: dict[str, Scalar] = {"action": name, **extra}
    if at_ms is not None:
        fields["at"] = iso(at_ms)
    return apply(None, Write(device, order, Hlc(KICKOFF, order).encode(), "upsert", fields))


def archived(state: RecordState, order: int) -> RecordState:
    return apply(state, Write("d9", order, Hlc(KICKOFF + 1, order).encode(), "delete", {}))


def replay(
    steps: Sequence[tuple[str, int]], *, now_ms: int, period_format: str | None = "half"
) -> ClockState:
    """Clock after actions given as (action, minutes after kick-off), in this order."""
    actions = [
        action(name, KICKOFF + minutes * MINUTE, i) for i, (name, minutes) in enumerate(steps)
    ]
    return clock(actions, period_format=period_format, now_ms=KICKOFF + now_ms * MINUTE)


def state(status: str, period: int, running: bool, minutes: float) -> ClockState:
    return ClockState(status, period, running, int(minutes * MINUTE))


def test_a_match_without_actions_has_not_started() -> None:
    assert clock([], period_format="half", now_ms=KICKOFF) == state("not_started", 0, False, 0)


@pytest.mark.parametrize(
    ("steps", "now", "expected"),
    [
        ([("start", 0)], 12, state("in_progress", 1, True, 12)),
        ([("start", 0), ("pause", 10)], 30, state("in_progress", 1, False, 10)),
        ([("start", 0), ("pause", 10), ("resume", 13)], 20, state("in_progress", 1, True, 17)),
        ([("start", 0), ("pause", 10), ("resume", 13), ("pause", 15)], 40,
         state("in_progress", 1, False, 12)),
        ([("start", 0), ("end_period", 45)], 50, state("half_time", 1, False, 45)),
        ([("start", 0), ("end_period", 45), ("start_period", 60)], 70,
         state("in_progress", 2, True, 10)),
        ([("start", 0), ("end_period", 45), ("start_period", 60), ("finish", 105)], 200,
         state("completed", 2, False, 45)),
        ([("start", 0), ("end_period", 45), ("start_period", 60), ("end_period", 105),
          ("start_period", 110)], 115, state("extra_time", 3, True, 5)),
        ([("start", 0), ("end_period", 45), ("start_period", 60), ("end_period", 105),
          ("start_period", 110), ("pause", 112), ("resume", 114)], 120,
         state("extra_time", 3, True, 8)),
        ([("start", 0), ("pause", 5), ("finish", 20)], 30, state("completed", 1, False, 5)),
        ([("postpone", 0)], 5, state("postponed", 0, False, 0)),
        ([("postpone", 0), ("start", 1)], 5, state("postponed", 0, False, 0)),
        ([("start", 0), ("pause", 30), ("abandon", 31)], 40, state("abandoned", 1, False, 30)),
        ([("start", 0), ("finish", 90), ("abandon", 91)], 100, state("completed", 1, False, 90)),
    ],
)  # fmt: skip
def test_clock_replays_action_sequences(
    steps: list[tuple[str, int]], now: int, expected: ClockState
) -> None:
    assert replay(steps, now_ms=now) == expected


@pytest.mark.parametrize(
    ("steps", "now", "expected"),
    [
        ([("pause", 1), ("resume", 2), ("end_period", 3), ("start_period", 4)], 10,
         state("not_started", 0, False, 0)),
        ([("start", 0), ("start", 5)], 10, state("in_progress", 1, True, 10)),
        ([("start", 0), ("pause", 5), ("pause", 8)], 10, state("in_progress", 1, False, 5)),
        ([("start", 0), ("resume", 5)], 10, state("in_progress", 1, True, 10)),
        ([("start", 0), ("end_period", 45), ("resume", 50)], 55, state("half_time", 1, False, 45)),
        ([("start", 0), ("end_period", 45), ("pause", 50)], 55, state("half_time", 1, False, 45)),
        ([("start", 0), ("start_period", 5)], 10, state("in_progress", 1, True, 10)),
        ([("start", 0), ("finish", 90), ("start_period", 95), ("resume", 96)], 100,
         state("completed", 1, False, 90)),
    ],
)  # fmt: skip
def test_actions_that_make_no_sense_now_are_ignored(
    steps: list[tuple[str, int]], now: int, expected: ClockState
) -> None:
    assert replay(steps, now_ms=now) == expected


def test_a_running_match_can_be_abandoned() -> None:
    """The clock stops at the abandonment, like at the final whistle."""
    assert replay([("start", 0), ("abandon", 30)], now_ms=40) == state("abandoned", 1, False, 30)


def test_a_match_can_be_finished_without_being_started() -> None:
    assert replay([("finish", 0)], now_ms=10) == state("completed", 0, False, 0)


def test_two_concurrent_pauses_converge_on_the_first_in_hlc_order() -> None:
    start = action("start", KICKOFF, 1, "d1")
    pause_b = action("pause", KICKOFF + 10 * MINUTE + 400, 5, "coach-b")
    pause_a = action("pause", KICKOFF + 10 * MINUTE, 5, "coach-a")  # same HLC: device decides
    orders = ([start, pause_a, pause_b], [pause_b, start, pause_a], [pause_a, pause_b, start])
    results = {clock(o, period_format="half", now_ms=KICKOFF + 30 * MINUTE) for o in orders}
    assert results == {ClockState("in_progress", 1, False, 10 * MINUTE)}


def test_quarters_have_four_regular_periods_before_extra_time() -> None:
    steps: list[tuple[str, int]] = [("start", 0)]
    for period in range(1, 5):
        steps += [("end_period", 15 * period), ("start_period", 15 * period + 1)]
    # Periods 2, 3 and 4 are regular quarters; the fifth is extra time.
    assert replay(steps[:-2], now_ms=49, period_format="quarter") == state(
        "in_progress", 4, True, 3
    )
    assert replay(steps, now_ms=63, period_format="quarter") == state("extra_time", 5, True, 2)


@pytest.mark.parametrize("period_format", ["half", None, "unknown"])
def test_halves_have_two_regular_periods(period_format: str | None) -> None:
    steps = [("start", 0), ("end_period", 45), ("start_period", 60), ("end_period", 105),
             ("start_period", 110)]  # fmt: skip
    assert replay(steps[:3], now_ms=61, period_format=period_format).status == "in_progress"
    assert replay(steps, now_ms=111, period_format=period_format).status == "extra_time"


def test_archived_actions_are_ignored() -> None:
    start = action("start", KICKOFF, 1)
    pause = action("pause", KICKOFF + 5 * MINUTE, 2)
    result = clock([start, archived(pause, 3)], period_format="half", now_ms=KICKOFF + 20 * MINUTE)
    assert result == state("in_progress", 1, True, 20)


def test_actions_without_a_usable_time_are_ignored() -> None:
    start = action("start", KICKOFF, 1)
    no_time = action("pause", None, 2)
    bad_time = action("pause", None, 3, at="ten past")
    not_text = action("pause", None, 4, at=12)
    no_action = apply(
        None, Write("d1", 5, Hlc(KICKOFF, 5).encode(), "upsert", {"at": iso(KICKOFF)})
    )
    result = clock(
        [start, no_time, bad_time, not_text, no_action],
        period_format="half",
        now_ms=KICKOFF + 3 * MINUTE,
    )
    assert result == state("in_progress", 1, True, 3)


def test_a_clock_started_in_the_future_shows_no_negative_time() -> None:
    start = action("start", KICKOFF + MINUTE, 1)
    assert clock([start], period_format="half", now_ms=KICKOFF).period_elapsed_ms == 0


@given(
    st.lists(st.tuples(st.sampled_from(CLOCK_ACTIONS), st.integers(0, 200)), max_size=12),
    st.sampled_from(["d1", "d2"]),
    st.data(),
)
def test_clock_depends_only_on_the_set_of_actions(
    steps: list[tuple[str, int]], device: str, data: st.DataObject
) -> None:
    actions = [
        action(name, KICKOFF + minutes * MINUTE, i, device if i % 2 else "d0")
        for i, (name, minutes) in enumerate(steps)
    ]
    shuffled = data.draw(st.permutations(actions))
    now = KICKOFF + 300 * MINUTE
    assert clock(shuffled, period_format="half", now_ms=now) == clock(
        actions, period_format="half", now_ms=now
    )


@given(
    st.integers(
        int((datetime(2020, 1, 1, tzinfo=UTC) - EPOCH).total_seconds() * 1000),
        int((datetime(2100, 1, 1, tzinfo=UTC) - EPOCH).total_seconds() * 1000),
    ),
    st.integers(0, 3 * 3_600_000),
)
@example(2_161_676_204_000, 2)  # start 2038-07-02T09:36:44.000Z, pause at .002
def test_elapsed_time_is_exact_to_the_millisecond(start_ms: int, played_ms: int) -> None:
    actions = [action("start", start_ms, 1), action("pause", start_ms + played_ms, 2)]
    result = clock(actions, period_format="half", now_ms=start_ms + played_ms + 5 * MINUTE)
    assert result.period_elapsed_ms == played_ms


def test_time_zones_in_action_times_are_honoured() -> None:
    start = action("start", None, 1, at="2026-03-01T11:00:00+01:00")  # 10:00Z
    pause = action("pause", None, 2, at="2026-03-01T10:07:30Z")
    result = clock([start, pause], period_format="half", now_ms=KICKOFF + 20 * MINUTE)
    assert result.period_elapsed_ms == 7 * MINUTE + 30_000


@pytest.mark.parametrize(
    ("elapsed_ms", "text"),
    [
        (0, "00:00"),
        (999, "00:00"),
        (1_000, "00:01"),
        (59_999, "00:59"),
        (60_000, "01:00"),
        (45 * MINUTE + 7_500, "45:07"),
        (99 * MINUTE + 59_999, "99:59"),
        (100 * MINUTE, "100:00"),
    ],
)
def test_clock_time_is_minutes_and_seconds(elapsed_ms: int, text: str) -> None:
    assert ClockState("in_progress", 1, True, elapsed_ms).clock_time == text


# -- minutes played ----------------------------------------------------------------------------

from protocol.derive import (  # noqa: E402
    match_minute,
    minutes_played,
    period_minutes,
    played_until,
)

KEEPER, STRIKER, SUB, LATE = "keeper", "striker", "sub", "late"


def sub_event(
    player: str | None, period: int, minutes: float, *, off: str | None = None, **extra: Scalar
) -> dict[str, Scalar]:
    """A substitution event: on unless ``off`` names the event it makes room for."""
    fields: dict[str, Scalar] = {
        "kind": "substitution",
        "player_id": player,
        "period_number": period,
        "clock_ms": int(minutes * MINUTE),
        "related_event_id": off,
    }
    fields.update(extra)
    return fields


def row(player: str, start: float | None = None, end: float | None = None) -> dict[str, Scalar]:
    return {"player_id": player, "start_min": start, "end_min": end}


def test_period_minutes_split_the_match_length() -> None:
    assert period_minutes({"duration_mins": 50, "period_format": "half"}) == 25
    assert period_minutes({"duration_mins": 60, "period_format": "quarter"}) == 15
    assert period_minutes({}) == 25  # the app's default: 50 minutes in halves
    assert period_minutes({"duration_mins": True, "period_format": "nonsense"}) == 25


@pytest.mark.parametrize(
    ("period", "clock_ms", "minute"),
    [
        (1, 0, 0.0),
        (1, 10 * MINUTE, 10.0),
        (2, 0, 25.0),
        (2, 10 * MINUTE + 30_000, 35.5),
        (1, 27 * MINUTE, 25.0),  # stoppage time counts as the period's last minute
        (3, 5 * MINUTE, 55.0),  # extra time continues at the regular length
        (0, 5 * MINUTE, 0.0),  # before kickoff
        (None, 5 * MINUTE, 5.0),  # no period: the first
        (2, None, 25.0),
        (True, 1000, 0.0),
        (1, -5, 0.0),
    ],
)
def test_match_minute_counts_earlier_periods_at_their_length(
    period: Scalar, clock_ms: Scalar, minute: float
) -> None:
    assert match_minute(period, clock_ms, period_length=25) == minute


def test_minutes_of_starters_substitutes_and_players_off_the_sheet() -> None:
    on = "on-event-id"
    played = minutes_played(
        [row(KEEPER, 0), row(STRIKER, 0), row(SUB)],
        [
            sub_event(SUB, 2, 10),  # minute 35: the sub comes on ...
            sub_event(STRIKER, 2, 10, off=on),  # ... for the striker
            sub_event(LATE, 2, 20),  # a late arrival, not on the team sheet
            {"kind": "goal", "player_id": KEEPER, "period_number": 1, "clock_ms": 0},
        ],
        period_length=25,
        until=50,
    )
    assert played == {KEEPER: 50.0, STRIKER: 35.0, SUB: 15.0, LATE: 5.0}


def test_lineup_minutes_alone_give_stints() -> None:
    played = minutes_played(
        [row(KEEPER, 0), row(STRIKER, 0, 20), row(SUB, 20), row("bench")],
        [],
        period_length=25,
        until=50,
    )
    assert played == {KEEPER: 50.0, STRIKER: 20.0, SUB: 30.0, "bench": 0.0}


def test_off_without_replacement_and_re_entry() -> None:
    played = minutes_played(
        [row(KEEPER, 0)],
        [
            # Injured, and nobody replaces him: an "on" event naming no player, and his "off"
            # event pointing at it.
            sub_event(None, 1, 10),
            sub_event(KEEPER, 1, 10, off="the on event naming nobody"),
            sub_event(KEEPER, 2, 0),  # back for the second half
        ],
        period_length=25,
        until=50,
    )
    assert played == {KEEPER: 10.0 + 25.0}


def test_the_same_substitution_logged_twice_counts_once() -> None:
    once = minutes_played(
        [row(STRIKER, 0), row(SUB)],
        [sub_event(SUB, 1, 15), sub_event(STRIKER, 1, 15, off="x")],
        period_length=25,
        until=50,
    )
    twice = minutes_played(
        [row(STRIKER, 0), row(SUB)],
        [
            sub_event(SUB, 1, 15),
            sub_event(STRIKER, 1, 15, off="x"),
            sub_event(SUB, 1, 15.1),  # a second coach logged it too, a moment later
            sub_event(STRIKER, 1, 15.1, off="y"),
        ],
        period_length=25,
        until=50,
    )
    assert once == twice == {STRIKER: 15.0, SUB: 35.0}


def test_minutes_stop_at_until_and_never_go_negative() -> None:
    played = minutes_played(
        [row(KEEPER, 0), row(STRIKER, 30)],  # planned to come on later than now
        [sub_event(SUB, 2, 5), sub_event(None, 1, 1)],
        period_length=25,
        until=28,
    )
    assert played == {KEEPER: 28.0, STRIKER: 0.0, SUB: 0.0}


def test_off_goes_before_on_at_the_same_minute() -> None:
    # Lineup says off at 20, an event brings the player back on at 20: one continuous stint.
    played = minutes_played(
        [row(STRIKER, 0, 20)], [sub_event(STRIKER, 1, 20)], period_length=25, until=50
    )
    assert played == {STRIKER: 50.0}


@given(st.data())
def test_minutes_depend_only_on_which_rows_and_events_there_are(data: st.DataObject) -> None:
    players = ["p1", "p2", "p3"]
    minute = st.one_of(st.none(), st.floats(0, 60, allow_nan=False))
    rows = data.draw(st.lists(st.builds(row, st.sampled_from(players), minute, minute), max_size=4))
    events = data.draw(
        st.lists(
            st.builds(
                sub_event,
                st.sampled_from(players),
                st.integers(1, 3),
                st.floats(0, 30, allow_nan=False),
                off=st.one_of(st.none(), st.just("e")),
            ),
            max_size=8,
        )
    )
    until = data.draw(st.floats(0, 80, allow_nan=False))
    expected = minutes_played(rows, events, period_length=25, until=until)
    shuffled_rows = data.draw(st.permutations(rows))
    shuffled_events = data.draw(st.permutations(events))
    got = minutes_played(shuffled_rows, shuffled_events, period_length=25, until=until)
    assert got == pytest.approx(expected)
    assert all(0 <= minutes <= until + 1e-9 for minutes in got.values())


def test_played_until_follows_the_clock() -> None:
    match: dict[str, Scalar] = {"duration_mins": 50, "period_format": "half"}
    assert played_until(ClockState("not_started", 0, False, 0), match=match) == 50
    assert played_until(ClockState("postponed", 0, False, 0), match=match) == 0
    assert played_until(ClockState("in_progress", 1, True, 12 * MINUTE), match=match) == 12
    assert played_until(ClockState("half_time", 1, False, 26 * MINUTE), match=match) == 25
    assert played_until(ClockState("in_progress", 2, False, 10 * MINUTE), match=match) == 35
    assert played_until(ClockState("completed", 2, False, 25 * MINUTE), match=match) == 50
    quarters: dict[str, Scalar] = {"duration_mins": 60, "period_format": "quarter"}
    assert played_until(ClockState("not_started", 0, False, 0), match=quarters) == 60
    assert played_until(ClockState("in_progress", 3, True, 5 * MINUTE), match=quarters) == 35

"""Score, status, period and clock of a match, derived from its merged records.

Nothing here is stored: two devices never overwrite a counter. The score counts live goals and
own goals; the clock replays the match's live clock actions in HLC order, so two coaches
pressing pause at once converge (the second pause finds the clock already stopped).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from protocol.merge import RecordState
from protocol.schema import Scalar

REGULAR_PERIODS = {"half": 2, "quarter": 4}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Score:
    home: int
    away: int


def score(match: Mapping[str, Scalar], events: Iterable[Mapping[str, Scalar]]) -> Score:
    """Goals for each side. An own goal's ``team_id`` is the side that put it in its own net,
    so it counts for the other side. Events of neither team are ignored."""
    home_id, away_id = match.get("home_team_id"), match.get("away_team_id")
    home = away = 0
    for event in events:
        kind, team = event.get("kind"), event.get("team_id")
        if kind not in ("goal", "own_goal") or team is None:
            continue
        for_home = team == home_id if kind == "goal" else team == away_id
        for_away = team == away_id if kind == "goal" else team == home_id
        home += for_home
        away += for_away
    return Score(home, away)


@dataclass(frozen=True, slots=True)
class ClockState:
    status: str
    """not_started, in_progress, half_time, extra_time, completed, abandoned or postponed."""
    period: int
    running: bool
    period_elapsed_ms: int
    """Time on the clock within the current period at ``now_ms`` (it restarts each period)."""

    @property
    def clock_time(self) -> str:
        seconds = self.period_elapsed_ms // 1000
        return f"{seconds // 60:02d}:{seconds % 60:02d}"


def clock(actions: Iterable[RecordState], *, period_format: str | None, now_ms: int) -> ClockState:
    """Replay live clock actions in (hlc, device) order; actions that make no sense in the
    current state (pause when stopped, a second start) are ignored, which makes the replay
    convergent under concurrent presses."""
    ordered = sorted(
        (key, values)
        for state in actions
        if not state.is_deleted and (key := _order_key(state)) is not None
        for values in (state.values(),)
    )
    regular = REGULAR_PERIODS.get(period_format or "half", 2)
    status, period, running = "not_started", 0, False
    accumulated = 0
    run_started = 0
    for _, values in ordered:
        action, at = values.get("action"), _epoch_ms(values.get("at"))
        if at is None:
            continue
        if action == "start" and status == "not_started":
            status, period, running, accumulated, run_started = "in_progress", 1, True, 0, at
        elif action == "pause" and running:
            accumulated += max(0, at - run_started)
            running = False
        elif action == "resume" and not running and status in ("in_progress", "extra_time"):
            running, run_started = True, at
        elif action == "end_period" and status in ("in_progress", "extra_time"):
            if running:
                accumulated += max(0, at - run_started)
            running, status = False, "half_time"
        elif action == "start_period" and status == "half_time":
            period += 1
            status = "extra_time" if period > regular else "in_progress"
            running, accumulated, run_started = True, 0, at
        elif action == "finish" and status not in ("completed", "abandoned", "postponed"):
            if running:
                accumulated += max(0, at - run_started)
            running, status = False, "completed"
        elif action == "abandon" and status not in ("completed", "abandoned"):
            if running:
                accumulated += max(0, at - run_started)
            running, status = False, "abandoned"
        elif action == "postpone" and status == "not_started":
            status = "postponed"
    elapsed = accumulated + (max(0, now_ms - run_started) if running else 0)
    return ClockState(status, period, running, elapsed)


def _order_key(state: RecordState) -> tuple[str, str] | None:
    version = state.fields.get("action")
    return None if version is None else (version.hlc, version.device_id)


def _epoch_ms(value: Scalar) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    # Integer arithmetic: float seconds * 1000 loses a millisecond for many instants.
    return (moment - _EPOCH) // timedelta(milliseconds=1)


# -- minutes played ------------------------------------------------------------------------------

SUBSTITUTION = "substitution"
DEFAULT_DURATION_MINS = 50
"""The app's default match length, for matches that do not name one."""


def period_minutes(match: Mapping[str, Scalar]) -> float:
    """Nominal length of one regular period: ``duration_mins`` over the number of regular
    periods (2 halves or 4 quarters). Extra-time periods count as long as regular ones."""
    duration = match.get("duration_mins")
    if not isinstance(duration, int) or isinstance(duration, bool) or duration <= 0:
        duration = DEFAULT_DURATION_MINS
    format_ = match.get("period_format")
    regular = REGULAR_PERIODS.get(format_ if isinstance(format_, str) else "half", 2)
    return duration / regular


def match_minute(period_number: Scalar, clock_ms: Scalar, *, period_length: float) -> float:
    """The match minute of a moment given as (period, time within the period).

    Earlier periods count their nominal length, and time beyond a period's nominal length
    (stoppage time) counts as that period's last minute, so periods never overlap. Period 0
    (before kickoff) is minute 0; a missing period counts as the first, a missing clock as 0.
    """
    period = period_number if isinstance(period_number, int) else 1
    if isinstance(period, bool) or period <= 0:
        return 0.0
    ms = clock_ms if isinstance(clock_ms, int) and not isinstance(clock_ms, bool) else 0
    return (period - 1) * period_length + min(max(0, ms) / 60_000, period_length)


def played_until(state: ClockState, *, match: Mapping[str, Scalar]) -> float:
    """The match minute that players still on the pitch have played up to.

    While the clock runs or once it stopped, the clock's position (a finished match stops
    where it was finished). Before the clock is started it is the planned length of the
    match: that is how matches logged without the clock (imported ones) count. A postponed
    match has no minutes.
    """
    length = period_minutes(match)
    if state.status == "postponed":
        return 0.0
    if state.status == "not_started":
        regular = REGULAR_PERIODS.get(_choice(match.get("period_format")), 2)
        return length * regular
    return match_minute(state.period, state.period_elapsed_ms, period_length=length)


def minutes_played(
    lineup: Iterable[Mapping[str, Scalar]],
    substitutions: Iterable[Mapping[str, Scalar]],
    *,
    period_length: float,
    until: float,
) -> dict[str, float]:
    """Minutes each player spent on the pitch, keyed by player id (text).

    ``lineup``: the match's live lineup rows. ``start_min`` is the minute the player went on
    (0 for a starter; ``None`` for a player on the bench at kickoff), ``end_min`` the minute
    they went off (``None``: not before the end or a substitution).

    ``substitutions``: the match's live events; only ``kind == "substitution"`` events that
    name a ``player_id`` count. Each moves one player at ``match_minute(period_number,
    clock_ms)``: with ``related_event_id`` empty the player comes **on**; with
    ``related_event_id`` set (naming the "on" event of the player who replaces them, whose
    ``player_id`` is empty when nobody does) the player goes **off**. The named event is not
    looked up: only whether ``related_event_id`` is set decides the direction.

    Per player, the on/off marks of the lineup and the events are replayed in minute order,
    "off" before "on" at the same minute; a mark that changes nothing (on while on, off while
    off) is ignored, so the same substitution logged twice counts once. Every minute is
    clamped to ``[0, until]``; a player still on at ``until`` stops there. The result does
    not depend on the order of the inputs, and lists every player of the lineup (0 when they
    never went on) and every player a substitution names.
    """
    marks: dict[str, list[tuple[float, bool]]] = {}

    def mark(player: Scalar, minute: float, on: bool) -> None:
        if isinstance(player, str):
            marks.setdefault(player, []).append((min(max(0.0, minute), until), on))

    for row in lineup:
        player = row.get("player_id")
        if isinstance(player, str):
            marks.setdefault(player, [])
        start, end = _number(row.get("start_min")), _number(row.get("end_min"))
        if start is not None:
            mark(player, start, True)
        if end is not None:
            mark(player, end, False)
    for event in substitutions:
        if event.get("kind") != SUBSTITUTION:
            continue
        minute = match_minute(
            event.get("period_number"), event.get("clock_ms"), period_length=period_length
        )
        mark(event.get("player_id"), minute, event.get("related_event_id") is None)

    played: dict[str, float] = {}
    for player, player_marks in marks.items():
        total, on_since = 0.0, None
        # (minute, on): False sorts first, so "off" goes before "on" at the same minute.
        for minute, on in sorted(player_marks):
            if on and on_since is None:
                on_since = minute
            elif not on and on_since is not None:
                total += minute - on_since
                on_since = None
        if on_since is not None:
            total += max(0.0, until - on_since)
        played[player] = total
    return played


def _number(value: Scalar) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _choice(value: Scalar) -> str:
    return value if isinstance(value, str) else "half"

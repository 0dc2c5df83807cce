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

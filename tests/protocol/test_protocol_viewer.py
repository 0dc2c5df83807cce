"""The viewer view: names never carry a surname, and privacy holds for any records."""

from __future__ import annotations

import uuid

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from protocol.viewer import match_view, mm_ss, viewer_name

words = st.text(alphabet=st.characters(categories=["L"]), min_size=2, max_size=12)


def test_first_name_and_initial() -> None:
    assert viewer_name("Jamie Smith", 7, "first_name_initial") == "Jamie S."
    assert viewer_name("Mary Ann van der Berg", None, "first_name_initial") == "Mary B."
    assert viewer_name("  Kai  ", None, "first_name_initial") == "Kai"
    assert viewer_name("", 3, "first_name_initial") is None
    assert viewer_name(None, None, "first_name_initial") is None


def test_squad_numbers_only() -> None:
    assert viewer_name("Jamie Smith", 7, "squad_number") == "#7"
    assert viewer_name("Jamie Smith", None, "squad_number") is None


@given(first=words, surname=words)
def test_a_surname_never_shows(first: str, surname: str) -> None:
    label = viewer_name(f"{first} {surname}", 4, "first_name_initial")
    assert label is not None and label.startswith(first)
    if surname not in first:
        assert surname not in label
    assert "4" not in label


def test_mm_ss() -> None:
    assert mm_ss(0) == "00:00" and mm_ss(125_999) == "02:05" and mm_ss(-5) == "00:00"
    assert mm_ss(100 * 60_000) == "100:00"


@given(
    notes=st.text(max_size=20).map(lambda text: "private:" + text),
    dob=st.dates().map(str),
    sentiment=st.integers(-4, 4),
)
def test_private_fields_never_reach_the_view(notes: str, dob: str, sentiment: int) -> None:
    home, away, player, event = (str(uuid.uuid4()) for _ in range(4))
    view = match_view(
        uuid.uuid4(),
        {"home_team_id": home, "away_team_id": away, "notes": notes},
        teams={home: {"name": "Riverside", "notes": notes}, away: {"name": "Hillview"}},
        players={player: {"full_name": "Jamie Smith", "dob": dob, "notes": notes}},
        events=[
            (
                uuid.UUID(event),
                {
                    "kind": "goal",
                    "team_id": home,
                    "player_id": player,
                    "notes": notes,
                    "sentiment": sentiment,
                    "x": 33.0,
                },
            )
        ],
        clock_actions=[],
        now_ms=0,
    )
    encoded = msgspec.json.encode(view).decode()
    assert "private:" not in encoded
    assert dob not in encoded and "Smith" not in encoded and "sentiment" not in encoded
    assert view.match.score.home == 1 and view.recent_events[0].player == "Jamie S."


def _one_goal_view(**options: object) -> str:
    home, away, player = (str(uuid.uuid4()) for _ in range(3))
    view = match_view(
        uuid.uuid4(),
        {"home_team_id": home, "away_team_id": away},
        teams={home: {"name": "Riverside"}, away: {"name": "Hillview"}},
        players={player: {"full_name": "Jamie Alexander Smith", "squad_number": 7}},
        events=[(uuid.uuid4(), {"kind": "goal", "team_id": home, "player_id": player})],
        clock_actions=[],
        now_ms=0,
        **options,  # type: ignore[arg-type]
    )
    label = view.recent_events[0].player
    assert label is not None
    return label


def test_full_names_only_when_asked_for_coaches() -> None:
    assert _one_goal_view() == "Jamie S."
    assert _one_goal_view(full_names=False) == "Jamie S."
    assert _one_goal_view(full_names=True) == "Jamie Alexander Smith"


def test_the_club_default_naming_applies_when_the_team_has_none() -> None:
    assert _one_goal_view(default_naming="squad_number") == "#7"
    assert _one_goal_view(default_naming="nonsense") == "Jamie S."

"""Hybrid logical clocks: the wire form, the clock of one replica, and the server's stamp."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from protocol.hlc import MAX_LOGICAL, ZERO, Hlc, HybridClock, stamp

WALL_LIMIT = 10**15
CANONICAL = re.compile(r"[0-9]{15}-[0-9]{5}", re.ASCII)

hlcs = st.builds(Hlc, st.integers(0, WALL_LIMIT - 1), st.integers(0, MAX_LOGICAL))
"""Any valid timestamp, edges included."""

# Timestamps far enough from the end of the range that ``successor`` never overflows, with
# walls from a small range mixed in so that equal walls and logical counters happen often.
small_hlcs = st.builds(Hlc, st.integers(0, 20), st.integers(0, 3))
wide_hlcs = st.builds(Hlc, st.integers(0, 10**13), st.integers(0, MAX_LOGICAL))
usable_hlcs = small_hlcs | wide_hlcs
physical_readings = st.integers(0, 25) | st.integers(0, 10**13)


def scripted(readings: list[int]) -> Callable[[], int]:
    """A fake physical clock that returns ``readings`` in turn, then repeats the last one."""
    remaining: Iterator[int] = iter(readings)
    last = [readings[0] if readings else 0]

    def now_ms() -> int:
        last[0] = next(remaining, last[0])
        return last[0]

    return now_ms


# -- wire form ---------------------------------------------------------------------------------


@given(hlcs)
def test_encode_then_parse_round_trips(hlc: Hlc) -> None:
    text = hlc.encode()
    assert Hlc.parse(text) == hlc
    assert CANONICAL.fullmatch(text)
    assert str(hlc) == text


@given(hlcs, hlcs)
def test_string_order_is_timestamp_order(a: Hlc, b: Hlc) -> None:
    assert (a < b) == (a.encode() < b.encode())
    assert (a == b) == (a.encode() == b.encode())


def test_encode_is_fixed_width() -> None:
    assert Hlc(1, 2).encode() == "000000000000001-00002"
    assert Hlc(WALL_LIMIT - 1, MAX_LOGICAL).encode() == "999999999999999-99999"
    assert ZERO.encode() == "000000000000000-00000"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "1-1",
        "00000000000001-00000",  # wall one digit short
        "0000000000000001-00000",  # wall one digit long
        "000000000000001-0000",  # logical one digit short
        "000000000000001-000000",  # logical one digit long
        "000000000000001_00000",
        "-00000000000001-00000",
        "000000000000001-0000a",
        " 000000000000001-00000",
        "000000000000001-00000 ",
    ],
)
def test_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not an HLC"):
        Hlc.parse(text)


# Random text, plus near misses built around the wire form.
near_misses = st.builds(
    lambda prefix, wall, logical, suffix: f"{prefix}{wall}-{logical}{suffix}",
    st.sampled_from(["", " ", "+", "0"]),
    st.text(st.characters(categories=["Nd"]), min_size=14, max_size=16),
    st.text(st.characters(categories=["Nd"]), min_size=4, max_size=6),
    st.sampled_from(["", "\n", " ", "0"]),
)


@given(st.text() | near_misses)
@example("000000000000001-00000\n")  # a trailing newline
@example("\u0661" * 15 + "-" + "\u0660" * 5)  # ARABIC-INDIC digits
def test_parse_accepts_only_the_canonical_wire_form(text: str) -> None:
    """Anything that parses is exactly the encoding of what it parses to: the wire form is
    the only accepted spelling, so string order stays timestamp order for every stored HLC."""
    try:
        parsed = Hlc.parse(text)
    except ValueError:
        assert not CANONICAL.fullmatch(text)
    else:
        assert parsed.encode() == text


@pytest.mark.parametrize(
    ("wall", "logical"), [(-1, 0), (WALL_LIMIT, 0), (0, -1), (0, MAX_LOGICAL + 1)]
)
def test_out_of_range_components_are_rejected(wall: int, logical: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        Hlc(wall, logical)


# -- successor -----------------------------------------------------------------------------------


@given(usable_hlcs)
def test_successor_is_the_next_timestamp(hlc: Hlc) -> None:
    after = hlc.successor()
    assert after > hlc
    assert after.encode() > hlc.encode()
    if hlc.logical < MAX_LOGICAL:
        assert after == Hlc(hlc.wall_ms, hlc.logical + 1)


def test_successor_borrows_a_millisecond_instead_of_overflowing() -> None:
    assert Hlc(41, MAX_LOGICAL).successor() == Hlc(42, 0)
    assert Hlc(41, MAX_LOGICAL - 1).successor() == Hlc(41, MAX_LOGICAL)


@given(usable_hlcs, usable_hlcs)
def test_nothing_lies_between_a_timestamp_and_its_successor(hlc: Hlc, other: Hlc) -> None:
    assert not hlc < other < hlc.successor()


# -- the clock of one replica ----------------------------------------------------------------------

operations = st.lists(st.none() | usable_hlcs, max_size=40)
"""A run of clock calls: None for ``now()``, a timestamp for ``receive(timestamp)``."""


@given(st.lists(physical_readings, min_size=1, max_size=40), operations, usable_hlcs | st.none())
def test_clock_is_strictly_monotonic_whatever_the_physical_clock_does(
    readings: list[int], ops: list[Hlc | None], start: Hlc | None
) -> None:
    """Physical time may stall or jump backwards; issued timestamps still strictly increase
    and exceed everything received."""
    clock = HybridClock(scripted(readings), start or ZERO)
    floor = start or ZERO
    for op in ops:
        issued = clock.now() if op is None else clock.receive(op)
        assert issued > floor
        if op is not None:
            assert issued > op
        assert clock.last == issued
        floor = issued


@given(st.lists(physical_readings, min_size=1, max_size=40), operations)
def test_clock_never_runs_behind_the_physical_clock(
    readings: list[int], ops: list[Hlc | None]
) -> None:
    calls: list[int] = []
    source = scripted(readings)

    def recording() -> int:
        calls.append(source())
        return calls[-1]

    clock = HybridClock(recording)
    for op in ops:
        issued = clock.now() if op is None else clock.receive(op)
        assert issued.wall_ms >= calls[-1]


@given(st.lists(physical_readings, min_size=1, max_size=10), usable_hlcs, st.integers(1, 10))
def test_a_local_event_after_receiving_is_later_than_what_was_received(
    readings: list[int], remote: Hlc, events: int
) -> None:
    clock = HybridClock(scripted(readings))
    clock.receive(remote)
    for _ in range(events):
        assert clock.now() > remote


def test_clock_follows_physical_time_when_it_moves_forward() -> None:
    clock = HybridClock(scripted([100, 100, 105, 103]))
    assert clock.now() == Hlc(100, 0)
    assert clock.now() == Hlc(100, 1)
    assert clock.now() == Hlc(105, 0)
    assert clock.now() == Hlc(105, 1)  # physical went backwards: keep counting


def test_receiving_from_a_fast_clock_moves_ahead_of_it() -> None:
    clock = HybridClock(scripted([100, 100, 100]))
    assert clock.receive(Hlc(5_000, 7)) == Hlc(5_000, 8)
    assert clock.now() == Hlc(5_000, 9)


# -- the server's stamp ---------------------------------------------------------------------------

SKEW = st.integers(0, 10**6)
NOW = st.integers(0, 10**12)
maybe_hlcs = usable_hlcs | st.none()


def upper_bound(now_ms: int, skew: int, floor: Hlc | None) -> Hlc:
    """The cap: ``now + skew``, raised to just above the club's greatest stored HLC."""
    ceiling = Hlc(now_ms + skew, 0)
    return ceiling if floor is None else max(ceiling, floor.successor())


@given(usable_hlcs, NOW, SKEW, maybe_hlcs, maybe_hlcs)
def test_stamp_is_strictly_after_the_previous_change(
    sent: Hlc, now_ms: int, skew: int, previous: Hlc | None, floor: Hlc | None
) -> None:
    effective = stamp(sent, now_ms=now_ms, max_skew_ms=skew, previous=previous, floor=floor)
    if previous is not None:
        assert effective > previous


@given(usable_hlcs, NOW, SKEW, maybe_hlcs, maybe_hlcs)
def test_stamp_never_exceeds_the_cap_unless_forced_by_the_previous_change(
    sent: Hlc, now_ms: int, skew: int, previous: Hlc | None, floor: Hlc | None
) -> None:
    effective = stamp(sent, now_ms=now_ms, max_skew_ms=skew, previous=previous, floor=floor)
    cap = upper_bound(now_ms, skew, floor)
    assert effective <= sent or (previous is not None and effective == previous.successor())
    if previous is None or previous < cap:
        assert effective <= cap
    else:
        assert effective == previous.successor()


@given(usable_hlcs, NOW, SKEW, maybe_hlcs, maybe_hlcs)
def test_stamp_keeps_the_sent_time_when_within_skew_and_after_the_previous_change(
    sent: Hlc, now_ms: int, skew: int, previous: Hlc | None, floor: Hlc | None
) -> None:
    assume(sent <= Hlc(now_ms + skew, 0))
    assume(previous is None or sent > previous)
    assert stamp(sent, now_ms=now_ms, max_skew_ms=skew, previous=previous, floor=floor) == sent


@given(usable_hlcs, NOW, SKEW, maybe_hlcs, usable_hlcs)
def test_stamp_keeps_a_change_after_the_greatest_stored_one_it_was_sent_after(
    sent: Hlc, now_ms: int, skew: int, previous: Hlc | None, floor: Hlc
) -> None:
    """Whatever the server's clock says (even stepped back), a change whose HLC is above the
    club's greatest stored HLC stays above it once stamped."""
    assume(sent > floor)
    effective = stamp(sent, now_ms=now_ms, max_skew_ms=skew, previous=previous, floor=floor)
    assert effective > floor


@given(st.integers(1, 10 * 3_600_000), NOW, SKEW)
def test_stamp_caps_a_fast_clock_at_the_ceiling(ahead: int, now_ms: int, skew: int) -> None:
    sent = Hlc(now_ms + skew + ahead, 3)
    assert stamp(sent, now_ms=now_ms, max_skew_ms=skew, previous=None) == Hlc(now_ms + skew, 0)
    below = Hlc(now_ms + skew - 1, 0) if now_ms + skew else None
    assert stamp(sent, now_ms=now_ms, max_skew_ms=skew, previous=None, floor=below) == Hlc(
        now_ms + skew, 0
    )


@given(st.integers(1, 10 * 3_600_000), NOW, SKEW, st.integers(0, 5))
def test_a_fast_clock_gains_one_tick_over_the_stored_maximum_not_its_lead(
    ahead: int, now_ms: int, skew: int, logical: int
) -> None:
    floor = Hlc(now_ms + skew, logical)
    sent = Hlc(now_ms + skew + ahead, 0)
    effective = stamp(sent, now_ms=now_ms, max_skew_ms=skew, previous=None, floor=floor)
    assert effective == floor.successor()


@given(st.lists(usable_hlcs, min_size=1, max_size=20), NOW, SKEW)
def test_stamps_of_one_device_strictly_increase(sent: list[Hlc], now_ms: int, skew: int) -> None:
    previous: Hlc | None = None
    for hlc in sent:
        effective = stamp(hlc, now_ms=now_ms, max_skew_ms=skew, previous=previous)
        assert previous is None or effective > previous
        previous = effective


@given(
    st.integers(0, 10 * 3_600_000),
    st.integers(1, 5),
    NOW,
    SKEW,
    st.integers(-3_600_000, 10 * 3_600_000),
    st.integers(0, 10 * 3_600_000),
)
def test_stamp_keeps_a_change_after_a_stamped_change_its_author_had_seen(
    ahead: int, writes: int, now_ms: int, skew: int, later_by: int, reader_offset: int
) -> None:
    """Causality through the cap: a device (possibly fast) has changes stamped; another device
    receives the last effective HLC, makes a change, and it is stamped ``later_by`` ms later
    by the server's clock (negative: the clock stepped back, or another instance is behind).
    The second change must still sort after the first."""
    writer = HybridClock(scripted([now_ms + ahead]))
    club_max: Hlc | None = None
    previous: Hlc | None = None
    for _ in range(writes):
        previous = stamp(
            writer.now(), now_ms=now_ms, max_skew_ms=skew, previous=previous, floor=club_max
        )
        club_max = previous if club_max is None else max(club_max, previous)
    assert previous is not None
    reader = HybridClock(scripted([max(0, now_ms - reader_offset)]))
    reader.receive(previous)
    later = stamp(
        reader.now(),
        now_ms=max(0, now_ms + later_by),
        max_skew_ms=skew,
        previous=None,
        floor=club_max,
    )
    assert later > previous


def test_without_the_club_floor_a_seen_change_can_tie_with_a_later_one() -> None:
    """Why the floor exists: without it, a change made right after seeing a capped change is
    capped to the very same HLC in the same server millisecond."""
    now, skew = 1_000, 60_000
    seen = stamp(Hlc(now + 3_600_000, 0), now_ms=now, max_skew_ms=skew, previous=None)
    assert seen == Hlc(now + skew, 0)
    assert stamp(seen.successor(), now_ms=now, max_skew_ms=skew, previous=None) == seen
    assert stamp(seen.successor(), now_ms=now, max_skew_ms=skew, previous=None, floor=seen) > seen

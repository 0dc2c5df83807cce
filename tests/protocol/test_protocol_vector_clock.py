"""Version vectors: merging, coverage and causal comparison."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.vector_clock import Causality, VersionVector, advance, compare, covers, merge

DEVICES = st.sampled_from(["a", "b", "c", "d"])
vectors = st.dictionaries(DEVICES, st.integers(0, 6), max_size=4)
"""Small vectors over few devices, so equal, ordered and concurrent pairs all happen. A zero
entry means the same as an absent one."""

OPPOSITE = {
    Causality.BEFORE: Causality.AFTER,
    Causality.AFTER: Causality.BEFORE,
    Causality.EQUAL: Causality.EQUAL,
    Causality.CONCURRENT: Causality.CONCURRENT,
}


def normal(vector: VersionVector) -> VersionVector:
    """The vector without its zero entries (absent means 0)."""
    return {device: seq for device, seq in vector.items() if seq > 0}


@given(vectors, vectors)
def test_merge_is_commutative(a: VersionVector, b: VersionVector) -> None:
    assert merge([a, b]) == merge([b, a])


@given(vectors, vectors, vectors)
def test_merge_is_associative(a: VersionVector, b: VersionVector, c: VersionVector) -> None:
    assert merge([merge([a, b]), c]) == merge([a, merge([b, c])]) == merge([a, b, c])


@given(vectors)
def test_merge_is_idempotent(a: VersionVector) -> None:
    assert merge([a, a]) == merge([a]) == normal(a)


def test_merge_of_nothing_is_empty() -> None:
    assert merge([]) == {}


@given(vectors, vectors)
def test_merge_is_the_least_upper_bound(a: VersionVector, b: VersionVector) -> None:
    merged = merge([a, b])
    for device in set(a) | set(b):
        assert merged.get(device, 0) == max(a.get(device, 0), b.get(device, 0))
    assert compare(merged, a) in (Causality.AFTER, Causality.EQUAL)
    assert compare(merged, b) in (Causality.AFTER, Causality.EQUAL)


@given(vectors, DEVICES, st.integers(1, 8))
def test_advance_covers_the_change_and_never_moves_back(
    vector: VersionVector, device: str, seq: int
) -> None:
    before = dict(vector)
    advanced = advance(vector, device, seq)
    assert vector == before  # the input is left alone
    assert covers(advanced, device, seq)
    assert advanced[device] == max(seq, vector.get(device, 0))
    assert compare(advanced, vector) in (Causality.AFTER, Causality.EQUAL)
    for other in set(vector) - {device}:
        assert advanced[other] == vector[other]


@given(vectors, DEVICES, st.integers(1, 8))
def test_covers_means_the_entry_reaches_the_sequence(
    vector: VersionVector, device: str, seq: int
) -> None:
    assert covers(vector, device, seq) == (vector.get(device, 0) >= seq)
    if covers(vector, device, seq):
        assert all(covers(vector, device, earlier) for earlier in range(1, seq))


def test_an_absent_device_covers_nothing() -> None:
    assert not covers({}, "a", 1)
    assert not covers({"b": 5}, "a", 1)
    assert covers({"a": 3}, "a", 3)
    assert not covers({"a": 3}, "a", 4)


@given(vectors, vectors)
def test_compare_is_antisymmetric(a: VersionVector, b: VersionVector) -> None:
    assert compare(b, a) is OPPOSITE[compare(a, b)]


@given(vectors)
def test_a_vector_is_equal_to_itself(a: VersionVector) -> None:
    assert compare(a, a) is Causality.EQUAL
    assert compare(a, normal(a)) is Causality.EQUAL


@given(vectors, vectors)
def test_compare_matches_the_entrywise_order(a: VersionVector, b: VersionVector) -> None:
    devices = set(a) | set(b)
    a_le_b = all(a.get(d, 0) <= b.get(d, 0) for d in devices)
    b_le_a = all(b.get(d, 0) <= a.get(d, 0) for d in devices)
    expected = {
        (True, True): Causality.EQUAL,
        (True, False): Causality.BEFORE,
        (False, True): Causality.AFTER,
        (False, False): Causality.CONCURRENT,
    }[(a_le_b, b_le_a)]
    assert compare(a, b) is expected


def test_compare_examples() -> None:
    assert compare({"a": 1}, {"a": 2}) is Causality.BEFORE
    assert compare({"a": 2, "b": 1}, {"a": 2}) is Causality.AFTER
    assert compare({"a": 2}, {"b": 1}) is Causality.CONCURRENT
    assert compare({"a": 2, "b": 0}, {"a": 2}) is Causality.EQUAL


@given(vectors, DEVICES, st.integers(1, 8), DEVICES, st.integers(1, 8))
def test_independent_advances_are_concurrent(
    base: VersionVector, left_device: str, left_seq: int, right_device: str, right_seq: int
) -> None:
    """Two replicas that each integrate a change the other lacks are concurrent."""
    left_seq += base.get(left_device, 0)
    right_seq += base.get(right_device, 0)
    left = advance(base, left_device, left_seq)
    right = advance(base, right_device, right_seq)
    if left_device == right_device:
        assert compare(left, right) is not Causality.CONCURRENT
    else:
        assert compare(left, right) is Causality.CONCURRENT
        assert compare(merge([left, right]), left) is Causality.AFTER

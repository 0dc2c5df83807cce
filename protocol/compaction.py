"""Compacting a finished match's log, as pure functions (PROTOCOL.md §6.6).

A record's merged state is one winning version per register (§7), and each version names the
log entry that wrote it, ``(device_id, seq)``. Once a match is over, the entries that hold no
winning version any more (an edit later overwritten, a delete later undone by a restore) add
nothing to any replica: every register's final value is the maximum of its writes, and the
maximum is still there. Compaction drops those entries and keeps the others **verbatim**,
with their ``server_seq``, ``device_id``, ``seq``, effective HLC and fields, so that:

- replaying the kept entries gives exactly the merged state of the whole log, from nothing or
  on top of any replica that had applied any prefix of it (a device that went offline at any
  point pulls from its old cursor, skips the dropped entries and converges);
- cursors, ``since`` and the conflict ledger stay valid: nothing is renumbered or rewritten;
- a kept entry is still compared byte for byte when its author re-sends it (§5.3 step 5), and
  a dropped one is recognised by :func:`with_stand_ins`.

An entry whose effective HLC differs from the one its author sent (restamped, §4.2) is always
kept: a retry of it must learn its effective HLC from the stored entry.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from protocol import derive, merge
from protocol.ingest import RecordKey, StoredChange, match_of
from protocol.replica import Replica
from protocol.wire import Change, LoggedChange, PushRequest

EntryId = tuple[str, int]
"""A log entry's identity within its club: ``(device_id, seq)``."""

FINISHED: Final = frozenset({"completed", "abandoned"})
"""The derived match statuses (§9.2) at which a match may be compacted."""


class CompactionRefused(Exception):
    """A match that may not be compacted now; nothing was changed."""

    def __init__(self, match_id: uuid.UUID, code: str, reason: str) -> None:
        super().__init__(f"match {match_id}: {reason}")
        self.match_id = match_id
        self.code = code
        """``no-log``, ``no-match``, ``not-finished``, ``unacknowledged`` or ``state-mismatch``."""
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LogSize:
    entries: int
    bytes: int
    """The entries' size as a pull sends them (``LoggedChange`` JSON, without separators)."""


@dataclass(frozen=True, slots=True)
class CompactionReport:
    match_id: uuid.UUID
    before: LogSize
    after: LogSize


@dataclass(frozen=True, slots=True)
class CompactionPlan:
    kept: list[LoggedChange]
    dropped: list[LoggedChange]
    report: CompactionReport


def entry_id(entry: LoggedChange) -> EntryId:
    return (entry.device_id, entry.seq)


def fold(entries: Iterable[LoggedChange]) -> dict[RecordKey, merge.RecordState]:
    """The merged state of every record the entries touch (any order gives the same)."""
    replica = Replica()
    for entry in entries:
        replica.apply(entry)
    return replica.snapshot()


def log_size(entries: Iterable[LoggedChange]) -> LogSize:
    count = size = 0
    for entry in entries:
        count += 1
        size += len(_ENCODE(entry))
    return LogSize(count, size)


def compact(
    entries: Sequence[LoggedChange], *, keep: Collection[EntryId] = frozenset()
) -> list[LoggedChange]:
    """The entries still needed, unchanged and in their order: every entry that holds a
    register's winning version in the merged state of ``entries``, the first entry of a
    record none of whose registers was ever written (so that the record still exists in a
    replica), and the entries named in ``keep`` (the restamped ones).

    Idempotent, and incremental: compacting the compacted entries followed by newer ones
    keeps exactly what compacting the whole log keeps.
    """
    first: dict[RecordKey, LoggedChange] = {}
    for entry in entries:
        key: RecordKey = (entry.table, entry.id)
        if key not in first or entry.server_seq < first[key].server_seq:
            first[key] = entry
    needed: set[EntryId] = set(keep)
    for record, state in fold(entries).items():
        holders = {(version.device_id, version.seq) for _, version in state.registers()}
        needed |= holders or {entry_id(first[record])}
    return [entry for entry in entries if entry_id(entry) in needed]


def match_status(match_id: uuid.UUID, states: Mapping[RecordKey, merge.RecordState]) -> str | None:
    """The match's derived status (§9.2) from its records' states, or None without its
    match record."""
    match = states.get(("matches", match_id))
    if match is None:
        return None
    period_format = match.values().get("period_format")
    actions = [state for (table, _), state in states.items() if table == "clock_actions"]
    return derive.clock(
        actions,
        period_format=period_format if isinstance(period_format, str) else None,
        now_ms=0,
    ).status


def refusal(
    match_id: uuid.UUID,
    entries: Sequence[LoggedChange],
    *,
    acknowledged: Mapping[str, int],
) -> tuple[str, str] | None:
    """Why the match's log is not at a causally stable point, as ``(code, reason)``, or None
    when it is.

    ``entries`` is the match's whole log (its match record and every record with its
    ``match_id``); ``acknowledged`` is every device's ``last``, the sequence up to which the
    server has stored and acknowledged its changes. The point is stable when the match's
    derived status is ``completed`` or ``abandoned`` and every device with an entry in the
    match has ``last`` at or past its greatest ``seq`` there.
    """
    if not entries:
        return ("no-log", "the log holds no entry of this match")
    status = match_status(match_id, fold(entries))
    if status is None:
        return ("no-match", "the log holds no match record with this id")
    if status not in FINISHED:
        return ("not-finished", f"the match is {status}, not completed or abandoned")
    greatest: dict[str, int] = {}
    for entry in entries:
        greatest[entry.device_id] = max(greatest.get(entry.device_id, 0), entry.seq)
    for device_id, seq in sorted(greatest.items()):
        last = acknowledged.get(device_id, 0)
        if last < seq:
            return (
                "unacknowledged",
                f"device {device_id} has seq {seq} in the match but is acknowledged "
                f"only up to {last}",
            )
    return None


def plan_compaction(
    match_id: uuid.UUID,
    entries: Sequence[LoggedChange],
    *,
    acknowledged: Mapping[str, int],
    restamped: Collection[EntryId] = frozenset(),
    stored: Mapping[RecordKey, merge.RecordState] | None = None,
) -> CompactionPlan:
    """What compacting the match's log keeps and drops, or :class:`CompactionRefused`.

    ``stored``, when given, is the merged state the server holds for the match's records;
    the kept entries must fold to exactly it, or nothing is dropped.
    """
    refused = refusal(match_id, entries, acknowledged=acknowledged)
    if refused is not None:
        raise CompactionRefused(match_id, *refused)
    kept = compact(entries, keep=restamped)
    if stored is not None and fold(kept) != dict(stored):
        raise CompactionRefused(
            match_id,
            "state-mismatch",
            "the match's log does not fold to the merged state the server holds",
        )
    kept_ids = {entry_id(entry) for entry in kept}
    dropped = [entry for entry in entries if entry_id(entry) not in kept_ids]
    report = CompactionReport(match_id, log_size(entries), log_size(kept))
    return CompactionPlan(kept, dropped, report)


def superseded(device_id: str, change: Change, state: merge.RecordState | None) -> bool:
    """True when ``change`` (by ``device_id``, with its HLC as sent) can be an entry that
    compaction dropped: its record belongs to a match, and every register it writes is held
    by a version that beats it.

    A dropped entry was never restamped (restamped entries are kept), so its effective HLC
    is the one sent; it held no register when it was dropped, and later writes only raise a
    register's version. So every dropped entry passes; a sequence reused for new content
    almost never does (its HLC is newer than what it would overwrite).
    """
    if state is None or match_of(change.table, change.id, state) is None:
        return False
    write = merge.Write(device_id, change.seq, change.hlc, change.op, change.fields)
    for name, version in write.versions():
        current = state.deleted if name == merge.DELETED else state.fields.get(name)
        if current is None or not current.beats(version):
            return False
    return True


def with_stand_ins(
    request: PushRequest,
    *,
    last_seq: int,
    stored: Mapping[int, StoredChange],
    records: Mapping[RecordKey, merge.RecordState],
) -> dict[int, StoredChange]:
    """The stored changes that re-sent changes are compared with (§5.3 step 5), completed
    for entries that compaction removed from the log.

    A re-sent change with ``seq <= last_seq`` was stored (a device's ``last`` only passes a
    sequence once it is stored), so when the log no longer has it, compaction dropped it.
    When it is :func:`superseded`, it stands in for itself and is acknowledged as a
    duplicate; otherwise it stays missing and the push is refused with ``sequence-reused``.
    """
    found = dict(stored)
    for change in request.changes:
        if change.seq > last_seq or change.seq in found:
            continue
        if superseded(request.device_id, change, records.get((change.table, change.id))):
            found[change.seq] = StoredChange(
                change.seq,
                change.hlc,
                change.hlc,
                change.table,
                change.id,
                change.op,
                dict(change.fields),
            )
    return found


_ENCODE = msgspec.json.Encoder().encode

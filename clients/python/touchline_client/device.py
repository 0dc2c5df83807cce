"""A device that syncs: local edits, push, pull, retries and crash-safe state.

:class:`SyncDevice` is the thin I/O shell around :class:`DeviceReplica` (which holds the state
and decides what to send) and a :class:`SyncTransport` (which sends it).

Every sync call is safe to repeat or to interrupt at any point: a push re-sends the outbox
from its first unacknowledged change (the server acknowledges changes it already stored, with
their effective HLC, without applying them again), a pull resumes from the last cursor, and
merging a change twice changes nothing. So after a lost answer, a dropped connection or a
restart from saved state, the next sync simply carries on.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio

from protocol.hlc import Hlc
from protocol.replica import Replica
from protocol.schema import Scalar, TableName
from protocol.wire import Change, ConflictRecord
from touchline_client.persistence import load_state, save_state
from touchline_client.replica import DeviceReplica
from touchline_client.retry import RetryPolicy
from touchline_client.transport import SyncError, SyncRejected, SyncTransport, SyncUnavailable

__all__ = ["SyncDevice", "SyncResult"]

DEFAULT_PUSH_BATCH: Final = 500
DEFAULT_PULL_LIMIT: Final = 500
RESERVED_DEVICE: Final = "server"
"""The server records reinstated values under this device id; no device may use it."""
_DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

ConflictHook = Callable[[ConflictRecord], None]


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one :meth:`SyncDevice.sync` did."""

    pushed: int
    """Own changes the server acknowledged."""
    pulled: int
    """Changes of other devices integrated."""


class SyncDevice:
    """One device's replica and its sync with the server.

    Time comes from the injected ``now_ms`` (epoch milliseconds) and waiting from ``sleep``,
    so tests control both. With ``state_path`` set (a file that does not exist yet), the
    device saves its whole state there at once and after every local edit, acknowledged push
    and pulled page; :meth:`load` restarts it from that file. A change is saved before it can
    be pushed, so a restarted device never reuses a sequence the server already holds, and it
    re-sends whatever was not acknowledged.
    """

    def __init__(
        self,
        device_id: str,
        transport: SyncTransport,
        *,
        now_ms: Callable[[], int],
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
        retry: RetryPolicy | None = None,
        state_path: Path | None = None,
        on_conflict: ConflictHook | None = None,
    ) -> None:
        if not _DEVICE_ID.match(device_id) or device_id == RESERVED_DEVICE:
            raise ValueError(
                f"invalid device id {device_id!r}: 1-64 of A-Z a-z 0-9 . _ : -, not 'server'"
            )
        self.device_id = device_id
        self.on_conflict = on_conflict
        """Called once for every conflict the device learns about, pushed or pulled."""
        self._replica = DeviceReplica(device_id, now_ms=now_ms)
        self._transport = transport
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._retry = retry or RetryPolicy()
        self._state_path = state_path
        # One exchange with the server at a time, so cursors and acknowledgements never
        # interleave. Local edits need no lock: they only append to the outbox.
        self._lock = anyio.Lock()
        if state_path is not None:
            if state_path.exists():
                # Starting afresh over a saved state would drop its outbox and reuse its
                # sequences; a device that has state continues it.
                raise FileExistsError(f"{state_path} holds a device's state; use SyncDevice.load")
            self._autosave()

    # -- local edits ------------------------------------------------------------------------

    def create(
        self,
        table: TableName,
        fields: Mapping[str, Scalar],
        *,
        record_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Create a record (with its required fields); returns its id, a new UUID unless
        ``record_id`` is given. Raises :class:`InvalidChange` for what the server refuses."""
        record_id = record_id or uuid.uuid4()
        self._replica.create(table, record_id, fields)
        self._autosave()
        return record_id

    def update(self, table: TableName, record_id: uuid.UUID, fields: Mapping[str, Scalar]) -> None:
        """Write some fields of an existing record (``None`` clears an optional field)."""
        self._replica.update(table, record_id, fields)
        self._autosave()

    def delete(self, table: TableName, record_id: uuid.UUID) -> None:
        """Archive a record; :meth:`restore` brings it back."""
        self._replica.record(table, record_id, "delete", {})
        self._autosave()

    def restore(self, table: TableName, record_id: uuid.UUID) -> None:
        """Bring an archived record back, with every field written meanwhile."""
        self._replica.record(table, record_id, "restore", {})
        self._autosave()

    # -- what the device holds --------------------------------------------------------------

    def view(self) -> Replica:
        """Confirmed records with the pending changes merged on top: what the coach sees."""
        return self._replica.view()

    def live(self, table: TableName) -> dict[uuid.UUID, dict[str, Scalar]]:
        """The current values of every record of ``table`` that is not archived."""
        return self._replica.view().live(table)

    @property
    def confirmed(self) -> Replica:
        """What the server acknowledged or delivered (treat it as read-only)."""
        return self._replica.confirmed

    @property
    def pending(self) -> int:
        """How many own changes wait for the server's acknowledgement."""
        return len(self._replica.outbox)

    @property
    def pending_changes(self) -> list[Change]:
        return [pending.change for pending in self._replica.outbox]

    @property
    def last_seq(self) -> int:
        """The sequence of this device's latest change (0 before the first)."""
        return self._replica.last_seq

    @property
    def cursor(self) -> int:
        """Club-wide pull cursor: everything in the server's log up to it is integrated."""
        return self._replica.cursor

    @property
    def version_vector(self) -> dict[str, int]:
        """Device id to the highest sequence integrated from it (this device included)."""
        return self._replica.version_vector

    @property
    def clock(self) -> Hlc:
        """The greatest HLC this device issued or received."""
        return self._replica.clock

    @property
    def conflicts(self) -> list[ConflictRecord]:
        """Every conflict this device learned about, in the order it learned them."""
        return self._replica.conflicts

    # -- sync -------------------------------------------------------------------------------

    async def push(self, *, max_changes: int = DEFAULT_PUSH_BATCH) -> int:
        """Push the outbox until it is empty, one run of changes sharing a ``seen`` vector
        per request; returns how many changes the server acknowledged. The first failure is
        raised; changes acknowledged before it stay acknowledged."""
        async with self._lock:
            return await self._push(max_changes)

    async def pull(self, match_id: uuid.UUID | None = None, limit: int = DEFAULT_PULL_LIMIT) -> int:
        """Pull other devices' changes page by page until caught up; returns how many were
        integrated. ``match_id`` limits the pull to one match's records."""
        async with self._lock:
            return await self._pull(match_id, limit)

    async def sync(
        self, *, max_changes: int = DEFAULT_PUSH_BATCH, limit: int = DEFAULT_PULL_LIMIT
    ) -> SyncResult:
        """Push, pull until caught up, and push again if edits were made meanwhile.

        While the server cannot be reached (:class:`SyncUnavailable`) the round is retried
        with exponential backoff and full jitter, up to the retry policy's attempts, then the
        last error is raised. A refusal (:class:`SyncRejected`) is raised at once.
        """
        pushed = pulled = 0
        async with self._lock:
            for attempt in range(self._retry.attempts):
                try:
                    pushed += await self._push(max_changes)
                    pulled += await self._pull(None, limit)
                    if self._replica.outbox:
                        pushed += await self._push(max_changes)
                    return SyncResult(pushed, pulled)
                except SyncUnavailable as unavailable:
                    if attempt + 1 == self._retry.attempts:
                        raise
                    # Never sooner than the server asked (PROTOCOL.md §10), jittered above it
                    # so that the phones it turned away do not all return at once.
                    wait = self._retry.delay(attempt, self._rng)
                    if unavailable.retry_after_s is not None:
                        wait = max(wait, unavailable.retry_after_s * (1 + self._rng.random() / 2))
                await self._sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def refresh_conflicts(self, match_id: uuid.UUID | None = None) -> list[ConflictRecord]:
        """Read the server's conflict ledger and learn any conflict not known yet."""
        async with self._lock:
            ledger = await self._transport.conflicts(match_id, 0)
            new = self._replica.learn_conflicts(ledger)
            self._autosave()
        self._announce(new)
        return ledger

    async def reinstate(self, conflict_id: uuid.UUID) -> ConflictRecord:
        """Have the server write a conflict's losing value back (causally after the winner).
        The new change is merged here at once and reaches other devices when they pull."""
        async with self._lock:
            answer = await self._transport.reinstate(conflict_id)
            self._replica.integrate(answer.change)
            self._replica.learn_conflicts([answer.conflict])
            self._autosave()
        return answer.conflict

    async def _push(self, max_changes: int) -> int:
        acknowledged = 0
        limit = max_changes
        resend: int | None = None
        while (request := self._replica.push_request(resend or limit)) is not None:
            resend = None
            first, size = request.changes[0].seq, len(request.changes)
            try:
                response = await self._transport.push(request)
            except SyncRejected as rejected:
                if rejected.code == "change-set-too-large":
                    limit = _server_cap(rejected, size)
                else:
                    resend = _stored_prefix(rejected, first, size)
                continue
            count, new = self._replica.acknowledge(response)
            self._autosave()
            self._announce(new)
            if count == 0:
                raise SyncError(
                    f"the server acknowledged seq {response.acked_seq}, below the pushed {first}"
                )
            acknowledged += count
        return acknowledged

    async def _pull(self, match_id: uuid.UUID | None, limit: int) -> int:
        integrated = 0
        while True:
            request = self._replica.pull_request(match_id, limit)
            page = await self._transport.pull(request)
            count, new = self._replica.accept_page(request, page)
            self._autosave()
            self._announce(new)
            integrated += count
            if not page.has_more:
                return integrated
            if page.cursor <= request.cursor:
                raise SyncError(f"the pull did not move past cursor {request.cursor}")

    def _announce(self, conflicts: list[ConflictRecord]) -> None:
        if self.on_conflict is not None:
            for conflict in conflicts:
                self.on_conflict(conflict)

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: Path | None = None) -> None:
        """Write the whole state to ``path`` (default: ``state_path``) atomically."""
        target = path or self._state_path
        if target is None:
            raise ValueError("no path given and the device has no state_path")
        save_state(target, self._replica.to_state())

    @classmethod
    def load(
        cls,
        path: Path,
        transport: SyncTransport,
        *,
        now_ms: Callable[[], int],
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
        retry: RetryPolicy | None = None,
        on_conflict: ConflictHook | None = None,
    ) -> SyncDevice:
        """Restart a device from the state saved at ``path``; it keeps saving there."""
        saved = load_state(path)
        device = cls(
            saved.device_id,
            transport,
            now_ms=now_ms,
            sleep=sleep,
            rng=rng,
            retry=retry,
            on_conflict=on_conflict,
        )
        device._replica = DeviceReplica.from_state(saved, now_ms=now_ms)
        device._state_path = path
        return device

    def _autosave(self) -> None:
        if self._state_path is not None:
            save_state(self._state_path, self._replica.to_state())


def _server_cap(rejected: SyncRejected, size: int) -> int:
    """The set size the server takes, from its ``change-set-too-large`` answer."""
    cap = rejected.max_changes
    if cap is None or not 0 < cap < size:
        raise rejected
    return cap


def _stored_prefix(rejected: SyncRejected, first: int, size: int) -> int:
    """How many leading changes of a refused set the server already holds, or re-raise.

    A ``sequence-gap`` naming a sequence beyond the first one sent says the server holds the
    earlier ones already. The device re-sends exactly those: the server acknowledges stored
    changes as duplicates and lists their restamps, so the device learns their effective HLCs
    and acknowledges them like any other push, then carries on; nothing is guessed. (A server
    that recognises every re-sent change never answers this way; the rule keeps a device
    converging if a server or a proxy ever does.) Every other refusal needs a person or a bug
    fix and is raised: a gap *below* the first pending change means the server lost changes it
    had acknowledged, a reused sequence means two installs share one device id, and an invalid
    change set is one the local checks should have refused.
    """
    expected = rejected.expected_seq
    if rejected.code == "sequence-gap" and expected is not None and first < expected < first + size:
        return expected - first
    raise rejected

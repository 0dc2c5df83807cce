"""Sending a planned import to the server through the sync protocol, as an import device.

The importer logs in as the user with its own device id (``import-…``, one per account), reads
what the club already holds (an unscoped pull from the start, including its own earlier
changes), and pushes only records the server does not have yet. So:

- a second run of the same file, or of another export of the same database, finds every
  record on the server and writes nothing;
- a coach's edit made on a phone after a first import is never overwritten by a re-run;
- a run cut off half way resumes where the server stopped: what was acknowledged is found on
  the server, the rest is pushed. A push whose answer was lost is re-sent as it was, which the
  server acknowledges as a duplicate (PROTOCOL.md §5.5).

A record deleted in the app is created and archived in the same change set, so it never shows
as live, and a coach can restore it.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Final, TypeVar

import anyio
import httpx

from protocol.hlc import ZERO, Hlc, HybridClock
from protocol.wire import Change, PullRequest, PushRequest
from touchline_client.retry import RetryPolicy
from touchline_client.session import Credentials, Tokens
from touchline_client.transport import HttpTransport, SyncRejected, SyncUnavailable, request
from touchline_import.mapping import ImportPlan, ImportRecord

_T = TypeVar("_T")

__all__ = ["ImportFailed", "ServerState", "Upload", "import_device_id"]

BATCH: Final = 500
"""Changes per push: well under the server's default limit of 1000, and small enough that a
lost answer costs little to re-send."""
PULL_PAGE: Final = 1000
_NAMESPACE: Final = uuid.UUID("b5a1f0d6-6a2e-4c0e-9a57-3f1f1c0b7e11")

Progress = Callable[[str, int, int], None]
"""Called with (phase, done, total) as the upload goes on."""


class ImportFailed(Exception):
    """The import could not run (or could not finish): the reason, in one line."""


def import_device_id(email: str) -> str:
    """The import device of an account: stable, so that every run continues one sequence."""
    return "import-" + uuid.uuid5(_NAMESPACE, email.strip().lower()).hex[:20]


@dataclass(slots=True)
class ServerState:
    """What the club's log holds, read before writing anything."""

    records: set[tuple[str, uuid.UUID]] = field(default_factory=set)
    seen: dict[str, int] = field(default_factory=dict)
    """Version vector: each device's greatest sequence in the log."""
    last_hlc: Hlc = ZERO
    cursor: int = 0


class Upload:
    """One import run against one server, as one logged-in account."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        server: str,
        email: str,
        password: str,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.server = server.rstrip("/")
        self.device_id = import_device_id(email)
        self._http = http
        self._credentials = Credentials(email, password, self.device_id)
        self._transport = HttpTransport(http, self._credentials, self.server)
        self._retry = retry or RetryPolicy(attempts=6, base_s=0.5, cap_s=10)
        self._sleep = sleep
        self._now_ms = now_ms
        self._rng = random.Random()

    async def login(self) -> Tokens:
        """Log in; a refused login or an unreachable server is :class:`ImportFailed`."""
        try:
            tokens = await self._credentials.login(self._http, self.server)
        except SyncRejected as refused:
            raise ImportFailed(f"login refused: {_problem_text(refused)}") from refused
        except SyncUnavailable as error:
            raise ImportFailed(f"cannot reach {self.server}: {error}") from error
        if tokens.role == "viewer":
            raise ImportFailed("this account is a viewer of its club; importing needs a coach")
        return tokens

    async def logout(self) -> None:
        """End the import device's session (best effort: the import is already done)."""
        tokens = self._credentials.tokens
        if tokens is None:
            return
        with contextlib.suppress(SyncUnavailable):
            await request(
                self._http,
                "POST",
                self.server + "/api/auth/logout",
                headers={"Authorization": f"Bearer {tokens.access_token}"},
            )

    async def read_state(self, progress: Progress | None = None) -> ServerState:
        """Pull the club's whole log (its own changes too): which records exist, and how
        far every device, this one included, has got."""
        state = ServerState()
        while True:
            try:
                page = await self._with_retries(
                    lambda: self._transport.pull(
                        PullRequest(
                            device_id=self.device_id,
                            cursor=state.cursor,
                            limit=PULL_PAGE,
                            include_own=True,
                        )
                    )
                )
            except SyncRejected as refused:
                raise ImportFailed(
                    f"cannot read the club's data: {_problem_text(refused)}"
                ) from refused
            for change in page.changes:
                state.records.add((change.table, change.id))
                if change.seq > state.seen.get(change.device_id, 0):
                    state.seen[change.device_id] = change.seq
                state.last_hlc = max(state.last_hlc, Hlc.parse(change.hlc))
            state.cursor = page.cursor
            if progress is not None:
                progress("read", state.cursor, state.cursor)
            if not page.has_more:
                return state

    async def push(
        self, plan: ImportPlan, state: ServerState, progress: Progress | None = None
    ) -> int:
        """Push every planned record the server lacks; returns the changes acknowledged.
        Records found on the server are counted as duplicates in the plan's report; a record
        the server refuses is reported (``server-refused``) and the rest go on."""
        pending = self.select(plan, state)
        clock = HybridClock(self._now_ms, state.last_hlc)
        next_seq = state.seen.get(self.device_id, 0) + 1
        total = sum(1 + record.deleted for record in pending)
        done = 0
        while pending:
            records, pending = _take(pending, BATCH)
            while records:
                change_set = PushRequest(
                    device_id=self.device_id,
                    changes=list(_changes(records, next_seq, clock)),
                    seen=state.seen,
                )
                batch = change_set.changes
                try:
                    answer = await self._with_retries(partial(self._transport.push, change_set))
                except SyncRejected as refused:
                    if refused.code != "invalid-change-set":
                        raise ImportFailed(
                            f"the server refused the import: {_problem_text(refused)}"
                        ) from refused
                    records = _drop_refused(records, batch, refused, plan)
                    continue
                if answer.acked_seq < batch[-1].seq:
                    raise ImportFailed(f"the server acknowledged up to {answer.acked_seq} only")
                next_seq = batch[-1].seq + 1
                done += len(batch)
                if progress is not None:
                    progress("push", done, total)
                break
        return done

    @staticmethod
    def select(plan: ImportPlan, state: ServerState) -> list[ImportRecord]:
        """The planned records the server does not hold yet; the others are counted as
        duplicates already on the server."""
        fresh: list[ImportRecord] = []
        for record in plan.records:
            if (record.table, record.id) not in state.records:
                fresh.append(record)
            elif not record.derived:
                counts = plan.report.counts(record.source_table)
                counts.imported -= 1
                counts.of_which_deleted -= record.deleted
                counts.skipped_as_duplicate += 1
                counts.already_on_server += 1
            else:
                plan.report.derived_records[record.table] -= 1
        return fresh

    async def _with_retries(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        for retry in range(self._retry.attempts):
            try:
                return await attempt()
            except SyncUnavailable as error:
                if retry + 1 == self._retry.attempts:
                    raise ImportFailed(
                        f"the server stayed unavailable ({error}); run the import again: "
                        "it carries on where it stopped"
                    ) from error
                await self._sleep(self._retry.delay(retry, self._rng))
        raise AssertionError("unreachable")


def _take(records: list[ImportRecord], size: int) -> tuple[list[ImportRecord], list[ImportRecord]]:
    """The next records making at most about ``size`` changes, and the rest. A record created
    and archived travels in one set, so it never shows as live."""
    count = 0
    for index, record in enumerate(records):
        count += 1 + record.deleted
        if count >= size:
            return records[: index + 1], records[index + 1 :]
    return records, []


def _changes(records: Iterable[ImportRecord], seq: int, clock: HybridClock) -> Iterator[Change]:
    for record in records:
        yield Change(
            seq=seq,
            hlc=clock.now().encode(),
            table=record.table,
            id=record.id,
            fields=record.fields,
        )
        seq += 1
        if record.deleted:
            yield Change(
                seq=seq, hlc=clock.now().encode(), table=record.table, id=record.id, op="delete"
            )
            seq += 1


_CHANGE_INDEX = re.compile(r"^\$\.changes\[(\d+)\]")


def _drop_refused(
    records: list[ImportRecord], batch: list[Change], refused: SyncRejected, plan: ImportPlan
) -> list[ImportRecord]:
    """The batch's records without those the server refused, which go into the report. A
    refused set stored nothing (PROTOCOL.md §5.3), so the rest is re-sent with the same
    sequences."""
    bad: dict[uuid.UUID, list[str]] = {}
    for problem in refused.errors:
        found = _CHANGE_INDEX.match(str(problem.get("field", "")))
        if found and int(found.group(1)) < len(batch):
            change = batch[int(found.group(1))]
            bad.setdefault(change.id, []).append(
                f"{problem.get('field')}: {problem.get('message')}"
            )
    if not bad:
        raise ImportFailed(f"the server refused the import: {_problem_text(refused)}")
    kept: list[ImportRecord] = []
    for record in records:
        if record.id not in bad:
            kept.append(record)
            continue
        if record.derived:
            plan.report.derived_records[record.table] -= 1
        else:
            counts = plan.report.counts(record.source_table)
            counts.imported -= 1
            counts.of_which_deleted -= record.deleted
        plan.report.reject(
            record.source_table, record.source_id, "server-refused", "; ".join(bad[record.id])
        )
    return kept


def _problem_text(refused: SyncRejected) -> str:
    detail = refused.problem.get("detail") or refused.problem.get("title") or ""
    return f"{refused.status} {refused.code}" + (f": {detail}" if detail else "")

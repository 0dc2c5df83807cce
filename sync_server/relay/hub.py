"""The relay hub: one per server instance, between the bus and the live connections.

A commit anywhere is announced on the bus as a small notice. For every match this instance
has connections for (a *channel*), the hub reads what is new from the change log (one scoped
pull per match, coalescing notices that arrive meanwhile), encodes each message once and
offers the same frame to every connection's outbox. Viewers get viewer-safe deltas of the
match view, which the hub keeps per channel, never per connection.

The change log, not the bus, is the source of truth: a lost notice only delays delivery
until the next one for that club (or the bus's reconnect, after which every channel re-reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol import relay
from protocol.relay import (
    BusMessage,
    Catchup,
    Changes,
    Committed,
    Heartbeat,
    LinkRevoked,
    PresenceShared,
    SessionsChanged,
    Snapshot,
)
from protocol.viewer import MatchView
from sync_server import tables
from sync_server.auth import SessionCache
from sync_server.db import reading
from sync_server.match_view import load_match_replica, refresh_names
from sync_server.relay.bus import MAX_PAYLOAD, Bus, BusError, PostgresBus
from sync_server.relay.channel import Channel, Pages, error_frame, now_ms
from sync_server.relay.metrics import RelayMetrics
from sync_server.relay.outbox import REFUSED, SENT, Frame, Outbox
from sync_server.share_links import ResolvedLinks
from sync_server.store import Announcement, ChangeStore, CommitNotice

__all__ = ["Hub", "MatchGone"]

log = logging.getLogger("sync_server.relay")

BEAT_BATCH = 500
"""Heartbeats written before the loop lets other work in."""

_decode_bus = msgspec.json.Decoder(BusMessage)
_encode = msgspec.json.encode


OWN_NOTICE_TICKS = 2
"""The ticker's ticks (seconds) a notice of this instance's own commit waits before it is
looked at: at least one full tick, at most two."""


def _notice(commit: Announcement, at: float) -> Committed:
    return Committed(
        club=commit.club_id,
        seq=commit.seq,
        matches=commit.matches,
        at_ms=int(at * 1000),
        after=commit.after,
    )


def _bus_notice(notice: Committed) -> Committed:
    """The notice as the bus carries it: a commit to many matches names none (keeps it small)."""
    if notice.matches is not None and len(notice.matches) > 100:
        return msgspec.structs.replace(notice, matches=None)
    return notice


class MatchGone(Exception):
    """The match does not exist (any more) or is archived."""


class Hub:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        store: ChangeStore,
        bus: Bus,
        sessions: SessionCache,
        metrics: RelayMetrics,
        heartbeat_s: float = 15.0,
        check_sessions: Callable[[list[uuid.UUID]], Awaitable[dict[uuid.UUID, str]]] | None = None,
    ) -> None:
        self.instance = uuid.uuid4().hex[:12]
        self._engine = engine
        self._store = store
        self._bus = bus
        self._sessions = sessions
        self.metrics = metrics
        self._heartbeat_s = heartbeat_s
        self._check_sessions = check_sessions or self._live_sessions
        self._channels: dict[uuid.UUID, dict[uuid.UUID, Channel]] = {}
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        # Notices of this instance's own commits, by the tick they arrived in (newest last).
        self._own_notices: list[list[Committed]] = [[] for _ in range(OWN_NOTICE_TICKS)]
        self.links = ResolvedLinks()
        """Share tokens resolved lately, forgotten whenever a link is revoked."""
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._bus.subscribe(self._on_bus, self._on_gap)
        await self._bus.start()
        self._store.announce = self.announce
        if isinstance(self._bus, PostgresBus):
            # The bus is the store's own database: a push's commit sends its notice itself.
            self._store.commit_notice = CommitNotice(self._bus.channel, self._commit_payload)
        self._sessions.listeners.append(self._sessions_changed_here)
        self._tasks = [
            asyncio.create_task(self._publisher(), name="relay-publisher"),
            asyncio.create_task(self._ticker(), name="relay-ticker"),
        ]

    async def close(self) -> None:
        """Close every connection with 1012 (service restart: reconnect elsewhere)."""
        if self._closed:
            return
        self._closed = True
        if self._store.announce == self.announce:
            self._store.announce = None
        notice = self._store.commit_notice
        if notice is not None and notice.payload == self._commit_payload:
            self._store.commit_notice = None
        with contextlib.suppress(ValueError):
            self._sessions.listeners.remove(self._sessions_changed_here)
        for channel in self._all_channels():
            for outbox in (*channel.coaches, *channel.viewers):
                outbox.close(1012, "server restarting; reconnect")
        for task in (*self._tasks, *self._background):
            task.cancel()
        for channel in self._all_channels():
            if channel.task is not None:
                channel.task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        await self._bus.close()

    def _all_channels(self) -> list[Channel]:
        return [channel for club in self._channels.values() for channel in club.values()]

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- announcing commits ---------------------------------------------------------------------

    def announce(self, commit: Announcement) -> None:
        """The store's commit hook: relay the commit here and tell the other instances, as
        soon as the committing request has answered (a fan-out to thousands of viewers
        should not delay the coach's acknowledgement), in the order announced."""
        self.metrics.sync.committed(commit)
        asyncio.get_running_loop().call_soon(self._relay_commit, commit, time.time())

    def _commit_payload(self, commit: Announcement) -> str | None:
        """The bus notice of a commit about to happen, for the store to send inside it."""
        if self._closed:
            return None
        notice = msgspec.structs.replace(_notice(commit, time.time()), origin=self.instance)
        payload = _encode(_bus_notice(notice))
        return payload.decode() if len(payload) <= MAX_PAYLOAD else None

    def _relay_commit(self, commit: Announcement, at: float) -> None:
        if self._closed:
            return
        notice = _notice(commit, at)
        for channel in self._channels.get(commit.club_id, {}).values():
            if commit.matches is not None and channel.match_id not in commit.matches:
                self._skip(channel, commit.after, commit.seq)
                continue
            # This instance holds the commit's entries: relay them without reading the log,
            # when the channel is exactly up to the commit and nothing else is relaying it.
            if not (commit.entries is not None and self._relay_now(channel, commit, at)):
                self._committed_to(channel, notice)
        if not commit.notified:
            self._publish(_bus_notice(notice))

    def _relay_now(self, channel: Channel, commit: Announcement, at: float) -> bool:
        """Relay a local commit's entries straight from memory; False when the channel must
        read the log instead (behind, busy, or its view needs names from the database)."""
        if channel.seq != commit.after or channel.lock.locked() or channel.target > channel.seq:
            return False
        if commit.matches is None:
            return False  # club-wide changes: names may have changed
        replica = channel.replica
        if channel.viewers and (replica is None or channel.names_stale):
            return False
        assert commit.entries is not None
        changes = [c for match, c in commit.entries if match == channel.match_id]
        conflicts = [c for c in commit.conflicts if c.match_id == channel.match_id]
        if replica is not None:
            for change in changes:
                replica.apply(change)
            if channel.viewers and any(replica.missing()):
                # A new player or team to name: read it, and relay from the log (the replica
                # already holds these changes; merging them again is harmless).
                return False
            replica.named()
        view = None
        if channel.viewers and replica is not None:
            view = replica.view(now_ms())
            if view is None:
                return False  # the match is gone: the log read closes its viewers
        if channel.coaches and (changes or conflicts):
            message = Changes(seq=commit.seq, changes=changes, conflicts=conflicts)
            self._deliver_changes(channel, message, commit.after, at)
        if view is not None:
            self._deliver_view(channel, view, commit.seq, at)
        channel.seq = channel.target = commit.seq
        return True

    def _publish(self, message: BusMessage) -> None:
        try:
            self._outgoing.put_nowait(_encode(message))
        except asyncio.QueueFull:
            # The bus is far behind; other instances catch up at the club's next notice.
            self.metrics.bus_publish_failures.inc()

    async def _publisher(self) -> None:
        while True:
            payload = await self._outgoing.get()
            try:
                await self._bus.publish(payload)
            except (BusError, ValueError) as exc:
                self.metrics.bus_publish_failures.inc()
                log.warning("relay: could not publish to the %s bus: %s", self._bus.name, exc)

    def _on_bus(self, payload: bytes) -> None:
        try:
            message = _decode_bus.decode(payload)
        except msgspec.DecodeError:
            log.warning("relay: ignored an undecodable bus message (%d bytes)", len(payload))
            return
        if isinstance(message, Committed):
            if message.origin == self.instance:
                # One of this instance's own commits, heard perhaps before the store has
                # returned and announced it here. The announcement relays it from memory;
                # this copy only matters if that never came (a commit whose answer was lost).
                # The ticker looks at it a second or two later: a timer per commit would wake
                # the process once more for every push.
                self._own_notices[-1].append(message)
            else:
                self._committed(message)
        elif isinstance(message, LinkRevoked):
            self._end_link(message.link)
        elif isinstance(message, SessionsChanged):
            if message.origin != self.instance:
                self._sessions.forget()
                self._spawn(self._recheck_sessions())
        elif message.origin != self.instance:
            self._remote_presence(message)

    def _on_gap(self) -> None:
        """The bus reconnected: notices may have been lost, so every channel re-reads."""
        self.metrics.bus_gaps.inc()
        self._sessions.forget()
        self.links.forget()  # a revocation may have been lost too
        self._spawn(self._recheck_sessions())
        for channel in self._all_channels():
            channel.target = max(channel.target, channel.seq + 1)
            self._kick(channel)
            if channel.coaches:
                self._share_presence(channel)

    def _committed(self, notice: Committed) -> None:
        channels = self._channels.get(notice.club)
        if not channels:
            return
        matches = None if notice.matches is None else set(notice.matches)
        for channel in channels.values():
            if matches is None or channel.match_id in matches:
                self._committed_to(channel, notice)
            elif notice.after >= 0:
                self._skip(channel, notice.after, notice.seq)

    def _skip(self, channel: Channel, after: int, seq: int) -> None:
        """A commit that added nothing to this channel's match: a channel exactly up to it
        moves past it, so that the match's next commit can be relayed from memory."""
        if channel.seq == after and channel.target <= after and not channel.lock.locked():
            channel.seq = channel.target = seq

    def _committed_to(self, channel: Channel, notice: Committed) -> None:
        if notice.matches is None:
            channel.names_stale = True
        if notice.seq > channel.target:
            channel.target = notice.seq
            if channel.merged_at is None and notice.at_ms:
                channel.merged_at = notice.at_ms / 1000
            self._kick(channel)

    # -- relaying a channel ---------------------------------------------------------------------

    def _channel(self, club_id: uuid.UUID, match_id: uuid.UUID) -> Channel:
        club = self._channels.setdefault(club_id, {})
        channel = club.get(match_id)
        if channel is None:
            channel = club[match_id] = Channel(club_id, match_id)
        return channel

    def _kick(self, channel: Channel) -> None:
        if channel.seq >= 0 and (channel.task is None or channel.task.done()):
            channel.task = asyncio.create_task(self._refresh(channel))

    async def _refresh(self, channel: Channel) -> None:
        failures = 0
        while channel.target > channel.seq and (channel.coaches or channel.viewers):
            try:
                async with channel.lock:
                    await self._advance(channel, channel.target)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database is away (a restart, a failover): retry with a capped backoff;
                # the log keeps everything, so nothing is lost, only late.
                failures += 1
                self.metrics.refresh_errors.inc()
                log.exception("relay: reading match %s failed", channel.match_id)
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
        if channel.target <= channel.seq:
            channel.merged_at = None

    async def _advance(self, channel: Channel, target: int) -> None:
        """Relay what the log holds after the channel's sequence: the changes to coaches,
        merged into the replica, and the viewers' view deltas."""
        merged_at = channel.merged_at
        channel.merged_at = None
        cursor = channel.seq
        self.metrics.log_reads.inc()
        async for page in Pages(self._store, channel.club_id, channel.match_id, cursor):
            if page.changes or page.conflicts:
                if channel.coaches:
                    message = Changes(
                        seq=page.cursor, changes=page.changes, conflicts=page.conflicts
                    )
                    self._deliver_changes(channel, message, cursor, merged_at)
                if channel.replica is not None:
                    for change in page.changes:
                        channel.replica.apply(change)
            cursor = page.cursor
        seq = max(cursor, target)
        if channel.viewers:
            await self._relay_view(channel, seq, merged_at)
        channel.seq = seq

    async def _relay_view(self, channel: Channel, seq: int, merged_at: float | None) -> None:
        replica = channel.replica
        # Taken before reading: a club-wide commit that marks the names stale while they are
        # read must leave the mark for the next round, or its new name never shows.
        stale, channel.names_stale = channel.names_stale, False
        if replica is None:
            replica = channel.replica = await load_match_replica(
                self._engine, channel.club_id, channel.match_id
            )
        elif stale or any(replica.missing()):
            await refresh_names(self._engine, channel.club_id, replica, everything=stale)
        else:
            replica.named()
        view = None if replica is None else replica.view(now_ms())
        if view is None:
            for outbox in list(channel.viewers):
                outbox.close(4404, "match not found", error_frame(seq, 404, "match-gone"))
            channel.replica = channel.view = None
            return
        self._deliver_view(channel, view, seq, merged_at)

    def _deliver_view(
        self, channel: Channel, view: MatchView, seq: int, merged_at: float | None
    ) -> None:
        if channel.view is not None:
            delta = relay.viewer_delta(channel.view, view, seq)
            if delta is not None:
                self._deliver(channel.viewers, [Frame(delta, merged_at=merged_at)], "viewer")
        channel.view = view

    def _deliver_changes(
        self, channel: Channel, message: Changes, first: int, merged_at: float | None
    ) -> None:
        frame = Frame(message, merged_at=merged_at)
        behind = [outbox for outbox in channel.coaches if outbox.seq <= first]
        self._deliver(behind, [frame], "coach")
        for outbox in list(channel.coaches):  # a dropped one leaves the set
            # Joined with a catch-up that already reached into this page: the rest only.
            if first < outbox.seq < message.seq:
                rest = msgspec.structs.replace(
                    message,
                    changes=[c for c in message.changes if c.server_seq > outbox.seq],
                    conflicts=[c for c in message.conflicts if c.server_seq > outbox.seq],
                )
                self._deliver([outbox], [Frame(rest, merged_at=merged_at)], "coach")

    def _deliver(self, outboxes: Iterable[Outbox], frames: list[Frame], kind: str) -> None:
        dropped = []
        sent = 0
        for outbox in outboxes:
            for frame in frames:
                done = outbox.offer(frame)
                if done == SENT:
                    sent += 1
                elif done == REFUSED:
                    if outbox.dropped:
                        dropped.append(outbox)
                    break
        if sent:
            # Frames written at once are counted here, once per fan-out; the latency is the
            # last connection's, the fan-out's slowest.
            self.metrics.messages_sent.labels(kind).inc(sent)
            merged = [frame.merged_at for frame in frames if frame.merged_at is not None]
            if merged:
                self.metrics.merge_to_send.observe(time.time() - min(merged))
        for outbox in dropped:
            self.metrics.queue_drops.labels(kind).inc()
            log.info("relay: dropped a slow %s connection on match %s", kind, outbox.match_id)
            self.leave(outbox)

    async def _match_exists(self, club_id: uuid.UUID, match_id: uuid.UUID) -> bool:
        m = tables.matches
        async with reading(self._engine) as conn:
            state = await conn.scalar(
                select(m.c.is_deleted).where(m.c.club_id == club_id, m.c.id == match_id)
            )
        return state is not None and not state

    async def _ready(self, channel: Channel) -> None:
        """Under the channel's lock: read the club's log head for a new channel."""
        if channel.seq < 0:
            async with reading(self._engine) as conn:
                head = await conn.scalar(
                    select(tables.clubs.c.log_seq).where(tables.clubs.c.id == channel.club_id)
                )
            channel.seq = int(head or 0)
            channel.target = max(channel.target, channel.seq)

    # -- joining and leaving ----------------------------------------------------------------------

    async def join_coach(self, outbox: Outbox, since: int) -> None:
        """Send the catch-up from ``since`` (the match's changes after it), then everything
        new. Raises MatchGone when the club has no such match."""
        if not await self._match_exists(outbox.club_id, outbox.match_id):
            raise MatchGone
        channel = self._channel(outbox.club_id, outbox.match_id)
        async with channel.lock:
            await self._ready(channel)
            cursor = since
            sent = False
            async for page in Pages(self._store, outbox.club_id, outbox.match_id, since):
                outbox.offer(
                    Frame(
                        Catchup(
                            seq=page.cursor,
                            changes=page.changes,
                            conflicts=page.conflicts,
                            more=page.has_more,
                        )
                    )
                )
                cursor = page.cursor
                sent = True
            if not sent:
                outbox.offer(Frame(Catchup(seq=since, changes=[], conflicts=[], more=False)))
            outbox.seq = cursor
            if outbox.dropped:
                # A catch-up larger than the outbox: told to resync; pulling is the way.
                self.metrics.queue_drops.labels("coach").inc()
            channel.coaches.add(outbox)
            self.metrics.connections.labels("coach", outbox.transport).inc()
            if cursor > channel.target:
                channel.target = cursor
            self._kick(channel)
        self._share_presence(channel)

    async def join_viewer(self, outbox: Outbox) -> None:
        """Send the snapshot, then every viewer-safe change. Raises MatchGone."""
        channel = self._channel(outbox.club_id, outbox.match_id)
        async with channel.lock:
            await self._ready(channel)
            if channel.view is None or not channel.viewers:
                # Read after the channel's sequence: the states hold at least everything up
                # to it, and merging a change twice is harmless. Names marked stale while
                # this reads stay marked.
                channel.names_stale = False
                channel.replica = await load_match_replica(
                    self._engine, outbox.club_id, outbox.match_id
                )
                channel.view = None if channel.replica is None else channel.replica.view(now_ms())
            if channel.view is None:
                if channel.idle:
                    self._forget(channel)
                raise MatchGone
            view = relay.view_at(channel.view, now_ms())
            outbox.offer(Frame(Snapshot(seq=channel.seq, view=view)))
            channel.viewers.add(outbox)
            self.metrics.connections.labels("viewer", outbox.transport).inc()

    def leave(self, outbox: Outbox) -> None:
        channel = self._channels.get(outbox.club_id, {}).get(outbox.match_id)
        if channel is None:
            return
        if outbox in channel.coaches:
            channel.coaches.discard(outbox)
            self.metrics.connections.labels("coach", outbox.transport).dec()
            self._share_presence(channel)
        elif outbox in channel.viewers:
            channel.viewers.discard(outbox)
            self.metrics.connections.labels("viewer", outbox.transport).dec()
            if not channel.viewers:
                channel.replica = channel.view = None
        if channel.idle:
            self._forget(channel)

    def _forget(self, channel: Channel) -> None:
        club = self._channels.get(channel.club_id)
        if club is not None and club.get(channel.match_id) is channel:
            del club[channel.match_id]
            if not club:
                del self._channels[channel.club_id]

    # -- presence ------------------------------------------------------------------------------

    def editing(self, outbox: Outbox, record: relay.EditingRecord | None) -> None:
        if outbox.editing != record:
            outbox.editing = record
            channel = self._channels.get(outbox.club_id, {}).get(outbox.match_id)
            if channel is not None:
                self._share_presence(channel)

    def _share_presence(self, channel: Channel) -> None:
        """Tell the other instances who is here, and everyone here who is anywhere."""
        local = channel.local_devices()
        self._publish(
            PresenceShared(
                origin=self.instance, club=channel.club_id, match=channel.match_id, devices=local
            )
        )
        self._send_presence(channel)

    def _remote_presence(self, message: PresenceShared) -> None:
        channel = self._channels.get(message.club, {}).get(message.match)
        if channel is not None:
            channel.hear(message.origin, message.devices, time.monotonic())
            self._send_presence(channel)

    def _send_presence(self, channel: Channel) -> None:
        if channel.coaches:
            presence = relay.Presence(seq=max(channel.seq, 0), devices=channel.present_devices())
            self._deliver(list(channel.coaches), [Frame(presence)], "coach")

    # -- revocation ----------------------------------------------------------------------------

    def link_revoked(self, link_id: uuid.UUID) -> None:
        """A coach revoked a share link: end its viewers here now, everywhere else soon."""
        self._end_link(link_id)
        self._publish(LinkRevoked(link=link_id))

    def _end_link(self, link_id: uuid.UUID) -> None:
        self.links.forget()
        for channel in self._all_channels():
            for outbox in [o for o in channel.viewers if o.link_id == link_id]:
                outbox.close(
                    4410, "share link revoked", error_frame(channel.seq, 410, "link-revoked")
                )

    def _sessions_changed_here(self) -> None:
        self._publish(SessionsChanged(origin=self.instance))
        self._spawn(self._recheck_sessions())

    async def _recheck_sessions(self) -> None:
        coaches = [o for c in self._all_channels() for o in c.coaches if o.session_id]
        if not coaches:
            return
        roles = await self._check_sessions([o.session_id for o in coaches if o.session_id])
        for outbox in coaches:
            role = roles.get(outbox.session_id) if outbox.session_id else None
            if role is None:
                outbox.close(4401, "session ended", error_frame(outbox.seq, 401, "session-revoked"))
            elif role not in ("owner", "coach"):
                outbox.close(4403, "role changed", error_frame(outbox.seq, 403, "forbidden"))

    async def _live_sessions(self, session_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        s, m = tables.sessions, tables.memberships
        query = (
            select(s.c.id, m.c.role)
            .join(m, (m.c.club_id == s.c.club_id) & (m.c.user_id == s.c.user_id))
            .where(s.c.id.in_(session_ids), s.c.revoked_at.is_(None))
        )
        async with reading(self._engine) as conn:
            return {row.id: row.role for row in await conn.execute(query)}

    # -- time ------------------------------------------------------------------------------------

    async def _ticker(self) -> None:
        """Once a second: end expired links, and beat the channels whose heartbeat is due.
        Each channel beats on its own phase, so 5,000 viewers' heartbeats spread over the
        interval instead of stalling the loop (and every push) at once."""
        while True:
            await asyncio.sleep(1.0)
            self._own_notices_due()
            now = time.time()
            due = time.monotonic()
            for channel in self._all_channels():
                for outbox in channel.viewers:
                    if outbox.expires_at is not None and outbox.expires_at <= now:
                        outbox.close(
                            4410,
                            "share link expired",
                            error_frame(channel.seq, 410, "link-expired"),
                        )
                if channel.beat_at is None:
                    channel.beat_at = due + random.uniform(0, self._heartbeat_s)
                elif channel.beat_at <= due:
                    channel.beat_at = due + self._heartbeat_s
                    await self._beat(channel)

    def _own_notices_due(self) -> None:
        """Look at the own commits' notices that have waited a full tick: those whose
        announcement never came are relayed from the log (the others are no-ops)."""
        due = self._own_notices.pop(0)
        self._own_notices.append([])
        for notice in due:
            try:
                self._committed(notice)
            except Exception:
                # The ticker also beats and ends expired links: one bad notice must not stop it.
                log.exception("relay: an own commit's notice could not be looked at")

    async def _beat(self, channel: Channel) -> None:
        frame = Frame(Heartbeat(seq=max(channel.seq, 0), server_time_ms=now_ms()))
        self._deliver(list(channel.coaches), [frame], "coach")
        viewers = list(channel.viewers)
        for start in range(0, len(viewers), BEAT_BATCH):
            self._deliver(viewers[start : start + BEAT_BATCH], [frame], "viewer")
            await asyncio.sleep(0)  # a crowd's heartbeats let pushes in between
        forgot = channel.forget_stale(time.monotonic() - 3 * self._heartbeat_s)
        if channel.coaches:
            self._share_presence(channel)
        elif forgot:
            self._send_presence(channel)

"""The HTTP transport against the real server app: answers, refusals and outages."""

from __future__ import annotations

import ast
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.hlc import Hlc
from protocol.wire import Change, PullRequest, PushRequest
from sync_server.app import create_app
from sync_server.db import create_engine
from sync_server.settings import Settings
from touchline_client import HttpTransport, SyncRejected, SyncUnavailable

pytestmark = pytest.mark.anyio

MATCH = uuid.uuid4()


@pytest.fixture
async def http(
    settings: Settings, clean_engine: AsyncEngine
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(settings, engine=clean_engine)) as client:
        yield client


def goal(seq: int, **fields: str | int) -> Change:
    return Change(
        seq=seq,
        hlc=Hlc(1_780_000_000_000 + seq).encode(),
        table="events",
        id=uuid.uuid4(),
        fields={"match_id": str(MATCH), "kind": "goal", **fields},
    )


async def test_push_pull_and_ledger_round_trip(http: AsyncTestClient[Litestar]) -> None:
    transport = HttpTransport(http, uuid.uuid4(), base_url=str(http.base_url))
    ack = await transport.push(PushRequest(device_id="coach-a", changes=[goal(1), goal(2)]))
    assert (ack.acked_seq, ack.applied, ack.duplicates, ack.cursor) == (2, 2, 0, 2)
    page = await transport.pull(PullRequest(device_id="coach-b", limit=1))
    assert [c.seq for c in page.changes] == [1] and page.has_more
    assert await transport.conflicts() == []
    assert await transport.conflicts(MATCH, since=2) == []


async def test_clubs_are_kept_apart_by_the_header(http: AsyncTestClient[Litestar]) -> None:
    ours, theirs = HttpTransport(http, uuid.uuid4()), HttpTransport(http, uuid.uuid4())
    await ours.push(PushRequest(device_id="coach-a", changes=[goal(1)]))
    page = await theirs.pull(PullRequest(device_id="coach-b"))
    assert page.changes == [] and page.cursor == 0


async def test_a_gap_is_refused_naming_the_expected_seq(http: AsyncTestClient[Litestar]) -> None:
    transport = HttpTransport(http, uuid.uuid4())
    with pytest.raises(SyncRejected) as refused:
        await transport.push(PushRequest(device_id="coach-a", changes=[goal(3)]))
    assert (refused.value.status, refused.value.code, refused.value.expected_seq) == (
        409, "sequence-gap", 1,
    )  # fmt: skip
    assert refused.value.max_changes is None and refused.value.errors == []


async def test_an_invalid_set_is_refused_with_its_errors(http: AsyncTestClient[Litestar]) -> None:
    transport = HttpTransport(http, uuid.uuid4())
    request = PushRequest(device_id="coach-a", changes=[goal(1, sentiment=9)])
    with pytest.raises(SyncRejected) as refused:
        await transport.push(request)
    assert (refused.value.status, refused.value.code) == (422, "invalid-change-set")
    assert [e["field"] for e in refused.value.errors] == ["$.changes[0].fields.sentiment"]
    assert "invalid-change-set" in str(refused.value)


async def test_an_unknown_conflict_cannot_be_reinstated(http: AsyncTestClient[Litestar]) -> None:
    transport = HttpTransport(http, uuid.uuid4())
    with pytest.raises(SyncRejected) as refused:
        await transport.reinstate(uuid.uuid4())
    assert refused.value.status == 404


async def test_a_server_error_is_unavailable_not_a_refusal(tmp_path: Path) -> None:
    # A real app whose database was never migrated: every store call fails inside the server.
    empty = Settings.from_env(
        {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", "ENVIRONMENT": "test"}
    )
    engine = create_engine(empty)
    try:
        async with AsyncTestClient(create_app(empty, engine=engine)) as http:
            transport = HttpTransport(http, uuid.uuid4())
            with pytest.raises(SyncUnavailable) as unavailable:
                await transport.pull(PullRequest(device_id="coach-a"))
    finally:
        await engine.dispose()
    status = unavailable.value.status
    assert status is not None and status >= 500
    assert unavailable.value.problem["status"] == status


async def test_an_unreachable_server_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        transport = HttpTransport(client, uuid.uuid4())
        with pytest.raises(SyncUnavailable) as unavailable:
            await transport.pull(PullRequest(device_id="coach-a"))
    assert unavailable.value.status is None
    assert isinstance(unavailable.value.__cause__, httpx.ConnectError)


def test_the_client_needs_nothing_of_the_server() -> None:
    package = Path(__file__).resolve().parents[1] / "clients" / "python" / "touchline_client"
    allowed = {"protocol", "touchline_client", "httpx", "msgspec", "anyio"}
    for source in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = {node.module.split(".")[0]}
            elif isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            else:
                continue
            third_party = {n for n in names if n not in sys.stdlib_module_names}
            assert third_party <= allowed, f"{source.name} imports {third_party - allowed}"

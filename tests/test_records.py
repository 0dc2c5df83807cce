"""The REST foundation: REST devices, refusals in the body's own terms, gap-free pages."""

from __future__ import annotations

import uuid

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.ingest import ServerWrite
from sync_server import tables
from sync_server.auth import Principal
from sync_server.problems import ProblemError
from sync_server.records import Records, rest_device_id
from sync_server.store_pg import open_store
from tests.auth_fixtures import bearer, sign_up

pytestmark = pytest.mark.anyio


def test_rest_device_ids_fit_the_device_id_limit() -> None:
    assert rest_device_id("anna-phone") == "anna-phone:rest"
    long = "x" * 64
    assert len(rest_device_id(long)) <= 64 and rest_device_id(long).endswith(":rest")
    assert rest_device_id(long) == rest_device_id(long) != rest_device_id("y" * 64)


async def _owner(client: AsyncTestClient[Litestar]) -> Principal:
    tokens = await sign_up(client)
    me = (await client.get("/api/auth/me", headers=bearer(tokens))).json()
    return Principal(
        user_id=uuid.UUID(me["user"]["id"]),
        club_id=uuid.UUID(me["club"]["id"]),
        role="owner",
        device_id="phone-a",
        session_id=uuid.uuid4(),
    )


async def test_a_rest_write_is_a_change_of_the_callers_rest_device(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    owner = await _owner(client)
    records = Records(clean_engine, open_store(clean_engine, max_skew_ms=60_000))
    team = uuid.uuid4()
    recorded = await records.write(owner, [ServerWrite("teams", team, {"name": "Hillview"})])
    [change] = recorded.changes
    assert change.device_id == "phone-a:rest" and change.seq == 1 and change.id == team
    # It has seen the club's log, so it is recorded as a causal overwrite: no conflict.
    again = await records.write(owner, [ServerWrite("teams", team, {"name": "Hillview FC"})])
    assert again.conflicts == [] and again.changes[0].seq == 2
    state = await records.require(owner.club_id, tables.teams, team)
    assert state.values()["name"] == "Hillview FC"


async def test_a_refused_rest_write_names_the_bodys_field_and_writes_nothing(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    owner = await _owner(client)
    records = Records(clean_engine, open_store(clean_engine, max_skew_ms=60_000))
    with pytest.raises(ProblemError) as refused:
        await records.write(
            owner,
            [ServerWrite("events", uuid.uuid4(), {"match_id": str(uuid.uuid4()), "kind": "x"})],
        )
    problem = refused.value
    assert problem.status == 422 and problem.code == "validation-failed"
    assert [error["field"] for error in problem.extensions["errors"]] == ["$.kind"]
    async with clean_engine.connect() as conn:
        logged = (await conn.execute(select(func.count()).select_from(tables.change_log))).scalar()
    assert logged == 1  # the signup's team only


async def test_pages_visit_every_record_once(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    owner = await _owner(client)
    records = Records(clean_engine, open_store(clean_engine, max_skew_ms=60_000))
    made = [uuid.uuid4() for _ in range(7)]
    await records.write(owner, [ServerWrite("seasons", i, {"label": str(i)}) for i in made])
    await records.write(owner, [ServerWrite("seasons", made[0], {}, op="delete")])
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await records.page(owner.club_id, tables.seasons, limit=3, cursor=cursor)
        seen += [record_id for record_id, _ in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(made[1:])
    everything = await records.page(owner.club_id, tables.seasons, include_deleted=True)
    assert len(everything.items) == 7 and everything.next_cursor is None
    with pytest.raises(ProblemError):
        await records.page(owner.club_id, tables.seasons, cursor="not a cursor!")

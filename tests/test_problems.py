from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.exceptions import PermissionDeniedException
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient

from sync_server.problems import PROBLEM_MEDIA_TYPE, ProblemError, exception_handlers

pytestmark = pytest.mark.anyio


class Change(msgspec.Struct, forbid_unknown_fields=True):
    seq: int
    table: str


class Push(msgspec.Struct, forbid_unknown_fields=True):
    changes: list[Change]


@post("/push")
async def push(data: JSONBody[Push]) -> dict[str, int]:
    return {"accepted": len(data.changes)}


@get("/gap")
async def gap() -> None:
    raise ProblemError(409, "sequence-gap", "Sequence gap", "expected seq 4", expected_seq=4)


@get("/forbidden")
async def forbidden() -> None:
    raise PermissionDeniedException("not your club")


@get("/broken")
async def broken() -> None:
    raise RuntimeError("secret internals: password=hunter2")


@post("/frame")
async def frame(data: JSONBody[dict[str, Any]]) -> None:
    # A service that decodes a nested payload itself.
    msgspec.json.decode(msgspec.json.encode(data), type=Push)


def problem_app() -> Litestar:
    return Litestar(
        [push, gap, forbidden, broken, frame],
        exception_handlers=exception_handlers(),
        logging_config=None,  # as in create_app; keeps pytest's log capture in place
    )


async def test_unknown_route_is_a_problem() -> None:
    async with AsyncTestClient(problem_app()) as client:
        response = await client.get("/nowhere")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json() == {
        "type": "/problems/not-found",
        "title": "Not Found",
        "status": 404,
        "detail": "Not Found",
    }


async def test_problem_error_keeps_code_and_extensions() -> None:
    async with AsyncTestClient(problem_app()) as client:
        response = await client.get("/gap")

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json() == {
        "type": "/problems/sequence-gap",
        "title": "Sequence gap",
        "status": 409,
        "detail": "expected seq 4",
        "expected_seq": 4,
    }


def test_problem_error_refuses_to_shadow_standard_members() -> None:
    with pytest.raises(ValueError, match="type"):
        ProblemError(400, "bad", "Bad", type="https://elsewhere.example")


async def test_http_exception_keeps_its_status() -> None:
    async with AsyncTestClient(problem_app()) as client:
        response = await client.get("/forbidden")

    assert response.status_code == 403
    assert response.json()["type"] == "/problems/forbidden"
    assert response.json()["detail"] == "not your club"


async def test_unhandled_exception_is_a_generic_500(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="sync_server.problems"):
        async with AsyncTestClient(problem_app()) as client:
            response = await client.get("/broken")

    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json()["type"] == "/problems/internal-error"
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert any(
        record.exc_info and "hunter2" in str(record.exc_info[1]) for record in caplog.records
    )


async def test_malformed_json_body() -> None:
    async with AsyncTestClient(problem_app()) as client:
        response = await client.post(
            "/push", content=b'{"changes": [', headers={"content-type": "application/json"}
        )

    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    problem = response.json()
    assert problem["type"] == "/problems/malformed-body"
    assert problem["errors"][0]["field"] == "$"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (
            {"changes": [{"seq": 1, "table": "events"}, {"seq": "x", "table": "events"}]},
            "$.changes[1].seq",
        ),
        ({"changes": [{"seq": 1, "table": "events", "extra": True}]}, "$.changes[0].extra"),
        ({}, "$.changes"),
        ({"changes": "none"}, "$.changes"),
    ],
)
async def test_body_validation_names_the_field(body: object, path: str) -> None:
    async with AsyncTestClient(problem_app()) as client:
        response = await client.post("/push", json=body)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    problem = response.json()
    assert problem["type"] == "/problems/validation-failed"
    assert [error["field"] for error in problem["errors"]] == [path]
    assert path in problem["detail"]


async def test_msgspec_validation_inside_a_service() -> None:
    async with AsyncTestClient(problem_app()) as client:
        response = await client.post("/frame", json={"changes": [{"seq": True, "table": "t"}]})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "$.changes[0].seq"

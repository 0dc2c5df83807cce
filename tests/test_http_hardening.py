"""Security headers, the access log and the request body cap, on every kind of response."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from litestar import Litestar, MediaType, Request, Response, WebSocket, get, post, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath
from litestar.testing import AsyncTestClient

from sync_server.http_hardening import ACCESS_LOGGER, harden_app
from sync_server.problems import PROBLEM_MEDIA_TYPE, exception_handlers
from sync_server.routes import api_docs

pytestmark = pytest.mark.anyio

TIMEOUT_S = 10
PAGE = "<!DOCTYPE html><html><body>Riverside U10</body></html>"
STRICT_CSP = (
    "default-src 'self'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'; "
    "form-action 'self'"
)


@get("/ok")
async def ok() -> dict[str, bool]:
    return {"ok": True}


@get("/boom")
async def boom() -> None:
    raise RuntimeError("secret internals")


@get("/page", media_type=MediaType.HTML)
async def page() -> str:
    return PAGE


@get("/watch/{token:str}/overlay", media_type=MediaType.HTML)
async def overlay(token: FromPath[str]) -> str:
    return PAGE


@get("/own-headers", media_type=MediaType.HTML)
async def own_headers() -> Response[str]:
    return Response(
        PAGE,
        media_type=MediaType.HTML,
        headers={"Content-Security-Policy": "default-src 'none'", "X-Frame-Options": "SAMEORIGIN"},
    )


@post("/echo")
async def echo(request: Request[Any, Any, Any]) -> dict[str, int]:
    return {"received": len(await request.body())}


@get("/request-id")
async def request_id(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {"request_id": request.state.request_id}


@websocket("/live")
async def live(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    await socket.send_json({"hello": True})
    await socket.close()


@websocket("/closed")
async def closed(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.close(code=4403)


def hardened_app(*, hsts: bool = False, max_body: int = 10_000) -> Litestar:
    app = Litestar(
        [ok, boom, page, overlay, own_headers, echo, request_id, live, closed],
        exception_handlers=exception_handlers(),
        request_max_body_size=max_body,
        logging_config=None,
    )
    return harden_app(app, hsts=hsts)


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(hardened_app()) as test_client:
        yield test_client


def assert_baseline(response: httpx.Response, *, framed: bool = False) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cross-origin-opener-policy"] == "same-origin"
    if not framed:
        assert response.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in response.headers


async def test_headers_on_a_200(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/ok")

    assert response.status_code == 200
    assert_baseline(response)
    assert "content-security-policy" not in response.headers  # JSON is never rendered


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/nowhere", 404), ("PUT", "/ok", 405)]
)
async def test_headers_on_a_response_no_route_produced(
    client: AsyncTestClient[Litestar], method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)

    assert response.status_code == status
    assert_baseline(response)
    assert response.headers["x-request-id"]


async def test_headers_on_a_500(
    client: AsyncTestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.CRITICAL, logger="sync_server.problems"):
        response = await client.get("/boom")

    assert response.status_code == 500
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert_baseline(response)


async def test_html_gets_a_strict_content_security_policy(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/page")

    assert response.headers["content-security-policy"] == STRICT_CSP
    assert_baseline(response)


async def test_an_overlay_may_be_framed_by_streaming_software(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/watch/share-token/overlay")

    assert "x-frame-options" not in response.headers
    assert "frame-ancestors *" in response.headers["content-security-policy"]
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert_baseline(response, framed=True)


async def test_headers_the_handler_set_are_kept(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/own-headers")

    assert response.headers.get_list("content-security-policy") == ["default-src 'none'"]
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_hsts_only_when_asked() -> None:
    async with AsyncTestClient(hardened_app(hsts=True)) as client:
        answered = await client.get("/ok")
        missing = await client.get("/nowhere")

    for response in (answered, missing):
        assert response.headers["strict-transport-security"] == (
            "max-age=63072000; includeSubDomains"
        )


async def test_the_api_explorer_loads_under_its_policy() -> None:
    app = harden_app(
        Litestar(
            [api_docs.assets_router()],
            openapi_config=OpenAPIConfig(
                title="Touchline",
                version="test",
                path="/schema",
                render_plugins=[api_docs.swagger_plugin()],
            ),
            logging_config=None,
        ),
        hsts=False,
    )
    async with AsyncTestClient(app) as client:
        explorer = await client.get("/schema")
        bundle = await client.get(f"{api_docs.ASSETS_PATH}/swagger-ui-bundle.js")

    assert explorer.status_code == 200 and "SwaggerUIBundle(" in explorer.text
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in explorer.headers["content-security-policy"].split(";")
    )
    # Its inline script and style run; its assets come from this origin; nothing frames it.
    assert "'unsafe-inline'" in policy["script-src"] and "'self'" in policy["script-src"]
    assert "'unsafe-inline'" in policy["style-src"]
    assert "data:" in policy["img-src"]
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert f'src="{api_docs.ASSETS_PATH}/swagger-ui-bundle.js"' in explorer.text
    assert bundle.status_code == 200
    # The relaxed policy is the explorer's alone.
    assert "content-security-policy" not in bundle.headers


async def test_a_valid_request_id_is_echoed(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/ok", headers={"X-Request-ID": "phone-a.retry_2"})

    assert response.headers["x-request-id"] == "phone-a.retry_2"


@pytest.mark.parametrize("offered", [None, "", "has space", "x" * 65, "semi;colon"])
async def test_a_missing_or_unusable_request_id_is_replaced(
    client: AsyncTestClient[Litestar], offered: str | None
) -> None:
    headers = {} if offered is None else {"X-Request-ID": offered}
    response = await client.get("/ok", headers=headers)

    generated = response.headers["x-request-id"]
    assert generated != offered and len(generated) == 32
    int(generated, 16)


async def test_handlers_see_the_request_id(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/request-id", headers={"X-Request-ID": "abc-123"})

    assert response.json() == {"request_id": "abc-123"}


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == ACCESS_LOGGER]


async def test_one_log_line_per_request_without_query_or_headers(
    client: AsyncTestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        response = await client.get(
            "/ok?token=query-secret", headers={"Authorization": "Bearer header-secret"}
        )

    (record,) = access_records(caplog)
    line = record.getMessage()
    assert "query-secret" not in line and "header-secret" not in line and "?" not in line
    assert record.levelno == logging.INFO
    fields = record.__dict__
    assert fields["method"] == "GET" and fields["path"] == "/ok" and fields["status"] == 200
    assert fields["request_id"] == response.headers["x-request-id"]
    assert isinstance(fields["duration_ms"], float) and fields["duration_ms"] >= 0
    assert "GET /ok 200" in line


async def test_share_tokens_in_paths_stay_out_of_the_log(
    client: AsyncTestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        await client.get("/watch/share-s3cret/overlay")

    (record,) = access_records(caplog)
    assert record.__dict__["path"] == "/watch/{token}/overlay"
    assert "share-s3cret" not in record.getMessage()


async def test_an_unhandled_404_is_logged_too(
    client: AsyncTestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        await client.get("/nowhere")

    (record,) = access_records(caplog)
    assert record.__dict__["status"] == 404 and record.__dict__["path"] == "/nowhere"


async def test_unprintable_characters_in_a_path_cannot_forge_log_lines(
    client: AsyncTestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        await client.get("/nowhere%0AINFO%20forged")

    (record,) = access_records(caplog)
    assert "\n" not in record.getMessage()
    assert record.__dict__["path"] == "/nowhere\\nINFO forged"


class LastWebSocketLine(logging.Handler):
    """Signals when the access log writes a WebSocket's last line.

    The test client hands over the close frame before the app has returned, so the line
    written after it must be waited for.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.written = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.__dict__.get("event") in ("close", "refused"):
            self.written.set()


@pytest.fixture
def last_websocket_line() -> Iterator[LastWebSocketLine]:
    handler = LastWebSocketLine()
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def test_websockets_log_connect_and_close_with_the_path_only(
    client: AsyncTestClient[Litestar],
    caplog: pytest.LogCaptureFixture,
    last_websocket_line: LastWebSocketLine,
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        session = await client.websocket_connect("/live", params={"token": "ws-secret"})
        with session:
            assert session.receive_json(timeout=TIMEOUT_S) == {"hello": True}
        assert await anyio.to_thread.run_sync(last_websocket_line.written.wait, TIMEOUT_S)

    events = [record.__dict__["event"] for record in access_records(caplog)]
    assert events == ["connect", "close"]
    for record in access_records(caplog):
        assert record.__dict__["path"] == "/live"
        assert "ws-secret" not in record.getMessage()


async def test_a_body_over_the_cap_is_a_413_problem(client: AsyncTestClient[Litestar]) -> None:
    small = await client.post("/echo", content=b"x" * 100)
    announced = await client.post("/echo", content=b"x" * 10_001)

    assert small.status_code == 201 and small.json() == {"received": 100}
    assert announced.status_code == 413
    assert announced.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert announced.json()["status"] == 413
    assert_baseline(announced)


async def test_a_chunked_body_over_the_cap_is_a_413_problem_too() -> None:
    # Litestar's test client cannot stream a request body; httpx's ASGI transport sends each
    # chunk as its own http.request message, without a Content-Length.
    asgi_app: Any = hardened_app(max_body=1000)

    async def chunks(count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield b"x" * 300

    transport = httpx.ASGITransport(asgi_app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://club.test", timeout=TIMEOUT_S
    ) as http:
        within = await http.post("/echo", content=chunks(3))
        over = await http.post("/echo", content=chunks(5))

    assert over.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in over.request.headers
    assert within.status_code == 201 and within.json() == {"received": 900}
    assert over.status_code == 413
    assert over.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert over.json()["status"] == 413


async def test_a_refused_websocket_is_logged_once(
    client: AsyncTestClient[Litestar],
    caplog: pytest.LogCaptureFixture,
    last_websocket_line: LastWebSocketLine,
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        session = await client.websocket_connect("/closed", params={"token": "ws-secret"})
        with pytest.raises(WebSocketDisconnect), session:
            pass  # the handshake itself is refused
        assert await anyio.to_thread.run_sync(last_websocket_line.written.wait, TIMEOUT_S)

    (record,) = access_records(caplog)
    assert record.__dict__["event"] == "refused" and record.__dict__["code"] == 4403
    assert "ws-secret" not in record.getMessage()

"""HTTP hardening: security headers on every response and one access-log line per request.

Both middlewares belong outside Litestar's routing, CORS and exception handling (see
`harden_app`): Litestar runs `middleware=[...]` only for requests that matched a route, and a
404, a 405 or a CORS preflight needs its headers and its log line as much as a 200 does.

Request bodies are capped by Litestar itself: `Litestar(request_max_body_size=...)` answers 413
for an announced Content-Length and for chunked bodies alike, through the app's exception
handlers, so there is no middleware for it here.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Final

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from sync_server.logs import REQUEST_ID

__all__ = [
    "ACCESS_LOGGER",
    "RequestLogMiddleware",
    "SecurityHeadersMiddleware",
    "harden_app",
]

ACCESS_LOGGER: Final = "sync_server.access"
access_log = logging.getLogger(ACCESS_LOGGER)

_HEADER_ID: Final = b"x-request-id"
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Path parameters that carry credentials (share tokens, invite codes) stay out of the log.
_SECRET_PARAM: Final = re.compile(r"token|secret|code|key", re.IGNORECASE)

_STRICT_CSP: Final = (
    "default-src 'self'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'; "
    "form-action 'self'"
)
# Streaming software (OBS and the like) frames the overlay from anywhere.
_OVERLAY_CSP: Final = _STRICT_CSP.replace("frame-ancestors 'none'", "frame-ancestors *")
# Litestar renders Swagger UI with an inline script holding the whole OpenAPI document and an
# inline style; its CSS embeds data: images. The page shows nothing user-supplied, so inline
# code is allowed there and only there.
_DOCS_CSP: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; object-src 'none'; "
    "form-action 'self'"
)
_HSTS: Final = "max-age=63072000; includeSubDomains"


def _is_overlay(path: str) -> bool:
    return path.startswith("/watch/") and path.endswith("/overlay")


def _is_docs(path: str) -> bool:
    return path == "/schema" or path.startswith("/schema/")


class SecurityHeadersMiddleware(ASGIMiddleware):
    """Adds browser-hardening headers to every HTTP response, keeping any the handler set.

    `hsts=True` (production, behind TLS) adds Strict-Transport-Security; over plain HTTP on a
    club's laptop it would only pin a browser to an HTTPS that does not exist.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, *, hsts: bool = False) -> None:
        self._hsts = hsts

    def headers_for(self, path: str, content_type: str) -> dict[str, str]:
        """The headers a response to `path` with `content_type` should carry."""
        overlay = _is_overlay(path)
        headers = {
            "x-content-type-options": "nosniff",
            # Share tokens travel in URLs; no referrer keeps them from leaking to other sites.
            "referrer-policy": "no-referrer",
            "cross-origin-opener-policy": "same-origin",
        }
        if not overlay:
            headers["x-frame-options"] = "DENY"
        if content_type.split(";", 1)[0].strip().lower() == "text/html":
            if overlay:
                headers["content-security-policy"] = _OVERLAY_CSP
            elif _is_docs(path):
                headers["content-security-policy"] = _DOCS_CSP
            else:
                headers["content-security-policy"] = _STRICT_CSP
        if self._hsts:
            headers["strict-transport-security"] = _HSTS
        return headers

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        path = scope["path"]

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                existing = list(message["headers"])
                names = {name.lower() for name, _ in existing}
                content_type = next(
                    (
                        value.decode("latin-1")
                        for name, value in existing
                        if name.lower() == b"content-type"
                    ),
                    "",
                )
                added = [
                    (name.encode(), value.encode())
                    for name, value in self.headers_for(path, content_type).items()
                    if name.encode() not in names
                ]
                # A copy: a cached response replays the same message objects.
                message = message.copy()
                message["headers"] = existing + added
            await send(message)

        await next_app(scope, receive, send_hardened)


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _request_id(scope: Scope) -> str:
    offered = next((value for name, value in scope["headers"] if name == _HEADER_ID), b"")
    text = offered.decode("latin-1")
    return text if _REQUEST_ID.fullmatch(text) else uuid.uuid4().hex


def _loggable_path(path: str, params: Mapping[str, object] | None) -> str:
    """The path with secret-bearing path parameters replaced by their names and unprintable
    characters escaped (a decoded %0A must not start a forged log line)."""
    secrets = {
        str(value): "{" + name + "}"
        for name, value in (params or {}).items()
        if _SECRET_PARAM.search(name) and str(value)
    }
    if secrets:
        path = "/".join(secrets.get(segment, segment) for segment in path.split("/"))
    if path.isprintable():
        return path
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in path)


class RequestLogMiddleware(ASGIMiddleware):
    """One INFO line per request on `sync_server.access`, tagged with a request id.

    The id is the client's `X-Request-ID` when it is 1-64 characters of [A-Za-z0-9._-] (so a
    phone can correlate its retries), otherwise a fresh one; it is echoed on the response and
    left in `scope["state"]["request_id"]` for handlers. Only the method, the path (never the
    query string, where WebSocket tokens travel), the status and the duration are logged.
    """

    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        # Whatever is logged while this request is served carries its id (sync_server.logs).
        current = REQUEST_ID.set(request_id)
        # Read now: routing into a mounted app may rewrite scope["path"] on the way in.
        path = scope["path"]
        try:
            if scope["type"] == ScopeType.WEBSOCKET:
                await self._websocket(scope, receive, send, next_app, request_id, path)
            else:
                await self._http(scope, receive, send, next_app, request_id, path)
        finally:
            REQUEST_ID.reset(current)

    async def _http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        next_app: ASGIApp,
        request_id: str,
        raw_path: str,
    ) -> None:
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before responding

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message["headers"])
                if all(name.lower() != _HEADER_ID for name, _ in headers):
                    headers.append((_HEADER_ID, request_id.encode()))
                message = message.copy()
                message["headers"] = headers
            await send(message)

        try:
            await next_app(scope, receive, send_with_id)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            method = scope.get("method", "GET")
            path = _loggable_path(raw_path, scope.get("path_params"))
            access_log.info(
                "%s %s %d %.1fms request_id=%s",
                method,
                path,
                status,
                duration_ms,
                request_id,
                extra={
                    "request_id": request_id,
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": duration_ms,
                    # After uvicorn applied a trusted proxy's X-Forwarded-For.
                    "client": _client(scope),
                },
            )

    async def _websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        next_app: ASGIApp,
        request_id: str,
        raw_path: str,
    ) -> None:
        started = time.perf_counter()
        accepted = False
        close_code: int | None = None
        denial_status: int | None = None

        def log(event: str, **fields: object) -> None:
            path = _loggable_path(raw_path, scope.get("path_params"))
            details = "".join(f" {key}={value}" for key, value in fields.items())
            access_log.info(
                "WS %s %s%s request_id=%s",
                path,
                event,
                details,
                request_id,
                extra={"request_id": request_id, "method": "WS", "path": path, "event": event}
                | fields,
            )

        async def watch_send(message: Message) -> None:
            nonlocal accepted, close_code, denial_status
            if message["type"] == "websocket.accept":
                accepted = True
                log("connect")
            elif message["type"] == "websocket.close":
                close_code = message.get("code", 1000)
            elif message["type"] == "websocket.http.response.start":
                denial_status = message["status"]
            await send(message)

        async def watch_receive() -> ReceiveMessage:
            nonlocal close_code
            message = await receive()
            if message["type"] == "websocket.disconnect" and close_code is None:
                close_code = message.get("code", 1005)
            return message

        try:
            await next_app(scope, watch_receive, watch_send)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            if accepted:
                log("close", code=close_code, duration_ms=duration_ms)
            else:
                outcome = {"status": denial_status} if denial_status else {"code": close_code}
                log("refused", **outcome, duration_ms=duration_ms)


def harden_app(app: Litestar, *, hsts: bool) -> Litestar:
    """Wrap the whole app (routing, CORS, exception handlers included) in the request log and
    the security headers, so every response gets both; returns the same app.

    Litestar runs `middleware=[...]` only for requests that matched a route. `app.asgi_handler`
    (built once, in the constructor, and called for every connection) is the one hook outside
    routing; it is not a documented extension point, so the tests pin what this relies on.
    """
    security = SecurityHeadersMiddleware(hsts=hsts)
    app.asgi_handler = RequestLogMiddleware()(security(app.asgi_handler))
    return app

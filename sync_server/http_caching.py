"""ETags on GET answers, so a phone re-asking for an unchanged match pays no body at all.

The tag is a hash of the answer's bytes as the handler produced them (before compression):
any change to the merged records changes it. A request whose ``If-None-Match`` names the
current tag gets ``304 Not Modified`` with no body. Only successful GETs are tagged.
"""

from __future__ import annotations

import hashlib
from typing import Final

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send

__all__ = ["ETagMiddleware", "etag_of"]

_HEAD_HEADERS_KEPT: Final = (b"cache-control", b"vary", b"x-request-id")


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


class ETagMiddleware(ASGIMiddleware):
    """Tags 200 answers to GET with a strong ETag and answers 304 to a matching
    ``If-None-Match``. Buffers the answer, so it belongs on JSON routes only."""

    scopes = (ScopeType.HTTP,)
    # Streams (Server-Sent Events) never end: never buffer them.
    exclude_opt_key = "no_buffering"

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope.get("method") != "GET":
            await next_app(scope, receive, send)
            return
        start: HTTPResponseStartEvent | None = None
        chunks: list[bytes] = []

        async def buffer(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await _finish(scope, send, start, b"".join(chunks))

        await next_app(scope, receive, buffer)


async def _finish(scope: Scope, send: Send, start: HTTPResponseStartEvent, body: bytes) -> None:
    if start["status"] != 200:
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return
    etag = etag_of(body)
    headers = [(name, value) for name, value in start.get("headers", []) if name != b"etag"]
    headers.append((b"etag", etag.encode()))
    request_headers = dict(scope.get("headers", []))
    if_none_match = request_headers.get(b"if-none-match", b"").decode("latin-1")
    if if_none_match and _matches(if_none_match, etag):
        kept = [(name, value) for name, value in headers if name in (*_HEAD_HEADERS_KEPT, b"etag")]
        await send({"type": "http.response.start", "status": 304, "headers": kept})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})

"""Every error leaves the server as `application/problem+json` (RFC 9457).

Services raise `ProblemError` with a stable machine-readable `code`; the handlers here also
translate Litestar's own exceptions and msgspec decode errors, and turn anything unexpected
into a generic 500 whose details stay in the log, never in the response.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.exceptions import SerializationException as LitestarSerializationException
from litestar.openapi import ResponseSpec
from litestar.types import ExceptionHandlersMap
from litestar.utils.scope.state import ScopeState
from sqlalchemy import exc as sql_errors

from sync_server.body_errors import body_errors

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "FieldError",
    "Problem",
    "ProblemError",
    "exception_handlers",
    "problem_response",
    "problem_responses",
]

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_PREFIX: Final = "/problems/"

# Members defined by RFC 9457 that are not parameters of `ProblemError` (those cannot be
# passed twice anyway); extensions may not shadow them.
_RESERVED_MEMBERS: Final = frozenset({"type", "instance"})
# msgspec appends the failing location to its message: "Expected `int`, got `str` - at `$[0]`".
_MSGSPEC_PATH: Final = re.compile(r" - at `(?P<path>\$[^`]*)`$")
# Errors about a member name the member only in the message; the path stops at its object.
_MEMBER_IN_MESSAGE: Final = re.compile(
    r"^Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`"
)


class FieldError(msgspec.Struct, frozen=True, kw_only=True):
    """One part of a request that failed validation (OpenAPI documentation of `errors`)."""

    field: str
    """A JSON path into the body (``$.changes[0].seq``), or the parameter's name."""
    message: str
    source: str | msgspec.UnsetType = msgspec.UNSET
    """Where the value was: ``body``, ``query``, ``path``, ``header`` or ``cookie``. Only on
    ``malformed-body`` and ``validation-failed``; ``invalid-change-set`` items have none."""


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """How every error answers: ``application/problem+json`` (RFC 9457).

    Only documents the responses (`problem_response` builds them); problems of some types
    carry further members, such as ``retry_after`` or ``expected_seq``.
    """

    type: str
    """``/problems/<code>``; clients branch on the code."""
    title: str
    status: int
    detail: str
    errors: list[FieldError] = []
    """On problems with parts of the request (``validation-failed``, ``malformed-body``,
    ``invalid-change-set``, ``invalid-request``): what was wrong, and where."""


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI `responses=` for a handler: each status it can answer besides its success.

    A 500 is added to every handler: any of them can fail, and it answers a problem too.
    Without these, the schema would only document Litestar's own 400 body, which the app's
    exception handlers never send.
    """
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_MEDIA_TYPE,
            description=_status_phrase(status),
            generate_examples=False,
        )
        for status in sorted({*map(int, statuses), int(HTTPStatus.INTERNAL_SERVER_ERROR)})
    }


class ProblemError(Exception):
    """An error a service reports to the client: status, stable code, human text, extras.

    `code` is the last segment of the problem `type` (`/problems/<code>`); clients branch on it.
    Extension members (for example `expected_seq=12`) are added to the body as they are.
    """

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(f"{status} {code}: {detail or title}")
        if shadowed := _RESERVED_MEMBERS.intersection(extensions):
            raise ValueError(f"extension members may not redefine {sorted(shadowed)}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str = "",
    *,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Response[dict[str, Any]]:
    """A problem+json response; extensions go in the body next to the standard members."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": title,
        "status": status,
        "detail": detail or title,
        **extensions,
    }
    return Response(
        body,
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def _problem_error(_: Request[Any, Any, Any], exc: ProblemError) -> Response[dict[str, Any]]:
    return problem_response(
        exc.status, exc.code, exc.title, exc.detail, headers=exc.headers, **exc.extensions
    )


def _validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, Any]]:
    errors = [_field_error(item) for item in exc.extra or () if isinstance(item, Mapping)]
    if errors and all(error["source"] == "body" for error in errors):
        errors = _every_body_error(request) or errors
    if not errors:
        # A missing header or query parameter: Litestar's own message names it.
        return problem_response(
            exc.status_code, "invalid-request", "Invalid request", exc.detail, errors=[]
        )
    return problem_response(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "validation-failed",
        "Request failed validation",
        "; ".join(f"{error['field']}: {error['message']}" for error in errors)
        or "The request does not match the expected schema.",
        errors=errors,
    )


def _every_body_error(request: Request[Any, Any, Any]) -> list[dict[str, str]]:
    """All problems of the body, where msgspec reported only its first."""
    # Handlers here are synchronous, so the body is read from where Litestar cached it
    # when it decoded (and refused) it.
    raw = ScopeState.from_scope(request.scope).body
    handler = request.scope.get("route_handler")
    if not isinstance(raw, bytes) or handler is None:
        return []
    data = handler.parsed_fn_signature.parameters.get("data")
    return body_errors(data.annotation, raw) if data is not None else []


def _field_error(item: Mapping[str, Any]) -> dict[str, str]:
    """Litestar's {key, message, source} error item as {field, message, source}."""
    raw_source = item.get("source") or "body"
    source = str(getattr(raw_source, "value", raw_source))
    key = str(item.get("key") or "")
    message = str(item.get("message") or "invalid value")
    if source == "body":
        # Litestar calls the whole body "data"; its members appear without the prefix.
        path = "$" if key in ("", "data") else "$." + key
        if member := _MEMBER_IN_MESSAGE.match(message):
            path += "." + member["name"]
    else:
        path = key
    return {"field": path, "message": message, "source": source}


def _msgspec_error(_: Request[Any, Any, Any], exc: msgspec.DecodeError) -> Response[dict[str, Any]]:
    # A service decoding a payload itself (for example a batch inside a frame).
    message, path = _split_msgspec_message(str(exc))
    if isinstance(exc, msgspec.ValidationError):
        return problem_response(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "validation-failed",
            "Request failed validation",
            f"{path}: {message}",
            errors=[{"field": path, "message": message, "source": "body"}],
        )
    return _malformed_body(message)


def _split_msgspec_message(text: str) -> tuple[str, str]:
    match = _MSGSPEC_PATH.search(text)
    if match is None:
        return text, "$"
    return text[: match.start()], match["path"]


def _malformed_body(message: str) -> Response[dict[str, Any]]:
    return problem_response(
        HTTPStatus.BAD_REQUEST,
        "malformed-body",
        "Malformed request body",
        message,
        errors=[{"field": "$", "message": message, "source": "body"}],
    )


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if isinstance(exc, ClientException) and isinstance(
        exc.__cause__, LitestarSerializationException
    ):
        # Litestar reports an undecodable JSON body as a 400 caused by a serialization error.
        return _malformed_body(exc.detail)
    title = _status_phrase(exc.status_code)
    code = _STABLE_CODES.get(exc.status_code) or title.lower().replace(" ", "-").replace("'", "")
    if exc.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
        logger.error("%s %s failed: %r", request.method, request.url.path, exc)
        # Server-side details stay in the log.
        return problem_response(exc.status_code, code, title, headers=exc.headers)
    return problem_response(exc.status_code, code, title, exc.detail or title, headers=exc.headers)


# Codes clients branch on must not follow Python's status phrases, which get renamed (3.13
# calls 413 "Content Too Large").
_STABLE_CODES: Final[dict[int, str]] = {413: "request-entity-too-large"}


def _status_phrase(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Error"


def _unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "internal-error",
        "Internal server error",
        "The server failed to handle this request; it has been logged.",
    )


_UNAVAILABLE_TITLE: Final = "Database unavailable"
_UNAVAILABLE_DETAIL: Final = (
    "The database cannot be reached right now; nothing of this request was applied. "
    "Retry after the delay given in Retry-After."
)


def database_unavailable_problem() -> ProblemError:
    """The 503 a live socket answers a push with when the database cannot serve it."""
    return ProblemError(
        503,
        "database-unavailable",
        _UNAVAILABLE_TITLE,
        "The database cannot be reached right now; nothing of this change set was applied. "
        "Send it again after retry_after seconds.",
        retry_after=1,
    )


def _database_unavailable(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, Any]]:
    # The database is down or restarting: nothing was acknowledged, so the client retries.
    logger.warning("database unavailable in %s %s: %r", request.method, request.url.path, exc)
    return problem_response(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "database-unavailable",
        _UNAVAILABLE_TITLE,
        _UNAVAILABLE_DETAIL,
        headers={"Retry-After": "1"},
    )


# SQLSTATE classes and codes that mean "the database is not available right now", whatever
# exception class the driver raised them as: connection exceptions, PostgreSQL starting up,
# shutting down or refusing connections, too many connections, out of resources.
_UNAVAILABLE_STATES: Final = ("08", "57P01", "57P02", "57P03", "53")


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot serve now (retry later) rather than that
    this request is wrong."""
    if isinstance(exc, sql_errors.OperationalError | sql_errors.InterfaceError | TimeoutError):
        return True
    if isinstance(exc, sql_errors.DBAPIError):
        if exc.connection_invalidated:
            return True
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return isinstance(state, str) and state.startswith(_UNAVAILABLE_STATES)
    # The push path speaks asyncpg directly (sync_server.store_pg): its errors arrive raw.
    if isinstance(exc, asyncpg.InterfaceError):  # a closed or broken connection
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None)
        return isinstance(state, str) and state.startswith(_UNAVAILABLE_STATES)
    return isinstance(exc, OSError)


def _database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if database_unavailable(exc):
        return _database_unavailable(request, exc)
    return _unexpected_error(request, exc)


def exception_handlers() -> ExceptionHandlersMap:
    """The handlers to install on the app; Litestar picks the most specific class."""
    return {
        ProblemError: _problem_error,
        ValidationException: _validation_error,
        msgspec.DecodeError: _msgspec_error,
        HTTPException: _http_error,
        sql_errors.OperationalError: _database_unavailable,
        sql_errors.InterfaceError: _database_unavailable,
        sql_errors.TimeoutError: _database_unavailable,
        # PostgreSQL refusing connections while it starts or stops (57P03) arrives as a bare
        # DBAPIError: told apart by its SQLSTATE, it is a 503, not a 500.
        sql_errors.DBAPIError: _database_error,
        asyncpg.PostgresError: _database_error,
        asyncpg.InterfaceError: _database_unavailable,
        OSError: _database_unavailable,
        Exception: _unexpected_error,
    }

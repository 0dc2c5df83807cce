"""What the REST route modules share: documented error statuses, list query parameters, and
conversions between request members, protocol field values and answers."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Final, cast

import msgspec
from litestar.openapi import ResponseSpec
from litestar.params import QueryParameter

from protocol.schema import Scalar
from sync_server.problems import problem_responses
from sync_server.records import MAX_PAGE

__all__ = [
    "ANY_ERRORS",
    "BODY_ERRORS",
    "QUERY_ERRORS",
    "WRITER_ERRORS",
    "Cursor",
    "IncludeDeleted",
    "Limit",
    "as_date",
    "as_float",
    "as_int",
    "as_text",
    "as_uuid",
    "carried",
    "responses",
    "to_scalar",
]

# Every route: a request Litestar rejects or an invalid query (400), no or a revoked token
# (401), rate limited (429), the database gone (503).
ANY_ERRORS: Final = (400, 401, 429, 503)
# Routes for writers only: a viewer is refused (403).
WRITER_ERRORS: Final = (*ANY_ERRORS, 403)
# Routes with a JSON body: too large (413), failing validation, field by field (422).
BODY_ERRORS: Final = (413, 422)
# Query parameters of the wrong type (422, naming the parameter).
QUERY_ERRORS: Final = (422,)

Limit = Annotated[
    int,
    # Documented bounds only: outside them Records.page answers 400 invalid-query.
    QueryParameter(
        description="Most items in this page",
        schema_extra={"minimum": 1, "maximum": MAX_PAGE},
    ),
]
Cursor = Annotated[
    str | None,
    QueryParameter(description="The next_cursor of the previous page; absent for the first"),
]
IncludeDeleted = Annotated[
    bool, QueryParameter(description="Also list archived records (with deleted: true)")
]


def responses(*statuses: int, cached: bool = False) -> dict[int, ResponseSpec]:
    """Problem responses, plus the 304 a GET answers to a current If-None-Match tag."""
    documented = problem_responses(*statuses)
    if cached:
        documented[304] = ResponseSpec(
            data_container=None,
            description="Not Modified: the If-None-Match tag names the current answer",
            generate_examples=False,
        )
    return documented


# -- stored field values to answers ----------------------------------------------------------


def as_text(value: Scalar) -> str | None:
    return value if isinstance(value, str) else None


def as_int(value: Scalar) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_float(value: Scalar) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def as_uuid(value: Scalar) -> uuid.UUID | None:
    return uuid.UUID(value) if isinstance(value, str) else None


def as_date(value: Scalar) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else None


# -- request members to field values ------------------------------------------------------------


def to_scalar(value: Any) -> Scalar:
    """A request member as a field value of the protocol (§2.4)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, date):  # datetimes too: RFC 3339 with their offset
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        # JSON 50 decodes as 50.0 into a float member; write it as 50, as JavaScript clients do.
        return int(value)
    return cast(Scalar, value)


def carried(data: msgspec.Struct, *, skip: tuple[str, ...] = ("id",)) -> dict[str, Scalar]:
    """The fields a request carries (absent members are not written; null clears)."""
    return {
        name: to_scalar(getattr(data, name))
        for name in data.__struct_fields__
        if name not in skip and getattr(data, name) is not msgspec.UNSET
    }

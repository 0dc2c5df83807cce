"""Every problem of a request body, not only the first.

msgspec stops decoding at the first error. When a body fails, this module checks it again
member by member against the handler's body type, so a 422 names each bad field (an unknown
member, a missing one, a wrong type or range) and the app can fix them all in one go.
"""

from __future__ import annotations

import re
import typing
from typing import Any, Final

import msgspec

__all__ = ["body_errors"]

_AT: Final = re.compile(r" - at `\$(?P<rest>[^`]*)`$")
# Errors about a member name it only in the message; the path stops at its object.
_MEMBER: Final = re.compile(
    r"^Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`"
)


def body_errors(body_type: Any, raw: bytes) -> list[dict[str, str]]:
    """Each problem of ``raw`` as ``{field, message, source}``; empty when the body is not a
    JSON object or ``body_type`` is not a msgspec Struct (the caller keeps its own answer)."""
    if not (isinstance(body_type, type) and issubclass(body_type, msgspec.Struct)):
        return []
    try:
        document = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return []
    if not isinstance(document, dict):
        return []
    info = msgspec.inspect.type_info(body_type)
    assert isinstance(info, msgspec.inspect.StructType)
    hints = typing.get_type_hints(body_type, include_extras=True)
    by_wire_name = {field.encode_name: field for field in info.fields}
    errors: list[dict[str, str]] = []
    if info.forbid_unknown_fields:
        for name in document:
            if name not in by_wire_name:
                errors.append(_error(f"$.{name}", f"Object contains unknown field `{name}`"))
    for wire_name, field in by_wire_name.items():
        if wire_name not in document:
            if field.required:
                errors.append(
                    _error(f"$.{wire_name}", f"Object missing required field `{wire_name}`")
                )
            continue
        try:
            msgspec.convert(document[wire_name], type=hints[field.name], strict=True)
        except msgspec.ValidationError as exc:
            message, rest = _split(str(exc))
            if member := _MEMBER.match(message):
                rest += "." + member["name"]
            errors.append(_error(f"$.{wire_name}{rest}", message))
    return errors


def _split(text: str) -> tuple[str, str]:
    match = _AT.search(text)
    if match is None:
        return text, ""
    return text[: match.start()], match["rest"]


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message, "source": "body"}

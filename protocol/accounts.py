"""Wire types of accounts, club membership and share links (JSON via msgspec).

Requests reject unknown fields, as in `protocol.wire`; responses may grow new fields, so
clients decode them leniently. PROTOCOL.md §2 describes each exchange.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec

from protocol.hlc import END_OF_TEXT
from protocol.wire import DeviceId

Role = Literal["owner", "coach", "viewer"]
InvitedRole = Literal["coach", "viewer"]

# Deliberately loose: one "@" with something on each side and a dot in the domain. Whether
# an address really receives mail is not something a pattern can tell.
Email = Annotated[
    str,
    msgspec.Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+" + END_OF_TEXT),
]
# Long passphrases welcome; the cap only bounds the work one request can ask of the KDF.
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=256)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
InviteCode = Annotated[str, msgspec.Meta(min_length=4, max_length=64)]
OpaqueToken = Annotated[str, msgspec.Meta(min_length=16, max_length=512)]


class SignupRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Either ``team_name`` (a new club with that team, owned by the new user) or
    ``invite_code`` (join the inviting club with the invite's role)."""

    email: Email
    password: Password
    team_name: Name | None = None
    invite_code: InviteCode | None = None
    device_id: DeviceId | None = None


class LoginRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    email: Email
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    device_id: DeviceId | None = None
    """The device's sync id; the server assigns one when it is absent."""


class RefreshRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    refresh_token: OpaqueToken


class UserOut(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    email: str


class TeamOut(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    name: str | None


class ClubOut(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    name: str | None


class TokenPair(msgspec.Struct, frozen=True, kw_only=True):
    """What signup, login and refresh answer."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]
    expires_in: int
    """Seconds until ``access_token`` expires; refresh before then."""
    user: UserOut
    team: TeamOut | None
    club: ClubOut
    role: Role
    device_id: str
    """The device the tokens belong to: push and pull as this device."""


class DeviceOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    last_seq: int
    """The device's last change the server stored (0 before its first push)."""


class MeResponse(msgspec.Struct, frozen=True, kw_only=True):
    user: UserOut
    club: ClubOut
    team: TeamOut | None
    teams: list[TeamOut]
    role: Role
    device: DeviceOut


class InviteRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    role: InvitedRole


class Invite(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    code: str
    """Shown once; give it to the person joining. It works once, until ``expires_at``."""
    role: InvitedRole
    expires_at: str


class Member(msgspec.Struct, frozen=True, kw_only=True):
    user_id: uuid.UUID
    email: str
    role: Role
    joined_at: str


class MemberList(msgspec.Struct, frozen=True, kw_only=True):
    members: list[Member]


class RoleChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    role: InvitedRole


class ShareLink(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    token: str
    url: str
    expires_at: str

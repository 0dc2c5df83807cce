"""Password hashing with scrypt, a memory-hard KDF from the standard library.

A hash records its own parameters ("scrypt$<n>$<r>$<p>$<salt>$<hash>"), so raising the cost
later leaves existing hashes verifiable. Hashing runs in a worker thread: at about 30 MiB and
tens of milliseconds per call it must not stall the event loop that serves everyone else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

import anyio.to_thread

__all__ = ["hash_password", "verify_password"]

# 2**15 * 8 * 128 bytes = 32 MiB per hash: well beyond what makes GPU guessing cheap, and
# about 60 ms on one core of the machines we run on.
_N: Final = 2**15
_R: Final = 8
_P: Final = 1
_KEY_BYTES: Final = 32
_SALT_BYTES: Final = 16
_MAXMEM: Final = 64 * 1024 * 1024


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=_KEY_BYTES
    )


def _hash_sync(password: str) -> str:
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _derive(password, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def _verify_sync(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = _derive(password, _unb64(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


# Verified against when an email is unknown, so that a login takes as long either way and
# its timing does not tell which emails have accounts.
_DUMMY_HASH: Final = _hash_sync(secrets.token_urlsafe(16))


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hash_sync, password)


async def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``; ``None`` (no such account) costs the same."""
    if stored is None:
        await anyio.to_thread.run_sync(_verify_sync, password, _DUMMY_HASH)
        return False
    return await anyio.to_thread.run_sync(_verify_sync, password, stored)

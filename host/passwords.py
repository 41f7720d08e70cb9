"""Password hashes (argon2id, through argon2-cffi's defaults): made and checked in a
worker thread, as each takes tens of milliseconds on purpose."""

from __future__ import annotations

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


async def hashed(password: str) -> str:
    """The argon2id hash of ``password`` (``$argon2id$...``)."""
    return await anyio.to_thread.run_sync(_hasher.hash, password)


def _matches(digest: str, password: str) -> bool:
    try:
        return _hasher.verify(digest, password)
    except (VerificationError, InvalidHashError):
        return False


async def matches(digest: str | None, password: str) -> bool:
    """True when ``password`` is the one ``digest`` was made from (never for None)."""
    if not digest:
        return False
    return await anyio.to_thread.run_sync(_matches, digest, password)

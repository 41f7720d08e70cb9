"""Password hashes (argon2id, through argon2-cffi's defaults): made and checked in a
worker thread, as each takes tens of milliseconds on purpose."""

from __future__ import annotations

import secrets

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


_dummy: list[str] = []


def _dummy_digest() -> str:
    """A hash of nothing anyone knows, checked when there is no hash to check, so a
    login without a user (or a password) costs what a wrong password costs."""
    if not _dummy:
        _dummy.append(_hasher.hash(secrets.token_urlsafe(16)))
    return _dummy[0]


def _checked(digest: str | None, password: str) -> bool:
    if not digest:
        _matches(_dummy_digest(), password)
        return False
    return _matches(digest, password)


async def matches(digest: str | None, password: str) -> bool:
    """True when ``password`` is the one ``digest`` was made from (never for None,
    which takes as long as a wrong password: a caller cannot tell them apart)."""
    return await anyio.to_thread.run_sync(_checked, digest, password)

"""API tokens (SPEC U2; issue 13 point 2): bearer tokens that belong to a user (a login
of host.people) or to an integration (a name), with scopes (``send``, ``read``,
``supervise``, ``admin``), kept in the table ``api_tokens`` (migration m011_tokens) and
owned here. What a token may do is host.rights': its scopes' rights, cut to its user's
roles' for a user's token; an integration token has its own classifications (given when
it is made, m012_access), a user's token its user's.

A token is ``smst-<id>-<secret>``: ``id`` is 8 hex digits, not secret (it names the
token in lists, logs and ``DELETE /api/tokens/{id}``, and finds its row); ``secret`` is
32 random bytes. Only the SHA-256 of the whole token is stored: a slow password hash
buys nothing against 256 random bits and would cost every request. The token itself is
answered once, by :meth:`Tokens.add`, and never stored, listed or logged.

:meth:`Tokens.check` runs on every ``/api`` request (host.web.api.auth) and stays cheap:
the live tokens are cached in memory by id. A cached entry is trusted for
:data:`RECHECK` seconds, then looked up again by its primary key (a point read on the
event loop, never a write), as is an id not in the cache. So a revocation in this
process (API) takes effect at the next request, as does a change of a user through the
API (:meth:`Tokens.forget`); one made by another process (``smshost token revoke`` or
``smshost user set`` while the server runs) within :data:`RECHECK` seconds.
The last-used time is kept in memory and written at most once per :data:`LAST_USED_EVERY`
seconds per token, queued to the writer without waiting (never a write per request).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from host import people_fields, rights
from host.errors import PeopleError, SmshostError
from host.jsontext import dumps, loads
from host.models import from_epoch, utcnow

if TYPE_CHECKING:
    from sqlite_utils import Database

    from host.store import Store

log = logging.getLogger("smshost.tokens")
SCOPES = rights.SCOPES
FIELDS = ("user", "integration", "scopes", "classifications")
PREFIX = "smst-"
RECHECK = 1.0
LAST_USED_EVERY = 60.0
_TOKEN = re.compile(r"smst-([0-9a-f]{8})-[A-Za-z0-9_-]{43}")


@dataclass
class Live:
    """A live token as the cache holds it (no secret: its hash)."""

    id: str
    digest: str
    scopes: list[str]
    user: str | None
    integration: str | None
    checked: float
    rights: frozenset[str] = frozenset()
    classifications: tuple[str, ...] | None = ()
    used: float | None = None
    written: float = float("-inf")

    def granted(self) -> dict[str, Any]:
        return {"via": "token", "token": self.id, "scopes": list(self.scopes),
                "user": self.user, "integration": self.integration,
                "rights": rights.ordered(self.rights),
                "classifications": None if self.classifications is None
                else list(self.classifications)}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """The API tokens of a node. ``clock``: Unix seconds (a test may set a fake one)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.clock = clock
        self._live: dict[str, Live] = {}

    async def add(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A new token for ``data``'s user or integration and scopes: its record, with
        the token itself under ``token`` (the only time it is given)."""
        fields = _fields(data)
        key, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
        token = f"{PREFIX}{key}-{secret}"
        await self._store.write(lambda db: _insert(db, key, digest(token), fields))
        self._live.pop(key, None)
        log.info("API token %s added for %s (scopes %s)", key, _owner(fields),
                 ", ".join(fields["scopes"]))
        return {**await self.token(key), "token": token}

    async def tokens(self) -> list[dict[str, Any]]:
        """Every token, newest first (revoked ones too), without secrets."""
        return await self._store.read(lambda db: _records(db, None))

    async def token(self, key: str) -> dict[str, Any]:
        found = await self._store.read(lambda db: _records(db, key))
        if not found:
            raise PeopleError(404, "not_found", f"no API token {key!r}")
        return found[0]

    async def revoke(self, key: str) -> dict[str, Any]:
        """Revoke token ``key`` (at once for this process); 404 when unknown."""
        done = await self._store.write(lambda db: _revoke(db, key))
        self._live.pop(key, None)
        if not done:
            raise PeopleError(404, "not_found", f"no API token {key!r}")
        log.info("API token %s revoked", key)
        return await self.token(key)

    def forget(self) -> None:
        """Look every token up again at its next use (a user changed or was removed)."""
        for live in self._live.values():
            live.checked = float("-inf")

    def check(self, token: str) -> dict[str, Any] | None:
        """What ``token`` proves (``{"via": "token", "scopes": ..., "user": ...}``), or
        None when it is not a live token. On the event loop: no write, at most a point
        read (see the module text)."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        key, now = match.group(1), self.clock()
        live = self._live.get(key)
        if live is None or now - live.checked >= RECHECK:
            live = self._lookup(key, now)
            if live is None:
                return None
        if not hmac.compare_digest(live.digest, digest(token)):
            return None
        live.used = now
        if now - live.written >= LAST_USED_EVERY:
            live.written = now
            self._write_last_used(key, now)
        return live.granted()

    def _lookup(self, key: str, now: float) -> Live | None:
        try:
            row = self._store.read_now(lambda db: _live_row(db, key))
        except (SmshostError, sqlite3.Error) as exc:
            log.warning("API token %s not checked: %s", key, exc)
            row = None
        if row is None:
            self._live.pop(key, None)
            return None
        old = self._live.get(key)
        live = _live(key, row, now)
        if old is not None:
            live.used, live.written = old.used, old.written
        self._live[key] = live
        return live

    def _write_last_used(self, key: str, now: float) -> None:
        stamp = from_epoch(now)
        try:
            written = self._store.write_soon(lambda db: db.execute(
                "update api_tokens set last_used_at = ? where id = ?", [stamp, key]))
        except SmshostError:
            return
        written.add_done_callback(_report)


def _report(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("last-used time of an API token not stored: %s", future.exception())


def _owner(fields: Mapping[str, Any]) -> str:
    if fields.get("user") is not None:
        return f"user {fields['user']}"
    return f"integration {fields['integration']}"


def _fields(data: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise PeopleError(400, "bad_parameter", f"unknown field {unknown[0]!r}")
    user, integration = data.get("user"), data.get("integration")
    if (user is None) == (integration is None):
        raise PeopleError(400, "bad_parameter",
                          "user, integration: give exactly one (whose token it is)")
    scopes = data.get("scopes")
    if not isinstance(scopes, list) or not scopes:
        raise PeopleError(400, "bad_parameter",
                          f"scopes: a list of at least one of {', '.join(SCOPES)}")
    for i, scope in enumerate(scopes):
        if scope not in SCOPES:
            raise PeopleError(400, "bad_parameter", f"scopes[{i}]: must be one of "
                              f"{', '.join(SCOPES)}; got {scope!r}")
    return {"user": None if user is None else people_fields.name("user", user),
            "integration": None if integration is None
            else people_fields.name("integration", integration),
            "scopes": [s for s in SCOPES if s in scopes],
            "classifications": _classifications(data.get("classifications"), user)}


def _classifications(value: Any, user: Any) -> list[str]:
    if value is None:
        return []
    if user is not None:
        raise PeopleError(400, "bad_parameter", "classifications: a user's token sends "
                          "with its user's classifications; give them to the user")
    return people_fields.names("classifications", value, people_fields.classification)


def _live(key: str, row: tuple[Any, ...], now: float) -> Live:
    """The cache entry of token ``key`` from its row (:func:`_live_row`)."""
    scopes, login, roles, held = loads(row[1]), row[2], row[4], loads(row[5])
    granted = rights.scope_rights(scopes)
    if login is not None:
        granted &= rights.role_rights(loads(roles))
    return Live(key, row[0], scopes, login, row[3], now, granted,
                rights.user_classifications(granted, held))


def _insert(db: Database, key: str, hashed: str, fields: Mapping[str, Any]) -> None:
    user_id = None
    if fields["user"] is not None:
        row = db.execute("select id from users where login = ?", [fields["user"]]).fetchone()
        if row is None:
            raise PeopleError(400, "bad_parameter", f"user: no user named {fields['user']!r}")
        user_id = row[0]
    db.execute("insert into api_tokens (id, digest, user_id, integration, scopes, "
               "classifications, created_at) values (?, ?, ?, ?, ?, ?, ?)",
               [key, hashed, user_id, fields["integration"], dumps(fields["scopes"]),
                dumps(fields["classifications"]), utcnow()])


def _revoke(db: Database, key: str) -> bool:
    if db.execute("select 1 from api_tokens where id = ?", [key]).fetchone() is None:
        return False
    db.execute("update api_tokens set revoked_at = coalesce(revoked_at, ?) where id = ?",
               [utcnow(), key])
    return True


_SELECT = """select t.id, u.login, t.integration, t.scopes, t.created_at, t.last_used_at,
                    t.revoked_at, t.classifications
             from api_tokens t left join users u on u.id = t.user_id"""


def _records(db: Database, key: str | None) -> list[dict[str, Any]]:
    where, args = ("where t.id = ?", [key]) if key is not None else ("", [])
    rows = db.execute(f"{_SELECT} {where} order by t.created_at desc, t.id", args)
    return [{"id": r[0], "user": r[1], "integration": r[2], "scopes": loads(r[3]),
             "created_at": r[4], "last_used_at": r[5], "revoked_at": r[6],
             "live": r[6] is None, "classifications": loads(r[7]) if r[2] else None}
            for r in rows.fetchall()]


def _live_row(db: Database, key: str) -> tuple[Any, ...] | None:
    row = db.execute("select t.digest, t.scopes, u.login, t.integration, u.roles, "
                     "coalesce(u.classifications, t.classifications) from api_tokens t "
                     "left join users u on u.id = t.user_id where t.id = ? and "
                     "t.revoked_at is null and (t.user_id is null) = (u.id is null)",
                     [key]).fetchone()
    return None if row is None else tuple(row)

"""Browser sessions of users (SPEC U2; issue 13 point 2): what a signed-in session holds,
and whether it still stands.

The session itself is the signed cookie of host.web.ui.sessions (starlette's
``SessionMiddleware``): a JSON dict the browser keeps and cannot forge. Signing in puts
in it the user's login, the user's *session epoch*, a session id, when it began
(``at``), when it was last used (``seen``) and a fresh CSRF token. Each request made
with it is checked here against the database (one point read, as a token's):

- the user must still exist (a removed user's sessions end) and its epoch be the one
  signed in with (a password change raises it: every session of that user ends);
- the session must not be older than ``api.session_lifetime`` nor unused for
  ``api.session_idle`` seconds;
- its id must not have been ended by a logout (``ended_sessions``: a copy of the cookie
  taken before the logout is refused too; rows are kept only until the session would
  have expired anyway).

The user's roles and classifications are read at each request: a role change applies at
the next one.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from host import people_rows, rights
from host.errors import SmshostError

if TYPE_CHECKING:
    from sqlite_utils import Database

    from host.config.settings import ApiSettings
    from host.store import Store

log = logging.getLogger("smshost.sessions")
SEEN_EVERY = 60.0
"""The ``seen`` time is renewed (and the cookie sent again) at most this often."""
CSRF_KEY = "csrf"
SESSION_KEYS = ("login", "epoch", "sid", "at", "seen")


class Sessions:
    """Signed-in sessions. ``settings()``: the live ApiSettings (lifetime, idle);
    ``clock``: Unix seconds (a test may set a fake one)."""

    def __init__(self, store: Store, settings: Callable[[], ApiSettings],
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._settings = settings
        self.clock = clock
        #: Called with the login after a session ended by a sign-out (the host announces
        #: it to plugins: the ``signed_out`` hook).
        self.on_end: Callable[[str], Awaitable[None]] | None = None

    def sign_in(self, session: MutableMapping[str, Any], user: Mapping[str, Any]) -> str:
        """Make ``session`` user ``user``'s (a record of people_rows.signed_in), with a
        new id and CSRF token (nothing of a session before it is kept); the token."""
        now = self.clock()
        session.clear()
        session.update({"login": user["login"], "epoch": user["epoch"],
                        "sid": secrets.token_hex(16), "at": now, "seen": now,
                        CSRF_KEY: secrets.token_urlsafe(32)})
        return str(session[CSRF_KEY])

    def caller(self, session: MutableMapping[str, Any]
               ) -> tuple[rights.Caller, dict[str, Any]] | None:
        """The caller and user record of a signed-in ``session``; None when it is not
        one or no longer stands (see the module text). Renews ``seen``."""
        if not isinstance(session.get("login"), str):
            return None
        now, settings = self.clock(), self._settings()
        at, seen = _number(session.get("at")), _number(session.get("seen"))
        if now - at >= settings.session_lifetime or now - seen >= settings.session_idle:
            return None
        found = self._lookup(str(session["login"]), str(session.get("sid", "")))
        if found is None or found["epoch"] != session.get("epoch"):
            return None
        if now - seen >= SEEN_EVERY:
            session["seen"] = now
        granted = rights.role_rights(found["roles"])
        caller = rights.Caller("session", granted, user=found["login"],
                               classifications=rights.user_classifications(
                                   granted, found["classifications"]))
        return caller, found

    async def end(self, session: MutableMapping[str, Any]) -> None:
        """End ``session`` (logout): its id is refused from now on, wherever a copy of
        the cookie is; the session is emptied."""
        sid, at = session.get("sid"), _number(session.get("at"))
        login = session.get("login")
        session.clear()
        if not isinstance(sid, str):
            return
        now, until = self.clock(), at + self._settings().session_lifetime
        await self._store.write(lambda db: _ended(db, sid, until, now))
        if self.on_end is not None and isinstance(login, str):
            await self.on_end(login)

    def _lookup(self, login: str, sid: str) -> dict[str, Any] | None:
        try:
            return self._store.read_now(lambda db: _signed_in(db, login, sid))
        except (SmshostError, sqlite3.Error) as exc:
            log.warning("session of %r not checked: %s", login, exc)
            return None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else float("-inf")


def _signed_in(db: Database, login: str, sid: str) -> dict[str, Any] | None:
    if db.execute("select 1 from ended_sessions where id = ?", [sid]).fetchone():
        return None
    return people_rows.signed_in(db, login)


def _ended(db: Database, sid: str, until: float, now: float) -> None:
    db.execute("delete from ended_sessions where until < ?", [now])
    db.execute("insert into ended_sessions (id, until) values (?, ?) on conflict (id) do update "
               "set until = excluded.until", [sid, until])

"""Cookie sessions and CSRF protection of the HTML pages.

Sessions are starlette's ``SessionMiddleware``: the session is a JSON dict in a cookie
signed with itsdangerous (HMAC with the session secret, timestamped: a cookie older than
``MAX_AGE`` is ignored). Chosen over an own store because it is kept with starlette,
needs no table and no purge, and sets the flags we want: ``HttpOnly`` always,
``Path=/`` (pages and ``/api`` share it: pages call the API), ``SameSite=Lax`` (a link
from an e-mail or a chat still opens a page signed in; Strict would show it signed out.
Lax sends the cookie cross-site with top-level GET navigations only, which change
nothing; every unsafe method is covered by the CSRF token below, for pages and /api
alike), ``Secure`` when the listener speaks HTTPS or ``server.public_url`` is https (a
browser would not send a Secure cookie back over plain HTTP). A signed-in session is
checked against the database at each request (host.sessions): a removed user, a
password change or a logout ends it before the cookie expires.

The secret is generated into ``<data_dir>/session-secret`` (mode 0600) like the API
token, when the first page is served.

CSRF: a synchronizer token kept in the session (:func:`csrf_token` puts it in forms as
``csrf_token``); an unsafe method (POST, PUT, PATCH, DELETE) to a page must send it back,
in the form field or the ``X-CSRF-Token`` header, or it is refused 403.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from host.errors import SmshostError

log = logging.getLogger("smshost.web")
COOKIE = "smshost_session"
MAX_AGE = 30 * 24 * 3600
"""The cookie's own limit; a signed-in session ends sooner (``api.session_lifetime``,
``api.session_idle``: host.sessions)."""
CSRF_KEY = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_FORM = "application/x-www-form-urlencoded"
MIN_SECRET = 32
"""Fewer characters than this is no secret (a generated one has 43)."""


def session_secret(path: Path) -> str:
    """The secret kept in ``path``, creating it (mode 0600) the first time.

    The file appears whole or not at all (written beside it, then linked into place), so
    a reader never sees half a secret; one found shorter than :data:`MIN_SECRET` (an
    empty file left by a crash or a full disk) would let anyone sign a session cookie,
    so it is replaced, with a warning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    found = _read_secret(path)
    if found is not None and len(found) >= MIN_SECRET:
        return found
    if found is not None:
        log.warning("the session secret in %s has %d characters (a write cut short?): "
                    "replaced by a new one; browsers signed in sign in again",
                    path, len(found))
    secret = secrets.token_urlsafe(32)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secret + "\n")
            out.flush()
            os.fsync(out.fileno())
        if found is None:
            try:
                os.link(scratch, path)  # first start: only if still absent
            except FileExistsError:  # another process was first: use its secret
                theirs = _read_secret(path)
                if theirs is not None and len(theirs) >= MIN_SECRET:
                    return theirs
                os.replace(scratch, path)
        else:
            os.replace(scratch, path)
    except OSError as exc:
        raise SmshostError(f"cannot write the session secret file {path}: "
                           f"{exc.strerror or exc}") from None
    finally:
        scratch.unlink(missing_ok=True)
    log.info("generated the session secret in %s", path)
    return secret


def _read_secret(path: Path) -> str | None:
    """The secret in ``path``; None when there is no file."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SmshostError(f"cannot read the session secret file {path}: "
                           f"{exc.strerror or exc}") from None


def with_session(app: ASGIApp, secret: str, secure: bool) -> ASGIApp:
    """``app`` behind the session cookie and the CSRF check."""
    return session_layer(CsrfGuard(app), secret, secure)


def session_layer(app: ASGIApp, secret: str, secure: bool) -> ASGIApp:
    """``app`` with the session cookie (``scope["session"]``), without a CSRF check (the
    API checks it itself, host.web.api.auth)."""
    return SessionMiddleware(app, secret_key=secret, session_cookie=COOKIE, path="/",
                             max_age=MAX_AGE, same_site="lax", https_only=secure)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use): put it in every form."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = request.session[CSRF_KEY] = secrets.token_urlsafe(32)
    return token


class CsrfGuard:
    """Refuses 403 an unsafe request whose token is not the session's. The body is
    read whole (within the listener's body limit) and given to the page again."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # no method, no body: the browser's Origin
            if _same_origin(Headers(scope=scope)):
                await self.app(scope, receive, send)
            else:  # a page of another site opening a socket with our cookie
                await send({"type": "websocket.close", "code": 1008})
            return
        if scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        body = await Request(scope, receive).body()
        expected = scope["session"].get(CSRF_KEY)
        sent = _sent_token(Headers(scope=scope), body)
        if not isinstance(expected, str) or sent is None \
                or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise HTTPException(403, "the form is out of date or was not sent by this "
                                "site (CSRF token missing or wrong); reload the page")
        await self.app(scope, _replay(body, receive), send)


def _same_origin(headers: Headers) -> bool:
    origin, host = headers.get("origin"), headers.get("host")
    return origin is not None and host is not None and urlsplit(origin).netloc == host


def _sent_token(headers: Headers, body: bytes) -> str | None:
    if CSRF_HEADER in headers:
        return headers[CSRF_HEADER]
    if headers.get("content-type", "").split(";")[0].strip().lower() != _FORM:
        return None
    values = parse_qs(body.decode("latin-1")).get(CSRF_FIELD)
    return values[0] if values else None


def _replay(body: bytes, receive: Receive) -> Receive:
    """``body`` once, then what the connection says (its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return replay

"""What the compatible send APIs share: who the caller is (a username and password
standing for an API token), the request's parameters as bytes, the sender a ``from``
names, and the send itself, through ``host.web.api.send.submit``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import parse_qsl

from starlette.requests import Request

from host.callbacks.urls import dlr_refusal
from host.errors import ApiError
from host.rights import Caller, caller_of
from host.sends import Queued, SendRequest
from host.web.context import WebHost


log = logging.getLogger("smshost.compat")


class Refusal(Exception):
    """A request refused with ``status`` and the gateway's own answer ``text``."""

    def __init__(self, status: int, text: str) -> None:
        self.status = status
        self.text = text
        super().__init__(text)


def caller_for(host: WebHost, username: str | None, password: str | None) -> Caller | None:
    """The caller a username and password prove: ``password`` is a live API token
    (host.tokens) and ``username`` the name of its integration or the login of its
    user. None otherwise (the configured api.token is not accepted: it has no name)."""
    if not username or not password:
        return None
    granted = host.tokens.check(password)
    if granted is None:
        return None
    if username not in (granted.get("integration"), granted.get("user")):
        return None
    return caller_of(granted)


async def raw_params(request: Request) -> dict[str, bytes]:
    """The query string's parameters, then a form body's (a POST of
    ``application/x-www-form-urlencoded``), as bytes: their charset is the request's
    ``charset`` parameter, decoded later. The first value of a name wins."""
    pairs = parse_qsl(request.url.query, keep_blank_values=True, encoding="latin-1")
    if request.method == "POST" and request.headers.get("content-type", "").split(";")[
            0].strip().lower() == "application/x-www-form-urlencoded":
        body = (await request.body()).decode("latin-1")
        pairs += parse_qsl(body, keep_blank_values=True, encoding="latin-1")
    found: dict[str, bytes] = {}
    for name, value in pairs:
        found.setdefault(name, value.encode("latin-1"))
    return found


def text_of(params: Mapping[str, bytes], name: str) -> str | None:
    """A parameter as UTF-8 text (None when absent or not UTF-8)."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def sender_account(host: WebHost, sender: str, broker: str | None = None
                   ) -> tuple[str, str] | None:
    """The (broker, account) whose number is ``sender`` (written as given or with a
    leading ``+``/``00``), of ``broker`` when named, when exactly one account has it."""
    wanted = {sender, "+" + sender.lstrip("+"), "+" + sender[2:] if sender.startswith("00")
              else sender}
    found = [(b.name, account.id) for b in host.settings.brokers
             if broker is None or b.name == broker
             for account in b.accounts if account.local_address in wanted]
    return found[0] if len(found) == 1 else None


async def send(host: WebHost, caller: Caller, request: SendRequest) -> Queued:
    """Send as ``POST /api/messages`` does (host.web.api.send.submit)."""
    from host.web.api.send import submit

    return await submit(host, caller, request)


def refusal_of(exc: ApiError) -> str:
    """``exc``'s kind: ``auth`` (the caller may not), ``busy`` (try again), ``refused``."""
    if exc.status in (401, 403):
        return "auth"
    if exc.status in (429, 503) or exc.status >= 500:
        return "busy"
    return "refused"


def dlr_refused(host: WebHost, url: str, gateway: str) -> bool:
    """Whether ``url`` may not be a dlr-url: a host ``[compat] allowed_hosts`` (else
    ``[callbacks] allowed_hosts``) does not allow, or a non-public address (the same
    rules as a status_callback's, host.callbacks.urls). Each gateway answers in its own
    format; the reason, which that format has no room for, is logged."""
    problem = dlr_refusal(url, host.settings.callbacks, host.settings.compat)
    if problem:
        log.warning("%s send: dlr-url refused: %s", gateway, problem)
    return problem is not None

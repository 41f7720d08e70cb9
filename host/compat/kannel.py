"""Kannel's sendsms interface (smsbox's ``/cgi-bin/sendsms``), answered as Kannel 1.4.5
answers it: the same parameters (a GET's query string; a POST of ``text/plain`` with
``X-Kannel-*`` headers as smsbox reads it, or of a form), the same checks in the same
order and the same answer texts (gw/smsbox.c), then one send per receiver through the
path of ``POST /api/messages``. docs/migrating.md lists what maps to what and what is
refused. The ``dlr-url`` is called back by host.compat.callbacks with Kannel's escape
codes (host.compat.escapes)."""

from __future__ import annotations

import codecs
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from host.compat.callbacks import Call
from host.compat.common import (Refusal, caller_for, dlr_refused, raw_params, refusal_of, send,
                                sender_account, text_of)
from host.compat.escapes import dlr_type, dlr_values, fill
from host.errors import ApiError
from host.models import Message, StatusEvent
from host.rights import Caller
from host.sends import SendRequest
from host.web.context import WebHost

ACCEPTED = "0: Accepted for delivery"
QUEUED = "3: Queued for later delivery"
AUTH_FAILED = "Authorization failed for sendsms"
NOT_ROUTABLE = "Not routable. Do not try again."
TEMPORARY = "Temporal failure, try again later."
DENIED = "Number(s) has/have been denied by white- and/or black-lists."
NUMBER_CHARS = frozenset("0123456789 +-")  # Kannel's default sendsms-chars
UNDEFINED = -1  # Kannel's SMS_PARAM_UNDEFINED
_INT = re.compile(rb"\s*([+-]?\d+)")
# (parameter, lowest, highest, Kannel's answer when out of range), in smsbox's order.
# Kannel 1.4.5 takes a dlr-mask up to 66 (tests/brokers/test_kannel_sendsms_parity.py).
_RANGES = (("dlr-mask", -1, 66, "DLR-Mask field misformed, rejected"),
           ("mclass", -1, 3, "MClass field misformed, rejected"),
           ("pid", -1, 255, "PID field misformed, rejected"),
           ("rpi", -1, 2, "RPI field misformed, rejected"),
           ("alt-dcs", -1, 1, "Alt-DCS field misformed, rejected"),
           ("mwi", -1, 7, "MWI field misformed, rejected"),
           ("coding", -1, 2, "Coding field misformed, rejected"),
           ("compress", -1, 1, "Compress field misformed, rejected"),
           ("validity", -1, None, "Validity field misformed, rejected"),
           ("deferred", -1, None, "Deferred field misformed, rejected"))
_KEPT = ("account", "binfo", "meta-data")  # recorded in the message's attrs.kannel

log = logging.getLogger("smshost.compat")


def answer(status: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status, media_type="text/html")


async def sendsms(request: Request) -> Response:
    host: WebHost = request.app.state.host
    try:
        params, posted = await _params(request)
        return await _sendsms(host, params, posted)
    except Refusal as refused:
        return answer(refused.status, refused.text)


async def _params(request: Request) -> tuple[dict[str, bytes], bool]:
    """The parameters and whether they came as smsbox's POST (text in the body)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method != "POST" or kind in ("", "application/x-www-form-urlencoded"):
        return await raw_params(request), False
    if kind not in ("text/plain", "application/octet-stream"):
        raise Refusal(400, "Invalid content-type")
    params = {name[len("x-kannel-"):]: value.encode("latin-1")
              for name, value in request.headers.items() if name.startswith("x-kannel-")}
    params["text"] = await request.body()
    charset = re.search(r"charset=\"?([^\";]+)", request.headers.get("content-type", ""))
    if charset:
        params["charset"] = charset.group(1).encode("latin-1")
    return params, True


def _int(params: Mapping[str, bytes], name: str) -> int:
    """As smsbox's ``sscanf("%d")``: a leading integer, else undefined."""
    found = _INT.match(params.get(name) or b"")
    return int(found.group(1)) if found else UNDEFINED


async def _sendsms(host: WebHost, params: dict[str, bytes], posted: bool) -> Response:
    caller = caller_for(host, text_of(params, "username") or text_of(params, "user"),
                        text_of(params, "password") or text_of(params, "pass"))
    if caller is None or not caller.allows("send"):  # the right POST /api/messages needs
        raise Refusal(403, AUTH_FAILED)
    to = text_of(params, "to")
    if to is None:
        raise Refusal(400, "Missing receiver(s) number(s), rejected" if posted
                      else "Missing receiver number, rejected")
    if not to:
        raise Refusal(400, "Empty receiver number not allowed, rejected")
    numbers = _check(params, to)
    _dlr_allowed(host, params)
    broker, account = _route(host, params)
    text = _text(params)
    base = SendRequest(to="", text=text, broker=broker, account=account,
                       attrs=_attrs(params, caller), source="kannel",
                       send_at=_deferred(host, params))
    return await _each(host, caller, base, numbers)


def _check(params: Mapping[str, bytes], to: str) -> tuple[list[str], list[str]]:
    """smsbox_req_handle's checks, in its order: (receivers allowed, denied)."""
    udh = params.get("udh")
    if udh is not None and udh and len(udh) != udh[0] + 1:
        raise Refusal(400, "UDH field misformed, rejected")
    allowed: list[str] = []
    denied: list[str] = []
    for number in to.split():
        target = denied if not set(number) <= NUMBER_CHARS else allowed
        if number not in target:
            target.append(number)
    allowed = [n for n in allowed if n not in denied]
    if not allowed:
        raise Refusal(400, DENIED)
    account = text_of(params, "account")
    if account and (len(account) > 64 or any(c in account for c in "[]\n\r")):
        raise Refusal(400, "Account field misformed or too long, rejected")
    url = text_of(params, "dlr-url") or text_of(params, "dlrurl") or ""
    if url and not url.lower().startswith(("http://", "https://")):
        raise Refusal(400, "DLR-URL field misformed, rejected")
    for name, low, high, refusal in _RANGES:
        value = _int(params, name if name != "dlr-mask" or "dlr-mask" in params
                     else "dlrmask")
        if value < low or (high is not None and value > high):
            raise Refusal(400, refusal)
    priority = _int(params, "priority")
    if priority != UNDEFINED and not 0 <= priority <= 3:
        raise Refusal(400, "Priority field misformed, rejected")
    _unsupported(params)
    return allowed, denied


def _dlr_allowed(host: WebHost, params: Mapping[str, bytes]) -> None:
    """A dlr-url naming a host the operator does not allow (or a non-public address) is
    refused as Kannel refuses a misformed one; the reason is logged for the operator."""
    url = text_of(params, "dlr-url") or text_of(params, "dlrurl") or ""
    if url and dlr_refused(host, url, "kannel"):
        raise Refusal(400, "DLR-URL field misformed, rejected")


def _deferred(host: WebHost, params: Mapping[str, bytes]) -> float | None:
    """``deferred`` minutes from now as a scheduled send's ``send_at`` (None: now); more
    than ``outbox.schedule_horizon`` ahead is refused as a misformed one."""
    minutes = _int(params, "deferred")
    if minutes <= 0:
        return None
    if minutes * 60 > host.settings.outbox.schedule_horizon:
        log.warning("kannel sendsms: deferred %d minutes is beyond outbox.schedule_horizon",
                    minutes)
        raise Refusal(400, "Deferred field misformed, rejected")
    return time.time() + minutes * 60


def _unsupported(params: Mapping[str, bytes]) -> None:
    """What smshost cannot do, refused rather than sent otherwise than asked."""
    if params.get("udh"):
        raise Refusal(400, "UDH not supported by this gateway, rejected")
    if _int(params, "coding") == 1:
        raise Refusal(400, "8-bit coding not supported by this gateway, rejected")


def _route(host: WebHost, params: Mapping[str, bytes]) -> tuple[str | None, str | None]:
    """The broker ``smsc`` names and the account whose number ``from`` is."""
    smsc = text_of(params, "smsc") or None
    if smsc is not None and smsc not in {b.name for b in host.settings.brokers}:
        raise Refusal(403, NOT_ROUTABLE)
    sender = text_of(params, "from") or ""
    if not sender:
        return smsc, None  # the route's or the caller's own number (Kannel: global-sender)
    found = sender_account(host, sender, smsc)
    if found is None:
        raise Refusal(400, "Sender not a number of this gateway, rejected")
    return found


def _text(params: Mapping[str, bytes]) -> str:
    raw = params.get("text") or b""
    coding = _int(params, "coding")
    charset = text_of(params, "charset") or ("UTF-16BE" if coding == 2 else "UTF-8")
    try:
        return raw.decode(codecs.lookup(charset).name)
    except (LookupError, UnicodeError):  # UnicodeError: "undefined", a bad "idna" label
        raise Refusal(400, "Charset or body misformed, rejected") from None


def _attrs(params: Mapping[str, bytes], caller: Caller) -> dict[str, Any]:
    kept: dict[str, Any] = {name: text_of(params, name) for name in _KEPT
                            if text_of(params, name)}
    for name in ("mclass", "validity", "priority"):
        if _int(params, name) != UNDEFINED:
            kept[name] = _int(params, name)
    attrs: dict[str, Any] = {"kannel": kept} if kept else {}
    url = text_of(params, "dlr-url") or text_of(params, "dlrurl") or ""
    mask = _int(params, "dlr-mask" if "dlr-mask" in params else "dlrmask")
    if url and mask > 0:
        asked = {"username": caller.integration or caller.user or "",
                 **{k: v for k in ("account", "coding", "mclass", "charset", "meta-data",
                                   "binfo", "from") if (v := text_of(params, k))}}
        attrs["dlr"] = {"kind": "kannel", "url": url, "mask": mask, "asked": asked}
    return attrs


async def _each(host: WebHost, caller: Caller, base: SendRequest,
                numbers: tuple[list[str], list[str]]) -> Response:
    """One send per receiver; Kannel's answer for the lot."""
    from dataclasses import replace

    allowed, _dropped = numbers  # Kannel 1.4.5 drops them without naming them
    denied: list[str] = []  # refused by the send path: named, as Kannel's black-lists
    sent = 0
    first: ApiError | None = None
    for number in allowed:
        try:
            await send(host, caller, replace(base, to=number, attrs=_written(base.attrs,
                                                                             number)))
            sent += 1
        except ApiError as exc:
            first = first or exc
            denied.append(number)
    if not sent and first is not None:
        kind = refusal_of(first)
        if kind == "auth":
            raise Refusal(403, AUTH_FAILED)
        raise Refusal(503, TEMPORARY) if kind == "busy" else Refusal(403, NOT_ROUTABLE)
    text = QUEUED if not host.settings.outbox.enabled else ACCEPTED
    if denied:
        text += " Denied receivers are: " + " ".join(denied)
    return answer(202, text)


def _written(attrs: dict[str, Any], number: str) -> dict[str, Any]:
    """``attrs`` with the receiver as the request wrote it (Kannel's %p in a dlr-url)."""
    dlr = attrs.get("dlr")
    if not isinstance(dlr, dict):
        return attrs
    return {**attrs, "dlr": {**dlr, "asked": {**dlr["asked"], "to": number}}}


def dlr_calls(dlr: Mapping[str, Any], message: Message, old: str | None, new: str,
              event: StatusEvent) -> list[Call]:
    """The dlr-url call of a change to ``new`` when the dlr-mask asks for its type."""
    kind = dlr_type(old, new)
    mask = dlr.get("mask")
    if kind is None or not isinstance(mask, int) or not mask & kind:
        return []
    error = str(event.detail.get("error") or event.detail.get("code") or "")
    found = dlr.get("asked")
    asked = {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
    url = fill(str(dlr.get("url")), dlr_values(message, kind, new, event.at, error, asked))
    return [Call("GET", url)]

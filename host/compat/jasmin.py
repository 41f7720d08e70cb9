"""Jasmin's HTTP API (``/send`` and ``/rate``), answered as Jasmin 0.11 answers them:
its parameters and checks (jasmin/protocols/http/endpoints/send.py), ``Success "<id>"``
or ``Error "<why>"`` with its status codes, and its DLR callback to ``dlr-url``
(level 1: the broker took or refused the message; 2: the phone's receipt; 3: both),
GET or POST. ``/rate`` answers the segments the text takes and a rate of 0 (smshost
keeps no prices). docs/migrating.md lists what differs."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from host.compat.callbacks import Call
from host.compat.common import (Refusal, caller_for, dlr_refused, raw_params, refusal_of,
                                sender_account, text_of)
from host.compat.common import send as submit
from host.encoding import EncodingError, describe
from host.errors import ApiError
from host.models import Message, StatusEvent, to_epoch
from host.rights import Caller
from host.sends import SendRequest
from host.web.context import WebHost

_ANY = re.compile(rb".*", re.S)
#: Jasmin's /send fields: name → pattern (None: optional, any value); required ones.
_SEND = {"to": re.compile(rb"^\+?\d+$"), "from": _ANY,
         "coding": re.compile(rb"^(0|1|2|3|4|5|6|7|8|9|10|13|14)$"),
         "username": re.compile(rb"^.{1,200}$"), "password": re.compile(rb"^.{1,200}$"),
         "priority": re.compile(rb"^[0-3]$"),
         "sdt": re.compile(rb"^\d{12}\d\d{2}(\+|-|R)$"),
         "validity-period": re.compile(rb"^\d+$"), "dlr": re.compile(rb"^(yes|no)$"),
         "dlr-url": re.compile(rb"^(http|https)\://.*$"), "dlr-level": re.compile(rb"^[1-3]$"),
         "dlr-method": re.compile(rb"^(get|post)$", re.I),
         "tags": re.compile(rb"^([-a-zA-Z0-9,])*$"), "content": _ANY, "hex-content": _ANY,
         "custom_tlvs": _ANY}
_RATE = {k: v for k, v in _SEND.items() if k not in (
    "sdt", "dlr", "dlr-url", "dlr-level", "dlr-method", "custom_tlvs")}
_REQUIRED = ("to", "username", "password")
_CODINGS = {b"0": "utf-8", b"1": "ascii", b"3": "latin-1", b"8": "utf-16-be"}
_STAT = {"delivered": "DELIVRD", "undelivered": "UNDELIV", "expired": "EXPIRED",
         "failed": "UNDELIV", "rejected": "REJECTD"}


def _error(status: int, text: str) -> Response:
    return Response(f'Error "{text}"', status_code=status, media_type="text/plain")


async def send(request: Request) -> Response:
    host: WebHost = request.app.state.host
    try:
        params = await _params(request)
        if "dlr-url" in params or "dlr-level" in params:
            params["dlr"] = b"yes"
        params.setdefault("dlr", b"no")
        _validate(params, _SEND)
        if "content" not in params and "hex-content" not in params:
            raise Refusal(400, "content or hex-content not present.")
        if "content" in params and "hex-content" in params:
            raise Refusal(400, "content and hex-content cannot be used both in same request.")
        caller = _caller(host, params)
        _unsupported(params)
        queued = await _send(host, caller, params)
    except Refusal as refused:
        return _error(refused.status, refused.text)
    return Response(f'Success "{queued}"', media_type="text/plain")


async def rate(request: Request) -> Response:
    host: WebHost = request.app.state.host
    try:
        params = await _params(request)
        params.setdefault("content", b"") if "hex-content" not in params else None
        _validate(params, _RATE)
        if "content" in params and "hex-content" in params:
            raise Refusal(400, "content and hex-content cannot be used both in same request.")
        _caller(host, params)
        text = _content(params)
        try:
            segments = describe(text, None)["segments"]
        except EncodingError as exc:
            raise Refusal(400, str(exc)) from None
    except Refusal as refused:
        return Response(json.dumps(refused.text), status_code=refused.status,
                        media_type="application/json")
    return Response(json.dumps({"unit_rate": 0.0, "submit_sm_count": segments}),
                    media_type="application/json")


async def _params(request: Request) -> dict[str, bytes]:
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError:
            raise Refusal(400, "Mandatory arguments not found, please refer to the "
                          "HTTPAPI specifications.") from None
        if not isinstance(data, dict):
            raise Refusal(400, "Mandatory arguments not found, please refer to the "
                          "HTTPAPI specifications.")
        return {str(k): (v if isinstance(v, str) else json.dumps(v)).encode()
                for k, v in data.items()}
    return await raw_params(request)


def _validate(params: Mapping[str, bytes], fields: Mapping[str, re.Pattern[bytes]]) -> None:
    """Jasmin's UrlArgsValidator: no arguments, an unknown one, a value not matching its
    pattern, a required one missing; each with Jasmin's text."""
    if not params:
        raise Refusal(400, "Mandatory arguments not found, please refer to the HTTPAPI "
                      "specifications.")
    for name, value in params.items():
        if name not in fields:
            raise Refusal(400, f"Argument [{name}] is unknown.")
        if fields[name].match(value) is None:
            shown = value.decode("utf-8", "replace")
            raise Refusal(400, f"Argument [{name}] has an invalid value: [{shown}].")
    for name in _REQUIRED:
        if name not in params:
            raise Refusal(400, f"Mandatory argument [{name}] is not found.")


def _caller(host: WebHost, params: Mapping[str, bytes]) -> Caller:
    username = text_of(params, "username") or ""
    caller = caller_for(host, username, text_of(params, "password"))
    if caller is None:
        raise Refusal(403, f"Authentication failure for username:{username}")
    if "send" not in caller.rights:
        raise Refusal(400, f"Authorization failed for user [{username}] (Cannot send MT "
                      "messages).")
    return caller


def _unsupported(params: Mapping[str, bytes]) -> None:
    if params.get("custom_tlvs") not in (None, b"", b"[]"):
        raise Refusal(400, "Argument [custom_tlvs] is not supported by this gateway.")
    if "hex-content" in params and params.get("coding", b"0") not in (b"8",):
        raise Refusal(400, "Argument [hex-content] is only supported with coding 8 "
                      "(UCS2) by this gateway.")


def _content(params: Mapping[str, bytes]) -> str:
    coding = params.get("coding", b"0")
    try:
        if "hex-content" in params:
            return bytes.fromhex(params["hex-content"].decode("ascii")).decode("utf-16-be")
        return params.get("content", b"").decode(_CODINGS.get(coding, "utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise Refusal(400, "Argument [content] has an invalid value for coding "
                      f"[{coding.decode('ascii', 'replace')}].") from None


async def _send(host: WebHost, caller: Caller, params: Mapping[str, bytes]) -> str:
    text = _content(params)
    broker = account = None
    sender = text_of(params, "from")
    if sender:
        found = sender_account(host, sender)
        if found is None:
            raise Refusal(412, "No route found")
        broker, account = found
    attrs: dict[str, Any] = {}
    kept = {k: v for k in ("priority", "validity-period", "tags") if (v := text_of(params, k))}
    if kept:
        attrs["jasmin"] = kept
    if params.get("dlr") == b"yes" and params.get("dlr-url"):
        url = text_of(params, "dlr-url") or ""
        if dlr_refused(host, url, "jasmin"):  # Jasmin's answer to a value it refuses
            raise Refusal(400, f"Argument [dlr-url] has an invalid value: [{url}].")
        attrs["dlr"] = {"kind": "jasmin", "url": url,
                        "level": int(params.get("dlr-level", b"1")),
                        "method": (text_of(params, "dlr-method") or "POST").upper()}
    request = SendRequest(to=text_of(params, "to") or "", text=text, broker=broker,
                          account=account, attrs=attrs, source="jasmin",
                          send_at=_sdt(host, params))
    try:
        queued = await submit(host, caller, request)
    except ApiError as exc:
        kind = refusal_of(exc)
        if kind == "auth":
            raise Refusal(400, f"Authorization failed for user [{params['username'].decode()}]"
                          f" ({exc.message})") from None
        if kind == "busy":
            raise Refusal(500, "Cannot send submit_sm, check SMPPClientManagerPB log file "
                          "for details") from None
        raise Refusal(412, "No route found") from None
    return str(queued.messages[0].id)


def _sdt(host: WebHost, params: Mapping[str, bytes]) -> float | None:
    """``sdt`` (an SMPP time, checked by its pattern) as a scheduled send's ``send_at``;
    one that is no date, or beyond ``outbox.schedule_horizon``, is an invalid value."""
    raw = params.get("sdt")
    if raw is None:
        return None
    text, now = raw.decode("ascii"), time.time()
    try:
        when = smpp_time(text, now)
    except ValueError:
        when = None
    if when is None or when - now > host.settings.outbox.schedule_horizon:
        raise Refusal(400, f"Argument [sdt] has an invalid value: [{text}].")
    return when


def smpp_time(text: str, now: float) -> float:
    """An SMPP time ``YYMMDDhhmmsstnnp`` (SMPP 3.4, 7.1.1) as Unix seconds: absolute
    (``p`` ``+``/``-``: ``nn`` quarter hours ahead of/behind UTC) or relative to
    ``now`` (``p`` ``R``; a year counted 365 days, a month 30). ``ValueError`` for no
    such date."""
    yy, mo, dd, hh, mi, ss = (int(text[i:i + 2]) for i in range(0, 12, 2))
    tenths, quarters, sign = int(text[12]), int(text[13:15]), text[15]
    if sign == "R":
        return now + (yy * 365 + mo * 30 + dd) * 86400 + hh * 3600 + mi * 60 + ss
    offset = timedelta(minutes=15 * quarters) * (1 if sign == "+" else -1)
    return datetime(2000 + yy, mo, dd, hh, mi, ss, tenths * 100_000,
                    tzinfo=timezone(offset)).timestamp()


def dlr_calls(dlr: Mapping[str, Any], message: Message, old: str | None, new: str,
              event: StatusEvent) -> list[Call]:
    """Jasmin's DLR for a change to ``new`` when its level asks: level 1 (``sent`` or a
    refused submit), level 2 (a final status after ``sent``)."""
    level = dlr.get("level")
    submit = new == "sent" or (new in ("failed", "rejected") and old != "sent")
    final = not submit and new in _STAT
    if not isinstance(level, int) or not ((submit and level in (1, 3)) or
                                          (final and level in (2, 3))):
        return []
    fields = {"id": str(message.id),
              "message_status": ("ESME_ROK" if new == "sent" else "ESME_RSUBMITFAIL")
              if submit else _STAT[new],
              "level": "1" if submit else "2", "connector": message.broker or ""}
    if not submit:
        error = str(event.detail.get("error") or event.detail.get("code") or "000")
        fields.update({"id_smsc": message.broker_message_id or "", "sub": "001",
                       "dlvrd": "001" if new == "delivered" else "000",
                       "subdate": _stamp(message.created_at), "donedate": _stamp(event.at),
                       "err": error, "text": message.body[:20]})
    url, body = str(dlr.get("url")), urlencode(fields)
    if dlr.get("method") == "GET":
        return [Call("GET", url + ("&" if "?" in url else "?") + body, kind="jasmin")]
    return [Call("POST", url, body, kind="jasmin")]


def _stamp(stored: str) -> str:
    """Jasmin's YYMMDDhhmm."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(to_epoch(stored), UTC).strftime("%y%m%d%H%M")

"""Kannel's escape codes in a ``dlr-url`` (Kannel user guide, "sms-service" escape
codes; gw/urltrans.c): each ``%x`` known is replaced by its value URL-encoded as Kannel's
``octstr_url_encode`` does (letters, digits and ``-_.!~*'()`` kept, a space as ``+``,
any other byte as ``%XX``, upper case, of its UTF-8); ``%%`` is ``%``; an unknown code
is left as written."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote_plus

from host.models import Message, to_epoch

#: The Kannel DLR types (dlr-mask bits, Kannel user guide "Delivery reports").
DELIVERED, UNDELIVERED, QUEUED_ON_SMSC, ACCEPTED_BY_SMSC, REJECTED_BY_SMSC = 1, 2, 4, 8, 16
_SAFE = "!~*'()"  # quote_plus keeps letters, digits and "_.-~" already
_RAW = frozenset("t")  # Kannel writes %t as it is: "2026-12-07+04:04:00", not encoded
_STAT = {"delivered": "DELIVRD", "undelivered": "UNDELIV", "expired": "EXPIRED",
         "failed": "UNDELIV", "rejected": "REJECTD"}


def kannel_encode(value: str) -> str:
    return quote_plus(value, safe=_SAFE)


def fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with every known ``%x`` of ``values`` filled (URL-encoded)."""
    out: list[str] = []
    i = 0
    while i < len(template):
        char = template[i]
        if char != "%" or i + 1 == len(template):
            out.append(char)
            i += 1
            continue
        code = template[i + 1]
        if code == "%":
            out.append("%")
        elif code in _RAW and code in values:
            out.append(values[code])
        elif code in values:
            out.append(kannel_encode(values[code]))
        else:
            out.append(template[i:i + 2])
        i += 2
    return "".join(out)


def dlr_type(old: str | None, new: str) -> int | None:
    """The Kannel DLR type of a change to ``new`` (None: none Kannel reports).

    ``sent`` (the broker took it) is 8, ``delivered`` 1, ``undelivered`` and ``expired``
    2; ``failed`` or ``rejected`` is 16 before the broker took the message (a refused
    submit), 2 after (the broker's receipt said so)."""
    if new == "sent":
        return ACCEPTED_BY_SMSC
    if new == "delivered":
        return DELIVERED
    if new in ("undelivered", "expired"):
        return UNDELIVERED
    if new in ("failed", "rejected"):
        return UNDELIVERED if old == "sent" else REJECTED_BY_SMSC
    return None


def _plus(number: str) -> str:
    return "+" + number[2:] if number.startswith("00") else number


def reply_text(kind: int, message: Message, new: str, error: str) -> str:
    """What Kannel puts in ``%A`` for a DLR of ``kind``: ``ACK/`` for a submit accepted,
    ``NACK/<error>`` for one refused, an SMPP-style receipt line otherwise."""
    if kind == ACCEPTED_BY_SMSC:
        return "ACK/"
    if kind == REJECTED_BY_SMSC:
        return f"NACK/{error}"
    return (f"id:{message.broker_message_id or message.id} stat:{_STAT.get(new, 'UNKNOWN')} "
            f"err:{error or '000'}")


def dlr_values(message: Message, kind: int, new: str, at: str, error: str,
               asked: Mapping[str, str]) -> dict[str, str]:
    """The escape values of a DLR of ``kind`` for ``message`` (``asked``: what the
    sendsms request gave: username, account, coding, mclass, charset, meta-data,
    binfo, from, to). In a DLR Kannel's sender (%p) is the phone the message went to and its
    receiver (%P) the number it came from, as the request wrote it. As a real Kannel
    1.4.5 fills them (tests/brokers/test_kannel_sendsms_parity.py): %c and %m are -1
    when the request did not give them, %C UTF-8, %t with a ``+`` between date and time."""
    moment = datetime.fromtimestamp(to_epoch(at), UTC)
    reply = reply_text(kind, message, new, error)
    phone = asked.get("to") or message.remote or ""
    ours = asked.get("from") or message.local or ""
    return {"d": str(kind), "p": phone, "P": ours, "q": _plus(phone), "Q": _plus(ours),
            "A": reply, "a": reply, "b": reply, "T": str(int(moment.timestamp())),
            "t": moment.strftime("%Y-%m-%d+%H:%M:%S"), "i": message.broker or "",
            "I": str(message.id), "F": message.broker_message_id or "",
            "n": asked.get("username", ""), "o": asked.get("account", ""),
            "c": asked.get("coding", "-1"), "m": asked.get("mclass", "-1"),
            "C": asked.get("charset", "UTF-8"), "D": asked.get("meta-data", ""),
            "B": asked.get("binfo", ""), "u": "", "k": "", "s": "", "S": "", "r": ""}

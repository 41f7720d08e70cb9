"""What the email says: the templates over the message, and its header values."""

from __future__ import annotations

import hashlib
import string
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any



if TYPE_CHECKING:
    from host.api import InboundRoute as Route
    from host.api import Message


FIELDS = ("from", "to", "remote", "local", "body", "id", "broker", "account", "received",
          "route")
"""Template fields; ``attrs.NAME`` reads a custom attribute of the message."""


# -- templates -------------------------------------------------------------------------

def template_problem(text: str) -> str | None:
    """Why ``text`` is not a valid template, or None."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        return f"bad template {text!r}: {exc} (write {{{{ and }}}} for literal braces)"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if spec or conversion:
            return (f"template field {{{name}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}}: conversions and format specs are not "
                    "supported")
        if name not in FIELDS and not (name.startswith("attrs.") and len(name) > 6):
            return (f"unknown template field {{{name}}}; fields: "
                    f"{', '.join('{' + f + '}' for f in FIELDS)}, {{attrs.NAME}}")
    return None


def render(text: str, values: dict[str, str], attrs: dict[str, Any]) -> str:
    """Fill a template checked by :func:`template_problem`; missing values are empty."""
    out = []
    for literal, name, _, _ in string.Formatter().parse(text):
        out.append(literal)
        if name is None:
            continue
        if name.startswith("attrs."):
            value = attrs.get(name[6:])
            out.append("" if value is None else str(value))
        else:
            out.append(values.get(name, ""))
    return "".join(out)


def message_values(message: Message, route: Route | None) -> dict[str, str]:
    return {
        "from": message.remote or "", "remote": message.remote or "",
        "to": message.local or "", "local": message.local or "",
        "body": message.body, "id": str(message.id), "broker": message.broker or "",
        "account": message.account or "", "received": message.created_at,
        "route": route.name if route is not None else "",
    }




def message_id(message: Message, domain: str) -> str:
    """Stable per SMS, so a resend after a lost reply carries the same Message-ID."""
    digest = hashlib.sha256(f"{message.id}:{message.created_at}".encode()).hexdigest()[:16]
    return f"<sms.{message.id}.{digest}@{domain}>"


def received_at(message: Message) -> datetime:
    try:
        return datetime.fromisoformat(message.created_at.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)


def one_line(text: str) -> str:
    return " ".join(text.split())

"""The email sink: each routed SMS becomes an email sent over SMTP (SPEC S3, R3).

A route with ``destination = "email"`` names the recipient(s) in its target
(``"ops@example.com"`` or ``"a@example.com, b@example.com"``); an empty target uses
``to`` from the ``[email]`` table of ``config/sinks.toml``. With no routes configured at
all, every inbound message goes here (to ``to``).

The sender, subject and body are templates over the message: ``{from}``, ``{to}``,
``{body}``, ``{id}``, ``{broker}``, ``{account}``, ``{received}``, ``{route}``,
``{attrs.NAME}`` (see ``docs/sinks-email.md``). ``{{`` and ``}}`` are literal braces.

SMTP outcomes map to the router's: a connection error, a timeout or a 4xx reply is
"retry" (the router tries again after ``routing.retry_delays``, then falls back to the
default route); a 5xx reply (recipient refused, wrong password...), a certificate that
does not verify or an unconfigured sink is "failed" with the server's reason. The
password is only ever handed to the SMTP client: never logged, never in a reason.
"""

from __future__ import annotations

from typing import Any

from host.api import hookimpl

from .addresses import parse_address, parse_recipients
from .settings import EmailSettings
from .sink import EmailSink, classify
from .templates import message_id, render, template_problem

__all__ = ["EmailSettings", "EmailSink", "classify", "message_id", "parse_address",
           "parse_recipients", "render", "template_problem"]


@hookimpl
def register_sinks(register: Any) -> None:
    register(EmailSink)


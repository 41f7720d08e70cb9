"""The email sink's settings (``[email]`` of ``config/sinks.toml``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal


from host.api import HOUR, Secret, at_least, greater_than, port_number, setting

from .addresses import file_exists, recipients_problem, sender_problem
from .templates import template_problem

if TYPE_CHECKING:
    from host.api import KeyPath


IMPLICIT_TLS_PORT = 465


# -- settings --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EmailSettings:
    """The ``[email]`` table of ``config/sinks.toml``: the SMTP server and the email built
    from each SMS."""

    host: str | None = setting(
        None, help="SMTP server name or address. Unset: the email sink is not configured "
        "and every delivery to it fails (with no routes, that is every inbound message).",
        check=lambda v: None if v.strip() and not any(c.isspace() for c in v) else
        f"must be a host name or address; got {v!r}")
    port: int = setting(
        25, help="SMTP port: 25 (relay), 587 (submission, with STARTTLS) or 465 (implicit "
        "TLS, which turns `tls` on).", check=port_number)
    starttls: Literal[True, False, "auto"] = setting(
        "auto", help='Upgrade the connection with STARTTLS: "auto" when the server offers '
        "it, true always (fail when the server does not offer it), false never.",
        check=lambda v: None if isinstance(v, bool) or v == "auto" else
        f'must be true, false or "auto"; got {v!r}')
    tls: bool | None = setting(
        None, help="Implicit TLS: speak TLS from the first byte (SMTPS). Default: on for "
        "port 465, off otherwise.", doc_default="port == 465")
    verify: bool = setting(
        True, help="Check the server's certificate and name. Turn off only for a test "
        "server; prefer `ca_file` for a private certificate authority.")
    ca_file: str | None = setting(
        None, help="PEM file of the certificate authorities trusted for the server's "
        "certificate, instead of the system's (a relative path is relative to the "
        "directory smshost is started in).", check=file_exists)
    login: str | None = setting(
        None, help="User name for SMTP AUTH (PLAIN or LOGIN, CRAM-MD5 when offered). "
        "Unset: no authentication.")
    password: Secret | None = setting(
        None, help='Password for `login`, best as { env = "SMSHOST_SMTP_PASSWORD" } or '
        '{ file = "/run/secrets/smtp" }. Never logged or shown.')
    timeout: float = setting(
        30.0, help="Seconds allowed for connecting and for each SMTP command; a timeout "
        "is retried like a connection error (at most an hour).",
        check=greater_than(0, HOUR))
    max_connections: int = setting(
        4, help="Most SMTP connections open at once (one per email being sent; at most "
        "1000).", check=at_least(1, 1000))
    helo_name: str | None = setting(
        None, help="Name this node gives in EHLO. Default: the machine's fully qualified "
        "name.")
    from_address: str = setting(
        "smshost@localhost", help='Sender of the emails, a template: "sms@example.com", '
        '"SMS {from} <sms@example.com>" or "{from}@sms.example.com". Its domain also '
        "names the Message-ID.", check=sender_problem)
    to: str = setting(
        "", help="Recipient(s), comma-separated, for routes whose target is empty and "
        "when no routes are configured.", check=recipients_problem)
    subject: str = setting(
        "SMS from {from} to {to}", help="Subject template (line breaks become spaces).",
        check=template_problem)
    body: str = setting(
        "{body}\n\n--\nFrom: {from}\nTo: {to}\nReceived: {received} (message {id})\n",
        help="Body template (plain text, UTF-8).", check=template_problem)

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        if self.login is not None and self.password is None:
            yield ("password",), "login is set: set password too (or remove login)"
        if self.password is not None and self.login is None:
            yield ("login",), "password is set: set login too (or remove password)"
        if self.implicit_tls and self.starttls is True:
            yield ("starttls",), ("implicit TLS (tls = true or port 465) and starttls = "
                                  "true exclude each other; set starttls = false")

    @property
    def implicit_tls(self) -> bool:
        return self.tls if self.tls is not None else self.port == IMPLICIT_TLS_PORT

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

import asyncio
import email.errors
import email.utils
import hashlib
import logging
import ssl
import string
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import aiosmtplib

from host.api import (HOUR, Delivery, Secret, Sink, at_least, greater_than, hookimpl,
                      port_number, setting)

if TYPE_CHECKING:
    from host.api import InboundRoute as Route
    from host.api import KeyPath, Message

log = logging.getLogger("smshost.sinks.email")

IMPLICIT_TLS_PORT = 465
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


# -- addresses -------------------------------------------------------------------------

def parse_address(text: str) -> Address:
    """One bare address (``user@domain``); ``ValueError`` with a reason otherwise."""
    text = text.strip()
    try:
        address = Address(addr_spec=text)
    except (ValueError, email.errors.HeaderParseError):
        raise ValueError(f"{text!r} is not an email address (expected e.g. "
                         "ops@example.com)") from None
    if not address.username or not address.domain:
        raise ValueError(f"{text!r} is not an email address (expected e.g. ops@example.com)")
    return address


def parse_recipients(text: str) -> list[Address]:
    """A comma-separated list of addresses (may be empty)."""
    return [parse_address(item) for item in text.split(",") if item.strip()]


def recipients_problem(text: str) -> str | None:
    try:
        parse_recipients(text)
    except ValueError as exc:
        return str(exc)
    return None


def sender_problem(text: str) -> str | None:
    problem = template_problem(text)
    if problem:
        return problem
    name, addr = split_sender(text)
    if not addr or "@" not in addr:
        return (f"{text!r}: expected an address, optionally with a name: "
                '"sms@example.com" or "SMS {from} <sms@example.com>"')
    if "{" not in addr:
        try:
            parse_address(addr)
        except ValueError as exc:
            return str(exc)
    return None


def split_sender(text: str) -> tuple[str, str]:
    """``"SMS {from} <sms@example.com>"`` → (name template, address template)."""
    return email.utils.parseaddr(text)


def file_exists(value: str) -> str | None:
    return None if Path(value).is_file() else f"no such file: {value}"


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


# -- the sink --------------------------------------------------------------------------

class EmailSink(Sink):
    kind = "email"
    settings_class = EmailSettings

    def __init__(self, host: Any, settings: EmailSettings) -> None:
        super().__init__(host, settings)
        self.settings: EmailSettings = settings
        self._default_to = parse_recipients(settings.to)
        self._slots: asyncio.Semaphore | None = None  # made in start(): bound to its loop
        self._tls = self._tls_context(settings)

    @staticmethod
    def _tls_context(settings: EmailSettings) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_file)
        if not settings.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    @property
    def configured(self) -> bool:
        return self.settings.host is not None

    def check_target(self, target: str) -> str | None:
        if not self.configured:
            return ("the email sink has no SMTP server: set host in the [email] table of "
                    "sinks.toml")
        try:
            recipients = parse_recipients(target)
        except ValueError as exc:
            return str(exc)
        if not recipients and not self._default_to:
            return ("no recipient: give the route a target (an email address) or set `to` "
                    "in the [email] table of sinks.toml")
        return None

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(self.settings.max_connections)
        if self.host.settings.inbound or not self.host.settings.routing.enabled:
            return
        # No routes: every inbound message comes here (SPEC R3).
        if not self.configured:
            log.warning("no routes are configured, so inbound messages go to email, but the "
                        "email sink has no SMTP server: set host and to in the [email] table "
                        "of sinks.toml")
        elif not self._default_to:
            log.warning("no routes are configured, so inbound messages go to email, but no "
                        "recipient is set: set to in the [email] table of sinks.toml")

    async def deliver(self, message: Message, route: Route) -> Delivery:
        if not self.configured:
            return Delivery.failed("the email sink is not configured: set host (and to) in "
                                   "the [email] table of sinks.toml")
        try:
            recipients = parse_recipients(route.target) or self._default_to
        except ValueError as exc:
            return Delivery.failed(f"bad recipient in the route target: {exc}")
        if not recipients:
            return Delivery.failed("no recipient: the route has no target and `to` is not "
                                   "set in the [email] table of sinks.toml")
        try:
            email_message, sender = self.build(message, route, recipients)
        except ValueError as exc:
            return Delivery.failed(f"cannot build the email: {exc}")
        addresses = [r.addr_spec for r in recipients]
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.max_connections)
        async with self._slots:
            delivery = await self._send(email_message, sender, addresses)
        if delivery.outcome == "delivered":
            log.info("message %d emailed to %s", message.id, ", ".join(addresses))
        return delivery

    def build(self, message: Message, route: Route | None,
              recipients: list[Address]) -> tuple[EmailMessage, str]:
        """The email for ``message`` and its envelope sender; ``ValueError`` if the
        rendered sender is not an address."""
        s = self.settings
        values = message_values(message, route)
        attrs = message.attrs or {}
        name_template, addr_template = split_sender(s.from_address)
        sender = parse_address(render(addr_template, values, attrs))
        display = _one_line(render(name_template, values, attrs))
        sender = Address(display_name=display, username=sender.username,
                         domain=sender.domain)
        out = EmailMessage()
        out["From"] = sender
        out["To"] = recipients
        out["Subject"] = _one_line(render(s.subject, values, attrs))
        out["Date"] = email.utils.format_datetime(_received(message))
        out["Message-ID"] = message_id(message, sender.domain)
        out["Auto-Submitted"] = "auto-generated"
        out["X-Smshost-Message-Id"] = str(message.id)
        if message.remote:
            out["X-SMS-From"] = _one_line(message.remote)
        if message.local:
            out["X-SMS-To"] = _one_line(message.local)
        out.set_content(render(s.body, values, attrs))
        return out, sender.addr_spec

    async def _send(self, message: EmailMessage, sender: str,
                    recipients: list[str]) -> Delivery:
        s = self.settings
        server = f"{s.host}:{s.port}"
        password = s.password.reveal() if s.password is not None else None
        client = aiosmtplib.SMTP(
            hostname=s.host, port=s.port, use_tls=s.implicit_tls,
            start_tls=None if s.starttls == "auto" else bool(s.starttls),
            tls_context=self._tls, timeout=s.timeout, local_hostname=s.helo_name,
            username=s.login, password=password)
        try:
            await client.connect()
            refused, _ = await client.send_message(message, sender=sender,
                                                   recipients=recipients)
        # Every SMTP, TLS and network error becomes an outcome with the reason (BLE001:
        # aiosmtplib may let ssl/OSError errors through unwrapped).
        except Exception as exc:  # noqa: BLE001
            delivery = classify(exc, server, s.login)
            return Delivery(delivery.outcome, self._scrub(delivery.detail))
        finally:
            await _close(client)
        data: dict[str, Any] = {"message_id": str(message["Message-ID"]),
                                "recipients": [r for r in recipients if r not in refused]}
        if refused:
            data["refused"] = {r: f"{resp.code} {resp.message}" for r, resp in refused.items()}
            return Delivery.delivered(self._scrub(
                f"sent via {server}; refused: " + "; ".join(
                    f"{r} ({v})" for r, v in data["refused"].items())), **data)
        return Delivery.delivered(f"sent via {server}", **data)

    def _scrub(self, text: str) -> str:
        password = self.settings.password
        value = password.reveal() if password is not None else ""
        return text.replace(value, "********") if len(value) >= 4 else text


def classify(exc: BaseException, server: str, login: str | None) -> Delivery:
    """The router outcome of one SMTP failure: 4xx, network and timeouts retry."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        parts = [f"{r.recipient} ({r.code} {r.message})" for r in exc.recipients]
        text = f"{server} refused the recipient(s): {'; '.join(parts)}"
        if any(_temporary(r.code) for r in exc.recipients):
            return Delivery.retry(text)
        return Delivery.failed(text)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        what = {
            aiosmtplib.SMTPAuthenticationError: f"refused the login as {login!r}",
            aiosmtplib.SMTPSenderRefused: "refused the sender",
            aiosmtplib.SMTPDataError: "refused the message",
            aiosmtplib.SMTPHeloError: "refused the greeting (EHLO/HELO)",
            aiosmtplib.SMTPConnectResponseError: "refused the connection",
        }.get(type(exc), "answered")
        if isinstance(exc, aiosmtplib.SMTPSenderRefused):
            what += f" {exc.sender}"
        text = f"{server} {what}: {exc.code} {_one_line(exc.message)}"
        return Delivery.retry(text) if _temporary(exc.code) else Delivery.failed(text)
    certificate = _certificate_error(exc)
    if certificate is not None:
        return Delivery.failed(f"{server}: TLS certificate not accepted: {certificate} "
                               "(see verify and ca_file in the [email] table)")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return Delivery.retry(f"{server}: timed out ({_one_line(str(exc)) or 'no answer'})")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return Delivery.retry(f"{server}: connection lost: {_one_line(str(exc))}")
    if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        return Delivery.retry(f"cannot connect to {server}: {_one_line(str(cause))}")
    if isinstance(exc, aiosmtplib.SMTPException):
        # Not a reply code: e.g. STARTTLS or AUTH required but not offered.
        return Delivery.failed(f"{server}: {_one_line(str(exc))}")
    return Delivery.failed(f"{server}: {type(exc).__name__}: {_one_line(str(exc))}")


def _temporary(code: int) -> bool:
    return 400 <= code < 500


def _certificate_error(exc: BaseException) -> str | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current.verify_message or str(current)
        if isinstance(current, ssl.SSLError | aiosmtplib.SMTPConnectError) and (
                "CERTIFICATE_VERIFY_FAILED" in str(current)):
            return _one_line(str(current))
        current = current.__cause__ or current.__context__
    return None


async def _close(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await client.quit()
    # The email is sent (or the error already known); a failing QUIT changes nothing.
    except Exception:  # noqa: BLE001
        client.close()


def message_id(message: Message, domain: str) -> str:
    """Stable per SMS, so a resend after a lost reply carries the same Message-ID."""
    digest = hashlib.sha256(f"{message.id}:{message.created_at}".encode()).hexdigest()[:16]
    return f"<sms.{message.id}.{digest}@{domain}>"


def _received(message: Message) -> datetime:
    try:
        return datetime.fromisoformat(message.created_at.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)


def _one_line(text: str) -> str:
    return " ".join(text.split())


@hookimpl
def register_sinks(register: Any) -> None:
    register(EmailSink)

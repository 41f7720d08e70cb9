"""The email sink itself: one SMTP session per delivery, outcomes mapped to the router's."""

from __future__ import annotations

import asyncio
import email.errors
import email.utils
import logging
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import aiosmtplib

from host.api import Delivery, Sink

from .addresses import parse_address, parse_recipients, split_sender
from .settings import EmailSettings
from .templates import message_id, message_values, one_line, received_at, render

if TYPE_CHECKING:
    from host.api import InboundRoute as Route
    from host.api import Message


log = logging.getLogger("smshost.sinks.email")


# -- the sink --------------------------------------------------------------------------

class EmailSink(Sink):
    kind = "email"
    settings_class = EmailSettings
    catch_all = True  # with no routes, every message comes here (R3)

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
        display = one_line(render(name_template, values, attrs))
        sender = Address(display_name=display, username=sender.username,
                         domain=sender.domain)
        out = EmailMessage()
        out["From"] = sender
        out["To"] = recipients
        out["Subject"] = one_line(render(s.subject, values, attrs))
        out["Date"] = email.utils.format_datetime(received_at(message))
        out["Message-ID"] = message_id(message, sender.domain)
        out["Auto-Submitted"] = "auto-generated"
        out["X-Smshost-Message-Id"] = str(message.id)
        if message.remote:
            out["X-SMS-From"] = one_line(message.remote)
        if message.local:
            out["X-SMS-To"] = one_line(message.local)
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
        text = f"{server} {what}: {exc.code} {one_line(exc.message)}"
        return Delivery.retry(text) if _temporary(exc.code) else Delivery.failed(text)
    certificate = _certificate_error(exc)
    if certificate is not None:
        return Delivery.failed(f"{server}: TLS certificate not accepted: {certificate} "
                               "(see verify and ca_file in the [email] table)")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return Delivery.retry(f"{server}: timed out ({one_line(str(exc)) or 'no answer'})")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return Delivery.retry(f"{server}: connection lost: {one_line(str(exc))}")
    if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        return Delivery.retry(f"cannot connect to {server}: {one_line(str(cause))}")
    if isinstance(exc, aiosmtplib.SMTPException):
        # Not a reply code: e.g. STARTTLS or AUTH required but not offered.
        return Delivery.failed(f"{server}: {one_line(str(exc))}")
    return Delivery.failed(f"{server}: {type(exc).__name__}: {one_line(str(exc))}")


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
            return one_line(str(current))
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

"""One attempt at a send: its MT request built and sent, the broker's answer read.

The request is built from the broker definition (an adapter or definition that cannot
build it fails the message) and sent through the sender's one HTTP client
(:mod:`host.httpclient`; through the broker's proxy, with Proxy-Authorization, when one
is set), with the broker instance's ``mt.timeout``. Its outcome is redacted here, the
one place: every text of it comes from the broker's answer or the request, and is
stored, answered by the API and logged from here on. :class:`host.brokers.sender.Sender`
claims and settles the sends.
"""

from __future__ import annotations

import base64
import logging
import traceback
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from host.brokers import exchanges
from host.brokers.engine import OutboundMessage
from host.brokers.http import MtRequest, MtResponse, MtResult
from host.config.secrets import redact
from host.errors import HttpError
from host.models import Message

if TYPE_CHECKING:
    from collections.abc import Mapping

    from host.brokers.instances import BrokerInstance
    from host.httpclient import Transport

log = logging.getLogger("smshost.sender")


async def attempt(client: Transport | None, brokers: Mapping[str, BrokerInstance],
                  message: Message) -> MtResult:
    """Build ``message``'s request and send it through ``client``; its outcome, redacted."""
    instance = brokers.get(message.broker or "")
    if instance is None or not instance.settings.mt_active:
        return MtResult("fail", error=f"broker {message.broker!r} is not configured "
                        "to send")
    account = instance.accounts.get(message.account or "")
    if account is None:
        return MtResult("fail", error=f"account {message.account!r} is gone from the "
                        "configuration")
    outbound = OutboundMessage(message.id, message.remote or "", message.local or "",
                               message.body, str(message.id), message.encoding or "gsm7",
                               message.segments or 1)
    values = instance.account_values(account)
    secrets = instance.secrets(account)
    try:
        request = instance.broker.build_mt_request(outbound, values)
    # A definition or adapter that cannot build the request: fail this message (BLE001).
    except Exception as exc:  # noqa: BLE001
        return MtResult("fail", error=f"cannot build the request: "
                        f"{type(exc).__name__}: {exc}").redacted(secrets)
    # The one place what a send came to is redacted: every text of the result comes
    # from the broker's answer or the request (a gateway that echoes the sendsms
    # query in its 400 echoes the password), and is stored, answered by the API and
    # logged from here on.
    secrets += request.secrets
    try:
        result = await exchange(client, instance, request, outbound, values, secrets)
    # A bug while sending: the request may or may not have left, as with a network
    # error, so it is retried like one. Its text may hold the URL (BLE001).
    except Exception as exc:  # noqa: BLE001
        where = traceback.extract_tb(exc.__traceback__)[-1]
        text = redact(f"{type(exc).__name__}: {exc}", secrets)
        log.error("sending message %d failed unexpectedly: %s (at %s:%s)", message.id,
                  text, where.filename, where.lineno)
        result = MtResult("retry", error=f"internal error: {text}")
    return result.redacted(secrets)

async def exchange(client: Transport | None, instance: BrokerInstance,
                   request: MtRequest, outbound: OutboundMessage,
                   account: dict[str, Any], secrets: list[str] | None = None) -> MtResult:
    """``request`` sent, its answer read by the broker's definition or adapter; the
    exchange kept with the message (masked with ``secrets``) goes with the result."""
    assert client is not None
    proxy = instance.settings.proxy
    headers, proxy_headers = request.headers, None
    if proxy.url and proxy.login:
        # A header, as both clients send it (aiohttp 4.0 drops proxy_auth).
        password = proxy.password.reveal() if proxy.password else ""
        token = "Basic " + base64.b64encode(f"{proxy.login}:{password}".encode()).decode()
        if request.url.startswith("https:"):  # on the CONNECT, never inside the tunnel
            proxy_headers = {"Proxy-Authorization": token}
        else:  # an absolute-form request to the proxy, which strips the header
            headers = {**request.headers, "Proxy-Authorization": token}
    try:
        response = await client.request(
            request.method, request.url, headers, request.body or None,
            instance.settings.mt.timeout, proxy=proxy.url or None,
            proxy_headers=proxy_headers)
        answer = MtResponse(response.status, response.headers, response.body)
    except HttpError as exc:
        reason = str(exc)
        log.warning("send to %s failed: %s", instance.name, request.redacted(reason))
        return MtResult("retry", error=request.redacted(reason),
                        exchange=exchanges.mt(request, None, secrets or ()))
    kept = exchanges.mt(request, answer, secrets or ())
    try:
        return replace(instance.broker.read_mt_response(answer, outbound, account),
                       exchange=kept)
    # An adapter reading an odd answer: a failed send, with the reason (BLE001).
    except Exception as exc:  # noqa: BLE001
        return MtResult("fail", error=f"cannot read the answer: {type(exc).__name__}: {exc}",
                        status=answer.status, exchange=kept)

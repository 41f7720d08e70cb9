"""Broker webhooks: MO and delivery receipts over HTTP (SPEC B6, B7, B8, P1).

Each listener serves the paths of the brokers configured on its port: the route list
is :func:`endpoints_for_port`, served by host.web.webhooks (ASGI) and host.web.fastpath
(from the HTTP parser), both through :func:`respond`. A request is:

1. a health check (``healthcheckignore=1``): answered ``alive <role>``, nothing stored;
2. refused 503 when the broker is disabled (the broker retries later; nothing is lost);
3. classified (MO or receipt: paths may be shared) and its signature verified when the
   definition declares a scheme and a key is configured (401 missing, 403 wrong), against
   the URL the broker called (``server.public_url`` or trusted X-Forwarded-* headers);
4. parsed (400 with a short reason when it cannot be read; never a 500);
5. committed durably (MO with de-duplication by the broker's message id; parts of a long
   MO are committed one by one) and only then answered with the broker's expected body.
   A database failure answers 503 so the broker retries.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive

from host.brokers import exchanges
from host.brokers.concat import Part, parse_udh
from host.brokers.specs import Answer
from host.brokers.engine import MoFields, ParseError
from host.brokers.extract import ExtractError
from host.brokers.http import BodyError, InboundRequest
from host.brokers.instances import BrokerInstance
from host.brokers.signatures import SignatureError
from host.errors import StoreError
from host.logs import log_failure as log_once
from host.text import clean
from host.writepath import retry_later
from host.messages import NewMessage
from host.numbers import normalize

if TYPE_CHECKING:
    from host.brokers.paths import WebhookPaths
    from host.brokers.concat import Concat
    from host.brokers.receipts import Receipts
    from host.config.settings import Settings
    from host.messages import Messages
    from host.metrics import Metrics
    from host.outage import Refusals

log = logging.getLogger("smshost.brokers")


class WebhookHost(Protocol):
    """What the broker webhooks use of the node (``host.core.Host`` provides it; the
    web layer, the simulator and the conformance kit pass it in)."""

    @property
    def settings(self) -> Settings:
        """``server.role``, ``server.public_url``, ``server.trusted_proxies``."""

    @property
    def brokers(self) -> Mapping[str, BrokerInstance]:
        """The broker instances, whose paths are served (:func:`endpoints_for_port`)."""

    @property
    def webhook_paths(self) -> WebhookPaths:
        """The paths each listener port serves, kept current (host.brokers.paths)."""

    @property
    def metrics(self) -> Metrics:
        """Counts each webhook by broker, kind and outcome."""

    @property
    def refusals(self) -> Refusals:
        """Logs the requests the database refused, a line per spell."""

    @property
    def messages(self) -> Messages:
        """Stores an MO."""

    @property
    def concat(self) -> Concat:
        """Stores a part of a long MO."""

    @property
    def receipts(self) -> Receipts:
        """Applies a delivery receipt."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    instance: BrokerInstance
    kinds: tuple[str, ...]  # "mo", "receipt"


class _Refused(Exception):
    """A webhook answered ``status`` with ``reason``; ``cause``: the database refused it
    (logged with the answer, in one line; a ``Retry-After`` goes with it)."""

    def __init__(self, status: int, reason: str, cause: StoreError | None = None) -> None:
        self.status = status
        self.reason = reason
        self.cause = cause


def endpoints_for_port(instances: Mapping[str, BrokerInstance],
                       port: int) -> dict[str, Endpoint]:
    table: dict[str, Endpoint] = {}
    for instance in instances.values():
        if instance.port != port:
            continue
        kinds: dict[str, list[str]] = {}
        if instance.mo_path:
            kinds.setdefault(instance.mo_path, []).append("mo")
        if instance.receipt_path:
            kinds.setdefault(instance.receipt_path, []).append("receipt")
        for path, found in kinds.items():
            table[path] = Endpoint(instance, tuple(found))
    return table


def unexpected(endpoint: Endpoint, exc: Exception) -> Response:
    """The answer to a webhook that failed in an unexpected way (a bug): 500, which the
    broker retries, and the failure logged once per place (:func:`log_failure`)."""
    name = endpoint.instance.name
    log_failure(f"broker {name}: unexpected error", exc, name, "webhook")
    return PlainTextResponse("internal error; retry later", status_code=500)


def _trusted(host: WebhookHost, address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False)
               for net in host.settings.server.trusted_proxies)


def url_from_scope(host: WebhookHost, scope: Mapping[str, Any], headers: dict[str, str]) -> str:
    """The URL the broker called, as it signed it (behind a reverse proxy too)."""
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    path_qs = str(scope.get("root_path", "")) + str(scope["path"]) + (f"?{query}" if query else "")
    public = host.settings.server.public_url
    if public:
        return public.rstrip("/") + path_qs
    client = scope.get("client")
    if client and _trusted(host, client[0]) and "x-forwarded-host" in headers:
        proto = headers.get("x-forwarded-proto") or str(scope.get("scheme", "http"))
        fhost = headers["x-forwarded-host"].split(",")[0].strip()
        prefix = headers.get("x-forwarded-prefix", "").rstrip("/")
        return f"{proto.split(',')[0].strip()}://{fhost}{prefix}{path_qs}"
    host_header = headers.get("host")
    if not host_header:
        server = scope.get("server") or ("localhost", 80)
        host_header = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host_header}{path_qs}"


def called_url(host: WebhookHost, request: Request) -> str:
    return url_from_scope(host, request.scope, dict(request.headers.items()))


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body; None when the client went away before sending all of it (a cut
    form still parses: it must not be stored as if it were the message)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def respond(host: WebhookHost, ep: Endpoint, scope: Mapping[str, Any],
                  headers: dict[str, str], body: bytes | Receive) -> Response:
    """Answer one webhook: ``scope`` holds the ASGI request keys (method, path,
    query_string, scheme, server, client), ``headers`` the lower-case headers, ``body``
    the body or the ASGI ``receive`` to read it from."""
    query = scope.get("query_string", b"")
    if b"healthcheckignore=1" in query and "1" in parse_qs(
            query.decode("latin-1")).get("healthcheckignore", []):
        return PlainTextResponse(f"alive {host.settings.server.role}")
    if not ep.instance.settings.mo_active:
        return _refuse(host, ep.instance, "?", _Refused(503, f"broker {ep.instance.name} "
                                                        "is disabled"))
    if not isinstance(body, bytes):
        read = await _read_body(body)
        if read is None:
            return _refuse(host, ep.instance, "?", _Refused(400, "the client went away "
                                                            "before the end of the body"))
        body = read
    inbound = InboundRequest(scope["method"], url_from_scope(host, scope, headers), headers,
                             body)
    return await process(host, ep, inbound)


async def process(host: WebhookHost, ep: Endpoint, inbound: InboundRequest) -> Response:
    """Verify, parse, commit and answer one webhook (also used in-process by the
    simulator and the conformance kit)."""
    instance = ep.instance
    kind = "?"
    try:
        readable = _signed_part(instance, inbound)
        kind = _classify(instance, readable, ep.kinds)
        _verify(instance, inbound, kind)
        if kind == "ignore":
            host.metrics.webhook(instance.name, "ignore", "ignored")
            return _answer(instance.broker.answer_ignored(readable))
        if kind == "mo":
            return await _mo(host, instance, readable)
        return await _receipt(host, instance, readable)
    except _Refused as refused:
        return _refuse(host, instance, kind, refused)


def _refuse(host: WebhookHost, instance: BrokerInstance, kind: str, refused: _Refused) -> Response:
    """Every refusal of a webhook is answered here, its reason as plain text. A reason
    may quote what the broker sent (a field, a JSON pointer), so host/text.py's rule
    applies to it: a lone surrogate would make the answer unencodable."""
    host.metrics.webhook(instance.name, kind, str(refused.status))
    reason = clean(refused.reason)
    extra = {"broker": instance.name, "status": refused.status}
    if refused.cause is None:
        log.warning("broker %s %s refused (%d): %s", instance.name, kind, refused.status,
                    reason, extra=extra)
        return PlainTextResponse(reason, status_code=refused.status)
    host.refusals.refused(f"broker {instance.name} {kind}", refused.cause, logger=log)
    return PlainTextResponse(reason, status_code=refused.status, headers=retry_later())


def _signed_part(instance: BrokerInstance, inbound: InboundRequest) -> InboundRequest:
    """What the steps after the signature check read: ``inbound`` reduced to what its
    signature covers when one is checked (SPEC P12), else all of it."""
    if instance.definition.signature is None or \
            not instance.broker.signature_keys(instance.all_account_values()):
        return inbound  # nothing is checked: nothing is covered, everything is read
    try:
        return instance.broker.signed_part(inbound)
    except BodyError as exc:
        raise _Refused(400, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - adapter code; bad input must not be a 500
        raise _adapter_failed(instance, "signed_part", exc, 400,
                              "cannot read the request") from exc


def log_failure(what: str, exc: BaseException, *place: str) -> None:
    """Log an unexpected ``exc`` of the webhook paths (:func:`host.logs.log_failure`:
    its traceback once per place, one line after that). Every catch-all of the webhook
    paths logs through here."""
    log_once(log, what, exc, *place)


def _adapter_failed(instance: BrokerInstance, step: str, exc: Exception, status: int,
                    reason: str) -> _Refused:
    """A step raised something else than ``ParseError`` (adapter code). Input that does
    not read (``BodyError``, ``ExtractError``) is refused with its reason; anything else
    is a bug, logged by :func:`log_failure`."""
    if isinstance(exc, BodyError | ExtractError):
        return _Refused(status, f"{reason}: {exc}")
    log_failure(f"broker {instance.name}: {step} failed", exc, instance.name, step)
    return _Refused(status, f"{reason} ({type(exc).__name__})")


def _classify(instance: BrokerInstance, inbound: InboundRequest,
              kinds: tuple[str, ...]) -> str:
    try:
        kind = instance.broker.classify(inbound, kinds)
    except ParseError as exc:
        raise _Refused(400, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - adapter code; bad input must not be a 500
        raise _adapter_failed(instance, "classify", exc, 400,
                              "cannot read the request") from exc
    if kind is None:
        if inbound.method not in {m for k in kinds for m in _spec_methods(instance, k)}:
            raise _Refused(405, f"method {inbound.method} not accepted here")
        raise _Refused(400, "not a message or receipt this path accepts")
    return kind


def _spec_methods(instance: BrokerInstance, kind: str) -> tuple[str, ...]:
    spec = instance.definition.mo if kind == "mo" else instance.definition.receipt
    return spec.methods if spec is not None else ()


def _verify(instance: BrokerInstance, inbound: InboundRequest, kind: str) -> None:
    if instance.definition.signature is None:
        return
    keys = instance.broker.signature_keys(instance.all_account_values(), inbound, kind)
    if not keys:
        return  # the broker signs, but no key is configured: nothing to check against
    try:
        instance.broker.verify_signature(inbound, keys)
    except SignatureError as exc:
        raise _Refused(exc.status, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - adapter code
        raise _adapter_failed(instance, "verify_signature", exc, 403,
                              "signature check failed") from exc


def _parse_mo(instance: BrokerInstance, inbound: InboundRequest) -> MoFields:
    try:
        return instance.broker.parse_mo(inbound)
    except ParseError as exc:
        raise _Refused(400, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - adapter code; bad input must not be a 500
        raise _adapter_failed(instance, "parse_mo", exc, 400,
                              "cannot read the message") from exc


async def _mo(host: WebhookHost, instance: BrokerInstance, inbound: InboundRequest) -> Response:
    fields = _parse_mo(instance, inbound)
    account = instance.account_for_mo(fields)
    region = instance.region(account)
    local_raw = fields.to or (account.local_address if account else None)  # pairing (B8)
    local = normalize(local_raw, region) if local_raw else None
    remote = normalize(fields.from_, region)
    concat = _concat_of(fields)
    try:
        if concat is not None:
            ref, total, number = concat
            await host.concat.add_part(Part(
                instance.name, remote, local, account.id if account else None, ref, total,
                number, fields.text, fields.id, fields.attrs))
            created = True
        else:
            _, created = await host.messages.add(NewMessage(
                direction="in", body=fields.text, status="received", broker=instance.name,
                account=account.id if account else None, local=local, remote=remote,
                encoding=fields.encoding, segments=fields.segments,
                broker_message_id=fields.id, attrs=fields.attrs, source="broker",
                exchange=exchanges.webhook(inbound, instance.secrets(account))),
                at_ingest=True)
    except StoreError as exc:
        raise _Refused(503, "temporarily unable to store the message; retry", exc) from None
    host.metrics.webhook(instance.name, "mo", "stored" if created else "duplicate")
    return _answer(instance.broker.answer_mo(fields))


def _concat_of(fields: MoFields) -> tuple[str, int, int] | None:
    if fields.concat_ref and fields.concat_total and fields.concat_part:
        if fields.concat_total > 1:
            if not 1 <= fields.concat_part <= fields.concat_total:
                raise _Refused(400, f"concat part {fields.concat_part} of "
                               f"{fields.concat_total} is out of range")
            return fields.concat_ref, fields.concat_total, fields.concat_part
        return None
    if fields.udh:
        found = parse_udh(fields.udh)
        if found is not None and found[1] > 1 and 1 <= found[2] <= found[1]:
            return found
    return None


async def _receipt(host: WebhookHost, instance: BrokerInstance,
                   inbound: InboundRequest) -> Response:
    try:
        fields = instance.broker.parse_dlr(inbound)
    except ParseError as exc:
        raise _Refused(400, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - adapter code
        raise _adapter_failed(instance, "parse_dlr", exc, 400,
                              "cannot read the receipt") from exc
    try:
        applied = await host.receipts.apply(instance.name, fields)
    except StoreError as exc:
        raise _Refused(503, "temporarily unable to store the receipt; retry", exc) from None
    host.metrics.webhook(instance.name, "receipt",
                         "applied" if applied.message is not None else "orphan")
    return _answer(instance.broker.answer_dlr(fields))


@functools.lru_cache(maxsize=256)
def _answer(answer: Answer) -> Response:
    """The response for ``answer``, built once (answers are constant per definition;
    callers only read the status, headers and body)."""
    return Response(answer.body, status_code=answer.status,
                    media_type=answer.content_type)

"""The webhook sink: POST each routed message as signed JSON to a named target (SPEC S4).

Nothing is lost: :meth:`WebhookSink.deliver` only commits a row to
``webhook_deliveries`` and answers "delivered" to the router (the message is then in our
hands). A background worker POSTs due rows, at most ``max_in_flight`` at a time, through
one shared HTTP client (``[outbox] http_client``); it records every attempt in
``webhook_attempts``, retries network errors, timeouts, 5xx and 429 (honouring
``Retry-After``) with exponential backoff and jitter, and turns a permanent failure
(another 4xx, a redirect) or the last failed attempt into a dead letter, which the API
and ``smshost webhooks`` list and replay. Pending rows are picked up again after a
restart, so delivery is at least once: receivers de-duplicate by the
``X-Smshost-Delivery`` header (or the body's ``delivery_id``).

Settings (``[webhook]`` of ``config/sinks.toml``), payload, signature and API are
described in ``docs/sinks-webhook.md``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from host.api import ApiRoute, hookimpl

from .deliveries import WAITING_AND_DEAD, migrations
from .payloads import build_payload, sign
from .routes import dead_letters, deliveries, delivery, replay_delivery
from .settings import (DELIVERY_HEADER, SIGNATURE_HEADER, TargetSettings, WebhookSettings,
                       backoff, retry_after_seconds)
from .sink import WebhookSink

if TYPE_CHECKING:
    from host.api import HostAPI, Message, StatusEvent

__all__ = ["DELIVERY_HEADER", "SIGNATURE_HEADER", "WAITING_AND_DEAD", "TargetSettings",
           "WebhookSettings", "WebhookSink", "backoff", "build_payload",
           "retry_after_seconds", "sign"]


# -- hooks ------------------------------------------------------------------------------

@hookimpl
def message_status_changed(host: HostAPI, message: Message, old: str | None, new: str,
                           event: StatusEvent) -> Awaitable[None] | None:
    # Synchronous when there is nothing to deliver (every MO): no coroutine per message.
    if message.direction != "out":
        return None
    sink = host.sink("webhook")
    if isinstance(sink, WebhookSink) and sink.settings.status_target and \
            host.background:
        return sink.status_changed(message, old, new, event)
    return None


@hookimpl
def register_sinks(register: Any) -> None:
    register(WebhookSink)


@hookimpl
def register_migrations(register: Any) -> None:
    register(migrations)


@hookimpl
def register_routes(register: Any) -> None:
    register("api", [
        ApiRoute("/api/webhooks/deliveries", deliveries, methods=["GET"], auth="read"),
        ApiRoute("/api/webhooks/deliveries/{id}", delivery, methods=["GET"], auth="read"),
        ApiRoute("/api/webhooks/dead-letters", dead_letters, methods=["GET"], auth="read"),
        ApiRoute("/api/webhooks/dead-letters/{id}/replay", replay_delivery, methods=["POST"],
                 auth="admin"),
    ])


@hookimpl
def messages_kept(host: HostAPI) -> str:
    """The messages of deliveries still pending: the work is not done (a receiver down
    for longer than the purge age gets them once it is back, and the API shows them)."""
    return "select message_id from webhook_deliveries where status = 'pending'"


@hookimpl
async def purge(host: HostAPI, cutoff: str, batch_size: int, dry_run: bool) -> dict[str, int]:
    """Delivered and dead deliveries older than the cutoff, with their attempts; pending
    ones stay however old (their worker still has them)."""
    return await host.store.purge_table(
        "webhook_deliveries", "updated_at", cutoff, batch_size=batch_size,
        pause=host.settings.purge.pause_ms / 1000, dry_run=dry_run,
        children=[("webhook_attempts", "delivery_id")],
        keep="select id from webhook_deliveries where status = 'pending'")


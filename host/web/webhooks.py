"""Broker webhooks on the ASGI path: each listener answers the paths of the brokers on
its port (:func:`host.brokers.webhooks.endpoints_for_port`, the one route list) in front
of the Starlette app. host.web.fastpath answers the same paths from the HTTP parser when
``server.webhook_fast_path`` is on; both run :func:`host.brokers.webhooks.respond`, and
their answers are the broker's formats (plain text, the definition's bodies), never the
app's JSON or HTML error pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from host.brokers.webhooks import respond, unexpected

if TYPE_CHECKING:
    from host.brokers.webhooks import WebhookHost


def broker_webhook() -> None:
    """Names broker webhook requests in metrics (``route="broker_webhook"``)."""


class BrokerDispatch:
    """ASGI middleware answering the broker paths of one listener port.

    Broker webhooks are the hot path (every inbound SMS and receipt), so they are
    answered here, in front of the Starlette stack (routing, exception middleware,
    request objects), which costs more per request than the webhook handling itself.
    Anything else goes on to ``app``.
    """

    def __init__(self, app: ASGIApp, host: WebhookHost, port: int) -> None:
        self.app = app
        self.host = host
        self.paths = host.webhook_paths  # kept current by a live change (P11)
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.paths.on_port(self.port).get(scope.get("path", "")) \
            if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        scope["endpoint"] = broker_webhook
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        try:
            response = await respond(self.host, endpoint, scope, headers, receive)
        except HTTPException:  # the body limit: answered 413 by the request context
            raise
        # A bug must not take the connection down unanswered; the broker retries (BLE001).
        except Exception as exc:  # noqa: BLE001
            response = unexpected(endpoint, exc)
        # Sent as two plain ASGI messages: the Response object's own call does more.
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})

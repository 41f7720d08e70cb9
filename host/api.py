"""The plugin face of smshost: everything a plugin may import, and the host it is given.

Plugins (``plugins/**``, ``host/defaults/**`` and installed packages) import only
``host`` and ``host.api``; ``tests/test_layers.py`` enforces it. Hooks receive
``host: HostAPI``; ``docs/plugins.md`` documents every name of ``__all__`` and every
member of :class:`HostAPI` (``tests/test_plugin_api.py`` keeps the two in step).
What is not here is internal and may change without notice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from host import __version__, hookimpl
from host.backoff import grown
from host.brokers.engine import XmlBroker
from host.brokers.fields import MoFields, OutboundMessage, ParseError, ReceiptFields
from host.brokers.http import InboundRequest, MtResponse, MtResult
from host.brokers.instances import BrokerInstance
from host.brokers.signatures import (TWILIO_SETTINGS_HEADER, SignatureError,
                                     twilio_shared_key_algorithm)
from host.brokers.signatures import verify as verify_signature
from host.config.lines import KeyPath
from host.config.schema import DAY, HOUR, at_least, greater_than, port_number, setting
from host.config.secrets import Secret, redact
from host.errors import (ApiError, ConfigError, HttpError, PluginError, SmshostError,
                         StoreError, StoreUnavailable)
from host.handlers.context import Context as HandlerContext
from host.httpclient import Response as HttpResponse
from host.httpclient import Transport as HttpClient
from host.httpclient import open_client as open_http_client
from host.messages import NewMessage
from host.models import MAX_ID, Message, StatusEvent, from_epoch, to_epoch, utcnow
from host.outage import Outage, expected
from host.plugins import KeptQueries
from host.routing.inbound import Route as InboundRoute
from host.sends import Queued, SendError, SendRequest
from host.signing import signature
from host.sinks.base import Delivery, Sink
from host.text import clean
from host.upkeep import Spare, check_keep
from host.web.bodies import json_body
from host.web.params import int_param, is_decimal, known_params, path_id, timestamp_param
from host.rights import Caller
from host.web.routes import ApiRoute, request_caller

if TYPE_CHECKING:
    from starlette.responses import Response

    from host.cluster import Cluster
    from host.config.settings import Settings
    from host.messages import Messages
    from host.metrics import Metrics
    from host.plugins import Plugins
    from host.store import Store


class HostAPI(Protocol):
    """The running node as a plugin sees it: what hooks receive as ``host`` and sinks
    as ``self.host``."""

    @property
    def settings(self) -> Settings:
        """The node's frozen settings (``host.settings.purge.pause_ms``, ...)."""

    @property
    def store(self) -> Store:
        """The database: ``await store.read(fn)``, ``await store.write(fn)``,
        ``store.purge_table(...)``."""

    @property
    def messages(self) -> Messages:
        """Store and query messages (``add``, ``get``, ``find``, ``events``)."""

    @property
    def metrics(self) -> Metrics:
        """The Prometheus metrics of the node."""

    @property
    def plugins(self) -> Plugins:
        """Records of what loaded and what failed."""

    @property
    def brokers(self) -> Mapping[str, BrokerInstance]:
        """The configured broker instances by name (read them, do not change them)."""

    @property
    def data_dir(self) -> Path:
        """The data directory (the database, the API token); a plugin may keep files in
        a folder of its own name under it."""

    @property
    def version(self) -> str:
        """The smshost version."""

    @property
    def cluster(self) -> Cluster:
        """This node among the nodes sharing the database: ``node_id``,
        ``await cluster.holds(name)`` (whether this node runs the once-per-cluster work
        ``name`` now: ask it each tick), ``live_since()`` (heartbeats since then are of
        live nodes), ``alive_count`` (live nodes at the last heartbeat), ``on_beat``
        (coroutine functions called after each heartbeat)."""

    @property
    def background(self) -> bool:
        """True in a server, False in a CLI command: start no background work then."""

    def sink(self, kind: str) -> Sink | None:
        """The running sink of ``kind``, or None when it is not loaded."""

    async def deliver(self, message: Message, destination: str, target: str = "", *,
                      via: InboundRoute | None = None,
                      data: dict[str, Any] | None = None) -> Delivery:
        """Hand an inbound ``message`` to the sink ``destination`` chosen at run time."""

    def route(self, message: Message) -> None:
        """Queue a stored inbound message for routing (after its commit)."""

    async def send(self, request: SendRequest) -> Queued:
        """Queue an outbound send; raises ``SendError`` when refused."""

    async def reply(self, message: Message, text: str, source: str = "handler",
                    optout_exempt: bool = False) -> Message:
        """Answer an inbound ``message`` from the number that received it; a refused
        reply is stored ``failed`` with the reason, not raised."""

    def publish(self, event: dict[str, Any]) -> None:
        """Publish an event to the subscribers of ``GET /api/events`` (if any). A named
        event (with an ``event`` key) reaches this node's subscribers only."""

    def follow(self, table: str, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` (on the event loop, within about a second) when rows of
        ``table`` (an ``id`` primary key) are committed by another node sharing the
        database (PostgreSQL); on SQLite never: the plugin wakes its own readers after
        its writes. The answer stops it (call it when the plugin stops)."""

    def kept_messages(self) -> KeptQueries:
        """Every plugin's ``messages_kept`` answer, and the problems that left one out."""

    def purge_incomplete(self, reason: str) -> None:
        """Report the running purge incomplete, with ``reason`` (log, CLI, /health)."""

    async def broker_webhook(self, broker: str, path: str,
                             request: InboundRequest) -> Response:
        """Process ``request`` as if broker ``broker`` received it on its webhook
        ``path`` (what the simulator does to inject MOs and receipts)."""


__all__ = [
    # the plugin mechanism
    "hookimpl", "HostAPI", "__version__",
    # messages and events
    "Message", "StatusEvent", "NewMessage", "SendRequest", "Queued", "KeptQueries",
    # sinks
    "Sink", "Delivery", "InboundRoute",
    # handler scripts
    "HandlerContext",
    # brokers
    "XmlBroker", "BrokerInstance", "MoFields", "ReceiptFields", "OutboundMessage",
    "ParseError",
    "InboundRequest", "MtResponse", "MtResult", "SignatureError", "verify_signature",
    "TWILIO_SETTINGS_HEADER", "twilio_shared_key_algorithm", "signature",
    # errors
    "SmshostError", "ConfigError", "PluginError", "StoreError", "StoreUnavailable",
    "ApiError", "SendError",
    # settings
    "setting", "at_least", "greater_than", "port_number", "DAY", "HOUR", "Secret",
    "redact", "KeyPath",
    # web
    "ApiRoute", "Caller", "request_caller", "json_body", "int_param", "known_params",
    "timestamp_param",
    "path_id", "is_decimal", "MAX_ID",
    # outbound HTTP
    "HttpClient", "HttpResponse", "HttpError", "open_http_client",
    # time
    "utcnow", "to_epoch", "from_epoch",
    # work that may fail
    "Outage", "expected", "grown",
    # maintenance
    "Spare", "check_keep",
    # text
    "clean",
]
